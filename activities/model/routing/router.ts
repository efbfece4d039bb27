/**
 * The model router: picks a route by agent and purpose, then tries its targets in order with
 * retries, fallbacks, per-target circuit breakers and ONE deadline across all of them.
 *
 * Every failure is a typed {@link ModelError} before any decision (anything else a provider
 * throws becomes `MODEL_SERVER_ERROR`). Per code:
 * - `timeout`, `rate_limit`, `overloaded`, `server_error`: retry the same target (up to
 *   `retry.maxAttempts`) after an exponential backoff with jitter, or after the provider's
 *   `retryAfterMs` for a rate limit; when the wait would reach the deadline, fall back at once;
 *   after the target's last attempt, fall back to the next target.
 * - `bad_response`: fall back to the next target (no retry of the same one).
 * - `context_length`: skip to the next target whose `contextWindow` is larger than every window
 *   that already failed (a target without a `contextWindow` never qualifies); none left → fail.
 * - `content_policy`, `auth`, `bad_request`, `script_invalid`: fail at once.
 *
 * No attempt starts at or after the deadline; the deadline's AbortSignal is passed to the provider
 * and the router stops waiting for an attempt when it fires (even if the provider ignores it).
 * The caller's own signal cancels the call: its reason is thrown as is.
 * @module
 */
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { compileGlob } from '../../../policy/glob.ts';
import type { Glob } from '../../../policy/glob.ts';
import { ModelError, ModelErrorCode } from '../errors.ts';
import type { ModelConfig, ModelProvider, ModelRequest, ModelResponse } from '../types.ts';
import { Breakers, isHealthFailure } from './breaker.ts';
import type { BreakerSnapshot } from './breaker.ts';
import { ModelRouteError, RouterConfigError } from './errors.ts';
import type { RouteAttempt } from './errors.ts';

const TARGET_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

const TargetSchema = z.strictObject({
  /** The provider configuration; opaque to the router, handed to `deps.resolve`. */
  provider: z.record(z.string(), z.unknown()),
  /** The model's context window in tokens; used only to pick a target after `context_length`. */
  contextWindow: z.int().positive().optional(),
});

const RouteSchema = z.strictObject({
  /** An agent id or a glob over agent ids (segments split on `.`); absent: any agent. */
  agent: z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      try {
        compileGlob(value, '.');
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message, input: value });
      }
    })
    .optional(),
  /** The call's purpose (`plan`, `act`, `summarize`, or any other name); absent: any purpose. */
  purpose: z.string().min(1).optional(),
  /** Target ids, tried in order. */
  targets: z.array(z.string()).min(1),
});

const RetrySchema = z.strictObject({
  /** Attempts per target, the first included. */
  maxAttempts: z.int().min(1).max(20).default(2),
  /** Backoff before the first retry; doubles per retry. */
  baseMs: z.int().min(0).default(250),
  /** Backoff cap (before jitter). */
  maxMs: z.int().min(0).default(8_000),
  /** Fraction of the backoff taken off at random: `delay × (1 − jitter × random())`. */
  jitter: z.number().min(0).max(1).default(0.5),
});

const BreakerSchema = z.strictObject({
  /** Consecutive health failures (timeout, rate limit, overloaded, 5xx, bad response) that open it. */
  failureThreshold: z.int().min(1).default(5),
  /** How long it stays open before admitting probes. */
  openMs: z.int().min(0).default(30_000),
  /** Probes admitted at once while half-open; as many successes close it. */
  halfOpenProbes: z.int().min(1).default(1),
});

