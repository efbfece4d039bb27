/**
 * Types of the AgentRun workflow, its tool activity and its callers. Types and constants only:
 * imported by workflow code, the tools worker's execution guard, the CLI and tests.
 * @module
 */
import type { GovernanceDocument, Posture, SignedVote, Tier } from '../policy/index.ts';
import type { ChatMessage, ModelConfig, TokenUsage } from '../activities/model/types.ts';

/** Task queues of the three worker roles. */
export const TaskQueue = {
  agents: 'agents',
  tools: 'tools',
  approvals: 'approvals',
} as const;

/** The governance document a run is pinned to, with its content hash. */
export interface PinnedPolicy {
  readonly document: GovernanceDocument;
  readonly policyVersion: string;
}

/** Limits of one run; exhausting any ends the run cleanly with status `budget_exhausted`. */
export interface RunBudgets {
  /** Most actions (proposed tool calls) the run may take. */
  readonly maxSteps: number;
  /** Most model tokens (input + output) the run may use. */
  readonly maxTokens: number;
  /** Longest the run may last, approval waits included, in ms. */
  readonly maxWallTimeMs: number;
}

/** Counters that survive continue-as-new. */
export interface RunUsage {
  readonly steps: number;
  readonly modelTurns: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** One decision as the run's `status` query and the Temporal UI show it. */
export interface DecisionRecord {
  readonly step: number;
  readonly tool: string;
  readonly tier: Tier;
  readonly ruleId: string | null;
  readonly code: string;
  readonly resource: string | null;
  /** What happened after the decision. */
  readonly outcome:
    | 'executed'
    | 'failed'
    | 'refused_by_guard'
    | 'denied'
    | 'approval_pending'
    | 'approval_denied'
    | 'approval_timed_out';
  readonly atMs: number;
}

/** State carried across continue-as-new. */
export interface CarriedRunState {
  readonly messages: readonly ChatMessage[];
  readonly policy: PinnedPolicy;
  readonly posture: Posture;
  readonly frozenTools: readonly string[];
  /** Uses per rule id (for `limits.perRun`). */
  readonly used: Readonly<Record<string, number>>;
  readonly usage: RunUsage;
  readonly recentDecisions: readonly DecisionRecord[];
  readonly startedAtMs: number;
  /** Continue-as-new generations so far. */
  readonly generation: number;
  /** What set the current posture (absent in states carried by older code: none). */
  readonly postureCause?: PostureCause | null;
}

/**
 * What set a run's current posture: the observer lease check (`observer-lease`, undone by the
 * lease when it is valid again) or a run-control Update (`control`, never undone by the lease).
 */
export const PostureCause = {
  observerLease: 'observer-lease',
  control: 'control',
} as const;
export type PostureCause = (typeof PostureCause)[keyof typeof PostureCause];

/** The observer heartbeat lease as the agents worker last saw it (activity `observerLease`). */
export interface ObserverLeaseStatus {
  /** True iff the last lease fetched expires after the worker's clock. */
  readonly valid: boolean;
  /** ISO-8601 expiry of the last lease fetched, or null (none fetched, or the aggregator has none). */
  readonly expiresAt: string | null;
  /** Who holds the lease, or null. */
  readonly holder: string | null;
  /** ISO-8601 time the aggregator last answered, or null. */
  readonly checkedAt: string | null;
}

/** The local activity the AgentRun workflow calls at each action boundary when the run requires the lease. */
export interface ObserverLeaseActivities {
  observerLease(): Promise<ObserverLeaseStatus>;
}

/** Input of the AgentRun workflow. */
export interface AgentRunInput {
  readonly agentId: string;
  readonly policy: PinnedPolicy;
  readonly task: string;
  /** Principal who started the run, authenticated by the runtime; must be a director. */
  readonly requestedBy: string;
  readonly model: ModelConfig;
  readonly budgets: RunBudgets;
  /** Vote-signing public keys the approval workflow trusts, keyId → hex. */
  readonly trustedKeys: Readonly<Record<string, string>>;
  readonly taskQueues?: { readonly tools?: string; readonly approvals?: string };
  readonly options?: {
    /** Continue-as-new after this many model turns in one generation (default: when Temporal suggests). */
    readonly continueAsNewAfterTurns?: number;
    /** Tool activity start-to-close timeout in ms (default 5 minutes). */
    readonly toolTimeoutMs?: number;
    /** Largest tool output fed back to the model, in characters (default 16,000). */
    readonly maxToolOutputChars?: number;
    /**
     * Check the observer heartbeat lease before every decision (default false): without a valid
     * lease a `normal` run turns `conservative` until the lease is valid again.
     */
    readonly requireObserverLease?: boolean;
  };
  /** Set by continue-as-new only. */
  readonly carried?: CarriedRunState;
}

export const RunStatus = {
  completed: 'completed',
  revoked: 'revoked',
  budgetExhausted: 'budget_exhausted',
} as const;
export type RunStatus = (typeof RunStatus)[keyof typeof RunStatus];

/** How a run ended (a refused start fails the workflow with a coded `ApplicationFailure` instead). */
export interface AgentRunResult {
  readonly status: RunStatus;
  /** The model's final answer, if it gave one. */
  readonly answer: string | null;
  /** Why the run stopped when it did not complete. */
  readonly reason: string | null;
  readonly usage: RunUsage;
  readonly policyVersion: string;
  readonly decisions: readonly DecisionRecord[];
}

/** Live view of a run (query `status`). */
export interface RunView {
  readonly agentId: string;
  readonly requestedBy: string;
  readonly state: 'running' | 'waiting_approval' | 'finished';
  readonly step: number;
  readonly posture: Posture;
  readonly frozenTools: readonly string[];
  readonly policyVersion: string;
  /** A policy update received but not yet applied (applies at the next action boundary). */
  readonly pendingPolicyVersion: string | null;
  readonly pendingApproval: {
    readonly step: number;
    readonly tool: string;
    readonly approvalWorkflowId: string;
  } | null;
  readonly recentDecisions: readonly DecisionRecord[];
  readonly usage: RunUsage;
  readonly budgets: RunBudgets;
  readonly generation: number;
  /** What set the current posture; null while it is the starting one. */
  readonly postureCause: PostureCause | null;
  /** The observer lease at the last action boundary (null when the run does not require it or has not checked yet). */
  readonly observerLease: ObserverLeaseStatus | null;
}

/** Who asks for a run-control change, for the audit record (not an authentication). */
export interface ControlRequest {
  readonly by: string;
  readonly reason?: string;
}

/** What the `tools` worker's `executeTool` activity receives: enough for the guard to re-decide alone. */
export interface ToolCallInput {
  readonly runWorkflowId: string;
  readonly step: number;
  readonly agentId: string;
  readonly requester: string;
  readonly tool: string;
  readonly args: unknown;
  readonly rationale: string | null;
  /** The policy the workflow decided with; the guard recomputes its hash. */
  readonly policy: PinnedPolicy;
  readonly posture: Posture;
  readonly frozenTools: readonly string[];
  /** Rule uses before this call (the workflow counts this call after deciding). */
  readonly used: Readonly<Record<string, number>>;
  /** The workflow's decision, for the audit record; the guard decides again and trusts its own. */
  readonly claimed: { readonly tier: Tier; readonly ruleId: string | null };
  /** For approval-tier calls: the approval child's id and the signed votes that decided it. */
  readonly approval: {
    readonly approvalWorkflowId: string;
    readonly escalated: boolean;
    readonly votes: readonly SignedVote[];
  } | null;
}

/** What `executeTool` returns: the tool's result (a refusal by the tool is `ok: false`, not a failure). */
export type ToolCallResult =
  | { readonly ok: true; readonly output: unknown; readonly replayed: boolean }
  | { readonly ok: false; readonly code: string; readonly message: string; readonly replayed: boolean };

/** The approval child's workflow id for a run's step. */
export function approvalWorkflowIdFor(runWorkflowId: string, step: number): string {
  return `${runWorkflowId}/approval/${step}`;
}

/** Idempotency key of a run's step: one side effect per key, ever. */
export function idempotencyKeyFor(runWorkflowId: string, step: number): string {
  return `${runWorkflowId}/${step}`;
}

export type { TokenUsage };
