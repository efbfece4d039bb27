/**
 * Prometheus metrics derived from audit events. A process wraps the audit client it writes through
 * ({@link meteredAudit}) and every event it appends updates its counters: decisions, denials,
 * executions, approvals, model usage, posture changes, observer findings. Only the events a process
 * writes itself should be observed, so that summing a metric across processes counts each event once.
 *
 * Attribute names are the emitters': `workflows/agent-run.ts` (decision, approval.requested|decided,
 * model.call, posture.changed, run.*), `workflows/approval.ts` (vote.*), `worker/guard.ts`
 * (execution.*), `approval-channels/core/service.ts` (approval.delivery|attempt), `observer/service.ts`
 * (observer.finding|intervention). Malformed or unknown
 * attributes never throw: they land under the label value `unknown` or are skipped.
 * @module
 */
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditClient, AuditEvent, AuditEventInput } from '../activities/audit/types.ts';
import { InterventionAction, Severity } from '../observer/rules/schema.ts';
import { POSTURES, TIERS } from '../policy/tiers.ts';
import { RunStatus } from '../workflows/run-types.ts';
import { AuditMetric } from './names.ts';
import type { MetricsRegistry } from './registry.ts';

/** Price of a model's tokens, in US dollars per million tokens. */
export interface ModelPrice {
  readonly inputUsdPerMTok: number;
  readonly outputUsdPerMTok: number;
}

/** Looks up the price of a provider's model; undefined when unknown (no cost is counted). */
export type ModelPricing = (provider: string, model: string) => ModelPrice | undefined;

/** Options of {@link createAuditMetrics}. */
export interface AuditMetricsOptions {
  /** Clock for `agent_runtime_audit_lag_seconds`, in epoch milliseconds (default `Date.now`). */
  readonly now?: () => number;
  /**
   * Prices for `agent_runtime_model_cost_usd_total`, used when a `model.call` event carries no
   * `costUsd` of its own (today none does).
   */
  readonly pricing?: ModelPricing;
  /** Open approvals, running executions and recently closed approvals remembered (default 10,000 each). */
  readonly maxTracked?: number;
}

/** The audit-derived metrics of one process. */
export interface AuditMetrics {
  /** Updates the metrics with one appended event. Never throws. */
  observe(event: AuditEvent): void;
  /** Counts an append that failed (the event is not observed). Never throws. */
  appendFailed(input: AuditEventInput): void;
}

/** Bucket bounds (seconds) of the audit-derived histograms. */
export const AuditMetricBuckets = {
  /** Tool executions: milliseconds to minutes. */
  execution: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  /** Human approvals: seconds to a day. */
  approval: [5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400],
  /** Model turns, all attempts included. */
  model: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
} as const;

const UNKNOWN = 'unknown';
const KINDS: readonly string[] = Object.values(AuditKind);
const RUN_STATUSES: readonly string[] = Object.values(RunStatus);
const SEVERITIES: readonly string[] = Object.values(Severity);
const ACTIONS: readonly string[] = Object.values(InterventionAction);
const CODE = /^[A-Za-z0-9_.:-]{1,64}$/;

type Attrs = Readonly<Record<string, unknown>>;

function record(value: unknown): Attrs {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Attrs) : {};
}

/** A non-empty string, else `fallback`. */
function text(value: unknown, fallback = UNKNOWN): string {
  return typeof value === 'string' && value.length > 0 ? value : fallback;
}

/** One of `values`, else `unknown`. */
function oneOf(value: unknown, values: readonly string[]): string {
  return typeof value === 'string' && values.includes(value) ? value : UNKNOWN;
}

/** A stable code (letters, digits, `_.:-`, at most 64), else `unknown`: keeps free text out of labels. */
function code(value: unknown): string {
  return typeof value === 'string' && CODE.test(value) ? value : UNKNOWN;
}

/** A finite, non-negative number, else null. */
function amount(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;
}

/** Epoch milliseconds of an ISO `ts`, else null. */
function epochMs(ts: unknown): number | null {
  if (typeof ts !== 'string') return null;
  const ms = Date.parse(ts);
  return Number.isFinite(ms) ? ms : null;
}

