/**
 * Circuit breakers, one per target: `failureThreshold` consecutive health failures open it; after
 * `openMs` it is half-open and admits at most `halfOpenProbes` probe attempts at once; as many
 * successful probes close it, and one failed probe opens it again. Time is the router's clock.
 * @module
 */
import { ModelErrorCode } from '../errors.ts';

/** The breaker settings (the router config's `breaker`). */
export interface BreakerSettings {
  readonly failureThreshold: number;
  readonly openMs: number;
  readonly halfOpenProbes: number;
}

/** A breaker's state as seen at some time. */
export interface BreakerSnapshot {
  readonly state: 'closed' | 'open' | 'half_open';
  /** Consecutive health failures while closed. */
  readonly failures: number;
  /** When it last opened; null when it never did. */
  readonly openedAtMs: number | null;
  /** The failure that last opened it; null when it never did. */
  readonly openedBy: ModelErrorCode | null;
}

/** Whether an attempt may start; a probe must later be reported with `probe: true`. */
export type Admission =
  { readonly ok: true; readonly probe: boolean } | { readonly ok: false; readonly code: ModelErrorCode };

/** Codes that say the target is unhealthy (count towards opening). Others prove it answers. */
const HEALTH_FAILURES: ReadonlySet<ModelErrorCode> = new Set([
  ModelErrorCode.timeout,
  ModelErrorCode.rateLimit,
  ModelErrorCode.overloaded,
  ModelErrorCode.serverError,
  ModelErrorCode.badResponse,
]);

/** Whether a failure with `code` counts against the target's breaker. */
export function isHealthFailure(code: ModelErrorCode): boolean {
  return HEALTH_FAILURES.has(code);
}

interface State {
  state: 'closed' | 'open' | 'half_open';
  failures: number;
  openedAtMs: number | null;
  openedBy: ModelErrorCode | null;
  probesInFlight: number;
  probeSuccesses: number;
}

/** The breakers of one router (state is per router instance, shared by its concurrent calls). */
export class Breakers {
  readonly #settings: BreakerSettings;
  readonly #states = new Map<string, State>();

  constructor(settings: BreakerSettings) {
    this.#settings = settings;
  }

  #state(target: string): State {
    let state = this.#states.get(target);
    if (state === undefined) {
      state = {
        state: 'closed',
        failures: 0,
        openedAtMs: null,
        openedBy: null,
        probesInFlight: 0,
        probeSuccesses: 0,
      };
      this.#states.set(target, state);
    }
    return state;
  }

  /** Asks to start an attempt on `target` at `nowMs`. */
  admit(target: string, nowMs: number): Admission {
    const s = this.#state(target);
    if (s.state === 'open') {
      if (nowMs - (s.openedAtMs ?? nowMs) < this.#settings.openMs) {
        return { ok: false, code: s.openedBy ?? ModelErrorCode.serverError };
      }
      s.state = 'half_open';
      s.probesInFlight = 0;
      s.probeSuccesses = 0;
    }
    if (s.state === 'half_open') {
      if (s.probesInFlight + s.probeSuccesses >= this.#settings.halfOpenProbes) {
        return { ok: false, code: s.openedBy ?? ModelErrorCode.serverError };
      }
      s.probesInFlight += 1;
      return { ok: true, probe: true };
    }
    return { ok: true, probe: false };
  }

  /** The attempt answered (a success, or a failure that proves the target is up). */
  succeeded(target: string, probe: boolean): void {
    const s = this.#state(target);
    if (probe) {
      if (s.state !== 'half_open') return;
      s.probesInFlight -= 1;
      s.probeSuccesses += 1;
      if (s.probeSuccesses >= this.#settings.halfOpenProbes) {
        s.state = 'closed';
        s.failures = 0;
        s.probesInFlight = 0;
        s.probeSuccesses = 0;
      }
    } else if (s.state === 'closed') {
      s.failures = 0;
    }
  }

  /** The attempt failed with a health failure at `nowMs`. */
  failed(target: string, probe: boolean, code: ModelErrorCode, nowMs: number): void {
    const s = this.#state(target);
    if (probe) {
      if (s.state !== 'half_open') return;
      this.#open(s, code, nowMs);
    } else if (s.state === 'closed') {
      s.failures += 1;
      if (s.failures >= this.#settings.failureThreshold) this.#open(s, code, nowMs);
    }
  }

  /** The attempt ended without telling anything about the target (deadline, cancellation). */
  abandoned(target: string, probe: boolean): void {
    const s = this.#state(target);
    if (probe && s.state === 'half_open') s.probesInFlight -= 1;
  }

  /** The breaker of `target` as it stands at `nowMs`. */
  snapshot(target: string, nowMs: number): BreakerSnapshot {
    const s = this.#states.get(target);
    if (s === undefined) return { state: 'closed', failures: 0, openedAtMs: null, openedBy: null };
    const elapsed = s.state === 'open' && nowMs - (s.openedAtMs ?? nowMs) >= this.#settings.openMs;
    return {
      state: elapsed ? 'half_open' : s.state,
      failures: s.failures,
      openedAtMs: s.openedAtMs,
      openedBy: s.openedBy,
    };
  }

  #open(s: State, code: ModelErrorCode, nowMs: number): void {
    s.state = 'open';
    s.openedAtMs = nowMs;
    s.openedBy = code;
    s.failures = 0;
    s.probesInFlight = 0;
    s.probeSuccesses = 0;
  }
}
