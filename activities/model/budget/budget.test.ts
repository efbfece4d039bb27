import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BUDGET_CASES } from './cases.ts';
import type { BudgetCaseContext, ManualClock } from './cases.ts';
import { BudgetError, openPostgresBudget, openSqliteBudget, openTokenBudget, utcDayKey } from './index.ts';
import type { TokenBudget } from './index.ts';

const POSTGRES_URL =
  process.env['AGENT_RUNTIME_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const RUN = randomBytes(6).toString('hex');
const TTL_MS = 60_000;
const T0 = 1_773_446_400_000; // 2026-03-14T00:00:00Z

let counter = 0;
const uid = (prefix: string): string => `${prefix}-${RUN}-${++counter}`;

function manualClock(): ManualClock {
  let now = T0;
  return {
    now: () => now,
    advance: (ms) => {
      now += ms;
    },
  };
}

interface Target {
  readonly budget: TokenBudget;
  readonly openPeer: () => Promise<TokenBudget | null>;
}

/**
 * Runs the whole case table against the target `setup` opens. When setup fails (e.g. PostgreSQL
 * unreachable) every case fails with its error: nothing is skipped.
 */
function runCases(
  label: string,
  setup: (clock: ManualClock) => Promise<Target>,
  teardown: () => Promise<void> = async () => {},
) {
  describe(label, () => {
    const clock = manualClock();
    let target: Target | undefined;
    let setupError: unknown;
    beforeAll(async () => {
      try {
        target = await setup(clock);
      } catch (error) {
        setupError = error;
      }
    });
    afterAll(async () => {
      await target?.budget.close();
      await teardown();
    });
    for (const c of BUDGET_CASES) {
      test(c.name, async () => {
        if (target === undefined) throw new Error(`${label}: the budget did not open`, { cause: setupError });
        const ctx: BudgetCaseContext = { uid, clock, ttlMs: TTL_MS, openPeer: target.openPeer };
        await c.run(target.budget, ctx);
      });
    }
  });
}

// --- SQLite ----------------------------------------------------------------------------------------

runCases('sqlite :memory:', async (clock) => ({
  budget: await openSqliteBudget({ file: ':memory:', reservationTtlMs: TTL_MS, now: clock.now }),
  openPeer: async () => null,
}));

let sqliteDir = '';
runCases(
  'sqlite file',
  async (clock) => {
    sqliteDir = await mkdtemp(join(tmpdir(), 'ar-budget-'));
    const file = join(sqliteDir, 'nested', 'budget.db');
    const open = () => openSqliteBudget({ file, reservationTtlMs: TTL_MS, now: clock.now });
    return { budget: await open(), openPeer: open };
  },
  async () => {
    await rm(sqliteDir, { recursive: true, force: true });
  },
);

describe('sqlite file specifics', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ar-budget-file-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a 0600 file in WAL mode with budget_* tables; data survives a reopen', async () => {
    const file = join(dir, 'a', 'budget.db');
    const budget = await openSqliteBudget({ file });
    const id = await budget.reserve({
      runId: 'r',
      agentId: 'a',
      dayKey: '2026-01-01',
      tokens: 5,
      runLimit: 10,
      agentDailyLimit: null,
    });
    expect(id.ok).toBe(true);
    if (id.ok) await budget.reconcile(id.reservationId, 7);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await budget.close();
    const raw = new DatabaseSync(file);
    expect(raw.prepare('PRAGMA journal_mode').get()?.['journal_mode']).toBe('wal');
    expect(
      raw
        .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
        .all()
        .map((r) => r['name']),
    ).toEqual(['budget_agent_days', 'budget_migrations', 'budget_reservations', 'budget_runs']);
    raw.close();
    const again = await openSqliteBudget({ file });
    expect(await again.usage({ runId: 'r' })).toEqual({ used: 7, reserved: 0 });
    await again.close();
  });

  test('a closed store refuses calls with BUDGET_CLOSED; close is idempotent', async () => {
    const budget = await openSqliteBudget({ file: ':memory:' });
    await budget.close();
    await budget.close();
    await expect(budget.usage({ runId: 'r' })).rejects.toMatchObject({ code: 'BUDGET_CLOSED' });
  });

  test('a newer budget schema is refused; a non-database file fails to open', async () => {
    const file = join(dir, 'newer.db');
    const raw = new DatabaseSync(file);
    raw.exec(
      'CREATE TABLE budget_migrations (version INTEGER PRIMARY KEY) STRICT; INSERT INTO budget_migrations VALUES (99)',
    );
    raw.close();
    await expect(openSqliteBudget({ file })).rejects.toMatchObject({ code: 'BUDGET_SCHEMA_TOO_NEW' });
    const junk = join(dir, 'junk.db');
    await writeFile(junk, 'not a database '.repeat(100));
    await expect(openSqliteBudget({ file: junk })).rejects.toMatchObject({ code: 'BUDGET_OPEN_FAILED' });
    await expect(openSqliteBudget({ file: '' })).rejects.toMatchObject({ code: 'BUDGET_CONFIG_INVALID' });
    await expect(openSqliteBudget({ file: ':memory:', reservationTtlMs: 0 })).rejects.toMatchObject({
      code: 'BUDGET_CONFIG_INVALID',
    });
  });

  test('50 reservations from 5 threads, each with its own connection to one file: exactly 10 per scope', async () => {
    const file = join(dir, 'threads.db');
    const setup = await openSqliteBudget({ file });
    await setup.close();
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.module).then(async ({ openSqliteBudget }) => {
        const budget = await openSqliteBudget({ file: workerData.file });
        const gate = new Int32Array(workerData.gate);
        Atomics.add(gate, 1, 1);
        Atomics.wait(gate, 0, 0);
        const run = [];
        const day = [];
        for (let i = 0; i < 10; i++) {
          run.push((await budget.reserve({ runId: 'shared-run', agentId: 'agent-' + workerData.i + '-' + i,
            dayKey: '2026-03-14', tokens: 7, runLimit: 70, agentDailyLimit: null })).ok);
          day.push((await budget.reserve({ runId: 'run-' + workerData.i + '-' + i, agentId: 'shared-agent',
            dayKey: '2026-03-14', tokens: 9, runLimit: null, agentDailyLimit: 95 })).ok);
        }
        await budget.close();
        parentPort.postMessage({ run, day });
      }).catch((error) => parentPort.postMessage({ error: String(error) }));`;
    const threads = 5;
    const gate = new SharedArrayBuffer(8);
    const flags = new Int32Array(gate);
    const module = new URL('./sqlite.ts', import.meta.url).href;
    const results = Array.from(
      { length: threads },
      (_, i) =>
        new Promise<{ run?: boolean[]; day?: boolean[]; error?: string }>((done, fail) => {
          const worker = new Worker(code, { eval: true, workerData: { module, file, gate, i } });
          worker.once('message', done);
          worker.once('error', fail);
        }),
    );
    while (Atomics.load(flags, 1) < threads) await new Promise((resolve) => setTimeout(resolve, 5));
    Atomics.store(flags, 0, 1);
    Atomics.notify(flags, 0);
    const outcomes = await Promise.all(results);
    expect(outcomes.filter((o) => o.error !== undefined)).toEqual([]);
    expect(outcomes.flatMap((o) => o.run ?? []).filter(Boolean)).toHaveLength(10);
    expect(outcomes.flatMap((o) => o.day ?? []).filter(Boolean)).toHaveLength(10);
    const check = await openSqliteBudget({ file });
    expect(await check.usage({ runId: 'shared-run' })).toEqual({ used: 0, reserved: 70 });
    expect(await check.usage({ agentId: 'shared-agent', dayKey: '2026-03-14' })).toEqual({
      used: 0,
      reserved: 90,
    });
    await check.close();
  });
});

// --- PostgreSQL (must be reachable: an unreachable server fails these suites) ---------------------

const schema = `ar_budget_${RUN}`;
const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2, connectionTimeoutMillis: 10_000 });

afterAll(async () => {
  try {
    for (const name of [schema, `${schema}_x`, `${schema}_new`]) {
      await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
    }
  } finally {
    await admin.end();
  }
});

runCases('postgres', async (clock) => {
  await admin.query('SELECT 1');
  const open = () =>
    openPostgresBudget({ connectionString: POSTGRES_URL, schema, reservationTtlMs: TTL_MS, now: clock.now });
  return { budget: await open(), openPeer: open };
});

describe('postgres specifics', () => {
  const extra = `${schema}_x`;

  test('tables live in the configured schema; counts are bigint', async () => {
    const budget = await openPostgresBudget({ connectionString: POSTGRES_URL, schema: extra });
    await budget.close();
    const columns = await admin.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT table_name, column_name, data_type FROM information_schema.columns
       WHERE table_schema = $1 AND column_name IN ('used', 'tokens', 'created_at_ms') ORDER BY 1, 2`,
      [extra],
    );
    expect(columns.rows.map((c) => `${c.table_name}.${c.column_name}:${c.data_type}`)).toEqual([
      'agent_days.used:bigint',
      'reservations.created_at_ms:bigint',
      'reservations.tokens:bigint',
      'runs.used:bigint',
    ]);
  });

  test('concurrent opens of a new schema migrate once', async () => {
    const fresh = `${schema}_new`;
    const budgets = await Promise.all(
      Array.from({ length: 4 }, () => openPostgresBudget({ connectionString: POSTGRES_URL, schema: fresh })),
    );
    await Promise.all(budgets.map((b) => b.close()));
    expect((await admin.query(`SELECT version FROM "${fresh}".migrations`)).rows).toEqual([{ version: 1 }]);
  });

  test('a schema from a newer version is refused', async () => {
    await openPostgresBudget({ connectionString: POSTGRES_URL, schema: extra }).then((b) => b.close());
    await admin.query(`INSERT INTO "${extra}".migrations (version) VALUES (99)`);
    await expect(openPostgresBudget({ connectionString: POSTGRES_URL, schema: extra })).rejects.toMatchObject(
      {
        code: 'BUDGET_SCHEMA_TOO_NEW',
      },
    );
    await admin.query(`DELETE FROM "${extra}".migrations WHERE version = 99`);
  });

  test('an invalid schema name is a config error; an unreachable server fails to open', async () => {
    for (const bad of ['Public', 'a-b', 'x"; DROP SCHEMA public; --', '', 'a'.repeat(64)]) {
      await expect(
        openPostgresBudget({ connectionString: POSTGRES_URL, schema: bad }),
        bad,
      ).rejects.toMatchObject({
        code: 'BUDGET_CONFIG_INVALID',
      });
    }
    await expect(
      openPostgresBudget({ connectionString: 'postgres://postgres@127.0.0.1:1/test', schema: extra }),
    ).rejects.toMatchObject({ code: 'BUDGET_OPEN_FAILED' });
  });

  test('a lost connection is BUDGET_QUERY_FAILED, not a driver error', async () => {
    const name = uid('ar_budget_kill');
    const url = new URL(POSTGRES_URL);
    url.searchParams.set('application_name', name);
    const budget = await openPostgresBudget({ connectionString: url.toString(), schema: extra, poolSize: 1 });
    await budget.usage({ runId: 'warm' });
    await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [
      name,
    ]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const outcome = await budget.usage({ runId: 'x' }).then(
      () => 'recovered',
      (error: unknown) => (error as { code?: string }).code,
    );
    // the pool may hand out a fresh connection (recovered) or fail the dead one with a stable code
    expect(['recovered', 'BUDGET_QUERY_FAILED']).toContain(outcome);
    await budget.close();
  });
});

