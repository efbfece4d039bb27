/**
 * The observer process's core: subscribes to the aggregator's stream (no polling of agent
 * components), runs every event through the rule engine, records findings in its own store,
 * applies the rule's intervention to the runs concerned (enforce mode only), lifts interventions
 * when their TTL runs out or an operator lifts them, and renews its heartbeat lease on the
 * aggregator (runs that require the lease go conservative without it).
 *
 * Everything it does is audited as `observer.*` events written with the observer's own token.
 * Findings and interventions have deterministic ids, so replaying events after a restart (the
 * warm-up that rebuilds the engine's windows) never records or applies anything twice.
 * @module
 */
import type { AuditRecord } from '../audit/chain.ts';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditClient, AuditEvent } from '../activities/audit/types.ts';
import { createEngine, findingId } from './rules/engine.ts';
import type { BaselineLookup, Engine, Finding } from './rules/engine.ts';
import type { Intervention, Rule, Severity } from './rules/schema.ts';
import { FindingStatus, InterventionStatus } from './store.ts';
import type { FindingRow, InterventionRow, ObserverStore } from './store.ts';
import type { RunControl } from './interventions.ts';

/** Where records come from: the aggregator client's (or an `AuditStore`'s) `subscribe`. */
export interface RecordSource {
  subscribe(
    stream: string,
    fromSeq: number,
    onRecord: (record: AuditRecord) => void | Promise<void>,
    options?: { readonly signal?: AbortSignal; readonly onError?: (error: unknown) => void },
  ): () => void;
}

/** The heartbeat lease on the aggregator. */
export interface LeaseWriter {
  putLease(name: string, holder: string, ttlMs: number): Promise<unknown>;
}

/** An alert handed to the alert channel (webhook, approvals service). */
export interface ObserverAlert {
  readonly findingId: string;
  readonly ruleId: string;
  readonly severity: Severity;
  readonly agent: string | null;
  readonly runs: readonly string[];
  readonly summary: string;
  readonly at: string;
}

/** Governance-change bookkeeping (learning windows); see `observer/learning.ts`. */
export interface LearningHooks {
  onGovernanceChange(event: AuditEvent): { readonly accepted: boolean; readonly code?: string };
  onPolicyApplied(
    agent: string,
    run: string,
    from: string,
    to: string,
    atMs: number,
  ): { readonly status: 'approved' | 'unapproved' };
  classify(
    agent: string,
    policyVersion: string,
    events: readonly AuditEvent[],
    atMs: number,
  ): 'declared' | 'undeclared' | 'no-window';
}

/** Baseline learning; see `observer/baselines.ts`. */
export interface BaselineHooks {
  observe(event: AuditEvent): void;
  markTainted(run: string): void;
  /** Copies (agent, from)'s baseline to `to`, so undeclared behaviour keeps the old normal. */
  seed?(agent: string, fromVersion: string, toVersion: string): boolean;
  readonly lookup: BaselineLookup;
}

/** Counters the service keeps (exported as Prometheus metrics by the process). */
export interface ObserverStats {
  events: number;
  metricSamples: number;
  lastSeq: number;
  lastEventTs: string | null;
  findings: Record<string, number>;
  interventions: Record<string, number>;
  interventionFailures: number;
  heartbeatOkAt: string | null;
  heartbeatError: string | null;
  /** Rule evaluation time per event, in ms (the last 4,096 events). */
  readonly evalMs: number[];
}

export interface ObserverServiceOptions {
  readonly rules: readonly Rule[];
  readonly store: ObserverStore;
  readonly source: RecordSource;
  /** The observer's own audit writer (source `observer`). */
  readonly audit: AuditClient;
  readonly control: RunControl;
  readonly lease?: LeaseWriter;
  readonly heartbeat?: { readonly holder: string; readonly ttlMs: number; readonly everyMs: number };
  readonly alert?: (alert: ObserverAlert) => Promise<void>;
  readonly learning?: LearningHooks;
  readonly baselines?: BaselineHooks;
  /** Default `default`. */
  readonly stream?: string;
  /** `false` reports every finding as shadow, whatever the rule says. Default true. */
  readonly enforce?: boolean;
  /** Events re-read before the cursor on start, to rebuild correlation windows. Default 5,000. */
  readonly warmupEvents?: number;
  /** How long `revoke` waits for cancellation before terminating. Default 10 s. */
  readonly revokeGraceMs?: number;
  /** How often TTLs are checked. Default 1 s. */
  readonly sweepEveryMs?: number;
  readonly now?: () => number;
  /** Called with each event's rule evaluation time in ms (the rule-eval histogram). */
  readonly onEvaluated?: (ms: number) => void;
  readonly onError?: (error: unknown) => void;
}

