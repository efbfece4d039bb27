/**
 * The approvals service's stores: SQLite for one service process, PostgreSQL for one or more.
 * Both implement {@link ApprovalStore} with the same semantics (pinned by `cases.ts`).
 * @module
 */
import { z } from 'zod';
import type { ApprovalStore } from '../core/types.ts';
import { ApprovalStoreError, ApprovalStoreErrorCode } from './errors.ts';
import { openPostgresStore, POSTGRES_SCHEMA_PATTERN } from './postgres.ts';
import { openSqliteStore } from './sqlite.ts';

export { ApprovalStoreError, ApprovalStoreErrorCode } from './errors.ts';
export { DEFAULT_POSTGRES_SCHEMA, openPostgresStore, POSTGRES_SCHEMA_PATTERN } from './postgres.ts';
export type { PostgresStoreOptions } from './postgres.ts';
export { openSqliteStore, SQLITE_BUSY_TIMEOUT_MS } from './sqlite.ts';
export type { SqliteStoreOptions } from './sqlite.ts';

/** The `store` section of the approvals service configuration. */
export const ApprovalStoreConfigSchema = z.discriminatedUnion('kind', [
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
/** A validated store configuration. */
export type ApprovalStoreConfig = z.infer<typeof ApprovalStoreConfigSchema>;

/** Validates a store configuration; throws `APPROVAL_STORE_CONFIG_INVALID`. */
export function parseApprovalStoreConfig(input: unknown): ApprovalStoreConfig {
  const parsed = ApprovalStoreConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.configInvalid,
      `invalid approval store config: ${problems}`,
    );
  }
  return parsed.data;
}

/** Validates `config` and opens the store it names (creating and migrating its tables). */
export async function openApprovalStore(config: ApprovalStoreConfig): Promise<ApprovalStore> {
  const valid = parseApprovalStoreConfig(config);
  return valid.kind === 'sqlite'
    ? openSqliteStore({ file: valid.file })
    : openPostgresStore({ connectionString: valid.connectionString, schema: valid.schema });
}
