/**
 * AgentRun end to end on the real dev server: every tier, approvals, denials, run control.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage } from '../activities/model/types.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { statusQuery } from '../workflows/agent-run.ts';
import { billingTools } from '../examples/billing/tool.ts';
import { DEMO_ORDERS, startFakeBillingApi } from '../examples/billing/fake-api.ts';
import type { FakeBillingApi } from '../examples/billing/fake-api.ts';
import { parseGovernanceOrThrow } from '../policy/index.ts';
import { stringify } from 'yaml';
import {
  BILLING_SPEC_MODULE,
  FINANCE_GOVERNANCE,
  loadGovernance,
  OPS_GOVERNANCE,
  useAgentStack,
} from './agent-stack.ts';

let billingApi: FakeBillingApi;
beforeAll(async () => {
  billingApi = await startFakeBillingApi({ apiKey: 'test-key', orders: DEMO_ORDERS });
});
afterAll(() => billingApi.close());

const stack = useAgentStack({
  name: 'agent-run',
  toolSpecModules: [BILLING_SPEC_MODULE],
  tools: () => billingTools({ baseUrl: billingApi.url, apiKey: 'test-key' }),
});

/** What the model was sent on its last turn (the `callModel` input in history). */
async function lastModelInput(handle: { fetchHistory(): Promise<temporal.api.history.v1.IHistory> }) {
  const history = await handle.fetchHistory();
  const scheduled = (history.events ?? []).filter(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callModel',
  );
  const payload = scheduled.at(-1)?.activityTaskScheduledEventAttributes?.input?.payloads?.[0]?.data;
  return JSON.parse(Buffer.from(payload ?? new Uint8Array()).toString('utf8')) as { messages: ChatMessage[] };
}

