/**
 * The approval child workflow: one per elevated call. Notifies the eligible approvers, waits on
 * a durable timer, reminds and escalates on schedule, and counts signed votes until quorum (approved),
 * any eligible deny (denied) or the timeout (timed_out = deny).
 *
 * Votes arrive two ways, judged by the same pure checks the execution guard uses:
 * - Update `vote` (the approval service's path): a validator refuses a vote that fails any check
 *   (signature by a trusted key, same workflow/step/digest, not expired, eligible, not the
 *   requester or the agent, no second vote per principal, not yet decided), so the caller gets a
 *   synchronous, coded answer; refused attempts leave no history event, so the validator writes
 *   them to the audit log through the worker's sink.
 * - Signal `submitVote`: every attempt, forged ones included, is a history event; the workflow
 *   judges it and records the refusal in its result and the audit log.
 * Nothing sent to Temporal without a valid signature by a trusted key can approve.
 * @module
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import {
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  defineUpdate,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { hexToBytes } from '@noble/hashes/utils.js';
import { actionDigest, tallyVotes, verifyVote, VoteRefusal } from '../policy/index.ts';
import type { SignedVote, VotePayload } from '../policy/index.ts';
import type { ApprovalActivities } from '../activities/approvals/index.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { emitUncounted, workflowAuditor } from './audit.ts';
import type {
  ApprovalNotice,
  ApprovalRequest,
  ApprovalResult,
  ApprovalStatus,
  VoteRecord,
} from './approval-types.ts';

/** Carries one signed vote (any payload is accepted into history and judged by the workflow). */
export const submitVoteSignal = defineSignal<[unknown]>('submitVote');

/** What the `vote` Update answers for an accepted vote. */
export interface VoteReceipt {
  readonly accepted: true;
  readonly state: ApprovalView['state'];
  readonly approvedBy: readonly string[];
  readonly quorum: number;
}
/** Submits one signed vote and answers synchronously; a refused vote is rejected with its code as the failure type. */
export const voteUpdate = defineUpdate<VoteReceipt, [unknown]>('vote');

/**
 * Approve with edits: the approver's edited arguments (re-validated and re-decided by the approval
 * service) and that approver's signed approve vote over the digest of the EDITED action. Approvals
 * of the earlier arguments stop counting; the run executes the edited arguments.
 */
export interface ActionRevision {
  readonly args: unknown;
  readonly resource: string | null;
  readonly vote: unknown;
}
export const reviseActionUpdate = defineUpdate<VoteReceipt, [ActionRevision]>('reviseAction');

/** Live view for approval UIs and the operator CLI. */
export interface ApprovalView {
  readonly state: 'PENDING' | 'APPROVED' | 'DENIED' | 'TIMED_OUT' | 'CANCELLED';
  readonly approvedBy: readonly string[];
  readonly quorum: number;
  readonly escalated: boolean;
  readonly expiresAtMs: number;
  readonly attempts: readonly VoteRecord[];
  /** The request as the workflow holds it (what a vote must cover). */
  readonly request: ApprovalRequest;
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
  let expect = { workflowId: approvalWorkflowId, step: request.step, actionDigest: request.actionDigest };
  /** The request as it stands (an approve-with-edits revision replaces its action and digest). */
  let current: ApprovalRequest = request;
  let revised: ApprovalResult['revised'] = null;

  const emit = workflowAuditor(request.agentId, request.runWorkflowId);
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
    request: current,
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

