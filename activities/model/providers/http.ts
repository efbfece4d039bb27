/**
 * What the HTTP model providers share: an injectable clock, one deadline per call (plus an optional
 * time-to-first-output limit for streams), the classification of transport failures into
 * {@link ModelError} codes, API-key lookup and redaction, and quoting of provider text.
 * @module
 */
import type { z } from 'zod';
import { ModelError, ModelErrorCode } from '../errors.ts';

/** Time as the providers see it; inject a fake one in tests. */
export interface Clock {
  /** Milliseconds since the epoch (used for `retry-after` HTTP dates). */
  now(): number;
  /** Runs `callback` after `ms`; returns a function that cancels it. */
  setTimeout(callback: () => void, ms: number): () => void;
}

/** The real clock. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (callback: () => void, ms: number) => {
    const timer = setTimeout(callback, ms);
    return () => clearTimeout(timer);
  },
});

/** Wire name ↔ tool name for the tools offered in one request. */
export interface ToolNames {
  readonly toWire: ReadonlyMap<string, string>;
  readonly fromWire: ReadonlyMap<string, string>;
}

// provider text quoted in error messages is cut to this length
const MAX_QUOTED_CHARS = 300;

/** Which limit ended a call, if one did. */
export type GuardFired = 'deadline' | 'first-output' | null;

/**
 * The signal one provider call runs under: the caller's cancellation, a deadline for the whole
 * call and, for streams, a limit on the time to the first output. {@link release} clears the
 * timers and aborts what is still open (call it in a `finally`).
 */
export class CallGuard {
  /** Pass this to `fetch`. */
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly caller: AbortSignal | undefined;
  private readonly clock: Clock;
  private cancelDeadline: (() => void) | undefined;
  private cancelFirstOutput: (() => void) | undefined;
  private firedBy: GuardFired = null;

  constructor(clock: Clock, timeoutMs: number, caller: AbortSignal | undefined) {
    this.clock = clock;
    this.caller = caller;
    this.signal =
      caller === undefined ? this.controller.signal : AbortSignal.any([caller, this.controller.signal]);
    this.cancelDeadline = clock.setTimeout(() => this.fire('deadline'), timeoutMs);
  }

  /** Which limit fired (null: none, or the caller cancelled). */
  get fired(): GuardFired {
    return this.firedBy;
  }

  /** Whether the caller cancelled; then its `reason` is what to throw. */
  get callerAborted(): boolean {
    return this.caller?.aborted === true;
  }

  /** The caller's abort reason (only meaningful when {@link callerAborted}). */
  get callerReason(): unknown {
    return this.caller?.reason;
  }

  /** Starts the time-to-first-output limit. */
  armFirstOutput(ms: number): void {
    this.cancelFirstOutput = this.clock.setTimeout(() => this.fire('first-output'), ms);
  }

  /** Output has arrived: the time-to-first-output limit no longer applies. */
  disarmFirstOutput(): void {
    this.cancelFirstOutput?.();
    this.cancelFirstOutput = undefined;
  }

  /** Clears the timers and aborts the request if it is still open. */
  release(): void {
    this.cancelDeadline?.();
    this.cancelDeadline = undefined;
    this.disarmFirstOutput();
    if (!this.controller.signal.aborted) this.controller.abort(new Error('model call finished'));
  }

  private fire(by: Exclude<GuardFired, null>): void {
    if (this.firedBy !== null || this.controller.signal.aborted) return;
    this.firedBy = by;
    this.controller.abort(new Error(`model call limit reached: ${by}`));
  }
}

/** Time limits of a call, for error messages. */
export interface Limits {
  readonly timeoutMs: number;
  readonly firstOutputMs?: number | undefined;
}

/**
 * The error for a transport failure (fetch or body read threw). The caller's own cancellation is
 * returned as is (its `reason`), for the caller to rethrow untouched.
 */
export function transportFailure(
  error: unknown,
  guard: CallGuard,
  limits: Limits,
  where: string,
  redact: (text: string) => string,
  phase: 'connect' | 'read',
): unknown {
  if (guard.callerAborted) return guard.callerReason;
  if (guard.fired === 'deadline') {
    return new ModelError(ModelErrorCode.timeout, `${where} did not answer within ${limits.timeoutMs} ms`);
  }
  if (guard.fired === 'first-output') {
    return new ModelError(
      ModelErrorCode.timeout,
      `${where} sent no output within ${limits.firstOutputMs ?? limits.timeoutMs} ms`,
    );
  }
  if (error instanceof ModelError) return error;
  const reason = networkReason(error);
  return new ModelError(
    ModelErrorCode.serverError,
    redact(
      phase === 'connect' ? `cannot reach ${where}: ${reason}` : `${where} broke off its answer: ${reason}`,
    ),
    { cause: error },
  );
}

/**
 * The API key named by `apiKeyEnv` (undefined when no variable is named). Throws `MODEL_AUTH`
 * when the variable is named but unset or empty.
 */
export function readApiKey(env: NodeJS.ProcessEnv, apiKeyEnv: string | undefined): string | undefined {
  if (apiKeyEnv === undefined) return undefined;
  const key = env[apiKeyEnv];
  if (key === undefined || key === '') {
    throw new ModelError(
      ModelErrorCode.auth,
      `environment variable ${apiKeyEnv} (apiKeyEnv) is not set on the worker`,
    );
  }
  return key;
}

/** Removes every occurrence of `secret` from a text (identity when there is none). */
export function redactor(secret: string | undefined): (text: string) => string {
  return (text) => (secret === undefined ? text : text.replaceAll(secret, '[redacted]'));
}

/** `host:port` of a base URL, for messages. */
export function hostOf(baseUrl: string): string {
  try {
    return new URL(baseUrl).host;
  } catch {
    return '(invalid baseUrl)';
  }
}

/** The most telling part of a network error: the errno code when there is one. */
export function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return error instanceof Error ? error.message : String(error);
}

/** Provider text for an error message: whitespace flattened, cut to 300 characters. */
export function quote(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_QUOTED_CHARS ? `${flat.slice(0, MAX_QUOTED_CHARS - 3)}...` : flat;
}

/** The first few issues of a failed zod parse as `path: message`. */
export function zodProblems(error: z.ZodError, limit = 5): string {
  return error.issues
    .slice(0, limit)
    .map(
      (issue) => `${issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.')}: ${issue.message}`,
    )
    .join('; ');
}
