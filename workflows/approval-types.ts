/**
 * Types shared by the approval workflow, its activities and its callers. Types only.
 * @module
 */
import type { ApprovalRequirement, SignedVote, VoteRefusal } from '../policy/index.ts';

/** Everything an approval needs, fixed when the child workflow starts. */
export interface ApprovalRequest {
  readonly runWorkflowId: string;
  readonly step: number;
  readonly agentId: string;
  /** The principal who started the run: never an approver of its actions. */
  readonly requester: string;
  readonly action: {
    readonly tool: string;
    readonly args: unknown;
    readonly resource: string | null;
    /** The model's stated reason: shown to approvers, labelled unverified. */
    readonly rationale: string | null;
  };
  readonly actionDigest: string;
  readonly ruleId: string | null;
  readonly policyVersion: string;
  readonly approval: ApprovalRequirement;
  /** Task queue of the notification activities (`approvals` in production). */
  readonly notifyTaskQueue: string;
  /** Trusted vote-signing public keys, keyId → hex. */
  readonly trustedKeys: Readonly<Record<string, string>>;
}

export type ApprovalStatus = 'approved' | 'denied' | 'timed_out';

/** One vote attempt as the workflow judged it. */
export interface VoteRecord {
  readonly accepted: boolean;
  readonly approver: string | null;
  readonly decision: 'approve' | 'deny' | null;
  readonly code: VoteRefusal | null;
  readonly message: string | null;
  readonly atMs: number;
}

/** The approval's outcome; `votes` are the signed votes that decided it, for the execution guard. */
export interface ApprovalResult {
  readonly status: ApprovalStatus;
  readonly approvedBy: readonly string[];
  readonly deniedBy: string | null;
  readonly reason: string | null;
  readonly votes: readonly SignedVote[];
  readonly attempts: readonly VoteRecord[];
  /** Whether the request was escalated (escalation approvers then count toward the quorum). */
  readonly escalated: boolean;
  /** Approve with edits: the action that was approved instead of the proposed one (null when unedited). */
  readonly revised: {
    readonly args: unknown;
    readonly resource: string | null;
    readonly actionDigest: string;
    readonly by: string;
    readonly from: { readonly args: unknown; readonly resource: string | null };
  } | null;
}

/** What a notification activity receives. */
export interface ApprovalNotice {
  readonly kind: 'request' | 'reminder' | 'escalation' | 'outcome';
  readonly approvalWorkflowId: string;
  readonly recipients: readonly string[];
  readonly request: ApprovalRequest;
  readonly expiresAtMs: number;
  readonly outcome: ApprovalStatus | null;
  /** With an outcome: who decided (so a channel shows "Approved by …" whoever delivered the vote). */
  readonly decided?: {
    readonly approvedBy: readonly string[];
    readonly deniedBy: string | null;
    readonly reason: string | null;
  };
}
