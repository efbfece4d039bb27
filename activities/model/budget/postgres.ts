/**
 * The token budget on PostgreSQL (`pg` pool), for any number of workers sharing a database.
 * Tables live in their own schema (default {@link DEFAULT_BUDGET_SCHEMA}), created and migrated on
 * open under an advisory lock.
 *
 * A reserve is one transaction that locks the run's row, then the agent-day's row (upserts that
 * take the row lock), and only then sums the scopes' live reservations: every writer of a scope
 * holds its row lock, so the sums are exact and concurrent reserves serialise per scope. Locks are
 * always taken in the order run row → agent-day row; stale reservations are marked with
 * `SKIP LOCKED`, so a reserve never waits on a reservation row (no deadlock with a reconcile).
 * @module
 */
import { inTransaction, migrateSchema } from '../../../db/postgres.ts';
import pg from 'pg';
import type { PoolClient } from 'pg';
import { AgentRuntimeError } from '../../../policy/errors.ts';
import {
  admit,
  checkActual,
  checkReserve,
  checkUsageQuery,
  guardBudget,
  releasedReservation,
  resolveOptions,
  toCount,
  unknownReservation,
  usableId,
} from './core.ts';
import { BudgetError, BudgetErrorCode, messageOf } from './errors.ts';
import type { BudgetStoreOptions, BudgetUsage, TokenBudget } from './types.ts';

/** The schema the tables are created in unless configured otherwise. */
export const DEFAULT_BUDGET_SCHEMA = 'agent_runtime_budget';

/** Schema names accepted (unquoted PostgreSQL identifiers, at most 63 bytes). */
export const BUDGET_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** Options of {@link openPostgresBudget}. */
export interface PostgresBudgetOptions extends BudgetStoreOptions {
  /** A libpq-style URL, e.g. `postgres://user@host:5432/db`. */
  readonly connectionString: string;
  /** Schema of the tables (created if missing); default {@link DEFAULT_BUDGET_SCHEMA}. */
  readonly schema?: string | undefined;
  /** Pool size (default 10). */
  readonly poolSize?: number | undefined;
}

const CONNECT_TIMEOUT_MS = 10_000;

function migrations(s: string): readonly string[] {
  return [
    `
    CREATE TABLE ${s}.runs (
      run_id text PRIMARY KEY,
      used bigint NOT NULL
    );
    CREATE TABLE ${s}.agent_days (
      agent_id text NOT NULL,
      day_key text NOT NULL,
      used bigint NOT NULL,
      PRIMARY KEY (agent_id, day_key)
    );
    CREATE TABLE ${s}.reservations (
      id text PRIMARY KEY,
      run_id text NOT NULL,
      agent_id text NOT NULL,
      day_key text NOT NULL,
      tokens bigint NOT NULL,
      state text NOT NULL CHECK (state IN ('reserved', 'expired', 'reconciled', 'released')),
      actual_tokens bigint,
      created_at_ms bigint NOT NULL,
      settled_at_ms bigint
    );
    CREATE INDEX reservations_run ON ${s}.reservations (run_id, state, created_at_ms);
    CREATE INDEX reservations_agent_day ON ${s}.reservations (agent_id, day_key, state, created_at_ms);
    `,
  ];
}

type Queryable = Pick<pg.Pool, 'query'> | PoolClient;

/** Creates the schema and applies the migrations it lacks. */
function migrate(pool: pg.Pool, schema: string): Promise<void> {
  return migrateSchema(pool, {
    schema,
    lockName: 'agent-runtime-budget',
    steps: migrations(`"${schema}"`),
    tooNew: (version, known) =>
      new BudgetError(
        BudgetErrorCode.schemaTooNew,
        `token budget: schema ${schema} is at version ${version}; this agent-runtime knows ${known}`,
      ),
  });
}

