/**
 * The approval child workflow on the real dev server: approve, deny, quorum, timeout, and forged
 * votes sent straight to Temporal with the client (every attempt lands in history and is refused).
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { Worker } from '@temporalio/worker';
import { beforeAll, expect, test } from 'vitest';
import { createApprovalActivities } from '../activities/approvals/index.ts';
import {
  actionDigest,
  compilePolicy,
  decide,
  keyIdOf,
  parseGovernanceOrThrow,
  signVote,
  toolCatalog,
} from '../policy/index.ts';
import type { ApprovalRequirement, VotePayload } from '../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../tools/builtin-specs.ts';
import type { approvalWorkflow } from '../workflows/approval.ts';
import type { ApprovalNotice, ApprovalRequest, ApprovalResult } from '../workflows/approval-types.ts';
import { useTemporal } from './temporal.ts';

const workflowsPath = fileURLToPath(new URL('../workflows/approval.ts', import.meta.url));
const governanceFile = fileURLToPath(new URL('../examples/ops-staging/governance.yaml', import.meta.url));

const temporal = useTemporal(workflowsPath);
let writeConfig: ApprovalRequirement;
let policyVersion: string;
const serviceKey = ed25519.utils.randomSecretKey();
const rogueKey = ed25519.utils.randomSecretKey();
const trustedKeys = {
  [keyIdOf(ed25519.getPublicKey(serviceKey))]: bytesToHex(ed25519.getPublicKey(serviceKey)),
};

beforeAll(async () => {
  const loaded = parseGovernanceOrThrow(await readFile(governanceFile, 'utf8'), governanceFile);
  const decision = decide(
    compilePolicy(loaded.document, loaded.policyVersion),
    { tool: 'fs.write', args: { path: '/workspace/config/app.yaml', content: 'replicas: 3' } },
    { tools: toolCatalog(BUILTIN_TOOL_SPECS) },
  );
  expect(decision.tier).toBe('approval');
  writeConfig = decision.approval!;
  policyVersion = loaded.policyVersion;
});

const args = { path: '/workspace/config/app.yaml', content: 'replicas: 3', mode: 'create' };

async function startApproval(overrides: Partial<ApprovalRequirement> = {}) {
  const taskQueue = `approval-${randomUUID()}`;
  const workflowId = `run-${randomUUID()}/approval-7`;
  const digest = actionDigest({ tool: 'fs.write', args, resource: args.path, policyVersion });
  const request: ApprovalRequest = {
    runWorkflowId: workflowId.split('/')[0]!,
    step: 7,
    agentId: 'ops-assistant',
    requester: 'carol',
    action: { tool: 'fs.write', args, resource: args.path, rationale: 'Scale the API to three replicas.' },
    actionDigest: digest,
    ruleId: 'write-config',
    policyVersion,
    approval: { ...writeConfig, ...overrides },
    notifyTaskQueue: taskQueue,
    trustedKeys,
  };
  const notices: ApprovalNotice[] = [];
  const worker = await temporal.createWorker(
    taskQueue,
    createApprovalActivities((n) => {
      notices.push(n);
    }),
  );
  const handle = await temporal.env.client.workflow.start<typeof approvalWorkflow>('approvalWorkflow', {
    taskQueue,
    workflowId,
    args: [request],
  });
  const vote = (
    approver: string,
    decision: 'approve' | 'deny' = 'approve',
    over: Partial<VotePayload> = {},
    key = serviceKey,
  ) =>
    signVote(
      {
        workflowId,
        step: 7,
        actionDigest: digest,
        decision,
        approver,
        expiresAt: Date.now() + 600_000,
        ...over,
      },
      key,
    );
  const run = <T>(fn: () => Promise<T>): Promise<T> => worker.runUntil(fn());
  return { handle, vote, notices, run, workflowId, digest };
}

async function waitForNotice(notices: ApprovalNotice[], kind: ApprovalNotice['kind']): Promise<void> {
  for (let i = 0; i < 100 && !notices.some((n) => n.kind === kind); i++)
    await new Promise((r) => setTimeout(r, 50));
}

test('one eligible approval completes it; approvers were notified, the requester was not', async () => {
  const { handle, vote, notices, run } = await startApproval();
  const result: ApprovalResult = await run(async () => {
    await waitForNotice(notices, 'request');
    await handle.signal('submitVote', vote('bob'));
    return handle.result();
  });
  expect(result).toMatchObject({ status: 'approved', approvedBy: ['bob'], deniedBy: null });
  expect(result.votes).toHaveLength(1);
  expect(notices.map((n) => [n.kind, n.recipients])).toEqual([
    ['request', ['bob', 'dana']],
    ['outcome', ['bob', 'dana']],
  ]);
  const description = await handle.describe();
  expect(description.searchAttributes.ApprovalState).toEqual(['APPROVED']);
});

test('a deny ends it with the reason', async () => {
  const { handle, vote, notices, run } = await startApproval();
  const result = await run(async () => {
    await waitForNotice(notices, 'request');
    await handle.signal('submitVote', vote('dana', 'deny', { reason: 'Not during the release freeze.' }));
    return handle.result();
  });
  expect(result).toMatchObject({
    status: 'denied',
    deniedBy: 'dana',
    reason: 'Not during the release freeze.',
  });
});

test('no answer: timed_out, which is a deny', async () => {
  const { handle, run } = await startApproval({ timeoutMs: 1500, remindAfterMs: null, escalate: null });
  const result = await run(() => handle.result());
  expect(result).toMatchObject({ status: 'timed_out', approvedBy: [], votes: [] });
  expect((await handle.describe()).searchAttributes.ApprovalState).toEqual(['TIMED_OUT']);
});

test('waiting approvals are listed with ApprovalState = PENDING; the status query shows progress', async () => {
  const { handle, vote, notices, run, workflowId } = await startApproval({ quorum: 2 });
  await run(async () => {
    await waitForNotice(notices, 'request');
    await handle.signal('submitVote', vote('bob'));
    let listed: string[] = [];
    for (let i = 0; i < 50 && !listed.includes(workflowId); i++) {
      listed = [];
      for await (const w of temporal.env.client.workflow.list({
        query: `ApprovalState = 'PENDING' AND WorkflowId = '${workflowId}'`,
      })) {
        listed.push(w.workflowId);
      }
      if (!listed.includes(workflowId)) await new Promise((r) => setTimeout(r, 100));
    }
    expect(listed).toEqual([workflowId]);
    let view = await handle.query('status');
    for (let i = 0; i < 50 && (view as { approvedBy: string[] }).approvedBy.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      view = await handle.query('status');
    }
    expect(view).toMatchObject({ state: 'PENDING', approvedBy: ['bob'], quorum: 2 });
    await handle.signal('submitVote', vote('dana'));
    await expect(handle.result()).resolves.toMatchObject({ status: 'approved', approvedBy: ['bob', 'dana'] });
  });
});

test('forged, stale and ineligible votes sent straight to Temporal are refused and recorded; none approves', async () => {
  const { handle, vote, notices, run, digest } = await startApproval();
  const result = await run(async () => {
    await waitForNotice(notices, 'request');
    const genuine = vote('bob');
    const attempts: unknown[] = [
      { decision: 'approve', approver: 'bob' }, // a raw "approve" without any signature
      vote('bob', 'approve', {}, rogueKey), // signed by a key nobody trusts
      { ...vote('bob'), keyId: genuine.keyId, signature: vote('bob', 'approve', {}, rogueKey).signature },
      vote('bob', 'approve', { actionDigest: digest.replace(/^./, (c) => (c === '0' ? '1' : '0')) }), // other arguments
      vote('bob', 'approve', { expiresAt: Date.now() - 1 }), // expired
      vote('carol'), // the requester
      vote('mallory'), // not an approver
      vote('alice'), // escalation approver before escalation
      vote('ops-assistant'), // the agent itself
    ];
    for (const attempt of attempts) await handle.signal('submitVote', attempt);
    await handle.signal('submitVote', genuine);
    await handle.signal('submitVote', vote('bob')); // a second vote by the same principal
    return handle.result();
  });
  expect(result.status).toBe('approved');
  expect(result.approvedBy).toEqual(['bob']);
  expect(result.attempts.map((a) => [a.approver, a.accepted, a.code])).toEqual([
    [null, false, 'VOTE_MALFORMED'],
    ['bob', false, 'VOTE_UNKNOWN_KEY'],
    ['bob', false, 'VOTE_BAD_SIGNATURE'],
    ['bob', false, 'VOTE_WRONG_ACTION'],
    ['bob', false, 'VOTE_EXPIRED'],
    ['carol', false, 'VOTE_BY_REQUESTER'],
    ['mallory', false, 'VOTE_INELIGIBLE'],
    ['alice', false, 'VOTE_INELIGIBLE'],
    ['ops-assistant', false, 'VOTE_BY_AGENT'],
    ['bob', true, null],
  ]);
  // every attempt is in the history, forged ones included
  const history = await handle.fetchHistory();
  const signals = (history.events ?? []).filter((e) => e.workflowExecutionSignaledEventAttributes);
  expect(signals.length).toBeGreaterThanOrEqual(10);
  await Worker.runReplayHistory({ workflowBundle: temporal.bundle }, history, handle.workflowId);
});

test('reminds on schedule, then escalates; the escalation approver may then decide', async () => {
  const { handle, vote, notices, run } = await startApproval({
    timeoutMs: 20_000,
    remindAfterMs: 300,
    escalate: { afterMs: 600, to: { roles: ['platform-lead'] }, eligible: ['alice'] },
  });
  const result = await run(async () => {
    await waitForNotice(notices, 'escalation');
    await handle.signal('submitVote', vote('alice'));
    return handle.result();
  });
  expect(result).toMatchObject({ status: 'approved', approvedBy: ['alice'] });
  expect(notices.map((n) => [n.kind, n.recipients])).toEqual([
    ['request', ['bob', 'dana']],
    ['reminder', ['bob', 'dana']],
    ['escalation', ['alice']],
    ['outcome', ['bob', 'dana']],
  ]);
});
