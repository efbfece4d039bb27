/**
 * Durability on a real Temporal dev server of each test's own (so it can be restarted without
 * disturbing the shared one):
 *
 * 1. the tools worker process is killed with SIGKILL while `billing.refund` waits for a slow
 *    billing API that has already stored the refund; the activity times out, is retried on a new
 *    worker process with the same idempotency key, and the API refunds exactly once;
 * 2. the dev server is stopped and restarted on the same SQLite file while a run waits for
 *    approval; a vote cast after the restart lets the run finish, executing the refund once.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { Client, Connection } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { Worker, WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { AuditKind, createMemoryAudit, readAuditFile } from '../activities/audit/index.ts';
import type { AuditClient, AuditEvent } from '../activities/audit/index.ts';
import { createModelActivities } from '../activities/model/index.ts';
import type { ScriptedTurn } from '../activities/model/types.ts';
import { castVote } from '../approval-channels/operator.ts';
import { startFakeBillingApi } from '../examples/billing/fake-api.ts';
import type { FakeBillingApi } from '../examples/billing/fake-api.ts';
import { billingTools } from '../examples/billing/tool.ts';
import { keyIdOf } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import type { ApprovalNotice } from '../workflows/approval-types.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import { statusQuery } from '../workflows/agent-run.ts';
import type { AgentRunInput, RunView } from '../workflows/run-types.ts';
import { fileJournal } from '../worker/journal.ts';
import { startAgentRun } from '../worker/runs.ts';
import { startDevServer } from '../worker/temporal/dev-server.ts';
import type { DevServerHandle } from '../worker/temporal/dev-server.ts';
import { SEARCH_ATTRIBUTES } from '../worker/temporal/search-attributes.ts';
import { createAgentsWorker, createApprovalsWorker, createToolsWorker } from '../worker/workers.ts';
import { bundleAgentWorkflows } from '../worker/bundle.ts';
import { BILLING_SPEC_MODULE, FINANCE_GOVERNANCE, loadGovernance } from './agent-stack.ts';

const TOOLS_WORKER_MAIN = join(import.meta.dirname, 'fixtures', 'tools-worker-main.ts');
const API_KEY = 'sk_test_durability';
const ORDER = 'ord_dura0001';
const ORDERS = { [ORDER]: { chargedCents: 50_000, currency: 'USD' } } as const;

let bundle: WorkflowBundleWithSourceMap;
let governance: LoadedGovernance;

beforeAll(async () => {
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // another suite in this process installed it
  }
  [bundle, governance] = await Promise.all([
    bundleAgentWorkflows([BILLING_SPEC_MODULE]),
    loadGovernance(FINANCE_GOVERNANCE),
  ]);
});

/** Cleanups run in reverse order of registration, each even if an earlier one failed. */
class Cleanups {
  readonly #steps: (() => Promise<unknown> | unknown)[] = [];
  add(step: () => Promise<unknown> | unknown): void {
    this.#steps.push(step);
  }
  async run(): Promise<void> {
    const errors: unknown[] = [];
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  }
}