/** A Map that forgets its oldest entries beyond `max`. */
class Bounded<V> extends Map<string, V> {
  readonly #max: number;
  constructor(max: number) {
    super();
    this.#max = max;
  }
  override set(key: string, value: V): this {
    super.delete(key);
    super.set(key, value);
    while (this.size > this.#max) {
      const oldest = this.keys().next();
      if (oldest.done) break;
      super.delete(oldest.value);
    }
    return this;
  }
}

/** Registers the audit-derived metrics in `registry` (see {@link AuditMetric} for the names). */
export function createAuditMetrics(
  registry: MetricsRegistry,
  options: AuditMetricsOptions = {},
): AuditMetrics {
  const now = options.now ?? Date.now;
  const maxTracked = options.maxTracked ?? 10_000;
  let lastTs: number | null = null;
  const openApprovals = new Bounded<number | null>(maxTracked);
  const closedApprovals = new Bounded<true>(maxTracked);
  const runningExecutions = new Bounded<number>(maxTracked);

  const events = registry.counter({
    name: AuditMetric.events,
    help: 'Audit events this process appended, by source and kind.',
    labelNames: ['source', 'kind'],
  });
  registry.gauge({
    name: AuditMetric.lag,
    help: 'Seconds since the ts of the last audit event this process appended.',
    collect: (gauge) => {
      if (lastTs === null) gauge.reset();
      else gauge.set(undefined, Math.max(0, (now() - lastTs) / 1000));
    },
  });
  const appendFailures = registry.counter({
    name: AuditMetric.appendFailures,
    help: 'Audit appends that failed, by source and kind.',
    labelNames: ['source', 'kind'],
  });
  const decisions = registry.counter({
    name: AuditMetric.decisions,
    help: 'Gateway decisions, by agent and tier.',
    labelNames: ['agent', 'tier'],
  });
  const denials = registry.counter({
    name: AuditMetric.denials,
    help: 'Prohibited decisions (reason = decision code) and execution guard refusals (reason = guard code).',
    labelNames: ['agent', 'reason'],
  });
  const executions = registry.counter({
    name: AuditMetric.executions,
    help: 'Tool executions by outcome: ok, failed, replayed (journal), refused (guard).',
    labelNames: ['tool', 'outcome'],
  });
  const executionSeconds = registry.histogram({
    name: AuditMetric.executionSeconds,
    help: 'Seconds from execution.started to execution.result of one attempt.',
    labelNames: ['tool'],
    buckets: AuditMetricBuckets.execution,
  });
  registry.gauge({
    name: AuditMetric.approvalsPending,
    help: 'Approval requests this process saw requested and not yet decided.',
    collect: (gauge) => gauge.set(undefined, openApprovals.size),
  });
  const approvalLatency = registry.histogram({
    name: AuditMetric.approvalLatency,
    help: 'Seconds from approval.requested to approval.decided of one request, by outcome.',
    labelNames: ['outcome'],
    buckets: AuditMetricBuckets.approval,
  });
  const approvalsDecided = registry.counter({
    name: AuditMetric.approvalsDecided,
    help: 'Approval requests decided, by outcome (approved, denied, timed_out, cancelled).',
    labelNames: ['outcome'],
  });
  const votes = registry.counter({
    name: AuditMetric.votes,
    help: 'Votes on approval requests: approve, deny, or refused.',
    labelNames: ['outcome'],
  });
  const deliveries = registry.counter({
    name: AuditMetric.approvalDeliveries,
    help: 'Approval notices delivered (or not) to approvers, by channel and outcome.',
    labelNames: ['channel', 'outcome'],
  });
  const attempts = registry.counter({
    name: AuditMetric.approvalAttempts,
    help: 'Human actions at approval channels, by channel, action and outcome.',
    labelNames: ['channel', 'action', 'outcome'],
  });
  const modelCalls = registry.counter({
    name: AuditMetric.modelCalls,
    help: 'Model turns, by provider, model and finish reason.',
    labelNames: ['provider', 'model', 'finish_reason'],
  });
  const modelTokens = registry.counter({
    name: AuditMetric.modelTokens,
    help: 'Model tokens, by agent, provider, model and direction (input, output).',
    labelNames: ['agent', 'provider', 'model', 'direction'],
  });
  const modelCost = registry.counter({
    name: AuditMetric.modelCost,
    help: 'Model cost in US dollars: the event’s costUsd, else tokens times the configured price.',
    labelNames: ['agent', 'provider', 'model'],
  });
  const modelLatency = registry.histogram({
    name: AuditMetric.modelLatency,
    help: 'Seconds of one model turn (all attempts), when the model.call event carries proxy.latencyMs.',
    labelNames: ['provider'],
    buckets: AuditMetricBuckets.model,
  });
  const modelFallbacks = registry.counter({
    name: AuditMetric.modelFallbacks,
    help: 'Model turns answered after a fallback, by the provider that answered.',
    labelNames: ['provider'],
  });
  const runsStarted = registry.counter({
    name: AuditMetric.runsStarted,
    help: 'Agent runs started, by agent.',
    labelNames: ['agent'],
  });
  const runsFinished = registry.counter({
    name: AuditMetric.runsFinished,
    help: 'Agent runs finished, by agent and status.',
    labelNames: ['agent', 'status'],
  });
  const runsRefused = registry.counter({
    name: AuditMetric.runsRefused,
    help: 'Agent runs refused at start, by code.',
    labelNames: ['code'],
  });
  const postureChanges = registry.counter({
    name: AuditMetric.postureChanges,
    help: 'Run posture changes, by the posture changed to.',
    labelNames: ['to'],
  });
  const toolFreezes = registry.counter({
    name: AuditMetric.toolFreezes,
    help: 'Tool freeze requests applied to runs.',
  });
  const findings = registry.counter({
    name: AuditMetric.observerFindings,
    help: 'Observer findings, by rule and severity.',
    labelNames: ['rule', 'severity'],
  });
  const interventions = registry.counter({
    name: AuditMetric.observerInterventions,
    help: 'Observer interventions, by action.',
    labelNames: ['action'],
  });

  const model = (event: AuditEvent, attrs: Attrs): void => {
    const agent = text(event.agent);
    const provider = text(attrs['provider']);
    const name = text(attrs['model']);
    const proxy = record(attrs['proxy']);
    const usage = record(attrs['usage']);
    modelCalls.inc({ provider, model: name, finish_reason: code(attrs['finishReason']) });
    const input = amount(usage['inputTokens']);
    const output = amount(usage['outputTokens']);
    if (input !== null) modelTokens.inc({ agent, provider, model: name, direction: 'input' }, input);
    if (output !== null) modelTokens.inc({ agent, provider, model: name, direction: 'output' }, output);
    const price = options.pricing?.(provider, name);
    const priced =
      price && (input !== null || output !== null)
        ? ((input ?? 0) * price.inputUsdPerMTok + (output ?? 0) * price.outputUsdPerMTok) / 1e6
        : null;
    const cost = amount(attrs['costUsd']) ?? amount(proxy['costUsd']) ?? amount(priced);
    if (cost !== null) modelCost.inc({ agent, provider, model: name }, cost);
    const latencyMs = amount(proxy['latencyMs']) ?? amount(attrs['latencyMs']);
    if (latencyMs !== null) modelLatency.observe({ provider }, latencyMs / 1000);
    const cause = proxy['fallbackCause'];
    if (typeof cause === 'string' && cause.length > 0) modelFallbacks.inc({ provider });
  };

  const approvalRequested = (attrs: Attrs, ts: number | null): void => {
    const id = attrs['approvalWorkflowId'];
    if (typeof id !== 'string' || openApprovals.has(id) || closedApprovals.has(id)) return;
    openApprovals.set(id, ts);
  };

  const approvalDecided = (attrs: Attrs, ts: number | null): void => {
    const id = attrs['approvalWorkflowId'];
    // a revoked run's request is reported cancelled by both the run and the approval workflow
    if (typeof id === 'string' && closedApprovals.has(id)) return;
    const outcome = oneOf(attrs['status'], ['approved', 'denied', 'timed_out', 'cancelled']);
    approvalsDecided.inc({ outcome });
    if (typeof id !== 'string') return;
    const requestedAt = openApprovals.get(id);
    if (requestedAt !== undefined && requestedAt !== null && ts !== null && ts >= requestedAt)
      approvalLatency.observe({ outcome }, (ts - requestedAt) / 1000);
    openApprovals.delete(id);
    closedApprovals.set(id, true);
  };

  const executionKey = (event: AuditEvent, attrs: Attrs): string =>
    JSON.stringify([event.run, event.step, attrs['attempt'] ?? null]);

  const observe = (event: AuditEvent): void => {
    const attrs = record(event?.attrs);
    const ts = epochMs(event?.ts);
    if (ts !== null) lastTs = ts;
    events.inc({ source: code(event?.source), kind: oneOf(event?.kind, KINDS) });
    const agent = text(event?.agent);
    switch (event?.kind) {
      case AuditKind.decision: {
        const tier = oneOf(attrs['tier'], TIERS);
        decisions.inc({ agent, tier });
        if (tier === 'prohibited') denials.inc({ agent, reason: code(attrs['code']) });
        break;
      }
      case AuditKind.executionRefused:
        denials.inc({ agent, reason: code(attrs['code']) });
        executions.inc({ tool: text(attrs['tool']), outcome: 'refused' });
        break;
      case AuditKind.executionStarted:
        if (ts !== null) runningExecutions.set(executionKey(event, attrs), ts);
        break;
      case AuditKind.executionResult: {
        const tool = text(attrs['tool']);
        const replayed = attrs['replayed'] === true;
        executions.inc({ tool, outcome: replayed ? 'replayed' : attrs['ok'] === true ? 'ok' : 'failed' });
        const key = executionKey(event, attrs);
        const started = runningExecutions.get(key);
        if (!replayed && started !== undefined && ts !== null && ts >= started)
          executionSeconds.observe({ tool }, (ts - started) / 1000);
        runningExecutions.delete(key);
        break;
      }
      case AuditKind.approvalRequested:
        approvalRequested(attrs, ts);
        break;
      case AuditKind.approvalDecided:
        approvalDecided(attrs, ts);
        break;
      case AuditKind.voteAccepted:
        votes.inc({ outcome: oneOf(attrs['decision'], ['approve', 'deny']) });
        break;
      case AuditKind.voteRefused:
        votes.inc({ outcome: 'refused' });
        break;
      case AuditKind.approvalDelivery:
        deliveries.inc({ channel: code(attrs['channel'] ?? 'none'), outcome: code(attrs['outcome']) });
        break;
      case AuditKind.approvalAttempt:
        attempts.inc({
          channel: code(attrs['channel']),
          action: code(attrs['action']),
          outcome: code(attrs['outcome']),
        });
        break;
      case AuditKind.modelCall:
        model(event, attrs);
        break;
      case AuditKind.runStarted:
        runsStarted.inc({ agent });
        break;
      case AuditKind.runFinished:
        runsFinished.inc({ agent, status: oneOf(attrs['status'], RUN_STATUSES) });
        break;
      case AuditKind.runRefused:
        runsRefused.inc({ code: code(attrs['code']) });
        break;
      case AuditKind.postureChanged:
        postureChanges.inc({ to: oneOf(attrs['to'], POSTURES) });
        break;
      case AuditKind.toolsFrozen:
        toolFreezes.inc();
        break;
      case AuditKind.observerFinding:
        findings.inc({ rule: code(attrs['rule']), severity: oneOf(attrs['severity'], SEVERITIES) });
        break;
      case AuditKind.observerIntervention:
        interventions.inc({ action: oneOf(attrs['action'], ACTIONS) });
        break;
      default:
        break;
    }
  };

  return {
    observe,
    appendFailed: (input) =>
      appendFailures.inc({ source: code(input?.source), kind: oneOf(input?.kind, KINDS) }),
  };
}

/**
 * Wraps an audit client so every event appended through it is observed by `metrics`, once: a repeat
 * of an `id` the sink already stored (a retried workflow task) is not counted again.
 */
export function meteredAudit(
  client: AuditClient,
  metrics: AuditMetrics,
  options: { maxIds?: number } = {},
): AuditClient {
  const seen = new Bounded<true>(options.maxIds ?? 10_000);
  return {
    async append(input) {
      let event: AuditEvent;
      try {
        event = await client.append(input);
      } catch (error) {
        metrics.appendFailed(input);
        throw error;
      }
      const id = input.id;
      if (id === undefined || !seen.has(id)) {
        if (id !== undefined) seen.set(id, true);
        metrics.observe(event);
      }
      return event;
    },
  };
}
