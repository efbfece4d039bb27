import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ApprovalStore, RequestRecord } from '../core/types.ts';
import { STORE_CASES } from './cases.ts';
import type { CaseContext, Peer } from './cases.ts';
import { ApprovalStoreError, openApprovalStore, openPostgresStore, openSqliteStore } from './index.ts';

const POSTGRES_URL =
  process.env['AGENT_RUNTIME_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const RUN = randomBytes(6).toString('hex');

let counter = 0;
const uid = (prefix: string): string => `${prefix}-${RUN}-${++counter}`;

/** A store under test and how to open a peer on the same database. */
interface Target {
  readonly store: ApprovalStore;
  readonly openPeer: () => Promise<Peer>;
}

/**
 * Runs the whole case table against the target `setup` opens. When setup fails (e.g. PostgreSQL
 * unreachable) every case fails with its error: nothing is skipped.
 */
function runCases(
  label: string,
  setup: () => Promise<Target>,
  teardown: () => Promise<void> = async () => {},
) {
  describe(label, () => {
    let target: Target | undefined;
    let setupError: unknown;
    beforeAll(async () => {
      try {
        target = await setup();
      } catch (error) {
        setupError = error;
      }
    });
    afterAll(async () => {
      await target?.store.close();
      await teardown();
    });
    for (const c of STORE_CASES) {
      test(c.name, async () => {
        if (target === undefined) throw new Error(`${label}: the store did not open`, { cause: setupError });
        const ctx: CaseContext = { uid, openPeer: target.openPeer };
        await c.run(target.store, ctx);
      });
    }
  });
}

function minimalRequest(id: string): RequestRecord {
  return {
    id,
    revision: 1,
    runWorkflowId: 'run',
    agentId: 'agent',
    requester: 'requester',
    step: 0,
    tool: 'tool',
    args: {},
    resource: null,
    rationale: null,
    ruleId: null,
    policyVersion: 'v',
    actionDigest: 'd',
    eligible: ['alice'],
    escalationEligible: [],
    escalated: false,
    quorum: 1,
    highRisk: false,
    channels: [],
    createdAtMs: 0,
    expiresAtMs: 10,
    state: 'pending',
    approvedBy: [],
    deniedBy: null,
    reason: null,
    decidedAtMs: null,
    slackMessages: [],
  };
}

// --- SQLite ----------------------------------------------------------------------------------------

runCases('sqlite :memory:', async () => ({
  store: await openSqliteStore({ file: ':memory:' }),
  openPeer: async () => ({
    store: await openSqliteStore({ file: ':memory:' }),
    shared: false,
    connections: null,
  }),
}));

let sqliteDir = '';
runCases(
  'sqlite file',
  async () => {
    sqliteDir = await mkdtemp(join(tmpdir(), 'ar-store-'));
    const file = join(sqliteDir, 'nested', 'dirs', 'approvals.db');
    return {
      store: await openSqliteStore({ file }),
      openPeer: async () => ({ store: await openSqliteStore({ file }), shared: true, connections: null }),
    };
  },
  async () => {
    await rm(sqliteDir, { recursive: true, force: true });
  },
);

describe('sqlite file specifics', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ar-store-file-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('creates parent directories and a 0600 file in WAL mode', async () => {
    const file = join(dir, 'a', 'b', 'approvals.db');
    const store = await openSqliteStore({ file });
    await store.putRequest(minimalRequest('r1'));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(`${file}-wal`)).mode & 0o777).toBe(0o600);
    await store.close();
    const raw = new DatabaseSync(file);
    expect(raw.prepare('PRAGMA journal_mode').get()?.['journal_mode']).toBe('wal');
    raw.close();
    // data survives a reopen
    const again = await openSqliteStore({ file });
    expect((await again.getRequest('r1'))?.id).toBe('r1');
    await again.close();
  });

  test('tightens an existing file to 0600', async () => {
    const file = join(dir, 'loose.db');
    await writeFile(file, '', { mode: 0o644 });
    const store = await openSqliteStore({ file });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await store.close();
  });

  test('a file that is not a SQLite database is refused with APPROVAL_STORE_OPEN_FAILED', async () => {
    const file = join(dir, 'not-a-db.db');
    await writeFile(file, 'this is not a database, just some text that is long enough '.repeat(20));
    await expect(openSqliteStore({ file })).rejects.toMatchObject({ code: 'APPROVAL_STORE_OPEN_FAILED' });
  });

  test('a database from a newer schema version is refused', async () => {
    const file = join(dir, 'newer.db');
    const raw = new DatabaseSync(file);
    raw.exec('PRAGMA user_version = 99');
    raw.close();
    await expect(openSqliteStore({ file })).rejects.toMatchObject({ code: 'APPROVAL_STORE_SCHEMA_TOO_NEW' });
  });

  test('a tampered row is reported as APPROVAL_STORE_ROW_INVALID, not returned', async () => {
    const file = join(dir, 'tampered.db');
    const store = await openSqliteStore({ file });
    await store.putRequest(minimalRequest('t1'));
    await store.putRequest(minimalRequest('t2'));
    const raw = new DatabaseSync(file);
    raw.exec(`UPDATE requests SET state = 'owned' WHERE id = 't1'`);
    raw.exec(`UPDATE requests SET eligible = '{"not":"an array"}' WHERE id = 't2'`);
    raw.close();
    await expect(store.getRequest('t1')).rejects.toMatchObject({ code: 'APPROVAL_STORE_ROW_INVALID' });
    await expect(store.getRequest('t2')).rejects.toMatchObject({ code: 'APPROVAL_STORE_ROW_INVALID' });
    await store.close();
  });

  test('connections in several threads on one file agree: one token use, one vote, one finalize', async () => {
    const file = join(dir, 'threads.db');
    const store = await openSqliteStore({ file });
    const r = { ...minimalRequest('race'), eligible: ['alice'] };
    await store.putRequest(r);
    await store.createToken({
      hash: 'race-token',
      purpose: 'sign-in',
      principal: 'alice',
      requestId: null,
      revision: null,
      createdAtMs: 0,
      expiresAtMs: 10,
    });
    // each thread opens its own connection, then all start at once
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.module).then(async ({ openSqliteStore }) => {
        const store = await openSqliteStore({ file: workerData.file });
        const gate = new Int32Array(workerData.gate);
        Atomics.add(gate, 1, 1);
        Atomics.wait(gate, 0, 0);
        const token = await store.consumeToken('race-token', 'sign-in', 1);
        const vote = await store.recordVote({ requestId: 'race', revision: 1, principal: 'alice',
          decision: 'approve', channel: 'web', reason: null, atMs: 1 });
        const final = await store.updateRequest('race', { state: 'denied', deniedBy: 'w' + workerData.i },
          { state: 'pending', revision: 1 });
        await store.close();
        parentPort.postMessage({ token: token.ok, vote, final: final !== null });
      }).catch((error) => parentPort.postMessage({ error: String(error) }));`;
    const threads = 6;
    const gate = new SharedArrayBuffer(8);
    const flags = new Int32Array(gate);
    const module = new URL('./sqlite.ts', import.meta.url).href;
    const results = Array.from(
      { length: threads },
      (_, i) =>
        new Promise<{ token: boolean; vote: string; final: boolean; error?: string }>((done, fail) => {
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
    expect(outcomes.filter((o) => o.token)).toHaveLength(1);
    expect(outcomes.filter((o) => o.vote === 'recorded')).toHaveLength(1);
    expect(outcomes.filter((o) => o.final)).toHaveLength(1);
    expect((await store.getRequest('race'))?.state).toBe('denied');
    await store.close();
  });

  test('an unusable file name is a config error', async () => {
    await expect(openSqliteStore({ file: '' })).rejects.toMatchObject({
      code: 'APPROVAL_STORE_CONFIG_INVALID',
    });
    await expect(openSqliteStore({ file: 'a\0b' })).rejects.toMatchObject({
      code: 'APPROVAL_STORE_CONFIG_INVALID',
    });
  });
});

// --- PostgreSQL (must be reachable: an unreachable server fails these suites) ---------------------

const schema = `ar_store_${RUN}`;
const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2, connectionTimeoutMillis: 10_000 });

async function connectionsNamed(name: string): Promise<number> {
  const result = await admin.query<{ n: string }>(
    'SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1',
    [name],
  );
  return Number(result.rows[0]?.n ?? 0);
}

function withApplicationName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('application_name', name);
  return parsed.toString();
}

afterAll(async () => {
  try {
    for (const name of [schema, `${schema}_x`, `${schema}_new`]) {
      await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
    }
  } finally {
    await admin.end();
  }
});

runCases('postgres', async () => {
  await admin.query('SELECT 1');
  return {
    store: await openPostgresStore({ connectionString: POSTGRES_URL, schema }),
    openPeer: async () => {
      const name = uid('ar_store_peer');
      const connectionString = withApplicationName(POSTGRES_URL, name);
      const store = await openPostgresStore({ connectionString, schema });
      return { store, shared: true, connections: () => connectionsNamed(name) };
    },
  };
});

describe('postgres specifics', () => {
  const extra = `${schema}_x`;

  test('tables live in the configured schema, milliseconds as bigint, JSON as jsonb', async () => {
    const store = await openPostgresStore({ connectionString: POSTGRES_URL, schema: extra });
    await store.close();
    const columns = await admin.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'requests'`,
      [extra],
    );
    const types = Object.fromEntries(columns.rows.map((c) => [c.column_name, c.data_type]));
    expect(types).toMatchObject({
      expires_at_ms: 'bigint',
      decided_at_ms: 'bigint',
      args: 'jsonb',
      eligible: 'jsonb',
    });
  });

  test('concurrent opens of a new schema migrate once', async () => {
    const fresh = `${schema}_new`;
    const stores = await Promise.all(
      Array.from({ length: 4 }, () => openPostgresStore({ connectionString: POSTGRES_URL, schema: fresh })),
    );
    await Promise.all(stores.map((s) => s.close()));
    const versions = await admin.query(`SELECT version FROM "${fresh}".migrations`);
    expect(versions.rows).toEqual([{ version: 1 }]);
  });

  test('a schema from a newer version is refused', async () => {
    await admin.query(`INSERT INTO "${extra}".migrations (version) VALUES (99)`);
    await expect(openPostgresStore({ connectionString: POSTGRES_URL, schema: extra })).rejects.toMatchObject({
      code: 'APPROVAL_STORE_SCHEMA_TOO_NEW',
    });
    await admin.query(`DELETE FROM "${extra}".migrations WHERE version = 99`);
  });

  test('a tampered row is reported as APPROVAL_STORE_ROW_INVALID', async () => {
    const store = await openPostgresStore({ connectionString: POSTGRES_URL, schema: extra });
    await store.putRequest(minimalRequest('t1'));
    await admin.query(`UPDATE "${extra}".requests SET channels = '["fax"]' WHERE id = 't1'`);
    await expect(store.getRequest('t1')).rejects.toMatchObject({ code: 'APPROVAL_STORE_ROW_INVALID' });
    await store.close();
  });

  test('an invalid schema name is a config error; an unreachable server fails to open', async () => {
    for (const bad of ['Public', 'a-b', 'x"; DROP SCHEMA public; --', '', 'a'.repeat(64)]) {
      await expect(
        openPostgresStore({ connectionString: POSTGRES_URL, schema: bad }),
        bad,
      ).rejects.toMatchObject({
        code: 'APPROVAL_STORE_CONFIG_INVALID',
      });
    }
    await expect(
      openPostgresStore({ connectionString: 'postgres://postgres@127.0.0.1:1/test', schema: extra }),
    ).rejects.toMatchObject({ code: 'APPROVAL_STORE_OPEN_FAILED' });
  });
});

// --- openApprovalStore -------------------------------------------------------------------------------

describe('openApprovalStore', () => {
  test('opens the configured kind', async () => {
    const sqlite = await openApprovalStore({ kind: 'sqlite', file: ':memory:' });
    expect(await sqlite.putRequest(minimalRequest('c1'))).toMatchObject({ id: 'c1' });
    await sqlite.close();
    const postgres = await openApprovalStore({ kind: 'postgres', connectionString: POSTGRES_URL, schema });
    expect(await postgres.listPending(uid('nobody'))).toEqual([]);
    await postgres.close();
  });

  test('refuses invalid configurations with APPROVAL_STORE_CONFIG_INVALID', async () => {
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
      const opening = openApprovalStore(config as never);
      await expect(opening, JSON.stringify(config)).rejects.toBeInstanceOf(ApprovalStoreError);
      await expect(opening).rejects.toMatchObject({ code: 'APPROVAL_STORE_CONFIG_INVALID' });
    }
  });
});
