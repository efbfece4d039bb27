import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TRACE_STORE_CASES, sampleTrace } from './cases.ts';
import type { CaseContext } from './cases.ts';
import {
  TraceConfigError,
  openPostgresTraceStore,
  openSqliteTraceStore,
  openTraceStore,
  toGenAiAttributes,
} from './index.ts';
import type { TraceStore } from './index.ts';

const POSTGRES_URL =
  process.env['AGENT_RUNTIME_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const RUN = randomBytes(5).toString('hex');

let counter = 0;
const ctx: CaseContext = { uid: (prefix) => `${prefix}${RUN}x${++counter}` };

/**
 * Runs the whole case table against the store `setup` opens. When setup fails (PostgreSQL
 * unreachable) every case fails with its error: nothing is skipped.
 */
function runCases(
  label: string,
  setup: () => Promise<TraceStore>,
  teardown: () => Promise<void> = async () => {},
) {
  describe(label, () => {
    let store: TraceStore | undefined;
    let setupError: unknown;
    beforeAll(async () => {
      try {
        store = await setup();
      } catch (error) {
        setupError = error;
      }
    });
    afterAll(async () => {
      await store?.close();
      await teardown();
    });
    for (const c of TRACE_STORE_CASES) {
      test(c.name, async () => {
        if (store === undefined) throw new Error(`${label}: the store did not open`, { cause: setupError });
        await c.run(store, ctx);
      });
    }
  });
}

// --- SQLite ----------------------------------------------------------------------------------------

runCases('sqlite :memory:', () => openSqliteTraceStore({ file: ':memory:' }));

let sqliteDir = '';
runCases(
  'sqlite file',
  async () => {
    sqliteDir = await mkdtemp(join(tmpdir(), 'ar-traces-'));
    return openSqliteTraceStore({ file: join(sqliteDir, 'nested', 'traces.db') });
  },
  () => rm(sqliteDir, { recursive: true, force: true }),
);

describe('sqlite specifics', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ar-traces-file-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test('a 0600 file in WAL mode; data survives a reopen; the FTS table holds no secret', async () => {
    const file = join(dir, 'a', 'traces.db');
    const store = await openSqliteTraceStore({ file });
    const t = sampleTrace(ctx, {
      agentId: 'agent',
      runId: 'run',
      messages: [{ role: 'user', content: 'hello' }],
    });
    await store.append(t);
    await store.close();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const raw = new DatabaseSync(file);
    expect(raw.prepare('PRAGMA journal_mode').get()?.['journal_mode']).toBe('wal');
    expect(raw.prepare('SELECT count(*) AS n FROM traces_fts').get()?.['n']).toBe(1);
    raw.close();
    const again = await openSqliteTraceStore({ file });
    expect(await again.byRun('run')).toEqual([t]);
    await again.close();
  });

  test('a closed store refuses with TRACE_STORE_CLOSED; close is idempotent', async () => {
    const store = await openSqliteTraceStore({ file: ':memory:' });
    await Promise.all([store.close(), store.close()]);
    await expect(store.byRun('x')).rejects.toMatchObject({ code: 'TRACE_STORE_CLOSED' });
    await expect(store.search({})).rejects.toMatchObject({ code: 'TRACE_STORE_CLOSED' });
  });

  test('a tampered row is TRACE_STORE_ROW_INVALID; a newer schema and a non-database are refused', async () => {
    const file = join(dir, 'tampered.db');
    const store = await openSqliteTraceStore({ file });
    await store.append(sampleTrace(ctx, { agentId: 'agent', runId: 'run' }));
    const raw = new DatabaseSync(file);
    raw.exec(`UPDATE traces SET record = '{"id":"x"}'`);
    raw.close();
    await expect(store.byRun('run')).rejects.toMatchObject({ code: 'TRACE_STORE_ROW_INVALID' });
    await store.close();

    const newer = join(dir, 'newer.db');
    const db = new DatabaseSync(newer);
    db.exec('PRAGMA user_version = 99');
    db.close();
    await expect(openSqliteTraceStore({ file: newer })).rejects.toMatchObject({
      code: 'TRACE_STORE_SCHEMA_TOO_NEW',
    });
    const junk = join(dir, 'junk.db');
    await writeFile(junk, 'not a database, just text that is long enough to look like a header '.repeat(20));
    await expect(openSqliteTraceStore({ file: junk })).rejects.toMatchObject({
      code: 'TRACE_STORE_OPEN_FAILED',
    });
    await expect(openSqliteTraceStore({ file: 'a\0b' })).rejects.toBeInstanceOf(TraceConfigError);
  });
});

