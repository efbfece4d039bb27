/**
 * The approvals service's store on PostgreSQL (`pg` pool), for one or several service processes
 * sharing a database. Tables live in their own schema, created and migrated on open under an
 * advisory lock. Decisions are single conditional statements, or a transaction that locks the
 * request row (`FOR SHARE`) for a vote.
 * @module
 */
import { inTransaction, jsonAsText, migrateSchema } from '../../db/postgres.ts';
import pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
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
  voteBlocked,
  voteFromRow,
  voteValues,
  whereSql,
} from './rows.ts';
import type { Row, SqlValue } from './rows.ts';

/** The schema the tables are created in unless configured otherwise. */
export const DEFAULT_POSTGRES_SCHEMA = 'agent_runtime_approvals';

/** Schema names accepted (unquoted PostgreSQL identifiers, at most 63 bytes). */
export const POSTGRES_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** A libpq-style URL, e.g. `postgres://user@host:5432/db`. */
  readonly connectionString: string;
  /** Schema of the store's tables (created if missing); default {@link DEFAULT_POSTGRES_SCHEMA}. */
  readonly schema?: string | undefined;
}

const POOL_SIZE = 10;
const CONNECT_TIMEOUT_MS = 10_000;

function migrations(s: string): readonly string[] {
  return [
    `
    CREATE TABLE ${s}.requests (
      id text PRIMARY KEY,
      revision bigint NOT NULL,
      run_workflow_id text NOT NULL,
      agent_id text NOT NULL,
      requester text NOT NULL,
      step bigint NOT NULL,
      tool text NOT NULL,
      args jsonb NOT NULL,
      resource text,
      rationale text,
      rule_id text,
      policy_version text NOT NULL,
      action_digest text NOT NULL,
      eligible jsonb NOT NULL,
      escalation_eligible jsonb NOT NULL,
      escalated boolean NOT NULL,
      quorum bigint NOT NULL,
      high_risk boolean NOT NULL,
      channels jsonb NOT NULL,
      created_at_ms bigint NOT NULL,
      expires_at_ms bigint NOT NULL,
      state text NOT NULL,
      approved_by jsonb NOT NULL,
      denied_by text,
      reason text,
      decided_at_ms bigint,
      slack_messages jsonb NOT NULL
    );
    CREATE INDEX requests_pending ON ${s}.requests (state, expires_at_ms);
    CREATE TABLE ${s}.votes (
      seq bigserial PRIMARY KEY,
      request_id text NOT NULL REFERENCES ${s}.requests (id),
      revision bigint NOT NULL,
      principal text NOT NULL,
      decision text NOT NULL,
      channel text NOT NULL,
      reason text,
      at_ms bigint NOT NULL,
      UNIQUE (request_id, principal)
    );
    CREATE TABLE ${s}.tokens (
      hash text PRIMARY KEY,
      purpose text NOT NULL,
      principal text NOT NULL,
      request_id text,
      revision bigint,
      created_at_ms bigint NOT NULL,
      expires_at_ms bigint NOT NULL,
      used_at_ms bigint
    );
    CREATE INDEX tokens_request ON ${s}.tokens (request_id);
    CREATE TABLE ${s}.nonces (
      nonce text PRIMARY KEY,
      binding text NOT NULL,
      expires_at_ms bigint NOT NULL,
      used_at_ms bigint
    );
    CREATE INDEX nonces_expiry ON ${s}.nonces (expires_at_ms);
    CREATE TABLE ${s}.sessions (
      hash text PRIMARY KEY,
      principal text NOT NULL,
      csrf text NOT NULL,
      created_at_ms bigint NOT NULL,
      expires_at_ms bigint NOT NULL
    );
    CREATE INDEX sessions_expiry ON ${s}.sessions (expires_at_ms);
    CREATE TABLE ${s}.seen (
      id text PRIMARY KEY,
      expires_at_ms bigint NOT NULL
    );
    CREATE INDEX seen_expiry ON ${s}.seen (expires_at_ms);
    CREATE TABLE ${s}.attempts (
      seq bigserial PRIMARY KEY,
      request_id text,
      channel text NOT NULL,
      action text NOT NULL,
      principal text,
      outcome text NOT NULL,
      detail jsonb NOT NULL,
      at_ms bigint NOT NULL
    );
    CREATE INDEX attempts_request ON ${s}.attempts (request_id, seq);
    CREATE INDEX attempts_channel ON ${s}.attempts (channel, seq);
    CREATE TABLE ${s}.deliveries (
      seq bigserial PRIMARY KEY,
      request_id text NOT NULL,
      channel text NOT NULL,
      kind text NOT NULL,
      principal text NOT NULL,
      address text NOT NULL,
      status text NOT NULL,
      error text,
      at_ms bigint NOT NULL
    );
    CREATE INDEX deliveries_request ON ${s}.deliveries (request_id, seq);
    `,
  ];
}

