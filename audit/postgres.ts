/**
 * The audit store on PostgreSQL (`pg` pool), for one or several writer processes sharing a
 * database. Tables live in their own schema, created and migrated on open under an advisory lock.
 * Every append is one transaction that locks the stream's head row (`SELECT … FOR UPDATE`),
 * inserts the chained records and moves the head: concurrent appends queue on that row.
 * @module
 */
import { inTransaction, migrateSchema } from '../db/postgres.ts';
import pg from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
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

/** The schema the tables are created in unless configured otherwise. */
export const DEFAULT_AUDIT_POSTGRES_SCHEMA = 'agent_runtime_audit';

/** Schema names accepted (unquoted PostgreSQL identifiers, at most 63 bytes). */
export const AUDIT_POSTGRES_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** Options of {@link openPostgresAuditStore}. */
export interface PostgresAuditStoreOptions extends AuditStoreOptions {
  /** A libpq-style URL, e.g. `postgres://user@host:5432/db`. */
  readonly connectionString: string;
  /** Schema of the store's tables (created if missing); default {@link DEFAULT_AUDIT_POSTGRES_SCHEMA}. */
  readonly schema?: string | undefined;
}

const POOL_SIZE = 10;
const CONNECT_TIMEOUT_MS = 10_000;

function migrations(s: string): readonly string[] {
  return [
    `
    CREATE TABLE ${s}.records (
      stream text NOT NULL,
      seq bigint NOT NULL,
      ts text COLLATE "C" NOT NULL,
      source text NOT NULL,
      agent text,
      run text,
      step bigint,
      kind text NOT NULL,
      attrs text NOT NULL,
      prev_hash text NOT NULL,
      hash text NOT NULL,
      PRIMARY KEY (stream, seq)
    );
    CREATE INDEX records_ts ON ${s}.records (ts);
    CREATE INDEX records_kind ON ${s}.records (kind, ts);
    CREATE INDEX records_agent ON ${s}.records (agent, ts);
    CREATE INDEX records_run ON ${s}.records (run, ts);
    CREATE TABLE ${s}.heads (
      stream text PRIMARY KEY,
      seq bigint NOT NULL,
      hash text NOT NULL
    );
    CREATE TABLE ${s}.checkpoints (
      stream text NOT NULL,
      seq bigint NOT NULL,
      hash text NOT NULL,
      ts text NOT NULL,
      key_id text NOT NULL,
      signature text NOT NULL,
      PRIMARY KEY (stream, seq, key_id)
    );
    `,
  ];
}

const ph = (position: number): string => `$${position}`;

/** Creates the schema and applies the migrations it lacks. */
function migrate(pool: pg.Pool, schema: string): Promise<void> {
  return migrateSchema(pool, {
    schema,
    lockName: 'agent-runtime-audit',
    steps: migrations(`"${schema}"`),
    tooNew: (version, known) =>
      new AuditStoreError(
        AuditStoreErrorCode.schemaTooNew,
        `audit store: schema ${schema} is at version ${version}; this agent-runtime knows ${known}`,
      ),
  });
}

/** Opens a PostgreSQL audit store: connects, creates the schema and migrates it. */
export async function openPostgresAuditStore(options: PostgresAuditStoreOptions): Promise<AuditStore> {
  const schema = options.schema ?? DEFAULT_AUDIT_POSTGRES_SCHEMA;
  if (!AUDIT_POSTGRES_SCHEMA_PATTERN.test(schema)) {
    throw new AuditStoreError(
      AuditStoreErrorCode.configInvalid,
      `audit store: invalid schema name ${JSON.stringify(schema)} (lower-case letters, digits, _)`,
    );
  }
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
  pool.on('error', () => {});
  try {
    await migrate(pool, schema);
  } catch (error) {
    await pool.end();
    if (error instanceof AgentRuntimeError) throw error;
    throw new AuditStoreError(
      AuditStoreErrorCode.openFailed,
      `audit store: cannot open PostgreSQL schema ${schema}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  return createAuditStore('postgres audit store', postgresBackend(pool, `"${schema}"`), options);
}

type Queryable = Pick<pg.Pool, 'query'> | PoolClient;

async function rows(db: Queryable, text: string, values: readonly SqlValue[] = []): Promise<Row[]> {
  const result = await db.query<QueryResultRow>(text, [...values]);
  return result.rows;
}

function headOf(row: Row | undefined): ChainHead {
  return row === undefined ? EMPTY_HEAD : { seq: Number(row['seq']), hash: String(row['hash']) };
}

function postgresBackend(pool: pg.Pool, s: string): AuditBackend {
  const recordsInsert = insertSql(`${s}.records`, RECORD_COLUMNS, ph);
  const checkpointsInsert = insertSql(
    `${s}.checkpoints`,
    CHECKPOINT_COLUMNS,
    ph,
    'ON CONFLICT (stream, seq, key_id) DO NOTHING',
  );
  return {
    append(stream, build) {
      return inTransaction(pool, async (client) => {
        await client.query(
          `INSERT INTO ${s}.heads (stream, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (stream) DO NOTHING`,
          [stream, EMPTY_HEAD.hash],
        );
        const head = headOf(
          (await rows(client, `SELECT seq, hash FROM ${s}.heads WHERE stream = $1 FOR UPDATE`, [stream]))[0],
        );
        const records = build(head);
        for (const record of records) await client.query(recordsInsert, recordValues(record));
        const last = records.at(-1);
        if (last !== undefined) {
          await client.query(`UPDATE ${s}.heads SET seq = $2, hash = $3 WHERE stream = $1`, [
            stream,
            last.seq,
            last.hash,
          ]);
        }
        return records;
      });
    },
    async head(stream) {
      return headOf((await rows(pool, `SELECT seq, hash FROM ${s}.heads WHERE stream = $1`, [stream]))[0]);
    },
    async read(stream, fromSeq, limit) {
      const found = await rows(
        pool,
        `SELECT * FROM ${s}.records WHERE stream = $1 AND seq >= $2 ORDER BY seq LIMIT $3`,
        [stream, fromSeq, limit],
      );
      return found.map(recordFromRow);
    },
    async search(filter) {
      const where = searchWhere(filter, ph, (column, p) => `strpos(lower(${column}), lower(${p})) > 0`);
      const values = [...where.values, filter.limit];
      const found = await rows(
        pool,
        `SELECT * FROM ${s}.records WHERE ${where.sql} ORDER BY ts, stream, seq LIMIT ${ph(values.length)}`,
        values,
      );
      return found.map(recordFromRow);
    },
    async putCheckpoint(checkpoint) {
      await pool.query(checkpointsInsert, checkpointValues(checkpoint));
      const row = (
        await rows(pool, `SELECT * FROM ${s}.checkpoints WHERE stream = $1 AND seq = $2 AND key_id = $3`, [
          checkpoint.stream,
          checkpoint.seq,
          checkpoint.keyId,
        ])
      )[0];
      if (row === undefined) throw new Error('checkpoint vanished after insert');
      return checkpointFromRow(row);
    },
    async listCheckpoints(stream) {
      const found = await rows(
        pool,
        `SELECT * FROM ${s}.checkpoints WHERE stream = $1 ORDER BY seq, key_id`,
        [stream],
      );
      return found.map(checkpointFromRow);
    },
    close() {
      return pool.end();
    },
  };
}
