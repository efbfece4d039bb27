/**
 * What every PostgreSQL store of agent-runtime (approvals, token budgets, traces, audit) shares:
 * a transaction helper that never returns a broken connection to the pool, and schema migrations
 * run once under an advisory lock, so several processes may start against one database at once.
 * @module
 */
import pg from 'pg';
import type { PoolClient } from 'pg';

/** Runs `fn` in a transaction; a client whose ROLLBACK failed is destroyed, not reused. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

/** How {@link migrateSchema} migrates one store's schema. */
export interface SchemaMigration {
  /** The schema name (already checked against the store's pattern). */
  readonly schema: string;
  /** Advisory lock name, unique per kind of store (e.g. `agent-runtime-audit`). */
  readonly lockName: string;
  /** The store's migrations in order; step n is version n + 1. */
  readonly steps: readonly string[];
  /** The store's own error for a schema written by a newer agent-runtime. */
  readonly tooNew: (version: number, known: number) => Error;
}

/** Creates the schema and applies the steps it lacks, recording each version in `<schema>.migrations`. */
export async function migrateSchema(pool: pg.Pool, migration: SchemaMigration): Promise<void> {
  const s = `"${migration.schema}"`;
  const { steps } = migration;
  await inTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
      `${migration.lockName}:${migration.schema}`,
    ]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${s}.migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const result = await client.query<{ version: number | null }>(
      `SELECT max(version) AS version FROM ${s}.migrations`,
    );
    const version = result.rows[0]?.version ?? 0;
    if (version > steps.length) throw migration.tooNew(version, steps.length);
    for (const [index, step] of steps.entries()) {
      if (index < version) continue;
      await client.query(step);
      await client.query(`INSERT INTO ${s}.migrations (version) VALUES ($1)`, [index + 1]);
    }
  });
}

/** Type parsers that hand json/jsonb columns back as text, for the store's own validated parsing. */
export function jsonAsText(): pg.TypeOverrides {
  const types = new pg.TypeOverrides();
  types.setTypeParser(pg.types.builtins.JSON, (text: string) => text);
  types.setTypeParser(pg.types.builtins.JSONB, (text: string) => text);
  return types;
}
