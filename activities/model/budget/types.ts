/**
 * Token budgets for model calls: per run, and per agent per UTC day. A call reserves its
 * worst case before it starts, reconciles the actual usage when it ends, and releases the
 * reservation when it fails (gateway notes §3.2: reserve, then reconcile).
 * @module
 */

/** The two scopes a reservation counts against. */
export type BudgetScope = 'run' | 'agent_day';

/** What {@link TokenBudget.reserve} takes. */
export interface ReserveInput {
  readonly runId: string;
  readonly agentId: string;
  /** The UTC day, `YYYY-MM-DD` (see `utcDayKey`). */
  readonly dayKey: string;
  /** Tokens to reserve (a positive integer): the call's worst case. */
  readonly tokens: number;
  /** The run's token limit, from the request; null: no limit. */
  readonly runLimit: number | null;
  /** The agent's tokens per UTC day; null: no limit. */
  readonly agentDailyLimit: number | null;
}

/** A scope's figures when a reservation was refused. */
export interface BudgetDenial {
  readonly ok: false;
  /** The scope that refused (`run` is checked first). */
  readonly scope: BudgetScope;
  readonly limit: number;
  /** Tokens used (reconciled) in the scope. */
  readonly used: number;
  /** Tokens held by live reservations in the scope (stale ones excluded). */
  readonly reserved: number;
}

/** The answer of {@link TokenBudget.reserve}. */
export type ReserveResult = { readonly ok: true; readonly reservationId: string } | BudgetDenial;

/** Which scope {@link TokenBudget.usage} reports. */
export type UsageQuery = { readonly runId: string } | { readonly agentId: string; readonly dayKey: string };

/** A scope's figures. */
export interface BudgetUsage {
  readonly used: number;
  /** Live reservations only: a reservation older than the TTL no longer counts. */
  readonly reserved: number;
}

/** The answer of {@link TokenBudget.reconcile}. */
export type ReconcileOutcome = 'reconciled' | 'already_reconciled';
/** The answer of {@link TokenBudget.release}. */
export type ReleaseOutcome = 'released' | 'already_released' | 'already_reconciled';

/**
 * A token budget store. Reservation states: `reserved` → `reconciled` | `released`, or
 * `expired` (older than the TTL; marked by the next reserve in one of its scopes, and no longer
 * counted from the moment the TTL passes) → `reconciled` | `released`.
 */
export interface TokenBudget {
  /**
   * Atomically, for BOTH scopes: `used + reserved + tokens ≤ limit`, then holds `tokens`.
   * Marks the scopes' stale reservations `expired` first.
   */
  reserve(input: ReserveInput): Promise<ReserveResult>;
  /**
   * Replaces the reservation by the actual usage in both scopes (`actualTokens` may exceed it;
   * later reserves see the excess). An expired reservation is still recorded: the tokens were
   * spent. Idempotent: a second call answers `already_reconciled` and changes nothing. Throws
   * `BUDGET_RESERVATION_UNKNOWN`, or `BUDGET_RESERVATION_RELEASED` after a release.
   */
  reconcile(reservationId: string, actualTokens: number): Promise<ReconcileOutcome>;
  /** The call failed: nothing used. A reconciled reservation stays so. Throws `BUDGET_RESERVATION_UNKNOWN`. */
  release(reservationId: string): Promise<ReleaseOutcome>;
  /** A scope's figures now (zeros for a scope never seen). */
  usage(query: UsageQuery): Promise<BudgetUsage>;
  /** Closes the store; later calls throw `BUDGET_CLOSED`. */
  close(): Promise<void>;
}

/** Options both stores take. */
export interface BudgetStoreOptions {
  /** Age at which a reservation stops counting (a crashed worker's); default {@link DEFAULT_RESERVATION_TTL_MS}. */
  readonly reservationTtlMs?: number | undefined;
  /** Milliseconds; default `Date.now`. */
  readonly now?: (() => number) | undefined;
  /** New reservation ids; default `crypto.randomUUID`. */
  readonly newId?: (() => string) | undefined;
}

/** Default {@link BudgetStoreOptions.reservationTtlMs}: 10 minutes (well above a model call's deadline). */
export const DEFAULT_RESERVATION_TTL_MS = 10 * 60_000;