// --- PostgreSQL (must be reachable: an unreachable server fails these suites) ---------------------

const schema = `ar_traces_${RUN}`;
const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2, connectionTimeoutMillis: 10_000 });

afterAll(async () => {
  try {
    for (const name of [schema, `${schema}_x`]) await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
  } finally {
    await admin.end();
  }
});

runCases('postgres', async () => {
  await admin.query('SELECT 1');
  return openPostgresTraceStore({ connectionString: POSTGRES_URL, schema });
});

describe('postgres specifics', () => {
  const extra = `${schema}_x`;

  test('record is jsonb, search a tsvector under a GIN index; a tampered row is refused', async () => {
    const store = await openPostgresTraceStore({ connectionString: POSTGRES_URL, schema: extra });
    await store.append(sampleTrace(ctx, { agentId: 'agent', runId: 'run' }));
    const columns = await admin.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'traces'`,
      [extra],
    );
    expect(Object.fromEntries(columns.rows.map((c) => [c.column_name, c.data_type]))).toMatchObject({
      record: 'jsonb',
      search: 'tsvector',
      ts_ms: 'bigint',
    });
    const index = await admin.query<{ indexdef: string }>(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'traces_search'`,
      [extra],
    );
    expect(index.rows[0]?.indexdef).toContain('USING gin (search)');
    await admin.query(`UPDATE "${extra}".traces SET record = '{"id": 1}'`);
    await expect(store.byRun('run')).rejects.toMatchObject({ code: 'TRACE_STORE_ROW_INVALID' });
    await store.close();
    await admin.query(`INSERT INTO "${extra}".migrations (version) VALUES (99)`);
    await expect(
      openPostgresTraceStore({ connectionString: POSTGRES_URL, schema: extra }),
    ).rejects.toMatchObject({
      code: 'TRACE_STORE_SCHEMA_TOO_NEW',
    });
  });

  test('an invalid schema name is a config error; an unreachable server fails to open', async () => {
    for (const bad of ['Public', 'a-b', 'x"; DROP SCHEMA public; --', '', 'a'.repeat(64)]) {
      await expect(
        openPostgresTraceStore({ connectionString: POSTGRES_URL, schema: bad }),
        bad,
      ).rejects.toMatchObject({
        code: 'TRACE_CONFIG_INVALID',
      });
    }
    await expect(
      openPostgresTraceStore({ connectionString: 'postgres://postgres@127.0.0.1:1/test', schema: extra }),
    ).rejects.toMatchObject({ code: 'TRACE_STORE_OPEN_FAILED' });
  });
});

// --- openTraceStore ------------------------------------------------------------------------------

describe('openTraceStore', () => {
  test('opens the configured kind', async () => {
    const sqlite = await openTraceStore({ kind: 'sqlite', file: ':memory:' });
    expect(await sqlite.search({})).toEqual([]);
    await sqlite.close();
    const postgres = await openTraceStore({ kind: 'postgres', connectionString: POSTGRES_URL, schema });
    expect(await postgres.byRun(ctx.uid('nobody'))).toEqual([]);
    await postgres.close();
  });

  test('refuses invalid configurations with TRACE_CONFIG_INVALID', async () => {
    const bad: unknown[] = [
      null,
      {},
      { kind: 'mysql', file: 'x' },
      { kind: 'sqlite' },
      { kind: 'sqlite', file: '' },
      { kind: 'sqlite', file: 'x', connectionString: 'postgres://' },
      { kind: 'postgres' },
      { kind: 'postgres', connectionString: POSTGRES_URL, schema: 'Bad-Name' },
    ];
    for (const config of bad) {
      const opening = openTraceStore(config as never);
      await expect(opening, JSON.stringify(config)).rejects.toBeInstanceOf(TraceConfigError);
      await expect(opening).rejects.toMatchObject({ code: 'TRACE_CONFIG_INVALID' });
    }
  });
});

