/**
 * The audit store on SQLite (`node:sqlite`). A real file is created mode 0600 in WAL mode; every
 * append is one `BEGIN IMMEDIATE` transaction that reads the stream's head row, inserts the
 * chained records and moves the head, so several connections (threads, processes) sharing the
 * file still produce one chain per stream.
 * @module
 */
import { createPrivateFile, immediateTransaction } from '../db/sqlite.ts';
import { DatabaseSync } from 'node:sqlite';
import type { StatementSync } from 'node:sqlite';
import { AgentRuntimeError } from '../policy/errors.ts';
import { EMPTY_HEAD } from './chain.ts';
import type { ChainHead } from './chain.ts';
import { AuditStoreError, AuditStoreErrorCode, messageOf } from './errors.ts';
import {
  CHECKPOINT_COLUMNS,
  RECORD_COLUMNS,
  checkpointFromRow,
  checkpointValues,
  insertSql,
  recordFromRow,
  recordValues,
  searchWhere,
} from './rows.ts';
import type { Row, SqlValue } from './rows.ts';
import { createAuditStore } from './store.ts';
import type { AuditBackend, AuditStore, AuditStoreOptions } from './store.ts';

/** How long a statement waits for another connection's write lock before failing. */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;

/** Options of {@link openSqliteAuditStore}. */
export interface SqliteAuditStoreOptions extends AuditStoreOptions {
  /** The database file (parent directories are created), or `':memory:'`. */
  readonly file: string;
}

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE audit_records (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    source TEXT NOT NULL,
    agent TEXT,
    run TEXT,
    step INTEGER,
    kind TEXT NOT NULL,
    attrs TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (stream, seq)
  ) STRICT;
  CREATE INDEX audit_records_ts ON audit_records (ts);
  CREATE INDEX audit_records_kind ON audit_records (kind, ts);
  CREATE INDEX audit_records_agent ON audit_records (agent, ts);
  CREATE INDEX audit_records_run ON audit_records (run, ts);
  CREATE TABLE audit_heads (
    stream TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
  ) STRICT;
  CREATE TABLE audit_checkpoints (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    ts TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (stream, seq, key_id)
  ) STRICT;
  `,
];

const ph = (position: number): string => `?${position}`;
const recordsInsert = insertSql('audit_records', RECORD_COLUMNS, ph);
const checkpointsInsert = insertSql(
  'audit_checkpoints',
  CHECKPOINT_COLUMNS,
  ph,
  'ON CONFLICT (stream, seq, key_id) DO NOTHING',
);

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

  run(sql: string, values: readonly SqlValue[] = []): number {
    return Number(this.#prepare(sql).run(...values).changes);
  }

  get(sql: string, values: readonly SqlValue[] = []): Row | undefined {
    return this.#prepare(sql).get(...values);
  }

  all(sql: string, values: readonly SqlValue[] = []): Row[] {
    return this.#prepare(sql).all(...values);
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
      throw new AuditStoreError(
        AuditStoreErrorCode.schemaTooNew,
        `audit store: the database is at schema version ${version}; this agent-runtime knows ${MIGRATIONS.length}`,
      );
    }
    for (const migration of MIGRATIONS.slice(version)) db.exec(migration);
    db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
  });
}

function prepareDatabase(raw: DatabaseSync, memory: boolean): Connection {
  const db = new Connection(raw);
  db.exec(`PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  if (!memory) {
    const mode = db.get('PRAGMA journal_mode = WAL')?.['journal_mode'];
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
  }
  migrate(db);
  return db;
}

/** Opens (creating and migrating as needed) a SQLite audit store. */
export async function openSqliteAuditStore(options: SqliteAuditStoreOptions): Promise<AuditStore> {
  const { file } = options;
  if (typeof file !== 'string' || file === '' || file.includes('\0') || !file.isWellFormed()) {
    throw new AuditStoreError(AuditStoreErrorCode.configInvalid, 'audit store: invalid SQLite file name');
  }
  const memory = file === ':memory:';
  let raw: DatabaseSync | undefined;
  let db: Connection;
  try {
    if (!memory) {
      createPrivateFile(file);
    }
    raw = new DatabaseSync(file);
    db = prepareDatabase(raw, memory);
  } catch (error) {
    raw?.close();
    if (error instanceof AgentRuntimeError) throw error;
    throw new AuditStoreError(
      AuditStoreErrorCode.openFailed,
      `audit store: cannot open SQLite database ${file}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  return createAuditStore(
    'sqlite audit store',
    sqliteBackend(db, () => db.close()),
    options,
  );
}

/**
 * An audit store on an already open database handle (migrated on the spot). The caller keeps
 * the handle and closes it after the store; for embedding and for tests that inspect the
 * database directly (`:memory:`).
 */
export function sqliteAuditStoreOn(database: DatabaseSync, options: AuditStoreOptions = {}): AuditStore {
  const db = prepareDatabase(database, true);
  return createAuditStore(
    'sqlite audit store',
    sqliteBackend(db, () => {}),
    options,
  );
}

// node:sqlite is synchronous: the backend's methods never interleave within one process.
function sqliteBackend(db: Connection, release: () => void): AuditBackend {
  const head = (stream: string): ChainHead => {
    const row = db.get('SELECT seq, hash FROM audit_heads WHERE stream = ?1', [stream]);
    return row === undefined ? EMPTY_HEAD : { seq: Number(row['seq']), hash: String(row['hash']) };
  };
  return {
    async append(stream, build) {
      return db.transaction(() => {
        const records = build(head(stream));
        for (const record of records) db.run(recordsInsert, recordValues(record));
        const last = records.at(-1);
        if (last !== undefined) {
          db.run(
            `INSERT INTO audit_heads (stream, seq, hash) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`,
            [stream, last.seq, last.hash],
          );
        }
        return records;
      });
    },
    async head(stream) {
      return head(stream);
    },
    async read(stream, fromSeq, limit) {
      return db
        .all('SELECT * FROM audit_records WHERE stream = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3', [
          stream,
          fromSeq,
          limit ?? -1,
        ])
        .map(recordFromRow);
    },
    async search(filter) {
      const where = searchWhere(filter, ph, (column, p) => `instr(lower(${column}), lower(${p})) > 0`);
      const values = [...where.values, filter.limit];
      return db
        .all(
          `SELECT * FROM audit_records WHERE ${where.sql} ORDER BY ts, stream, seq LIMIT ${ph(values.length)}`,
          values,
        )
        .map(recordFromRow);
    },
    async putCheckpoint(checkpoint) {
      db.run(checkpointsInsert, checkpointValues(checkpoint));
      const row = db.get('SELECT * FROM audit_checkpoints WHERE stream = ?1 AND seq = ?2 AND key_id = ?3', [
        checkpoint.stream,
        checkpoint.seq,
        checkpoint.keyId,
      ]);
      if (row === undefined) throw new Error('checkpoint vanished after insert');
      return checkpointFromRow(row);
    },
    async listCheckpoints(stream) {
      return db
        .all('SELECT * FROM audit_checkpoints WHERE stream = ?1 ORDER BY seq, key_id', [stream])
        .map(checkpointFromRow);
    },
    close() {
      release();
    },
  };
}
