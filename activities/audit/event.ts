/**
 * Validation and encoding shared by the sinks and the reader: the input check (zod plus a
 * JSON-serialisability walk over attrs), the one-line encoding, the stored-line check, and the
 * id dedupe window. Internal to `activities/audit`.
 * @module
 */
import { z } from 'zod';
import { canonicalJson } from '../../policy/canonical.ts';
import { AuditError, AuditErrorCode } from './errors.ts';
import { AuditKind } from './types.ts';
import type { AuditEvent, AuditEventInput, AuditSource } from './types.ts';

// Record<AuditSource, …> keeps this list exhaustive at compile time.
const AUDIT_SOURCES = {
  workflow: 'workflow',
  guard: 'guard',
  approvals: 'approvals',
  cli: 'cli',
  model: 'model',
  observer: 'observer',
  aggregator: 'aggregator',
} as const satisfies { readonly [K in AuditSource]: K };

/** Longest agent, run or id string accepted. */
export const MAX_REF_LENGTH = 512;
/** Deepest attrs nesting accepted. */
export const MAX_ATTRS_DEPTH = 64;

const ref = z.string().max(MAX_REF_LENGTH, { error: `expected at most ${MAX_REF_LENGTH} characters` });
const fields = {
  source: z.enum(AUDIT_SOURCES, { error: (iss) => `unknown source ${describe(iss.input)}` }),
  agent: ref.nullable(),
  run: ref.nullable(),
  step: z.int({ error: 'expected a non-negative integer or null' }).min(0).nullable(),
  kind: z.enum(AuditKind, { error: (iss) => `unknown kind ${describe(iss.input)}` }),
  attrs: z.record(z.string(), z.unknown(), { error: 'expected a plain object' }),
  id: ref.min(1, { error: 'expected a non-empty string' }).optional(),
};

// Unknown keys (e.g. seq/ts of a stored event handed on by fanOut) are stripped: the sink assigns them.
const InputSchema = z.object(fields, { error: 'expected an object' });

const TIMESTAMP = z.iso.datetime({ error: 'expected an ISO-8601 UTC timestamp' });

const StoredSchema = z.strictObject({
  seq: z.int().min(1),
  ts: TIMESTAMP,
  ...fields,
  attrs: z.record(z.string(), z.json(), { error: 'expected a plain object' }),
});

/** A validated input with its attrs already encoded. */
export interface PreparedEvent {
  readonly source: AuditSource;
  readonly agent: string | null;
  readonly run: string | null;
  readonly step: number | null;
  readonly kind: AuditKind;
  /** Canonical JSON of attrs. */
  readonly attrsJson: string;
  readonly id: string | undefined;
}

/** Validates an input event; throws AUDIT_INVALID_EVENT. */
export function prepareEvent(input: AuditEventInput): PreparedEvent {
  const parsed = InputSchema.safeParse(input);
  if (!parsed.success) {
    throw new AuditError(AuditErrorCode.invalidEvent, `invalid audit event: ${formatIssues(parsed.error)}`);
  }
  const { source, agent, run, step, kind, attrs, id } = parsed.data;
  let attrsJson: string;
  try {
    checkJson(attrs, 'attrs', new Set(), 0);
    attrsJson = canonicalJson(attrs);
  } catch (error) {
    if (error instanceof AuditError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new AuditError(AuditErrorCode.invalidEvent, `invalid audit event: attrs: ${reason}`, {
      cause: error,
    });
  }
  return { source, agent, run, step, kind, attrsJson, id };
}

/** The stored line (with its newline) and the event it records, deep-frozen. */
export function encodeEvent(
  prepared: PreparedEvent,
  seq: number,
  ts: string,
): { readonly line: string; readonly event: AuditEvent } {
  const { source, agent, run, step, kind, attrsJson, id } = prepared;
  // envelope order, attrs canonical; id last when present
  const line =
    `{"seq":${seq},"ts":${JSON.stringify(ts)},"source":${JSON.stringify(source)},` +
    `"agent":${canonicalJson(agent)},"run":${canonicalJson(run)},"step":${canonicalJson(step)},` +
    `"kind":${JSON.stringify(kind)},"attrs":${attrsJson}` +
    (id === undefined ? '' : `,"id":${canonicalJson(id)}`) +
    '}\n';
  const attrs = JSON.parse(attrsJson) as Record<string, unknown>;
  const event: AuditEvent = {
    seq,
    ts,
    source,
    agent,
    run,
    step,
    kind,
    attrs,
    ...(id === undefined ? {} : { id }),
  };
  return { line, event: deepFreeze(event) };
}

/** The sink's timestamp for now; throws AUDIT_INVALID_OPTIONS when the clock returns an invalid date. */
export function timestamp(clock: () => Date): string {
  const now = clock();
  const ts = now instanceof Date && !Number.isNaN(now.getTime()) ? now.toISOString() : undefined;
  // years past 9999 serialise as +0YYYYY, which the reader would refuse
  if (ts === undefined || !TIMESTAMP.safeParse(ts).success) {
    throw new AuditError(
      AuditErrorCode.invalidOptions,
      `audit clock returned an unusable date (${String(now)})`,
    );
  }
  return ts;
}

/**
 * Parses one stored line (without its newline); throws AUDIT_FILE_CORRUPT naming `file:line`.
 * `line` is 1-based and, seq being gap-free, equals the expected seq.
 */
export function parseStoredLine(text: string, file: string, line: number): AuditEvent {
  const fail = (reason: string, cause?: unknown): never => {
    throw new AuditError(AuditErrorCode.fileCorrupt, `${file}:${line}: ${reason}`, { cause });
  };
  if (text.trim() === '') return fail('empty line');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return fail(`not valid JSON (${(error as Error).message})`, error);
  }
  const parsed = StoredSchema.safeParse(value);
  if (!parsed.success) return fail(`not an audit event: ${formatIssues(parsed.error)}`);
  if (parsed.data.seq !== line)
    return fail(`expected seq ${line}, found ${parsed.data.seq} (seq must be gap-free)`);
  const { id, ...rest } = parsed.data;
  return deepFreeze({ ...rest, ...(id === undefined ? {} : { id }) });
}