function activitySummaries(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? [])
    .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'executeTool')
    .map(
      (e) =>
        JSON.parse(Buffer.from(e.userMetadata?.summary?.data ?? new Uint8Array()).toString('utf8')) as string,
    );
}

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

    // the Temporal UI shows each tool activity with its decision
    const history = await handle.fetchHistory();
    expect(activitySummaries(history)).toEqual([
      'fs.list /workspace/docs — autonomous (read-workspace)',
      'fs.write /workspace/docs/a.md — preapproved (write-docs)',
      'fs.write /workspace/config/app.yaml — approval (write-config)',
    ]);
    // what the model was told
    const replies = toolReplies((await lastModelInput(handle)).messages);
    expect(replies.map((r) => (r['ok'] ? 'ok' : (r['denied'] as { code: string }).code))).toEqual([
      'ok',
      'ok',
      'prohibited',
      'ok',
      'unknown_tool',
      'invalid_arguments',
    ]);
    expect(JSON.stringify(replies[2])).not.toContain('secrets-never');
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

  it('LastDecision holds the last decision and is upserted only when it changes', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      turns: [
        {
          calls: [
            { tool: 'fs.list', args: { path: '/workspace' } },
            { tool: 'fs.list', args: { path: '/workspace/docs' } },
            { tool: 'fs.read', args: { path: '/workspace/secrets/token' } },
            { tool: 'fs.list', args: { path: '/workspace' } },
          ],
        },
        { final: 'done' },
      ],
    });
    await handle.result();
    const upserted = ((await handle.fetchHistory()).events ?? [])
      .map(
        (e) => e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.LastDecision,
      )
      .filter((field) => field?.data)
      .map((field) => JSON.parse(Buffer.from(field!.data!).toString('utf8')) as string);
    expect(upserted).toEqual([
      'autonomous:read-workspace:fs.list',
      'prohibited:secrets-never:fs.read',
      'autonomous:read-workspace:fs.list',
    ]);
    expect((await handle.describe()).searchAttributes.LastDecision).toEqual([
      'autonomous:read-workspace:fs.list',
    ]);
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
  });

  it('a custom tool (billing.refund): preapproved runs once with the idempotency key; approval waits; too large is prohibited', async () => {
    const governance = await loadGovernance(FINANCE_GOVERNANCE);
    const refund = (orderId: string, amountCents: number) => ({
      tool: 'billing.refund',
      args: { orderId, amountCents, currency: 'USD', reason: 'late delivery' },
      rationale: 'customer asked',
    });
    const handle = await stack.start({
      governance,
      requestedBy: 'lena',
      turns: [
        {
          calls: [
            refund('ord_demo1001', 2500),
            refund('ord_demo1002', 20_000),
            refund('ord_demo1004', 600_000),
          ],
        },
        { final: 'refunds handled' },
      ],
    });
    const waiting = await stack.waitFor(handle, (v) => v.pendingApproval !== null);
    const approvalId = waiting.pendingApproval?.approvalWorkflowId ?? '';
    await expect(stack.vote(approvalId, 'lena', 'approve')).rejects.toMatchObject({
      code: 'VOTE_BY_REQUESTER',
    });
    await expect(stack.vote(approvalId, 'erik', 'approve')).rejects.toMatchObject({
      code: 'VOTE_INELIGIBLE',
    });
    await stack.vote(waiting.pendingApproval?.approvalWorkflowId ?? '', 'fatima', 'approve');
    const result = await handle.result();
    expect(result.decisions.map((d) => [d.tier, d.ruleId, d.outcome])).toEqual([
      ['preapproved', 'refund-small', 'executed'],
      ['approval', 'refund-medium', 'executed'],
      ['prohibited', 'refund-too-large', 'denied'],
    ]);
    const mine = billingApi.refunds().filter((r) => r.idempotencyKey.startsWith(`${handle.workflowId}/`));
    expect(mine.map((r) => [r.orderId, r.amountCents, r.idempotencyKey])).toEqual([
      ['ord_demo1001', 2500, `${handle.workflowId}/1`],
      ['ord_demo1002', 20_000, `${handle.workflowId}/2`],
    ]);
  });

  it('an approval nobody answers times out: denied, not executed, and the model is told', async () => {
    const base = await loadGovernance(OPS_GOVERNANCE);
    const text = stringify(base.document)
      .replace('timeout: 30m', 'timeout: 3s')
      .replace('remindAfter: 10m', 'remindAfter: 1s')
      .replace('after: 20m', 'after: 2s');
    const governance = parseGovernanceOrThrow(text, 'short-timeout.yaml');
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      turns: [
        { calls: [{ tool: 'fs.write', args: { path: '/workspace/config/late.yaml', content: 'x' } }] },
        { final: 'gave up' },
      ],
    });
    const result = await handle.result();
    expect(result.decisions.map((d) => [d.tier, d.outcome])).toEqual([['approval', 'approval_timed_out']]);
    expect(existsSync(join(stack.workspace, 'config', 'late.yaml'))).toBe(false);
    const [reply] = toolReplies((await lastModelInput(handle)).messages);
    expect(reply).toMatchObject({ ok: false, denied: { code: 'approval_timed_out' } });
    const approval = await stack.client.workflow.getHandle(`${handle.workflowId}/approval/1`).describe();
    expect(approval.searchAttributes['ApprovalState']).toEqual(['TIMED_OUT']);
    const notices = stack.notices
      .filter((n) => n.request.runWorkflowId === handle.workflowId)
      .map((n) => n.kind);
    expect(notices).toEqual(['request', 'reminder', 'escalation', 'outcome']);
  });

  it("a denial reaches the model with the approver's reason", async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      turns: [
        { calls: [{ tool: 'fs.write', args: { path: '/workspace/config/deny.yaml', content: 'x' } }] },
        { final: 'ok' },
      ],
    });
    const waiting = await stack.waitFor(handle, (v) => v.pendingApproval !== null);
    await stack.vote(waiting.pendingApproval?.approvalWorkflowId ?? '', 'dana', 'deny', 'release freeze');
    await handle.result();
    const [reply] = toolReplies((await lastModelInput(handle)).messages);
    expect(reply).toMatchObject({ ok: false, denied: { code: 'approval_denied' } });
    expect((reply?.['denied'] as { hint: string }).hint).toContain('release freeze');
    expect(existsSync(join(stack.workspace, 'config', 'deny.yaml'))).toBe(false);
  });
});
