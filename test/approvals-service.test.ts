/**
 * The approvals service core on the real dev server: notices from real approval workflows become
 * stored requests with the trusted document's requirement, human decisions become signed votes,
 * every refusal is audited and nothing refused reaches the workflow.
 */
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadTrustedGovernance } from '../approval-channels/core/directory.ts';
import { ApprovalService } from '../approval-channels/core/service.ts';
import { ChannelName, RequestState } from '../approval-channels/core/types.ts';
import type { ApprovalStore, ChannelNotice, NotifyChannel } from '../approval-channels/core/types.ts';
import { openSqliteStore } from '../approval-channels/store/index.ts';
import { AgentRuntimeError, parseGovernanceOrThrow, toolCatalog } from '../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../tools/builtin-specs.ts';
import type { ApprovalNotice } from '../workflows/approval-types.ts';
import { approvalWorkflowIdFor } from '../workflows/run-types.ts';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from './agent-stack.ts';

/** A push channel that records what it was told, or fails like an unreachable Slack. */
function recordingChannel(name: ChannelName, failing = false): NotifyChannel & { seen: ChannelNotice[] } {
  const seen: ChannelNotice[] = [];
  return {
    name,
    seen,
    notify: async (notice) => {
      if (failing) throw new AgentRuntimeError('SLACK_UNAVAILABLE', 'slack.com unreachable after 3 attempts');
      seen.push(notice);
    },
  };
}

let service: ApprovalService;
let store: ApprovalStore;
const slack = recordingChannel(ChannelName.slack);
const email = recordingChannel(ChannelName.email);
const handled: ApprovalNotice[] = [];

const stack = useAgentStack({
  name: 'approvals-service',
  onNotice: async (notice) => {
    await service.handleNotice(notice);
    handled.push(notice);
  },
});

beforeAll(async () => {
  store = await openSqliteStore({ file: ':memory:' });
  service = new ApprovalService({
    store,
    governance: await loadTrustedGovernance([OPS_GOVERNANCE]),
    client: stack.client,
    secretKey: stack.secretKey,
    channels: [slack, email],
    tools: toolCatalog(BUILTIN_TOOL_SPECS),
    audit: stack.audit,
  });
});
afterAll(() => store.close());

const configWrite = (content: string) => ({
  tool: 'fs.write',
  args: { path: '/workspace/config/app.yaml', content, mode: 'overwrite' },
  rationale: 'bump replicas',
});

/** Starts a run whose first call needs an SRE, and waits until the service stored the request. */
async function parkedRun(content: string, requestedBy = 'carol') {
  const governance = await loadGovernance(OPS_GOVERNANCE);
  const handle = await stack.start({
    governance,
    requestedBy,
    turns: [{ calls: [configWrite(content)] }, { final: 'done' }],
  });
  const id = approvalWorkflowIdFor(handle.workflowId, 1);
  for (let i = 0; i < 200 && (await store.getRequest(id)) === null; i++)
    await new Promise((r) => setTimeout(r, 25));
  const request = await store.getRequest(id);
  if (!request) throw new Error(`no request ${id} stored`);
  return { handle, id, request };
}