/** Remembers the most recent `size` ids and the events stored under them. */
export class DedupeWindow {
  readonly #size: number;
  readonly #events = new Map<string, AuditEvent>();

  constructor(size: number) {
    this.#size = size;
  }

  get(id: string | undefined): AuditEvent | undefined {
    return id === undefined ? undefined : this.#events.get(id);
  }

  remember(event: AuditEvent): void {
    if (event.id === undefined || this.#size === 0) return;
    this.#events.delete(event.id);
    this.#events.set(event.id, event);
    if (this.#events.size > this.#size) {
      const oldest = this.#events.keys().next();
      if (!oldest.done) this.#events.delete(oldest.value);
    }
  }
}

/** Shared options of both sinks. */
export interface SinkOptions {
  /** Source of `ts`; defaults to the system clock. */
  readonly clock?: () => Date;
  /** How many recent ids are remembered for dedupe; default 10000, 0 disables dedupe. */
  readonly dedupeWindow?: number;
}

/** Default dedupe window (ids). */
export const DEFAULT_DEDUPE_WINDOW = 10_000;

/** Checks the shared options; throws AUDIT_INVALID_OPTIONS. */
export function resolveSinkOptions(options: SinkOptions): { clock: () => Date; dedupeWindow: number } {
  const { clock = () => new Date(), dedupeWindow = DEFAULT_DEDUPE_WINDOW } = options;
  if (typeof clock !== 'function') {
    throw new AuditError(AuditErrorCode.invalidOptions, 'clock must be a function returning a Date');
  }
  if (!Number.isSafeInteger(dedupeWindow) || dedupeWindow < 0) {
    throw new AuditError(AuditErrorCode.invalidOptions, 'dedupeWindow must be a non-negative integer');
  }
  return { clock, dedupeWindow };
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map(
      (issue) => `${issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.')}: ${issue.message}`,
    )
    .join('; ');
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return value === null ? 'null' : typeof value;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

// Walks attrs, naming the first value JSON cannot carry faithfully.
function checkJson(value: unknown, path: string, ancestors: Set<object>, depth: number): void {
  const fail = (reason: string): never => {
    throw new AuditError(AuditErrorCode.invalidEvent, `invalid audit event: ${path}: ${reason}`);
  };
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) fail('a string with a lone surrogate is not JSON-serialisable');
      return;
    case 'number':
      if (!Number.isFinite(value)) fail(`${value} is not JSON-serialisable`);
      return;
    case 'boolean':
      return;
    case 'object':
      break;
    default:
      return fail(`a ${typeof value} is not JSON-serialisable`);
  }
  if (value === null) return;
  if (ancestors.has(value)) fail('cyclic reference');
  if (depth >= MAX_ATTRS_DEPTH) fail(`nested deeper than ${MAX_ATTRS_DEPTH} levels`);
  ancestors.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const itemPath = `${path}[${i}]`;
      if (!(i in value)) {
        throw new AuditError(
          AuditErrorCode.invalidEvent,
          `invalid audit event: ${itemPath}: sparse array hole`,
        );
      }
      const item: unknown = value[i];
      if (item === undefined) {
        throw new AuditError(
          AuditErrorCode.invalidEvent,
          `invalid audit event: ${itemPath}: undefined in an array`,
        );
      }
      checkJson(item, itemPath, ancestors, depth + 1);
    }
  } else {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
      fail(
        `a ${typeof name === 'string' && name !== '' ? name : 'non-plain object'} is not JSON-serialisable`,
      );
    }
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue; // dropped, as JSON.stringify does
      checkJson(
        item,
        IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`,
        ancestors,
        depth + 1,
      );
    }
  }
  ancestors.delete(value);
}

/** Freezes a JSON-shaped value in place and returns it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