// --- OpenTelemetry GenAI attributes -------------------------------------------------------------

describe('toGenAiAttributes', () => {
  const trace = sampleTrace(ctx, {
    id: 't1',
    agentId: 'agent-1',
    runId: 'run-1',
    step: 3,
    attempts: [
      { target: 'primary', provider: 'openai', model: 'gpt-big', outcome: 'MODEL_RATE_LIMIT', durationMs: 5 },
      { target: 'backup', provider: 'openai', model: 'gpt-test', outcome: 'ok', durationMs: 100 },
    ],
    fallbackCause: 'MODEL_RATE_LIMIT on primary',
    messages: [
      { role: 'user', content: 'refund inv_42' },
      {
        role: 'assistant',
        content: null,
        toolCalls: [{ id: 'c0', tool: 'billing.get', args: { id: 1 }, rationale: null }],
      },
      { role: 'tool', toolCallId: 'c0', tool: 'billing.get', content: '{"total":5}' },
    ],
    completion: {
      content: 'Refunding.',
      toolCalls: [
        { id: 'c1', tool: 'billing.refund', args: { invoice: 'inv_42' }, rationale: 'customer asked' },
      ],
      finishReason: 'tool_calls',
    },
  });

  test('uses the GenAI names; content attributes as JSON strings in the OTel message schema', () => {
    const attributes = toGenAiAttributes(trace);
    expect(attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.request.model': 'gpt-big',
      'gen_ai.response.model': 'gpt-test',
      'gen_ai.usage.input_tokens': 42,
      'gen_ai.usage.output_tokens': 7,
      'gen_ai.response.finish_reasons': ['tool_call'],
      'gen_ai.conversation.id': 'run-1',
      'govern.run.step': 3,
      'govern.gateway.overhead_ms': 2.5,
      'govern.fallback.cause': 'MODEL_RATE_LIMIT on primary',
      'govern.attempts': ['primary:MODEL_RATE_LIMIT', 'backup:ok'],
      'govern.content.captured': true,
      'govern.tool_call.rationales': ['customer asked'],
    });
    expect(JSON.parse(attributes['gen_ai.input.messages'] as string)).toEqual([
      { role: 'user', parts: [{ type: 'text', content: 'refund inv_42' }] },
      {
        role: 'assistant',
        parts: [{ type: 'tool_call', id: 'c0', name: 'billing.get', arguments: { id: 1 } }],
      },
      { role: 'tool', parts: [{ type: 'tool_call_response', id: 'c0', response: '{"total":5}' }] },
    ]);
    expect(JSON.parse(attributes['gen_ai.output.messages'] as string)).toEqual([
      {
        role: 'assistant',
        parts: [
          { type: 'text', content: 'Refunding.' },
          { type: 'tool_call', id: 'c1', name: 'billing.refund', arguments: { invoice: 'inv_42' } },
        ],
        finish_reason: 'tool_call',
      },
    ]);
    expect(JSON.parse(attributes['gen_ai.tool.definitions'] as string)).toEqual([
      expect.objectContaining({ type: 'function', name: 'billing.refund' }),
    ]);
    expect(Object.keys(attributes).some((k) => k === 'gen_ai.system' || k.includes('prompt_tokens'))).toBe(
      false,
    );
  });

  test('no content attributes without captured content; an error sets error.type', () => {
    const attributes = toGenAiAttributes({
      ...trace,
      contentCaptured: false,
      completion: null,
      error: { code: 'MODEL_TIMEOUT', message: 'secret-ish provider text' },
    });
    for (const key of [
      'gen_ai.input.messages',
      'gen_ai.output.messages',
      'gen_ai.tool.definitions',
      'govern.error.message',
    ]) {
      expect(attributes).not.toHaveProperty([key]);
    }
    expect(attributes).not.toHaveProperty(['gen_ai.response.finish_reasons']);
    expect(attributes).toMatchObject({ 'error.type': 'MODEL_TIMEOUT', 'govern.content.captured': false });
    expect(JSON.stringify(attributes)).not.toContain('secret-ish');
  });
});
