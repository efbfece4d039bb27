/**
 * The one case table every {@link AuditStore} must pass (SQLite and PostgreSQL alike). Cases
 * share a database: every stream name comes from `ctx.uid`. Tamper cases edit the database
 * directly with raw SQL, as an attacker with database access would.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { expect } from 'vitest';
import { AuditKind } from '../activities/audit/types.ts';
import { keyIdOf } from '../policy/votes.ts';
import { ed25519Signer, recordHash, verifyChain } from './chain.ts';
import type { AuditRecord, CheckpointSigner } from './chain.ts';
import { canonicalJson } from '../policy/canonical.ts';
import type { SqlValue } from './rows.ts';
import type { AuditAppendInput, AuditStore, AuditStoreOptions } from './store.ts';

/** What a case gets besides the store under test. */
export interface CaseContext {
  /** A name unique to this run, starting with `prefix` (valid as a stream name). */
  uid(prefix: string): string;
  /** Runs raw SQL on the store's database; placeholders are `$1`, `$2`, … */
  sql(text: string, values?: readonly SqlValue[]): Promise<void>;
  /** Qualified table names of the store's records and checkpoints. */
  readonly tables: { readonly records: string; readonly checkpoints: string };
  /** Opens another store on the same database with these options; the case closes it. */
  open(options: AuditStoreOptions): Promise<AuditStore>;
}

/** One named case. */
export interface AuditCase {
  readonly name: string;
  readonly run: (store: AuditStore, ctx: CaseContext) => Promise<void>;
}

interface Keys {
  readonly signer: CheckpointSigner;
  readonly publicKeys: ReadonlyMap<string, Uint8Array>;
}

function keys(): Keys {
  const secret = randomBytes(32);
  const publicKey = ed25519.getPublicKey(secret);
  return { signer: ed25519Signer(secret), publicKeys: new Map([[keyIdOf(publicKey), publicKey]]) };
}

function event(i: number, overrides: Partial<AuditAppendInput> = {}): AuditAppendInput {
  return {
    source: 'workflow',
    agent: 'agent-a',
    run: 'run-1',
    step: i,
    kind: AuditKind.decision,
    attrs: { i, tool: 'fs.read', nested: { ok: true, list: [1, 'two', null] } },
    ...overrides,
  };
}

async function fill(store: AuditStore, stream: string, n: number): Promise<AuditRecord[]> {
  return store.appendMany(
    stream,
    Array.from({ length: n }, (_, i) => event(i + 1)),
  );
}

async function verify(store: AuditStore, stream: string, publicKeys: ReadonlyMap<string, Uint8Array>) {
  return verifyChain(await store.read({ stream }), await store.checkpoints(stream), publicKeys);
}

