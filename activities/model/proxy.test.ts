/**
 * The model proxy: budgets reserved before and reconciled after every call (parallel callers can
 * never overspend), routed calls with fallback, and one trace per call with the attempt chain and
 * the proxy's overhead.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteBudget } from './budget/index.ts';
import type { TokenBudget } from './budget/index.ts';
import { ModelError, ModelErrorCode } from './errors.ts';
import { createModelProxy, estimateTokens } from './proxy.ts';
import type { ProxyTrace } from './proxy.ts';
import { createRouter } from './routing/index.ts';
import { createScriptedProvider } from './scripted.ts';
import type { ModelProvider, ModelRequest, ModelResponse } from './types.ts';

const budgets: TokenBudget[] = [];
afterEach(async () => {
  for (const b of budgets.splice(0)) await b.close();
});

const request = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
  agentId: 'support-bot',
  runId: 'run-1',
  turn: 0,
  model: { provider: 'scripted', turns: [{ final: 'done', usage: { inputTokens: 30, outputTokens: 10 } }] },
  messages: [{ role: 'user', content: 'hello' }],
  tools: [],
  ...overrides,
});

/** A provider that answers after `ms` with fixed usage, or throws `error`. */
function provider(
  name: string,
  behaviour: { ms?: number; error?: ModelError; tokens?: number } = {},
): ModelProvider {
  return {
    name,
    complete: async (): Promise<ModelResponse> => {
      await new Promise((resolve) => setTimeout(resolve, behaviour.ms ?? 0));
      if (behaviour.error) throw behaviour.error;
      return {
        content: `from ${name}`,
        toolCalls: [],
        finishReason: 'stop',
        usage: { inputTokens: behaviour.tokens ?? 40, outputTokens: 0 },
        provider: name,
        model: `${name}-model`,
      };
    },
  };
}

describe('model proxy', () => {
  it('a direct call is traced once, with its overhead beside the provider time', async () => {
    const traces: ProxyTrace[] = [];
    const proxy = createModelProxy({
      providers: { scripted: createScriptedProvider() },
      onTrace: (t) => traces.push(t),
      newId: () => 'trace-1',
    });
    const response = await proxy.complete(request());
    expect(response).toMatchObject({
      content: 'done',
      proxy: { traceId: 'trace-1', target: 'scripted', attempts: 1 },
    });
    expect(traces).toHaveLength(1);
    expect(traces[0]).toMatchObject({ id: 'trace-1', route: 'direct', error: null, reservedTokens: 0 });
    expect(traces[0]!.overheadMs).toBeGreaterThanOrEqual(0);
    expect(traces[0]!.overheadMs).toBeLessThanOrEqual(traces[0]!.latencyMs);
  });

  it('parallel calls never overspend the agent’s daily budget; failures release their reservation', async () => {
    const budget = await openSqliteBudget({ file: ':memory:' });
    budgets.push(budget);
    const proxy = createModelProxy({
      providers: { scripted: provider('scripted', { ms: 5, tokens: 40 }) },
      budget,
      agentDailyTokens: () => 1_000,
      defaultMaxTokens: 96,
    });
    const one = request();
    // each call reserves its prompt estimate plus 96 tokens: about 100
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => proxy.complete({ ...one, runId: `run-${i}` })),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter(
      (r) => r.status === 'rejected' && (r.reason as ModelError).code === ModelErrorCode.budgetExhausted,
    ).length;
    expect(ok + refused).toBe(30);
    // each reservation is the prompt estimate plus 96; as many as fit in 1,000, not one more
    expect(ok).toBe(Math.floor(1_000 / (estimateTokens(one) + 96)));
    const day = new Date().toISOString().slice(0, 10);
    // reconciled to actual usage (40 each): what was used never exceeds the limit
    expect(await budget.usage({ agentId: 'support-bot', dayKey: day })).toEqual({
      used: ok * 40,
      reserved: 0,
    });

    const failing = createModelProxy({
      providers: {
        scripted: provider('scripted', { error: new ModelError(ModelErrorCode.serverError, 'boom') }),
      },
      budget,
      agentDailyTokens: () => 1_000,
      defaultMaxTokens: 96,
    });
    await expect(failing.complete({ ...one, runId: 'run-x' })).rejects.toMatchObject({
      code: 'MODEL_SERVER_ERROR',
    });
    expect(await budget.usage({ agentId: 'support-bot', dayKey: day })).toEqual({
      used: ok * 40,
      reserved: 0,
    });
  });

  it('a run’s own limit is enforced across its calls, with a message saying what is left', async () => {
    const budget = await openSqliteBudget({ file: ':memory:' });
    budgets.push(budget);
    const proxy = createModelProxy({
      providers: { scripted: provider('scripted', { tokens: 250 }) },
      budget,
      defaultMaxTokens: 96,
    });
    await proxy.complete(request({ runTokenLimit: 300 }));
    await expect(proxy.complete(request({ runTokenLimit: 300, turn: 1 }))).rejects.toThrow(
      /the run's token budget cannot cover this call \(\d+ tokens needed, 50 left\)/,
    );
  });

  it('a routed call falls back on a typed error; the trace shows the chain and the cause', async () => {
    const traces: ProxyTrace[] = [];
    const primary = provider('primary', { error: new ModelError(ModelErrorCode.overloaded, 'overloaded') });
    const secondary = provider('secondary');
    const router = createRouter(
      {
        targets: {
          primary: { provider: { kind: 'primary' } },
          secondary: { provider: { kind: 'secondary' } },
        },
        routes: [{ targets: ['primary', 'secondary'] }],
        retry: { maxAttempts: 1, baseMs: 0, maxMs: 0, jitter: 0 },
      },
      {
        resolve: (id) => ({
          provider: id === 'primary' ? primary : secondary,
          model: { provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:9', model: `${id}-model` },
        }),
      },
    );
    const proxy = createModelProxy({ providers: {}, router, onTrace: (t) => traces.push(t) });
    const response = await proxy.complete(request({ model: { provider: 'routed' } }));
    expect(response).toMatchObject({
      content: 'from secondary',
      proxy: { target: 'secondary', fallbackCause: 'MODEL_OVERLOADED' },
    });
    expect(traces[0]!.attempts.map((a) => `${a.target}:${a.outcome}`)).toEqual([
      'primary:MODEL_OVERLOADED',
      'secondary:ok',
    ]);
    expect(traces[0]).toMatchObject({
      target: 'secondary',
      route: 'routes[0]',
      fallbackCause: 'MODEL_OVERLOADED',
    });
  });

  it('routed without routes on the worker is a clear bad request', async () => {
    const proxy = createModelProxy({ providers: {} });
    await expect(proxy.complete(request({ model: { provider: 'routed' } }))).rejects.toMatchObject({
      code: 'MODEL_BAD_REQUEST',
      message: 'the run asks for routed models, and this worker has no routes',
    });
  });
});