/** A snapshot for `observer status`. */
export interface ObserverStatus {
  readonly startedAt: string;
  readonly stream: string;
  readonly cursor: number;
  readonly rules: number;
  readonly enforce: boolean;
  readonly stats: Omit<ObserverStats, 'evalMs'> & { readonly evalP99Ms: number | null };
  readonly activeInterventions: number;
  readonly writtenAt: string;
}

export interface ObserverService {
  /** Renews the lease once, then subscribes from the stored cursor (minus the warm-up). */
  start(): Promise<void>;
  /** Stops the subscription, timers and in-flight work; does not close the store. */
  stop(): Promise<void>;
  /** Resolves once every delivered event and every intervention started for it is done. */
  idle(): Promise<void>;
  /** Lifts an active intervention (operator action); false when it is not active. */
  lift(interventionId: string, by: string, reason: string): Promise<boolean>;
  /**
   * Evaluates scraped metric samples (`metric.sample` events with negative seqs, see `scrape.ts`)
   * after the stream events delivered so far; they never move the cursor.
   */
  ingestMetrics(events: readonly AuditEvent[]): Promise<void>;
  /** Lifts interventions whose TTL ran out (also on a timer). */
  sweep(): Promise<void>;
  status(): ObserverStatus;
  readonly stats: ObserverStats;
}

const OBSERVER = 'observer';
const RECENT_EVENTS = 50_000;
const RUN_VERSIONS = 10_000;
const EVAL_SAMPLES = 4_096;
/** Synthetic rules the service itself raises. */
export const ServiceRule = {
  unapprovedChange: 'governance-change-unapproved',
  invalidChange: 'governance-change-invalid',
} as const;

function remember<K, V>(map: Map<K, V>, key: K, value: V, cap: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > cap) map.delete(map.keys().next().value as K);
}

function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? null;
}