function tempDir(cleanups: Cleanups, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `durability-${name}-`));
  cleanups.add(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function voteKeys() {
  const secretKey = ed25519.utils.randomSecretKey();
  const publicKey = ed25519.getPublicKey(secretKey);
  return { secretKey, publicKey, trustedKeys: { [keyIdOf(publicKey)]: bytesToHex(publicKey) } };
}

function queuesFor(name: string) {
  const suffix = `${name}-${Date.now().toString(36)}`;
  return { agents: `agents-${suffix}`, tools: `tools-${suffix}`, approvals: `approvals-${suffix}` };
}
type Queues = ReturnType<typeof queuesFor>;

async function devServer(cleanups: Cleanups, dbFilename: string, port?: number): Promise<DevServerHandle> {
  const server = await startDevServer({
    dbFilename,
    ...(port === undefined ? {} : { port }),
    searchAttributes: SEARCH_ATTRIBUTES,
    logger: { info: () => {}, warn: (m) => process.stderr.write(`[durability dev server] ${m}\n`) },
  });
  cleanups.add(() => server.stop());
  return server;
}

/** A client and a worker connection to `server`, and the workers started on it. */
interface Session {
  readonly client: Client;
  /** Stops the workers (waiting for them) and closes both connections. Idempotent. */
  close(): Promise<void>;
}

async function openSession(
  cleanups: Cleanups,
  server: DevServerHandle,
  makeWorkers: (connection: NativeConnection) => Promise<Worker>[],
): Promise<Session> {
  const native = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: server.namespace });
  const workers: Worker[] = [];
  const runs: Promise<void>[] = [];
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      await Promise.allSettled(runs);
      await connection.close();
      await native.close();
    })());
  cleanups.add(close);
  for (const created of await Promise.allSettled(makeWorkers(native))) {
    if (created.status === 'rejected') throw created.reason;
    workers.push(created.value);
    runs.push(created.value.run());
  }
  return { client, close };
}

function agentsAndApprovals(
  connection: NativeConnection,
  namespace: string,
  queues: Queues,
  audit: AuditClient,
  notices: ApprovalNotice[],
): Promise<Worker>[] {
  return [
    createAgentsWorker({
      connection,
      namespace,
      taskQueue: queues.agents,
      bundle,
      activities: createModelActivities(),
      audit,
    }),
    createApprovalsWorker({
      connection,
      namespace,
      taskQueue: queues.approvals,
      sink: (notice) => void notices.push(notice),
    }),
  ];
}

async function fakeBillingApi(cleanups: Cleanups, delayMs: number): Promise<FakeBillingApi> {
  const api = await startFakeBillingApi({ apiKey: API_KEY, orders: ORDERS, delayMs });
  cleanups.add(() => api.close());
  return api;
}

function startRun(
  client: Client,
  queues: Queues,
  trustedKeys: Readonly<Record<string, string>>,
  turns: readonly ScriptedTurn[],
  options?: AgentRunInput['options'],
): Promise<WorkflowHandle<typeof agentRunWorkflow>> {
  return startAgentRun(client, {
    governance,
    task: 'Refund the customer for the damaged item.',
    requestedBy: 'lena',
    model: { provider: 'scripted', turns },
    trustedKeys,
    taskQueue: queues.agents,
    taskQueues: { tools: queues.tools, approvals: queues.approvals },
    ...(options === undefined ? {} : { options }),
  });
}

function refundTurns(amountCents: number): ScriptedTurn[] {
  return [
    {
      calls: [
        {
          tool: 'billing.refund',
          args: { orderId: ORDER, amountCents, currency: 'USD', reason: 'Item arrived damaged' },
          rationale: 'the customer asked for a refund of the damaged item',
        },
      ],
    },
    { final: 'Refunded.' },
  ];
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function waitForStatus(
  handle: WorkflowHandle<typeof agentRunWorkflow>,
  predicate: (view: RunView) => boolean,
): Promise<RunView> {
  return until('the run status', async () => {
    const view = await handle.query(statusQuery);
    return predicate(view) ? view : undefined;
  });
}

/** A tools worker process (`fixtures/tools-worker-main.ts`). */
interface ToolsProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly auditFile: string;
}

