/**
 * The approval child workflow: one per elevated call. Notifies the eligible approvers, waits on
 * a durable timer, reminds and escalates on schedule, and counts signed votes until quorum (approved),
 * any eligible deny (denied) or the timeout (timed_out = deny).
 *
 * Votes arrive by Signal, so every attempt, a forged one included, is in the workflow history;
 * the workflow then verifies each with the same pure checks the execution guard uses and records
 * refusals. Nothing sent to Temporal without a valid signature by a trusted key can approve.
 * @module
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import {
  condition,
  defineQuery,
  defineSignal,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { hexToBytes } from '@noble/hashes/utils.js';
import { tallyVotes, verifyVote } from '../policy/index.ts';
import type { SignedVote, VotePayload } from '../policy/index.ts';
import type { ApprovalActivities } from '../activities/approvals/index.ts';
import type {
  ApprovalNotice,
  ApprovalRequest,
  ApprovalResult,
  ApprovalStatus,
  VoteRecord,
} from './approval-types.ts';

/** Carries one signed vote (any payload is accepted into history and judged by the workflow). */
export const submitVoteSignal = defineSignal<[unknown]>('submitVote');

/** Live view for approval UIs and the operator CLI. */
export interface ApprovalView {
  readonly state: 'PENDING' | 'APPROVED' | 'DENIED' | 'TIMED_OUT';
  readonly approvedBy: readonly string[];
  readonly quorum: number;
  readonly escalated: boolean;
  readonly expiresAtMs: number;
  readonly attempts: readonly VoteRecord[];
}
export const approvalStatusQuery = defineQuery<ApprovalView>('status');

export const ApprovalStateKey = defineSearchAttributeKey('ApprovalState', SearchAttributeType.KEYWORD);

export async function approvalWorkflow(request: ApprovalRequest): Promise<ApprovalResult> {
  const { notifyApprovers } = proxyActivities<ApprovalActivities>({
    taskQueue: request.notifyTaskQueue,
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1s', maximumInterval: '30s' },
  });
  const approvalWorkflowId = workflowInfo().workflowId;
  const { approval } = request;
  const startedAtMs = Date.now();
  const expiresAtMs = startedAtMs + approval.timeoutMs;
  const remindAtMs = approval.remindAfterMs === null ? null : startedAtMs + approval.remindAfterMs;
  const escalateAtMs = approval.escalate === null ? null : startedAtMs + approval.escalate.afterMs;
  const publicKeys = new Map(
    Object.entries(request.trustedKeys).map(([keyId, hex]) => [keyId, hexToBytes(hex)]),
  );
  const expect = { workflowId: approvalWorkflowId, step: request.step, actionDigest: request.actionDigest };

  const inbox: unknown[] = [];
  const accepted: { readonly payload: VotePayload; readonly signed: SignedVote }[] = [];
  const attempts: VoteRecord[] = [];
  let state: ApprovalView['state'] = 'PENDING';
  const currentState = (): ApprovalView['state'] => state;
  let escalated = false;
  let reminded = false;
  let deniedBy: string | null = null;
  let denyReason: string | null = null;

  setHandler(submitVoteSignal, (vote) => {
    inbox.push(vote);
  });
  setHandler(approvalStatusQuery, () => ({
    state,
    approvedBy: accepted.filter((v) => v.payload.decision === 'approve').map((v) => v.payload.approver),
    quorum: approval.quorum,
    escalated,
    expiresAtMs,
    attempts: [...attempts],
  }));

  const notice = (
    kind: ApprovalNotice['kind'],
    recipients: readonly string[],
    outcome: ApprovalStatus | null,
  ): ApprovalNotice => ({
    kind,
    approvalWorkflowId,
    recipients: recipients.filter((id) => id !== request.requester && id !== request.agentId),
    request,
    expiresAtMs,
    outcome,
  });

  upsertSearchAttributes([{ key: ApprovalStateKey, value: 'PENDING' }]);
  setCurrentDetails(`**Pending**: ${request.action.tool}, ${approval.quorum} approval(s) needed`);
  await notifyApprovers(notice('request', approval.eligible, null));

  const judge = (raw: unknown): void => {
    const atMs = Date.now();
    const check = verifyVote(raw, { publicKeys, nowMs: atMs, expect });
    if (!check.ok) {
      attempts.push({
        accepted: false,
        approver: approverOf(raw),
        decision: null,
        code: check.code,
        message: check.message,
        atMs,
      });
      return;
    }
    const tally = tallyVotes([...accepted.map((v) => v.payload), check.vote], {
      approval,
      requester: request.requester,
      agentId: request.agentId,
      escalated,
    });
    const refusal = tally.refused.find((r) => r.approver === check.vote.approver);
    if (refusal) {
      attempts.push({
        accepted: false,
        approver: check.vote.approver,
        decision: check.vote.decision,
        code: refusal.code,
        message: null,
        atMs,
      });
      return;
    }
    accepted.push({ payload: check.vote, signed: raw as SignedVote });
    attempts.push({
      accepted: true,
      approver: check.vote.approver,
      decision: check.vote.decision,
      code: null,
      message: null,
      atMs,
    });
    if (tally.state === 'denied') {
      state = 'DENIED';
      deniedBy = tally.deniedBy;
      denyReason = check.vote.reason ?? null;
    } else if (tally.state === 'approved') {
      state = 'APPROVED';
    }
  };

  while (state === 'PENDING') {
    const now = Date.now();
    if (now >= expiresAtMs) {
      state = 'TIMED_OUT';
      break;
    }
    if (!reminded && remindAtMs !== null && now >= remindAtMs) {
      reminded = true;
      await notifyApprovers(notice('reminder', approval.eligible, null));
      continue;
    }
    if (!escalated && escalateAtMs !== null && approval.escalate !== null && now >= escalateAtMs) {
      escalated = true;
      await notifyApprovers(notice('escalation', approval.escalate.eligible, null));
      continue;
    }
    const wakeAt = Math.min(
      expiresAtMs,
      !reminded && remindAtMs !== null ? remindAtMs : Infinity,
      !escalated && escalateAtMs !== null ? escalateAtMs : Infinity,
    );
    await condition(() => inbox.length > 0, wakeAt - now);
    while (inbox.length > 0 && state === 'PENDING') judge(inbox.shift());
  }

  // judge() changes state inside a closure, which the compiler's narrowing does not see
  const finalState = currentState();
  const status: ApprovalStatus =
    finalState === 'APPROVED' ? 'approved' : finalState === 'DENIED' ? 'denied' : 'timed_out';
  upsertSearchAttributes([{ key: ApprovalStateKey, value: finalState }]);
  const approvedBy = accepted.filter((v) => v.payload.decision === 'approve').map((v) => v.payload.approver);
  setCurrentDetails(
    status === 'approved'
      ? `**Approved** by ${approvedBy.join(', ')}`
      : status === 'denied'
        ? `**Denied** by ${deniedBy ?? '?'}${denyReason ? `: ${denyReason}` : ''}`
        : `**Timed out**: denied at ${new Date(expiresAtMs).toISOString()}`,
  );
  await notifyApprovers(notice('outcome', approval.eligible, status));
  return {
    status,
    approvedBy,
    deniedBy,
    reason: status === 'timed_out' ? 'no decision before the timeout' : denyReason,
    votes: accepted.map((v) => v.signed),
    attempts,
  };
}

function approverOf(raw: unknown): string | null {
  const payload = (raw as { payload?: { approver?: unknown } } | null)?.payload;
  return typeof payload?.approver === 'string' ? payload.approver.slice(0, 128) : null;
}