/** The router configuration (see the module comment for the semantics). */
export const RouterConfigSchema = z
  .strictObject({
    targets: z.record(z.string().regex(TARGET_ID), TargetSchema),
    /** First match wins; exactly one route without `agent` and `purpose` (the default) is required. */
    routes: z.array(RouteSchema).min(1),
    retry: RetrySchema.prefault({}),
    /** One deadline for the whole call: every retry, backoff and fallback. */
    deadlineMs: z.int().positive().default(120_000),
    breaker: BreakerSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    let defaultRoute: number | undefined;
    for (const [index, route] of config.routes.entries()) {
      const seen = new Set<string>();
      for (const [position, target] of route.targets.entries()) {
        if (!Object.hasOwn(config.targets, target)) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', index, 'targets', position],
            message: `unknown target ${JSON.stringify(target)}`,
          });
        } else if (seen.has(target)) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', index, 'targets', position],
            message: `target ${JSON.stringify(target)} is listed twice`,
          });
        }
        seen.add(target);
      }
      if (defaultRoute !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', index],
          message: `unreachable: the default route (routes[${defaultRoute}]) matches every call first`,
        });
      } else if (route.agent === undefined && route.purpose === undefined) {
        defaultRoute = index;
      }
    }
    if (defaultRoute === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['routes'],
        message: 'expected a default route (one without "agent" and "purpose")',
      });
    }
    if (config.retry.maxMs < config.retry.baseMs) {
      ctx.addIssue({ code: 'custom', path: ['retry', 'maxMs'], message: 'expected maxMs ≥ baseMs' });
    }
  });

/** A validated router configuration (defaults applied). */
export type RouterConfig = z.output<typeof RouterConfigSchema>;
/** A router configuration as written (defaults optional). */
export type RouterConfigInput = z.input<typeof RouterConfigSchema>;
/** One target of the configuration. */
export type RouterTarget = RouterConfig['targets'][string];

/** What `deps.resolve` returns for a target: the provider to call and the model config it gets. */
export interface ResolvedTarget {
  readonly provider: ModelProvider;
  /** Replaces the request's `model` for calls to this target. */
  readonly model: ModelConfig;
}

/** The router's dependencies; clock, sleep and random default to the real ones. */
export interface RouterDeps {
  /**
   * Builds the provider of a target from its configuration. Called once per target per call,
   * before its first attempt (or skip). A failure ends the call: a thrown {@link ModelError}
   * keeps its code, anything else becomes `MODEL_BAD_REQUEST`.
   */
  resolve(targetId: string, target: RouterTarget): ResolvedTarget | Promise<ResolvedTarget>;
  /** Milliseconds; default `Date.now`. */
  readonly now?: () => number;
  /** Resolves after `ms`, rejects when `signal` aborts; also times the deadline. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** In [0, 1); default `Math.random`. */
  readonly random?: () => number;
}

/** Options of one routed call. */
export interface RouteCallOptions {
  /** The call's purpose, matched against the routes' `purpose`. */
  readonly purpose?: string;
  /** Cancels the call; its reason is thrown as is. */
  readonly signal?: AbortSignal;
}

/** A routed call's answer. */
export interface RoutedResponse {
  readonly response: ModelResponse;
  /** The target that answered. */
  readonly target: string;
  /** Index of the route taken in the config's `routes`. */
  readonly route: number;
  /** Every attempt and skip, in order; the last one is the `ok`. */
  readonly attempts: readonly RouteAttempt[];
  /** The code that caused the first fallback, or null when the first target answered. */
  readonly fallbackCause: ModelErrorCode | null;
}

/** A model router built by {@link createRouter}. */
export interface ModelRouter {
  /** The validated configuration. */
  readonly config: RouterConfig;
  /**
   * Routes `request` (its `model` is replaced by each target's). Throws a {@link ModelRouteError}
   * when every possibility failed, or the caller's abort reason.
   */
  complete(request: ModelRequest, options?: RouteCallOptions): Promise<RoutedResponse>;
  /** The route a call of `agentId` with `purpose` takes: its index and target ids. */
  route(agentId: string, purpose?: string): { readonly index: number; readonly targets: readonly string[] };
  /** The breaker of a target, now. */
  breaker(targetId: string): BreakerSnapshot;
}

