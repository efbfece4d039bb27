/**
 * The one case table every {@link ApprovalStore} must pass (SQLite and PostgreSQL alike). Cases
 * share a database with each other: every id, principal and key comes from `ctx.uid`, and list
 * assertions look only at the case's own rows.
 * @module
 */
import { expect } from 'vitest';
import type {
  ApprovalStore,
  AttemptRecord,
  ChannelName,
  DeliveryRecord,
  RequestRecord,
  SessionRecord,
  TokenRecord,
  VoteClaim,
  VoteRecordRow,
} from '../core/types.ts';
import { ApprovalStoreErrorCode } from './errors.ts';
import { MAX_JSON_DEPTH } from './rows.ts';

/** What a case gets besides the store under test. */
export interface CaseContext {
  /** A name unique to this run (for ids, principals, keys), starting with `prefix`. */
  uid(prefix: string): string;
  /** Opens another store: on the same database where there is one (file, schema), else a new one. */
  openPeer(): Promise<Peer>;
}

/** A second store handle opened by {@link CaseContext.openPeer}. */
export interface Peer {
  readonly store: ApprovalStore;
  /** True when the peer sees the data of the store under test. */
  readonly shared: boolean;
  /** Server connections the peer holds, where the test can observe them (PostgreSQL); else null. */
  readonly connections: (() => Promise<number>) | null;
}

/** One named case: run against a store that other cases use too. */
export interface StoreCase {
  readonly name: string;
  readonly run: (store: ApprovalStore, ctx: CaseContext) => Promise<void>;
}

const T0 = 1_750_000_000_000;
const HOUR = 3_600_000;
const INVALID = { code: ApprovalStoreErrorCode.invalidInput };
const DUPLICATE = { code: ApprovalStoreErrorCode.duplicate };
/** Keys no store can hold: lookups by them must find nothing, not throw. */
const UNSTORABLE = ['nul\0byte', 'lone\uD800surrogate', '\uDC00'];

interface People {
  readonly alice: string;
  readonly bob: string;
  readonly carol: string;
  readonly dave: string;
  readonly requester: string;
  readonly agent: string;
}

function people(ctx: CaseContext): People {
  return {
    alice: ctx.uid('alice'),
    bob: ctx.uid('bob'),
    carol: ctx.uid('carol'),
    dave: ctx.uid('dave'),
    requester: ctx.uid('requester'),
    agent: ctx.uid('agent'),
  };
}

function request(ctx: CaseContext, p: People, overrides: Partial<RequestRecord> = {}): RequestRecord {
  const run = ctx.uid('run');
  return {
    id: `${run}/approval/3`,
    revision: 1,
    runWorkflowId: run,
    agentId: p.agent,
    requester: p.requester,
    step: 3,
    tool: 'billing.refund',
    args: { invoice: 'inv_42', amount: { value: 1250, currency: 'EUR' }, lines: [1, 2, null] },
    resource: 'invoice:inv_42',
    rationale: 'customer asked <b>twice</b>',
    ruleId: 'refunds-over-1000',
    policyVersion: 'sha256:policy',
    actionDigest: 'a'.repeat(64),
    eligible: [p.alice, p.bob],
    escalationEligible: [p.carol],
    escalated: false,
    quorum: 1,
    highRisk: false,
    channels: [],
    createdAtMs: T0,
    expiresAtMs: T0 + HOUR,
    state: 'pending',
    approvedBy: [],
    deniedBy: null,
    reason: null,
    decidedAtMs: null,
    slackMessages: [],
    ...overrides,
  };
}

function vote(r: RequestRecord, principal: string, overrides: Partial<VoteRecordRow> = {}): VoteRecordRow {
  return {
    requestId: r.id,
    revision: r.revision,
    principal,
    decision: 'approve',
    channel: 'web',
    reason: null,
    atMs: T0 + 1_000,
    ...overrides,
  };
}

function token(
  ctx: CaseContext,
  overrides: Partial<Omit<TokenRecord, 'usedAtMs'>> = {},
): Omit<TokenRecord, 'usedAtMs'> {
  return {
    hash: ctx.uid('token-hash'),
    purpose: 'email-review',
    principal: ctx.uid('alice'),
    requestId: ctx.uid('request'),
    revision: 1,
    createdAtMs: T0,
    expiresAtMs: T0 + HOUR,
    ...overrides,
  };
}

function session(ctx: CaseContext, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    hash: ctx.uid('session-hash'),
    principal: ctx.uid('alice'),
    csrf: ctx.uid('csrf'),
    createdAtMs: T0,
    expiresAtMs: T0 + HOUR,
    ...overrides,
  };
}

function attempt(requestId: string | null, overrides: Partial<AttemptRecord> = {}): AttemptRecord {
  return {
    requestId,
    channel: 'web',
    action: 'view',
    principal: null,
    outcome: 'ok',
    detail: {},
    atMs: T0,
    ...overrides,
  };
}

function delivery(requestId: string, overrides: Partial<DeliveryRecord> = {}): DeliveryRecord {
  return {
    requestId,
    channel: 'email',
    kind: 'request',
    principal: 'alice',
    address: 'alice@example.com',
    status: 'sent',
    error: null,
    atMs: T0,
    ...overrides,
  };
}

function count<T>(values: readonly T[], wanted: T): number {
  return values.filter((v) => v === wanted).length;
}

function ids(records: readonly RequestRecord[], own: readonly RequestRecord[]): string[] {
  const mine = new Set(own.map((r) => r.id));
  return records.filter((r) => mine.has(r.id)).map((r) => r.id);
}

function nested(depth: number): unknown {
  let value: unknown = 'bottom';
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { level: value };
  return value;
}

