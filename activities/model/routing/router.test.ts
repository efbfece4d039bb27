import { describe, expect, test } from 'vitest';
import { ModelError, ModelErrorCode } from '../errors.ts';
import type { ModelProvider, ModelRequest, ModelResponse } from '../types.ts';
import { backoffMs, createRouter, ModelRouteError, parseRouterConfig, RouterConfigError } from './index.ts';
import type { ModelRouter, RouterConfigInput } from './index.ts';

// --- virtual time: timers fire only when nothing else can run -------------------------------------

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly fire: () => void;
}

class VirtualTime {
  nowMs: number;
  #timers: Timer[] = [];
  #seq = 0;

  constructor(startMs = 1_000) {
    this.nowMs = startMs;
  }

  readonly now = (): number => this.nowMs;

  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted === true) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        reject(signal?.reason);
      };
      const timer: Timer = {
        at: this.nowMs + ms,
        seq: this.#seq++,
        fire: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#timers.push(timer);
    });

  /** Drives `promise` to completion, jumping the clock to the next timer whenever all is idle. */
  async run<T>(promise: Promise<T>): Promise<T> {
    let settled = false;
    promise.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      if (settled) return promise;
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers.shift();
      if (next === undefined) throw new Error('virtual time: nothing pending, promise unsettled');
      this.nowMs = Math.max(this.nowMs, next.at);
      next.fire();
    }
  }
}

// --- scripted providers -------------------------------------------------------------------------------

type Step =
  | 'ok'
  | ModelError
  | Error
  /** Takes `ms` of virtual time (honouring the signal unless `ignoreSignal`), then plays `then`. */
  | { readonly ms: number; readonly then: 'ok' | ModelError; readonly ignoreSignal?: boolean };

interface TestProvider extends ModelProvider {
  /** Virtual start time of every call. */
  readonly calls: number[];
  /** The signal each call received. */
  readonly signals: AbortSignal[];
}

function scripted(name: string, time: VirtualTime, steps: readonly Step[]): TestProvider {
  const calls: number[] = [];
  const signals: AbortSignal[] = [];
  const reply = (): ModelResponse => ({
    content: `answer from ${name}`,
    toolCalls: [],
    finishReason: 'stop',
    usage: { inputTokens: 10, outputTokens: 2 },
    provider: name,
    model: `${name}-model`,
  });
  return {
    name: `${name}-provider`,
    calls,
    signals,
    async complete(_request: ModelRequest, signal?: AbortSignal): Promise<ModelResponse> {
      calls.push(time.now());
      if (signal !== undefined) signals.push(signal);
      const step = steps[calls.length - 1];
      if (step === undefined) throw new Error(`${name}: script exhausted`);
      if (step === 'ok') return reply();
      if (step instanceof Error) throw step;
      await time.sleep(step.ms, step.ignoreSignal === true ? undefined : signal);
      if (step.then === 'ok') return reply();
      throw step.then;
    },
  };
}

const err = (code: ModelErrorCode, retryAfterMs?: number): ModelError =>
  new ModelError(code, `scripted ${code}`, retryAfterMs === undefined ? {} : { retryAfterMs });

const REQUEST: ModelRequest = {
  agentId: 'support.triage',
  runId: 'run-1',
  turn: 0,
  model: { provider: 'scripted', turns: [] },
  messages: [{ role: 'user', content: 'hello' }],
  tools: [],
};

function config(targets: readonly string[], overrides: Partial<RouterConfigInput> = {}): RouterConfigInput {
  return {
    targets: Object.fromEntries(['a', 'b', 'c', 'd'].map((id) => [id, { provider: { kind: 'test', id } }])),
    routes: [{ targets: [...targets] }],
    retry: { maxAttempts: 2, baseMs: 100, maxMs: 1_000, jitter: 0.5 },
    deadlineMs: 60_000,
    ...overrides,
  };
}

function setup(
  routerConfig: RouterConfigInput,
  providers: Readonly<Record<string, TestProvider>>,
  time: VirtualTime,
  random: () => number = () => 0.5,
): ModelRouter {
  return createRouter(routerConfig, {
    resolve: (id) => {
      const provider = providers[id];
      if (provider === undefined) throw new Error(`no provider for ${id}`);
      return {
        provider,
        model: { provider: 'openai-compatible', baseUrl: `http://${id}.test/v1`, model: `${id}-model` },
      };
    },
    now: time.now,
    sleep: time.sleep,
    random,
  });
}

