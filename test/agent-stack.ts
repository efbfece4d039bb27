/**
 * A whole agent stack for one test file on the shared dev server: `agents`, `tools` and
 * `approvals` workers on task queues of its own, a mounted `/workspace`, a vote-signing key, an
 * in-memory audit sink and helpers to start runs and cast votes.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker, WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll } from 'vitest';
import { keyIdOf, parseGovernanceOrThrow } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import { createMemoryAudit } from '../activities/audit/index.ts';
import type { MemoryAudit } from '../activities/audit/index.ts';
import { createModelActivities } from '../activities/model/index.ts';
import type { ScriptedTurn } from '../activities/model/types.ts';
import type { AnyToolImplementation } from '../activities/tools/define.ts';
import { builtinTools } from '../activities/tools/index.ts';
import type { ApprovalNotice } from '../workflows/approval-types.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import { statusQuery } from '../workflows/agent-run.ts';
import type { AgentRunInput, RunBudgets, RunView } from '../workflows/run-types.ts';
import { castVote } from '../approval-channels/operator.ts';
import { bundleAgentWorkflows } from '../worker/bundle.ts';
import { startAgentRun } from '../worker/runs.ts';
import { createAgentsWorker, createApprovalsWorker, createToolsWorker } from '../worker/workers.ts';
import { connectTestEnv } from './temporal.ts';

export const ROOT = join(import.meta.dirname, '..');
export const OPS_GOVERNANCE = join(ROOT, 'examples', 'ops-staging', 'governance.yaml');
export const FINANCE_GOVERNANCE = join(ROOT, 'examples', 'support-finance', 'governance.yaml');
export const BILLING_SPEC_MODULE = join(ROOT, 'examples', 'billing', 'spec.ts');

export async function loadGovernance(file: string): Promise<LoadedGovernance> {
  return parseGovernanceOrThrow(await readFile(file, 'utf8'), file);
}

export interface AgentStackOptions {
  /** Suffix of the task queues (unique per test file). */
  readonly name: string;
  readonly toolSpecModules?: readonly string[];
  /** Extra tool implementations for the tools worker. */
  readonly tools?: (dirs: { workspace: string; state: string }) => readonly AnyToolImplementation[];
  /** Start the tools worker (default true); tests that kill it run their own. */
  readonly toolsWorker?: boolean;
  readonly maxCachedWorkflows?: number;
  /** Also hands each approval notice to this (an approvals service), after recording it. */
  readonly onNotice?: (notice: ApprovalNotice) => void | Promise<void>;
}

export interface AgentStack {
  readonly env: TestWorkflowEnvironment;
  readonly client: Client;
  readonly bundle: WorkflowBundleWithSourceMap;
  readonly audit: MemoryAudit;
  readonly notices: ApprovalNotice[];
  readonly workspace: string;
  readonly state: string;
  readonly secretKey: Uint8Array;
  readonly trustedKeys: Readonly<Record<string, string>>;
  readonly queues: { readonly agents: string; readonly tools: string; readonly approvals: string };
  start(options: {
    governance: LoadedGovernance;
    turns: readonly ScriptedTurn[];
    task?: string;
    requestedBy: string;
    budgets?: Partial<RunBudgets>;
    options?: AgentRunInput['options'];
    workflowId?: string;
  }): Promise<WorkflowHandle<typeof agentRunWorkflow>>;
  /** Polls the run's status until `predicate` holds (default 10 s). */
  waitFor(
    handle: WorkflowHandle<typeof agentRunWorkflow>,
    predicate: (view: RunView) => boolean,
    timeoutMs?: number,
  ): Promise<RunView>;
  vote(
    approvalWorkflowId: string,
    principal: string,
    decision: 'approve' | 'deny',
    reason?: string,
  ): ReturnType<typeof castVote>;
}

