/**
 * Governed actions against bare activities: N autonomous governed actions and N bare activities
 * running the same no-op tool on the same dev server in the same run, interleaved.
 *
 * Governed: {@link benchGovernedActions} on an `agents`-style worker (audit sink installed) decides
 * in workflow code on the pinned compiled policy, emits the `decision` audit event, upserts
 * `LastDecision` and calls `executeTool` on a tools worker built by `createToolsWorker`, whose
 * execution guard re-validates the input, re-decides, appends `execution.started` and
 * `execution.result` to the audit file and runs the tool through the registry (which validates the
 * arguments again). Bare: {@link benchBareActions} on a worker with the same options minus the
 * sink calls a plain activity on a worker with the same options minus the guard, running the same
 * no-op function. Each side has its own workflow queue and its own activity queue, so neither gets
 * eager activity dispatch.
 *
 * How an action is timed: the no-op function records `performance.now()` when it starts (both
 * sides run in this process, one clock). Within one workflow running K actions back to back, the
 * gap between consecutive starts is one full action cycle in steady state: the previous activity's
 * completion (for the governed side, after the guard's result audit append), the workflow task that
 * takes it and schedules the next call (decision, sink audit append and search attribute upsert on
 * the governed side), the activity task's dispatch, and everything before the tool runs (the
 * guard's validation, re-decision and started audit append). Both sides pay the same Temporal
 * overheads; the workflow's own `Date.now()` is not used (it is frozen within an activation). The
 * first action of each workflow (workflow start) is not a sample.
 *
 * Interleaving: rounds of one governed and one bare workflow of `batch + 1` actions each, the side
 * going first alternating per round, after one warm-up round per side that is not counted.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { Worker, bundleWorkflowCode } from '@temporalio/worker';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditClient } from '../activities/audit/types.ts';
import { implementTool } from '../activities/tools/define.ts';
import type { ToolResult } from '../activities/tools/define.ts';
import { createAgentsWorker, createToolsWorker } from '../worker/workers.ts';
import { benchModule, latencySummary, report, startBenchEnv } from './harness.ts';
import type { BenchOutput } from './harness.ts';
import { BARE_ACTIVITY, benchNoop } from './noop-spec.ts';
import type { BenchToolArgs } from './noop-spec.ts';
import type { benchBareActions, benchGovernedActions } from './workflows.ts';

export interface ActionsBenchOptions extends BenchOutput {
  /** Measured actions per side (default 200). */
  readonly n?: number;
  /** Actions per workflow per round (default 20). */
  readonly batch?: number;
}

export interface ActionsBenchResult {
  readonly name: 'actions';
  readonly n: number;
  readonly governed_p50_ms: number;
  readonly governed_p99_ms: number;
  readonly bare_p50_ms: number;
  readonly bare_p99_ms: number;
  /** governed p50 / bare p50. */
  readonly ratio: number;
  /** Time the tools worker's gateway adds per governed action, in process: guard + registry before and after the tool. */
  readonly guard_p50_ms: number;
  readonly guard_p99_ms: number;
}

const QUIET = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (message: string) => console.error(message),
};

/** The no-op both sides run: records when it starts and answers at once. */
function noop(args: BenchToolArgs, stamps: number[]): Promise<ToolResult> {
  stamps.push(performance.now());
  return Promise.resolve({ ok: true, output: { i: args.i } });
}

