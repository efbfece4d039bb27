/**
 * The operator CLI channel: list pending approvals from Temporal visibility, show one, and cast a
 * signed vote. The vote is checked against the request's approver requirement (from the pinned
 * governance document) before anything is signed: the requester, the agent and ineligible
 * principals are refused here with a clear message, and again by the workflow and the guard.
 * @module
 */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { Client } from '@temporalio/client';
import { actionDigest, AgentRuntimeError, signVote, VoteRefusal } from '../policy/index.ts';
import type { VotePayload } from '../policy/index.ts';
import { approvalStatusQuery, voteUpdate } from '../workflows/approval.ts';
import type { ApprovalView, VoteReceipt } from '../workflows/approval.ts';

/** A vote the operator channel refuses to sign or the workflow refused; `code` is a `VoteRefusal` or `APPROVAL_*`. */
export class VoteError extends AgentRuntimeError {}

/** One pending approval as `approvals list` shows it. */
export interface PendingApproval {
  readonly approvalWorkflowId: string;
  readonly runWorkflowId: string;
  readonly agentId: string;
  readonly requester: string;
  readonly step: number;
  readonly tool: string;
  readonly resource: string | null;
  readonly ruleId: string | null;
  readonly eligible: readonly string[];
  readonly quorum: number;
  readonly approvedBy: readonly string[];
  readonly expiresAt: string;
}

/** Pending approvals (`ApprovalState = 'PENDING'`), oldest first. */
export async function listPendingApprovals(client: Client, limit = 100): Promise<PendingApproval[]> {
  const ids: string[] = [];
  for await (const execution of client.workflow.list({
    query: `ApprovalState = 'PENDING' AND ExecutionStatus = 'Running'`,
  })) {
    ids.push(execution.workflowId);
    if (ids.length >= limit) break;
  }
  const views = await Promise.all(
    ids.map(async (id) => {
      try {
        return { id, view: await showApproval(client, id) };
      } catch {
        return undefined; // decided or closed between the list and the query
      }
    }),
  );
  return views
    .filter((entry): entry is { id: string; view: ApprovalView } => entry?.view.state === 'PENDING')
    .map(({ id, view }) => summarise(id, view))
    .sort((a, b) => a.expiresAt.localeCompare(b.expiresAt));
}

/** The live state of one approval request. */
export async function showApproval(client: Client, approvalWorkflowId: string): Promise<ApprovalView> {
  const handle = client.workflow.getHandle(approvalWorkflowId);
  // a just-started request answers queries once its first workflow task has run
  for (let attempt = 1; ; attempt++) {
    try {
      return await handle.query(approvalStatusQuery);
    } catch (error) {
      if (attempt >= 20 || (error as { name?: string }).name === 'WorkflowNotFoundError')
        throw new VoteError(
          'APPROVAL_NOT_FOUND',
          `no approval request ${approvalWorkflowId} can be read (${(error as Error).message})`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export function summarise(approvalWorkflowId: string, view: ApprovalView): PendingApproval {
  const { request } = view;
  return {
    approvalWorkflowId,
    runWorkflowId: request.runWorkflowId,
    agentId: request.agentId,
    requester: request.requester,
    step: request.step,
    tool: request.action.tool,
    resource: request.action.resource,
    ruleId: request.ruleId,
    eligible: eligibleOf(view),
    quorum: view.quorum,
    approvedBy: view.approvedBy,
    expiresAt: new Date(view.expiresAtMs).toISOString(),
  };
}

function eligibleOf(view: ApprovalView): readonly string[] {
  const { approval } = view.request;
  const ids = [
    ...approval.eligible,
    ...(view.escalated && approval.escalate ? approval.escalate.eligible : []),
  ];
  return [...new Set(ids)].filter((id) => id !== view.request.requester && id !== view.request.agentId);
}

export interface CastVoteOptions {
  readonly approvalWorkflowId: string;
  readonly principal: string;
  readonly decision: 'approve' | 'deny';
  readonly reason?: string;
  readonly secretKey: Uint8Array;
  /** Epoch ms; injected by tests. */
  readonly now?: number;
  /** How long the signed vote stays valid (capped at the request's expiry); default 15 minutes. */
  readonly validForMs?: number;
}

/** Checks authority, signs and submits one vote; returns the workflow's receipt. */
export async function castVote(client: Client, options: CastVoteOptions): Promise<VoteReceipt> {
  const view = await showApproval(client, options.approvalWorkflowId);
  const { request } = view;
  if (view.state !== 'PENDING')
    throw new VoteError(
      VoteRefusal.decided,
      `${options.approvalWorkflowId} is already ${view.state.toLowerCase()}`,
    );
  if (options.principal === request.requester)
    throw new VoteError(
      VoteRefusal.requester,
      `"${options.principal}" requested this run and cannot approve its actions`,
    );
  if (options.principal === request.agentId)
    throw new VoteError(VoteRefusal.agent, 'the agent cannot vote on its own actions');
  const eligible = eligibleOf(view);
  if (!eligible.includes(options.principal))
    throw new VoteError(
      VoteRefusal.ineligible,
      `"${options.principal}" may not decide this request (rule ${request.ruleId ?? 'default'}; eligible: ${eligible.join(', ') || 'nobody'})`,
    );
  const digest = actionDigest({
    tool: request.action.tool,
    args: request.action.args,
    resource: request.action.resource,
    policyVersion: request.policyVersion,
  });
  if (digest !== request.actionDigest)
    throw new VoteError(
      VoteRefusal.wrongAction,
      'the request does not match its own action digest; not signing',
    );
  const now = options.now ?? Date.now();
  const payload: VotePayload = {
    workflowId: options.approvalWorkflowId,
    step: request.step,
    actionDigest: digest,
    decision: options.decision,
    approver: options.principal,
    expiresAt: Math.min(view.expiresAtMs, now + (options.validForMs ?? 15 * 60_000)),
    ...(options.reason === undefined ? {} : { reason: options.reason }),
  };
  const signed = signVote(payload, options.secretKey);
  try {
    return await client.workflow
      .getHandle(options.approvalWorkflowId)
      .executeUpdate(voteUpdate, { args: [signed] });
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError) {
      const type = (error.cause as { type?: unknown } | undefined)?.type;
      throw new VoteError(
        typeof type === 'string' ? type : 'APPROVAL_VOTE_FAILED',
        `the approval workflow refused the vote: ${error.cause?.message ?? error.message}`,
      );
    }
    throw new VoteError(
      'APPROVAL_VOTE_FAILED',
      `the vote could not be delivered: ${(error as Error).message}`,
    );
  }
}