async function spawnToolsWorker(
  cleanups: Cleanups,
  config: {
    address: string;
    namespace: string;
    queue: string;
    billingUrl: string;
    journalDir: string;
    auditFile: string;
    publicKeyHex: string;
  },
): Promise<ToolsProcess> {
  const child = spawn(process.execPath, [TOOLS_WORKER_MAIN], {
    env: {
      ...process.env,
      DURABILITY_TEMPORAL_ADDRESS: config.address,
      DURABILITY_NAMESPACE: config.namespace,
      DURABILITY_TASK_QUEUE: config.queue,
      DURABILITY_BILLING_URL: config.billingUrl,
      DURABILITY_BILLING_API_KEY: API_KEY,
      DURABILITY_JOURNAL_DIR: config.journalDir,
      DURABILITY_AUDIT_FILE: config.auditFile,
      DURABILITY_PUBLIC_KEY: config.publicKeyHex,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  cleanups.add(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tools worker not ready in 30 s:\n${stderr}`)), 30_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`tools worker exited (${String(code ?? signal)}) before it was ready:\n${stderr}`));
    });
  });
  return { child, exited, auditFile: config.auditFile };
}

const ofKind = (events: readonly AuditEvent[], kind: string) => events.filter((e) => e.kind === kind);

describe('durability', () => {
  it('a tools worker killed with SIGKILL mid-refund: the retry on a new worker refunds exactly once', async () => {
    const startedAt = performance.now();
    const cleanups = new Cleanups();
    try {
      const dir = tempDir(cleanups, 'kill');
      const { publicKey, trustedKeys } = voteKeys();
      const queues = queuesFor('kill');
      // the refund is stored at once, the answer comes 1.5 s later: the kill lands in between
      const api = await fakeBillingApi(cleanups, 1500);
      const server = await devServer(cleanups, join(dir, 'temporal.sqlite'));
      const audit = createMemoryAudit();
      const notices: ApprovalNotice[] = [];
      const session = await openSession(cleanups, server, (connection) =>
        agentsAndApprovals(connection, server.namespace, queues, audit, notices),
      );
      const toolsWorker = (n: number) =>
        spawnToolsWorker(cleanups, {
          address: server.address,
          namespace: server.namespace,
          queue: queues.tools,
          billingUrl: api.url,
          journalDir: join(dir, 'journal'),
          auditFile: join(dir, `tools-audit-${n}.jsonl`),
          publicKeyHex: bytesToHex(publicKey),
        });

      const first = await toolsWorker(1);
      const handle = await startRun(session.client, queues, trustedKeys, refundTurns(2500), {
        toolTimeoutMs: 4000,
      });
      await until('the first refund request', () => (api.refunds().length > 0 ? true : undefined));
      expect(api.requests()).toBe(1);
      first.child.kill('SIGKILL');
      expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
      const killedAt = performance.now();

      const second = await toolsWorker(2);
      const result = await handle.result();
      const recoveredMs = performance.now() - killedAt;

      expect(result.status).toBe('completed');
      expect(result.answer).toBe('Refunded.');
      expect(result.decisions.map((d) => [d.step, d.tool, d.tier, d.ruleId, d.outcome])).toEqual([
        [1, 'billing.refund', 'preapproved', 'refund-small', 'executed'],
      ]);
      // one refund; the retry was answered from the API's idempotency record
      const key = `${handle.workflowId}/1`;
      expect(api.refunds()).toHaveLength(1);
      expect(api.refunds()[0]).toMatchObject({
        orderId: ORDER,
        amountCents: 2500,
        currency: 'USD',
        idempotencyKey: key,
      });
      expect(api.requests()).toBe(2);
      const entry = await fileJournal(join(dir, 'journal')).get(key);
      expect(entry).toMatchObject({
        state: 'completed',
        result: { ok: true, output: { refundId: api.refunds()[0]?.refundId } },
      });

      // the killed worker started attempt 1 and never finished it; the new one ran attempt 2
      const killedAudit = await readAuditFile(first.auditFile);
      expect(ofKind(killedAudit, AuditKind.executionStarted).map((e) => e.attrs['attempt'])).toEqual([1]);
      expect(ofKind(killedAudit, AuditKind.executionResult)).toEqual([]);
      await session.close();
      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
      const retryAudit = await readAuditFile(second.auditFile);
      expect(ofKind(retryAudit, AuditKind.executionStarted).map((e) => e.attrs['attempt'])).toEqual([2]);
      expect(ofKind(retryAudit, AuditKind.executionResult).map((e) => e.attrs)).toEqual([
        expect.objectContaining({ tool: 'billing.refund', ok: true, replayed: false, attempt: 2 }),
      ]);
      expect(recoveredMs).toBeLessThan(30_000);
    } finally {
      await cleanups.run();
      process.stderr.write(
        `[durability] kill -9 test: ${Math.round(performance.now() - startedAt)} ms in all\n`,
      );
    }
  }, 120_000);

  it('a dev server restarted on the same SQLite file while a run waits for approval: a vote after the restart completes it', async () => {
    const startedAt = performance.now();
    const cleanups = new Cleanups();
    try {
      const dir = tempDir(cleanups, 'restart');
      const dbFilename = join(dir, 'temporal.sqlite');
      const { secretKey, publicKey, trustedKeys } = voteKeys();
      const queues = queuesFor('restart');
      const api = await fakeBillingApi(cleanups, 0);
      const audit = createMemoryAudit();
      const notices: ApprovalNotice[] = [];
      const workers = (server: DevServerHandle) => (connection: NativeConnection) => [
        ...agentsAndApprovals(connection, server.namespace, queues, audit, notices),
        createToolsWorker({
          connection,
          namespace: server.namespace,
          taskQueue: queues.tools,
          tools: billingTools({ baseUrl: api.url, apiKey: API_KEY }),
          trustedKeys: new Map([[keyIdOf(publicKey), publicKey]]),
          audit,
          journalDir: join(dir, 'journal'),
        }),
      ];

      const before = await devServer(cleanups, dbFilename);
      const port = Number(before.address.split(':').at(-1));
      const session = await openSession(cleanups, before, workers(before));
      const started = await startRun(session.client, queues, trustedKeys, refundTurns(20_000));
      const workflowId = started.workflowId;
      const approvalWorkflowId = `${workflowId}/approval/1`;
      const waiting = await waitForStatus(started, (v) => v.pendingApproval !== null);
      expect(waiting.state).toBe('waiting_approval');
      expect(waiting.pendingApproval).toEqual({ step: 1, tool: 'billing.refund', approvalWorkflowId });
      await until('the approvers notice', () => (notices.length > 0 ? true : undefined));

      await session.close();
      await before.stop();
      expect(api.requests()).toBe(0);

      const after = await devServer(cleanups, dbFilename, port);
      expect(after.address).toBe(before.address);
      const resumed = await openSession(cleanups, after, workers(after));
      const handle = resumed.client.workflow.getHandle<typeof agentRunWorkflow>(workflowId);
      const still = await waitForStatus(handle, (v) => v.pendingApproval !== null);
      expect(still.pendingApproval?.approvalWorkflowId).toBe(approvalWorkflowId);
      expect(api.requests()).toBe(0);

      const receipt = await castVote(resumed.client, {
        approvalWorkflowId,
        principal: 'fatima',
        decision: 'approve',
        secretKey,
      });
      expect(receipt).toMatchObject({ accepted: true, state: 'APPROVED' });

      const result = await handle.result();
      expect(result.status).toBe('completed');
      expect(result.answer).toBe('Refunded.');
      expect(result.decisions.map((d) => [d.step, d.tool, d.tier, d.ruleId, d.outcome])).toEqual([
        [1, 'billing.refund', 'approval', 'refund-medium', 'executed'],
      ]);
      expect(api.refunds()).toHaveLength(1);
      expect(api.refunds()[0]).toMatchObject({
        orderId: ORDER,
        amountCents: 20_000,
        idempotencyKey: `${workflowId}/1`,
      });
      expect(api.requests()).toBe(1);
      const executions = audit
        .events()
        .filter((e) => e.run === workflowId && e.kind === AuditKind.executionStarted);
      expect(executions.map((e) => e.attrs['approvers'])).toEqual([['fatima']]);
    } finally {
      await cleanups.run();
      process.stderr.write(
        `[durability] dev server restart test: ${Math.round(performance.now() - startedAt)} ms in all\n`,
      );
    }
  }, 120_000);
});