async function failure(promise: Promise<unknown>): Promise<ModelRouteError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ModelRouteError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

// --- configuration ------------------------------------------------------------------------------------

describe('router config', () => {
  test('defaults are applied', () => {
    const parsed = parseRouterConfig({ targets: { a: { provider: {} } }, routes: [{ targets: ['a'] }] });
    expect({ retry: parsed.retry, breaker: parsed.breaker, deadlineMs: parsed.deadlineMs })
      .toMatchInlineSnapshot(`
      {
        "breaker": {
          "failureThreshold": 5,
          "halfOpenProbes": 1,
          "openMs": 30000,
        },
        "deadlineMs": 120000,
        "retry": {
          "baseMs": 250,
          "jitter": 0.5,
          "maxAttempts": 2,
          "maxMs": 8000,
        },
      }
    `);
  });

  test('every problem is reported with a stable code', () => {
    const bad = {
      targets: { a: { provider: {} }, 'bad id': { provider: {} } },
      routes: [
        { agent: 'ops.**.**', targets: ['a'] },
        { purpose: 'plan', targets: ['a', 'a', 'zzz'] },
      ],
      retry: { baseMs: 500, maxMs: 100 },
    };
    let error: unknown;
    try {
      parseRouterConfig(bad);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RouterConfigError);
    expect((error as RouterConfigError).code).toBe('MODEL_ROUTER_CONFIG_INVALID');
    expect((error as RouterConfigError).problems.join('\n')).toMatchInlineSnapshot(`
      "targets.bad id: Invalid key in record
      routes.0.agent: "**.**" is redundant in "ops.**.**""
    `);
    // once the fields parse, the cross-field checks run
    let second: unknown;
    try {
      parseRouterConfig({ ...bad, targets: { a: { provider: {} } }, routes: bad.routes.slice(1) });
    } catch (e) {
      second = e;
    }
    expect((second as RouterConfigError).problems).toMatchInlineSnapshot(`
      [
        "routes.0.targets.1: target "a" is listed twice",
        "routes.0.targets.2: unknown target "zzz"",
        "routes: expected a default route (one without "agent" and "purpose")",
        "retry.maxMs: expected maxMs ≥ baseMs",
      ]
    `);
  });

  test('a route after the default route is unreachable', () => {
    expect(() =>
      parseRouterConfig({
        targets: { a: { provider: {} } },
        routes: [{ targets: ['a'] }, { purpose: 'plan', targets: ['a'] }],
      }),
    ).toThrow('routes.1: unreachable: the default route (routes[0]) matches every call first');
  });

  test('first matching route wins: agent glob or id, purpose', () => {
    const router = createRouter(
      {
        targets: { a: { provider: {} }, b: { provider: {} }, c: { provider: {} }, d: { provider: {} } },
        routes: [
          { agent: 'support.*', purpose: 'plan', targets: ['a'] },
          { agent: 'billing.refunder', targets: ['b'] },
          { purpose: 'summarize', targets: ['c'] },
          { targets: ['d', 'a'] },
        ],
      },
      { resolve: () => ({ provider: scripted('x', new VirtualTime(), []), model: REQUEST.model }) },
    );
    expect(router.route('support.triage', 'plan')).toEqual({ index: 0, targets: ['a'] });
    expect(router.route('support.triage', 'act')).toEqual({ index: 3, targets: ['d', 'a'] });
    expect(router.route('support.triage.deep', 'plan').index).toBe(3);
    expect(router.route('billing.refunder', 'summarize').index).toBe(1);
    expect(router.route('billing.refunder2', 'summarize').index).toBe(2);
    expect(router.route('anyone').index).toBe(3);
  });
});

// --- routing ---------------------------------------------------------------------------------------------

