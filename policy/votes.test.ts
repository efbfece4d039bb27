import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, test } from 'vitest';
import type { ApprovalRequirement } from './compile.ts';
import { actionDigest, keyIdOf, signVote, tallyVotes, verifyVote } from './votes.ts';
import type { VotePayload } from './votes.ts';

const serviceKey = ed25519.utils.randomSecretKey(new Uint8Array(32).fill(7));
const otherKey = ed25519.utils.randomSecretKey(new Uint8Array(32).fill(9));
const publicKeys = new Map([[keyIdOf(ed25519.getPublicKey(serviceKey)), ed25519.getPublicKey(serviceKey)]]);

const digest = actionDigest({
  tool: 'billing.refund',
  args: { amountCents: 12_000, currency: 'EUR' },
  resource: null,
  policyVersion: 'a'.repeat(64),
});
const expectAction = { workflowId: 'run-1/approval-3', step: 3, actionDigest: digest };
const now = 1_800_000_000_000;
const payload = (over: Partial<VotePayload> = {}): VotePayload => ({
  ...expectAction,
  decision: 'approve',
  approver: 'fatima',
  expiresAt: now + 60_000,
  ...over,
});
const verify = (vote: unknown, nowMs = now) => verifyVote(vote, { publicKeys, nowMs, expect: expectAction });

describe('actionDigest', () => {
  test('is independent of key order and changes with any argument', () => {
    const a = actionDigest({ tool: 't', args: { x: 1, y: 2 }, resource: '/r', policyVersion: 'v' });
    expect(actionDigest({ tool: 't', args: { y: 2, x: 1 }, resource: '/r', policyVersion: 'v' })).toBe(a);
    expect(actionDigest({ tool: 't', args: { x: 1, y: 3 }, resource: '/r', policyVersion: 'v' })).not.toBe(a);
    expect(actionDigest({ tool: 't', args: { x: 1, y: 2 }, resource: '/r', policyVersion: 'w' })).not.toBe(a);
  });
});

describe('verifyVote', () => {
  test('a vote signed by the service key verifies', () => {
    expect(verify(signVote(payload(), serviceKey))).toEqual({ ok: true, vote: payload() });
  });

  test.each([
    ['malformed input', () => 'approve', 'VOTE_MALFORMED'],
    ['an extra field', () => ({ ...signVote(payload(), serviceKey), admin: true }), 'VOTE_MALFORMED'],
    ['a key the worker does not trust', () => signVote(payload(), otherKey), 'VOTE_UNKNOWN_KEY'],
    [
      'a trusted key id with a signature by another key',
      () => ({ ...signVote(payload(), otherKey), keyId: signVote(payload(), serviceKey).keyId }),
      'VOTE_BAD_SIGNATURE',
    ],
    [
      'a payload edited after signing (deny turned into approve)',
      () => ({
        ...signVote(payload({ decision: 'deny' }), serviceKey),
        payload: payload({ decision: 'approve' }),
      }),
      'VOTE_BAD_SIGNATURE',
    ],
    [
      'a vote for other arguments (another digest)',
      () => signVote(payload({ actionDigest: 'b'.repeat(64) }), serviceKey),
      'VOTE_WRONG_ACTION',
    ],
    ['a vote for another step', () => signVote(payload({ step: 4 }), serviceKey), 'VOTE_WRONG_ACTION'],
    [
      'a vote for another run',
      () => signVote(payload({ workflowId: 'run-2/approval-3' }), serviceKey),
      'VOTE_WRONG_ACTION',
    ],
    ['an expired vote', () => signVote(payload({ expiresAt: now - 1 }), serviceKey), 'VOTE_EXPIRED'],
    [
      'a zeroed signature',
      () => ({ ...signVote(payload(), serviceKey), signature: '0'.repeat(128) }),
      'VOTE_BAD_SIGNATURE',
    ],
  ])('refuses %s', (_name, make, code) => {
    const result = verify(make());
    expect(result.ok).toBe(false);
    expect(result.ok ? undefined : result.code).toBe(code);
  });
});

describe('tallyVotes', () => {
  const approval: ApprovalRequirement = {
    approvers: { roles: ['finance-lead'] },
    eligible: ['fatima', 'felix', 'erik'],
    quorum: 2,
    timeoutMs: 60_000,
    channels: ['slack'],
    remindAfterMs: null,
    escalate: { afterMs: 30_000, to: { roles: ['security-lead'] }, eligible: ['sam'] },
    highRisk: false,
  };
  const vote = (approver: string, decision: 'approve' | 'deny' = 'approve') =>
    payload({ approver, decision });
  const tally = (votes: VotePayload[], escalated = false) =>
    tallyVotes(votes, { approval, requester: 'erik', agentId: 'support-finance-agent', escalated });

  test('quorum of distinct eligible principals approves', () => {
    expect(tally([vote('fatima')])).toMatchObject({ state: 'pending', approvedBy: ['fatima'] });
    expect(tally([vote('fatima'), vote('felix')])).toMatchObject({
      state: 'approved',
      approvedBy: ['fatima', 'felix'],
    });
  });

  test('the requester, the agent, ineligible principals and repeat votes do not count', () => {
    const result = tally([
      vote('erik'),
      vote('support-finance-agent'),
      vote('mallory'),
      vote('fatima'),
      vote('fatima'),
    ]);
    expect(result.state).toBe('pending');
    expect(result.refused).toEqual([
      { approver: 'erik', code: 'VOTE_BY_REQUESTER' },
      { approver: 'support-finance-agent', code: 'VOTE_BY_AGENT' },
      { approver: 'mallory', code: 'VOTE_INELIGIBLE' },
      { approver: 'fatima', code: 'VOTE_DUPLICATE_PRINCIPAL' },
    ]);
  });

  test('any single deny from an eligible principal ends the request', () => {
    expect(tally([vote('fatima'), vote('felix', 'deny')])).toMatchObject({
      state: 'denied',
      deniedBy: 'felix',
    });
  });

  test('a deny by someone who may not vote changes nothing', () => {
    expect(tally([vote('mallory', 'deny'), vote('fatima'), vote('felix')]).state).toBe('approved');
  });

  test('escalation approvers count only once escalated', () => {
    expect(tally([vote('sam'), vote('fatima')]).state).toBe('pending');
    expect(tally([vote('sam'), vote('fatima')], true).state).toBe('approved');
  });
});