/** Runs the benchmark on a dev server of its own; prints the result (text or one JSON line) and returns it. */
export async function benchActions(options: ActionsBenchOptions = {}): Promise<ActionsBenchResult> {
  const n = options.n ?? 200;
  const batch = options.batch ?? 20;
  if (!Number.isInteger(n) || n < 1) throw new RangeError('n must be a positive integer');
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError('batch must be a positive integer');
  const progress = options.progress ?? (() => {});
  const env = await startBenchEnv();
  try {
    progress('actions: bundling workflows, starting workers');
    const bundle = await bundleWorkflowCode({ workflowsPath: benchModule('workflows'), logger: QUIET });
    const queues = {
      governed: 'bench-governed',
      governedTools: 'bench-governed-tools',
      bare: 'bench-bare',
      bareActivities: 'bench-bare-activities',
    };
    const stamps = { governed: [] as number[], bare: [] as number[] };
    // entry into and exit from the guard (an interceptor outside it) for each governed action
    const guardSpans: number[] = [];
    const auditCounts = new Map<string, number>();
    const audit: AuditClient = {
      append: (event) => {
        auditCounts.set(event.kind, (auditCounts.get(event.kind) ?? 0) + 1);
        return env.audit.append(event);
      },
    };
    const on = { connection: env.connection, namespace: env.namespace };
    env.run(await createAgentsWorker({ ...on, taskQueue: queues.governed, bundle, activities: {}, audit }));
    env.run(
      await createToolsWorker({
        ...on,
        taskQueue: queues.governedTools,
        tools: [implementTool(benchNoop, (args) => noop(args, stamps.governed))],
        trustedKeys: env.publicKeys,
        audit,
        journalDir: `${env.dir}/journal`,
        outerInterceptors: [
          () => ({
            inbound: {
              execute: async (input, next) => {
                const entered = performance.now();
                const before = stamps.governed.length;
                try {
                  return await next(input);
                } finally {
                  const toolStarted = stamps.governed[before];
                  if (toolStarted !== undefined)
                    guardSpans.push(toolStarted - entered + (performance.now() - toolStarted));
                }
              },
            },
          }),
        ],
      }),
    );
    // createAgentsWorker without the audit sink; createToolsWorker without the guard and registry
    env.run(await Worker.create({ ...on, taskQueue: queues.bare, workflowBundle: bundle, activities: {} }));
    env.run(
      await Worker.create({
        ...on,
        taskQueue: queues.bareActivities,
        activities: { [BARE_ACTIVITY]: (args: BenchToolArgs) => noop(args, stamps.bare) },
      }),
    );

    const { document, policyVersion } = env.governance;
    let workflows = 0;
    let first = 0;
    /** Runs one workflow of `actions` actions; returns the gaps between consecutive tool starts. */
    const runSide = async (side: 'governed' | 'bare', actions: number): Promise<number[]> => {
      const recorded = stamps[side];
      recorded.length = 0;
      const common = { actions, first, workflowId: `bench-${side}-${++workflows}` };
      first += actions;
      const ok =
        side === 'governed'
          ? await env.client.workflow.execute<typeof benchGovernedActions>('benchGovernedActions', {
              taskQueue: queues.governed,
              workflowId: common.workflowId,
              args: [
                {
                  activityQueue: queues.governedTools,
                  actions,
                  first: common.first,
                  agentId: document.identity.id,
                  requestedBy: 'requester',
                  policy: { document, policyVersion },
                },
              ],
            })
          : await env.client.workflow.execute<typeof benchBareActions>('benchBareActions', {
              taskQueue: queues.bare,
              workflowId: common.workflowId,
              args: [{ activityQueue: queues.bareActivities, actions, first: common.first }],
            });
      if (ok !== actions || recorded.length !== actions)
        throw new Error(`${side}: ${ok} of ${actions} actions ok, ${recorded.length} tool starts`);
      return recorded.slice(1).map((t, k) => t - (recorded[k] as number));
    };

    progress('actions: warm-up round');
    await runSide('governed', batch + 1);
    await runSide('bare', batch + 1);
    const governed: number[] = [];
    const bare: number[] = [];
    for (let round = 0; governed.length < n; round++) {
      const size = Math.min(batch, n - governed.length) + 1;
      const order = round % 2 === 0 ? (['governed', 'bare'] as const) : (['bare', 'governed'] as const);
      for (const side of order) (side === 'governed' ? governed : bare).push(...(await runSide(side, size)));
      progress(`actions: ${governed.length}/${n}`);
    }
    const executed = auditCounts.get(AuditKind.executionResult) ?? 0;
    const decided = auditCounts.get(AuditKind.decision) ?? 0;
    if (executed !== first / 2 || decided !== first / 2)
      throw new Error(
        `audit: ${decided} decisions and ${executed} results for ${first / 2} governed actions`,
      );

    const g = latencySummary(governed);
    const b = latencySummary(bare);
    const guard = latencySummary(guardSpans);
    const result: ActionsBenchResult = {
      name: 'actions',
      n,
      governed_p50_ms: g.p50,
      governed_p99_ms: g.p99,
      bare_p50_ms: b.p50,
      bare_p99_ms: b.p99,
      ratio: Math.round((g.p50 / b.p50) * 100) / 100,
      guard_p50_ms: guard.p50,
      guard_p99_ms: guard.p99,
    };
    report(options, result, () =>
      [
        `actions: ${n} governed and ${n} bare actions, interleaved in rounds of ${batch} (same server, same run)`,
        `  governed  p50 ${g.p50} ms   p99 ${g.p99} ms   (decide + audit sink + guard: re-validate, re-decide, 2 audit appends)`,
        `  bare      p50 ${b.p50} ms   p99 ${b.p99} ms   (plain activity, same no-op)`,
        `  ratio governed/bare (p50) ${result.ratio}   goal ≤ 1.15`,
        `  gateway in the tools worker (guard + registry, in process): p50 ${guard.p50} ms   p99 ${guard.p99} ms`,
      ].join('\n'),
    );
    return result;
  } finally {
    await env.stop();
  }
}