describe('router', () => {
  test('backoffMs: exponential, capped, jitter takes off up to `jitter` of it', () => {
    const retry = { maxAttempts: 5, baseMs: 100, maxMs: 1_000, jitter: 0.5 };
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffMs(retry, n, 0))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([0, 1, 2, 3, 4].map((n) => backoffMs(retry, n, 1))).toEqual([50, 100, 200, 400, 500]);
    expect(backoffMs({ ...retry, jitter: 0 }, 2, 0.99)).toBe(400);
    expect(backoffMs({ ...retry, jitter: 1 }, 2, 0.75)).toBe(100);
  });

  test('the first target answers: one attempt, no fallback, the target model is sent', async () => {
    const time = new VirtualTime();
    const seen: ModelRequest[] = [];
    const a = scripted('a', time, ['ok']);
    const spy: TestProvider = {
      ...a,
      complete: (request, signal) => {
        seen.push(request);
        return a.complete(request, signal);
      },
    };
    const router = setup(config(['a', 'b']), { a: spy }, time);
    const result = await time.run(router.complete(REQUEST, { purpose: 'act' }));
    expect(result.response.content).toBe('answer from a');
    expect(result.target).toBe('a');
    expect(result.fallbackCause).toBeNull();
    expect(seen[0]?.model).toEqual({
      provider: 'openai-compatible',
      baseUrl: 'http://a.test/v1',
      model: 'a-model',
    });
    expect(seen[0]?.messages).toBe(REQUEST.messages);
    expect(result.attempts).toMatchInlineSnapshot(`
      [
        {
          "durationMs": 0,
          "model": "a-model",
          "outcome": "ok",
          "provider": "a-provider",
          "startedAtMs": 1000,
          "target": "a",
        },
      ]
    `);
  });

  test('fallback order: retries each target, then the next, in route order', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [
        { ms: 30, then: err(ModelErrorCode.serverError) },
        err(ModelErrorCode.serverError),
      ]),
      b: scripted('b', time, [
        err(ModelErrorCode.overloaded),
        { ms: 5_000, then: err(ModelErrorCode.timeout) },
      ]),
      c: scripted('c', time, [{ ms: 20, then: 'ok' }]),
    };
    const router = setup(config(['a', 'b', 'c']), providers, time);
    const result = await time.run(router.complete(REQUEST));
    expect(result.target).toBe('c');
    expect(result.fallbackCause).toBe('MODEL_SERVER_ERROR');
    // backoff 100 ms × (1 − 0.5 × 0.5) = 75 ms before each retry
    expect(result.attempts).toMatchInlineSnapshot(`
      [
        {
          "durationMs": 30,
          "model": "a-model",
          "outcome": "MODEL_SERVER_ERROR",
          "provider": "a-provider",
          "startedAtMs": 1000,
          "target": "a",
        },
        {
          "durationMs": 0,
          "model": "a-model",
          "outcome": "MODEL_SERVER_ERROR",
          "provider": "a-provider",
          "startedAtMs": 1105,
          "target": "a",
        },
        {
          "durationMs": 0,
          "model": "b-model",
          "outcome": "MODEL_OVERLOADED",
          "provider": "b-provider",
          "startedAtMs": 1105,
          "target": "b",
        },
        {
          "durationMs": 5000,
          "model": "b-model",
          "outcome": "MODEL_TIMEOUT",
          "provider": "b-provider",
          "startedAtMs": 1180,
          "target": "b",
        },
        {
          "durationMs": 20,
          "model": "c-model",
          "outcome": "ok",
          "provider": "c-provider",
          "startedAtMs": 6180,
          "target": "c",
        },
      ]
    `);
  });

  test('an untyped error is a server error (retried, then falls back)', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [new TypeError('boom'), new Error('still broken')]),
      b: scripted('b', time, ['ok']),
    };
    const result = await time.run(setup(config(['a', 'b']), providers, time).complete(REQUEST));
    expect(result.attempts.map((a) => `${a.target}:${a.outcome}`)).toEqual([
      'a:MODEL_SERVER_ERROR',
      'a:MODEL_SERVER_ERROR',
      'b:ok',
    ]);
    expect(result.fallbackCause).toBe('MODEL_SERVER_ERROR');
  });

  test('a bad response falls back without retrying the same target', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.badResponse)]),
      b: scripted('b', time, ['ok']),
    };
    const result = await time.run(setup(config(['a', 'b']), providers, time).complete(REQUEST));
    expect(result.attempts.map((a) => `${a.target}:${a.outcome}`)).toEqual(['a:MODEL_BAD_RESPONSE', 'b:ok']);
    expect(result.fallbackCause).toBe('MODEL_BAD_RESPONSE');
  });

  test('retry-after is honoured (instead of the backoff) when it ends before the deadline', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.rateLimit, 7_000), 'ok']),
      b: scripted('b', time, ['ok']),
    };
    const result = await time.run(setup(config(['a', 'b']), providers, time).complete(REQUEST));
    expect(result.target).toBe('a');
    expect(providers.a.calls).toEqual([1_000, 8_000]);
    expect(providers.b.calls).toEqual([]);
    expect(result.attempts).toMatchInlineSnapshot(`
      [
        {
          "durationMs": 0,
          "model": "a-model",
          "outcome": "MODEL_RATE_LIMIT",
          "provider": "a-provider",
          "retryAfterMs": 7000,
          "startedAtMs": 1000,
          "target": "a",
        },
        {
          "durationMs": 0,
          "model": "a-model",
          "outcome": "ok",
          "provider": "a-provider",
          "startedAtMs": 8000,
          "target": "a",
        },
      ]
    `);
  });

  test('a rate limit without retry-after waits the backoff', async () => {
    const time = new VirtualTime();
    const providers = { a: scripted('a', time, [err(ModelErrorCode.rateLimit), 'ok']) };
    const result = await time.run(setup(config(['a']), providers, time, () => 0).complete(REQUEST));
    expect(providers.a.calls).toEqual([1_000, 1_100]);
    expect(result.attempts.map((a) => a.outcome)).toEqual(['MODEL_RATE_LIMIT', 'ok']);
  });

  test('a retry-after that would pass the deadline falls back at once', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.rateLimit, 30_000)]),
      b: scripted('b', time, ['ok']),
    };
    const router = setup(config(['a', 'b'], { deadlineMs: 30_000 }), providers, time);
    const result = await time.run(router.complete(REQUEST));
    expect(providers.b.calls).toEqual([1_000]);
    expect(result.fallbackCause).toBe('MODEL_RATE_LIMIT');
    expect(result.attempts.map((a) => [a.target, a.outcome, a.startedAtMs, a.retryAfterMs])).toEqual([
      ['a', 'MODEL_RATE_LIMIT', 1_000, 30_000],
      ['b', 'ok', 1_000, undefined],
    ]);
  });

  test('deadline: the running attempt is cut off, no attempt starts after it, total time bounded', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [
        { ms: 400, then: err(ModelErrorCode.serverError) },
        { ms: 1_000_000, then: 'ok', ignoreSignal: true },
      ]),
      b: scripted('b', time, ['ok']),
    };
    const router = setup(config(['a', 'b'], { deadlineMs: 2_000 }), providers, time);
    const error = await failure(time.run(router.complete(REQUEST)));
    expect(time.now()).toBe(3_000); // started at 1 000: exactly the deadline, although `a` ignores the signal
    expect(providers.b.calls).toEqual([]);
    expect(providers.a.signals[1]?.aborted).toBe(true);
    expect(error.code).toBe('MODEL_TIMEOUT');
    expect(error.message).toMatch(/deadline of 2000 ms passed/);
    expect(error.fallbackCause).toBeNull();
    expect(error.attempts).toMatchInlineSnapshot(`
      [
        {
          "durationMs": 400,
          "model": "a-model",
          "outcome": "MODEL_SERVER_ERROR",
          "provider": "a-provider",
          "startedAtMs": 1000,
          "target": "a",
        },
        {
          "durationMs": 1525,
          "model": "a-model",
          "outcome": "MODEL_TIMEOUT",
          "provider": "a-provider",
          "startedAtMs": 1475,
          "target": "a",
        },
      ]
    `);
  });

  test('deadline: a provider that honours the signal sees the abort; a backoff past the deadline falls back', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [{ ms: 950, then: err(ModelErrorCode.overloaded) }]),
      b: scripted('b', time, [{ ms: 10_000, then: 'ok' }]),
      c: scripted('c', time, ['ok']),
    };
    // backoff 100 ms: 950 + 100 ≥ 1 000, so `b` starts at once; `b` runs past the deadline
    const router = setup(config(['a', 'b', 'c'], { deadlineMs: 1_000 }), providers, time, () => 0);
    const error = await failure(time.run(router.complete(REQUEST)));
    expect(error.attempts.map((a) => [a.target, a.outcome, a.startedAtMs, a.durationMs])).toEqual([
      ['a', 'MODEL_OVERLOADED', 1_000, 950],
      ['b', 'MODEL_TIMEOUT', 1_950, 50],
    ]);
    expect(providers.b.signals[0]?.aborted).toBe(true);
    expect(providers.b.signals[0]?.reason).toMatchObject({ code: 'MODEL_TIMEOUT' });
    expect(providers.c.calls).toEqual([]);
    expect(error.fallbackCause).toBe('MODEL_OVERLOADED');
    expect(time.now()).toBe(2_000);
  });

  test('a backoff that would end at or after the deadline is not started: fall back instead', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.serverError), err(ModelErrorCode.serverError), 'ok']),
      b: scripted('b', time, ['ok']),
    };
    const router = setup(
      config(['a', 'b'], {
        deadlineMs: 1_000,
        retry: { maxAttempts: 3, baseMs: 600, maxMs: 600, jitter: 0 },
      }),
      providers,
      time,
    );
    const result = await time.run(router.complete(REQUEST));
    // fail at 1 000, wait 600 (ends before 2 000), fail at 1 600; a second wait would end at 2 200
    expect(result.attempts.map((a) => [a.target, a.outcome, a.startedAtMs])).toEqual([
      ['a', 'MODEL_SERVER_ERROR', 1_000],
      ['a', 'MODEL_SERVER_ERROR', 1_600],
      ['b', 'ok', 1_600],
    ]);
  });

  test('jitter comes from the injected random', async () => {
    const time = new VirtualTime();
    const randoms = [0, 1, 0.5];
    const providers = {
      a: scripted('a', time, [
        err(ModelErrorCode.timeout),
        err(ModelErrorCode.overloaded),
        err(ModelErrorCode.serverError),
        'ok',
      ]),
    };
    const router = setup(
      config(['a'], { retry: { maxAttempts: 4, baseMs: 100, maxMs: 300, jitter: 0.5 } }),
      providers,
      time,
      () => randoms.shift() ?? 0,
    );
    const result = await time.run(router.complete(REQUEST));
    // waits: 100 × (1 − 0) = 100; 200 × (1 − 0.5) = 100; min(300, 400) × (1 − 0.25) = 225
    expect(providers.a.calls).toEqual([1_000, 1_100, 1_200, 1_425]);
    expect(result.attempts.map((a) => a.outcome)).toEqual([
      'MODEL_TIMEOUT',
      'MODEL_OVERLOADED',
      'MODEL_SERVER_ERROR',
      'ok',
    ]);
    expect(randoms).toEqual([]);
  });

  test.each([
    ModelErrorCode.contentPolicy,
    ModelErrorCode.auth,
    ModelErrorCode.badRequest,
    ModelErrorCode.scriptInvalid,
  ])('%s stops at once: no retry, no fallback', async (code) => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(code), 'ok']),
      b: scripted('b', time, ['ok']),
    };
    const error = await failure(time.run(setup(config(['a', 'b']), providers, time).complete(REQUEST)));
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(false);
    expect(error.cause).toBeInstanceOf(ModelError);
    expect(error.attempts.map((a) => `${a.target}:${a.outcome}`)).toEqual([`a:${code}`]);
    expect(providers.a.calls).toHaveLength(1);
    expect(providers.b.calls).toEqual([]);
  });

  test('context_length skips to the next target with a larger context window', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.contextLength)]),
      b: scripted('b', time, ['ok']),
      c: scripted('c', time, ['ok']),
      d: scripted('d', time, ['ok']),
    };
    const windows: RouterConfigInput = {
      ...config(['a', 'b', 'c', 'd']),
      targets: {
        a: { provider: {}, contextWindow: 8_000 },
        b: { provider: {}, contextWindow: 8_000 },
        c: { provider: {} },
        d: { provider: {}, contextWindow: 128_000 },
      },
    };
    const result = await time.run(setup(windows, providers, time).complete(REQUEST));
    expect(result.target).toBe('d');
    expect(result.fallbackCause).toBe('MODEL_CONTEXT_LENGTH');
    expect(providers.b.calls).toEqual([]);
    expect(providers.c.calls).toEqual([]);
    expect(result.attempts).toMatchInlineSnapshot(`
      [
        {
          "durationMs": 0,
          "model": "a-model",
          "outcome": "MODEL_CONTEXT_LENGTH",
          "provider": "a-provider",
          "startedAtMs": 1000,
          "target": "a",
        },
        {
          "durationMs": 0,
          "model": "b-model",
          "outcome": "MODEL_CONTEXT_LENGTH",
          "provider": "b-provider",
          "skipped": "context_window",
          "startedAtMs": 1000,
          "target": "b",
        },
        {
          "durationMs": 0,
          "model": "c-model",
          "outcome": "MODEL_CONTEXT_LENGTH",
          "provider": "c-provider",
          "skipped": "context_window",
          "startedAtMs": 1000,
          "target": "c",
        },
        {
          "durationMs": 0,
          "model": "d-model",
          "outcome": "ok",
          "provider": "d-provider",
          "startedAtMs": 1000,
          "target": "d",
        },
      ]
    `);
  });

  test('context_length with no larger window left fails with MODEL_CONTEXT_LENGTH', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.serverError), err(ModelErrorCode.serverError)]),
      b: scripted('b', time, [err(ModelErrorCode.contextLength)]),
      c: scripted('c', time, ['ok']),
    };
    const windows: RouterConfigInput = {
      ...config(['a', 'b', 'c']),
      targets: {
        a: { provider: {}, contextWindow: 200_000 },
        b: { provider: {}, contextWindow: 32_000 },
        c: { provider: {}, contextWindow: 16_000 },
      },
    };
    const error = await failure(time.run(setup(windows, providers, time).complete(REQUEST)));
    expect(error.code).toBe('MODEL_CONTEXT_LENGTH');
    expect(error.fallbackCause).toBe('MODEL_SERVER_ERROR');
    expect(error.attempts.map((a) => `${a.target}:${a.outcome}${a.skipped ? `:${a.skipped}` : ''}`)).toEqual([
      'a:MODEL_SERVER_ERROR',
      'a:MODEL_SERVER_ERROR',
      'b:MODEL_CONTEXT_LENGTH',
      'c:MODEL_CONTEXT_LENGTH:context_window',
    ]);
    expect(providers.c.calls).toEqual([]);
  });

  test('the final error carries the last code, its retry-after and the attempt chain', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.overloaded), err(ModelErrorCode.overloaded)]),
      b: scripted('b', time, [err(ModelErrorCode.rateLimit, 100), err(ModelErrorCode.rateLimit, 250)]),
    };
    const error = await failure(time.run(setup(config(['a', 'b']), providers, time).complete(REQUEST)));
    expect(error).toBeInstanceOf(ModelError);
    expect(error.name).toBe('ModelRouteError');
    expect(error.code).toBe('MODEL_RATE_LIMIT');
    expect(error.retryable).toBe(true);
    expect(error.retryAfterMs).toBe(250);
    expect(error.fallbackCause).toBe('MODEL_OVERLOADED');
    expect(error.message).toMatchInlineSnapshot(
      `"model route 0 (a, b) failed after 4 attempts: no target left; last: scripted MODEL_RATE_LIMIT"`,
    );
    expect(error.attempts.map((a) => [a.target, a.outcome, a.startedAtMs, a.retryAfterMs])).toEqual([
      ['a', 'MODEL_OVERLOADED', 1_000, undefined],
      ['a', 'MODEL_OVERLOADED', 1_075, undefined],
      ['b', 'MODEL_RATE_LIMIT', 1_075, 100],
      ['b', 'MODEL_RATE_LIMIT', 1_175, 250],
    ]);
  });

  test("the caller's abort cancels the call with its own reason", async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [{ ms: 500, then: 'ok' }]),
      b: scripted('b', time, ['ok']),
    };
    const controller = new AbortController();
    const router = setup(config(['a', 'b']), providers, time);
    const call = router.complete(REQUEST, { signal: controller.signal });
    const reason = new Error('run cancelled');
    setImmediate(() => controller.abort(reason));
    await expect(time.run(call)).rejects.toBe(reason);
    expect(providers.b.calls).toEqual([]);
    expect(providers.a.signals[0]?.aborted).toBe(true);
    const aborted = new AbortController();
    aborted.abort(reason);
    await expect(router.complete(REQUEST, { signal: aborted.signal })).rejects.toBe(reason);
  });

  test('a target that cannot be resolved ends the call with MODEL_BAD_REQUEST', async () => {
    const time = new VirtualTime();
    const router = setup(config(['a', 'b']), {}, time);
    const error = await failure(time.run(router.complete(REQUEST)));
    expect(error.code).toBe('MODEL_BAD_REQUEST');
    expect(error.attempts).toEqual([
      {
        target: 'a',
        provider: '',
        model: '',
        startedAtMs: 1_000,
        durationMs: 0,
        outcome: 'MODEL_BAD_REQUEST',
      },
    ]);
  });
});

