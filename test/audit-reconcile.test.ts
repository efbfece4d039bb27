/**
 * `audit reconcile` on the real dev server: a scripted run (autonomous reads, an approved write,
 * a prohibited read, continue-as-new after every turn) reconciles cleanly against its real
 * history; a dropped or forged audit record is reported; the CLI reads a real SQLite chain store.
 */
import { runCli } from './run-cli.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AuditEvent } from '../activities/audit/types.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { openSqliteAuditStore } from '../audit/index.ts';
import { reconcileRun } from '../audit/reconcile.ts';
import type { RunHistoryFacts } from '../audit/reconcile.ts';
import {
  extractRunHistoryFacts,
  fetchRunHistories,
  fetchRunHistoryFacts,
} from '../audit/reconcile-history.ts';
import type { History } from '../audit/reconcile-history.ts';
import { reconcileCommand } from '../cli/commands/audit-reconcile.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from './agent-stack.ts';

const stack = useAgentStack({ name: 'audit-reconcile' });
let governance: LoadedGovernance;
let base: string;
beforeAll(async () => {
  governance = await loadGovernance(OPS_GOVERNANCE);
  base = mkdtempSync(join(tmpdir(), 'audit-reconcile-'));
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const eventsOf = (runId: string): AuditEvent[] => stack.audit.events().filter((e) => e.run === runId);

/** A chain store in a fresh state directory, holding `events`. */
async function chainWith(name: string, events: readonly AuditEvent[]): Promise<string> {
  const stateDir = join(base, name);
  const store = await openSqliteAuditStore({ file: join(stateDir, 'audit', 'chain.db') });
  try {
    for (const { source, agent, run, step, kind, attrs } of events)
      await store.append('default', { source, agent, run, step, kind, attrs });
  } finally {
    await store.close();
  }
  return stateDir;
}

const cli = (...argv: string[]) => runCli(argv, reconcileCommand);
const server = () => ['--address', inject('temporalAddress'), '--namespace', inject('temporalNamespace')];

describe('audit reconcile on a real run', () => {
  let runId: string;
  let events: AuditEvent[];
  let history: RunHistoryFacts;

  beforeAll(async () => {
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      options: { continueAsNewAfterTurns: 1 },
      turns: [
        {
          calls: [
            { tool: 'fs.list', args: { path: '/workspace/docs' } },
            { tool: 'fs.read', args: { path: '/workspace/docs/index.md' } },
          ],
        },
        {
          calls: [
            { tool: 'fs.write', args: { path: '/workspace/config/new.yaml', content: 'replicas: 3\n' } },
            { tool: 'fs.read', args: { path: '/workspace/secrets/token' } },
          ],
        },
        { final: 'done' },
      ],
    });
    runId = handle.workflowId;
    const waiting = await stack.waitFor(handle, (v) => v.pendingApproval !== null);
    await stack.vote(waiting.pendingApproval?.approvalWorkflowId ?? '', 'bob', 'approve');
    const result = await handle.result();
    expect(result.decisions.map((d) => [d.step, d.tool, d.tier, d.outcome])).toEqual([
      [1, 'fs.list', 'autonomous', 'executed'],
      [2, 'fs.read', 'autonomous', 'executed'],
      [3, 'fs.write', 'approval', 'executed'],
      [4, 'fs.read', 'prohibited', 'denied'],
    ]);
    events = eventsOf(runId);
    history = await fetchRunHistoryFacts(stack.client, runId);
  });

  it('reads every generation and the approval child from the history', () => {
    expect(history.run).toEqual({
      generations: 3,
      firstGenerationSeen: true,
      stepsBefore: 0,
      close: 'completed',
      status: 'completed',
      failureCode: null,
      refusedAtStart: null,
    });
    expect(history.proposals.map((p) => [p.step, p.tool, p.generation, p.turn, p.state])).toEqual([
      [1, 'fs.list', 0, 0, 'decided'],
      [2, 'fs.read', 0, 0, 'decided'],
      [3, 'fs.write', 1, 1, 'decided'],
      [4, 'fs.read', 1, 1, 'decided'],
    ]);
    expect(history.executions.map((x) => [x.step, x.tool, x.generation, x.state, x.ok])).toEqual([
      [1, 'fs.list', 0, 'completed', true],
      [2, 'fs.read', 0, 'completed', true],
      [3, 'fs.write', 1, 'completed', true],
    ]);
    expect(history.approvals).toEqual([
      {
        step: 3,
        tool: 'fs.write',
        workflowId: `${runId}/approval/3`,
        generation: 1,
        state: 'completed',
        outcome: 'approved',
        revised: false,
      },
    ]);
  });

  it('reconciles the audit trail with the history: no differences', () => {
    const report = reconcileRun({ runId, audit: events, history });
    expect(report.differences).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.steps.map((s) => [s.step, s.tool, s.tier, s.decision, s.approval, s.execution])).toEqual([
      [1, 'fs.list', 'autonomous', 'ok', 'none', 'ok'],
      [2, 'fs.read', 'autonomous', 'ok', 'none', 'ok'],
      [3, 'fs.write', 'approval', 'ok', 'ok', 'ok'],
      [4, 'fs.read', 'prohibited', 'ok', 'none', 'none'],
    ]);
  });

  it('reports exactly the dropped execution.started', () => {
    const dropped = events.find((e) => e.kind === AuditKind.executionStarted && e.step === 3);
    expect(dropped).toBeDefined();
    const report = reconcileRun({ runId, audit: events.filter((e) => e !== dropped), history });
    expect(report.ok).toBe(false);
    expect(report.differences).toEqual([
      {
        kind: 'missing_in_audit',
        step: 3,
        what: 'execution.started',
        detail: "the history's executeTool fs.write completed; the audit has no execution.started",
        seq: null,
      },
    ]);
  });

  it('reports a forged decision', () => {
    const last = events.at(-1)!;
    const forged: AuditEvent = {
      ...last,
      seq: last.seq + 1,
      kind: AuditKind.decision,
      step: 5,
      attrs: { tool: 'fs.write', tier: 'preapproved' },
    };
    const report = reconcileRun({ runId, audit: [...events, forged], history });
    expect(report.differences).toEqual([
      {
        kind: 'missing_in_history',
        step: 5,
        what: 'decision',
        detail: `seq ${forged.seq} decides fs.write but the history proposes no call at step 5`,
        seq: forged.seq,
      },
    ]);
  });

  it('refuses a history whose payloads are not what the workflow writes', async () => {
    const histories = await fetchRunHistories(stack.client, runId);
    expect(extractRunHistoryFacts(histories)).toEqual(history);
    const tamper = (data: Uint8Array, encoding = 'json/plain'): History[] =>
      histories.generations.map((generation, index) => ({
        events: (generation.events ?? []).map((event) => {
          const attrs = event.activityTaskScheduledEventAttributes;
          if (index > 0 || attrs?.activityType?.name !== 'executeTool') return event;
          const payload = { metadata: { encoding: new TextEncoder().encode(encoding) }, data };
          return {
            ...event,
            activityTaskScheduledEventAttributes: { ...attrs, input: { payloads: [payload] } },
          };
        }),
      }));
    const bad = new TextEncoder().encode('{"step":"one","tool":7}');
    expect(() => extractRunHistoryFacts({ ...histories, generations: tamper(bad) })).toThrow(
      expect.objectContaining({ code: 'RECONCILE_HISTORY_UNREADABLE' }),
    );
    const message = (generations: History[]) => {
      try {
        extractRunHistoryFacts({ ...histories, generations });
        return 'no error';
      } catch (error) {
        return (error as Error).message.replace(runId, '<run>').replace(/event \d+/, 'event N');
      }
    };
    expect(message(tamper(bad))).toMatchInlineSnapshot(
      `"<run> generation 0 event N executeTool input: step: Invalid input: expected number, received string; tool: Invalid input: expected string, received number"`,
    );
    expect(message(tamper(new Uint8Array([1, 2, 3]), 'binary/encrypted'))).toMatchInlineSnapshot(
      `"<run> generation 0 event N executeTool input: cannot decode the payload (Unknown encoding: binary/encrypted); is a payload codec in use?"`,
    );
  });

  it('the CLI reconciles a real chain store: exit 0, one line per step', async () => {
    const stateDir = await chainWith('clean', events);
    const result = await cli(runId, '--state-dir', stateDir, ...server());
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout.replaceAll(runId, '<run>')).toMatchInlineSnapshot(`
      "run <run>: completed (status completed), 3 generations, 4 steps
      step 1  fs.list   decision ✓  execution ✓
      step 2  fs.read   decision ✓  execution ✓
      step 3  fs.write  decision ✓  approval ✓  execution ✓
      step 4  fs.read   decision ✓  execution —
      reconciled: no differences
      "
    `);

    const json = await cli(runId, '--state-dir', stateDir, '--json', ...server());
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ runId, ok: true, generations: 3, differences: [] });
  });

  it('the CLI exits 1 and names the difference when a record is missing', async () => {
    const stateDir = await chainWith(
      'dropped',
      events.filter((e) => !(e.kind === AuditKind.executionStarted && e.step === 1)),
    );
    const result = await cli(runId, '--state-dir', stateDir, ...server());
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('step 1  fs.list   decision ✓  execution ✗');
    expect(result.stdout).toContain(
      "1 difference:\n  missing_in_audit  step 1  execution.started: the history's executeTool fs.list completed; the audit has no execution.started\n",
    );
    const json = await cli(runId, '--state-dir', stateDir, '--json', ...server());
    expect(json.code).toBe(1);
    expect((JSON.parse(json.stdout) as { differences: unknown[] }).differences).toHaveLength(1);
  });

  it('the CLI refuses a malformed command line with exit 2', async () => {
    const stateDir = await chainWith('usage', events.slice(0, 1));
    const none = await cli('--state-dir', stateDir);
    expect(none.code).toBe(2);
    expect(none.stderr.split('\n')[0]).toBe('agent-runtime: expected a <runId>');
    expect((await cli(runId, 'other', '--state-dir', stateDir)).code).toBe(2);
    expect((await cli(runId, '--state-dir', stateDir, '--bogus')).code).toBe(2);
    expect((await cli(runId, '--address', '', '--state-dir', stateDir)).code).toBe(2);
    const missing = await cli(runId, '--state-dir', join(base, 'nowhere'));
    expect(missing.code).toBe(2);
    expect(missing.stderr.split('\n')[0]).toBe(
      `agent-runtime: no audit chain at ${join(base, 'nowhere', 'audit', 'chain.db')} (start \`agent-runtime dev\` first)`,
    );
  });

  it('the CLI reports a run Temporal does not know', async () => {
    const stateDir = await chainWith('unknown', events.slice(0, 1));
    await expect(cli('no-such-run', '--state-dir', stateDir, ...server())).rejects.toMatchObject({
      code: 'RECONCILE_RUN_NOT_FOUND',
    });
  });
});

