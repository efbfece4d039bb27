/**
 * The tamper-evident audit aggregator's core: hash-chained streams with signed checkpoints, on
 * SQLite (one process) or PostgreSQL (one or more), behind one append-only {@link AuditStore}.
 * @module
 */
import { z } from 'zod';
import { verifyChain } from './chain.ts';
import type { ChainVerification, CheckpointSigner } from './chain.ts';
import { AuditStoreError, AuditStoreErrorCode } from './errors.ts';
import { AUDIT_POSTGRES_SCHEMA_PATTERN, openPostgresAuditStore } from './postgres.ts';
import { openSqliteAuditStore } from './sqlite.ts';
import type { AuditStore, AuditStoreOptions } from './store.ts';

export {
  CHECKPOINT_DOMAIN,
  ChainBreak,
  EMPTY_HEAD,
  GENESIS_HASH,
  chainRecords,
  checkpointSignatureValid,
  checkpointSigningBytes,
  ed25519Signer,
  envelopeOf,
  recordHash,
  signCheckpoint,
  verifyChain,
} from './chain.ts';
export type {
  AuditEnvelope,
  AuditRecord,
  ChainHead,
  ChainVerification,
  Checkpoint,
  CheckpointPayload,
  CheckpointSigner,
} from './chain.ts';
export { AuditStoreError, AuditStoreErrorCode } from './errors.ts';
export {
  AUDIT_EXPORT_FORMAT,
  AuditExportError,
  AuditExportErrorCode,
  exportAuditStream,
  parseAuditExport,
  verifyAuditExport,
} from './export.ts';
export type { AuditExportHeader, ParsedAuditExport } from './export.ts';
export {
  AuditAggregatorError,
  AuditAggregatorErrorCode,
  DEFAULT_DEDUPE_WINDOW,
  DEFAULT_KEEPALIVE_MS,
  MAX_BODY_BYTES,
  MAX_EVENTS_PER_POST,
  MAX_LEASE_TTL_MS,
  WRITABLE_SOURCES,
  startAuditAggregator,
  tokenSha256,
} from './server.ts';
export type {
  AggregatorToken,
  AppendedRef,
  AuditAggregator,
  AuditAggregatorOptions,
  AuditLease,
} from './server.ts';
export { createAuditAggregatorClient } from './client.ts';
export type { AuditAggregatorClient, AuditAggregatorClientOptions, AuditSubscribeOptions } from './client.ts';
export {
  AUDIT_POSTGRES_SCHEMA_PATTERN,
  DEFAULT_AUDIT_POSTGRES_SCHEMA,
  openPostgresAuditStore,
} from './postgres.ts';
export type { PostgresAuditStoreOptions } from './postgres.ts';
export { SQLITE_BUSY_TIMEOUT_MS, openSqliteAuditStore, sqliteAuditStoreOn } from './sqlite.ts';
export type { SqliteAuditStoreOptions } from './sqlite.ts';
export { DEFAULT_SEARCH_LIMIT, MAX_APPEND_BATCH, MAX_SEARCH_LIMIT, STREAM_PATTERN } from './store.ts';
export type {
  AuditAppendInput,
  AuditReadQuery,
  AuditRecordListener,
  AuditSearchQuery,
  AuditStore,
  AuditStoreOptions,
  AutoCheckpointOptions,
} from './store.ts';

const CheckpointsSchema = z
  .strictObject({
    everyAppends: z.int().min(1).optional(),
    everySeconds: z.number().positive().max(86_400).optional(),
  })
  .refine((c) => c.everyAppends !== undefined || c.everySeconds !== undefined, {
    error: 'set everyAppends or everySeconds',
  });

/** The `audit.store` section of a service configuration. */
export const AuditStoreConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('sqlite'),
    /** A file path (parent directories are created) or `:memory:`. */
    file: z.string().min(1),
    checkpoints: CheckpointsSchema.optional(),
  }),
  z.strictObject({
    kind: z.literal('postgres'),
    connectionString: z.string().min(1),
    schema: z.string().regex(AUDIT_POSTGRES_SCHEMA_PATTERN).optional(),
    checkpoints: CheckpointsSchema.optional(),
  }),
]);
/** A validated audit store configuration. */
export type AuditStoreConfig = z.infer<typeof AuditStoreConfigSchema>;

/** Validates a configuration; throws `AUDIT_STORE_CONFIG_INVALID`. */
export function parseAuditStoreConfig(input: unknown): AuditStoreConfig {
  const parsed = AuditStoreConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new AuditStoreError(AuditStoreErrorCode.configInvalid, `invalid audit store config: ${problems}`);
  }
  return parsed.data;
}

/** What the configuration cannot carry: the clock, the checkpoint signer, the error sink. */
export interface OpenAuditStoreOptions extends Omit<AuditStoreOptions, 'autoCheckpoint'> {
  /** Required when the configuration sets `checkpoints`. */
  readonly signer?: CheckpointSigner;
}

/** Validates `config` and opens the store it names (creating and migrating its tables). */
export async function openAuditStore(
  config: AuditStoreConfig,
  options: OpenAuditStoreOptions = {},
): Promise<AuditStore> {
  const valid = parseAuditStoreConfig(config);
  const { signer, ...rest } = options;
  let storeOptions: AuditStoreOptions = rest;
  if (valid.checkpoints !== undefined) {
    if (signer === undefined) {
      throw new AuditStoreError(
        AuditStoreErrorCode.configInvalid,
        'invalid audit store config: checkpoints are configured but no signer was given',
      );
    }
    storeOptions = {
      ...rest,
      autoCheckpoint: {
        signer,
        ...(valid.checkpoints.everyAppends === undefined
          ? {}
          : { everyAppends: valid.checkpoints.everyAppends }),
        ...(valid.checkpoints.everySeconds === undefined
          ? {}
          : { everySeconds: valid.checkpoints.everySeconds }),
      },
    };
  }
  return valid.kind === 'sqlite'
    ? openSqliteAuditStore({ ...storeOptions, file: valid.file })
    : openPostgresAuditStore({
        ...storeOptions,
        connectionString: valid.connectionString,
        schema: valid.schema,
      });
}

/** Reads a whole stream and its checkpoints and verifies them. */
export async function verifyStream(
  store: AuditStore,
  stream: string,
  publicKeys: ReadonlyMap<string, Uint8Array>,
): Promise<ChainVerification> {
  const [records, checkpoints] = await Promise.all([store.read({ stream }), store.checkpoints(stream)]);
  return verifyChain(records, checkpoints, publicKeys);
}
export {
  AuditLogExportError,
  AuditLogExportErrorCode,
  createOtlpLogExporter,
  feedAuditLogExport,
  toOtlpLogRecord,
} from './otlp-logs.ts';
export type { OtlpLogExporter, OtlpLogExporterOptions } from './otlp-logs.ts';
