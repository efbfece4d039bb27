import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { ed25519 } from '@noble/curves/ed25519.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keyIdOf } from '../policy/votes.ts';
import { AUDIT_CASES } from './cases.ts';
import type { CaseContext } from './cases.ts';
import {
  AuditStoreError,
  GENESIS_HASH,
  chainRecords,
  ed25519Signer,
  openAuditStore,
  openPostgresAuditStore,
  openSqliteAuditStore,
  recordHash,
  signCheckpoint,
  sqliteAuditStoreOn,
  verifyChain,
  verifyStream,
} from './index.ts';
import type { AuditRecord, AuditStore, AuditStoreOptions } from './index.ts';
import type { SqlValue } from './rows.ts';

const POSTGRES_URL =
  process.env['AGENT_RUNTIME_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const RUN = randomBytes(6).toString('hex');

let counter = 0;
const uid = (prefix: string): string => `${prefix}-${RUN}-${++counter}`;

interface Target {
  readonly store: AuditStore;
  readonly ctx: Omit<CaseContext, 'uid'>;
}

/** Runs the case table against `setup`'s target; a failed setup fails every case (nothing skips). */
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
    for (const c of AUDIT_CASES) {
      test(c.name, async () => {
        if (target === undefined) throw new Error(`${label}: the store did not open`, { cause: setupError });
        await c.run(target.store, { uid, ...target.ctx });
      });
    }
  });
}

const sqlitePlaceholders = (text: string): string => text.replace(/\$(\d+)/g, '?$1');
const SQLITE_TABLES = { records: 'audit_records', checkpoints: 'audit_checkpoints' };

// --- SQLite -----------------------------------------------------------------------------------------

let memoryDb: DatabaseSync | undefined;
runCases(
  'sqlite :memory:',
  async () => {
    const db = new DatabaseSync(':memory:');
    memoryDb = db;
    return {
      store: sqliteAuditStoreOn(db),
      ctx: {
        tables: SQLITE_TABLES,
        sql: async (text: string, values: readonly SqlValue[] = []) => {
          db.prepare(sqlitePlaceholders(text)).run(...values);
        },
        open: async (options: AuditStoreOptions) => sqliteAuditStoreOn(db, options),
      },
    };
  },
  async () => {
    memoryDb?.close();
  },
);

let sqliteDir = '';
let rawFileDb: DatabaseSync | undefined;
runCases(
  'sqlite file',
  async () => {
    sqliteDir = await mkdtemp(join(tmpdir(), 'ar-audit-'));
    const file = join(sqliteDir, 'nested', 'audit.db');
    const store = await openSqliteAuditStore({ file });
    const raw = new DatabaseSync(file);
    rawFileDb = raw;
    return {
      store,
      ctx: {
        tables: SQLITE_TABLES,
        sql: async (text: string, values: readonly SqlValue[] = []) => {
          raw.prepare(sqlitePlaceholders(text)).run(...values);
        },
        open: async (options: AuditStoreOptions) => openSqliteAuditStore({ ...options, file }),
      },
    };
  },
  async () => {
    rawFileDb?.close();
    await rm(sqliteDir, { recursive: true, force: true });
  },
);

