/**
 * Row mapping shared by the SQLite and PostgreSQL audit stores. Rows are checked for shape only
 * (types, JSON attrs), never for meaning: a tampered but well-formed row is returned as stored,
 * so that `verifyChain` can name it.
 * @module
 */
import type { AuditKind, AuditSource } from '../activities/audit/types.ts';
import { canonicalJson } from '../policy/canonical.ts';
import type { AuditRecord, Checkpoint } from './chain.ts';
import { AuditStoreError, AuditStoreErrorCode } from './errors.ts';

/** A database row as the drivers return it. */
export type Row = Record<string, unknown>;
/** Values bound to statements. */
export type SqlValue = string | number | null;

/** Columns of the records table, in insert order. */
export const RECORD_COLUMNS = [
  'stream',
  'seq',
  'ts',
  'source',
  'agent',
  'run',
  'step',
  'kind',
  'attrs',
  'prev_hash',
  'hash',
] as const;

/** Columns of the checkpoints table, in insert order. */
export const CHECKPOINT_COLUMNS = ['stream', 'seq', 'hash', 'ts', 'key_id', 'signature'] as const;

/** Bound values of a record (attrs as canonical JSON text). */
export function recordValues(record: AuditRecord): SqlValue[] {
  return [
    record.stream,
    record.seq,
    record.ts,
    record.source,
    record.agent,
    record.run,
    record.step,
    record.kind,
    canonicalJson(record.attrs),
    record.prevHash,
    record.hash,
  ];
}

/** Bound values of a checkpoint. */
export function checkpointValues(c: Checkpoint): SqlValue[] {
  return [c.stream, c.seq, c.hash, c.ts, c.keyId, c.signature];
}

function bad(what: string, reason: string): never {
  throw new AuditStoreError(
    AuditStoreErrorCode.rowInvalid,
    `audit store: a stored ${what} is invalid: ${reason}`,
  );
}

function text(row: Row, column: string, what: string): string {
  const value = row[column];
  return typeof value === 'string' ? value : bad(what, `${column} is not text`);
}

function nullableText(row: Row, column: string, what: string): string | null {
  const value = row[column];
  return value === null || typeof value === 'string' ? value : bad(what, `${column} is not text or null`);
}

function integer(row: Row, column: string, what: string): number {
  const value = row[column];
  const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  const num = typeof n === 'bigint' ? Number(n) : n;
  return typeof num === 'number' && Number.isSafeInteger(num)
    ? num
    : bad(what, `${column} is not an integer`);
}

/** A record from its row; throws `AUDIT_STORE_ROW_INVALID` when the row's shape is wrong. */
export function recordFromRow(row: Row): AuditRecord {
  const what = 'record';
  const stepValue = row['step'];
  let attrs: unknown;
  try {
    attrs = JSON.parse(text(row, 'attrs', what));
  } catch (error) {
    if (error instanceof AuditStoreError) throw error;
    return bad(what, 'attrs is not JSON');
  }
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs))
    bad(what, 'attrs is not an object');
  return deepFreeze({
    stream: text(row, 'stream', what),
    seq: integer(row, 'seq', what),
    ts: text(row, 'ts', what),
    source: text(row, 'source', what) as AuditSource,
    agent: nullableText(row, 'agent', what),
    run: nullableText(row, 'run', what),
    step: stepValue === null ? null : integer(row, 'step', what),
    kind: text(row, 'kind', what) as AuditKind,
    attrs: attrs as Record<string, unknown>,
    prevHash: text(row, 'prev_hash', what),
    hash: text(row, 'hash', what),
  });
}

/** A checkpoint from its row. */
export function checkpointFromRow(row: Row): Checkpoint {
  const what = 'checkpoint';
  return Object.freeze({
    stream: text(row, 'stream', what),
    seq: integer(row, 'seq', what),
    hash: text(row, 'hash', what),
    ts: text(row, 'ts', what),
    keyId: text(row, 'key_id', what),
    signature: text(row, 'signature', what),
  });
}

/** `INSERT INTO table (columns) VALUES (placeholders) suffix`. */
export function insertSql(
  table: string,
  columns: readonly string[],
  ph: (position: number) => string,
  suffix = '',
): string {
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((_, i) => ph(i + 1)).join(', ')}) ${suffix}`.trim();
}

/** The WHERE clause (never empty) and values of a search; `lowerContains` builds the text test. */
export function searchWhere(
  filter: {
    readonly stream: string | undefined;
    readonly kind: string | undefined;
    readonly agent: string | undefined;
    readonly run: string | undefined;
    readonly since: string | undefined;
    readonly text: string | undefined;
  },
  ph: (position: number) => string,
  lowerContains: (column: string, placeholder: string) => string,
): { sql: string; values: SqlValue[] } {
  const parts: string[] = [];
  const values: SqlValue[] = [];
  const add = (make: (p: string) => string, value: string | undefined): void => {
    if (value === undefined) return;
    values.push(value);
    parts.push(make(ph(values.length)));
  };
  add((p) => `stream = ${p}`, filter.stream);
  add((p) => `kind = ${p}`, filter.kind);
  add((p) => `agent = ${p}`, filter.agent);
  add((p) => `run = ${p}`, filter.run);
  add((p) => `ts >= ${p}`, filter.since);
  add((p) => lowerContains('attrs', p), filter.text);
  return { sql: parts.length === 0 ? 'TRUE' : parts.join(' AND '), values };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
