/**
 * The audit envelope and the client contract every component writes through. Types only.
 * Here the sink is an append-only local file; the audit issue replaces it with the
 * tamper-evident aggregator (adding `prevHash`/`hash`) behind the same contract.
 * @module
 */

/** Who wrote the event. */
export type AuditSource = 'workflow' | 'guard' | 'approvals' | 'cli' | 'model' | 'observer' | 'aggregator';

/** Kinds of events; stable strings (audit queries and the observer match on them). */
export const AuditKind = {
  runStarted: 'run.started',
  runRefused: 'run.refused',
  runFinished: 'run.finished',
  modelCall: 'model.call',
  decision: 'decision',
  approvalRequested: 'approval.requested',
  approvalNotified: 'approval.notified',
  approvalDecided: 'approval.decided',
  /** An approver edited the action's arguments (approve with edits). */
  approvalRevised: 'approval.revised',
  /** Every human attempt at an approval channel (views, votes, refusals), from the approvals service. */
  approvalAttempt: 'approval.attempt',
  /** A notice delivered (or not) to an approver through a channel, and channel fallbacks. */
  approvalDelivery: 'approval.delivery',
  voteAccepted: 'vote.accepted',
  voteRefused: 'vote.refused',
  executionStarted: 'execution.started',
  executionResult: 'execution.result',
  executionRefused: 'execution.refused',
  postureChanged: 'posture.changed',
  toolsFrozen: 'tools.frozen',
  toolsUnfrozen: 'tools.unfrozen',
  policyUpdated: 'policy.updated',
  policyUpdateRefused: 'policy.update_refused',
  /** A signed, approved governance change and what it declares (opens the observer's learning window). */
  governanceChange: 'governance.change',
  /** The aggregator saw a writer's own sequence skip: events lost between that writer and the aggregator. */
  auditGap: 'audit.gap',
  observerFinding: 'observer.finding',
  observerIntervention: 'observer.intervention',
  observerInterventionLifted: 'observer.intervention_lifted',
  /** A system metric sample the observer scraped (evaluated by its rules, never appended). */
  metricSample: 'metric.sample',
} as const;
export type AuditKind = (typeof AuditKind)[keyof typeof AuditKind];

/** What a writer supplies; the sink assigns `seq` and `ts`. */
export interface AuditEventInput {
  readonly source: AuditSource;
  /** Agent id, or null for events not about one agent. */
  readonly agent: string | null;
  /** The AgentRun workflow id, or null. */
  readonly run: string | null;
  /** The action step within the run, or null. */
  readonly step: number | null;
  readonly kind: AuditKind;
  /** Kind-specific, JSON-serialisable details. */
  readonly attrs: Readonly<Record<string, unknown>>;
  /**
   * Stable id for writers that may emit the same event twice (a retried workflow task): the sink
   * keeps the first and drops repeats it still remembers.
   */
  readonly id?: string;
}

/** One stored record. */
export interface AuditEvent extends AuditEventInput {
  /** 1-based, gap-free per sink file. */
  readonly seq: number;
  /** ISO-8601 UTC time the sink appended it. */
  readonly ts: string;
}

/** The one audit client: append only. No update, no delete. */
export interface AuditClient {
  append(event: AuditEventInput): Promise<AuditEvent>;
}
