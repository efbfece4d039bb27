/**
 * Parked runs: many AgentRuns waiting on approval against ONE `agents` worker, its memory, and
 * whether every one of them resumes.
 *
 * The `agents` worker (AgentRun and approval workflows, the scripted model step, the audit sink to
 * a file) runs in a child process (`bench/agents-worker-main.ts`) so its resident set size is its
 * own; the client, the bundler, the tools and approvals workers stay in this process. All runs
 * are started, each proposes one `bench.gated` call (approval tier) and parks on its approval
 * child. Once visibility shows every run `RunState = 'WAITING_APPROVAL'` and every approval
 * `ApprovalState = 'PENDING'`, and every request notice was sent, the worker's RSS is read from
 * `/proc/<pid>/status` (VmRSS; VmHWM is the peak so far). Then every request is approved through
 * the operator channel (`castVote`) and every run must complete with its tool executed: a run
 * that does not is lost.
 * @module
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { castVote } from '../approval-channels/operator.ts';
import { bundleAgentWorkflows } from '../worker/bundle.ts';
import { createApprovalsWorker, createToolsWorker } from '../worker/workers.ts';
import { approvalWorkflowIdFor } from '../workflows/run-types.ts';
import { BENCH_QUEUES, benchToolImplementations, startGatedRun } from './approvals.ts';
import type { AgentsWorkerProcessConfig } from './agents-worker-main.ts';
import type { BenchEnv, BenchOutput } from './harness.ts';
import { benchModule, mapLimit, report, startBenchEnv } from './harness.ts';

export interface ParkedBenchOptions extends BenchOutput {
  /** Runs to park (default 1,000). */
  readonly runs?: number;
  /** The agents worker's `maxCachedWorkflows` (default: the SDK's, derived from the heap limit). */
  readonly maxCachedWorkflows?: number;
  /** The agents worker's V8 heap limit, `--max-old-space-size` (MB; default 640, `0` for Node's own default). */
  readonly heapMb?: number;
  /** Client calls in flight when starting runs and voting (default 32). */
  readonly concurrency?: number;
}

export interface ParkedBenchResult {
  readonly name: 'parked';
  readonly runs: number;
  /** The agents worker's resident set size with every run parked (MB). */
  readonly rss_mb: number;
  /** Runs seen parked (waiting on approval, approval pending). */
  readonly parked: number;
  /** Runs that completed with their approved tool executed. */
  readonly completed: number;
  readonly lost: number;
  /** From the first start to the last completion. */
  readonly seconds: number;
  /** The agents worker's peak RSS so far when `rss_mb` was read (VmHWM, MB). */
  readonly rss_peak_mb: number;
  readonly park_seconds: number;
  readonly resume_seconds: number;
}

const AGENT_QUERY = `AgentId = 'bench-agent' AND ExecutionStatus = 'Running'`;

/** VmRSS and VmHWM of `pid` in MB, from /proc; null where there is no /proc. */
function procMemory(pid: number): { rss: number; peak: number } | null {
  const file = `/proc/${pid}/status`;
  if (!existsSync(file)) return null;
  const status = readFileSync(file, 'utf8');
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Forks the agents worker process; resolves once it polls. Registers its shutdown with `env`. */
async function forkAgentsWorker(
  env: BenchEnv,
  config: AgentsWorkerProcessConfig,
  heapMb: number,
): Promise<ChildProcess> {
  const child = fork(benchModule('agents-worker-main'), [JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...process.execArgv, ...(heapMb > 0 ? [`--max-old-space-size=${heapMb}`] : [])],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  env.onStop(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    if (child.connected) child.send('stop');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code, signal) =>
      reject(new Error(`the agents worker process exited before it was ready (${signal ?? code})`)),
    );
  });
  return child;
}

