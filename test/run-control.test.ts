/**
 * Run control on the real dev server: posture, freeze, policy updates at the next action
 * boundary, revoke and cancel, budgets, continue-as-new, and replay of the recorded histories.
 * A pending approval is the pause point: a scripted model cannot be stopped between turns otherwise.
 */
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import type { temporal } from '@temporalio/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseGovernanceOrThrow, policyVersionOf } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import { AuditKind } from '../activities/audit/types.ts';
import type { ScriptedTurn } from '../activities/model/types.ts';
import {
  freezeToolsUpdate,
  setPostureUpdate,
  statusQuery,
  unfreezeToolsUpdate,
  updatePolicyUpdate,
} from '../workflows/agent-run.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import { stringify } from 'yaml';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from './agent-stack.ts';

const stack = useAgentStack({ name: 'run-control' });
let governance: LoadedGovernance;
const histories: { workflowId: string; history: temporal.api.history.v1.IHistory }[] = [];

beforeAll(async () => {
  governance = await loadGovernance(OPS_GOVERNANCE);
});

type Run = WorkflowHandle<typeof agentRunWorkflow>;

/** A call that needs an SRE's approval: the pause point of these tests. */
const needsApproval = (n: number) => ({
  tool: 'fs.write',
  args: { path: `/workspace/config/pause-${n}.yaml`, content: `n: ${n}\n` },
  rationale: 'pause here',
});

async function pendingApprovalId(run: Run): Promise<string> {
  const view = await stack.waitFor(run, (v) => v.pendingApproval !== null);
  return view.pendingApproval?.approvalWorkflowId ?? '';
}

async function finished(run: Run) {
  const result = await run.result();
  histories.push({ workflowId: run.workflowId, history: await run.fetchHistory() });
  return result;
}

const start = (turns: readonly ScriptedTurn[], extra: Parameters<typeof stack.start>[0]['options'] = {}) =>
  stack.start({ governance, requestedBy: 'carol', turns, options: extra });