  type Verdict =
    | { readonly ok: true; readonly vote: VotePayload; readonly state: ApprovalView['state'] }
    | {
        readonly ok: false;
        readonly code: VoteRefusal;
        readonly message: string;
        readonly approver: string | null;
      };
  /** Judges one raw vote against the current state without changing anything. */
  const check = (raw: unknown, atMs: number, edit?: { readonly actionDigest: string }): Verdict => {
    const verified = verifyVote(raw, {
      publicKeys,
      nowMs: atMs,
      expect: edit ? { ...expect, actionDigest: edit.actionDigest } : expect,
    });
    if (!verified.ok) return { ...verified, approver: approverOf(raw) };
    if (state !== 'PENDING')
      return {
        ok: false,
        code: VoteRefusal.decided,
        message: `the request is already ${state.toLowerCase()}`,
        approver: verified.vote.approver,
      };
    // an edit restarts the count: approvals of the earlier arguments do not carry over
    const prior = edit ? [] : accepted.map((v) => v.payload);
    const tally = tallyVotes([...prior, verified.vote], {
      approval,
      requester: request.requester,
      agentId: request.agentId,
      escalated,
    });
    const refusal = tally.refused.find((r) => r.approver === verified.vote.approver);
    if (refusal)
      return {
        ok: false,
        code: refusal.code,
        message: refusalMessage(refusal.code),
        approver: verified.vote.approver,
      };
    return {
      ok: true,
      vote: verified.vote,
      state: tally.state === 'denied' ? 'DENIED' : tally.state === 'approved' ? 'APPROVED' : 'PENDING',
    };
  };
  const refusedRecord = (verdict: Verdict & { ok: false }, raw: unknown, atMs: number): VoteRecord => ({
    accepted: false,
    approver: verdict.approver,
    decision: decisionOf(raw),
    code: verdict.code,
    message: verdict.message,
    atMs,
  });
  /** Judges and applies one vote; returns the verdict. */
  const judge = (raw: unknown, via: 'signal' | 'update'): Verdict => {
    const atMs = Date.now();
    const verdict = check(raw, atMs);
    if (!verdict.ok) {
      attempts.push(refusedRecord(verdict, raw, atMs));
      emit(AuditKind.voteRefused, request.step, {
        approvalWorkflowId,
        via,
        approver: verdict.approver,
        code: verdict.code,
      });
      return verdict;
    }
    accepted.push({ payload: verdict.vote, signed: raw as SignedVote });
    attempts.push({
      accepted: true,
      approver: verdict.vote.approver,
      decision: verdict.vote.decision,
      code: null,
      message: null,
      atMs,
    });
    emit(AuditKind.voteAccepted, request.step, {
      approvalWorkflowId,
      via,
      approver: verdict.vote.approver,
      decision: verdict.vote.decision,
      reason: verdict.vote.reason ?? null,
    });
    if (verdict.state === 'DENIED') {
      state = 'DENIED';
      deniedBy = verdict.vote.approver;
      denyReason = verdict.vote.reason ?? null;
    } else if (verdict.state === 'APPROVED') {
      state = 'APPROVED';
    }
    return verdict;
  };
  setHandler(
    voteUpdate,
    (raw) => {
      const verdict = judge(raw, 'update');
      if (!verdict.ok)
        throw ApplicationFailure.create({ type: verdict.code, message: verdict.message, nonRetryable: true });
      return { accepted: true, state, approvedBy: approvedByNow(), quorum: approval.quorum };
    },
    {
      description: 'Submit one signed vote (approve or deny) for this request.',
      validator: (raw) => {
        const atMs = Date.now();
        const verdict = check(raw, atMs);
        if (verdict.ok) return;
        emitUncounted(request.agentId, request.runWorkflowId, AuditKind.voteRefused, request.step, {
          approvalWorkflowId,
          via: 'update',
          approver: verdict.approver,
          code: verdict.code,
        });
        throw ApplicationFailure.create({ type: verdict.code, message: verdict.message, nonRetryable: true });
      },
    },
  );
  /** The digest an edited action would have, or null when its arguments cannot be digested. */
  const revisionDigest = (revision: ActionRevision): string | null => {
    try {
      return actionDigest({
        tool: request.action.tool,
        args: revision.args,
        resource: revision.resource,
        policyVersion: request.policyVersion,
      });
    } catch {
      return null;
    }
  };
  /** Checks an edit: its vote must be a valid approve over the edited digest by an eligible principal. */
  const checkRevision = (revision: ActionRevision, atMs: number): Verdict => {
    const digest = revisionDigest(revision);
    const approver = approverOf(revision.vote);
    if (digest === null)
      return {
        ok: false,
        code: VoteRefusal.malformed,
        message: 'the edited arguments are not canonical JSON',
        approver,
      };
    if (decisionOf(revision.vote) !== 'approve')
      return {
        ok: false,
        code: VoteRefusal.malformed,
        message: 'an edit must come with an approve vote',
        approver,
      };
    return check(revision.vote, atMs, { actionDigest: digest });
  };
  setHandler(
    reviseActionUpdate,
    (revision) => {
      const atMs = Date.now();
      const verdict = checkRevision(revision, atMs);
      if (!verdict.ok) {
        attempts.push(refusedRecord(verdict, revision.vote, atMs));
        throw ApplicationFailure.create({ type: verdict.code, message: verdict.message, nonRetryable: true });
      }
      const digest = revisionDigest(revision) as string;
      expect = { ...expect, actionDigest: digest };
      current = {
        ...current,
        action: { ...current.action, args: revision.args, resource: revision.resource },
        actionDigest: digest,
      };
      // approvals of the earlier arguments no longer count
      accepted.splice(0, accepted.length);
      revised = {
        args: revision.args,
        resource: revision.resource,
        actionDigest: digest,
        by: verdict.vote.approver,
        from: { args: request.action.args, resource: request.action.resource },
      };
      emit(AuditKind.approvalRevised, request.step, {
        approvalWorkflowId,
        by: verdict.vote.approver,
        actionDigest: digest,
        previousDigest: request.actionDigest,
      });
      judge(revision.vote, 'update');
      return { accepted: true, state, approvedBy: approvedByNow(), quorum: approval.quorum };
    },
    {
      description: 'Approve with edits: the edited arguments and a signed approve vote over their digest.',
      validator: (revision) => {
        const verdict = checkRevision(revision, Date.now());
        if (verdict.ok) return;
        emitUncounted(request.agentId, request.runWorkflowId, AuditKind.voteRefused, request.step, {
          approvalWorkflowId,
          via: 'update',
          approver: verdict.approver,
          code: verdict.code,
          edit: true,
        });
        throw ApplicationFailure.create({ type: verdict.code, message: verdict.message, nonRetryable: true });
      },
    },
  );
  const approvedByNow = (): string[] =>
    accepted.filter((v) => v.payload.decision === 'approve').map((v) => v.payload.approver);