function cyclic(): unknown {
  const loop: Record<string, unknown> = { a: 1 };
  loop['self'] = { back: loop };
  return loop;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

/** The case table. */
export const STORE_CASES: readonly StoreCase[] = [
  // --- requests: storage -----------------------------------------------------------------------
  {
    name: 'putRequest stores a request; putRequest and getRequest return it exactly',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, {
        revision: 2,
        channels: ['slack', 'web'],
        escalated: true,
        quorum: 2,
        highRisk: true,
        approvedBy: [p.alice],
        reason: 'edited: amount lowered',
        slackMessages: [
          { principal: p.alice, channel: 'D012', ts: '1712345678.000100' },
          { principal: p.bob, channel: 'C999', ts: '1712345678.000200' },
        ],
      });
      expect(await store.putRequest(r)).toEqual(r);
      expect(await store.getRequest(r.id)).toEqual(r);
    },
  },
  {
    name: 'records round-trip null and empty fields',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, {
        args: null,
        resource: null,
        rationale: null,
        ruleId: null,
        eligible: [],
        escalationEligible: [],
        channels: [],
        approvedBy: [],
        slackMessages: [],
        state: 'denied',
        deniedBy: p.bob,
        reason: '',
        decidedAtMs: T0 + 5,
      });
      await store.putRequest(r);
      expect(await store.getRequest(r.id)).toEqual(r);
    },
  },
  {
    name: 'args JSON round-trips exactly: scalars, nesting, unicode, float extremes, hostile keys',
    async run(store, ctx) {
      const p = people(ctx);
      const samples: unknown[] = [
        true,
        0,
        -17,
        1e300,
        5e-324,
        0.1 + 0.2,
        Number.MAX_SAFE_INTEGER,
        '',
        'plain',
        "'; DROP TABLE requests; --",
        'quotes " \' ` and \\ backslash \\u0000 (escaped text, not NUL)',
        'unicode: é 漢字 🎉 \u2028\u2029 \t\n\r',
        [],
        {},
        [[[]], {}, [null]],
        {
          'key with spaces': 1,
          '': 'empty key',
          ключ: ['ü'],
          nested: { deeper: { deepest: [1, 'two', false] } },
        },
        JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}'),
        nested(MAX_JSON_DEPTH - 1),
      ];
      for (const [i, args] of samples.entries()) {
        const r = request(ctx, p, { args, id: ctx.uid(`args-${i}`) });
        expect(await store.putRequest(r)).toEqual(r);
        expect((await store.getRequest(r.id))?.args).toEqual(args);
      }
      expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    },
  },
  {
    name: 'returned records are deeply frozen',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { slackMessages: [{ principal: p.alice, channel: 'C1', ts: '1.2' }] });
      for (const got of [await store.putRequest(r), await store.getRequest(r.id)]) {
        expect(got).not.toBeNull();
        if (got === null) return;
        expect(Object.isFrozen(got)).toBe(true);
        expect(Object.isFrozen(got.eligible)).toBe(true);
        expect(Object.isFrozen(got.slackMessages[0])).toBe(true);
        expect(Object.isFrozen((got.args as { amount: object }).amount)).toBe(true);
        expect(() => {
          (got.eligible as string[]).push(p.dave);
        }).toThrow(TypeError);
      }
      // the caller's object is not frozen or aliased
      expect(Object.isFrozen(r)).toBe(false);
    },
  },
  {
    name: 'putRequest is idempotent by id: a second put returns the first record unchanged',
    async run(store, ctx) {
      const p = people(ctx);
      const first = request(ctx, p);
      await store.putRequest(first);
      const second = {
        ...first,
        revision: 5,
        tool: 'other.tool',
        eligible: [p.dave],
        state: 'approved' as const,
      };
      expect(await store.putRequest(second)).toEqual(first);
      expect(await store.getRequest(first.id)).toEqual(first);
    },
  },
  {
    name: 'concurrent putRequest of one id: every caller gets the same stored record',
    async run(store, ctx) {
      const p = people(ctx);
      const base = request(ctx, p);
      const variants = Array.from({ length: 8 }, (_, i) => ({ ...base, step: i, tool: `tool.${i}` }));
      const results = await Promise.all(variants.map((v) => store.putRequest(v)));
      const stored = await store.getRequest(base.id);
      expect(variants).toContainEqual(stored);
      for (const result of results) expect(result).toEqual(stored);
    },
  },
  {
    name: 'getRequest of an unknown id is null; ids with SQL or LIKE metacharacters are plain data',
    async run(store, ctx) {
      const p = people(ctx);
      const tricky = request(ctx, p, { id: `${ctx.uid('r')}' OR '1'='1` });
      const percent = request(ctx, p, { id: `${ctx.uid('r')}%_` });
      await store.putRequest(tricky);
      await store.putRequest(percent);
      expect(await store.getRequest(tricky.id)).toEqual(tricky);
      expect(await store.getRequest(percent.id)).toEqual(percent);
      expect(await store.getRequest(ctx.uid('missing'))).toBeNull();
      expect(await store.getRequest(`' OR '1'='1`)).toBeNull();
      expect(await store.getRequest('%')).toBeNull();
      expect(await store.getRequest(percent.id.slice(0, -2))).toBeNull();
    },
  },
  {
    name: 'putRequest refuses malformed records with APPROVAL_STORE_INVALID_INPUT and stores nothing',
    async run(store, ctx) {
      const p = people(ctx);
      const bad: [string, (id: string) => unknown][] = [
        ['NUL in a text field', (id) => request(ctx, p, { id, tool: 'a\0b' })],
        ['lone surrogate in a principal', (id) => request(ctx, p, { id, eligible: ['x\uD800'] })],
        ['NUL inside args', (id) => request(ctx, p, { id, args: { deep: ['x\0'] } })],
        ['NUL in an args key', (id) => request(ctx, p, { id, args: { 'k\0': 1 } })],
        ['lone surrogate inside args', (id) => request(ctx, p, { id, args: '\uDFFF' })],
        ['undefined args', (id) => request(ctx, p, { id, args: undefined })],
        ['NaN in args', (id) => request(ctx, p, { id, args: [Number.NaN] })],
        ['Infinity in args', (id) => request(ctx, p, { id, args: { n: Infinity } })],
        ['a Date in args', (id) => request(ctx, p, { id, args: { at: new Date(T0) } })],
        ['a Map in args', (id) => request(ctx, p, { id, args: new Map([['a', 1]]) })],
        ['a bigint in args', (id) => request(ctx, p, { id, args: { n: 1n } })],
        ['a function in args', (id) => request(ctx, p, { id, args: { f: () => 1 } })],
        ['undefined in an args array', (id) => request(ctx, p, { id, args: [1, undefined] })],
        ['args nested too deep', (id) => request(ctx, p, { id, args: nested(MAX_JSON_DEPTH + 1) })],
        ['cyclic args', (id) => request(ctx, p, { id, args: cyclic() })],
        ['quorum 0', (id) => request(ctx, p, { id, quorum: 0 })],
        ['fractional revision', (id) => request(ctx, p, { id, revision: 1.5 })],
        ['negative expiry', (id) => request(ctx, p, { id, expiresAtMs: -1 })],
        ['unsafe integer time', (id) => request(ctx, p, { id, createdAtMs: 2 ** 60 })],
        ['unknown state', (id) => ({ ...request(ctx, p, { id }), state: 'maybe' })],
        ['unknown channel', (id) => ({ ...request(ctx, p, { id }), channels: ['fax'] })],
        ['a field not in the model', (id) => ({ ...request(ctx, p, { id }), isAdmin: true })],
        ['a missing field', (id) => ({ ...request(ctx, p, { id }), escalated: undefined })],
        ['an empty id', () => request(ctx, p, { id: '' })],
        ['not an object', () => 'request'],
      ];
      for (const [label, make] of bad) {
        const id = ctx.uid('bad');
        await expect(store.putRequest(make(id) as RequestRecord), label).rejects.toMatchObject(INVALID);
        expect(await store.getRequest(id), label).toBeNull();
      }
    },
  },

  // --- requests: listPending ----------------------------------------------------------------------
  {
    name: 'listPending(principal): only pending requests it is eligible for, oldest expiry first',
    async run(store, ctx) {
      const p = people(ctx);
      const late = request(ctx, p, { expiresAtMs: T0 + 3 * HOUR });
      const early = request(ctx, p, { expiresAtMs: T0 + HOUR });
      const middle = request(ctx, p, { expiresAtMs: T0 + 2 * HOUR, eligible: [p.alice] });
      const bobOnly = request(ctx, p, { eligible: [p.bob] });
      const approved = request(ctx, p, { state: 'approved', approvedBy: [p.alice], decidedAtMs: T0 });
      const others = (['denied', 'timed_out', 'cancelled'] as const).map((state) =>
        request(ctx, p, { state }),
      );
      for (const r of [late, early, middle, bobOnly, approved, ...others]) await store.putRequest(r);
      const forAlice = await store.listPending(p.alice);
      expect(forAlice.map((r) => r.id)).toEqual([early.id, middle.id, late.id]);
      expect(forAlice[0]).toEqual(early);
      expect((await store.listPending(p.bob)).map((r) => r.id)).toEqual([early.id, bobOnly.id, late.id]);
      expect(await store.listPending(p.dave)).toEqual([]);
    },
  },
  {
    name: 'listPending never offers a request to its requester or its agent, even when listed as eligible',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { eligible: [p.requester, p.agent, p.alice] });
      const escalated = request(ctx, p, { escalated: true, escalationEligible: [p.requester, p.agent] });
      await store.putRequest(r);
      await store.putRequest(escalated);
      expect(await store.listPending(p.requester)).toEqual([]);
      expect(await store.listPending(p.agent)).toEqual([]);
      expect((await store.listPending(p.alice)).map((x) => x.id).sort()).toEqual([r.id, escalated.id].sort());
    },
  },
  {
    name: 'listPending adds escalationEligible once escalated, and only then (escalation adds approvers)',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { eligible: [p.alice], escalationEligible: [p.carol] });
      await store.putRequest(r);
      expect((await store.listPending(p.alice)).map((x) => x.id)).toEqual([r.id]);
      expect(await store.listPending(p.carol)).toEqual([]);
      await store.updateRequest(r.id, { escalated: true });
      expect((await store.listPending(p.alice)).map((x) => x.id)).toEqual([r.id]);
      expect((await store.listPending(p.carol)).map((x) => x.id)).toEqual([r.id]);
    },
  },
  {
    name: 'listPending matches principals exactly: no substrings, wildcards, JSON quoting or case folding',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { eligible: [p.alice, `${p.bob}%`], escalationEligible: [] });
      await store.putRequest(r);
      for (const probe of [
        p.alice.slice(0, -1),
        `${p.alice}x`,
        p.alice.toUpperCase(),
        `"${p.alice}"`,
        `["${p.alice}"]`,
        p.bob,
        `${p.bob}_`,
        '%',
        '',
        ...UNSTORABLE,
      ]) {
        expect(ids(await store.listPending(probe), [r]), probe).toEqual([]);
      }
      expect(ids(await store.listPending(`${p.bob}%`), [r])).toEqual([r.id]);
    },
  },
  {
    name: 'listPending() without a principal: every pending request, oldest expiry first',
    async run(store, ctx) {
      const p = people(ctx);
      const b = request(ctx, p, { expiresAtMs: T0 + 2 * HOUR, eligible: [] });
      const a = request(ctx, p, { expiresAtMs: T0 + HOUR, escalated: true });
      const done = request(ctx, p, { state: 'cancelled' });
      for (const r of [b, a, done]) await store.putRequest(r);
      const all = await store.listPending();
      expect(ids(all, [a, b, done])).toEqual([a.id, b.id]);
      expect(all.every((r) => r.state === 'pending')).toBe(true);
      const expiries = all.map((r) => r.expiresAtMs);
      expect(expiries).toEqual([...expiries].sort((x, y) => x - y));
    },
  },

  // --- requests: updateRequest --------------------------------------------------------------------
  {
    name: 'updateRequest applies a patch, returns the updated record and leaves other fields alone',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p);
      await store.putRequest(r);
      const patch = {
        revision: 2,
        args: { invoice: 'inv_42', amount: { value: 900, currency: 'EUR' } },
        resource: null,
        actionDigest: 'b'.repeat(64),
        approvedBy: [p.alice],
        slackMessages: [{ principal: p.alice, channel: 'D1', ts: '9.9' }],
        reason: 'lowered',
      };
      const updated = await store.updateRequest(r.id, patch, { state: 'pending', revision: 1 });
      expect(updated).toEqual({ ...r, ...patch });
      expect(await store.getRequest(r.id)).toEqual({ ...r, ...patch });
      const final = { state: 'approved' as const, decidedAtMs: T0 + 7 };
      expect(await store.updateRequest(r.id, final)).toEqual({ ...r, ...patch, ...final });
    },
  },
  {
    name: 'updateRequest with expect is compare-and-set: a wrong state or revision changes nothing',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { revision: 3 });
      await store.putRequest(r);
      const deny = { state: 'denied' as const, deniedBy: p.bob, decidedAtMs: T0 + 1 };
      expect(await store.updateRequest(r.id, deny, { state: 'approved' })).toBeNull();
      expect(await store.updateRequest(r.id, deny, { revision: 2 })).toBeNull();
      expect(await store.updateRequest(r.id, deny, { state: 'pending', revision: 4 })).toBeNull();
      expect(await store.updateRequest(r.id, deny, { state: 'approved', revision: 3 })).toBeNull();
      expect(await store.getRequest(r.id)).toEqual(r);
      expect(await store.updateRequest(r.id, deny, { state: 'pending', revision: 3 })).toEqual({
        ...r,
        ...deny,
      });
      // now decided: the same compare-and-set fails
      expect(await store.updateRequest(r.id, { state: 'approved' }, { state: 'pending' })).toBeNull();
      expect((await store.getRequest(r.id))?.state).toBe('denied');
    },
  },
  {
    name: 'updateRequest of an unknown id is null and creates nothing',
    async run(store, ctx) {
      const id = ctx.uid('missing');
      expect(await store.updateRequest(id, { state: 'approved' })).toBeNull();
      expect(await store.updateRequest(id, {}, { state: 'pending' })).toBeNull();
      expect(await store.getRequest(id)).toBeNull();
    },
  },
  {
    name: 'an empty patch returns the record when the condition holds, null when it does not',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p);
      await store.putRequest(r);
      expect(await store.updateRequest(r.id, {})).toEqual(r);
      expect(await store.updateRequest(r.id, {}, { revision: 1 })).toEqual(r);
      expect(await store.updateRequest(r.id, {}, { revision: 2 })).toBeNull();
    },
  },
  {
    name: 'two concurrent finalize calls (approve vs deny): exactly one wins and is what is stored',
    async run(store, ctx) {
      const p = people(ctx);
      for (let round = 0; round < 5; round++) {
        const r = request(ctx, p);
        await store.putRequest(r);
        const expect_ = { state: 'pending' as const, revision: 1 };
        const [approved, denied] = await Promise.all([
          store.updateRequest(
            r.id,
            { state: 'approved', approvedBy: [p.alice], decidedAtMs: T0 + 1 },
            expect_,
          ),
          store.updateRequest(r.id, { state: 'denied', deniedBy: p.bob, decidedAtMs: T0 + 2 }, expect_),
        ]);
        expect([approved, denied].filter((x) => x !== null)).toHaveLength(1);
        const winner = approved ?? denied;
        expect(await store.getRequest(r.id)).toEqual(winner);
      }
    },
  },
  {
    name: 'ten concurrent revision bumps from the same revision: exactly one succeeds',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p);
      await store.putRequest(r);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.updateRequest(r.id, { revision: 2, actionDigest: String(i).repeat(64) }, { revision: 1 }),
        ),
      );
      const winners = results.filter((x) => x !== null);
      expect(winners).toHaveLength(1);
      expect(await store.getRequest(r.id)).toEqual(winners[0]);
    },
  },
  {
    name: 'updateRequest refuses fields it may not change and malformed values, changing nothing',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p);
      await store.putRequest(r);
      const bad: unknown[] = [
        { requester: p.alice },
        { eligible: [p.requester] },
        { id: ctx.uid('other') },
        { quorum: 0 },
        { state: 'approved', agentId: p.alice },
        { state: 'maybe' },
        { approvedBy: [1] },
        { revision: 0 },
        { args: { x: Number.NaN } },
        { slackMessages: [{ principal: p.alice }] },
        { reason: 'x\0' },
      ];
      for (const patch of bad) {
        await expect(store.updateRequest(r.id, patch as never), JSON.stringify(patch)).rejects.toMatchObject(
          INVALID,
        );
      }
      await expect(store.updateRequest(r.id, {}, { state: 'maybe' } as never)).rejects.toMatchObject(INVALID);
      expect(await store.getRequest(r.id)).toEqual(r);
    },
  },

  // --- votes -------------------------------------------------------------------------------------
  {
    name: 'recordVote records a vote; listVotes returns every field in insertion order',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { quorum: 3, eligible: [p.alice, p.bob, p.carol] });
      await store.putRequest(r);
      const votes = [
        vote(r, p.carol, { channel: 'slack', atMs: T0 + 30 }),
        vote(r, p.alice, { channel: 'email', decision: 'deny', reason: 'too much', atMs: T0 + 10 }),
        vote(r, p.bob, { channel: 'operator', atMs: T0 + 20 }),
      ];
      for (const v of votes) expect(await store.recordVote(v)).toBe('recorded');
      expect(await store.listVotes(r.id)).toEqual(votes);
      expect(await store.listVotes(ctx.uid('other'))).toEqual([]);
    },
  },
  {
    name: 'recordVote: the same principal again, on any channel with any decision, is a duplicate',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { quorum: 2 });
      await store.putRequest(r);
      const first = vote(r, p.alice, { channel: 'slack' });
      expect(await store.recordVote(first)).toBe('recorded');
      for (const channel of ['slack', 'email', 'web', 'operator'] as const) {
        for (const decision of ['approve', 'deny'] as const) {
          expect(await store.recordVote(vote(r, p.alice, { channel, decision, atMs: T0 + 99 }))).toBe(
            'duplicate',
          );
        }
      }
      expect(await store.listVotes(r.id)).toEqual([first]);
    },
  },
  {
    name: 'recordVote on a request that is no longer pending is refused as decided',
    async run(store, ctx) {
      const p = people(ctx);
      for (const state of ['approved', 'denied', 'timed_out', 'cancelled'] as const) {
        const r = request(ctx, p, { state });
        await store.putRequest(r);
        expect(await store.recordVote(vote(r, p.alice))).toBe('decided');
        expect(await store.listVotes(r.id)).toEqual([]);
      }
      const later = request(ctx, p);
      await store.putRequest(later);
      await store.updateRequest(later.id, { state: 'approved' });
      expect(await store.recordVote(vote(later, p.alice))).toBe('decided');
    },
  },
  {
    name: 'recordVote on another revision than the current one is stale_revision',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { revision: 2 });
      await store.putRequest(r);
      expect(await store.recordVote(vote(r, p.alice, { revision: 1 }))).toBe('stale_revision');
      expect(await store.recordVote(vote(r, p.alice, { revision: 3 }))).toBe('stale_revision');
      expect(await store.listVotes(r.id)).toEqual([]);
      expect(await store.recordVote(vote(r, p.alice, { revision: 2 }))).toBe('recorded');
      await store.updateRequest(r.id, { revision: 3 }, { revision: 2 });
      expect(await store.recordVote(vote(r, p.bob, { revision: 2 }))).toBe('stale_revision');
    },
  },
  {
    name: 'recordVote on an unknown request is unknown_request',
    async run(store, ctx) {
      const p = people(ctx);
      const ghost = request(ctx, p);
      expect(await store.recordVote(vote(ghost, p.alice))).toBe('unknown_request');
      for (const id of UNSTORABLE) {
        expect(await store.recordVote(vote({ ...ghost, id }, p.alice))).toBe('unknown_request');
      }
      expect(await store.listVotes(ghost.id)).toEqual([]);
    },
  },
  {
    name: 'ten concurrent votes by the same principal: exactly one is recorded',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p);
      await store.putRequest(r);
      const channels: ChannelName[] = ['slack', 'email', 'web', 'operator'];
      const claims = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.recordVote(
            vote(r, p.alice, {
              channel: channels[i % channels.length] ?? 'web',
              decision: i % 2 === 0 ? 'approve' : 'deny',
              atMs: T0 + i,
            }),
          ),
        ),
      );
      expect(count<VoteClaim>(claims, 'recorded')).toBe(1);
      expect(count<VoteClaim>(claims, 'duplicate')).toBe(9);
      expect(await store.listVotes(r.id)).toHaveLength(1);
    },
  },
  {
    name: 'concurrent votes by different principals are all recorded',
    async run(store, ctx) {
      const p = people(ctx);
      const principals = Array.from({ length: 10 }, (_, i) => ctx.uid(`voter-${i}`));
      const r = request(ctx, p, { eligible: principals, quorum: 10 });
      await store.putRequest(r);
      const claims = await Promise.all(principals.map((who) => store.recordVote(vote(r, who))));
      expect(claims).toEqual(principals.map(() => 'recorded'));
      expect((await store.listVotes(r.id)).map((v) => v.principal).sort()).toEqual([...principals].sort());
    },
  },
  {
    name: 'a vote racing a finalize: either it is recorded before, or it is refused as decided',
    async run(store, ctx) {
      const p = people(ctx);
      for (let round = 0; round < 5; round++) {
        const r = request(ctx, p);
        await store.putRequest(r);
        const [claim, finalized] = await Promise.all([
          store.recordVote(vote(r, p.alice)),
          store.updateRequest(r.id, { state: 'cancelled', decidedAtMs: T0 }, { state: 'pending' }),
        ]);
        expect(finalized).not.toBeNull();
        expect(['recorded', 'decided']).toContain(claim);
        expect(await store.listVotes(r.id)).toHaveLength(claim === 'recorded' ? 1 : 0);
      }
    },
  },
  {
    name: "releaseVote removes a claim so a retry is recorded; other principals' votes stay",
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p, { quorum: 2 });
      await store.putRequest(r);
      const bobs = vote(r, p.bob, { channel: 'slack' });
      expect(await store.recordVote(vote(r, p.alice))).toBe('recorded');
      expect(await store.recordVote(bobs)).toBe('recorded');
      await store.releaseVote(r.id, p.alice);
      expect(await store.listVotes(r.id)).toEqual([bobs]);
      const retry = vote(r, p.alice, { channel: 'email', atMs: T0 + 50 });
      expect(await store.recordVote(retry)).toBe('recorded');
      expect(await store.listVotes(r.id)).toEqual([bobs, retry]);
      // releasing what is not there is harmless
      await store.releaseVote(r.id, p.dave);
      await store.releaseVote(ctx.uid('missing'), p.alice);
      expect(await store.listVotes(r.id)).toEqual([bobs, retry]);
    },
  },
  {
    name: 'recordVote refuses malformed votes with APPROVAL_STORE_INVALID_INPUT',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p);
      await store.putRequest(r);
      const bad: unknown[] = [
        { ...vote(r, p.alice), decision: 'abstain' },
        { ...vote(r, p.alice), channel: 'fax' },
        { ...vote(r, p.alice), principal: '' },
        { ...vote(r, p.alice), principal: 'a\0' },
        { ...vote(r, p.alice), revision: 0 },
        { ...vote(r, p.alice), atMs: 1.5 },
        { ...vote(r, p.alice), extra: 1 },
      ];
      for (const v of bad) {
        await expect(store.recordVote(v as VoteRecordRow), JSON.stringify(v)).rejects.toMatchObject(INVALID);
      }
      expect(await store.listVotes(r.id)).toEqual([]);
    },
  },

  // --- tokens ------------------------------------------------------------------------------------
  {
    name: 'peekToken finds a token without using it, repeatably',
    async run(store, ctx) {
      const t = token(ctx);
      await store.createToken(t);
      for (let i = 0; i < 3; i++) {
        expect(await store.peekToken(t.hash, 'email-review', T0 + 1)).toEqual({
          ok: true,
          token: { ...t, usedAtMs: null },
        });
      }
    },
  },
  {
    name: 'consumeToken uses a token once (usedAtMs set); a second use is refused as used',
    async run(store, ctx) {
      const t = token(ctx);
      await store.createToken(t);
      expect(await store.consumeToken(t.hash, 'email-review', T0 + 5)).toEqual({
        ok: true,
        token: { ...t, usedAtMs: T0 + 5 },
      });
      expect(await store.consumeToken(t.hash, 'email-review', T0 + 6)).toEqual({ ok: false, code: 'used' });
      expect(await store.peekToken(t.hash, 'email-review', T0 + 6)).toEqual({ ok: false, code: 'used' });
    },
  },
  {
    name: 'an expired token is refused as expired (valid strictly before expiresAtMs)',
    async run(store, ctx) {
      const t = token(ctx, { expiresAtMs: T0 + 100 });
      await store.createToken(t);
      expect((await store.peekToken(t.hash, 'email-review', T0 + 99)).ok).toBe(true);
      expect(await store.peekToken(t.hash, 'email-review', T0 + 100)).toEqual({ ok: false, code: 'expired' });
      expect(await store.consumeToken(t.hash, 'email-review', T0 + 100)).toEqual({
        ok: false,
        code: 'expired',
      });
      expect(await store.consumeToken(t.hash, 'email-review', T0 + HOUR)).toEqual({
        ok: false,
        code: 'expired',
      });
      // the refused consume did not use it
      expect((await store.consumeToken(t.hash, 'email-review', T0 + 99)).ok).toBe(true);
    },
  },
  {
    name: 'an unknown hash is unknown; another purpose is wrong_purpose and leaves the token usable',
    async run(store, ctx) {
      const t = token(ctx);
      await store.createToken(t);
      for (const hash of [ctx.uid('nope'), t.hash.toUpperCase(), `${t.hash} `, t.hash.slice(0, -1), '%']) {
        expect(await store.peekToken(hash, 'email-review', T0)).toEqual({ ok: false, code: 'unknown' });
        expect(await store.consumeToken(hash, 'email-review', T0)).toEqual({ ok: false, code: 'unknown' });
      }
      expect(await store.peekToken(t.hash, 'sign-in', T0)).toEqual({ ok: false, code: 'wrong_purpose' });
      expect(await store.consumeToken(t.hash, 'sign-in', T0)).toEqual({ ok: false, code: 'wrong_purpose' });
      expect((await store.consumeToken(t.hash, 'email-review', T0)).ok).toBe(true);
    },
  },
  {
    name: 'sign-in tokens round-trip with no request or revision',
    async run(store, ctx) {
      const t = token(ctx, { purpose: 'sign-in', requestId: null, revision: null });
      await store.createToken(t);
      expect(await store.consumeToken(t.hash, 'sign-in', T0)).toEqual({
        ok: true,
        token: { ...t, usedAtMs: T0 },
      });
    },
  },
  {
    name: 'ten concurrent consumeToken calls: exactly one succeeds',
    async run(store, ctx) {
      const t = token(ctx);
      await store.createToken(t);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.consumeToken(t.hash, 'email-review', T0 + i)),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok && r.code === 'used')).toHaveLength(9);
    },
  },
  {
    name: "invalidateTokens expires that request's unused tokens, counts them, and touches nothing else",
    async run(store, ctx) {
      const requestId = ctx.uid('request');
      const otherId = ctx.uid('request');
      const unused = [token(ctx, { requestId }), token(ctx, { requestId, revision: 2 })];
      const used = token(ctx, { requestId });
      const alreadyExpired = token(ctx, { requestId, expiresAtMs: T0 + 10 });
      const other = token(ctx, { requestId: otherId });
      const signIn = token(ctx, { purpose: 'sign-in', requestId: null, revision: null });
      for (const t of [...unused, used, alreadyExpired, other, signIn]) await store.createToken(t);
      await store.consumeToken(used.hash, 'email-review', T0 + 1);
      expect(await store.invalidateTokens(requestId, T0 + 20)).toBe(2);
      for (const t of unused) {
        expect(await store.peekToken(t.hash, 'email-review', T0 + 20)).toEqual({
          ok: false,
          code: 'expired',
        });
        expect(await store.consumeToken(t.hash, 'email-review', T0 + 21)).toEqual({
          ok: false,
          code: 'expired',
        });
      }
      expect(await store.peekToken(used.hash, 'email-review', T0 + 20)).toEqual({ ok: false, code: 'used' });
      expect(await store.peekToken(alreadyExpired.hash, 'email-review', T0 + 20)).toEqual({
        ok: false,
        code: 'expired',
      });
      // an earlier expiry is never pushed later
      expect(await store.peekToken(alreadyExpired.hash, 'email-review', T0 + 15)).toEqual({
        ok: false,
        code: 'expired',
      });
      expect((await store.peekToken(other.hash, 'email-review', T0 + 20)).ok).toBe(true);
      expect((await store.peekToken(signIn.hash, 'sign-in', T0 + 20)).ok).toBe(true);
      expect(await store.invalidateTokens(requestId, T0 + 30)).toBe(0);
      expect(await store.invalidateTokens(ctx.uid('missing'), T0 + 30)).toBe(0);
    },
  },
  {
    name: 'createToken with an existing hash is refused and cannot reset a used token',
    async run(store, ctx) {
      const t = token(ctx);
      await store.createToken(t);
      await store.consumeToken(t.hash, 'email-review', T0 + 1);
      await expect(store.createToken({ ...t, expiresAtMs: T0 + 2 * HOUR })).rejects.toMatchObject(DUPLICATE);
      expect(await store.peekToken(t.hash, 'email-review', T0 + 2)).toEqual({ ok: false, code: 'used' });
      await expect(store.createToken({ ...t, purpose: 'sign-in' } as never)).rejects.toMatchObject(DUPLICATE);
      await expect(
        store.createToken({ ...t, hash: ctx.uid('h'), purpose: 'admin' } as never),
      ).rejects.toMatchObject(INVALID);
    },
  },

  // --- nonces ------------------------------------------------------------------------------------
  {
    name: 'consumeNonce is true once, then false',
    async run(store, ctx) {
      const nonce = ctx.uid('nonce');
      const binding = ctx.uid('binding');
      await store.createNonce(nonce, binding, T0 + HOUR);
      expect(await store.consumeNonce(nonce, binding, T0)).toBe(true);
      expect(await store.consumeNonce(nonce, binding, T0)).toBe(false);
      expect(await store.consumeNonce(nonce, binding, T0 + 1)).toBe(false);
    },
  },
  {
    name: 'consumeNonce is false when unknown, expired or bound to another binding (without burning it)',
    async run(store, ctx) {
      const nonce = ctx.uid('nonce');
      const binding = ctx.uid('binding');
      await store.createNonce(nonce, binding, T0 + 100);
      expect(await store.consumeNonce(ctx.uid('nonce'), binding, T0)).toBe(false);
      expect(await store.consumeNonce(nonce, ctx.uid('binding'), T0)).toBe(false);
      expect(await store.consumeNonce(nonce, `${binding}x`, T0)).toBe(false);
      expect(await store.consumeNonce(nonce, '%', T0)).toBe(false);
      expect(await store.consumeNonce(nonce, binding, T0 + 99)).toBe(true);
      // valid strictly before expiresAtMs
      const boundary = ctx.uid('nonce');
      await store.createNonce(boundary, binding, T0 + 100);
      expect(await store.consumeNonce(boundary, binding, T0 + 100)).toBe(false);
      const expired = ctx.uid('nonce');
      await store.createNonce(expired, binding, T0 + 10);
      expect(await store.consumeNonce(expired, binding, T0 + HOUR)).toBe(false);
    },
  },
  {
    name: 'concurrent consumeNonce calls: exactly one is true',
    async run(store, ctx) {
      const nonce = ctx.uid('nonce');
      const binding = ctx.uid('binding');
      await store.createNonce(nonce, binding, T0 + HOUR);
      const results = await Promise.all(
        Array.from({ length: 10 }, () => store.consumeNonce(nonce, binding, T0)),
      );
      expect(count(results, true)).toBe(1);
    },
  },
  {
    name: 'createNonce with an existing nonce is refused: it cannot be re-bound or re-armed',
    async run(store, ctx) {
      const nonce = ctx.uid('nonce');
      const binding = ctx.uid('binding');
      const attacker = ctx.uid('attacker');
      await store.createNonce(nonce, binding, T0 + HOUR);
      await expect(store.createNonce(nonce, attacker, T0 + HOUR)).rejects.toMatchObject(DUPLICATE);
      expect(await store.consumeNonce(nonce, attacker, T0)).toBe(false);
      expect(await store.consumeNonce(nonce, binding, T0)).toBe(true);
      await expect(store.createNonce(nonce, binding, T0 + 2 * HOUR)).rejects.toMatchObject(DUPLICATE);
      expect(await store.consumeNonce(nonce, binding, T0 + 1)).toBe(false);
      await expect(store.createNonce(ctx.uid('n'), '', T0)).rejects.toMatchObject(INVALID);
    },
  },

  // --- sessions ----------------------------------------------------------------------------------
  {
    name: 'createSession, getSession and deleteSession',
    async run(store, ctx) {
      const s = session(ctx);
      const other = session(ctx);
      await store.createSession(s);
      await store.createSession(other);
      expect(await store.getSession(s.hash, T0 + 1)).toEqual(s);
      expect(await store.getSession(ctx.uid('missing'), T0 + 1)).toBeNull();
      await store.deleteSession(s.hash);
      expect(await store.getSession(s.hash, T0 + 1)).toBeNull();
      expect(await store.getSession(other.hash, T0 + 1)).toEqual(other);
      await store.deleteSession(s.hash);
    },
  },
  {
    name: 'getSession of an expired session is null (valid strictly before expiresAtMs)',
    async run(store, ctx) {
      const s = session(ctx, { expiresAtMs: T0 + 100 });
      await store.createSession(s);
      expect(await store.getSession(s.hash, T0 + 99)).toEqual(s);
      expect(await store.getSession(s.hash, T0 + 100)).toBeNull();
      expect(await store.getSession(s.hash, T0 + HOUR)).toBeNull();
    },
  },
  {
    name: 'createSession with an existing hash is refused and keeps the first session',
    async run(store, ctx) {
      const s = session(ctx);
      await store.createSession(s);
      await expect(store.createSession({ ...s, principal: ctx.uid('mallory') })).rejects.toMatchObject(
        DUPLICATE,
      );
      expect(await store.getSession(s.hash, T0)).toEqual(s);
      await expect(store.createSession({ ...s, hash: ctx.uid('h'), csrf: '' })).rejects.toMatchObject(
        INVALID,
      );
    },
  },

  // --- rememberOnce ------------------------------------------------------------------------------
  {
    name: 'rememberOnce is true the first time, false while remembered, true again after expiry',
    async run(store, ctx) {
      const key = ctx.uid('v0=signature');
      const other = ctx.uid('v0=signature');
      expect(await store.rememberOnce(key, T0 + 100, T0)).toBe(true);
      expect(await store.rememberOnce(key, T0 + 200, T0 + 1)).toBe(false);
      expect(await store.rememberOnce(key, T0 + 200, T0 + 99)).toBe(false);
      expect(await store.rememberOnce(other, T0 + 100, T0 + 1)).toBe(true);
      expect(await store.rememberOnce(key, T0 + 300, T0 + 100)).toBe(true);
      expect(await store.rememberOnce(key, T0 + 300, T0 + 299)).toBe(false);
      await expect(store.rememberOnce('k\0', T0, T0)).rejects.toMatchObject(INVALID);
    },
  },
  {
    name: 'concurrent rememberOnce calls for one key: exactly one is true',
    async run(store, ctx) {
      const key = ctx.uid('sig');
      const results = await Promise.all(
        Array.from({ length: 10 }, () => store.rememberOnce(key, T0 + HOUR, T0)),
      );
      expect(count(results, true)).toBe(1);
      const expiredKey = ctx.uid('sig');
      await store.rememberOnce(expiredKey, T0 + 10, T0);
      const again = await Promise.all(
        Array.from({ length: 10 }, () => store.rememberOnce(expiredKey, T0 + HOUR, T0 + 10)),
      );
      expect(count(again, true)).toBe(1);
    },
  },

  // --- attempts and deliveries ---------------------------------------------------------------------
  {
    name: 'attempts are append-only, listed in insertion order, filtered by request and channel',
    async run(store, ctx) {
      const a = ctx.uid('request');
      const b = ctx.uid('request');
      const attempts = [
        attempt(a, { action: 'view', atMs: T0 + 3 }),
        attempt(b, {
          channel: 'slack',
          action: 'vote',
          principal: 'bob',
          outcome: 'duplicate',
          atMs: T0 + 1,
        }),
        attempt(a, {
          channel: 'email',
          action: 'vote',
          principal: 'alice',
          outcome: 'expired',
          detail: {
            ip: '203.0.113.7',
            ua: 'Mozilla/5.0 "quoted"',
            tokenPrefix: 'ab12',
            tries: [1, 2],
            ok: false,
            none: null,
          },
          atMs: T0 + 2,
        }),
        attempt(a, { action: 'view', atMs: T0 + 4 }),
        attempt(a, { action: 'view', atMs: T0 + 4 }),
      ];
      for (const x of attempts) await store.recordAttempt(x);
      expect(await store.listAttempts({ requestId: a })).toEqual([
        attempts[0],
        attempts[2],
        attempts[3],
        attempts[4],
      ]);
      expect(await store.listAttempts({ requestId: a, channel: 'email' })).toEqual([attempts[2]]);
      expect(await store.listAttempts({ requestId: b, channel: 'email' })).toEqual([]);
      const slack = await store.listAttempts({ channel: 'slack' });
      expect(slack.every((x) => x.channel === 'slack')).toBe(true);
      expect(slack.filter((x) => x.requestId === b)).toEqual([attempts[1]]);
      const all = await store.listAttempts();
      expect(all.filter((x) => x.requestId === a || x.requestId === b)).toEqual(attempts);
      expect(await store.listAttempts({ requestId: ctx.uid('missing') })).toEqual([]);
    },
  },
  {
    name: 'attempts without a request are kept and listed; malformed details are refused',
    async run(store, ctx) {
      const principal = ctx.uid('stranger');
      const x = attempt(null, {
        channel: 'web',
        action: 'sign_in',
        principal,
        outcome: 'unknown',
        detail: { n: 1 },
      });
      await store.recordAttempt(x);
      expect((await store.listAttempts({ channel: 'web' })).filter((y) => y.principal === principal)).toEqual(
        [x],
      );
      const bad: [string, unknown][] = [
        ['bigint', { n: 1n }],
        ['NUL', { s: 'a\0' }],
        ['lone surrogate key', { '\uD800': 1 }],
        ['array', []],
        ['null', null],
        ['Date', { d: new Date(T0) }],
        ['NaN', { n: Number.NaN }],
        ['undefined in an array', { a: [undefined] }],
      ];
      for (const [label, detail] of bad) {
        await expect(store.recordAttempt({ ...x, detail } as AttemptRecord), label).rejects.toMatchObject(
          INVALID,
        );
      }
      expect((await store.listAttempts()).filter((y) => y.principal === principal)).toHaveLength(1);
    },
  },
  {
    name: 'deliveries are append-only and listed per request in insertion order',
    async run(store, ctx) {
      const a = ctx.uid('request');
      const b = ctx.uid('request');
      const deliveries = [
        delivery(a, { kind: 'request', atMs: T0 + 2 }),
        delivery(b, { channel: 'slack', address: 'U123', atMs: T0 }),
        delivery(a, { kind: 'reminder', status: 'failed', error: 'SMTP 421 "try later"', atMs: T0 + 1 }),
        delivery(a, { kind: 'reminder', status: 'sent', atMs: T0 + 1 }),
      ];
      for (const d of deliveries) await store.recordDelivery(d);
      expect(await store.listDeliveries(a)).toEqual([deliveries[0], deliveries[2], deliveries[3]]);
      expect(await store.listDeliveries(b)).toEqual([deliveries[1]]);
      expect(await store.listDeliveries(ctx.uid('missing'))).toEqual([]);
      await expect(
        store.recordDelivery({ ...delivery(a), status: 'bounced' } as never),
      ).rejects.toMatchObject(INVALID);
      expect(await store.listDeliveries(a)).toHaveLength(3);
    },
  },

  // --- hostile lookups -----------------------------------------------------------------------------
  {
    name: 'lookups by keys no store can hold (NUL, lone surrogates) find nothing and throw nothing',
    async run(store, ctx) {
      const p = people(ctx);
      const r = request(ctx, p);
      await store.putRequest(r);
      for (const key of UNSTORABLE) {
        expect(await store.getRequest(key)).toBeNull();
        expect(await store.listPending(key)).toEqual([]);
        expect(await store.updateRequest(key, { state: 'approved' })).toBeNull();
        expect(await store.recordVote(vote({ ...r, id: key }, p.alice))).toBe('unknown_request');
        expect(await store.listVotes(key)).toEqual([]);
        await store.releaseVote(key, key);
        expect(await store.peekToken(key, 'sign-in', T0)).toEqual({ ok: false, code: 'unknown' });
        expect(await store.consumeToken(key, 'email-review', T0)).toEqual({ ok: false, code: 'unknown' });
        expect(await store.invalidateTokens(key, T0)).toBe(0);
        expect(await store.consumeNonce(key, key, T0)).toBe(false);
        expect(await store.getSession(key, T0)).toBeNull();
        await store.deleteSession(key);
        expect(await store.listAttempts({ requestId: key })).toEqual([]);
        expect(await store.listDeliveries(key)).toEqual([]);
      }
      expect(await store.getRequest(r.id)).toEqual(r);
    },
  },

  // --- handles -----------------------------------------------------------------------------------
  {
    name: 'a second handle on the same database sees the same data (reopening migrates idempotently)',
    async run(store, ctx) {
      const peer = await ctx.openPeer();
      try {
        const p = people(ctx);
        const r = request(ctx, p);
        await peer.store.putRequest(r);
        expect(await peer.store.getRequest(r.id)).toEqual(r);
        expect(await store.getRequest(r.id)).toEqual(peer.shared ? r : null);
      } finally {
        await peer.store.close();
      }
    },
  },
  {
    name: 'concurrent decisions through two handles agree on one outcome',
    async run(store, ctx) {
      const peer = await ctx.openPeer();
      try {
        const other = peer.shared ? peer.store : store;
        const p = people(ctx);
        const r = request(ctx, p);
        await store.putRequest(r);
        const t = token(ctx, { requestId: r.id });
        await store.createToken(t);
        const [a, b, voteA, voteB, tokenA, tokenB] = await Promise.all([
          store.updateRequest(r.id, { state: 'approved' }, { state: 'pending', revision: 1 }),
          other.updateRequest(r.id, { state: 'denied' }, { state: 'pending', revision: 1 }),
          store.recordVote(vote(r, p.bob)),
          other.recordVote(vote(r, p.bob, { channel: 'slack' })),
          store.consumeToken(t.hash, 'email-review', T0),
          other.consumeToken(t.hash, 'email-review', T0),
        ]);
        expect([a, b].filter((x) => x !== null)).toHaveLength(1);
        expect(count([voteA, voteB], 'recorded')).toBeLessThanOrEqual(1);
        expect([tokenA, tokenB].filter((x) => x.ok)).toHaveLength(1);
      } finally {
        await peer.store.close();
      }
    },
  },
  {
    name: 'close() releases the handle: later calls reject with APPROVAL_STORE_CLOSED; closing twice is fine',
    async run(_store, ctx) {
      const peer = await ctx.openPeer();
      const p = people(ctx);
      const r = request(ctx, p);
      await peer.store.putRequest(r);
      if (peer.connections !== null) expect(await peer.connections()).toBeGreaterThan(0);
      await peer.store.close();
      await peer.store.close();
      const closed = { code: ApprovalStoreErrorCode.closed };
      await expect(peer.store.getRequest(r.id)).rejects.toMatchObject(closed);
      await expect(peer.store.putRequest(r)).rejects.toMatchObject(closed);
      await expect(peer.store.listPending()).rejects.toMatchObject(closed);
      await expect(peer.store.rememberOnce(ctx.uid('k'), T0 + 1, T0)).rejects.toMatchObject(closed);
      const connections = peer.connections;
      if (connections !== null) expect(await waitFor(async () => (await connections()) === 0)).toBe(true);
    },
  },
];