// --- openTokenBudget ---------------------------------------------------------------------------------

describe('openTokenBudget', () => {
  test('opens the configured kind', async () => {
    const sqlite = await openTokenBudget({ kind: 'sqlite', file: ':memory:', reservationTtlMs: 1_000 });
    expect(await sqlite.usage({ runId: 'r' })).toEqual({ used: 0, reserved: 0 });
    await sqlite.close();
    const postgres = await openTokenBudget({ kind: 'postgres', connectionString: POSTGRES_URL, schema });
    expect(await postgres.usage({ runId: uid('nobody') })).toEqual({ used: 0, reserved: 0 });
    await postgres.close();
  });

  test('refuses invalid configurations with BUDGET_CONFIG_INVALID', async () => {
    const bad: unknown[] = [
      null,
      {},
      { kind: 'redis', url: 'x' },
      { kind: 'sqlite' },
      { kind: 'sqlite', file: '' },
      { kind: 'sqlite', file: 'x', reservationTtlMs: 0 },
      { kind: 'sqlite', file: 'x', connectionString: 'postgres://' },
      { kind: 'postgres' },
      { kind: 'postgres', connectionString: POSTGRES_URL, schema: 'Bad-Name' },
    ];
    for (const config of bad) {
      const opening = openTokenBudget(config as never);
      await expect(opening, JSON.stringify(config)).rejects.toBeInstanceOf(BudgetError);
      await expect(opening).rejects.toMatchObject({ code: 'BUDGET_CONFIG_INVALID' });
    }
  });

  test('utcDayKey is the UTC calendar day', () => {
    expect(utcDayKey(T0)).toBe('2026-03-14');
    expect(utcDayKey(T0 - 1)).toBe('2026-03-13');
    expect(utcDayKey(T0 + 86_400_000 - 1)).toBe('2026-03-14');
  });
});
