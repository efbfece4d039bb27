/**
 * Offline copies of one audit stream: NDJSON with a header line, one `record` line per record
 * in seq order and each `checkpoint` line right after the record it signs. Anyone holding the
 * public keys can verify a copy without the database ({@link verifyAuditExport}); a copy cut
 * short after its last checkpoint still verifies, as a store does, since only signed heads prove
 * where a stream ended.
 * @module
 */
import { z } from 'zod';
import { timestamp } from '../activities/audit/event.ts';
import { AgentRuntimeError } from '../policy/errors.ts';
import { verifyChain } from './chain.ts';
import type { AuditRecord, ChainVerification, Checkpoint } from './chain.ts';
import type { AuditStore } from './store.ts';

/** `format` of the header line. */
export const AUDIT_EXPORT_FORMAT = 'agent-runtime/audit-export/v1';

/** The first line of an export. */
export interface AuditExportHeader {
  readonly type: 'header';
  readonly format: typeof AUDIT_EXPORT_FORMAT;
  readonly stream: string;
  /** Ids of the keys that signed the exported checkpoints. */
  readonly keyIds: readonly string[];
  /** ISO-8601 UTC. */
  readonly exportedAt: string;
}

/** Stable codes of {@link AuditExportError}. */
export const AuditExportErrorCode = {
  /** A line is not JSON or not a header, record or checkpoint line. */
  invalid: 'AUDIT_EXPORT_INVALID',
} as const;

/** The export is malformed; the message names `file:line`. */
export class AuditExportError extends AgentRuntimeError {
  constructor(message: string) {
    super(AuditExportErrorCode.invalid, message);
  }
}

const PAGE = 5_000;

/**
 * Writes `stream` of `store` as export lines (each ends in `\n`); `write` may return a promise
 * to apply backpressure. Checkpoints are read first, so every one exported covers exported
 * records.
 */
export async function exportAuditStream(
  store: AuditStore,
  stream: string,
  write: (line: string) => void | Promise<void>,
  options: { readonly clock?: () => Date } = {},
): Promise<{ readonly records: number; readonly checkpoints: number }> {
  const checkpoints = await store.checkpoints(stream);
  const header: AuditExportHeader = {
    type: 'header',
    format: AUDIT_EXPORT_FORMAT,
    stream,
    keyIds: [...new Set(checkpoints.map((c) => c.keyId))].sort(),
    exportedAt: timestamp(options.clock ?? (() => new Date())),
  };
  await write(`${JSON.stringify(header)}\n`);
  const bySeq = new Map<number, Checkpoint[]>();
  for (const c of checkpoints) bySeq.set(c.seq, [...(bySeq.get(c.seq) ?? []), c]);
  const line = (type: string, value: object): string => `${JSON.stringify({ type, ...value })}\n`;
  let records = 0;
  let fromSeq = 1;
  for (;;) {
    const page = await store.read({ stream, fromSeq, limit: PAGE });
    for (const record of page) {
      await write(line('record', record));
      records += 1;
      for (const c of bySeq.get(record.seq) ?? []) await write(line('checkpoint', c));
      bySeq.delete(record.seq);
    }
    const last = page.at(-1);
    if (last === undefined || page.length < PAGE) break;
    fromSeq = last.seq + 1;
  }
  // checkpoints past the last record (a truncated store) are kept, so the copy fails as the store does
  for (const rest of [...bySeq.values()]) for (const c of rest) await write(line('checkpoint', c));
  return { records, checkpoints: checkpoints.length };
}

const nullableString = z.string().nullable();
const RecordLine = z.strictObject({
  type: z.literal('record'),
  stream: z.string(),
  seq: z.number(),
  ts: z.string(),
  source: z.string(),
  agent: nullableString,
  run: nullableString,
  step: z.number().nullable(),
  kind: z.string(),
  attrs: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
});
const CheckpointLine = z.strictObject({
  type: z.literal('checkpoint'),
  stream: z.string(),
  seq: z.number(),
  hash: z.string(),
  ts: z.string(),
  keyId: z.string(),
  signature: z.string(),
});
const HeaderLine = z.strictObject({
  type: z.literal('header'),
  format: z.literal(AUDIT_EXPORT_FORMAT),
  stream: z.string(),
  keyIds: z.array(z.string()),
  exportedAt: z.string(),
});

/** A parsed export. */
export interface ParsedAuditExport {
  readonly header: AuditExportHeader;
  readonly records: readonly AuditRecord[];
  readonly checkpoints: readonly Checkpoint[];
}

/** Parses export text; throws {@link AuditExportError} naming `file:line`. */
export function parseAuditExport(text: string, file: string): ParsedAuditExport {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let header: AuditExportHeader | undefined;
  const records: AuditRecord[] = [];
  const checkpoints: Checkpoint[] = [];
  lines.forEach((raw, index) => {
    const at = `${file}:${index + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (error) {
      throw new AuditExportError(`${at}: not valid JSON (${(error as Error).message})`);
    }
    const type = (value as { type?: unknown } | null)?.type;
    if (index === 0) {
      const parsed = HeaderLine.safeParse(value);
      if (!parsed.success) throw new AuditExportError(`${at}: expected the header line of an audit export`);
      header = parsed.data;
      return;
    }
    const schema = type === 'record' ? RecordLine : type === 'checkpoint' ? CheckpointLine : undefined;
    if (schema === undefined) throw new AuditExportError(`${at}: expected a record or checkpoint line`);
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new AuditExportError(
        `${at}: ${type} line: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`,
      );
    }
    const { type: _type, ...rest } = parsed.data;
    if (type === 'record') records.push(rest as unknown as AuditRecord);
    else checkpoints.push(rest as unknown as Checkpoint);
  });
  if (header === undefined) throw new AuditExportError(`${file}: empty (expected an audit export)`);
  const first = records[0];
  if (first !== undefined && first.stream !== header.stream) {
    throw new AuditExportError(
      `${file}: records of stream ${first.stream} in an export of stream ${header.stream}`,
    );
  }
  return { header, records, checkpoints };
}

/** Parses and verifies an export against trusted public keys, as `verifyStream` does a store. */
export function verifyAuditExport(
  text: string,
  file: string,
  publicKeys: ReadonlyMap<string, Uint8Array>,
): ParsedAuditExport & { readonly result: ChainVerification } {
  const parsed = parseAuditExport(text, file);
  return { ...parsed, result: verifyChain(parsed.records, parsed.checkpoints, publicKeys) };
}