describe('approvals service', () => {
  it('stores the request with the trusted requirement and delivers it per principal and channel', async () => {
    const { id, request } = await parkedRun('replicas: 3\n');
    expect(request).toMatchObject({
      revision: 1,
      tool: 'fs.write',
      resource: '/workspace/config/app.yaml',
      ruleId: 'write-config',
      requester: 'carol',
      eligible: ['bob', 'dana'],
      escalationEligible: ['alice'],
      quorum: 1,
      state: 'pending',
      channels: ['slack', 'email', 'web'],
    });
    const toSlack = slack.seen.filter((n) => n.request.id === id && n.kind === 'request');
    expect(toSlack.flatMap((n) => n.recipients.map((r) => r.id))).toEqual(['bob', 'dana']);
    // every recipient was reached on Slack, so email was not needed
    expect(email.seen.filter((n) => n.request.id === id && n.kind === 'request')).toEqual([]);
    expect((await service.listPending('bob')).map((r) => r.id)).toContain(id);
    expect((await service.listPending('carol')).map((r) => r.id)).not.toContain(id);
  });

  it('refuses the requester, the ineligible, stale revisions and the wrong channel; audits each; approves once', async () => {
    const { handle, id } = await parkedRun('replicas: 4\n');
    const base = { requestId: id, revision: 1, channel: ChannelName.web, decision: 'approve' } as const;
    const refusals = [
      await service.submit({ ...base, principal: 'carol' }),
      await service.submit({ ...base, principal: 'alice' }), // escalation approver, before escalation
      await service.submit({ ...base, principal: 'mallory' }),
      await service.submit({ ...base, principal: 'ops-assistant' }),
      await service.submit({ ...base, principal: 'bob', revision: 2 }),
      await service.submit({ ...base, principal: 'bob', channel: ChannelName.operator }),
    ];
    expect(refusals.map((r) => (r.ok ? 'ok' : r.code))).toEqual([
      'self_approval',
      'not_authorized',
      'not_authorized',
      'agent',
      'stale_revision',
      'channel_not_allowed',
    ]);
    const approved = await service.submit({ ...base, principal: 'bob', detail: { ip: '127.0.0.1' } });
    expect(approved).toMatchObject({
      ok: true,
      effect: 'approved',
      request: { state: 'approved', approvedBy: ['bob'] },
    });
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.decisions[0]).toMatchObject({ outcome: 'executed' });
    const after = await service.submit({ ...base, principal: 'dana' });
    expect(after).toMatchObject({ ok: false, code: 'decided' });

    const attempts = await store.listAttempts({ requestId: id });
    expect(attempts.map((a) => `${a.principal}:${a.outcome}`)).toEqual([
      'carol:self_approval',
      'alice:not_authorized',
      'mallory:not_authorized',
      'ops-assistant:agent',
      'bob:stale_revision',
      'bob:channel_not_allowed',
      'bob:ok',
      'dana:decided',
    ]);
    const audited = stack.audit
      .events()
      .filter((e) => e.kind === 'approval.attempt' && e.attrs.approvalWorkflowId === id);
    expect(audited).toHaveLength(8);
    // the card was re-rendered with the outcome
    expect(
      slack.seen.some((n) => n.request.id === id && n.kind === 'outcome' && n.request.state === 'approved'),
    ).toBe(true);
  });

  it('concurrent clicks by one approver count once; a deny ends the request with its reason', async () => {
    const { handle, id } = await parkedRun('replicas: 5\n');
    const click = () =>
      service.submit({
        requestId: id,
        revision: 1,
        channel: ChannelName.slack,
        principal: 'dana',
        decision: 'deny',
        reason: 'not during the freeze',
      });
    const results = await Promise.all([click(), click(), click()]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok).map((r) => (r.ok ? '' : r.code))).toEqual(['duplicate', 'duplicate']);
    const result = await handle.result();
    expect(result.decisions[0]).toMatchObject({ outcome: 'approval_denied' });
    expect(await store.getRequest(id)).toMatchObject({
      state: RequestState.denied,
      deniedBy: 'dana',
      reason: 'not during the freeze',
    });
    expect(await store.listVotes(id)).toHaveLength(1);
  });

  it('a request under a policy version the service does not trust is not delivered, and audited', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    // same agent, one more principal: a new policyVersion the service never loaded
    const raw = structuredClone(governance.document) as unknown as {
      authority: { principals: { id: string; roles: string[]; email?: string }[] };
    };
    raw.authority.principals.push({ id: 'eve', roles: ['sre'], email: 'eve@evil.test' });
    const forged = parseGovernanceOrThrow(stringify(raw), 'forged.yaml');
    const handle = await stack.start({
      governance: forged,
      requestedBy: 'carol',
      turns: [{ calls: [configWrite('replicas: 9\n')] }, { final: 'done' }],
    });
    const id = approvalWorkflowIdFor(handle.workflowId, 1);
    for (let i = 0; i < 200 && !handled.some((n) => n.approvalWorkflowId === id); i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(await store.getRequest(id)).toBeNull();
    expect(slack.seen.some((n) => n.request.id === id)).toBe(false);
    expect(
      stack.audit.events().find((e) => e.kind === 'approval.delivery' && e.attrs.approvalWorkflowId === id)
        ?.attrs,
    ).toMatchObject({ outcome: 'unknown_policy', policyVersion: forged.policyVersion });
    await handle.cancel();
  });

  it('when Slack is unreachable the request goes out by email instead, audited as a fallback', async () => {
    const failingSlack = recordingChannel(ChannelName.slack, true);
    const fallbackEmail = recordingChannel(ChannelName.email);
    const { id, request } = await parkedRun('replicas: 6\n');
    const alone = new ApprovalService({
      store,
      governance: await loadTrustedGovernance([OPS_GOVERNANCE]),
      client: stack.client,
      secretKey: stack.secretKey,
      channels: [failingSlack, fallbackEmail],
      audit: stack.audit,
    });
    // a reminder for the stored request through the failing Slack
    await alone.handleNotice({
      kind: 'reminder',
      approvalWorkflowId: id,
      recipients: request.eligible,
      request: handled.find((n) => n.approvalWorkflowId === id)!.request,
      expiresAtMs: request.expiresAtMs,
      outcome: null,
    });
    expect(fallbackEmail.seen.map((n) => [n.kind, n.recipients.map((r) => r.id)])).toEqual([
      ['reminder', ['bob', 'dana']],
    ]);
    const deliveries = (await store.listDeliveries(id)).filter((d) => d.kind === 'reminder');
    expect(deliveries.map((d) => `${d.channel}:${d.principal}:${d.status}`)).toEqual([
      'slack:bob:failed',
      'slack:dana:failed',
      'email:bob:sent',
      'email:dana:sent',
    ]);
    const fallback = stack.audit
      .events()
      .filter(
        (e) =>
          e.kind === 'approval.delivery' &&
          e.attrs.approvalWorkflowId === id &&
          e.attrs.fallbackFrom === 'slack',
      );
    expect(fallback).toHaveLength(2);
  });

  describe('approve with edits', () => {
    const edit = (id: string, editedArgs: unknown, principal = 'bob') =>
      service.submit({
        requestId: id,
        revision: 1,
        channel: ChannelName.web,
        principal,
        decision: 'approve',
        editedArgs,
      });

    it('edited arguments failing the schema are refused and nothing is submitted', async () => {
      const { id } = await parkedRun('replicas: 7\n');
      const result = await edit(id, { path: '/workspace/config/app.yaml', content: 42 });
      expect(result).toMatchObject({ ok: false, code: 'invalid_edit' });
      expect(result.ok ? '' : result.message).toMatch(/content: /);
      expect(await store.getRequest(id)).toMatchObject({ state: 'pending', revision: 1 });
      expect(await store.listVotes(id)).toEqual([]);
    });

    it('an edit that lands under another rule is re-decided and refused; the request stays pending', async () => {
      const { id } = await parkedRun('replicas: 8\n');
      // a docs path is preapproved: an edit must not lower the tier by moving the call there
      const result = await edit(id, { path: '/workspace/docs/app.yaml', content: 'x', mode: 'overwrite' });
      expect(result).toMatchObject({ ok: false, code: 'edit_raised_tier' });
      expect(result.ok ? '' : result.message).toContain('rule write-docs, not rule write-config');
      expect(await store.getRequest(id)).toMatchObject({ state: 'pending' });
    });

    it('an edit the policy prohibits ends the request as denied', async () => {
      const { handle, id } = await parkedRun('replicas: 9\n');
      const result = await edit(id, { path: '/workspace/secrets/app.yaml', content: 'x', mode: 'overwrite' });
      expect(result).toMatchObject({ ok: false, code: 'edit_prohibited', request: { state: 'denied' } });
      expect((await handle.result()).decisions[0]).toMatchObject({ outcome: 'approval_denied' });
    });

    it('a valid edit approves the edited action, which is what runs; the model is told; histories replay', async () => {
      const { handle, id, request } = await parkedRun('replicas: 10\n');
      const edited = { path: '/workspace/config/app.yaml', content: 'replicas: 3\n', mode: 'overwrite' };
      const result = await edit(id, edited);
      expect(result).toMatchObject({ ok: true, effect: 'approved', request: { revision: 2, args: edited } });
      if (!result.ok) return;
      expect(result.request.actionDigest).not.toBe(request.actionDigest);
      const run = await handle.result();
      expect(run.status).toBe('completed');
      expect(run.decisions[0]).toMatchObject({ outcome: 'executed' });
      const { readFile } = await import('node:fs/promises');
      expect(await readFile(`${stack.workspace}/config/app.yaml`, 'utf8')).toBe('replicas: 3\n');
      const history = await handle.fetchHistory();
      const toolReply = (history.events ?? [])
        .flatMap((e) => e.activityTaskScheduledEventAttributes?.input?.payloads ?? [])
        .map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8'))
        .find((text) => text.includes('A reviewer changed the arguments'));
      // the tool message (JSON inside the model input's JSON) names the editor and the edited args
      expect(toolReply).toContain(String.raw`\"edited\":{\"by\":\"bob\"`);
      // an old email link of revision 1 no longer works, and the audit shows the revision
      expect(
        stack.audit.events().some((e) => e.kind === 'approval.revised' && e.attrs.approvalWorkflowId === id),
      ).toBe(true);
      await Worker.runReplayHistory({ workflowBundle: stack.bundle }, history, handle.workflowId);
      const approvalHistory = await stack.client.workflow.getHandle(id).fetchHistory();
      await Worker.runReplayHistory({ workflowBundle: stack.bundle }, approvalHistory, id);
    });

    it('a raw reviseAction Update with a vote over other arguments is refused by the workflow', async () => {
      const { id, request } = await parkedRun('replicas: 11\n');
      const { castRevision } = await import('../approval-channels/operator.ts');
      const { ed25519 } = await import('@noble/curves/ed25519.js');
      // signed by a key the run does not trust
      await expect(
        castRevision(stack.client, {
          approvalWorkflowId: id,
          principal: 'bob',
          args: { path: '/workspace/config/app.yaml', content: 'replicas: 99\n', mode: 'overwrite' },
          resource: request.resource,
          secretKey: ed25519.utils.randomSecretKey(),
        }),
      ).rejects.toMatchObject({ code: 'VOTE_UNKNOWN_KEY' });
      expect(await stack.client.workflow.getHandle(id).query('status')).toMatchObject({ state: 'PENDING' });
    });
  });
});