function fakeClock(start: string): { clock: () => Date; advance: (ms: number) => void } {
  let now = Date.parse(start);
  return { clock: () => new Date(now), advance: (ms) => void (now += ms) };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The cases. */
export const AUDIT_CASES: readonly AuditCase[] = [
  {
    name: 'appends chain from the genesis hash with seq 1, 2, 3',
    async run(store, ctx) {
      const stream = ctx.uid('chain');
      const a = await store.append(stream, event(1));
      const [b, c] = await store.appendMany(stream, [event(2), event(3)]);
      expect(a).toMatchObject({ stream, seq: 1, prevHash: '0'.repeat(64) });
      expect(b).toMatchObject({ seq: 2, prevHash: a.hash });
      expect(c).toMatchObject({ seq: 3, prevHash: b?.hash });
      expect(a.hash).toBe(recordHash(a));
      expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(await store.read({ stream })).toEqual([a, b, c]);
      expect(await store.read({ stream, fromSeq: 2, limit: 1 })).toEqual([b]);
      // another stream has its own chain
      const other = await store.append(ctx.uid('chain-other'), event(9));
      expect(other).toMatchObject({ seq: 1, prevHash: '0'.repeat(64) });
      expect(Object.isFrozen(a) && Object.isFrozen(a.attrs)).toBe(true);
    },
  },
  {
    name: 'the store has no update or delete method',
    async run(store) {
      expect(Object.keys(store).sort()).toEqual(
        ['append', 'appendMany', 'checkpoint', 'checkpoints', 'close', 'read', 'search', 'subscribe'].sort(),
      );
    },
  },
  {
    name: '50 concurrent appends make one valid chain with seq 1..50',
    async run(store, ctx) {
      const stream = ctx.uid('concurrent');
      const k = keys();
      const stored = await Promise.all(Array.from({ length: 50 }, (_, i) => store.append(stream, event(i))));
      expect(stored.map((r) => r.seq).sort((x, y) => x - y)).toEqual(
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      const records = await store.read({ stream });
      expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(new Set(records.map((r) => r.attrs['i'])).size).toBe(50);
      await store.checkpoint(stream, k.signer);
      expect(await verify(store, stream, k.publicKeys)).toEqual({ ok: true, count: 50, lastSeq: 50 });
    },
  },
  {
    name: 'two store handles appending concurrently to one stream make one chain',
    async run(store, ctx) {
      const stream = ctx.uid('peers');
      const peer = await ctx.open({});
      try {
        await Promise.all(
          Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? store : peer).append(stream, event(i))),
        );
      } finally {
        await peer.close();
      }
      expect(await verify(store, stream, new Map())).toEqual({ ok: true, count: 40, lastSeq: 40 });
    },
  },
  {
    name: 'verify is ok over records and signed checkpoints; the checkpoint covers the head',
    async run(store, ctx) {
      const stream = ctx.uid('verify');
      const k = keys();
      await fill(store, stream, 5);
      const c1 = await store.checkpoint(stream, k.signer);
      const more = await fill(store, stream, 3);
      const c2 = await store.checkpoint(stream, k.signer);
      expect(c1).toMatchObject({ stream, seq: 5, keyId: k.signer.keyId });
      expect(c2).toMatchObject({ stream, seq: 8, hash: more.at(-1)?.hash });
      expect(c2.signature).toMatch(/^[0-9a-f]{128}$/);
      expect(await store.checkpoints(stream)).toEqual([c1, c2]);
      expect(await verify(store, stream, k.publicKeys)).toEqual({ ok: true, count: 8, lastSeq: 8 });
      // checkpointing an unchanged head again returns the stored checkpoint
      expect(await store.checkpoint(stream, k.signer)).toEqual(c2);
    },
  },
  {
    name: 'tamper: an edited attrs value is reported as edited at its seq',
    async run(store, ctx) {
      const stream = ctx.uid('edit');
      const k = keys();
      const records = await fill(store, stream, 6);
      await store.checkpoint(stream, k.signer);
      const target = records[3];
      const attrs = canonicalJson({ ...target?.attrs, tool: 'fs.delete' });
      await ctx.sql(`UPDATE ${ctx.tables.records} SET attrs = $1 WHERE stream = $2 AND seq = 4`, [
        attrs,
        stream,
      ]);
      expect(await verify(store, stream, k.publicKeys)).toEqual({
        ok: false,
        firstBroken: { seq: 4, reason: 'edited' },
      });
    },
  },
  {
    name: 'tamper: an edit with its hash recomputed breaks the link of the next record',
    async run(store, ctx) {
      const stream = ctx.uid('rehash');
      const records = await fill(store, stream, 6);
      const target = records[2];
      if (target === undefined) throw new Error('no record');
      const forged = { ...target, attrs: { ...target.attrs, tool: 'fs.delete' } };
      await ctx.sql(`UPDATE ${ctx.tables.records} SET attrs = $1, hash = $2 WHERE stream = $3 AND seq = 3`, [
        canonicalJson(forged.attrs),
        recordHash(forged),
        stream,
      ]);
      expect(await verify(store, stream, new Map())).toEqual({
        ok: false,
        firstBroken: { seq: 4, reason: 'broken_link' },
      });
    },
  },
  {
    name: 'tamper: a deleted row breaks the link at the next seq',
    async run(store, ctx) {
      const stream = ctx.uid('delete');
      await fill(store, stream, 6);
      await ctx.sql(`DELETE FROM ${ctx.tables.records} WHERE stream = $1 AND seq = 3`, [stream]);
      expect(await verify(store, stream, new Map())).toEqual({
        ok: false,
        firstBroken: { seq: 4, reason: 'broken_link' },
      });
    },
  },
  {
    name: "tamper: two rows' seq swapped is reported as reordered at the first",
    async run(store, ctx) {
      const stream = ctx.uid('swap');
      await fill(store, stream, 6);
      const t = ctx.tables.records;
      await ctx.sql(`UPDATE ${t} SET seq = -1 WHERE stream = $1 AND seq = 3`, [stream]);
      await ctx.sql(`UPDATE ${t} SET seq = 3 WHERE stream = $1 AND seq = 4`, [stream]);
      await ctx.sql(`UPDATE ${t} SET seq = 4 WHERE stream = $1 AND seq = -1`, [stream]);
      expect(await verify(store, stream, new Map())).toEqual({
        ok: false,
        firstBroken: { seq: 3, reason: 'reordered' },
      });
    },
  },
  {
    name: 'tamper: a forged row inserted (later rows renumbered) breaks the link after it',
    async run(store, ctx) {
      const stream = ctx.uid('insert');
      const k = keys();
      const records = await fill(store, stream, 6);
      await store.checkpoint(stream, k.signer);
      const t = ctx.tables.records;
      await ctx.sql(`UPDATE ${t} SET seq = -seq - 1 WHERE stream = $1 AND seq >= 5`, [stream]);
      await ctx.sql(`UPDATE ${t} SET seq = -seq WHERE stream = $1 AND seq < 0`, [stream]);
      const prev = records[3];
      if (prev === undefined) throw new Error('no record');
      const envelope = { ...event(99), seq: 5, ts: prev.ts, prevHash: prev.hash };
      const hash = recordHash(envelope);
      await ctx.sql(
        `INSERT INTO ${t} (stream, seq, ts, source, agent, run, step, kind, attrs, prev_hash, hash)
         VALUES ($1, 5, $2, 'workflow', 'agent-a', 'run-1', 99, 'decision', $3, $4, $5)`,
        [stream, prev.ts, canonicalJson(envelope.attrs), prev.hash, hash],
      );
      // the forged row itself chains onto seq 4; the (renumbered) record after it does not
      expect(await verify(store, stream, k.publicKeys)).toEqual({
        ok: false,
        firstBroken: { seq: 6, reason: 'broken_link' },
      });
      expect(verifyChain(await store.read({ stream }), [], k.publicKeys)).toEqual({
        ok: false,
        firstBroken: { seq: 6, reason: 'broken_link' },
      });
    },
  },
  {
    name: 'tamper: the tail dropped after a checkpoint is reported as truncated',
    async run(store, ctx) {
      const stream = ctx.uid('truncate');
      const k = keys();
      await fill(store, stream, 10);
      await store.checkpoint(stream, k.signer);
      await ctx.sql(`DELETE FROM ${ctx.tables.records} WHERE stream = $1 AND seq > 7`, [stream]);
      expect(await verify(store, stream, k.publicKeys)).toEqual({
        ok: false,
        firstBroken: { seq: 8, reason: 'truncated' },
      });
    },
  },
  {
    name: 'a forged checkpoint signature, an edited checkpoint hash or an untrusted key is bad_checkpoint',
    async run(store, ctx) {
      const k = keys();
      const forged = keys();
      const stream = ctx.uid('badsig');
      await fill(store, stream, 4);
      const real = await store.checkpoint(stream, k.signer);
      await fill(store, stream, 2);
      // a forger signs seq 6 with their own key but claims the trusted key id
      const other = await ctx.open({});
      const theirs = await other.checkpoint(stream, forged.signer);
      await other.close();
      await ctx.sql(`UPDATE ${ctx.tables.checkpoints} SET key_id = $1 WHERE stream = $2 AND seq = 6`, [
        real.keyId,
        stream,
      ]);
      expect(theirs.seq).toBe(6);
      expect(await verify(store, stream, k.publicKeys)).toEqual({
        ok: false,
        firstBroken: { seq: 6, reason: 'bad_checkpoint' },
      });

      const edited = ctx.uid('badhash');
      await fill(store, edited, 3);
      await store.checkpoint(edited, k.signer);
      await ctx.sql(`UPDATE ${ctx.tables.checkpoints} SET hash = $1 WHERE stream = $2`, [
        'f'.repeat(64),
        edited,
      ]);
      expect(await verify(store, edited, k.publicKeys)).toEqual({
        ok: false,
        firstBroken: { seq: 3, reason: 'bad_checkpoint' },
      });

      const untrusted = ctx.uid('untrusted');
      await fill(store, untrusted, 2);
      await store.checkpoint(untrusted, forged.signer);
      expect(await verify(store, untrusted, k.publicKeys)).toEqual({
        ok: false,
        firstBroken: { seq: 2, reason: 'bad_checkpoint' },
      });
      expect(await verify(store, untrusted, forged.publicKeys)).toMatchObject({ ok: true });
    },
  },
  {
    name: 'search filters by stream, kind, agent, run, since and attrs text',
    async run(_store, ctx) {
      const { clock, advance } = fakeClock('2026-03-01T10:00:00.000Z');
      const store = await ctx.open({ clock });
      try {
        const stream = ctx.uid('search');
        const agent = ctx.uid('agent');
        const run = ctx.uid('run');
        await store.append(
          stream,
          event(1, { agent, run, kind: AuditKind.runStarted, attrs: { note: 'Hello NEEDLE' } }),
        );
        advance(60_000);
        await store.append(
          stream,
          event(2, { agent, run: null, kind: AuditKind.decision, attrs: { note: 'plain' } }),
        );
        advance(60_000);
        await store.append(stream, event(3, { agent: null, run, kind: AuditKind.decision, attrs: { n: 3 } }));
        await store.append(ctx.uid('search-other'), event(4, { agent, run, attrs: { note: 'needle' } }));
        const seqs = (records: AuditRecord[]) => records.filter((r) => r.stream === stream).map((r) => r.seq);
        expect(seqs(await store.search({ stream }))).toEqual([1, 2, 3]);
        expect(seqs(await store.search({ stream, kind: AuditKind.decision }))).toEqual([2, 3]);
        expect(seqs(await store.search({ agent }))).toEqual([1, 2]);
        expect((await store.search({ agent })).length).toBe(3);
        expect(seqs(await store.search({ run }))).toEqual([1, 3]);
        expect(seqs(await store.search({ stream, since: '2026-03-01T10:01:00.000Z' }))).toEqual([2, 3]);
        expect(seqs(await store.search({ stream, since: '2026-03-01T10:01:00Z' }))).toEqual([2, 3]);
        expect((await store.search({ agent, text: 'needle' })).map((r) => r.attrs['note'])).toEqual([
          'Hello NEEDLE',
          'needle',
        ]);
        expect(await store.search({ stream, text: '%' })).toEqual([]);
        expect(await store.search({ stream, limit: 2 })).toHaveLength(2);
        await expect(store.search({ since: 'yesterday' })).rejects.toMatchObject({
          code: 'AUDIT_STORE_INVALID_INPUT',
        });
      } finally {
        await store.close();
      }
    },
  },
  {
    name: 'subscribe delivers the backlog from fromSeq, then new records in order',
    async run(store, ctx) {
      const stream = ctx.uid('subscribe');
      await fill(store, stream, 3);
      const seen: number[] = [];
      const stop = store.subscribe(stream, 2, async (record) => {
        await new Promise((resolve) => setTimeout(resolve, 1));
        seen.push(record.seq);
      });
      await until(() => seen.length === 2, 'the backlog');
      await Promise.all([store.append(stream, event(4)), store.appendMany(stream, [event(5), event(6)])]);
      await store.append(ctx.uid('subscribe-other'), event(0));
      await until(() => seen.length === 5, 'new records');
      expect(seen).toEqual([2, 3, 4, 5, 6]);
      stop();
      await store.append(stream, event(7));
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(seen).toEqual([2, 3, 4, 5, 6]);
    },
  },
  {
    name: 'automatic checkpoints every N appends and after T seconds by the injected clock',
    async run(_store, ctx) {
      const k = keys();
      const { clock, advance } = fakeClock('2026-03-01T10:00:00.000Z');
      const errors: unknown[] = [];
      const store = await ctx.open({
        clock,
        autoCheckpoint: { signer: k.signer, everyAppends: 5, everySeconds: 60 },
        onError: (e) => errors.push(e),
      });
      try {
        const stream = ctx.uid('auto');
        await fill(store, stream, 4);
        expect(await store.checkpoints(stream)).toEqual([]);
        await store.append(stream, event(5));
        expect((await store.checkpoints(stream)).map((c) => c.seq)).toEqual([5]);
        await store.append(stream, event(6));
        advance(59_000);
        await store.append(stream, event(7));
        expect((await store.checkpoints(stream)).map((c) => c.seq)).toEqual([5]);
        advance(1_000);
        await store.append(stream, event(8));
        const cps = await store.checkpoints(stream);
        expect(cps.map((c) => c.seq)).toEqual([5, 8]);
        expect(cps[1]?.ts).toBe('2026-03-01T10:01:00.000Z');
        expect(await verify(store, stream, k.publicKeys)).toEqual({ ok: true, count: 8, lastSeq: 8 });
        expect(errors).toEqual([]);
      } finally {
        await store.close();
      }
    },
  },
  {
    name: 'invalid input, an empty stream checkpoint and a closed store are refused with stable codes',
    async run(store, ctx) {
      const k = keys();
      await expect(store.append('bad stream!', event(1))).rejects.toMatchObject({
        code: 'AUDIT_STORE_INVALID_INPUT',
      });
      const stream = ctx.uid('invalid');
      await expect(store.append(stream, { ...event(1), kind: 'nope' as never })).rejects.toMatchObject({
        code: 'AUDIT_INVALID_EVENT',
      });
      await expect(store.append(stream, event(1, { attrs: { n: Number.NaN } }))).rejects.toMatchObject({
        code: 'AUDIT_INVALID_EVENT',
      });
      await expect(store.appendMany(stream, [])).rejects.toMatchObject({ code: 'AUDIT_STORE_INVALID_INPUT' });
      await expect(store.read({ stream, fromSeq: 0 })).rejects.toMatchObject({
        code: 'AUDIT_STORE_INVALID_INPUT',
      });
      await expect(store.checkpoint(stream, k.signer)).rejects.toMatchObject({
        code: 'AUDIT_STORE_EMPTY_STREAM',
      });
      expect(await store.read({ stream })).toEqual([]);
      const other = await ctx.open({});
      await other.close();
      await expect(other.append(stream, event(1))).rejects.toMatchObject({ code: 'AUDIT_STORE_CLOSED' });
      await expect(other.read({ stream })).rejects.toMatchObject({ code: 'AUDIT_STORE_CLOSED' });
    },
  },
];
