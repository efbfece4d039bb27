/**
 * What both budget stores share: input checks, the admission rule, options and the guard that
 * gives every driver error a stable code and refuses calls after `close()`.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { AgentRuntimeError } from '../../../policy/errors.ts';
import { BudgetError, BudgetErrorCode, messageOf } from './errors.ts';
import { DEFAULT_RESERVATION_TTL_MS } from './types.ts';
import type {
  BudgetDenial,
  BudgetStoreOptions,
  BudgetUsage,
  ReserveInput,
  TokenBudget,
  UsageQuery,
} from './types.ts';

/** Longest id accepted (run, agent, reservation). */
export const MAX_ID_LENGTH = 512;

const DAY_KEY = /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])$/;

/** The UTC day of `ms` as a `dayKey` (`YYYY-MM-DD`). */
export function utcDayKey(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Text both databases store unchanged: non-empty, bounded, no NUL, no lone surrogate. */
export function usableId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= MAX_ID_LENGTH &&
    !value.includes('\0') &&
    value.isWellFormed()
  );
}

function invalid(message: string): BudgetError {
  return new BudgetError(BudgetErrorCode.invalidInput, `token budget: ${message}`);
}

function checkCount(value: unknown, what: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw invalid(`${what} must be an integer ≥ ${min}, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

function checkLimit(value: unknown, what: string): number | null {
  return value === null ? null : checkCount(value, what, 0);
}

function checkId(value: unknown, what: string): string {
  if (!usableId(value)) {
    throw invalid(`${what} must be a non-empty string of at most ${MAX_ID_LENGTH} characters without NUL`);
  }
  return value;
}

function checkDayKey(value: unknown): string {
  if (typeof value !== 'string' || !DAY_KEY.test(value)) {
    throw invalid(`dayKey must be a UTC day YYYY-MM-DD, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

/** Validates a reserve request (throws `BUDGET_INVALID_INPUT`). */
export function checkReserve(input: ReserveInput): ReserveInput {
  if (typeof input !== 'object' || input === null) throw invalid('expected a reserve request object');
  return {
    runId: checkId(input.runId, 'runId'),
    agentId: checkId(input.agentId, 'agentId'),
    dayKey: checkDayKey(input.dayKey),
    tokens: checkCount(input.tokens, 'tokens', 1),
    runLimit: checkLimit(input.runLimit, 'runLimit'),
    agentDailyLimit: checkLimit(input.agentDailyLimit, 'agentDailyLimit'),
  };
}

/** Validates reconciled usage (throws `BUDGET_INVALID_INPUT`). */
export function checkActual(actualTokens: number): number {
  return checkCount(actualTokens, 'actualTokens', 0);
}

/** Validates a usage query (throws `BUDGET_INVALID_INPUT`). */
export function checkUsageQuery(
  query: UsageQuery,
): { readonly runId: string } | { readonly agentId: string; readonly dayKey: string } {
  if (typeof query !== 'object' || query === null) throw invalid('expected a usage query object');
  if ('runId' in query) return { runId: checkId(query.runId, 'runId') };
  return { agentId: checkId(query.agentId, 'agentId'), dayKey: checkDayKey(query.dayKey) };
}

/** The unknown-reservation error. */
export function unknownReservation(id: string): BudgetError {
  return new BudgetError(
    BudgetErrorCode.reservationUnknown,
    `token budget: no reservation ${JSON.stringify(id.slice(0, 80))}`,
  );
}

/** The reconcile-after-release error. */
export function releasedReservation(id: string): BudgetError {
  return new BudgetError(
    BudgetErrorCode.reservationReleased,
    `token budget: reservation ${JSON.stringify(id.slice(0, 80))} was released; it cannot be reconciled`,
  );
}

/**
 * The admission rule: the run scope first, then the agent's day. Null when `tokens` fits both
 * (`used + reserved + tokens ≤ limit`), else the refusing scope's figures.
 */
export function admit(input: ReserveInput, run: BudgetUsage, day: BudgetUsage): BudgetDenial | null {
  if (input.runLimit !== null && run.used + run.reserved + input.tokens > input.runLimit) {
    return Object.freeze({ ok: false, scope: 'run', limit: input.runLimit, ...run });
  }
  if (input.agentDailyLimit !== null && day.used + day.reserved + input.tokens > input.agentDailyLimit) {
    return Object.freeze({ ok: false, scope: 'agent_day', limit: input.agentDailyLimit, ...day });
  }
  return null;
}

/** Options with defaults applied. */
export interface ResolvedOptions {
  readonly ttlMs: number;
  readonly now: () => number;
  readonly newId: () => string;
}

/** Applies defaults and checks the TTL (throws `BUDGET_CONFIG_INVALID`). */
export function resolveOptions(options: BudgetStoreOptions): ResolvedOptions {
  const ttlMs = options.reservationTtlMs ?? DEFAULT_RESERVATION_TTL_MS;
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) {
    throw new BudgetError(
      BudgetErrorCode.configInvalid,
      `token budget: reservationTtlMs must be a positive integer, got ${String(ttlMs)}`,
    );
  }
  return { ttlMs, now: options.now ?? Date.now, newId: options.newId ?? randomUUID };
}

/** A database integer (bigint text from PostgreSQL, a number from SQLite) as a number. */
export function toCount(value: unknown): number {
  const n = typeof value === 'string' || typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
    throw new Error(`expected an integer from the database, got ${String(value)}`);
  }
  return n;
}

/**
 * Wraps a store: calls after `close()` throw `BUDGET_CLOSED`, driver errors become
 * `BUDGET_QUERY_FAILED`. `release` runs once, on the first `close()`.
 */
export function guardBudget(
  label: string,
  budget: Omit<TokenBudget, 'close'>,
  release: () => Promise<void> | void,
): TokenBudget {
  let closing: Promise<void> | null = null;
  const guard =
    <A extends unknown[], R>(name: string, method: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      if (closing !== null) throw new BudgetError(BudgetErrorCode.closed, `${label}: the store is closed`);
      try {
        return await method(...args);
      } catch (error) {
        if (error instanceof AgentRuntimeError) throw error;
        throw new BudgetError(BudgetErrorCode.queryFailed, `${label}: ${name} failed: ${messageOf(error)}`, {
          cause: error,
        });
      }
    };
  return Object.freeze({
    reserve: guard('reserve', budget.reserve),
    reconcile: guard('reconcile', budget.reconcile),
    release: guard('release', budget.release),
    usage: guard('usage', budget.usage),
    close: (): Promise<void> => {
      closing ??= Promise.resolve().then(release);
      return closing;
    },
  });
}
