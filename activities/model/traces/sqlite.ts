/**
 * The trace store on SQLite (Node's built-in `node:sqlite`): a table of JSON records with the
 * columns searched by (`agent_id`, `run_id`, `ts_ms`, `step`) and an FTS5 table over each trace's
 * searchable text, written in one transaction. A real file is created mode 0600 in WAL mode; give
 * the traces their own file (the schema version is the file's `user_version`).
 * @module
 */
import { createPrivateFile, immediateTransaction } from '../../../db/sqlite.ts';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { AgentRuntimeError } from '../../../policy/errors.ts';
import { TraceConfigError, TraceErrorCode, TraceStoreError, messageOf } from './errors.ts';
import { HIGHLIGHT, SNIPPET_WORDS, checkQuery, toFts5 } from './query.ts';
import { searchText, traceFromJson, usableText, validateTrace } from './record.ts';
import type { EncodedTrace } from './record.ts';
import { guardTraceStore } from './store.ts';
import type { TraceSearchHit, TraceStore } from './store.ts';

/** How long a statement waits for another process's write lock before failing. */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;

/** Options of {@link openSqliteTraceStore}. */
export interface SqliteTraceStoreOptions {
  /** The database file (parent directories are created), or `':memory:'`. */
  readonly file: string;
}

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE traces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    ts_ms INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    record TEXT NOT NULL
  ) STRICT;
  CREATE INDEX traces_ts ON traces (ts_ms, id);
  CREATE INDEX traces_agent ON traces (agent_id, ts_ms);
  CREATE INDEX traces_run ON traces (run_id, step);
  CREATE VIRTUAL TABLE traces_fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
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

  get(sql: string, values: readonly SQLInputValue[] = []): Row | undefined {
    return this.#prepare(sql).get(...values);
  }

  all(sql: string, values: readonly SQLInputValue[] = []): Row[] {
    return this.#prepare(sql).all(...values);
  }

  run(sql: string, values: readonly SQLInputValue[] = []): void {
    this.#prepare(sql).run(...values);
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
    const version = Number(db.get('PRAGMA user_version')?.['user_version'] ?? 0);
    if (version > MIGRATIONS.length) {
      throw new TraceStoreError(
        TraceErrorCode.schemaTooNew,
        `trace store: the database is at schema version ${version}; this agent-runtime knows ${MIGRATIONS.length}`,
      );
    }
    for (const migration of MIGRATIONS.slice(version)) db.exec(migration);
    db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
  });
}

function openDatabase(file: string): Connection {
  const memory = file === ':memory:';
  if (!memory) {
    createPrivateFile(file);
  }
  const db = new Connection(new DatabaseSync(file));
  try {
    db.exec(`PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
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

/** Opens (creating and migrating as needed) a SQLite trace store. */
export async function openSqliteTraceStore(options: SqliteTraceStoreOptions): Promise<TraceStore> {
  const { file } = options;
  if (!usableText(file) || file === '') throw new TraceConfigError('trace store: invalid SQLite file name');
  let db: Connection;
  try {
    db = openDatabase(file);
  } catch (error) {
    if (error instanceof AgentRuntimeError) throw error;
    throw new TraceStoreError(
      TraceErrorCode.openFailed,
      `trace store: cannot open SQLite database ${file}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  return guardTraceStore('sqlite trace store', sqliteMethods(db), () => db.close());
}

const INSERT = `INSERT INTO traces (id, ts_ms, agent_id, run_id, step, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
  ON CONFLICT (id) DO NOTHING RETURNING seq`;
const INSERT_FTS = 'INSERT INTO traces_fts (rowid, body) VALUES (?1, ?2)';

// SQLite calls are synchronous: the async methods below never interleave within one process.
function sqliteMethods(db: Connection): Omit<TraceStore, 'close'> {
  const insert = (encoded: readonly EncodedTrace[]): number => {
    let added = 0;
    for (const { trace, json } of encoded) {
      const row = db.get(INSERT, [trace.id, trace.ts, trace.agentId, trace.runId, trace.step, json]);
      if (row === undefined) continue;
      db.run(INSERT_FTS, [row['seq'] ?? null, searchText(trace)]);
      added++;
    }
    return added;
  };

  return {
    async append(trace) {
      const encoded = validateTrace(trace);
      return db.transaction(() => insert([encoded])) === 1;
    },

    async appendMany(traces) {
      const encoded = traces.map(validateTrace);
      return encoded.length === 0 ? 0 : db.transaction(() => insert(encoded));
    },

    async search(query) {
      const checked = checkQuery(query);
      if (checked === null) return [];
      const values: SQLInputValue[] = [];
      const bind = (value: SQLInputValue): string => {
        values.push(value);
        return `?${values.length}`;
      };
      const where: string[] = [];
      let from = 'traces t';
      let snippet = 'NULL';
      if (checked.groups !== null) {
        from = 'traces_fts JOIN traces t ON t.seq = traces_fts.rowid';
        where.push(`traces_fts MATCH ${bind(toFts5(checked.groups))}`);
        snippet = `snippet(traces_fts, 0, ${bind(HIGHLIGHT.start)}, ${bind(HIGHLIGHT.end)}, '…', ${SNIPPET_WORDS})`;
      }
      if (checked.agentId !== undefined) where.push(`t.agent_id = ${bind(checked.agentId)}`);
      if (checked.runId !== undefined) where.push(`t.run_id = ${bind(checked.runId)}`);
      if (checked.since !== undefined) where.push(`t.ts_ms >= ${bind(checked.since)}`);
      const sql = `SELECT t.record AS record, ${snippet} AS snippet FROM ${from}
        ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`}
        ORDER BY t.ts_ms DESC, t.id DESC LIMIT ${bind(checked.limit)}`;
      return db.all(sql, values).map((row): TraceSearchHit => ({
        trace: traceFromJson(row['record']),
        snippet: typeof row['snippet'] === 'string' ? row['snippet'] : null,
      }));
    },

    async byRun(runId) {
      if (!usableText(runId)) return [];
      return db
        .all('SELECT record FROM traces WHERE run_id = ?1 ORDER BY step, ts_ms, id', [runId])
        .map((row) => traceFromJson(row['record']));
    },
  };
}