const ph = (position: number): string => `$${position}`;

/** Creates the schema and applies the migrations it lacks. */
function migrate(pool: pg.Pool, schema: string): Promise<void> {
  return migrateSchema(pool, {
    schema,
    lockName: 'agent-runtime-approvals',
    steps: migrations(`"${schema}"`),
    tooNew: (version, known) =>
      new ApprovalStoreError(
        ApprovalStoreErrorCode.schemaTooNew,
        `approval store: schema ${schema} is at version ${version}; this agent-runtime knows ${known}`,
      ),
  });
}

/** Opens a PostgreSQL approval store: connects, creates the schema and migrates it. */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<ApprovalStore> {
  const schema = options.schema ?? DEFAULT_POSTGRES_SCHEMA;
  if (!POSTGRES_SCHEMA_PATTERN.test(schema)) {
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.configInvalid,
      `approval store: invalid schema name ${JSON.stringify(schema)} (lower-case letters, digits, _)`,
    );
  }
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    types: jsonAsText(),
  });
  // an idle client losing its connection must not crash the service; the next query reconnects
  pool.on('error', () => {});
  try {
    await migrate(pool, schema);
  } catch (error) {
    await pool.end();
    if (error instanceof AgentRuntimeError) throw error;
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.openFailed,
      `approval store: cannot open PostgreSQL schema ${schema}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  return guardStore('postgres approval store', postgresMethods(pool, `"${schema}"`), () => pool.end());
}

function duplicate(what: string): ApprovalStoreError {
  return new ApprovalStoreError(
    ApprovalStoreErrorCode.duplicate,
    `approval store: this ${what} already exists`,
  );
}

type Queryable = Pick<pg.Pool, 'query'> | PoolClient;

async function rows(db: Queryable, text: string, values: readonly SqlValue[] = []): Promise<Row[]> {
  const result = await db.query<QueryResultRow>(text, [...values]);
  return result.rows;
}

async function changes(db: Queryable, text: string, values: readonly SqlValue[]): Promise<number> {
  return (await db.query(text, [...values])).rowCount ?? 0;
}

function postgresMethods(pool: pg.Pool, s: string): Omit<ApprovalStore, 'close'> {
  const requestsInsert = insertSql(`${s}.requests`, REQUEST_COLUMNS, ph, 'ON CONFLICT (id) DO NOTHING');
  const votesInsert = insertSql(
    `${s}.votes`,
    VOTE_COLUMNS,
    ph,
    'ON CONFLICT (request_id, principal) DO NOTHING',
  );
  const tokensInsert = insertSql(`${s}.tokens`, TOKEN_COLUMNS, ph, 'ON CONFLICT (hash) DO NOTHING');
  const noncesInsert = insertSql(
    `${s}.nonces`,
    ['nonce', 'binding', 'expires_at_ms'],
    ph,
    'ON CONFLICT (nonce) DO NOTHING',
  );
  const sessionsInsert = insertSql(`${s}.sessions`, SESSION_COLUMNS, ph, 'ON CONFLICT (hash) DO NOTHING');
  const attemptsInsert = insertSql(`${s}.attempts`, ATTEMPT_COLUMNS, ph);
  const deliveriesInsert = insertSql(`${s}.deliveries`, DELIVERY_COLUMNS, ph);

  const getRequest = async (id: string): Promise<Row | undefined> =>
    (await rows(pool, `SELECT * FROM ${s}.requests WHERE id = $1`, [id]))[0];
  const getToken = async (hash: string): Promise<Row | undefined> =>
    (await rows(pool, `SELECT * FROM ${s}.tokens WHERE hash = $1`, [hash]))[0];

  return {
    async putRequest(record) {
      await changes(pool, requestsInsert, requestValues(record));
      const row = await getRequest(record.id);
      if (row === undefined) throw new Error('request vanished after insert');
      return requestFromRow(row);
    },

    async getRequest(id) {
      const row = await getRequest(id);
      return row === undefined ? null : requestFromRow(row);
    },

    async listPending(principal) {
      const found =
        principal === undefined
          ? await rows(pool, `SELECT * FROM ${s}.requests WHERE state = 'pending' ORDER BY expires_at_ms, id`)
          : await rows(
              pool,
              `SELECT * FROM ${s}.requests
               WHERE state = 'pending' AND requester <> $1 AND agent_id <> $1
                 AND (eligible ? $1 OR (escalated AND escalation_eligible ? $1))
               ORDER BY expires_at_ms, id`,
              [principal],
            );
      return found.map(requestFromRow);
    },

    async updateRequest(id, patch, expect) {
      const { text, values } = requestUpdateSql(`${s}.requests`, id, patch, expect, ph);
      const row = (await rows(pool, text, values))[0];
      return row === undefined ? null : requestFromRow(row);
    },

    async recordVote(vote) {
      const values = voteValues(vote);
      return inTransaction(pool, async (client) => {
        // FOR SHARE: a concurrent finalize waits for this vote (and this vote for it)
        const current = (
          await rows(client, `SELECT state, revision FROM ${s}.requests WHERE id = $1 FOR SHARE`, [
            vote.requestId,
          ])
        )[0];
        const blocked = voteBlocked(current, vote);
        if (blocked !== null) return blocked;
        return (await changes(client, votesInsert, values)) === 1 ? 'recorded' : 'duplicate';
      });
    },

    async listVotes(requestId) {
      return (
        await rows(pool, `SELECT * FROM ${s}.votes WHERE request_id = $1 ORDER BY seq`, [requestId])
      ).map(voteFromRow);
    },

    async releaseVote(requestId, principal) {
      await changes(pool, `DELETE FROM ${s}.votes WHERE request_id = $1 AND principal = $2`, [
        requestId,
        principal,
      ]);
    },

    async createToken(token) {
      if ((await changes(pool, tokensInsert, tokenValues(token))) === 0) throw duplicate('token');
    },

    async peekToken(hash, purpose, nowMs) {
      const row = await getToken(hash);
      return tokenLookup(row && tokenFromRow(row), purpose, nowMs);
    },

    async consumeToken(hash, purpose, nowMs) {
      const now = nowValue(nowMs);
      const used = (
        await rows(
          pool,
          `UPDATE ${s}.tokens SET used_at_ms = $3
           WHERE hash = $1 AND purpose = $2 AND used_at_ms IS NULL AND expires_at_ms > $3 RETURNING *`,
          [hash, purpose, now],
        )
      )[0];
      if (used !== undefined) return Object.freeze({ ok: true, token: tokenFromRow(used) });
      const row = await getToken(hash);
      return consumeRefusal(row && tokenFromRow(row), purpose, now);
    },

    async invalidateTokens(requestId, nowMs) {
      return changes(
        pool,
        `UPDATE ${s}.tokens SET expires_at_ms = $2
         WHERE request_id = $1 AND used_at_ms IS NULL AND expires_at_ms > $2`,
        [requestId, nowValue(nowMs)],
      );
    },

    async createNonce(nonce, binding, expiresAtMs) {
      if ((await changes(pool, noncesInsert, nonceValues(nonce, binding, expiresAtMs))) === 0) {
        throw duplicate('nonce');
      }
    },

    async consumeNonce(nonce, binding, nowMs) {
      const now = nowValue(nowMs);
      await changes(pool, `DELETE FROM ${s}.nonces WHERE expires_at_ms <= $1`, [now]);
      const used = await changes(
        pool,
        `UPDATE ${s}.nonces SET used_at_ms = $3
         WHERE nonce = $1 AND binding = $2 AND used_at_ms IS NULL AND expires_at_ms > $3`,
        [nonce, binding, now],
      );
      return used === 1;
    },

    async createSession(session) {
      const values = sessionValues(session);
      await changes(pool, `DELETE FROM ${s}.sessions WHERE expires_at_ms <= $1`, [session.createdAtMs]);
      if ((await changes(pool, sessionsInsert, values)) === 0) throw duplicate('session');
    },

    async getSession(hash, nowMs) {
      const row = (
        await rows(pool, `SELECT * FROM ${s}.sessions WHERE hash = $1 AND expires_at_ms > $2`, [
          hash,
          nowValue(nowMs),
        ])
      )[0];
      return row === undefined ? null : sessionFromRow(row);
    },

    async deleteSession(hash) {
      await changes(pool, `DELETE FROM ${s}.sessions WHERE hash = $1`, [hash]);
    },

    async rememberOnce(key, expiresAtMs, nowMs) {
      const values = onceValues(key, expiresAtMs, nowMs);
      await changes(pool, `DELETE FROM ${s}.seen WHERE expires_at_ms <= $1`, [values[2]]);
      // an expired entry the prune raced past is taken over by the upsert
      const claimed = await rows(
        pool,
        `INSERT INTO ${s}.seen AS seen (id, expires_at_ms) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms WHERE seen.expires_at_ms <= $3
         RETURNING id`,
        values,
      );
      return claimed.length === 1;
    },

    async recordAttempt(attempt) {
      await changes(pool, attemptsInsert, attemptValues(attempt));
    },

    async listAttempts(filter) {
      const where = whereSql(
        [
          ['request_id', filter?.requestId],
          ['channel', filter?.channel],
        ],
        ph,
      );
      return (
        await rows(pool, `SELECT * FROM ${s}.attempts WHERE ${where.sql} ORDER BY seq`, where.values)
      ).map(attemptFromRow);
    },

    async recordDelivery(delivery) {
      await changes(pool, deliveriesInsert, deliveryValues(delivery));
    },

    async listDeliveries(requestId) {
      return (
        await rows(pool, `SELECT * FROM ${s}.deliveries WHERE request_id = $1 ORDER BY seq`, [requestId])
      ).map(deliveryFromRow);
    },
  };
}
