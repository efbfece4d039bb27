/**
 * The token budget on SQLite (`node:sqlite`), for one worker process or several sharing a file.
 * A real file is created mode 0600 in WAL mode; every reserve and reconcile is one
 * `BEGIN IMMEDIATE` transaction (the write lock is taken up front), so concurrent connections,
 * threads and processes on the file agree. Tables are prefixed `budget_`, with their own
 * migrations table, so the file may hold other tables too.
 * @module
 */
import { createPrivateFile, immediateTransaction } from '../../../db/sqlite.ts';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
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

/** How long a statement waits for another connection's write lock before failing. */
export const SQLITE_BUDGET_BUSY_TIMEOUT_MS = 10_000;

/** Options of {@link openSqliteBudget}. */
export interface SqliteBudgetOptions extends BudgetStoreOptions {
  /** The database file (parent directories are created), or `':memory:'`. */
  readonly file: string;
}

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE budget_runs (
    run_id TEXT PRIMARY KEY,
    used INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE budget_agent_days (
    agent_id TEXT NOT NULL,
    day_key TEXT NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (agent_id, day_key)
  ) STRICT;
  CREATE TABLE budget_reservations (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    day_key TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'expired', 'reconciled', 'released')),
    actual_tokens INTEGER,
    created_at_ms INTEGER NOT NULL,
    settled_at_ms INTEGER
  ) STRICT;
  CREATE INDEX budget_reservations_run ON budget_reservations (run_id, state, created_at_ms);
  CREATE INDEX budget_reservations_agent_day ON budget_reservations (agent_id, day_key, state, created_at_ms);
  `,
];

type Row = Record<string, SQLInputValue>;

class Connection {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  #prepare(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  run(sql: string, values: readonly SQLInputValue[] = []): number {
    return Number(this.#prepare(sql).run(...values).changes);
  }

  get(sql: string, values: readonly SQLInputValue[] = []): Row | undefined {
    return this.#prepare(sql).get(...values);
  }

  exec(sql: string): void {
    this.#db.exec(sql);
  }

  transaction<T>(fn: () => T): T {
    return immediateTransaction(this.#db, fn);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}

function migrate(db: Connection): void {
  db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS budget_migrations (version INTEGER PRIMARY KEY) STRICT');
    const version = toCount(
      db.get('SELECT coalesce(max(version), 0) AS v FROM budget_migrations')?.['v'] ?? 0,
    );
    if (version > MIGRATIONS.length) {
      throw new BudgetError(
        BudgetErrorCode.schemaTooNew,
        `token budget: the database is at budget schema version ${version}; this agent-runtime knows ${MIGRATIONS.length}`,
      );
    }
    for (const [index, migration] of MIGRATIONS.entries()) {
      if (index < version) continue;
      db.exec(migration);
      db.run('INSERT INTO budget_migrations (version) VALUES (?)', [index + 1]);
    }
  });
}

function openDatabase(file: string): Connection {
  const memory = file === ':memory:';
  if (!memory) {
    createPrivateFile(file);
  }
  const db = new Connection(new DatabaseSync(file));
  try {
    db.exec(`PRAGMA busy_timeout = ${SQLITE_BUDGET_BUSY_TIMEOUT_MS}`);
    if (!memory) {
      const mode = db.get('PRAGMA journal_mode = WAL')?.['journal_mode'];
      if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
    }
    migrate(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Opens (creating and migrating as needed) a SQLite token budget. */
export async function openSqliteBudget(options: SqliteBudgetOptions): Promise<TokenBudget> {
  const { file } = options;
  if (!usableId(file)) {
    throw new BudgetError(BudgetErrorCode.configInvalid, 'token budget: invalid SQLite file name');
  }
  const resolved = resolveOptions(options);
  let db: Connection;
  try {
    db = openDatabase(file);
  } catch (error) {
    if (error instanceof AgentRuntimeError) throw error;
    throw new BudgetError(
      BudgetErrorCode.openFailed,
      `token budget: cannot open SQLite database ${file}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  const { ttlMs, now, newId } = resolved;

  const runUsage = (runId: string, cutoff: number): BudgetUsage => ({
    used: toCount(db.get('SELECT used FROM budget_runs WHERE run_id = ?1', [runId])?.['used'] ?? 0),
    reserved: toCount(
      db.get(
        `SELECT coalesce(sum(tokens), 0) AS n FROM budget_reservations
         WHERE run_id = ?1 AND state = 'reserved' AND created_at_ms > ?2`,
        [runId, cutoff],
      )?.['n'] ?? 0,
    ),
  });
  const dayUsage = (agentId: string, dayKey: string, cutoff: number): BudgetUsage => ({
    used: toCount(
      db.get('SELECT used FROM budget_agent_days WHERE agent_id = ?1 AND day_key = ?2', [agentId, dayKey])?.[
        'used'
      ] ?? 0,
    ),
    reserved: toCount(
      db.get(
        `SELECT coalesce(sum(tokens), 0) AS n FROM budget_reservations
         WHERE agent_id = ?1 AND day_key = ?2 AND state = 'reserved' AND created_at_ms > ?3`,
        [agentId, dayKey, cutoff],
      )?.['n'] ?? 0,
    ),
  });

  // node:sqlite is synchronous: within one process the methods below never interleave
  return guardBudget(
    'sqlite token budget',
    {
      async reserve(request) {
        const input = checkReserve(request);
        const id = newId();
        return db.transaction(() => {
          const at = now();
          const cutoff = at - ttlMs;
          db.run(
            `UPDATE budget_reservations SET state = 'expired', settled_at_ms = ?4
             WHERE state = 'reserved' AND created_at_ms <= ?5
               AND (run_id = ?1 OR (agent_id = ?2 AND day_key = ?3))`,
            [input.runId, input.agentId, input.dayKey, at, cutoff],
          );
          const denial = admit(
            input,
            runUsage(input.runId, cutoff),
            dayUsage(input.agentId, input.dayKey, cutoff),
          );
          if (denial !== null) return denial;
          db.run(
            `INSERT INTO budget_reservations (id, run_id, agent_id, day_key, tokens, state, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'reserved', ?6)`,
            [id, input.runId, input.agentId, input.dayKey, input.tokens, at],
          );
          return Object.freeze({ ok: true as const, reservationId: id });
        });
      },

      async reconcile(reservationId, actualTokens) {
        const actual = checkActual(actualTokens);
        if (!usableId(reservationId)) throw unknownReservation(String(reservationId));
        return db.transaction(() => {
          const row = db.get(
            `UPDATE budget_reservations SET state = 'reconciled', actual_tokens = ?2, settled_at_ms = ?3
             WHERE id = ?1 AND state IN ('reserved', 'expired') RETURNING run_id, agent_id, day_key`,
            [reservationId, actual, now()],
          );
          if (row === undefined) {
            const state = db.get('SELECT state FROM budget_reservations WHERE id = ?1', [reservationId])?.[
              'state'
            ];
            if (state === 'reconciled') return 'already_reconciled';
            if (state === 'released') throw releasedReservation(reservationId);
            throw unknownReservation(reservationId);
          }
          db.run(
            `INSERT INTO budget_runs (run_id, used) VALUES (?1, ?2)
             ON CONFLICT (run_id) DO UPDATE SET used = used + excluded.used`,
            [row['run_id'] ?? null, actual],
          );
          db.run(
            `INSERT INTO budget_agent_days (agent_id, day_key, used) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id, day_key) DO UPDATE SET used = used + excluded.used`,
            [row['agent_id'] ?? null, row['day_key'] ?? null, actual],
          );
          return 'reconciled';
        });
      },

      async release(reservationId) {
        if (!usableId(reservationId)) throw unknownReservation(String(reservationId));
        const changed = db.run(
          `UPDATE budget_reservations SET state = 'released', settled_at_ms = ?2
           WHERE id = ?1 AND state IN ('reserved', 'expired')`,
          [reservationId, now()],
        );
        if (changed === 1) return 'released';
        const state = db.get('SELECT state FROM budget_reservations WHERE id = ?1', [reservationId])?.[
          'state'
        ];
        if (state === 'released') return 'already_released';
        if (state === 'reconciled') return 'already_reconciled';
        throw unknownReservation(reservationId);
      },

      async usage(query) {
        const valid = checkUsageQuery(query);
        const cutoff = now() - ttlMs;
        return Object.freeze(
          'runId' in valid ? runUsage(valid.runId, cutoff) : dayUsage(valid.agentId, valid.dayKey, cutoff),
        );
      },
    },
    () => db.close(),
  );
}