describe('sqlite file specifics', () => {
  test('creates a 0600 file in WAL mode; records survive a reopen', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ar-audit-file-'));
    try {
      const file = join(dir, 'a', 'audit.db');
      const store = await openSqliteAuditStore({ file });
      const record = await store.append('default', {
        source: 'cli',
        agent: null,
        run: null,
        step: null,
        kind: 'policy.updated',
        attrs: {},
      });
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      await store.close();
      const raw = new DatabaseSync(file);
      expect(raw.prepare('PRAGMA journal_mode').get()?.['journal_mode']).toBe('wal');
      raw.close();
      const again = await openSqliteAuditStore({ file });
      expect(await again.read({ stream: 'default' })).toEqual([record]);
      await again.close();
      await expect(openSqliteAuditStore({ file: '' })).rejects.toMatchObject({
        code: 'AUDIT_STORE_CONFIG_INVALID',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// --- PostgreSQL (must be reachable: an unreachable server fails these suites) -----------------------

const schema = `ar_audit_${RUN}`;
const admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2, connectionTimeoutMillis: 10_000 });

afterAll(async () => {
  try {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await admin.end();
  }
});

runCases('postgres', async () => {
  await admin.query('SELECT 1');
  return {
    store: await openPostgresAuditStore({ connectionString: POSTGRES_URL, schema }),
    ctx: {
      tables: { records: `"${schema}".records`, checkpoints: `"${schema}".checkpoints` },
      sql: async (text: string, values: readonly SqlValue[] = []) => {
        await admin.query(text, [...values]);
      },
      open: async (options: AuditStoreOptions) =>
        openPostgresAuditStore({ ...options, connectionString: POSTGRES_URL, schema }),
    },
  };
});

describe('postgres specifics', () => {
  test('an invalid schema name is a config error; an unreachable server fails to open', async () => {
    await expect(
      openPostgresAuditStore({ connectionString: POSTGRES_URL, schema: 'x"; DROP SCHEMA public; --' }),
    ).rejects.toMatchObject({ code: 'AUDIT_STORE_CONFIG_INVALID' });
    await expect(
      openPostgresAuditStore({ connectionString: 'postgres://postgres@127.0.0.1:1/test', schema }),
    ).rejects.toMatchObject({ code: 'AUDIT_STORE_OPEN_FAILED' });
  });
});

// --- openAuditStore and the pure chain --------------------------------------------------------------

describe('openAuditStore', () => {
  test('opens the configured kind with automatic checkpoints and verifies a stream', async () => {
    const secret = randomBytes(32);
    const publicKeys = new Map([[keyIdOf(ed25519.getPublicKey(secret)), ed25519.getPublicKey(secret)]]);
    const store = await openAuditStore(
      { kind: 'sqlite', file: ':memory:', checkpoints: { everyAppends: 2 } },
      { signer: ed25519Signer(secret) },
    );
    const input = { source: 'guard', agent: 'a', run: 'r', step: 1, kind: 'decision', attrs: {} } as const;
    await store.appendMany('default', [input, input]);
    expect((await store.checkpoints('default')).map((c) => c.seq)).toEqual([2]);
    expect(await verifyStream(store, 'default', publicKeys)).toEqual({ ok: true, count: 2, lastSeq: 2 });
    await store.close();
    const pgStore = await openAuditStore({ kind: 'postgres', connectionString: POSTGRES_URL, schema });
    expect(await pgStore.read({ stream: uid('nothing') })).toEqual([]);
    await pgStore.close();
  });

  test('refuses invalid configurations with AUDIT_STORE_CONFIG_INVALID', async () => {
    const bad: unknown[] = [
      null,
      {},
      { kind: 'mysql', file: 'x' },
      { kind: 'sqlite' },
      { kind: 'sqlite', file: 'x', extra: 1 },
      { kind: 'sqlite', file: ':memory:', checkpoints: {} },
      { kind: 'sqlite', file: ':memory:', checkpoints: { everyAppends: 0 } },
      { kind: 'postgres', connectionString: POSTGRES_URL, schema: 'Bad-Name' },
    ];
    for (const config of bad) {
      const opening = openAuditStore(config as never);
      await expect(opening, JSON.stringify(config)).rejects.toBeInstanceOf(AuditStoreError);
      await expect(opening).rejects.toMatchObject({ code: 'AUDIT_STORE_CONFIG_INVALID' });
    }
    // checkpoints without a signer
    await expect(
      openAuditStore({ kind: 'sqlite', file: ':memory:', checkpoints: { everySeconds: 5 } }),
    ).rejects.toMatchObject({ code: 'AUDIT_STORE_CONFIG_INVALID' });
  });
});

describe('verifyChain (pure)', () => {
  const prepared = (i: number) => ({
    source: 'workflow' as const,
    agent: null,
    run: null,
    step: i,
    kind: 'decision' as const,
    attrsJson: JSON.stringify({ i }),
    id: undefined,
  });
  const chain = (n: number): AuditRecord[] =>
    chainRecords(
      's',
      { seq: 0, hash: GENESIS_HASH },
      Array.from({ length: n }, (_, i) => prepared(i)),
      '2026-01-01T00:00:00.000Z',
    );
  const reseq = (r: AuditRecord, seq: number, prevHash: string): AuditRecord => {
    const moved = { ...r, seq, prevHash };
    return { ...moved, hash: recordHash(moved) };
  };

  test('an empty chain is ok; records moved in the array are reordered', () => {
    expect(verifyChain([], [], new Map())).toEqual({ ok: true, count: 0, lastSeq: 0 });
    const [a, b, c, d] = chain(4) as [AuditRecord, AuditRecord, AuditRecord, AuditRecord];
    expect(verifyChain([a, c, b, d], [], new Map())).toEqual({
      ok: false,
      firstBroken: { seq: 3, reason: 'reordered' },
    });
    expect(verifyChain([a, b, b, c], [], new Map())).toEqual({
      ok: false,
      firstBroken: { seq: 2, reason: 'reordered' },
    });
  });

  test('a seq jump with an intact link is seq_gap', () => {
    const [a, b] = chain(2) as [AuditRecord, AuditRecord];
    expect(verifyChain([a, reseq(b, 5, a.hash)], [], new Map())).toEqual({
      ok: false,
      firstBroken: { seq: 5, reason: 'seq_gap' },
    });
  });

  test('a checkpoint at seq 0, or from another stream, is bad_checkpoint', () => {
    const secret = randomBytes(32);
    const signer = ed25519Signer(secret);
    const keys = new Map([[signer.keyId, ed25519.getPublicKey(secret)]]);
    const records = chain(3);
    const last = records[2] as AuditRecord;
    const good = signCheckpoint({ stream: 's', seq: 3, hash: last.hash, ts: last.ts }, signer);
    expect(verifyChain(records, [good], keys)).toEqual({ ok: true, count: 3, lastSeq: 3 });
    const zero = signCheckpoint({ stream: 's', seq: 0, hash: GENESIS_HASH, ts: last.ts }, signer);
    expect(verifyChain(records, [zero], keys)).toMatchObject({
      firstBroken: { seq: 0, reason: 'bad_checkpoint' },
    });
    const foreign = signCheckpoint({ stream: 't', seq: 3, hash: last.hash, ts: last.ts }, signer);
    expect(verifyChain(records, [foreign], keys)).toMatchObject({
      firstBroken: { seq: 3, reason: 'bad_checkpoint' },
    });
  });
});