/** Creates the observer service. */
export function createObserverService(options: ObserverServiceOptions): ObserverService {
  const now = options.now ?? Date.now;
  const iso = (ms = now()): string => new Date(ms).toISOString();
  const stream = options.stream ?? 'default';
  const enforce = options.enforce ?? true;
  const store = options.store;
  const engine: Engine = createEngine(options.rules, {
    now,
    ...(options.baselines ? { baselines: options.baselines.lookup } : {}),
  });
  const recent = new Map<number, AuditEvent>();
  const runVersion = new Map<string, string>();
  const runAgent = new Map<string, string>();
  const stats: ObserverStats = {
    events: 0,
    metricSamples: 0,
    lastSeq: 0,
    lastEventTs: null,
    findings: {},
    interventions: {},
    interventionFailures: 0,
    heartbeatOkAt: null,
    heartbeatError: null,
    evalMs: [],
  };
  const startedAt = iso();
  const inflight = new Set<Promise<void>>();
  let chain: Promise<void> = Promise.resolve();
  let unsubscribe: (() => void) | undefined;
  const abort = new AbortController();
  const timers: ReturnType<typeof setInterval>[] = [];
  let stopped = false;
  let resumedAt = 0;

  const report = (error: unknown): void => options.onError?.(error);
  const track = (work: Promise<void>): void => {
    const p = work.catch(report).finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const audit = async (
    kind: AuditKind,
    agent: string | null,
    run: string | null,
    attrs: Record<string, unknown>,
    id: string,
  ): Promise<void> => {
    await options.audit.append({ source: OBSERVER, agent, run, step: null, kind, attrs, id });
  };

  // --- interventions -----------------------------------------------------------------------
  const by = (finding: FindingRow): { by: string; reason: string } => ({
    by: OBSERVER,
    reason: `finding ${finding.id.slice(0, 16)} (${finding.ruleId})`,
  });

  const applyTo = async (
    finding: FindingRow,
    intervention: Intervention,
    run: string | null,
  ): Promise<void> => {
    const id = `${finding.id}:${intervention.action}:${run ?? finding.agent ?? '*'}`;
    const appliedAt = iso();
    const liftable = intervention.action === 'conservative' || intervention.action === 'freeze';
    const row: InterventionRow = {
      id,
      findingId: finding.id,
      action: intervention.action,
      run,
      agent: finding.agent,
      tools: intervention.tools ?? [],
      status: liftable ? InterventionStatus.active : InterventionStatus.done,
      appliedAt,
      expiresAt:
        liftable && intervention.ttlMs !== undefined ? iso(Date.parse(appliedAt) + intervention.ttlMs) : null,
      endedAt: null,
      detail: null,
    };
    if (!store.addIntervention(row)) return; // applied before (a replayed event)
    let outcome: string;
    let error: string | null = null;
    try {
      const { by: who, reason } = by(finding);
      switch (intervention.action) {
        case 'annotate':
          outcome = 'recorded';
          break;
        case 'alert':
          if (options.alert)
            await options.alert({
              findingId: finding.id,
              ruleId: finding.ruleId,
              severity: finding.severity,
              agent: finding.agent,
              runs: run ? [run] : [],
              summary: `${finding.ruleId} (${finding.severity}) on ${finding.group}`,
              at: finding.at,
            });
          outcome = options.alert ? 'sent' : 'no-channel';
          break;
        case 'conservative':
          outcome = run ? await options.control.setPosture(run, 'conservative', who, reason) : 'no-run';
          break;
        case 'freeze':
          outcome = run ? await options.control.freeze(run, row.tools, who, reason) : 'no-run';
          break;
        case 'revoke':
          outcome = run
            ? await options.control.revoke(run, reason, options.revokeGraceMs ?? 10_000)
            : 'no-run';
          break;
      }
    } catch (e) {
      outcome = 'failed';
      error = e instanceof Error ? e.message : String(e);
      stats.interventionFailures++;
      store.endIntervention(id, InterventionStatus.failed, iso(), error);
    }
    if (outcome === 'run-closed' || outcome === 'no-run')
      store.endIntervention(id, InterventionStatus.done, iso(), outcome);
    stats.interventions[intervention.action] = (stats.interventions[intervention.action] ?? 0) + 1;
    await audit(
      AuditKind.observerIntervention,
      finding.agent,
      run,
      {
        interventionId: id,
        findingId: finding.id,
        rule: finding.ruleId,
        action: intervention.action,
        tools: row.tools,
        ttlMs: intervention.ttlMs ?? null,
        expiresAt: row.expiresAt,
        outcome,
        error,
      },
      `observer:intervention:${id}`,
    );
  };

  const intervene = async (
    finding: FindingRow,
    intervention: Intervention,
    runs: string[],
  ): Promise<void> => {
    const targets = new Set(runs);
    // a finding about an agent (not one run) covers every open run of that agent
    const agentWide = /(?:^|,)agent=/.test(finding.group) && !/(?:^|,)run=/.test(finding.group);
    if (finding.agent !== null && agentWide && intervention.action !== 'alert') {
      try {
        for (const run of await options.control.openRuns(finding.agent)) targets.add(run);
      } catch (error) {
        report(error);
      }
    }
    if (intervention.action === 'alert' || intervention.action === 'annotate' || targets.size === 0) {
      await applyTo(finding, intervention, targets.size === 1 ? [...targets][0]! : null);
      return;
    }
    await Promise.all([...targets].map((run) => applyTo(finding, intervention, run)));
  };

  /** Ends `row` and undoes its effect, unless another active intervention still covers it. */
  const end = async (row: InterventionRow, status: InterventionStatus, who: string, reason: string) => {
    if (!store.endIntervention(row.id, status, iso(), reason)) return false;
    const others = store
      .interventions({ status: InterventionStatus.active, limit: 10_000 })
      .filter((o) => o.run === row.run && o.action === row.action);
    let outcome = 'lifted';
    try {
      if (row.run !== null && row.action === 'freeze') {
        const stillFrozen = new Set(others.flatMap((o) => o.tools));
        const tools = row.tools.filter((t) => !stillFrozen.has(t));
        outcome = tools.length
          ? await options.control.unfreeze(row.run, tools, who, reason)
          : 'still-covered';
      } else if (row.run !== null && row.action === 'conservative') {
        const state = others.length ? null : await options.control.state(row.run);
        outcome =
          others.length > 0
            ? 'still-covered'
            : state?.posture === 'conservative'
              ? await options.control.setPosture(row.run, 'normal', who, reason)
              : 'posture-changed-since';
      }
    } catch (error) {
      outcome = 'failed';
      report(error);
    }
    await audit(
      AuditKind.observerInterventionLifted,
      row.agent,
      row.run,
      {
        interventionId: row.id,
        findingId: row.findingId,
        action: row.action,
        status,
        by: who,
        reason,
        outcome,
      },
      `observer:lift:${row.id}`,
    );
    return true;
  };

  // --- findings ----------------------------------------------------------------------------
  const handleFinding = async (
    finding: Finding,
    extra: { agent?: string | null; detail?: string } = {},
  ): Promise<void> => {
    if (store.finding(finding.id)) return;
    const events = finding.events.map((seq) => recent.get(seq)).filter((e): e is AuditEvent => !!e);
    const runs = [...new Set(events.map((e) => e.run).filter((r): r is string => r !== null))];
    const agents = [...new Set(events.map((e) => e.agent).filter((a): a is string => a !== null))];
    const agent = extra.agent !== undefined ? extra.agent : agents.length === 1 ? agents[0]! : null;
    let status: FindingStatus =
      finding.mode === 'enforce' && enforce ? FindingStatus.open : FindingStatus.shadow;
    let detail = extra.detail ?? null;
    if (options.learning && agent !== null && runs.length > 0) {
      const version = runVersion.get(runs[0]!);
      if (version !== undefined) {
        const verdict = options.learning.classify(agent, version, events, Date.parse(finding.at) || now());
        if (verdict === 'declared') {
          status = FindingStatus.learning;
          detail = `declared behaviour of an approved governance change (policy ${version}): learning`;
        }
      }
    }
    const row: FindingRow = {
      id: finding.id,
      ruleId: finding.ruleId,
      severity: finding.severity,
      mode: finding.mode,
      group: finding.group,
      agent,
      run: runs.length === 1 ? runs[0]! : null,
      events: finding.events,
      at: finding.at,
      status,
      detail,
    };
    if (!store.addFinding(row)) return;
    if (status !== FindingStatus.learning) for (const run of runs) options.baselines?.markTainted(run);
    stats.findings[finding.ruleId] = (stats.findings[finding.ruleId] ?? 0) + 1;
    await audit(
      AuditKind.observerFinding,
      agent,
      row.run,
      {
        findingId: finding.id,
        rule: finding.ruleId,
        severity: finding.severity,
        mode: finding.mode,
        status,
        group: finding.group,
        events: finding.events,
        at: finding.at,
        runs,
        detail,
      },
      `observer:finding:${finding.id}`,
    );
    if (status === FindingStatus.open && finding.intervention) {
      const intervention = finding.intervention;
      track(intervene(row, intervention, runs));
    }
  };

  const synthetic = (
    ruleId: string,
    event: AuditEvent,
    intervention: Intervention | undefined,
    detail: string,
  ): Promise<void> =>
    handleFinding(
      {
        id: findingId(ruleId, `run=${event.run ?? '*'}`, [event.seq]),
        ruleId,
        severity: 'critical',
        mode: 'enforce',
        group: `agent=${event.agent ?? '*'},run=${event.run ?? '*'}`,
        events: [event.seq],
        at: event.ts,
        ...(intervention ? { intervention } : {}),
      },
      { agent: event.agent, detail },
    );

  const governance = async (event: AuditEvent): Promise<void> => {
    if (event.kind === AuditKind.runStarted && event.run !== null) {
      const version = event.attrs['policyVersion'];
      if (typeof version === 'string') remember(runVersion, event.run, version, RUN_VERSIONS);
      if (event.agent !== null) remember(runAgent, event.run, event.agent, RUN_VERSIONS);
    }
    if (event.kind === AuditKind.governanceChange && options.learning) {
      const verdict = options.learning.onGovernanceChange(event);
      if (!verdict.accepted)
        await synthetic(
          ServiceRule.invalidChange,
          event,
          { action: 'alert' },
          `governance change refused: ${verdict.code ?? 'invalid'}`,
        );
    }
    if (event.kind === AuditKind.policyUpdated && event.attrs['phase'] === 'applied' && event.run !== null) {
      const from = String(event.attrs['from']);
      const to = String(event.attrs['to']);
      remember(runVersion, event.run, to, RUN_VERSIONS);
      const agent = event.agent ?? runAgent.get(event.run) ?? null;
      if (options.learning && agent !== null) {
        const verdict = options.learning.onPolicyApplied(
          agent,
          event.run,
          from,
          to,
          Date.parse(event.ts) || now(),
        );
        if (verdict.status === 'approved') options.baselines?.seed?.(agent, from, to);
        if (verdict.status === 'unapproved')
          await synthetic(
            ServiceRule.unapprovedChange,
            event,
            { action: 'conservative' },
            `policy ${from} → ${to} applied without an approved, signed governance change`,
          );
      }
    }
  };

  const ingest = async (record: AuditRecord): Promise<void> => {
    if (record.seq <= stats.lastSeq) return; // a redelivery
    const event = record as AuditEvent;
    remember(recent, event.seq, event, RECENT_EVENTS);
    const t0 = performance.now();
    const findings = engine.ingest(event);
    const elapsed = performance.now() - t0;
    stats.evalMs.push(elapsed);
    options.onEvaluated?.(elapsed);
    if (stats.evalMs.length > EVAL_SAMPLES) stats.evalMs.splice(0, stats.evalMs.length - EVAL_SAMPLES);
    await governance(event);
    for (const finding of findings) await handleFinding(finding);
    // after the findings, so a run that just got one is tainted before `run.finished` is learned
    if (event.seq > resumedAt) options.baselines?.observe(event); // warm-up events were learned before
    stats.events++;
    stats.lastSeq = event.seq;
    stats.lastEventTs = event.ts;
    store.setCursor(stream, event.seq);
  };

  const ingestMetrics = (samples: readonly AuditEvent[]): Promise<void> => {
    const next = chain.then(async () => {
      if (stopped) return;
      for (const event of samples) {
        remember(recent, event.seq, event, RECENT_EVENTS);
        for (const finding of engine.ingest(event)) await handleFinding(finding, { agent: event.agent });
        stats.metricSamples++;
      }
    });
    chain = next.catch(report);
    return next;
  };

  const heartbeat = async (): Promise<void> => {
    if (!options.lease || !options.heartbeat) return;
    try {
      await options.lease.putLease(OBSERVER, options.heartbeat.holder, options.heartbeat.ttlMs);
      stats.heartbeatOkAt = iso();
      stats.heartbeatError = null;
    } catch (error) {
      stats.heartbeatError = error instanceof Error ? error.message : String(error);
    }
  };

  const lift = async (interventionId: string, who: string, reason: string): Promise<boolean> => {
    const row = store.intervention(interventionId);
    if (!row || row.status !== InterventionStatus.active) return false;
    return end(row, InterventionStatus.lifted, who, reason);
  };

  const status = (): ObserverStatus => {
    const { evalMs, ...rest } = stats;
    return {
      startedAt,
      stream,
      cursor: stats.lastSeq,
      rules: options.rules.length,
      enforce,
      stats: {
        ...rest,
        findings: { ...rest.findings },
        interventions: { ...rest.interventions },
        evalP99Ms: percentile(evalMs, 99),
      },
      activeInterventions: store.countInterventions(InterventionStatus.active),
      writtenAt: iso(),
    };
  };

  const sweep = async (): Promise<void> => {
    for (const request of store.pendingLifts()) {
      const lifted = await lift(request.interventionId, request.by, request.reason);
      store.finishLift(request.n, lifted ? 'lifted' : 'not-active', iso());
    }
    for (const f of engine.tick()) await handleFinding(f);
    for (const row of store.dueInterventions(iso()))
      await end(
        row,
        InterventionStatus.expired,
        OBSERVER,
        `TTL of intervention ${row.id.slice(0, 16)} ran out`,
      );
  };

  return {
    stats,
    status,
    sweep,
    ingestMetrics,
    async start() {
      await heartbeat();
      const cursor = store.cursor(stream);
      resumedAt = cursor;
      stats.lastSeq = Math.max(0, cursor - (options.warmupEvents ?? 5_000));
      const from = stats.lastSeq + 1;
      unsubscribe = options.source.subscribe(
        stream,
        from,
        (record) => {
          const next = chain.then(() => (stopped ? undefined : ingest(record)));
          chain = next.catch(report);
          return next.catch(() => undefined);
        },
        { signal: abort.signal, onError: report },
      );
      if (options.heartbeat) timers.push(setInterval(() => track(heartbeat()), options.heartbeat.everyMs));
      timers.push(
        setInterval(() => {
          track(sweep());
          store.putState('status', status());
        }, options.sweepEveryMs ?? 1_000),
      );
      store.putState('status', status());
    },
    async stop() {
      stopped = true;
      for (const timer of timers) clearInterval(timer);
      abort.abort();
      unsubscribe?.();
      await chain;
      await Promise.allSettled([...inflight]);
      store.putState('status', status());
    },
    async idle() {
      for (;;) {
        const before = chain;
        await before;
        await Promise.allSettled([...inflight]);
        if (chain === before && inflight.size === 0) return;
      }
    },
    lift,
  };
}