// --- circuit breaker ---------------------------------------------------------------------------------------

describe('circuit breaker', () => {
  const breakerConfig = config(['a', 'b'], {
    breaker: { failureThreshold: 2, openMs: 10_000, halfOpenProbes: 1 },
  });

  test('opens after consecutive failures, skips while open, half-opens, closes on a good probe', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [err(ModelErrorCode.serverError), err(ModelErrorCode.timeout), 'ok', 'ok']),
      b: scripted('b', time, ['ok', 'ok']),
    };
    const router = setup(breakerConfig, providers, time);
    const first = await time.run(router.complete(REQUEST));
    expect(first.target).toBe('b');
    expect(router.breaker('a')).toEqual({
      state: 'open',
      failures: 0,
      openedAtMs: 1_075,
      openedBy: 'MODEL_TIMEOUT',
    });

    time.nowMs = 5_000;
    const second = await time.run(router.complete(REQUEST));
    expect(second.target).toBe('b');
    expect(second.fallbackCause).toBe('MODEL_TIMEOUT');
    expect(second.attempts).toMatchInlineSnapshot(`
      [
        {
          "durationMs": 0,
          "model": "a-model",
          "outcome": "MODEL_TIMEOUT",
          "provider": "a-provider",
          "skipped": "breaker_open",
          "startedAtMs": 5000,
          "target": "a",
        },
        {
          "durationMs": 0,
          "model": "b-model",
          "outcome": "ok",
          "provider": "b-provider",
          "startedAtMs": 5000,
          "target": "b",
        },
      ]
    `);

    time.nowMs = 11_075;
    expect(router.breaker('a').state).toBe('half_open');
    const third = await time.run(router.complete(REQUEST));
    expect(third.attempts.map((a) => `${a.target}:${a.outcome}`)).toEqual(['a:ok']);
    expect(router.breaker('a').state).toBe('closed');
    expect(providers.a.calls).toEqual([1_000, 1_075, 11_075]);
  });

  test('a failed probe opens it again; only `halfOpenProbes` probes at once', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [
        err(ModelErrorCode.overloaded),
        err(ModelErrorCode.overloaded),
        err(ModelErrorCode.overloaded), // the failed probe
        { ms: 100, then: 'ok' }, // the good probe, while a concurrent call is skipped
      ]),
      b: scripted('b', time, ['ok', 'ok', 'ok', 'ok']),
    };
    const router = setup(breakerConfig, providers, time);
    await time.run(router.complete(REQUEST));
    expect(router.breaker('a').state).toBe('open');

    time.nowMs = 20_000;
    const probe = await time.run(router.complete(REQUEST));
    expect(probe.attempts.map((a) => `${a.target}:${a.outcome}${a.skipped ? `:${a.skipped}` : ''}`)).toEqual([
      'a:MODEL_OVERLOADED',
      'a:MODEL_OVERLOADED:breaker_open',
      'b:ok',
    ]);
    expect(router.breaker('a')).toMatchObject({ state: 'open', openedAtMs: 20_000 });

    time.nowMs = 30_000;
    const [one, two] = await time.run(Promise.all([router.complete(REQUEST), router.complete(REQUEST)]));
    expect(one.attempts.map((a) => `${a.target}:${a.outcome}`)).toEqual(['a:ok']);
    expect(two.attempts.map((a) => `${a.target}:${a.skipped ?? a.outcome}`)).toEqual([
      'a:breaker_open',
      'b:ok',
    ]);
    expect(router.breaker('a').state).toBe('closed');
  });

  test('request-specific failures do not count (the target answered); a success resets the count', async () => {
    const time = new VirtualTime();
    const providers = {
      a: scripted('a', time, [
        err(ModelErrorCode.serverError),
        'ok',
        err(ModelErrorCode.serverError),
        err(ModelErrorCode.contextLength),
        err(ModelErrorCode.badRequest),
      ]),
      b: scripted('b', time, []),
    };
    const router = setup(breakerConfig, providers, time);
    await time.run(router.complete(REQUEST));
    expect(router.breaker('a')).toMatchObject({ state: 'closed', failures: 0 });
    expect((await failure(time.run(router.complete(REQUEST)))).code).toBe('MODEL_CONTEXT_LENGTH');
    expect(router.breaker('a')).toMatchObject({ state: 'closed', failures: 0 });
    expect((await failure(time.run(router.complete(REQUEST)))).code).toBe('MODEL_BAD_REQUEST');
    expect(router.breaker('a')).toMatchObject({ state: 'closed', failures: 0 });
    expect(providers.b.calls).toEqual([]);
  });
});
