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
import { approvalStatusQuery, reviseActionUpdate, voteUpdate } from '../workflows/approval.ts';
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

/** Refuses a principal the request does not let vote (decided, requester, agent, ineligible). */
function checkVoter(view: ApprovalView, approvalWorkflowId: string, principal: string): void {
  const { request } = view;
  if (view.state !== 'PENDING')
    throw new VoteError(VoteRefusal.decided, `${approvalWorkflowId} is already ${view.state.toLowerCase()}`);
  if (principal === request.requester)
    throw new VoteError(
      VoteRefusal.requester,
      `"${principal}" requested this run and cannot approve its actions`,
    );
  if (principal === request.agentId)
    throw new VoteError(VoteRefusal.agent, 'the agent cannot vote on its own actions');
  const eligible = eligibleOf(view);
  if (!eligible.includes(principal))
    throw new VoteError(
      VoteRefusal.ineligible,
      `"${principal}" may not decide this request (rule ${request.ruleId ?? 'default'}; eligible: ${eligible.join(', ') || 'nobody'})`,
    );
}

/** Sends an Update and turns a refusal into a {@link VoteError} with the workflow's code. */
async function deliver(send: () => Promise<VoteReceipt>): Promise<VoteReceipt> {
  try {
    return await send();
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

function votePayload(
  options: CastVoteOptions,
  view: ApprovalView,
  digest: string,
  decision: 'approve' | 'deny',
): VotePayload {
  const now = options.now ?? Date.now();
  return {
    workflowId: options.approvalWorkflowId,
    step: view.request.step,
    actionDigest: digest,
    decision,
    approver: options.principal,
    expiresAt: Math.min(view.expiresAtMs, now + (options.validForMs ?? 15 * 60_000)),
    ...(options.reason === undefined ? {} : { reason: options.reason }),
  };
}

/** Checks authority, signs and submits one vote; returns the workflow's receipt. */
export async function castVote(client: Client, options: CastVoteOptions): Promise<VoteReceipt> {
  const view = await showApproval(client, options.approvalWorkflowId);
  checkVoter(view, options.approvalWorkflowId, options.principal);
  const { request } = view;
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
  const signed = signVote(votePayload(options, view, digest, options.decision), options.secretKey);
  return deliver(() =>
    client.workflow.getHandle(options.approvalWorkflowId).executeUpdate(voteUpdate, { args: [signed] }),
  );
}

/** Options of {@link castRevision}: an approve vote over edited arguments. */
export interface CastRevisionOptions extends Omit<CastVoteOptions, 'decision'> {
  /** The edited arguments, already validated against the tool's schema and re-decided. */
  readonly args: unknown;
  /** The resource the edited arguments name (from the re-decision). */
  readonly resource: string | null;
}

/** Approve with edits: signs an approve vote over the edited action's digest and sends both. */
export async function castRevision(client: Client, options: CastRevisionOptions): Promise<VoteReceipt> {
  const view = await showApproval(client, options.approvalWorkflowId);
  checkVoter(view, options.approvalWorkflowId, options.principal);
  const { request } = view;
  const digest = actionDigest({
    tool: request.action.tool,
    args: options.args,
    resource: options.resource,
    policyVersion: request.policyVersion,
  });
  const vote = signVote(
    votePayload({ ...options, decision: 'approve' }, view, digest, 'approve'),
    options.secretKey,
  );
  return deliver(() =>
    client.workflow.getHandle(options.approvalWorkflowId).executeUpdate(reviseActionUpdate, {
      args: [{ args: options.args, resource: options.resource, vote }],
    }),
  );
}
