/**
 * The execution guard against a compromised agent worker: a rogue workflow schedules `executeTool`
 * on the real tools worker with forged inputs. Nothing forged runs; every refusal is audited.
 * Also: raw vote Updates and Signals sent with the Temporal client never approve.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ed25519 } from '@noble/curves/ed25519.js';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actionDigest, policyVersionOf, signVote } from '../policy/index.ts';
import type { LoadedGovernance, VotePayload } from '../policy/index.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { voteUpdate } from '../workflows/approval.ts';
import { fsTools } from '../activities/tools/fs.ts';
import { publicKeyMap } from '../worker/guard.ts';
import { createToolsWorker } from '../worker/workers.ts';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from './agent-stack.ts';
import type { rogueCaller } from './workflows/rogue-caller.ts';

const stack = useAgentStack({ name: 'guard' });
let governance: LoadedGovernance;
let rogueWorker: Worker;
let rogueRun: Promise<void>;
const rogueQueue = 'rogue-guard';

beforeAll(async () => {
  governance = await loadGovernance(OPS_GOVERNANCE);
  const bundle = await bundleWorkflowCode({
    workflowsPath: fileURLToPath(new URL('./workflows/rogue-caller.ts', import.meta.url)),
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error },
  });
  rogueWorker = await Worker.create({
    connection: stack.env.nativeConnection,
    namespace: stack.env.namespace ?? 'default',
    taskQueue: rogueQueue,
    workflowBundle: bundle,
  });
  rogueRun = rogueWorker.run();
});

afterAll(async () => {
  rogueWorker.shutdown();
  await rogueRun;
});

const configArgs = { path: '/workspace/config/app.yaml', content: 'replicas: 9\n', mode: 'overwrite' };

/** A well-formed approval-tier call for workflow `runId`, with votes for `voteArgs` (default: the same args). */
function approvalCall(runId: string, votes: (digest: string, approvalId: string) => unknown[]) {
  const approvalId = `${runId}/approval/1`;
  const digest = actionDigest({
    tool: 'fs.write',
    args: configArgs,
    resource: configArgs.path,
    policyVersion: governance.policyVersion,
  });
  return {
    runWorkflowId: runId,
    step: 1,
    agentId: 'ops-assistant',
    requester: 'carol',
    tool: 'fs.write',
    args: configArgs,
    rationale: 'scale',
    policy: { document: governance.document, policyVersion: governance.policyVersion },
    posture: 'normal',
    frozenTools: [],
    used: {},
    claimed: { tier: 'approval', ruleId: 'write-config' },
    approval: { approvalWorkflowId: approvalId, escalated: false, votes: votes(digest, approvalId) },
  };
}

function vote(approvalId: string, digest: string, over: Partial<VotePayload> = {}, key = stack.secretKey) {
  return signVote(
    {
      workflowId: approvalId,
      step: 1,
      actionDigest: digest,
      decision: 'approve',
      approver: 'dana',
      expiresAt: Date.now() + 60_000,
      ...over,
    },
    key,
  );
}

async function rogue(makeInput: (runId: string) => unknown, toolsQueue = stack.queues.tools) {
  const runId = `rogue-${randomUUID()}`;
  return stack.client.workflow.execute<typeof rogueCaller>('rogueCaller', {
    taskQueue: rogueQueue,
    workflowId: runId,
    args: [toolsQueue, makeInput(runId)],
  });
}

function refusalsFor(code: string) {
  return stack.audit
    .events()
    .filter((e) => e.kind === AuditKind.executionRefused && e.attrs['code'] === code);
}

const configFile = () => join(stack.workspace, 'config', 'app.yaml');

