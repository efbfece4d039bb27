/**
 * Approval latency: from a signed vote being submitted to the approved tool activity starting.
 *
 * Real AgentRun runs (scripted model) each propose one `bench.gated` call, which the benchmark
 * governance document puts in the approval tier, so every run starts an approval child workflow
 * and parks. All runs are started and parked first; then, one run at a time: t0 is taken just
 * before `castVote(...)` (the operator channel: status query, authority checks, signing, the `vote`
 * Update), t1 when the `bench.gated` implementation starts on the tools worker, behind the
 * execution guard (which verifies the signed vote). Both clocks are `performance.now()` of this
 * process. The interval includes the Update round trip, the approval workflow deciding and sending
 * its outcome notice (an activity on the approvals queue), the child completing, AgentRun's
 * workflow task that schedules `executeTool`, and the guard's checks and `execution.started`
 * audit append. Each run is awaited to completion before the next vote.
 * @module
 */
import { performance } from 'node:perf_hooks';
import type { WorkflowHandle } from '@temporalio/client';
import { createModelActivities } from '../activities/model/index.ts';
import type { ScriptedTurn } from '../activities/model/types.ts';
import { implementTool } from '../activities/tools/define.ts';
import type { ToolResult } from '../activities/tools/define.ts';
import { bundleAgentWorkflows } from '../worker/bundle.ts';
import { startAgentRun } from '../worker/runs.ts';
import { createAgentsWorker, createApprovalsWorker, createToolsWorker } from '../worker/workers.ts';
import { statusQuery } from '../workflows/agent-run.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import type { RunView } from '../workflows/run-types.ts';
import type { BenchEnv, BenchOutput } from './harness.ts';
import { benchModule, latencySummary, mapLimit, report, startBenchEnv } from './harness.ts';
import { benchGated, benchNoop } from './noop-spec.ts';
import { BenchChannel, channelVoter } from './channels.ts';

export interface ApprovalsBenchOptions extends BenchOutput {
  /** Measured approvals (default 50). */
  readonly n?: number;
  /** Approvals before the measured ones, not counted (default 3). */
  readonly warmup?: number;
  /** How votes are cast (default `operator`: `castVote`; else the approvals service's HTTP paths). */
  readonly channel?: BenchChannel;
}

export interface ApprovalsBenchResult {
  readonly name: 'approvals';
  readonly channel: BenchChannel;
  readonly n: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  /** Slack: the click's HTTP answer (Bolt's ack), ms after the click. */
  readonly ack_p50_ms?: number;
  readonly ack_p99_ms?: number;
}

/** Task queues of a benchmark stack. */
export const BENCH_QUEUES = {
  agents: 'bench-agents',
  tools: 'bench-tools',
  approvals: 'bench-approvals',
} as const;

/** The script every benchmark run plays: one gated call, then a final answer. */
export function gatedScript(i: number): ScriptedTurn[] {
  return [{ calls: [{ tool: benchGated.name, args: { i }, rationale: 'benchmark' }] }, { final: 'done' }];
}

/** Tool implementations of the benchmark tools; `onStart` sees each call's run workflow id. */
export function benchToolImplementations(onStart: (runWorkflowId: string) => void) {
  const run = (_args: unknown, ctx: { idempotencyKey: string }): Promise<ToolResult> => {
    // the key is `${runWorkflowId}/${step}`
    onStart(ctx.idempotencyKey.slice(0, ctx.idempotencyKey.lastIndexOf('/')));
    return Promise.resolve({ ok: true, output: null });
  };
  return [implementTool(benchNoop, run), implementTool(benchGated, run)];
}

/** Starts a benchmark AgentRun of the gated script. */
export function startGatedRun(
  env: BenchEnv,
  workflowId: string,
  i: number,
): Promise<WorkflowHandle<typeof agentRunWorkflow>> {
  return startAgentRun(env.client, {
    governance: env.governance,
    task: `benchmark run ${i}`,
    requestedBy: 'requester',
    model: { provider: 'scripted', turns: gatedScript(i) },
    trustedKeys: env.trustedKeys,
    workflowId,
    taskQueue: BENCH_QUEUES.agents,
    taskQueues: { tools: BENCH_QUEUES.tools, approvals: BENCH_QUEUES.approvals },
  });
}