/** Validates a router configuration; throws {@link RouterConfigError} listing every problem. */
export function parseRouterConfig(input: unknown): RouterConfig {
  const parsed = RouterConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new RouterConfigError(
      parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`),
    );
  }
  return parsed.data;
}

/** The backoff before retry number `retry` (0 = the first retry) of a target. */
export function backoffMs(retry: RouterConfig['retry'], retryIndex: number, random: number): number {
  const raw = Math.min(retry.maxMs, retry.baseMs * 2 ** retryIndex);
  return Math.round(raw * (1 - retry.jitter * random));
}

const defaultSleep = (ms: number, signal: AbortSignal): Promise<void> => delay(ms, undefined, { signal });

const FAIL_AT_ONCE: ReadonlySet<ModelErrorCode> = new Set([
  ModelErrorCode.contentPolicy,
  ModelErrorCode.auth,
  ModelErrorCode.badRequest,
  ModelErrorCode.scriptInvalid,
]);

const RETRY_SAME_TARGET: ReadonlySet<ModelErrorCode> = new Set([
  ModelErrorCode.timeout,
  ModelErrorCode.rateLimit,
  ModelErrorCode.overloaded,
  ModelErrorCode.serverError,
]);

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ModelErrorCode));

/** Builds a router; throws {@link RouterConfigError} when `config` is invalid. */
export function createRouter(config: RouterConfigInput, deps: RouterDeps): ModelRouter {
  const valid = parseRouterConfig(config);
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? defaultSleep;
  const random = deps.random ?? Math.random;
  const breakers = new Breakers(valid.breaker);
  const routes = valid.routes.map((route, index) => ({
    index,
    agent: route.agent === undefined ? null : compileGlob(route.agent, '.'),
    purpose: route.purpose ?? null,
    targets: Object.freeze([...route.targets]),
  }));

  const pick = (agentId: string, purpose: string | undefined) => {
    const route = routes.find(
      (r) => (r.agent === null || r.agent.test(agentId)) && (r.purpose === null || r.purpose === purpose),
    );
    // the schema guarantees a default route
    if (route === undefined) throw new Error('model router: no route matched (no default route)');
    return route;
  };

  return Object.freeze({
    config: valid,
    route(agentId: string, purpose?: string) {
      const { index, targets } = pick(agentId, purpose);
      return { index, targets };
    },
    breaker: (targetId: string) => breakers.snapshot(targetId, now()),
    complete: (request: ModelRequest, options: RouteCallOptions = {}) =>
      routeCall(request, options, pick(request.agentId, options.purpose)),
  });

  async function routeCall(
    request: ModelRequest,
    options: RouteCallOptions,
    route: { readonly index: number; readonly agent: Glob | null; readonly targets: readonly string[] },
  ): Promise<RoutedResponse> {
    const caller = options.signal;
    caller?.throwIfAborted();
    const deadlineAt = now() + valid.deadlineMs;
    const deadline = new AbortController();
    const timer = new AbortController();
    sleep(valid.deadlineMs, timer.signal).then(
      () => deadline.abort(new ModelError(ModelErrorCode.timeout, deadlineMessage())),
      () => {},
    );
    const signal = caller === undefined ? deadline.signal : AbortSignal.any([caller, deadline.signal]);
    const expired = (): boolean => deadline.signal.aborted || now() >= deadlineAt;
    // a function, not a narrowed property: the caller may abort during any await
    const cancelled = (): boolean => caller?.aborted === true;

    const attempts: RouteAttempt[] = [];
    let fallbackCause: ModelErrorCode | null = null;
    let leftWith: ModelErrorCode | null = null;
    let last: ModelError | null = null;
    /** After a context-length failure: the largest window known too small. */
    let windowAbove: number | null = null;
    let stop: string | null = null;

    function deadlineMessage(): string {
      return `the routing deadline of ${valid.deadlineMs} ms passed`;
    }
    const fail = (message: string): ModelRouteError => {
      const final = last ?? new ModelError(ModelErrorCode.timeout, deadlineMessage());
      return new ModelRouteError(
        final,
        `model route ${route.index} (${route.targets.join(', ')}) failed after ${attempts.length} attempt${attempts.length === 1 ? '' : 's'}: ${message}; last: ${final.message}`,
        Object.freeze([...attempts]),
        fallbackCause,
      );
    };

    try {
      targets: for (const targetId of route.targets) {
        if (expired()) {
          stop = deadlineMessage();
          break;
        }
        if (leftWith !== null) fallbackCause ??= leftWith;
        const target = valid.targets[targetId];
        if (target === undefined) throw new Error(`model router: unknown target ${targetId}`);
        let resolved: ResolvedTarget;
        try {
          resolved = await deps.resolve(targetId, target);
        } catch (error) {
          last =
            error instanceof ModelError
              ? error
              : new ModelError(
                  ModelErrorCode.badRequest,
                  `target ${targetId} cannot be resolved: ${messageOf(error)}`,
                  {
                    cause: error,
                  },
                );
          attempts.push({
            target: targetId,
            provider: '',
            model: '',
            startedAtMs: now(),
            durationMs: 0,
            outcome: last.code,
          });
          throw fail(`target ${targetId} cannot be resolved`);
        }
        const base = {
          target: targetId,
          provider: resolved.provider.name,
          model: modelName(resolved.model),
        };
        if (windowAbove !== null && !((target.contextWindow ?? -1) > windowAbove)) {
          attempts.push({
            ...base,
            startedAtMs: now(),
            durationMs: 0,
            outcome: ModelErrorCode.contextLength,
            skipped: 'context_window',
          });
          continue;
        }
        const routed = { ...request, model: resolved.model };

        for (let attempt = 1; ; attempt++) {
          if (expired()) {
            stop = deadlineMessage();
            break targets;
          }
          const startedAtMs = now();
          const admission = breakers.admit(targetId, startedAtMs);
          if (!admission.ok) {
            attempts.push({
              ...base,
              startedAtMs,
              durationMs: 0,
              outcome: admission.code,
              skipped: 'breaker_open',
            });
            last = new ModelError(admission.code, `the circuit breaker of target ${targetId} is open`);
            leftWith = admission.code;
            continue targets;
          }
          let error: ModelError;
          try {
            const response = await untilAborted(() => resolved.provider.complete(routed, signal), signal);
            attempts.push({ ...base, startedAtMs, durationMs: now() - startedAtMs, outcome: 'ok' });
            breakers.succeeded(targetId, admission.probe);
            return Object.freeze({
              response,
              target: targetId,
              route: route.index,
              attempts: Object.freeze([...attempts]),
              fallbackCause,
            });
          } catch (thrown) {
            if (cancelled()) {
              breakers.abandoned(targetId, admission.probe);
              throw caller?.reason;
            }
            if (deadline.signal.aborted) {
              breakers.abandoned(targetId, admission.probe);
              error = new ModelError(
                ModelErrorCode.timeout,
                `target ${targetId}: ${deadlineMessage()} during the attempt`,
                { cause: thrown },
              );
            } else {
              error = typedError(thrown, targetId);
              if (isHealthFailure(error.code)) breakers.failed(targetId, admission.probe, error.code, now());
              else breakers.succeeded(targetId, admission.probe);
            }
          }
          last = error;
          attempts.push({
            ...base,
            startedAtMs,
            durationMs: now() - startedAtMs,
            outcome: error.code,
            ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
          });
          leftWith = error.code;
          if (deadline.signal.aborted) {
            stop = deadlineMessage();
            break targets;
          }
          if (FAIL_AT_ONCE.has(error.code)) throw fail(`${error.code} is not retried`);
          if (error.code === ModelErrorCode.contextLength) {
            windowAbove = Math.max(windowAbove ?? 0, target.contextWindow ?? 0);
            continue targets;
          }
          if (!RETRY_SAME_TARGET.has(error.code) || attempt >= valid.retry.maxAttempts) continue targets;
          const wait =
            error.code === ModelErrorCode.rateLimit && error.retryAfterMs !== undefined
              ? error.retryAfterMs
              : backoffMs(valid.retry, attempt - 1, random());
          if (now() + wait >= deadlineAt) continue targets;
          try {
            await sleep(wait, signal);
          } catch (sleepError) {
            if (cancelled()) throw caller?.reason;
            if (deadline.signal.aborted) {
              stop = deadlineMessage();
              break targets;
            }
            throw sleepError;
          }
        }
      }
      throw fail(stop ?? 'no target left');
    } finally {
      timer.abort();
    }
  }
}

/** `model` of the config when it names one, else the provider kind. */
function modelName(config: ModelConfig): string {
  const model = (config as { readonly model?: unknown }).model;
  return typeof model === 'string' ? model : config.provider;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The typed form of whatever an attempt threw: unknown errors are server errors (they fall back). */
function typedError(thrown: unknown, targetId: string): ModelError {
  if (thrown instanceof ModelError && KNOWN_CODES.has(thrown.code)) return thrown;
  return new ModelError(
    ModelErrorCode.serverError,
    `target ${targetId} failed with an untyped error: ${messageOf(thrown)}`,
    { cause: thrown },
  );
}

/** Runs `run`, rejecting with the signal's reason as soon as `signal` aborts. */
function untilAborted<T>(run: () => Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    (async () => run())().then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
