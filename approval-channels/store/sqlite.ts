/**
 * The approvals service's store on SQLite (Node's built-in `node:sqlite`), for a single service
 * process. A real file is created mode 0600 in WAL mode; decisions are single conditional
 * statements or `BEGIN IMMEDIATE` transactions, so several processes sharing the file still agree.
 * @module
 */
import { createPrivateFile, immediateTransaction } from '../../db/sqlite.ts';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { AgentRuntimeError } from '../../policy/index.ts';
import type { ApprovalStore } from '../core/types.ts';
import { ApprovalStoreError, ApprovalStoreErrorCode, messageOf } from './errors.ts';
import { guardStore } from './guard.ts';
import {
  ATTEMPT_COLUMNS,
  DELIVERY_COLUMNS,
  REQUEST_COLUMNS,
  SESSION_COLUMNS,
  TOKEN_COLUMNS,
  VOTE_COLUMNS,
  attemptFromRow,
  attemptValues,
  consumeRefusal,
  deliveryFromRow,
  deliveryValues,
  insertSql,
  nonceValues,
  nowValue,
  onceValues,
  requestFromRow,
  requestUpdateSql,
  requestValues,
  sessionFromRow,
  sessionValues,
  tokenFromRow,
  tokenLookup,
  tokenValues,
  usableText,
  voteBlocked,
  voteFromRow,
  voteValues,
  whereSql,
} from './rows.ts';
import type { Row, SqlValue } from './rows.ts';

