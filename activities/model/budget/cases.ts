/**
 * The one case table every {@link TokenBudget} must pass (SQLite and PostgreSQL alike). Cases
 * share a database and a clock: every run and agent id comes from `ctx.uid`, and the clock only
 * moves forward.
 * @module
 */
import { expect } from 'vitest';
import { BudgetErrorCode } from './errors.ts';
import type { ReserveInput, ReserveResult, TokenBudget } from './types.ts';

/** The clock the store under test reads. */
export interface ManualClock {
  now(): number;
  advance(ms: number): void;
}

/** What a case gets besides the store under test. */
export interface BudgetCaseContext {
  /** A name unique to this run, starting with `prefix`. */
  uid(prefix: string): string;
  readonly clock: ManualClock;
  /** The store's reservation TTL. */
  readonly ttlMs: number;
  /** Another store on the same database where there is one (file, schema); null for `:memory:`. */
  openPeer(): Promise<TokenBudget | null>;
}

/** One named case. */
export interface BudgetCase {
  readonly name: string;
  readonly run: (budget: TokenBudget, ctx: BudgetCaseContext) => Promise<void>;
}

const DAY = '2026-03-14';
const NEXT_DAY = '2026-03-15';

function input(ctx: BudgetCaseContext, overrides: Partial<ReserveInput> = {}): ReserveInput {
  return {
    runId: ctx.uid('run'),
    agentId: ctx.uid('agent'),
    dayKey: DAY,
    tokens: 100,
    runLimit: 1_000,
    agentDailyLimit: 10_000,
    ...overrides,
  };
}

function reservationId(result: ReserveResult): string {
  if (!result.ok) throw new Error(`expected a reservation, got ${JSON.stringify(result)}`);
  return result.reservationId;
}

const ok = (results: readonly ReserveResult[]): number => results.filter((r) => r.ok).length;

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code });
}

/** Fires 50 reserves at once (split over `budgets`), each fitting alone, against a limit of 10 of them. */
async function race(
  budgets: readonly TokenBudget[],
  make: (i: number) => ReserveInput,
): Promise<readonly ReserveResult[]> {
  return Promise.all(
    Array.from({ length: 50 }, (_, i) => {
      const budget = budgets[i % budgets.length];
      if (budget === undefined) throw new Error('no budget');
      return budget.reserve(make(i));
    }),
  );
}