/** Opens a PostgreSQL token budget: connects, creates the schema and migrates it. */
export async function openPostgresBudget(options: PostgresBudgetOptions): Promise<TokenBudget> {
  const schema = options.schema ?? DEFAULT_BUDGET_SCHEMA;
  if (!BUDGET_SCHEMA_PATTERN.test(schema)) {
    throw new BudgetError(
      BudgetErrorCode.configInvalid,
      `token budget: invalid schema name ${JSON.stringify(schema)} (lower-case letters, digits, _)`,
    );
  }
  const poolSize = options.poolSize ?? 10;
  if (!Number.isSafeInteger(poolSize) || poolSize < 1) {
    throw new BudgetError(
      BudgetErrorCode.configInvalid,
      `token budget: invalid pool size ${String(poolSize)}`,
    );
  }
  const { ttlMs, now, newId } = resolveOptions(options);
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: poolSize,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  // an idle client losing its connection must not crash the worker; the next query reconnects
  pool.on('error', () => {});
  try {
    await migrate(pool, schema);
  } catch (error) {
    await pool.end();
    if (error instanceof AgentRuntimeError) throw error;
    throw new BudgetError(
      BudgetErrorCode.openFailed,
      `token budget: cannot open PostgreSQL schema ${schema}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  const s = `"${schema}"`;

  const sumReserved = `coalesce(sum(tokens), 0) AS reserved FROM ${s}.reservations WHERE state = 'reserved'`;
  const runReserved = async (db: Queryable, runId: string, cutoff: number): Promise<number> =>
    toCount(
      (
        await db.query<{ reserved: string }>(`SELECT ${sumReserved} AND run_id = $1 AND created_at_ms > $2`, [
          runId,
          cutoff,
        ])
      ).rows[0]?.reserved ?? 0,
    );
  const dayReserved = async (
    db: Queryable,
    agentId: string,
    dayKey: string,
    cutoff: number,
  ): Promise<number> =>
    toCount(
      (
        await db.query<{ reserved: string }>(
          `SELECT ${sumReserved} AND agent_id = $1 AND day_key = $2 AND created_at_ms > $3`,
          [agentId, dayKey, cutoff],
        )
      ).rows[0]?.reserved ?? 0,
    );
  const stateOf = async (id: string): Promise<string | undefined> =>
    (await pool.query<{ state: string }>(`SELECT state FROM ${s}.reservations WHERE id = $1`, [id])).rows[0]
      ?.state;

  return guardBudget(
    'postgres token budget',
    {
      async reserve(request) {
        const input = checkReserve(request);
        const id = newId();
        return inTransaction(pool, async (client) => {
          // the row locks, in the one order every writer uses: run, then agent-day
          const runUsed = toCount(
            (
              await client.query<{ used: string }>(
                `INSERT INTO ${s}.runs AS r (run_id, used) VALUES ($1, 0)
                 ON CONFLICT (run_id) DO UPDATE SET used = r.used RETURNING used`,
                [input.runId],
              )
            ).rows[0]?.used,
          );
          const dayUsed = toCount(
            (
              await client.query<{ used: string }>(
                `INSERT INTO ${s}.agent_days AS d (agent_id, day_key, used) VALUES ($1, $2, 0)
                 ON CONFLICT (agent_id, day_key) DO UPDATE SET used = d.used RETURNING used`,
                [input.agentId, input.dayKey],
              )
            ).rows[0]?.used,
          );
          const at = now();
          const cutoff = at - ttlMs;
          await client.query(
            `UPDATE ${s}.reservations SET state = 'expired', settled_at_ms = $4
             WHERE state = 'reserved' AND id IN (
               SELECT id FROM ${s}.reservations
               WHERE state = 'reserved' AND created_at_ms <= $5
                 AND (run_id = $1 OR (agent_id = $2 AND day_key = $3))
               FOR UPDATE SKIP LOCKED)`,
            [input.runId, input.agentId, input.dayKey, at, cutoff],
          );
          const run: BudgetUsage = {
            used: runUsed,
            reserved: await runReserved(client, input.runId, cutoff),
          };
          const day: BudgetUsage = {
            used: dayUsed,
            reserved: await dayReserved(client, input.agentId, input.dayKey, cutoff),
          };
          const denial = admit(input, run, day);
          if (denial !== null) return denial;
          await client.query(
            `INSERT INTO ${s}.reservations (id, run_id, agent_id, day_key, tokens, state, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, 'reserved', $6)`,
            [id, input.runId, input.agentId, input.dayKey, input.tokens, at],
          );
          return Object.freeze({ ok: true as const, reservationId: id });
        });
      },

      async reconcile(reservationId, actualTokens) {
        const actual = checkActual(actualTokens);
        if (!usableId(reservationId)) throw unknownReservation(String(reservationId));
        const outcome = await inTransaction(pool, async (client) => {
          // the reservation row first, then run → agent-day (a reserve never waits on reservation rows)
          const settled = (
            await client.query<{ run_id: string; agent_id: string; day_key: string }>(
              `UPDATE ${s}.reservations SET state = 'reconciled', actual_tokens = $2, settled_at_ms = $3
               WHERE id = $1 AND state IN ('reserved', 'expired') RETURNING run_id, agent_id, day_key`,
              [reservationId, actual, now()],
            )
          ).rows[0];
          if (settled === undefined) return null;
          await client.query(
            `INSERT INTO ${s}.runs AS r (run_id, used) VALUES ($1, $2)
             ON CONFLICT (run_id) DO UPDATE SET used = r.used + excluded.used`,
            [settled.run_id, actual],
          );
          await client.query(
            `INSERT INTO ${s}.agent_days AS d (agent_id, day_key, used) VALUES ($1, $2, $3)
             ON CONFLICT (agent_id, day_key) DO UPDATE SET used = d.used + excluded.used`,
            [settled.agent_id, settled.day_key, actual],
          );
          return 'reconciled' as const;
        });
        if (outcome !== null) return outcome;
        const state = await stateOf(reservationId);
        if (state === 'reconciled') return 'already_reconciled';
        if (state === 'released') throw releasedReservation(reservationId);
        throw unknownReservation(reservationId);
      },

      async release(reservationId) {
        if (!usableId(reservationId)) throw unknownReservation(String(reservationId));
        const changed = await pool.query(
          `UPDATE ${s}.reservations SET state = 'released', settled_at_ms = $2
           WHERE id = $1 AND state IN ('reserved', 'expired')`,
          [reservationId, now()],
        );
        if ((changed.rowCount ?? 0) === 1) return 'released';
        const state = await stateOf(reservationId);
        if (state === 'released') return 'already_released';
        if (state === 'reconciled') return 'already_reconciled';
        throw unknownReservation(reservationId);
      },

      async usage(query) {
        const valid = checkUsageQuery(query);
        const cutoff = now() - ttlMs;
        if ('runId' in valid) {
          const used = (
            await pool.query<{ used: string }>(`SELECT used FROM ${s}.runs WHERE run_id = $1`, [valid.runId])
          ).rows[0]?.used;
          return Object.freeze({
            used: toCount(used ?? 0),
            reserved: await runReserved(pool, valid.runId, cutoff),
          });
        }
        const used = (
          await pool.query<{ used: string }>(
            `SELECT used FROM ${s}.agent_days WHERE agent_id = $1 AND day_key = $2`,
            [valid.agentId, valid.dayKey],
          )
        ).rows[0]?.used;
        return Object.freeze({
          used: toCount(used ?? 0),
          reserved: await dayReserved(pool, valid.agentId, valid.dayKey, cutoff),
        });
      },
    },
    () => pool.end(),
  );
}
