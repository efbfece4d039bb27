/**
 * Model traces: the record (`types.ts`), redaction before storage (`redact.ts`), SQLite and
 * PostgreSQL stores with full-text search (same semantics, pinned by `cases.ts`), and a
 * background writer that keeps trace writes off the model call's critical path.
 * @module
 */
import { z } from 'zod';
import { TraceConfigError } from './errors.ts';
import { openPostgresTraceStore, POSTGRES_SCHEMA_PATTERN } from './postgres.ts';
import { openSqliteTraceStore } from './sqlite.ts';
import type { TraceStore } from './store.ts';

export type * from './types.ts';
export { ContentCapture, toGenAiAttributes } from './types.ts';
export { TraceConfigError, TraceErrorCode, TraceStoreError } from './errors.ts';
export {
  contentDigest,
  createRedactor,
  DEFAULT_RULES,
  luhnValid,
  MAX_REDACT_DEPTH,
  parseRedactionConfig,
  RedactionConfigSchema,
  RULE_NAME_PATTERN,
  shapeOf,
  storableText,
} from './redact.ts';
export type {
  DefaultRuleName,
  ParsedRedactionConfig,
  RedactionConfig,
  RedactionCounts,
  Redactor,
} from './redact.ts';
export {
  checkQuery,
  DEFAULT_SEARCH_LIMIT,
  HIGHLIGHT,
  MAX_QUERY_CHARS,
  MAX_QUERY_TERMS,
  MAX_SEARCH_LIMIT,
  parseSearchText,
  SNIPPET_WORDS,
} from './query.ts';
export type { QueryGroup, TraceQuery } from './query.ts';
export {
  MAX_JSON_DEPTH,
  MAX_SEARCH_TEXT_CHARS,
  MAX_TRACE_CHARS,
  searchText,
  validateTrace,
} from './record.ts';
export type { TraceSearchHit, TraceStore } from './store.ts';
export { openSqliteTraceStore, SQLITE_BUSY_TIMEOUT_MS } from './sqlite.ts';
export type { SqliteTraceStoreOptions } from './sqlite.ts';
export { DEFAULT_TRACE_SCHEMA, openPostgresTraceStore, POSTGRES_SCHEMA_PATTERN } from './postgres.ts';
export type { PostgresTraceStoreOptions } from './postgres.ts';
export { createTraceWriter, DEFAULT_BATCH_SIZE, DEFAULT_MAX_QUEUE } from './writer.ts';
export { createOtlpTraceExporter, toOtlpSpan } from './otlp.ts';
export type { OtlpExporterOptions } from './otlp.ts';
export type { TraceWriter, TraceWriterOptions, TraceWriterStats } from './writer.ts';

/** The `traces.store` section of a configuration. */
export const TraceStoreConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('sqlite'),
    /** A file path (parent directories are created) or `:memory:`. */
    file: z.string().min(1),
  }),
  z.strictObject({
    kind: z.literal('postgres'),
    connectionString: z.string().min(1),
    schema: z.string().regex(POSTGRES_SCHEMA_PATTERN).optional(),
  }),
]);
/** A validated trace store configuration. */
export type TraceStoreConfig = z.infer<typeof TraceStoreConfigSchema>;

/** Validates a trace store configuration; throws {@link TraceConfigError} (`TRACE_CONFIG_INVALID`). */
export function parseTraceStoreConfig(input: unknown): TraceStoreConfig {
  const parsed = TraceStoreConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new TraceConfigError(`invalid trace store config: ${problems}`);
  }
  return parsed.data;
}

/** Validates `config` and opens the store it names (creating and migrating its tables). */
export async function openTraceStore(config: TraceStoreConfig): Promise<TraceStore> {
  const valid = parseTraceStoreConfig(config);
  return valid.kind === 'sqlite'
    ? openSqliteTraceStore({ file: valid.file })
    : openPostgresTraceStore({ connectionString: valid.connectionString, schema: valid.schema });
}