/** Registers hooks that build the stack; read the fields inside tests. */
export function useAgentStack(options: AgentStackOptions): AgentStack {
  let stack:
    | (Omit<AgentStack, 'start' | 'waitFor' | 'vote'> & { workers: Worker[]; runs: Promise<void>[] })
    | undefined;
  const queues = {
    agents: `agents-${options.name}`,
    tools: `tools-${options.name}`,
    approvals: `approvals-${options.name}`,
  };

  beforeAll(async () => {
    const env = await connectTestEnv();
    const base = mkdtempSync(join(tmpdir(), `agent-stack-${options.name}-`));
    const workspace = join(base, 'workspace');
    const state = join(base, 'state');
    for (const dir of ['docs', 'runbooks', 'config', 'secrets'])
      mkdirSync(join(workspace, dir), { recursive: true });
    writeFileSync(join(workspace, 'docs', 'index.md'), '# Docs\n');
    writeFileSync(join(workspace, 'config', 'app.yaml'), 'replicas: 2\n');
    writeFileSync(join(workspace, 'secrets', 'token'), 's3cr3t\n');
    const secretKey = ed25519.utils.randomSecretKey();
    const publicKey = ed25519.getPublicKey(secretKey);
    const trustedKeys = { [keyIdOf(publicKey)]: bytesToHex(publicKey) };
    const audit = createMemoryAudit();
    const notices: ApprovalNotice[] = [];
    const bundle = await bundleAgentWorkflows(options.toolSpecModules ?? []);
    const connection = { connection: env.nativeConnection, namespace: env.namespace ?? 'default' };
    const workers: Worker[] = [
      await createAgentsWorker({
        ...connection,
        taskQueue: queues.agents,
        bundle,
        activities: createModelActivities(),
        audit,
        ...(options.maxCachedWorkflows === undefined
          ? {}
          : { maxCachedWorkflows: options.maxCachedWorkflows }),
      }),
      await createApprovalsWorker({
        ...connection,
        taskQueue: queues.approvals,
        sink: async (n) => {
          notices.push(n);
          await options.onNotice?.(n);
        },
      }),
    ];
    if (options.toolsWorker !== false)
      workers.push(
        await createToolsWorker({
          ...connection,
          taskQueue: queues.tools,
          tools: [
            ...builtinTools({
              fs: { roots: [], mounts: { '/workspace': workspace }, stateDir: join(state, 'fs') },
              http: { allowedHosts: [] },
            }),
            ...(options.tools?.({ workspace, state }) ?? []),
          ],
          trustedKeys: new Map([[keyIdOf(publicKey), publicKey]]),
          audit,
          journalDir: join(state, 'journal'),
        }),
      );
    const runs = workers.map((w) => w.run());
    stack = {
      env,
      client: env.client,
      bundle,
      audit,
      notices,
      workspace,
      state,
      secretKey,
      trustedKeys,
      queues,
      workers,
      runs,
    };
    afterAll(() => rmSync(base, { recursive: true, force: true }));
  });

  afterAll(async () => {
    if (!stack) return;
    for (const worker of stack.workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    await Promise.allSettled(stack.runs);
    await stack.env.teardown();
  });

  const ready = () => {
    if (!stack) throw new Error('useAgentStack: read the stack inside a test');
    return stack;
  };
  return {
    get env() {
      return ready().env;
    },
    get client() {
      return ready().client;
    },
    get bundle() {
      return ready().bundle;
    },
    get audit() {
      return ready().audit;
    },
    get notices() {
      return ready().notices;
    },
    get workspace() {
      return ready().workspace;
    },
    get state() {
      return ready().state;
    },
    get secretKey() {
      return ready().secretKey;
    },
    get trustedKeys() {
      return ready().trustedKeys;
    },
    queues,
    start: (run) =>
      startAgentRun(ready().client, {
        governance: run.governance,
        task: run.task ?? 'test task',
        requestedBy: run.requestedBy,
        model: { provider: 'scripted', turns: run.turns },
        budgets: run.budgets ?? {},
        trustedKeys: ready().trustedKeys,
        taskQueue: queues.agents,
        taskQueues: { tools: queues.tools, approvals: queues.approvals },
        ...(run.options ? { options: run.options } : {}),
        ...(run.workflowId ? { workflowId: run.workflowId } : {}),
      }),
    waitFor: async (handle, predicate, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const view = await handle.query(statusQuery);
        if (predicate(view)) return view;
        if (Date.now() > deadline) throw new Error(`timed out waiting; last status ${JSON.stringify(view)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    vote: (approvalWorkflowId, principal, decision, reason) =>
      castVote(ready().client, {
        approvalWorkflowId,
        principal,
        decision,
        secretKey: ready().secretKey,
        ...(reason === undefined ? {} : { reason }),
      }),
  };
}
