/**
 * The observer's reaction time on the real stack of `agent-runtime dev` (dev server, workers, the
 * aggregator and the observer as their own processes): an event appended to the aggregator →
 * the observer's finding → its `freezeTools` Update acknowledged by the run's workflow (the
 * `observer.intervention` record it writes after the Update returned). One trigger at a time,
 * against one run parked on an approval.
 *
 * Also, in process: rule evaluation per event with 50 rules (the built-ins repeated under new ids)
 * over a realistic event mix.
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createAuditAggregatorClient } from '../audit/client.ts';
import type { AuditRecord } from '../audit/chain.ts';
import type { AuditEvent } from '../activities/audit/types.ts';
import { BUILTIN_RULES_YAML } from '../observer/rules/builtin.ts';
import { createEngine } from '../observer/rules/engine.ts';
import { parseRules } from '../observer/rules/schema.ts';
import { parseGovernanceOrThrow } from '../policy/index.ts';
import { startAgentRun } from '../worker/runs.ts';
import { startDevStack } from '../worker/stack.ts';
import { findFreePort } from '../worker/temporal/dev-server.ts';
import type { BenchOutput } from './harness.ts';
import { benchFixture, latencySummary, report } from './harness.ts';

export interface ObserverBenchOptions extends BenchOutput {
  /** Triggers (default 100). */
  readonly n?: number;
  /** Events evaluated for the rule-evaluation figure (default 20,000). */
  readonly events?: number;
}

export interface ObserverBenchResult {
  readonly name: 'observer';
  readonly n: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly rules: number;
  readonly rule_eval_p50_ms: number;
  readonly rule_eval_p99_ms: number;
}

/** 50 rules: the built-ins, repeated under new ids. */
export function fiftyRules() {
  const builtins = parseRules(BUILTIN_RULES_YAML);
  const copies = Math.ceil(50 / builtins.length);
  const text = Array.from({ length: copies }, (_, i) =>
    BUILTIN_RULES_YAML.replace(/^- id: (\S+)/gm, (_m, id: string) => `- id: ${id}-${i}`),
  ).join('\n');
  return parseRules(text).slice(0, 50);
}

/** Rule evaluation per event (ms) over a mix of reads, decisions, results and model calls. */
export function measureRuleEvaluation(events: number): { p50: number; p99: number; rules: number } {
  const rules = fiftyRules();
  const t0 = Date.parse('2026-12-01T00:00:00.000Z');
  const engine = createEngine(rules, { now: () => t0 });
  const samples: number[] = [];
  const kinds = ['execution.started', 'decision', 'execution.result', 'model.call'] as const;
  for (let i = 0; i < events; i++) {
    const kind = kinds[i % kinds.length]!;
    const event: AuditEvent = {
      seq: i + 1,
      ts: new Date(t0 + i * 250).toISOString(),
      source: kind === 'decision' ? 'workflow' : 'guard',
      agent: `agent-${i % 7}`,
      run: `run-${i % 31}`,
      step: i,
      kind,
      attrs:
        kind === 'model.call'
          ? {
              proposed: [{ tool: 'fs.read', rationale: 'look' }],
              usage: { inputTokens: 300, outputTokens: 40 },
            }
          : {
              tool: i % 5 === 0 ? 'http.request' : 'fs.read',
              tier: i % 11 === 0 ? 'prohibited' : 'autonomous',
              ok: true,
              resource: `/workspace/dir-${i % 97}/${i}.md`,
              args: { path: `/workspace/dir-${i % 97}/${i}.md`, method: 'GET' },
            },
    };
    const start = performance.now();
    engine.ingest(event);
    samples.push(performance.now() - start);
  }
  const { p50, p99 } = latencySummary(samples.slice(Math.floor(samples.length / 10)));
  return { p50, p99, rules: rules.length };
}