  upsertSearchAttributes([{ key: ApprovalStateKey, value: 'PENDING' }]);
  setCurrentDetails(`**Pending**: ${request.action.tool}, ${approval.quorum} approval(s) needed`);
  await notifyApprovers(notice('request', approval.eligible, null));

  try {
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
      await condition(() => inbox.length > 0 || currentState() !== 'PENDING', wakeAt - now);
      while (inbox.length > 0 && state === 'PENDING') judge(inbox.shift(), 'signal');
    }
  } catch (error) {
    if (isCancellation(error)) {
      // the run was revoked or cancelled: the request can no longer be decided
      await CancellationScope.nonCancellable(async () => {
        upsertSearchAttributes([{ key: ApprovalStateKey, value: 'CANCELLED' }]);
        setCurrentDetails('**Cancelled**: the run was revoked before a decision');
        emit(AuditKind.approvalDecided, request.step, { approvalWorkflowId, status: 'cancelled' });
      });
    }
    throw error;
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
  await notifyApprovers({
    ...notice('outcome', approval.eligible, status),
    decided: { approvedBy, deniedBy, reason: status === 'timed_out' ? null : denyReason },
  });
  await condition(allHandlersFinished);
  return {
    status,
    approvedBy,
    deniedBy,
    reason: status === 'timed_out' ? 'no decision before the timeout' : denyReason,
    votes: accepted.map((v) => v.signed),
    attempts,
    escalated,
    revised,
  };
}

function decisionOf(raw: unknown): 'approve' | 'deny' | null {
  const decision = (raw as { payload?: { decision?: unknown } } | null)?.payload?.decision;
  return decision === 'approve' || decision === 'deny' ? decision : null;
}

function refusalMessage(code: VoteRefusal): string {
  switch (code) {
    case VoteRefusal.requester:
      return 'the principal who requested the run cannot approve its actions';
    case VoteRefusal.agent:
      return 'the agent cannot vote on its own actions';
    case VoteRefusal.ineligible:
      return 'this principal is not an eligible approver for this request';
    case VoteRefusal.duplicate:
      return 'this principal has already voted';
    default:
      return 'the vote was refused';
  }
}

function approverOf(raw: unknown): string | null {
  const payload = (raw as { payload?: { approver?: unknown } } | null)?.payload;
  return typeof payload?.approver === 'string' ? payload.approver.slice(0, 128) : null;
}
