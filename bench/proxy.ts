/**
 * The model proxy's overhead: N direct calls of the OpenAI-compatible provider and N calls of the
 * same provider through the proxy (a route with one target, the SQLite token budget reserving and
 * reconciling, a trace handed to the writer), against the same local OpenAI wire-format stand-in,
 * interleaved call by call (the side going first alternates).
 *
 * Reported: p50 of each side, and the proxy's own overhead per call as it measures it (the call's
 * latency minus the time spent in provider attempts) — the figure the gateway puts on every trace.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { openSqliteBudget } from '../activities/model/budget/index.ts';
import { createOpenAICompatibleProvider } from '../activities/model/openai-compatible.ts';
import { createModelProxy } from '../activities/model/proxy.ts';
import type { ProxyTrace } from '../activities/model/proxy.ts';
import { createRouter } from '../activities/model/routing/index.ts';
import { startOpenAIStandIn } from '../activities/model/standins/index.ts';
import type { ModelConfig, ModelRequest } from '../activities/model/types.ts';
import type { BenchOutput } from './harness.ts';
import { latencySummary, report } from './harness.ts';

export interface ProxyBenchOptions extends BenchOutput {
  /** Calls per side (default 500). */
  readonly n?: number;
  /** Calls per side before the measured ones (default 50). */
  readonly warmup?: number;
  /** Where each trace goes (default: dropped after the proxy measured it). */
  readonly onTrace?: (trace: ProxyTrace) => void;
}

export interface ProxyBenchResult {
  readonly name: 'proxy';
  readonly n: number;
  readonly direct_p50_ms: number;
  readonly proxied_p50_ms: number;
  readonly overhead_p50_ms: number;
  readonly overhead_p99_ms: number;
}

/** Runs the benchmark; prints the result (text or one JSON line) and returns it. */
export async function benchProxy(options: ProxyBenchOptions = {}): Promise<ProxyBenchResult> {
  const n = options.n ?? 500;
  const warmup = options.warmup ?? 50;
  if (!Number.isInteger(n) || n < 1) throw new RangeError('n must be a positive integer');
  const standIn = await startOpenAIStandIn({
    fallback: { text: 'ok', usage: { inputTokens: 20, outputTokens: 2 } },
  });
  const budget = await openSqliteBudget({ file: ':memory:' });
  try {
    const env = { BENCH_MODEL_KEY: 'sk-bench' };
    const openai = createOpenAICompatibleProvider({ env });
    const target: ModelConfig = {
      provider: 'openai-compatible',
      baseUrl: standIn.url,
      model: 'gpt-standin',
      apiKeyEnv: 'BENCH_MODEL_KEY',
      maxTokens: 64,
    };
    const router = createRouter(
      { targets: { primary: { provider: { ...target } } }, routes: [{ targets: ['primary'] }] },
      // a sub-millisecond clock: attempt durations are what the overhead is measured against
      {
        resolve: () => ({ provider: openai, model: target }),
        now: () => performance.timeOrigin + performance.now(),
      },
    );
    const overheads: number[] = [];
    const proxy = createModelProxy({
      providers: { 'openai-compatible': openai },
      router,
      budget,
      agentDailyTokens: () => Number.MAX_SAFE_INTEGER,
      onTrace: (trace) => {
        overheads.push(trace.overheadMs);
        options.onTrace?.(trace);
      },
    });
    const base: Omit<ModelRequest, 'model' | 'turn'> = {
      agentId: 'bench-agent',
      runId: 'bench-run',
      messages: [
        { role: 'system', content: 'You are a benchmark.' },
        { role: 'user', content: 'Say ok.' },
      ],
      tools: [],
    };
    const direct: number[] = [];
    const proxied: number[] = [];
    const once = async (side: 'direct' | 'proxied', turn: number): Promise<number> => {
      const t0 = performance.now();
      if (side === 'direct') await openai.complete({ ...base, turn, model: target });
      else
        await proxy.complete({
          ...base,
          turn,
          model: { provider: 'routed', maxTokens: 64 },
          runTokenLimit: 1e12,
        });
      return performance.now() - t0;
    };
    for (let i = 0; i < warmup + n; i++) {
      const order = i % 2 === 0 ? (['direct', 'proxied'] as const) : (['proxied', 'direct'] as const);
      for (const side of order) {
        const ms = await once(side, i);
        if (i >= warmup) (side === 'direct' ? direct : proxied).push(ms);
      }
      if ((i + 1) % 100 === 0) options.progress?.(`proxy: ${i + 1}/${warmup + n}`);
    }
    const d = latencySummary(direct);
    const p = latencySummary(proxied);
    const o = latencySummary(overheads.slice(warmup));
    const result: ProxyBenchResult = {
      name: 'proxy',
      n,
      direct_p50_ms: d.p50,
      proxied_p50_ms: p.p50,
      overhead_p50_ms: o.p50,
      overhead_p99_ms: o.p99,
    };
    report(options, result, () =>
      [
        `proxy: ${n} direct and ${n} proxied calls to one local OpenAI wire-format stand-in, interleaved`,
        `  direct   p50 ${d.p50} ms   p99 ${d.p99} ms`,
        `  proxied  p50 ${p.p50} ms   p99 ${p.p99} ms   (route, budget reserve + reconcile on SQLite, trace)`,
        `  proxy overhead per call: p50 ${o.p50} ms   p99 ${o.p99} ms   goal ≤ 1 ms / ≤ 5 ms`,
        '  anchors (independent measurements): Bifrost 0.44 ms, Portkey 2.4 ms, LiteLLM 4.3 ms',
      ].join('\n'),
    );
    return result;
  } finally {
    await budget.close();
    await standIn.close();
  }
}