describe('run control', () => {
  it('conservative posture raises the next decision to approval', async () => {
    const run = await start([
      { calls: [needsApproval(1)] },
      { calls: [{ tool: 'fs.list', args: { path: '/workspace/docs' } }] },
      { final: 'done' },
    ]);
    const first = await pendingApprovalId(run);
    await expect(
      run.executeUpdate(setPostureUpdate, { args: [{ posture: 'conservative', by: 'observer' }] }),
    ).resolves.toBe('conservative');
    await stack.vote(first, 'bob', 'approve');
    const second = await stack.waitFor(
      run,
      (v) => v.pendingApproval !== null && v.pendingApproval.step === 2,
    );
    await stack.vote(second.pendingApproval?.approvalWorkflowId ?? '', 'bob', 'deny', 'not now');
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.tool, d.tier, d.code, d.outcome])).toEqual([
      ['fs.write', 'approval', 'rule_matched', 'executed'],
      ['fs.list', 'approval', 'posture_conservative', 'approval_denied'],
    ]);
    const changes = stack.audit
      .events()
      .filter((e) => e.run === run.workflowId && e.kind === AuditKind.postureChanged);
    expect(changes.map((e) => [e.attrs['from'], e.attrs['to'], e.attrs['by']])).toEqual([
      ['normal', 'conservative', 'observer'],
    ]);
  });

  it('frozen tools are prohibited from the next boundary and come back when unfrozen', async () => {
    const read = { tool: 'fs.read', args: { path: '/workspace/docs/index.md' } };
    const run = await start([
      { calls: [needsApproval(2)] },
      { calls: [read, needsApproval(3)] },
      { calls: [read] },
      { final: 'done' },
    ]);
    const first = await pendingApprovalId(run);
    await run.executeUpdate(freezeToolsUpdate, {
      args: [{ tools: ['fs.r*'], by: 'observer', reason: 'burst' }],
    });
    expect((await run.query(statusQuery)).frozenTools).toEqual(['fs.r*']);
    await stack.vote(first, 'bob', 'approve');
    const second = await stack.waitFor(run, (v) => v.pendingApproval?.step === 3);
    await run.executeUpdate(unfreezeToolsUpdate, { args: [{ tools: ['fs.r*'], by: 'operator' }] });
    await stack.vote(second.pendingApproval?.approvalWorkflowId ?? '', 'bob', 'approve');
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.step, d.tool, d.tier, d.code, d.outcome])).toEqual([
      [1, 'fs.write', 'approval', 'rule_matched', 'executed'],
      [2, 'fs.read', 'prohibited', 'tool_frozen', 'denied'],
      [3, 'fs.write', 'approval', 'rule_matched', 'executed'],
      [4, 'fs.read', 'autonomous', 'rule_matched', 'executed'],
    ]);
    const kinds = stack.audit
      .events()
      .filter((e) => e.run === run.workflowId)
      .map((e) => e.kind);
    expect(kinds).toContain(AuditKind.toolsFrozen);
    expect(kinds).toContain(AuditKind.toolsUnfrozen);
  });

  it('updatePolicy applies at the next action boundary and is audited; a bad document is rejected', async () => {
    const run = await start([
      { calls: [needsApproval(5)] },
      { calls: [{ tool: 'fs.read', args: { path: '/workspace/docs/index.md' } }] },
      { final: 'done' },
    ]);
    const approvalId = await pendingApprovalId(run);
    const text = stringify(governance.document).replace(
      'rules:\n',
      'rules:\n    - id: docs-closed\n      tool: fs.read\n      resources: ["/workspace/docs/**"]\n      tier: prohibited\n',
    );
    const next = parseGovernanceOrThrow(text, 'next.yaml');
    expect(next.policyVersion).not.toBe(governance.policyVersion);

    const bad = await run
      .executeUpdate(updatePolicyUpdate, {
        args: [{ policy: { document: next.document, policyVersion: governance.policyVersion }, by: 'alice' }],
      })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(WorkflowUpdateFailedError);
    expect((bad as WorkflowUpdateFailedError).cause).toMatchObject({ type: 'RUN_POLICY_VERSION_MISMATCH' });

    await expect(
      run.executeUpdate(updatePolicyUpdate, {
        args: [
          {
            policy: { document: next.document, policyVersion: next.policyVersion },
            by: 'alice',
            reason: 'close docs',
          },
        ],
      }),
    ).resolves.toEqual({ pendingPolicyVersion: next.policyVersion });
    expect(await run.query(statusQuery)).toMatchObject({
      policyVersion: governance.policyVersion,
      pendingPolicyVersion: next.policyVersion,
    });
    await stack.vote(approvalId, 'bob', 'approve');
    const result = await finished(run);
    expect(result.policyVersion).toBe(next.policyVersion);
    expect(result.decisions.map((d) => [d.tool, d.tier, d.ruleId])).toEqual([
      ['fs.write', 'approval', 'write-config'], // decided and executed under the old version
      ['fs.read', 'prohibited', 'docs-closed'],
    ]);
    const updates = stack.audit
      .events()
      .filter((e) => e.run === run.workflowId && e.kind === AuditKind.policyUpdated);
    expect(updates.map((e) => e.attrs['phase'])).toEqual(['received', 'applied']);
    expect(policyVersionOf(next.document)).toBe(next.policyVersion);
  });

  it('revoking ends the run at the boundary and cancels the pending approval; revoked is final', async () => {
    const run = await start([
      { calls: [needsApproval(6), { tool: 'fs.list', args: { path: '/workspace' } }] },
      { final: 'x' },
    ]);
    const approvalId = await pendingApprovalId(run);
    const invalid = await run
      .executeUpdate(setPostureUpdate, { args: [{ posture: 'relaxed', by: 'x' }] })
      .catch((e: unknown) => e);
    expect((invalid as WorkflowUpdateFailedError).cause).toMatchObject({ type: 'RUN_INVALID_POSTURE' });
    await run.executeUpdate(setPostureUpdate, {
      args: [{ posture: 'revoked', by: 'observer', reason: 'probing' }],
    });
    const result = await finished(run);
    expect(result).toMatchObject({ status: 'revoked' });
    expect(result.decisions.map((d) => [d.tool, d.outcome])).toEqual([['fs.write', 'approval_denied']]);
    const approval = await stack.client.workflow.getHandle(approvalId).describe();
    expect(approval.status.name).toBe('CANCELLED');
    expect(approval.searchAttributes['ApprovalState']).toEqual(['CANCELLED']);
    expect(
      (await stack.client.workflow.getHandle(run.workflowId).describe()).searchAttributes['RunState'],
    ).toEqual(['REVOKED']);
  });

  it('cancel = revoke: the run ends cancelled, recorded as revoked', async () => {
    const run = await start([{ calls: [needsApproval(7)] }, { final: 'x' }]);
    await pendingApprovalId(run);
    await run.cancel();
    const error = await run.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const description = await run.describe();
    expect(description.status.name).toBe('CANCELLED');
    expect(description.searchAttributes['RunState']).toEqual(['REVOKED']);
    const last = stack.audit
      .events()
      .filter((e) => e.run === run.workflowId && e.kind === AuditKind.runFinished);
    expect(last.map((e) => e.attrs['status'])).toEqual(['revoked']);
  });

  it('budgets end the run cleanly: the step budget', async () => {
    const run = await stack.start({
      governance,
      requestedBy: 'carol',
      budgets: { maxSteps: 2 },
      turns: [
        {
          calls: [1, 2, 3].map((i) => ({
            tool: 'fs.write',
            args: { path: `/workspace/docs/budget-${i}.md`, content: 'x' },
          })),
        },
        { final: 'never reached' },
      ],
    });
    const result = await finished(run);
    expect(result).toMatchObject({ status: 'budget_exhausted', reason: 'step budget of 2 used' });
    expect(result.decisions).toHaveLength(2);
    expect(result.usage.steps).toBe(2);
  });

  it('continue-as-new carries messages, counters, limits and posture', async () => {
    const writes = [1, 2, 3, 4].map((i) => ({
      calls: [{ tool: 'fs.write', args: { path: `/workspace/docs/can-${i}.md`, content: `${i}` } }],
    }));
    const run = await start([...writes, { final: 'all four written' }], { continueAsNewAfterTurns: 2 });
    const result = await finished(run);
    expect(result).toMatchObject({ status: 'completed', answer: 'all four written' });
    expect(result.usage).toMatchObject({ steps: 4, modelTurns: 5 });
    expect(result.decisions.map((d) => d.step)).toEqual([1, 2, 3, 4]);
    const view = await run.query(statusQuery);
    expect(view.generation).toBe(2);
    const description = await run.describe();
    expect(description.runId).not.toBe(description.raw.workflowExecutionInfo?.firstRunId);
  });

  it('replays every recorded history without nondeterminism, and catches a changed one', async () => {
    expect(histories.length).toBeGreaterThanOrEqual(6);
    for (const { workflowId, history } of histories)
      await Worker.runReplayHistory({ workflowBundle: stack.bundle }, history, workflowId);
    const tampered = structuredClone(histories[0]!.history);
    const scheduled = tampered.events?.find(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'executeTool',
    );
    scheduled!.activityTaskScheduledEventAttributes!.activityType!.name = 'somethingElse';
    await expect(
      Worker.runReplayHistory({ workflowBundle: stack.bundle }, tampered, histories[0]!.workflowId),
    ).rejects.toThrow(/nondetermin/i);
  });
});