/** Polls the run's status until it waits on an approval; returns the approval workflow id. */
export async function waitForPendingApproval(
  handle: WorkflowHandle<typeof agentRunWorkflow>,
  timeoutMs = 60_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view: RunView = await handle.query(statusQuery);
    if (view.pendingApproval !== null) return view.pendingApproval.approvalWorkflowId;
    if (view.state === 'finished')
      throw new Error(`${handle.workflowId} finished without asking for approval`);
    if (Date.now() > deadline)
      throw new Error(`${handle.workflowId}: no pending approval after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs the benchmark on a dev server of its own; prints the result (text or one JSON line) and returns it. */
export async function benchApprovals(options: ApprovalsBenchOptions = {}): Promise<ApprovalsBenchResult> {
  const n = options.n ?? 50;
  const warmup = options.warmup ?? 3;
  if (!Number.isInteger(n) || n < 1) throw new RangeError('n must be a positive integer');
  const progress = options.progress ?? (() => {});
  const channel = options.channel ?? BenchChannel.operator;
  const env = await startBenchEnv();
  try {
    progress(`approvals (${channel}): bundling workflows, starting workers and the approvals service`);
    const voter = await channelVoter(env, channel);
    env.onStop(() => voter.close());
    const bundle = await bundleAgentWorkflows([benchModule('noop-spec')]);
    const started = new Map<string, (at: number) => void>();
    const on = { connection: env.connection, namespace: env.namespace };
    env.run(
      await createAgentsWorker({
        ...on,
        taskQueue: BENCH_QUEUES.agents,
        bundle,
        activities: createModelActivities(),
        audit: env.audit,
      }),
    );
    env.run(
      await createToolsWorker({
        ...on,
        taskQueue: BENCH_QUEUES.tools,
        tools: benchToolImplementations((runId) => {
          const at = performance.now();
          started.get(runId)?.(at);
        }),
        trustedKeys: env.publicKeys,
        audit: env.audit,
        journalDir: `${env.dir}/journal`,
      }),
    );
    env.run(
      await createApprovalsWorker({ ...on, taskQueue: BENCH_QUEUES.approvals, sink: (n) => voter.sink(n) }),
    );

    const total = warmup + n;
    progress(`approvals: starting ${total} runs`);
    const handles = await mapLimit(
      Array.from({ length: total }, (_, i) => i),
      16,
      (i) => startGatedRun(env, `bench-approval-${i}`, i),
    );
    const approvalIds = await mapLimit(handles, 16, (handle) => waitForPendingApproval(handle));
    progress(`approvals: ${total} runs parked; voting one at a time`);

    const samples: number[] = [];
    for (let i = 0; i < total; i++) {
      const handle = handles[i]!;
      const toolStarted = new Promise<number>((resolve) => started.set(handle.workflowId, resolve));
      const click = await voter.prepare(approvalIds[i]!);
      const t0 = performance.now();
      await click();
      const t1 = await toolStarted;
      const result = await handle.result();
      if (result.status !== 'completed' || result.decisions[0]?.outcome !== 'executed')
        throw new Error(`${handle.workflowId}: ${result.status}, ${JSON.stringify(result.decisions[0])}`);
      if (i >= warmup) samples.push(t1 - t0);
      if ((i + 1) % 10 === 0) progress(`approvals: ${i + 1}/${total}`);
    }

    const { p50, p99 } = latencySummary(samples);
    const ack = voter.ackMs.length > 0 ? latencySummary(voter.ackMs.slice(warmup)) : undefined;
    const result: ApprovalsBenchResult = {
      name: 'approvals',
      channel,
      n,
      p50_ms: p50,
      p99_ms: p99,
      ...(ack ? { ack_p50_ms: ack.p50, ack_p99_ms: ack.p99 } : {}),
    };
    const what: Record<BenchChannel, string> = {
      operator: 'vote submitted (castVote)',
      slack: 'signed Slack click POSTed to Bolt',
      email: 'email review page POST',
      web: 'web inbox vote POST',
    };
    report(options, result, () =>
      [
        `approvals (${channel}): ${n} AgentRuns approved one at a time (${warmup} warm-up not counted)`,
        `  ${what[channel]} → approved tool activity started: p50 ${p50} ms   p99 ${p99} ms`,
        ...(ack
          ? [
              `  Slack ack (HTTP answer to the click): p50 ${ack.p50} ms   p99 ${ack.p99} ms   (Slack needs < 3 s)`,
            ]
          : []),
        '  goal p50 ≤ 100 ms, p99 ≤ 250 ms',
      ].join('\n'),
    );
    return result;
  } finally {
    await env.stop();
  }
}
