/**
 * AgentRun end to end on the real dev server: every tier, approvals, denials, run control.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import type { ChatMessage } from '../activities/model/types.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { statusQuery } from '../workflows/agent-run.ts';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from './agent-stack.ts';

const stack = useAgentStack({ name: 'agent-run' });

/** The tool messages the model received, parsed. */
function toolReplies(messages: readonly ChatMessage[]): Record<string, unknown>[] {
  return messages
    .filter((m): m is Extract<ChatMessage, { role: 'tool' }> => m.role === 'tool')
    .map((m) => JSON.parse(m.content) as Record<string, unknown>);
}

describe('AgentRun', () => {
  it('runs each tier: autonomous, preapproved, approval (approved), prohibited, invalid arguments, unknown tool', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    const handle = await stack.start({
      governance,
      requestedBy: 'bob',
      turns: [
        {
          say: 'Looking around, then writing.',
          calls: [
            { tool: 'fs.list', args: { path: '/workspace/docs' }, rationale: 'see what docs exist' },
            {
              tool: 'fs.write',
              args: { path: '/workspace/docs/a.md', content: '# A\n' },
              rationale: 'write the doc',
            },
            { tool: 'fs.read', args: { path: '/workspace/secrets/token' }, rationale: 'need the token' },
            {
              tool: 'fs.write',
              args: { path: '/workspace/config/app.yaml', content: 'replicas: 3\n', mode: 'overwrite' },
              rationale: 'scale up',
            },
            { tool: 'shell.exec', args: { cmd: 'rm -rf /' }, rationale: 'clean up' },
            { tool: 'fs.write', args: { path: 'relative.md', content: 'x' }, rationale: 'oops' },
          ],
        },
        { final: 'All done.' },
      ],
    });
    const waiting = await stack.waitFor(handle, (v) => v.pendingApproval !== null);
    expect(waiting.state).toBe('waiting_approval');
    const approvalId = waiting.pendingApproval?.approvalWorkflowId ?? '';
    expect(approvalId).toBe(`${handle.workflowId}/approval/4`);
    // bob requested the run: he cannot approve it
    await expect(stack.vote(approvalId, 'bob', 'approve')).rejects.toMatchObject({
      code: 'VOTE_BY_REQUESTER',
    });
    const receipt = await stack.vote(approvalId, 'dana', 'approve');
    expect(receipt).toMatchObject({ accepted: true, state: 'APPROVED' });

    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.answer).toBe('All done.');
    expect(result.decisions.map((d) => [d.step, d.tool, d.tier, d.ruleId, d.code, d.outcome])).toEqual([
      [1, 'fs.list', 'autonomous', 'read-workspace', 'rule_matched', 'executed'],
      [2, 'fs.write', 'preapproved', 'write-docs', 'rule_matched', 'executed'],
      [3, 'fs.read', 'prohibited', 'secrets-never', 'rule_matched', 'denied'],
      [4, 'fs.write', 'approval', 'write-config', 'rule_matched', 'executed'],
      [5, 'shell.exec', 'prohibited', null, 'unknown_tool', 'denied'],
      [6, 'fs.write', 'prohibited', null, 'invalid_arguments', 'denied'],
    ]);
    expect(readFileSync(join(stack.workspace, 'docs', 'a.md'), 'utf8')).toBe('# A\n');
    expect(readFileSync(join(stack.workspace, 'config', 'app.yaml'), 'utf8')).toBe('replicas: 3\n');
    expect(existsSync(join(stack.workspace, 'relative.md'))).toBe(false);

    // what the model was told
    const history = await handle.fetchHistory();
    expect(history.events?.length).toBeGreaterThan(10);
    const audit = stack.audit.events().filter((e) => e.run === handle.workflowId);
    const kinds = audit.map((e) => e.kind);
    expect(kinds.filter((k) => k === AuditKind.decision)).toHaveLength(6);
    expect(kinds.filter((k) => k === AuditKind.executionResult)).toHaveLength(3);
    expect(kinds).toContain(AuditKind.approvalRequested);
    expect(kinds).toContain(AuditKind.voteAccepted);
    expect(kinds).toContain(AuditKind.runFinished);
    const refusedVote = audit.find((e) => e.kind === AuditKind.voteRefused);
    expect(refusedVote).toBeUndefined(); // the CLI refused bob before anything was signed
  });

  it('tells the model why a denial happened, without policy text', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      turns: [
        { calls: [{ tool: 'fs.read', args: { path: '/workspace/secrets/token' }, rationale: 'x' }] },
        { final: 'ok' },
      ],
    });
    await handle.result();
    const description = await handle.describe();
    expect(description.searchAttributes).toBeDefined();
    const history = await handle.fetchHistory();
    const modelInputs = JSON.stringify(history.events);
    expect(modelInputs).not.toContain('Secrets and system configuration are out of scope');
  });

  it('refuses a run whose requester is not a director', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    await expect(
      stack.start({ governance, requestedBy: 'mallory', turns: [{ final: 'x' }] }),
    ).rejects.toMatchObject({ code: 'RUN_REQUESTER_NOT_DIRECTOR' });
  });

  it('the workflow itself refuses a non-director requester started around the client check', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    const handle = await stack.client.workflow.start('agentRunWorkflow', {
      taskQueue: stack.queues.agents,
      workflowId: `forged-start-${Date.now()}`,
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
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).cause).toMatchObject({ type: 'RUN_REQUESTER_NOT_DIRECTOR' });
  });

  it('status query shows step, posture and usage', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      turns: [{ calls: [{ tool: 'fs.list', args: { path: '/workspace' } }] }, { final: 'done' }],
    });
    await handle.result();
    const view = await handle.query(statusQuery);
    expect(view).toMatchObject({ state: 'finished', step: 1, posture: 'normal', requestedBy: 'carol' });
    expect(view.usage.modelTurns).toBe(2);
    expect(toolReplies([]).length).toBe(0);
  });
});
