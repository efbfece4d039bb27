/**
 * The trace store on PostgreSQL (`pg` pool): a table of JSON records (`jsonb`) with the columns
 * searched by, the searchable text, and a `tsvector` of its folded words under a GIN index,
 * queried with `websearch_to_tsquery('simple', …)`. Tables live in their own schema, created and
 * migrated on open under an advisory lock.
 * @module
 */
import { inTransaction, jsonAsText, migrateSchema } from '../../../db/postgres.ts';
import pg from 'pg';
import type { PoolClient } from 'pg';
import { AgentRuntimeError } from '../../../policy/errors.ts';
import { TraceConfigError, TraceErrorCode, TraceStoreError, messageOf } from './errors.ts';
import { HIGHLIGHT, SNIPPET_WORDS, checkQuery, foldedText, toWebsearch } from './query.ts';
import { searchText, traceFromJson, usableText, validateTrace } from './record.ts';
import type { EncodedTrace } from './record.ts';
import { guardTraceStore } from './store.ts';
import type { TraceSearchHit, TraceStore } from './store.ts';

/** The schema the tables are created in unless configured otherwise. */
export const DEFAULT_TRACE_SCHEMA = 'agent_runtime_traces';

/** Schema names accepted (unquoted PostgreSQL identifiers, at most 63 bytes). */
export const POSTGRES_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** Options of {@link openPostgresTraceStore}. */
export interface PostgresTraceStoreOptions {
  /** A libpq-style URL, e.g. `postgres://user@host:5432/db`. */
  readonly connectionString: string;
  /** Schema of the store's tables (created if missing); default {@link DEFAULT_TRACE_SCHEMA}. */
  readonly schema?: string | undefined;
}

const POOL_SIZE = 5;
const CONNECT_TIMEOUT_MS = 10_000;
const HEADLINE_OPTIONS =
  `StartSel=${HIGHLIGHT.start}, StopSel=${HIGHLIGHT.end}, MaxWords=${SNIPPET_WORDS}, ` +
  `MinWords=${Math.ceil(SNIPPET_WORDS / 3)}, ShortWord=0, MaxFragments=1, FragmentDelimiter=…`;

function migrations(s: string): readonly string[] {
  return [
    `
    CREATE TABLE ${s}.traces (
      seq bigserial PRIMARY KEY,
      id text NOT NULL UNIQUE,
      ts_ms bigint NOT NULL,
      agent_id text NOT NULL,
      run_id text NOT NULL,
      step bigint NOT NULL,
      record jsonb NOT NULL,
      search_text text NOT NULL,
      search tsvector NOT NULL
    );
    CREATE INDEX traces_ts ON ${s}.traces (ts_ms, id);
    CREATE INDEX traces_agent ON ${s}.traces (agent_id, ts_ms);
    CREATE INDEX traces_run ON ${s}.traces (run_id, step);
    CREATE INDEX traces_search ON ${s}.traces USING GIN (search);
    `,
  ];
}

/** Creates the schema and applies the migrations it lacks. */
function migrate(pool: pg.Pool, schema: string): Promise<void> {
  return migrateSchema(pool, {
    schema,
    lockName: 'agent-runtime-traces',
    steps: migrations(`"${schema}"`),
    tooNew: (version, known) =>
      new TraceStoreError(
        TraceErrorCode.schemaTooNew,
        `trace store: schema ${schema} is at version ${version}; this agent-runtime knows ${known}`,
      ),
  });
}

/** Opens a PostgreSQL trace store: connects, creates the schema and migrates it. */
export async function openPostgresTraceStore(options: PostgresTraceStoreOptions): Promise<TraceStore> {
  const schema = options.schema ?? DEFAULT_TRACE_SCHEMA;
  if (!POSTGRES_SCHEMA_PATTERN.test(schema)) {
    throw new TraceConfigError(
      `trace store: invalid schema name ${JSON.stringify(schema)} (lower-case letters, digits, _)`,
    );
  }
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    types: jsonAsText(),
  });
  // an idle client losing its connection must not crash the process; the next query reconnects
  pool.on('error', () => {});
  try {
    await migrate(pool, schema);
  } catch (error) {
    await pool.end();
    if (error instanceof AgentRuntimeError) throw error;
    throw new TraceStoreError(
      TraceErrorCode.openFailed,
      `trace store: cannot open PostgreSQL schema ${schema}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  return guardTraceStore('postgres trace store', postgresMethods(pool, `"${schema}"`), () => pool.end());
}

function postgresMethods(pool: pg.Pool, s: string): Omit<TraceStore, 'close'> {
  const insertSql = `INSERT INTO ${s}.traces (id, ts_ms, agent_id, run_id, step, record, search_text, search)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, to_tsvector('simple', $8))
    ON CONFLICT (id) DO NOTHING`;
  const insert = async (client: PoolClient, encoded: readonly EncodedTrace[]): Promise<number> => {
    let added = 0;
    for (const { trace, json } of encoded) {
      const text = searchText(trace);
      const result = await client.query(insertSql, [
        trace.id,
        trace.ts,
        trace.agentId,
        trace.runId,
        trace.step,
        json,
        text,
        foldedText(text),
      ]);
      added += result.rowCount ?? 0;
    }
    return added;
  };

  return {
    async append(trace) {
      const encoded = validateTrace(trace);
      return (await inTransaction(pool, (client) => insert(client, [encoded]))) === 1;
    },

    async appendMany(traces) {
      const encoded = traces.map(validateTrace);
      return encoded.length === 0 ? 0 : inTransaction(pool, (client) => insert(client, encoded));
    },

    async search(query) {
      const checked = checkQuery(query);
      if (checked === null) return [];
      const values: unknown[] = [];
      const bind = (value: unknown): string => {
        values.push(value);
        return `$${values.length}`;
      };
      const where: string[] = [];
      let from = `${s}.traces t`;
      if (checked.groups !== null) {
        from = `${s}.traces t, websearch_to_tsquery('simple', ${bind(toWebsearch(checked.groups))}) q`;
        where.push('t.search @@ q');
      }
      if (checked.agentId !== undefined) where.push(`t.agent_id = ${bind(checked.agentId)}`);
      if (checked.runId !== undefined) where.push(`t.run_id = ${bind(checked.runId)}`);
      if (checked.since !== undefined) where.push(`t.ts_ms >= ${bind(checked.since)}`);
      const headline =
        checked.groups === null
          ? 'NULL'
          : `ts_headline('simple', hit.search_text, hit.q, ${bind(HEADLINE_OPTIONS)})`;
      // headlines only for the rows returned
      const sql = `SELECT hit.record, ${headline} AS snippet FROM (
          SELECT t.record, t.search_text, t.ts_ms, t.id${checked.groups === null ? '' : ', q'} FROM ${from}
          ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`}
          ORDER BY t.ts_ms DESC, t.id COLLATE "C" DESC LIMIT ${bind(checked.limit)}
        ) hit ORDER BY hit.ts_ms DESC, hit.id COLLATE "C" DESC`;
      const result = await pool.query<{ record: string; snippet: string | null }>(sql, values);
      return result.rows.map((row): TraceSearchHit => ({
        trace: traceFromJson(row.record),
        snippet: row.snippet,
      }));
    },

    async byRun(runId) {
      if (!usableText(runId)) return [];
      const result = await pool.query<{ record: string }>(
        `SELECT record FROM ${s}.traces WHERE run_id = $1 ORDER BY step, ts_ms, id COLLATE "C"`,
        [runId],
      );
      return result.rows.map((row) => traceFromJson(row.record));
    },
  };
}
