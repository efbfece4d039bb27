/**
 * Metric names shared across processes: what `createAuditMetrics` produces, and what the audit
 * aggregator and the observer expose from their own code. Dashboards, alerts and tests read them
 * from here.
 * @module
 */

/** Metrics derived from audit events by `createAuditMetrics` (any process). */
export const AuditMetric = {
  events: 'agent_runtime_audit_events_total',
  lag: 'agent_runtime_audit_lag_seconds',
  appendFailures: 'agent_runtime_audit_append_failures_total',
  decisions: 'agent_runtime_decisions_total',
  denials: 'agent_runtime_denials_total',
  executions: 'agent_runtime_executions_total',
  executionSeconds: 'agent_runtime_execution_seconds',
  approvalsPending: 'agent_runtime_approvals_pending',
  approvalLatency: 'agent_runtime_approval_latency_seconds',
  approvalsDecided: 'agent_runtime_approvals_decided_total',
  votes: 'agent_runtime_votes_total',
  approvalDeliveries: 'agent_runtime_approval_deliveries_total',
  approvalAttempts: 'agent_runtime_approval_attempts_total',
  modelCalls: 'agent_runtime_model_calls_total',
  modelTokens: 'agent_runtime_model_tokens_total',
  modelCost: 'agent_runtime_model_cost_usd_total',
  modelLatency: 'agent_runtime_model_latency_seconds',
  modelFallbacks: 'agent_runtime_model_fallbacks_total',
  runsStarted: 'agent_runtime_runs_started_total',
  runsFinished: 'agent_runtime_runs_finished_total',
  runsRefused: 'agent_runtime_runs_refused_total',
  postureChanges: 'agent_runtime_posture_changes_total',
  toolFreezes: 'agent_runtime_tool_freezes_total',
  observerFindings: 'agent_runtime_observer_findings_total',
  observerInterventions: 'agent_runtime_observer_interventions_total',
} as const;
export type AuditMetric = (typeof AuditMetric)[keyof typeof AuditMetric];

/** Metrics the audit aggregator exposes itself (`audit/server.ts`). */
export const AggregatorMetric = {
  appended: 'agent_runtime_audit_appended_total',
  refused: 'agent_runtime_audit_refused_total',
  appendSeconds: 'agent_runtime_audit_append_seconds',
  subscribers: 'agent_runtime_audit_subscribers',
  headSeq: 'agent_runtime_audit_head_seq',
  gaps: 'agent_runtime_audit_gaps_total',
} as const;
export type AggregatorMetric = (typeof AggregatorMetric)[keyof typeof AggregatorMetric];

/** Metrics the observer process exposes itself. */
export const ObserverMetric = {
  events: 'agent_runtime_observer_events_total',
  ruleEvalSeconds: 'agent_runtime_observer_rule_eval_seconds',
  heartbeatAgeSeconds: 'agent_runtime_observer_heartbeat_age_seconds',
} as const;
export type ObserverMetric = (typeof ObserverMetric)[keyof typeof ObserverMetric];

/** The aggregator's and the observer's own metric names, in one list. */
export const SERVICE_METRIC_NAMES: readonly string[] = Object.freeze([
  ...Object.values(AggregatorMetric),
  ...Object.values(ObserverMetric),
]);