/** The cases. */
export const BUDGET_CASES: readonly BudgetCase[] = [
  {
    name: 'a reservation counts against both scopes until settled',
    async run(budget, ctx) {
      const request = input(ctx, { tokens: 300 });
      const result = await budget.reserve(request);
      expect(result).toEqual({ ok: true, reservationId: expect.any(String) });
      expect(await budget.usage({ runId: request.runId })).toEqual({ used: 0, reserved: 300 });
      expect(await budget.usage({ agentId: request.agentId, dayKey: DAY })).toEqual({
        used: 0,
        reserved: 300,
      });
      expect(await budget.usage({ runId: ctx.uid('never-seen') })).toEqual({ used: 0, reserved: 0 });
      expect(await budget.usage({ agentId: request.agentId, dayKey: NEXT_DAY })).toEqual({
        used: 0,
        reserved: 0,
      });
    },
  },
  {
    name: 'the run limit refuses with the run figures (checked before the agent day)',
    async run(budget, ctx) {
      const base = input(ctx, { runLimit: 1_000, agentDailyLimit: 500 });
      const first = reservationId(await budget.reserve({ ...base, tokens: 400 }));
      await budget.reconcile(first, 250);
      await budget.reserve({ ...base, tokens: 200 });
      // run: 250 used + 200 reserved + 600 > 1 000; day: 250 + 200 + 600 > 500 too: run answers
      expect(await budget.reserve({ ...base, tokens: 600 })).toEqual({
        ok: false,
        scope: 'run',
        limit: 1_000,
        used: 250,
        reserved: 200,
      });
      // exactly at the run limit but over the day limit
      expect(await budget.reserve({ ...base, tokens: 51 })).toEqual({
        ok: false,
        scope: 'agent_day',
        limit: 500,
        used: 250,
        reserved: 200,
      });
      expect((await budget.reserve({ ...base, tokens: 50 })).ok).toBe(true);
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 250, reserved: 250 });
    },
  },
  {
    name: 'a reservation larger than a limit on its own is refused; null limits are unlimited',
    async run(budget, ctx) {
      expect(await budget.reserve(input(ctx, { tokens: 1_001, runLimit: 1_000 }))).toMatchObject({
        ok: false,
        scope: 'run',
        used: 0,
        reserved: 0,
      });
      expect(
        await budget.reserve(input(ctx, { tokens: 1_001, runLimit: null, agentDailyLimit: 0 })),
      ).toMatchObject({
        ok: false,
        scope: 'agent_day',
        limit: 0,
      });
      const unlimited = input(ctx, { tokens: 2 ** 40, runLimit: null, agentDailyLimit: null });
      expect((await budget.reserve(unlimited)).ok).toBe(true);
      expect((await budget.reserve(unlimited)).ok).toBe(true);
      expect(await budget.usage({ runId: unlimited.runId })).toEqual({ used: 0, reserved: 2 ** 41 });
    },
  },
  {
    name: '50 concurrent reservations against a run limit that fits 10: exactly 10 succeed',
    async run(budget, ctx) {
      const base = input(ctx, { tokens: 70, runLimit: 700, agentDailyLimit: null });
      const results = await race([budget], () => base);
      expect(ok(results)).toBe(10);
      expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.scope === 'run')).toBe(true);
      expect(new Set(results.flatMap((r) => (r.ok ? [r.reservationId] : []))).size).toBe(10);
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 0, reserved: 700 });
    },
  },
  {
    name: '50 concurrent reservations (50 runs) against an agent-day limit that fits 10: exactly 10 succeed',
    async run(budget, ctx) {
      const agentId = ctx.uid('agent');
      const results = await race([budget], (i) =>
        input(ctx, {
          runId: `${agentId}-run-${i}`,
          agentId,
          tokens: 33,
          runLimit: 1_000,
          agentDailyLimit: 339,
        }),
      );
      expect(ok(results)).toBe(10);
      expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.scope === 'agent_day')).toBe(true);
      expect(await budget.usage({ agentId, dayKey: DAY })).toEqual({ used: 0, reserved: 330 });
    },
  },
  {
    name: '50 concurrent reservations through two stores on one database: exactly 10 per scope',
    async run(budget, ctx) {
      const peer = await ctx.openPeer();
      if (peer === null) return; // `:memory:`: no second connection sees the same data
      try {
        const run = input(ctx, { tokens: 5, runLimit: 50, agentDailyLimit: null });
        expect(ok(await race([budget, peer], () => run))).toBe(10);
        const agentId = ctx.uid('agent');
        const day = await race([peer, budget], (i) =>
          input(ctx, { runId: `${agentId}-r${i}`, agentId, tokens: 5, runLimit: null, agentDailyLimit: 54 }),
        );
        expect(ok(day)).toBe(10);
        expect(await peer.usage({ agentId, dayKey: DAY })).toEqual({ used: 0, reserved: 50 });
        expect(await budget.usage({ runId: run.runId })).toEqual({ used: 0, reserved: 50 });
      } finally {
        await peer.close();
      }
    },
  },
  {
    name: 'concurrent reserve, reconcile and release on shared scopes end consistent (no deadlock)',
    async run(budget, ctx) {
      const agentId = ctx.uid('agent');
      const runs = [ctx.uid('run'), ctx.uid('run'), ctx.uid('run')];
      const outcomes = await Promise.all(
        Array.from({ length: 60 }, async (_, i) => {
          const runId = runs[i % runs.length] ?? '';
          const result = await budget.reserve(
            input(ctx, { runId, agentId, tokens: 10, runLimit: null, agentDailyLimit: 100_000 }),
          );
          const id = reservationId(result);
          if (i % 3 === 0) return (await budget.release(id)) === 'released' ? 0 : -1;
          return (await budget.reconcile(id, i)) === 'reconciled' ? i : -1;
        }),
      );
      expect(outcomes).not.toContain(-1);
      const expected = outcomes.reduce((a, b) => a + b, 0);
      expect(await budget.usage({ agentId, dayKey: DAY })).toEqual({ used: expected, reserved: 0 });
      let perRun = 0;
      for (const runId of runs) perRun += (await budget.usage({ runId })).used;
      expect(perRun).toBe(expected);
    },
  },
  {
    name: 'reconcile lower than reserved frees the difference',
    async run(budget, ctx) {
      const base = input(ctx, { runLimit: 1_000, agentDailyLimit: 2_000 });
      const id = reservationId(await budget.reserve({ ...base, tokens: 800 }));
      expect((await budget.reserve({ ...base, tokens: 201 })).ok).toBe(false);
      expect(await budget.reconcile(id, 300)).toBe('reconciled');
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 300, reserved: 0 });
      expect(await budget.usage({ agentId: base.agentId, dayKey: DAY })).toEqual({ used: 300, reserved: 0 });
      expect((await budget.reserve({ ...base, tokens: 700 })).ok).toBe(true);
      expect((await budget.reserve({ ...base, tokens: 1 })).ok).toBe(false);
    },
  },
  {
    name: 'reconcile higher than reserved records the excess; later reserves see it',
    async run(budget, ctx) {
      const base = input(ctx, { runLimit: 1_000, agentDailyLimit: 5_000 });
      const id = reservationId(await budget.reserve({ ...base, tokens: 100 }));
      expect(await budget.reconcile(id, 1_200)).toBe('reconciled');
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 1_200, reserved: 0 });
      expect(await budget.reserve({ ...base, tokens: 1 })).toEqual({
        ok: false,
        scope: 'run',
        limit: 1_000,
        used: 1_200,
        reserved: 0,
      });
      // the agent's day saw the same 1 200
      const other = { ...base, runId: ctx.uid('run'), agentDailyLimit: 1_300 };
      expect(await budget.reserve({ ...other, tokens: 101 })).toMatchObject({
        ok: false,
        scope: 'agent_day',
        used: 1_200,
      });
      expect((await budget.reserve({ ...other, tokens: 100 })).ok).toBe(true);
    },
  },
  {
    name: 'reconcile is idempotent: the first actual count stands',
    async run(budget, ctx) {
      const base = input(ctx);
      const id = reservationId(await budget.reserve(base));
      expect(await budget.reconcile(id, 90)).toBe('reconciled');
      expect(await budget.reconcile(id, 90)).toBe('already_reconciled');
      expect(await budget.reconcile(id, 5_000)).toBe('already_reconciled');
      expect(await budget.release(id)).toBe('already_reconciled');
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 90, reserved: 0 });
      expect(await budget.reconcile(reservationId(await budget.reserve(base)), 0)).toBe('reconciled');
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 90, reserved: 0 });
    },
  },
  {
    name: 'release: nothing is used, the tokens are free again, a released reservation cannot be reconciled',
    async run(budget, ctx) {
      const base = input(ctx, { tokens: 1_000, runLimit: 1_000 });
      const id = reservationId(await budget.reserve(base));
      expect((await budget.reserve(base)).ok).toBe(false);
      expect(await budget.release(id)).toBe('released');
      expect(await budget.release(id)).toBe('already_released');
      await rejectsWith(budget.reconcile(id, 10), BudgetErrorCode.reservationReleased);
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 0, reserved: 0 });
      expect(await budget.usage({ agentId: base.agentId, dayKey: DAY })).toEqual({ used: 0, reserved: 0 });
      expect((await budget.reserve(base)).ok).toBe(true);
    },
  },
  {
    name: 'unknown reservations are refused with BUDGET_RESERVATION_UNKNOWN',
    async run(budget, ctx) {
      for (const id of [ctx.uid('nope'), 'nul\0byte', 'lone\uD800', '']) {
        await rejectsWith(budget.reconcile(id, 1), BudgetErrorCode.reservationUnknown);
        await rejectsWith(budget.release(id), BudgetErrorCode.reservationUnknown);
      }
    },
  },
  {
    name: 'day rollover: a new dayKey is a fresh agent budget; the run budget spans days',
    async run(budget, ctx) {
      const base = input(ctx, { runLimit: 1_500, agentDailyLimit: 1_000 });
      await budget.reconcile(reservationId(await budget.reserve({ ...base, tokens: 1_000 })), 1_000);
      expect(await budget.reserve({ ...base, tokens: 1 })).toMatchObject({
        ok: false,
        scope: 'agent_day',
        used: 1_000,
      });
      const tomorrow = { ...base, dayKey: NEXT_DAY };
      expect(await budget.reserve({ ...tomorrow, tokens: 501 })).toMatchObject({
        ok: false,
        scope: 'run',
        used: 1_000,
      });
      const id = reservationId(await budget.reserve({ ...tomorrow, tokens: 500 }));
      await budget.reconcile(id, 400);
      expect(await budget.usage({ agentId: base.agentId, dayKey: DAY })).toEqual({
        used: 1_000,
        reserved: 0,
      });
      expect(await budget.usage({ agentId: base.agentId, dayKey: NEXT_DAY })).toEqual({
        used: 400,
        reserved: 0,
      });
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 1_400, reserved: 0 });
      // another run of the agent on the next day shares that day's budget
      const sibling = { ...tomorrow, runId: ctx.uid('run') };
      expect(await budget.reserve({ ...sibling, tokens: 601 })).toMatchObject({
        ok: false,
        scope: 'agent_day',
      });
      expect((await budget.reserve({ ...sibling, tokens: 600 })).ok).toBe(true);
    },
  },
  {
    name: 'a stale reservation (a crashed worker) stops counting after the TTL and is expired by the next reserve',
    async run(budget, ctx) {
      const base = input(ctx, { tokens: 1_000, runLimit: 1_000, agentDailyLimit: 1_500 });
      const stale = reservationId(await budget.reserve(base));
      ctx.clock.advance(ctx.ttlMs - 1);
      expect(await budget.reserve(base)).toMatchObject({ ok: false, scope: 'run', reserved: 1_000 });
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 0, reserved: 1_000 });
      ctx.clock.advance(1);
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 0, reserved: 0 });
      const fresh = reservationId(await budget.reserve(base));
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 0, reserved: 1_000 });
      // the crashed worker comes back: its tokens were spent, so they are recorded
      expect(await budget.reconcile(stale, 700)).toBe('reconciled');
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 700, reserved: 1_000 });
      expect(await budget.release(fresh)).toBe('released');
      expect(await budget.reserve({ ...base, tokens: 301 })).toMatchObject({
        ok: false,
        used: 700,
        reserved: 0,
      });
      // a stale reservation of another run still blocks nobody in the agent's day
      const other = { ...base, runId: ctx.uid('run'), tokens: 800, runLimit: null };
      const lost = reservationId(await budget.reserve(other));
      ctx.clock.advance(ctx.ttlMs);
      expect(await budget.usage({ agentId: base.agentId, dayKey: DAY })).toEqual({ used: 700, reserved: 0 });
      expect((await budget.reserve({ ...other, runId: ctx.uid('run') })).ok).toBe(true);
      expect(await budget.release(lost)).toBe('released');
    },
  },
  {
    name: 'malformed input is refused with BUDGET_INVALID_INPUT and stores nothing',
    async run(budget, ctx) {
      const base = input(ctx);
      const bad: Partial<Record<keyof ReserveInput, unknown>>[] = [
        { tokens: 0 },
        { tokens: -5 },
        { tokens: 1.5 },
        { tokens: Number.NaN },
        { runLimit: -1 },
        { agentDailyLimit: 2 ** 60 },
        { runLimit: undefined },
        { dayKey: '2026-3-14' },
        { dayKey: '2026-13-01' },
        { runId: '' },
        { agentId: 'a\0b' },
        { runId: 'x'.repeat(513) },
      ];
      for (const overrides of bad) {
        await rejectsWith(
          budget.reserve({ ...base, ...overrides } as ReserveInput),
          BudgetErrorCode.invalidInput,
        );
      }
      const id = reservationId(await budget.reserve(base));
      await rejectsWith(budget.reconcile(id, -1), BudgetErrorCode.invalidInput);
      await rejectsWith(
        budget.usage({ agentId: base.agentId, dayKey: 'today' }),
        BudgetErrorCode.invalidInput,
      );
      expect(await budget.usage({ runId: base.runId })).toEqual({ used: 0, reserved: 100 });
    },
  },
];