/** Runs the benchmark; prints the result (text or one JSON line) and returns it. */
export async function benchObserver(options: ObserverBenchOptions = {}): Promise<ObserverBenchResult> {
  const n = options.n ?? 100;
  const progress = options.progress ?? (() => undefined);
  const evaluation = measureRuleEvaluation(options.events ?? 20_000);
  const stateDir = mkdtempSync(join(tmpdir(), 'ar-bench-observer-'));
  progress('starting the stack (dev server, workers, aggregator, observer)…');
  const stack = await startDevStack({
    stateDir,
    inMemory: true,
    port: await findFreePort(),
    uiPort: await findFreePort(),
    observer: { rules: [benchFixture('observer-bench-rules.yaml')] },
  });
  try {
    const file = benchFixture('governance.yaml');
    const governance = parseGovernanceOrThrow(await readFile(file, 'utf8'), file);
    const agent = governance.document.identity.id;
    // fs.write is not named by the bench governance: the default tier (approval) parks the run
    const handle = await startAgentRun(stack.client, {
      governance,
      task: 'park on an approval',
      requestedBy: 'requester',
      model: {
        provider: 'scripted',
        turns: [{ calls: [{ tool: 'fs.write', args: { path: '/workspace/parked.md', content: 'x' } }] }],
      },
      trustedKeys: stack.trustedKeys,
    });
    const runId = handle.workflowId;
    const client = createAuditAggregatorClient({ url: stack.aggregator.url, token: stack.aggregator.token });
    const acked = new Map<number, () => void>();
    const findingSeq = new Map<string, number>();
    const unsubscribe = client.subscribe('default', 1, (record: AuditRecord) => {
      if (record.kind === 'observer.finding' && record.attrs['rule'] === 'bench-trigger') {
        const [seq] = record.attrs['events'] as number[];
        findingSeq.set(String(record.attrs['findingId']), seq!);
      }
      if (record.kind === 'observer.intervention' && record.attrs['rule'] === 'bench-trigger') {
        if (record.attrs['outcome'] !== 'applied')
          throw new Error(`intervention not applied: ${JSON.stringify(record.attrs)}`);
        const seq = findingSeq.get(String(record.attrs['findingId']));
        if (seq !== undefined) acked.get(seq)?.();
      }
    });
    const samples: number[] = [];
    const warmup = Math.min(10, n);
    for (let i = 0; i < n + warmup; i++) {
      const start = performance.now();
      let done: () => void = () => undefined;
      const ack = new Promise<void>((resolve) => (done = resolve));
      const [appended] = await client.appendMany([
        {
          source: 'guard',
          agent,
          run: runId,
          step: null,
          kind: 'execution.started',
          attrs: { tool: 'bench.trigger', i },
        },
      ]);
      acked.set(appended!.seq, done);
      await Promise.race([
        ack,
        new Promise((_, reject) =>
          setTimeout(
            () => reject(new Error(`trigger ${i}: no acknowledged intervention within 10 s`)),
            10_000,
          ),
        ),
      ]);
      if (i >= warmup) samples.push(performance.now() - start);
      if (i % 25 === 0) progress(`  ${i}/${n + warmup}`);
    }
    unsubscribe();
    await client.close();
    await handle.terminate('bench done').catch(() => undefined);
    const { p50, p99 } = latencySummary(samples);
    const result: ObserverBenchResult = {
      name: 'observer',
      n,
      p50_ms: p50,
      p99_ms: p99,
      rules: evaluation.rules,
      rule_eval_p50_ms: evaluation.p50,
      rule_eval_p99_ms: evaluation.p99,
    };
    report(options, result, () =>
      [
        `observer: ${n} triggers, event appended → finding → freezeTools acknowledged by the workflow`,
        `  p50 ${p50} ms   p99 ${p99} ms   (goal p99 ≤ 1,000 ms)`,
        `  rule evaluation with ${evaluation.rules} rules: p50 ${evaluation.p50} ms   p99 ${evaluation.p99} ms per event (goal p99 ≤ 1 ms)`,
      ].join('\n'),
    );
    return result;
  } finally {
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