describe('execution guard', () => {
  it('runs a correctly approved call (the control case)', async () => {
    const outcome = await rogue((runId) => approvalCall(runId, (d, a) => [vote(a, d)]));
    expect(outcome).toMatchObject({ ok: true, result: { ok: true } });
    expect(readFileSync(configFile(), 'utf8')).toBe('replicas: 9\n');
  });

  const forged: [string, string, (runId: string) => unknown][] = [
    ['no votes', 'GUARD_APPROVAL_MISSING', (r) => ({ ...approvalCall(r, () => []), approval: null })],
    [
      'a vote signed by an untrusted key',
      'GUARD_APPROVAL_INVALID',
      (r) => approvalCall(r, (d, a) => [vote(a, d, {}, ed25519.utils.randomSecretKey())]),
    ],
    [
      'a vote for other arguments',
      'GUARD_APPROVAL_INVALID',
      (r) => ({
        ...approvalCall(r, (d, a) => [vote(a, d)]),
        args: { ...configArgs, content: 'replicas: 0\n' },
      }),
    ],
    [
      'an expired vote',
      'GUARD_APPROVAL_INVALID',
      (r) => approvalCall(r, (d, a) => [vote(a, d, { expiresAt: Date.now() - 1000 })]),
    ],
    [
      'the requester approving',
      'GUARD_APPROVAL_INVALID',
      (r) => approvalCall(r, (d, a) => [vote(a, d, { approver: 'carol' })]),
    ],
    [
      'an ineligible principal',
      'GUARD_APPROVAL_INVALID',
      (r) => approvalCall(r, (d, a) => [vote(a, d, { approver: 'alice' })]),
    ],
    [
      'one principal twice toward a quorum',
      'GUARD_APPROVAL_INVALID',
      (r) => approvalCall(r, (d, a) => [vote(a, d), vote(a, d)]),
    ],
    [
      'votes from another approval request',
      'GUARD_APPROVAL_INVALID',
      (r) => approvalCall(r, (d) => [vote(`${r}/approval/2`, d)]),
    ],
    [
      'a prohibited call claimed autonomous',
      'GUARD_PROHIBITED',
      (r) => ({
        ...approvalCall(r, () => []),
        tool: 'fs.read',
        args: { path: '/workspace/secrets/token' },
        claimed: { tier: 'autonomous', ruleId: 'read-workspace' },
        approval: null,
      }),
    ],
    [
      // the guard decides by the document that hashes to the version, never by the one it was handed
      'a loosened policy under the old version',
      'GUARD_APPROVAL_MISSING',
      (r) => {
        const document = structuredClone(governance.document) as unknown as {
          actions: { rules: { tier: string }[] };
        };
        for (const rule of document.actions.rules) if (rule.tier !== 'prohibited') rule.tier = 'autonomous';
        return {
          ...approvalCall(r, () => []),
          policy: { document, policyVersion: governance.policyVersion },
          approval: null,
        };
      },
    ],
    [
      'a document that does not hash to its version',
      'GUARD_INVALID_POLICY',
      (r) => ({
        ...approvalCall(r, (d, a) => [vote(a, d)]),
        policy: { document: governance.document, policyVersion: 'f'.repeat(64) },
      }),
    ],
    [
      'a call naming another run',
      'GUARD_WRONG_WORKFLOW',
      () => approvalCall('some-other-run', (d, a) => [vote(a, d)]),
    ],
    ['malformed input', 'GUARD_MALFORMED_INPUT', () => ({ tool: 'fs.write', args: configArgs })],
  ];

  it.each(forged)('refuses %s (%s), audited, nothing written', async (_name, code, makeInput) => {
    const before = refusalsFor(code).length;
    const contentBefore = readFileSync(configFile(), 'utf8');
    const outcome = await rogue(makeInput);
    expect(outcome).toMatchObject({ ok: false, type: code });
    expect(readFileSync(configFile(), 'utf8')).toBe(contentBefore);
    expect(refusalsFor(code).length).toBe(before + 1);
  });

  it('with trusted policy versions, a loosened policy with a recomputed version is refused', async () => {
    const strictQueue = `tools-guard-strict`;
    const strict = await createToolsWorker({
      connection: stack.env.nativeConnection,
      namespace: stack.env.namespace ?? 'default',
      taskQueue: strictQueue,
      tools: fsTools({
        roots: [],
        mounts: { '/workspace': stack.workspace },
        stateDir: join(stack.state, 'fs2'),
      }),
      trustedKeys: publicKeyMap(stack.trustedKeys),
      audit: stack.audit,
      journalDir: join(stack.state, 'journal2'),
      trustedPolicyVersions: new Set([governance.policyVersion]),
    });
    const document = structuredClone(governance.document) as unknown as {
      actions: { rules: { tier: string }[] };
    };
    for (const rule of document.actions.rules) rule.tier = 'autonomous';
    const loosened = { document, policyVersion: policyVersionOf(document as never) };
    const before = readFileSync(configFile(), 'utf8');
    await strict.runUntil(async () => {
      const outcome = await rogue(
        (r) => ({ ...approvalCall(r, () => []), policy: loosened, approval: null }),
        strictQueue,
      );
      expect(outcome).toMatchObject({ ok: false, type: 'GUARD_UNTRUSTED_POLICY' });
      expect(readFileSync(configFile(), 'utf8')).toBe(before);
      // the same worker runs calls under the trusted version
      const fine = await rogue((r) => approvalCall(r, (d, a) => [vote(a, d)]), strictQueue);
      expect(fine).toMatchObject({ ok: true });
    });
  });
});