/** Runs the benchmark on a dev server of its own; prints the result (text or one JSON line) and returns it. */
export async function benchParked(options: ParkedBenchOptions = {}): Promise<ParkedBenchResult> {
  const runs = options.runs ?? 1000;
  const concurrency = options.concurrency ?? 32;
  const heapMb = options.heapMb ?? 640;
  if (!Number.isInteger(runs) || runs < 1) throw new RangeError('runs must be a positive integer');
  const progress = options.progress ?? (() => {});
  const env = await startBenchEnv();
  try {
    progress('parked: bundling workflows, starting workers');
    const bundle = await bundleAgentWorkflows([benchModule('noop-spec')]);
    const bundleFile = join(env.dir, 'workflow-bundle.js');
    await writeFile(bundleFile, bundle.code);
    const child = await forkAgentsWorker(
      env,
      {
        address: env.address,
        namespace: env.namespace,
        taskQueue: BENCH_QUEUES.agents,
        bundleFile,
        auditFile: join(env.dir, 'agents-audit.jsonl'),
        ...(options.maxCachedWorkflows === undefined
          ? {}
          : { maxCachedWorkflows: options.maxCachedWorkflows }),
      },
      heapMb,
    );
    progress(`parked: idle agents worker RSS ${procMemory(child.pid ?? -1)?.rss.toFixed(0)} MB`);
    const executed = new Set<string>();
    let requests = 0;
    const on = { connection: env.connection, namespace: env.namespace };
    env.run(
      await createToolsWorker({
        ...on,
        taskQueue: BENCH_QUEUES.tools,
        tools: benchToolImplementations((runId) => void executed.add(runId)),
        trustedKeys: env.publicKeys,
        audit: env.audit,
        journalDir: join(env.dir, 'journal'),
      }),
    );
    env.run(
      await createApprovalsWorker({
        ...on,
        taskQueue: BENCH_QUEUES.approvals,
        sink: (notice) => {
          if (notice.kind === 'request') requests += 1;
        },
      }),
    );

    const started = performance.now();
    progress(`parked: starting ${runs} runs`);
    const ids = Array.from({ length: runs }, (_, i) => `bench-parked-${i}`);
    const handles = await mapLimit(ids, concurrency, (id, i) => startGatedRun(env, id, i));

    const deadline = Date.now() + Math.max(120_000, runs * 200);
    let parked = 0;
    for (;;) {
      const [waiting, pending] = await Promise.all([
        env.client.workflow.count(`${AGENT_QUERY} AND RunState = 'WAITING_APPROVAL'`),
        env.client.workflow.count(`${AGENT_QUERY} AND ApprovalState = 'PENDING'`),
      ]);
      parked = Math.min(waiting.count, pending.count);
      if ((parked >= runs && requests >= runs) || Date.now() > deadline) break;
      progress(`parked: ${parked}/${runs} parked, ${requests} notices`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const parkSeconds = (performance.now() - started) / 1000;
    // let the last workflow tasks (after the request notices) finish before reading memory
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const memory = procMemory(child.pid ?? -1) ?? { rss: NaN, peak: NaN };
    progress(
      `parked: ${parked} parked in ${parkSeconds.toFixed(1)} s; worker RSS ${memory.rss.toFixed(0)} MB`,
    );

    const resumeStarted = performance.now();
    let refused = 0;
    await mapLimit(handles, concurrency, async (handle) => {
      try {
        await castVote(env.client, {
          approvalWorkflowId: approvalWorkflowIdFor(handle.workflowId, 1),
          principal: 'approver',
          decision: 'approve',
          secretKey: env.secretKey,
        });
      } catch (error) {
        refused += 1;
        progress(`parked: vote on ${handle.workflowId} failed: ${(error as Error).message}`);
      }
    });
    progress(`parked: ${runs - refused} votes cast; waiting for the runs to finish`);
    const outcomes = await mapLimit(handles, concurrency, async (handle) => {
      try {
        const result = await handle.result();
        return (
          result.status === 'completed' &&
          result.decisions[0]?.outcome === 'executed' &&
          executed.has(handle.workflowId)
        );
      } catch {
        return false;
      }
    });
    const completed = outcomes.filter(Boolean).length;
    const finished = performance.now();

    const round1 = (value: number): number => Math.round(value * 10) / 10;
    const result: ParkedBenchResult = {
      name: 'parked',
      runs,
      rss_mb: round1(memory.rss),
      parked,
      completed,
      lost: runs - completed,
      seconds: round1((finished - started) / 1000),
      rss_peak_mb: round1(memory.peak),
      park_seconds: round1(parkSeconds),
      resume_seconds: round1((finished - resumeStarted) / 1000),
    };
    report(options, result, () =>
      [
        `parked: ${runs} AgentRuns parked on approval against one agents worker (child process, heap limit ${heapMb > 0 ? `${heapMb} MB` : 'Node default'}, maxCachedWorkflows ${options.maxCachedWorkflows ?? 'SDK default'})`,
        `  parked ${parked}/${runs} in ${result.park_seconds} s; worker RSS ${result.rss_mb} MB (peak ${result.rss_peak_mb} MB)   goal ≤ 1024 MB`,
        `  approved all: ${completed} completed, ${result.lost} lost, in ${result.resume_seconds} s (total ${result.seconds} s)`,
      ].join('\n'),
    );
    return result;
  } finally {
    await env.stop();
  }
}