describe('audit reconcile on runs that did not complete', () => {
  it('a run cancelled while its approval is pending reconciles', async () => {
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      turns: [
        {
          calls: [
            { tool: 'fs.list', args: { path: '/workspace/docs' } },
            { tool: 'fs.write', args: { path: '/workspace/config/x.yaml', content: 'x: 1\n' } },
            { tool: 'fs.list', args: { path: '/workspace/config' } },
          ],
        },
        { final: 'never' },
      ],
    });
    await stack.waitFor(handle, (v) => v.pendingApproval !== null);
    await handle.cancel();
    await expect(handle.result()).rejects.toBeInstanceOf(WorkflowFailedError);
    const history = await fetchRunHistoryFacts(stack.client, handle.workflowId);
    expect(history.run.close).toBe('cancelled');
    expect(history.proposals.map((p) => [p.step, p.state])).toEqual([
      [1, 'decided'],
      [2, 'decided'],
      [3, 'pending'],
    ]);
    // the parent closed first and its close policy terminated the child: the child's own history says so
    expect(history.approvals.map((a) => [a.step, a.state, a.outcome])).toEqual([[2, 'terminated', null]]);
    const report = reconcileRun({ runId: handle.workflowId, audit: eventsOf(handle.workflowId), history });
    expect(report.differences).toEqual([]);
  });

  it('a run refused at start reconciles with its run.refused', async () => {
    const workflowId = `reconcile-refused-${Date.now()}`;
    const handle = await stack.client.workflow.start('agentRunWorkflow', {
      taskQueue: stack.queues.agents,
      workflowId,
      args: [
        {
          agentId: 'ops-assistant',
          policy: { document: governance.document, policyVersion: governance.policyVersion },
          task: 'x',
          requestedBy: 'mallory',
          model: { provider: 'scripted', turns: [{ final: 'x' }] },
          budgets: { maxSteps: 5, maxTokens: 1000, maxWallTimeMs: 60_000 },
          trustedKeys: stack.trustedKeys,
        },
      ],
    });
    await expect(handle.result()).rejects.toBeInstanceOf(WorkflowFailedError);
    const history = await fetchRunHistoryFacts(stack.client, workflowId);
    expect(history.run).toMatchObject({ close: 'failed', refusedAtStart: 'RUN_REQUESTER_NOT_DIRECTOR' });
    const audit = eventsOf(workflowId);
    expect(reconcileRun({ runId: workflowId, audit, history }).differences).toEqual([]);
    // a forged run.started for it is reported
    const forged = { ...audit[0]!, seq: 1_000, kind: AuditKind.runStarted, attrs: {} };
    expect(
      reconcileRun({ runId: workflowId, audit: [...audit, forged], history }).differences.map((d) => [
        d.kind,
        d.what,
      ]),
    ).toEqual([['missing_in_history', 'run.started']]);
  });
});