describe('votes sent straight to Temporal', () => {
  it('raw Updates without a valid signature are rejected and audited; raw Signals are refused and recorded', async () => {
    const handle = await stack.start({
      governance,
      requestedBy: 'carol',
      turns: [
        { calls: [{ tool: 'fs.write', args: { path: '/workspace/config/b.yaml', content: 'x' } }] },
        { final: 'ok' },
      ],
    });
    const view = await stack.waitFor(handle, (v) => v.pendingApproval !== null);
    const approvalId = view.pendingApproval?.approvalWorkflowId ?? '';
    const approval = stack.client.workflow.getHandle(approvalId);
    const forgedVotes: unknown[] = [
      { decision: 'approve', approver: 'dana' },
      signVote(
        {
          workflowId: approvalId,
          step: 1,
          actionDigest: '0'.repeat(64),
          decision: 'approve',
          approver: 'dana',
          expiresAt: Date.now() + 60_000,
        },
        stack.secretKey,
      ),
      signVote(
        {
          workflowId: approvalId,
          step: 1,
          actionDigest: '0'.repeat(64),
          decision: 'approve',
          approver: 'dana',
          expiresAt: Date.now() + 60_000,
        },
        ed25519.utils.randomSecretKey(),
      ),
    ];
    const codes: unknown[] = [];
    for (const forgedVote of forgedVotes) {
      const error = await approval.executeUpdate(voteUpdate, { args: [forgedVote] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WorkflowUpdateFailedError);
      const cause = (error as WorkflowUpdateFailedError).cause as { type?: unknown; message?: string };
      codes.push(cause.type === 'Error' ? cause.message : cause.type);
    }
    expect(codes).toEqual(['VOTE_MALFORMED', 'VOTE_WRONG_ACTION', 'VOTE_UNKNOWN_KEY']);
    for (const forgedVote of forgedVotes) await approval.signal('submitVote', forgedVote);
    // a genuine vote still decides, through the operator channel
    await stack.vote(approvalId, 'dana', 'deny', 'not now');
    const result = await handle.result();
    expect(result.decisions[0]).toMatchObject({ tier: 'approval', outcome: 'approval_denied' });
    expect(existsSync(join(stack.workspace, 'config', 'b.yaml'))).toBe(false);
    const refused = stack.audit
      .events()
      .filter((e) => e.kind === AuditKind.voteRefused && e.attrs['approvalWorkflowId'] === approvalId);
    expect(refused.map((e) => [e.attrs['via'], e.attrs['code']])).toEqual([
      ['update', 'VOTE_MALFORMED'],
      ['update', 'VOTE_WRONG_ACTION'],
      ['update', 'VOTE_UNKNOWN_KEY'],
      ['signal', 'VOTE_MALFORMED'],
      ['signal', 'VOTE_WRONG_ACTION'],
      ['signal', 'VOTE_UNKNOWN_KEY'],
    ]);
  });
});