/** How long a statement waits for another process's write lock before failing. */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** The database file (parent directories are created), or `':memory:'`. */
  readonly file: string;
}

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    run_workflow_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    step INTEGER NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    resource TEXT,
    rationale TEXT,
    rule_id TEXT,
    policy_version TEXT NOT NULL,
    action_digest TEXT NOT NULL,
    eligible TEXT NOT NULL,
    escalation_eligible TEXT NOT NULL,
    escalated INTEGER NOT NULL CHECK (escalated IN (0, 1)),
    quorum INTEGER NOT NULL,
    high_risk INTEGER NOT NULL CHECK (high_risk IN (0, 1)),
    channels TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    denied_by TEXT,
    reason TEXT,
    decided_at_ms INTEGER,
    slack_messages TEXT NOT NULL
  ) STRICT;
  CREATE INDEX requests_pending ON requests (state, expires_at_ms);
  CREATE TABLE votes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES requests (id),
    revision INTEGER NOT NULL,
    principal TEXT NOT NULL,
    decision TEXT NOT NULL,
    channel TEXT NOT NULL,
    reason TEXT,
    at_ms INTEGER NOT NULL,
    UNIQUE (request_id, principal)
  ) STRICT;
  CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    principal TEXT NOT NULL,
    request_id TEXT,
    revision INTEGER,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms INTEGER
  ) STRICT;
  CREATE INDEX tokens_request ON tokens (request_id);
  CREATE TABLE nonces (
    nonce TEXT PRIMARY KEY,
    binding TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms INTEGER
  ) STRICT;
  CREATE INDEX nonces_expiry ON nonces (expires_at_ms);
  CREATE TABLE sessions (
    hash TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX sessions_expiry ON sessions (expires_at_ms);
  CREATE TABLE seen (
    id TEXT PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX seen_expiry ON seen (expires_at_ms);
  CREATE TABLE attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT,
    channel TEXT NOT NULL,
    action TEXT NOT NULL,
    principal TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    at_ms INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX attempts_request ON attempts (request_id, seq);
  CREATE INDEX attempts_channel ON attempts (channel, seq);
  CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    at_ms INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX deliveries_request ON deliveries (request_id, seq);
  `,
];

const ph = (position: number): string => `?${position}`;

function bind(values: readonly SqlValue[]): SQLInputValue[] {
  return values.map((v) => (typeof v === 'boolean' ? (v ? 1 : 0) : v));
}

/** A thin synchronous wrapper: cached statements, boolean binding, immediate transactions. */
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
    return Number(this.#prepare(sql).run(...bind(values)).changes);
  }

  get(sql: string, values: readonly SqlValue[] = []): Row | undefined {
    return this.#prepare(sql).get(...bind(values));
  }

  all(sql: string, values: readonly SqlValue[] = []): Row[] {
    return this.#prepare(sql).all(...bind(values));
  }

  exec(sql: string): void {
    this.#db.exec(sql);
  }

  /** Runs `fn` in a `BEGIN IMMEDIATE` transaction (the write lock is taken up front). */
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
      throw new ApprovalStoreError(
        ApprovalStoreErrorCode.schemaTooNew,
        `approval store: the database is at schema version ${version}; this agent-runtime knows ${MIGRATIONS.length}`,
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
    db.exec('PRAGMA foreign_keys = ON');
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

/** Opens (creating and migrating as needed) a SQLite approval store. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<ApprovalStore> {
  const { file } = options;
  if (!usableText(file) || file === '') {
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.configInvalid,
      'approval store: invalid SQLite file name',
    );
  }
  let db: Connection;
  try {
    db = openDatabase(file);
  } catch (error) {
    if (error instanceof AgentRuntimeError) throw error;
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.openFailed,
      `approval store: cannot open SQLite database ${file}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  return guardStore('sqlite approval store', sqliteMethods(db), () => db.close());
}

const requestsInsert = insertSql('requests', REQUEST_COLUMNS, ph, 'ON CONFLICT (id) DO NOTHING');
const votesInsert = insertSql('votes', VOTE_COLUMNS, ph, 'ON CONFLICT (request_id, principal) DO NOTHING');
const tokensInsert = insertSql('tokens', TOKEN_COLUMNS, ph, 'ON CONFLICT (hash) DO NOTHING');
const noncesInsert = insertSql(
  'nonces',
  ['nonce', 'binding', 'expires_at_ms'],
  ph,
  'ON CONFLICT (nonce) DO NOTHING',
);
const sessionsInsert = insertSql('sessions', SESSION_COLUMNS, ph, 'ON CONFLICT (hash) DO NOTHING');
const attemptsInsert = insertSql('attempts', ATTEMPT_COLUMNS, ph);
const deliveriesInsert = insertSql('deliveries', DELIVERY_COLUMNS, ph);

function duplicate(what: string): ApprovalStoreError {
  return new ApprovalStoreError(
    ApprovalStoreErrorCode.duplicate,
    `approval store: this ${what} already exists`,
  );
}

// SQLite calls are synchronous: the async methods below never interleave within one process.
function sqliteMethods(db: Connection): Omit<ApprovalStore, 'close'> {
  return {
    async putRequest(record) {
      const values = requestValues(record);
      db.run(requestsInsert, values);
      const row = db.get('SELECT * FROM requests WHERE id = ?1', [record.id]);
      if (row === undefined) throw new Error('request vanished after insert');
      return requestFromRow(row);
    },

    async getRequest(id) {
      const row = db.get('SELECT * FROM requests WHERE id = ?1', [id]);
      return row === undefined ? null : requestFromRow(row);
    },

    async listPending(principal) {
      const rows =
        principal === undefined
          ? db.all(`SELECT * FROM requests WHERE state = 'pending' ORDER BY expires_at_ms, id`)
          : db.all(
              `SELECT * FROM requests
               WHERE state = 'pending' AND requester <> ?1 AND agent_id <> ?1
                 AND (EXISTS (SELECT 1 FROM json_each(eligible) WHERE type = 'text' AND value = ?1)
                      OR (escalated = 1 AND EXISTS (SELECT 1 FROM json_each(escalation_eligible)
                                                    WHERE type = 'text' AND value = ?1)))
               ORDER BY expires_at_ms, id`,
              [principal],
            );
      return rows.map(requestFromRow);
    },

    async updateRequest(id, patch, expect) {
      const { text, values } = requestUpdateSql('requests', id, patch, expect, ph);
      const row = db.get(text, values);
      return row === undefined ? null : requestFromRow(row);
    },

    async recordVote(vote) {
      const values = voteValues(vote);
      return db.transaction(() => {
        const current = db.get('SELECT state, revision FROM requests WHERE id = ?1', [vote.requestId]);
        return voteBlocked(current, vote) ?? (db.run(votesInsert, values) === 1 ? 'recorded' : 'duplicate');
      });
    },

    async listVotes(requestId) {
      return db.all('SELECT * FROM votes WHERE request_id = ?1 ORDER BY seq', [requestId]).map(voteFromRow);
    },

    async releaseVote(requestId, principal) {
      db.run('DELETE FROM votes WHERE request_id = ?1 AND principal = ?2', [requestId, principal]);
    },

    async createToken(token) {
      if (db.run(tokensInsert, tokenValues(token)) === 0) throw duplicate('token');
    },

    async peekToken(hash, purpose, nowMs) {
      const row = db.get('SELECT * FROM tokens WHERE hash = ?1', [hash]);
      return tokenLookup(row && tokenFromRow(row), purpose, nowMs);
    },

    async consumeToken(hash, purpose, nowMs) {
      const now = nowValue(nowMs);
      const used = db.get(
        `UPDATE tokens SET used_at_ms = ?3
         WHERE hash = ?1 AND purpose = ?2 AND used_at_ms IS NULL AND expires_at_ms > ?3 RETURNING *`,
        [hash, purpose, now],
      );
      if (used !== undefined) return Object.freeze({ ok: true, token: tokenFromRow(used) });
      const row = db.get('SELECT * FROM tokens WHERE hash = ?1', [hash]);
      return consumeRefusal(row && tokenFromRow(row), purpose, now);
    },

    async invalidateTokens(requestId, nowMs) {
      return db.run(
        `UPDATE tokens SET expires_at_ms = ?2
         WHERE request_id = ?1 AND used_at_ms IS NULL AND expires_at_ms > ?2`,
        [requestId, nowValue(nowMs)],
      );
    },

    async createNonce(nonce, binding, expiresAtMs) {
      if (db.run(noncesInsert, nonceValues(nonce, binding, expiresAtMs)) === 0) throw duplicate('nonce');
    },

    async consumeNonce(nonce, binding, nowMs) {
      const now = nowValue(nowMs);
      return db.transaction(() => {
        db.run('DELETE FROM nonces WHERE expires_at_ms <= ?1', [now]);
        const used = db.run(
          `UPDATE nonces SET used_at_ms = ?3
           WHERE nonce = ?1 AND binding = ?2 AND used_at_ms IS NULL AND expires_at_ms > ?3`,
          [nonce, binding, now],
        );
        return used === 1;
      });
    },

    async createSession(session) {
      const values = sessionValues(session);
      db.transaction(() => {
        db.run('DELETE FROM sessions WHERE expires_at_ms <= ?1', [session.createdAtMs]);
        if (db.run(sessionsInsert, values) === 0) throw duplicate('session');
      });
    },

    async getSession(hash, nowMs) {
      const row = db.get('SELECT * FROM sessions WHERE hash = ?1 AND expires_at_ms > ?2', [
        hash,
        nowValue(nowMs),
      ]);
      return row === undefined ? null : sessionFromRow(row);
    },

    async deleteSession(hash) {
      db.run('DELETE FROM sessions WHERE hash = ?1', [hash]);
    },

    async rememberOnce(key, expiresAtMs, nowMs) {
      const values = onceValues(key, expiresAtMs, nowMs);
      return db.transaction(() => {
        db.run('DELETE FROM seen WHERE expires_at_ms <= ?1', [values[2]]);
        const claimed = db.get(
          `INSERT INTO seen (id, expires_at_ms) VALUES (?1, ?2)
           ON CONFLICT (id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms WHERE seen.expires_at_ms <= ?3
           RETURNING id`,
          values,
        );
        return claimed !== undefined;
      });
    },

    async recordAttempt(attempt) {
      db.run(attemptsInsert, attemptValues(attempt));
    },

    async listAttempts(filter) {
      const where = whereSql(
        [
          ['request_id', filter?.requestId],
          ['channel', filter?.channel],
        ],
        ph,
      );
      return db
        .all(`SELECT * FROM attempts WHERE ${where.sql} ORDER BY seq`, where.values)
        .map(attemptFromRow);
    },

    async recordDelivery(delivery) {
      db.run(deliveriesInsert, deliveryValues(delivery));
    },

    async listDeliveries(requestId) {
      return db
        .all('SELECT * FROM deliveries WHERE request_id = ?1 ORDER BY seq', [requestId])
        .map(deliveryFromRow);
    },
  };
}
