/**
 * Errors of the model router: an invalid router configuration, and the final failure of a routed
 * call (a {@link ModelError} with the last typed code and the whole attempt chain attached).
 * @module
 */
import { AgentRuntimeError } from '../../../policy/errors.ts';
import { ModelError } from '../errors.ts';
import type { ModelErrorCode } from '../errors.ts';

/** Stable codes of {@link RouterConfigError}. */
export const RouterErrorCode = {
  /** The router configuration (targets, routes, retry, breaker, deadline) is invalid. */
  configInvalid: 'MODEL_ROUTER_CONFIG_INVALID',
} as const;
export type RouterErrorCode = (typeof RouterErrorCode)[keyof typeof RouterErrorCode];

/** The router configuration did not validate; `problems` lists every issue found. */
export class RouterConfigError extends AgentRuntimeError {
  declare readonly code: RouterErrorCode;
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(RouterErrorCode.configInvalid, `invalid model router config: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

/** Why an attempt was not made: its target's breaker is open, or its context window is too small. */
export type SkipReason = 'breaker_open' | 'context_window';

/** One entry of the attempt chain: a call to one target, or a target passed over. */
export interface RouteAttempt {
  /** The target id (a key of the config's `targets`). */
  readonly target: string;
  /** The provider's `name`. */
  readonly provider: string;
  /** The model the target's config names (the provider kind when the config names none). */
  readonly model: string;
  /** Clock time (the router's `now`) when the attempt started or was skipped. */
  readonly startedAtMs: number;
  /** 0 for a skipped target. */
  readonly durationMs: number;
  /**
   * `ok`, or the typed code of the failure. A skipped target carries the code that skips it:
   * the failure that opened its breaker, or `MODEL_CONTEXT_LENGTH`.
   */
  readonly outcome: 'ok' | ModelErrorCode;
  /** The provider's retry-after, when a rate limit said one. */
  readonly retryAfterMs?: number;
  readonly skipped?: SkipReason;
}

/**
 * A routed call failed: `code` is the last typed code of the chain (so the activity's retry
 * policy treats it like that provider error), `attempts` the whole chain, `cause` the last error.
 */
export class ModelRouteError extends ModelError {
  readonly attempts: readonly RouteAttempt[];
  /** The code that caused the first fallback, or null when no fallback happened. */
  readonly fallbackCause: ModelErrorCode | null;
  constructor(
    last: ModelError,
    message: string,
    attempts: readonly RouteAttempt[],
    fallbackCause: ModelErrorCode | null,
  ) {
    super(last.code, message, {
      cause: last,
      ...(last.retryAfterMs === undefined ? {} : { retryAfterMs: last.retryAfterMs }),
      ...(last.status === undefined ? {} : { status: last.status }),
    });
    this.attempts = attempts;
    this.fallbackCause = fallbackCause;
  }
}
