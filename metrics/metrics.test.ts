/**
 * The metrics registry (exposition format, escaping, cardinality cap, scrape-time gauges), the
 * audit-derived metrics (fed with events shaped as the emitters write them, and with the events of
 * a real run on the dev server), the HTTP endpoint and the Temporal exporter options.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RuntimeOptions } from '@temporalio/worker';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createMemoryAudit } from '../activities/audit/index.ts';
import type { AuditEvent, AuditEventInput } from '../activities/audit/types.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { createModelProxy } from '../activities/model/proxy.ts';
import { createScriptedProvider } from '../activities/model/scripted.ts';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from '../test/agent-stack.ts';
import { createAuditMetrics, meteredAudit } from './audit-metrics.ts';
import { AuditMetric } from './names.ts';
import { MetricsError, MetricsRegistry, OVERFLOW_LABEL_VALUE } from './registry.ts';
import type { Counter, Histogram } from './registry.ts';
import { fetchExposition, registerProcessMetrics, serveMetrics } from './server.ts';
import { temporalPrometheusOptions } from './temporal.ts';

/** The sample lines of one metric family (HELP/TYPE left out). */
function samples(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(name) && /^[a-z_]+(?:\{| )/.test(l));
}

function thrown(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (error instanceof MetricsError) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('did not throw');
}

describe('MetricsRegistry', () => {
  it('renders counters, gauges and histograms in the text exposition format 0.0.4', () => {
    const registry = new MetricsRegistry();
    const requests = registry.counter({
      name: 'agent_runtime_test_requests_total',
      help: 'Requests.',
      labelNames: ['method', 'code'],
    });
    const temperature = registry.gauge({ name: 'agent_runtime_test_temperature', help: 'Degrees.' });
    const latency = registry.histogram({
      name: 'agent_runtime_test_latency_seconds',
      help: 'Latency.',
      labelNames: ['route'],
      buckets: [0.1, 1],
    });
    const unlabelled = registry.histogram({
      name: 'agent_runtime_test_sizes',
      help: 'Sizes.',
      buckets: [10],
    });
    requests.inc({ method: 'GET', code: '200' });
    requests.inc({ method: 'GET', code: '200' }, 2);
    requests.inc({ method: 'POST', code: '500' });
    temperature.set(undefined, 21.5);
    temperature.dec(undefined, 0.5);
    latency.observe({ route: '/a' }, 0.05);
    latency.observe({ route: '/a' }, 0.5);
    latency.observe({ route: '/a' }, 3);
    expect(requests.get({ method: 'GET', code: '200' })).toBe(3);
    expect(latency.get({ route: '/a' })).toEqual({ count: 3, sum: 3.55 });
    expect(unlabelled.get()).toEqual({ count: 0, sum: 0 });
    expect(registry.render()).toMatchInlineSnapshot(`
      "# HELP agent_runtime_metrics_series_overflow_total Observations recorded under __overflow__ because their metric reached its label-combination cap.
      # TYPE agent_runtime_metrics_series_overflow_total counter
      # HELP agent_runtime_metrics_collect_failures_total Scrape-time collect callbacks or extra exposition sources that failed.
      # TYPE agent_runtime_metrics_collect_failures_total counter
      # HELP agent_runtime_test_requests_total Requests.
      # TYPE agent_runtime_test_requests_total counter
      agent_runtime_test_requests_total{method="GET",code="200"} 3
      agent_runtime_test_requests_total{method="POST",code="500"} 1
      # HELP agent_runtime_test_temperature Degrees.
      # TYPE agent_runtime_test_temperature gauge
      agent_runtime_test_temperature 21
      # HELP agent_runtime_test_latency_seconds Latency.
      # TYPE agent_runtime_test_latency_seconds histogram
      agent_runtime_test_latency_seconds_bucket{route="/a",le="0.1"} 1
      agent_runtime_test_latency_seconds_bucket{route="/a",le="1"} 2
      agent_runtime_test_latency_seconds_bucket{route="/a",le="+Inf"} 3
      agent_runtime_test_latency_seconds_sum{route="/a"} 3.55
      agent_runtime_test_latency_seconds_count{route="/a"} 3
      # HELP agent_runtime_test_sizes Sizes.
      # TYPE agent_runtime_test_sizes histogram
      agent_runtime_test_sizes_bucket{le="10"} 0
      agent_runtime_test_sizes_bucket{le="+Inf"} 0
      agent_runtime_test_sizes_sum 0
      agent_runtime_test_sizes_count 0
      "
    `);
  });

  it('escapes label values and help text, and cuts very long label values', () => {
    const registry = new MetricsRegistry();
    const c = registry.counter({
      name: 'agent_runtime_test_escape_total',
      help: 'Back\\slash and\nnew line "quoted".',
      labelNames: ['v'],
    });
    c.inc({ v: 'a\\b"c"\nd' });
    c.inc({ v: 'x'.repeat(500) });
    const text = registry.render();
    expect(text).toContain('# HELP agent_runtime_test_escape_total Back\\\\slash and\\nnew line "quoted".\n');
    expect(text).toContain('agent_runtime_test_escape_total{v="a\\\\b\\"c\\"\\nd"} 1\n');
    expect(text).toContain(`agent_runtime_test_escape_total{v="${'x'.repeat(127)}…"} 1\n`);
    // every line is one sample or comment: nothing a label value holds can start a line of its own
    expect(
      text.split('\n').filter((l) => l.length > 0 && !l.startsWith('#') && !l.startsWith('agent_runtime_')),
    ).toEqual([]);
  });

  it('caps label combinations: further ones share the __overflow__ series and are counted', () => {
    const registry = new MetricsRegistry({ maxSeriesPerMetric: 2 });
    const c = registry.counter({
      name: 'agent_runtime_test_capped_total',
      help: 'Capped.',
      labelNames: ['a', 'b'],
    });
    c.inc({ a: '1', b: 'x' });
    c.inc({ a: '2', b: 'x' });
    c.inc({ a: '3', b: 'x' });
    c.inc({ a: '4', b: 'y' }, 5);
    c.inc({ a: '1', b: 'x' });
    expect(c.size).toBe(3);
    expect(c.get({ a: OVERFLOW_LABEL_VALUE, b: OVERFLOW_LABEL_VALUE })).toBe(6);
    expect(c.get({ a: '3', b: 'x' })).toBeUndefined();
    expect(registry.overflows.get({ metric: 'agent_runtime_test_capped_total' })).toBe(2);
    const text = registry.render();
    expect(samples(text, 'agent_runtime_test_capped_total')).toEqual([
      'agent_runtime_test_capped_total{a="1",b="x"} 2',
      'agent_runtime_test_capped_total{a="2",b="x"} 1',
      'agent_runtime_test_capped_total{a="__overflow__",b="__overflow__"} 6',
    ]);
    expect(samples(text, 'agent_runtime_metrics_series_overflow_total')).toEqual([
      'agent_runtime_metrics_series_overflow_total{metric="agent_runtime_test_capped_total"} 2',
    ]);
    // histograms overflow the same way
    const h = registry.histogram({
      name: 'agent_runtime_test_capped_seconds',
      help: 'h',
      labelNames: ['k'],
      buckets: [1],
    });
    for (const k of ['a', 'b', 'c', 'd']) h.observe({ k }, 0.5);
    expect(h.get({ k: OVERFLOW_LABEL_VALUE })).toEqual({ count: 2, sum: 1 });
  });

  it('computes gauges on scrape; a failing collect keeps the scrape and is counted', () => {
    const registry = new MetricsRegistry();
    let queue = 3;
    registry.gauge({
      name: 'agent_runtime_test_queue',
      help: 'Queue.',
      labelNames: ['name'],
      collect: (g) => {
        g.reset();
        if (queue > 0) g.set({ name: 'q' }, queue);
      },
    });
    registry.gauge({
      name: 'agent_runtime_test_broken',
      help: 'Broken.',
      collect: () => {
        throw new Error('boom');
      },
    });
    expect(samples(registry.render(), 'agent_runtime_test_queue')).toEqual([
      'agent_runtime_test_queue{name="q"} 3',
    ]);
    queue = 0;
    const text = registry.render();
    expect(samples(text, 'agent_runtime_test_queue')).toEqual([]);
    expect(samples(text, 'agent_runtime_test_broken')).toEqual(['agent_runtime_test_broken 0']);
    expect(samples(text, 'agent_runtime_metrics_collect_failures_total')).toEqual([
      'agent_runtime_metrics_collect_failures_total{metric="agent_runtime_test_broken"} 2',
    ]);
  });

  it('refuses bad names, duplicates, wrong labels, bad values and bad buckets', () => {
    const registry = new MetricsRegistry();
    const c = registry.counter({ name: 'agent_runtime_test_total', help: 'h', labelNames: ['a'] });
    const g = registry.gauge({ name: 'agent_runtime_test_gauge', help: 'h' });
    const cases = {
      noPrefix: () => registry.counter({ name: 'requests_total', help: 'h' }),
      badChar: () => registry.counter({ name: 'agent_runtime_bad-name', help: 'h' }),
      prefixOnly: () => registry.counter({ name: 'agent_runtime_', help: 'h' }),
      badLabel: () => registry.counter({ name: 'agent_runtime_x_total', help: 'h', labelNames: ['a-b'] }),
      reservedLabel: () =>
        registry.counter({ name: 'agent_runtime_y_total', help: 'h', labelNames: ['__name'] }),
      le: () => registry.histogram({ name: 'agent_runtime_z_seconds', help: 'h', labelNames: ['le'] }),
      repeated: () => registry.counter({ name: 'agent_runtime_w_total', help: 'h', labelNames: ['a', 'a'] }),
      duplicate: () => registry.counter({ name: 'agent_runtime_test_total', help: 'h' }),
      missingLabel: () => c.inc({} as never),
      extraLabel: () => c.inc({ a: '1', b: '2' } as never),
      nonStringLabel: () => c.inc({ a: 7 } as never),
      negative: () => c.inc({ a: '1' }, -1),
      nan: () => g.set(undefined, Number.NaN),
      infinite: () => c.inc({ a: '1' }, Infinity),
      infiniteObservation: () =>
        registry
          .histogram({ name: 'agent_runtime_s_seconds', help: 'h', buckets: [1] })
          .observe(undefined, Infinity),
      unsorted: () => registry.histogram({ name: 'agent_runtime_u_seconds', help: 'h', buckets: [1, 0.5] }),
      empty: () => registry.histogram({ name: 'agent_runtime_v_seconds', help: 'h', buckets: [] }),
      infBucket: () =>
        registry.histogram({ name: 'agent_runtime_t_seconds', help: 'h', buckets: [1, Infinity] }),
      cap: () => new MetricsRegistry({ maxSeriesPerMetric: 0 }),
    };
    expect(Object.fromEntries(Object.entries(cases).map(([k, fn]) => [k, thrown(fn)])))
      .toMatchInlineSnapshot(`
        {
          "badChar": {
            "code": "METRICS_INVALID_NAME",
            "message": "metric name "agent_runtime_bad-name" must match ^[a-zA-Z_:][a-zA-Z0-9_:]*$ and start with agent_runtime_",
          },
          "badLabel": {
            "code": "METRICS_INVALID_NAME",
            "message": "agent_runtime_x_total: label name "a-b" is not allowed",
          },
          "cap": {
            "code": "METRICS_INVALID_OPTION",
            "message": "maxSeriesPerMetric must be a positive integer, got 0",
          },
          "duplicate": {
            "code": "METRICS_DUPLICATE",
            "message": "metric agent_runtime_test_total is already registered",
          },
          "empty": {
            "code": "METRICS_INVALID_BUCKETS",
            "message": "agent_runtime_v_seconds: buckets must be finite, ascending and distinct, got []",
          },
          "extraLabel": {
            "code": "METRICS_INVALID_LABELS",
            "message": "agent_runtime_test_total: expected labels {a}, got {a, b}",
          },
          "infBucket": {
            "code": "METRICS_INVALID_BUCKETS",
            "message": "agent_runtime_t_seconds: buckets must be finite, ascending and distinct, got [1, Infinity]",
          },
          "infinite": {
            "code": "METRICS_INVALID_VALUE",
            "message": "agent_runtime_test_total: value Infinity is not finite",
          },
          "infiniteObservation": {
            "code": "METRICS_INVALID_VALUE",
            "message": "agent_runtime_s_seconds: value Infinity is not finite",
          },
          "le": {
            "code": "METRICS_INVALID_NAME",
            "message": "agent_runtime_z_seconds: label name "le" is not allowed",
          },
          "missingLabel": {
            "code": "METRICS_INVALID_LABELS",
            "message": "agent_runtime_test_total: expected labels {a}, got {}",
          },
          "nan": {
            "code": "METRICS_INVALID_VALUE",
            "message": "agent_runtime_test_gauge: value NaN is not a number",
          },
          "negative": {
            "code": "METRICS_INVALID_VALUE",
            "message": "agent_runtime_test_total: a counter cannot decrease (-1)",
          },
          "noPrefix": {
            "code": "METRICS_INVALID_NAME",
            "message": "metric name "requests_total" must match ^[a-zA-Z_:][a-zA-Z0-9_:]*$ and start with agent_runtime_",
          },
          "nonStringLabel": {
            "code": "METRICS_INVALID_LABELS",
            "message": "agent_runtime_test_total: label a must be a string",
          },
          "prefixOnly": {
            "code": "METRICS_INVALID_NAME",
            "message": "metric name "agent_runtime_" must match ^[a-zA-Z_:][a-zA-Z0-9_:]*$ and start with agent_runtime_",
          },
          "repeated": {
            "code": "METRICS_INVALID_NAME",
            "message": "agent_runtime_w_total: label names repeat",
          },
          "reservedLabel": {
            "code": "METRICS_INVALID_NAME",
            "message": "agent_runtime_y_total: label name "__name" is not allowed",
          },
          "unsorted": {
            "code": "METRICS_INVALID_BUCKETS",
            "message": "agent_runtime_u_seconds: buckets must be finite, ascending and distinct, got [1, 0.5]",
          },
        }
      `);
    // nothing half-registered
    expect(registry.names()).toEqual([
      'agent_runtime_metrics_series_overflow_total',
      'agent_runtime_metrics_collect_failures_total',
      'agent_runtime_test_total',
      'agent_runtime_test_gauge',
      'agent_runtime_s_seconds',
    ]);
    // a gauge may be infinite (an age that never started)
    g.set(undefined, Infinity);
    expect(samples(registry.render(), 'agent_runtime_test_gauge')).toEqual(['agent_runtime_test_gauge +Inf']);
    g.set(undefined, -Infinity);
    expect(samples(registry.render(), 'agent_runtime_test_gauge')).toEqual(['agent_runtime_test_gauge -Inf']);
  });
});

// --- audit events as the emitters write them -------------------------------------------------

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
let seq = 0;
function ev(
  kind: AuditEventInput['kind'],
  attrs: Record<string, unknown>,
  over: Partial<Omit<AuditEvent, 'kind' | 'attrs'>> & { atMs?: number } = {},
): AuditEvent {
  seq += 1;
  const { atMs, ...rest } = over;
  return {
    seq,
    ts: new Date(atMs ?? T0).toISOString(),
    source: 'workflow',
    agent: 'ops-agent',
    run: 'run-1',
    step: null,
    kind,
    attrs,
    ...rest,
  };
}

/** `workflows/agent-run.ts` → `emit(AuditKind.decision, step, {...})`. */
function decision(step: number, tool: string, tier: string, code: string, ruleId: string | null): AuditEvent {
  return ev(
    AuditKind.decision,
    {
      tool,
      args: {},
      rationale: 'why',
      tier,
      baseTier: tier,
      ruleId,
      code,
      reason: 'text for humans',
      resource: null,
      posture: 'normal',
      policyVersion: 'sha256:abc',
    },
    { step },
  );
}

/** `worker/guard.ts`: started, then result of one attempt. */
function execution(step: number, tool: string, ok: boolean, startMs: number, endMs: number): AuditEvent[] {
  const base = { source: 'guard' as const, step };
  return [
    ev(
      AuditKind.executionStarted,
      {
        tool,
        resource: null,
        tier: 'autonomous',
        ruleId: 'r',
        decisionCode: 'rule_matched',
        claimed: {},
        approvers: [],
        effect: 'none',
        attempt: 1,
      },
      { ...base, atMs: startMs },
    ),
    ev(
      AuditKind.executionResult,
      ok
        ? { tool, ok: true, replayed: false, attempt: 1 }
        : { tool, ok: false, replayed: false, attempt: 1, code: 'TOOL_NOT_FOUND', detail: null },
      { ...base, atMs: endMs },
    ),
  ];
}

function metricsOf(options: Parameters<typeof createAuditMetrics>[1] = {}) {
  const registry = new MetricsRegistry();
  const metrics = createAuditMetrics(registry, options);
  const counter = (name: string) => registry.get(name) as Counter<string>;
  const histogram = (name: string) => registry.get(name) as Histogram<string>;
  return { registry, metrics, counter, histogram };
}

describe('createAuditMetrics', () => {
  it('counts decisions, denials (decision and guard codes) and executions with their duration', () => {
    const { registry, metrics, counter, histogram } = metricsOf();
    const events = [
      decision(1, 'fs.list', 'autonomous', 'rule_matched', 'read-workspace'),
      ...execution(1, 'fs.list', true, T0, T0 + 250),
      decision(2, 'fs.read', 'prohibited', 'rule_matched', 'secrets-never'),
      decision(3, 'shell.exec', 'prohibited', 'unknown_tool', null),
      decision(4, 'fs.write', 'preapproved', 'rule_matched', 'write-docs'),
      ...execution(4, 'fs.write', false, T0 + 1000, T0 + 3000),
      // guard refusal, as worker/guard.ts writes it
      ev(
        AuditKind.executionRefused,
        {
          tier: 'prohibited',
          ruleId: null,
          decisionCode: 'tool_frozen',
          claimed: {},
          message: 'the guard’s decision is prohibited (tool_frozen)',
          attempt: 1,
          code: 'GUARD_PROHIBITED',
        },
        { source: 'guard', step: 5 },
      ),
      // a replayed result (journal), with no started event
      ev(
        AuditKind.executionResult,
        { tool: 'fs.write', ok: true, replayed: true, attempt: 2 },
        { source: 'guard', step: 4 },
      ),
    ];
    for (const e of events) metrics.observe(e);
    expect(counter(AuditMetric.decisions).get({ agent: 'ops-agent', tier: 'prohibited' })).toBe(2);
    expect(counter(AuditMetric.decisions).get({ agent: 'ops-agent', tier: 'autonomous' })).toBe(1);
    const text = registry.render();
    expect(samples(text, AuditMetric.denials)).toEqual([
      'agent_runtime_denials_total{agent="ops-agent",reason="rule_matched"} 1',
      'agent_runtime_denials_total{agent="ops-agent",reason="unknown_tool"} 1',
      'agent_runtime_denials_total{agent="ops-agent",reason="GUARD_PROHIBITED"} 1',
    ]);
    expect(samples(text, AuditMetric.executions)).toEqual([
      'agent_runtime_executions_total{tool="fs.list",outcome="ok"} 1',
      'agent_runtime_executions_total{tool="fs.write",outcome="failed"} 1',
      'agent_runtime_executions_total{tool="unknown",outcome="refused"} 1',
      'agent_runtime_executions_total{tool="fs.write",outcome="replayed"} 1',
    ]);
    expect(histogram(AuditMetric.executionSeconds).get({ tool: 'fs.list' })).toEqual({ count: 1, sum: 0.25 });
    expect(histogram(AuditMetric.executionSeconds).get({ tool: 'fs.write' })).toEqual({ count: 1, sum: 2 });
    expect(samples(text, AuditMetric.events)).toEqual([
      'agent_runtime_audit_events_total{source="workflow",kind="decision"} 4',
      'agent_runtime_audit_events_total{source="guard",kind="execution.started"} 2',
      'agent_runtime_audit_events_total{source="guard",kind="execution.result"} 3',
      'agent_runtime_audit_events_total{source="guard",kind="execution.refused"} 1',
    ]);
  });

  it('tracks approvals by request id: pending, latency from event ts, outcome once per request', () => {
    const { registry, metrics, counter, histogram } = metricsOf();
    const requested = (step: number, atMs: number) =>
      ev(
        AuditKind.approvalRequested,
        {
          approvalWorkflowId: `run-1/approval/${step}`,
          tool: 'fs.write',
          actionDigest: 'd',
          ruleId: 'write-config',
          eligible: ['dana'],
          quorum: 1,
          timeoutMs: 900_000,
        },
        { step, atMs },
      );
    for (const step of [4, 5, 6]) metrics.observe(requested(step, T0 + step * 1000));
    metrics.observe(requested(4, T0 + 9_000)); // a repeat does not reopen or move the start
    expect(samples(registry.render(), AuditMetric.approvalsPending)).toEqual([
      'agent_runtime_approvals_pending 3',
    ]);
    metrics.observe(
      ev(
        AuditKind.approvalDecided,
        {
          approvalWorkflowId: 'run-1/approval/4',
          status: 'approved',
          approvedBy: ['dana'],
          deniedBy: null,
          reason: null,
          refusedAttempts: 1,
        },
        { step: 4, atMs: T0 + 4_000 + 90_000 },
      ),
    );
    // a revoked run: the approval workflow and the run both report the request cancelled
    metrics.observe(
      ev(
        AuditKind.approvalDecided,
        { approvalWorkflowId: 'run-1/approval/5', status: 'cancelled' },
        { step: 5, atMs: T0 + 65_000 },
      ),
    );
    metrics.observe(
      ev(
        AuditKind.approvalDecided,
        { approvalWorkflowId: 'run-1/approval/5', status: 'cancelled', reason: 'the run was revoked' },
        { step: 5, atMs: T0 + 65_001 },
      ),
    );
    // a decision this process never saw requested: counted, no latency
    metrics.observe(
      ev(
        AuditKind.approvalDecided,
        { approvalWorkflowId: 'other/approval/1', status: 'timed_out' },
        { step: 1 },
      ),
    );
    const text = registry.render();
    expect(samples(text, AuditMetric.approvalsPending)).toEqual(['agent_runtime_approvals_pending 1']);
    expect(samples(text, AuditMetric.approvalsDecided)).toEqual([
      'agent_runtime_approvals_decided_total{outcome="approved"} 1',
      'agent_runtime_approvals_decided_total{outcome="cancelled"} 1',
      'agent_runtime_approvals_decided_total{outcome="timed_out"} 1',
    ]);
    expect(histogram(AuditMetric.approvalLatency).get({ outcome: 'approved' })).toEqual({
      count: 1,
      sum: 90,
    });
    expect(histogram(AuditMetric.approvalLatency).get({ outcome: 'cancelled' })).toEqual({
      count: 1,
      sum: 60,
    });
    expect(histogram(AuditMetric.approvalLatency).get({ outcome: 'timed_out' })).toBeUndefined();
    expect(samples(text, `${AuditMetric.approvalLatency}_bucket{outcome="approved"`)).toContain(
      'agent_runtime_approval_latency_seconds_bucket{outcome="approved",le="120"} 1',
    );
    // votes (workflows/approval.ts) and deliveries (approval-channels/core/service.ts)
    metrics.observe(
      ev(AuditKind.voteRefused, {
        approvalWorkflowId: 'run-1/approval/4',
        via: 'update',
        approver: 'bob',
        code: 'VOTE_BY_REQUESTER',
      }),
    );
    metrics.observe(
      ev(AuditKind.voteAccepted, {
        approvalWorkflowId: 'run-1/approval/4',
        via: 'update',
        approver: 'dana',
        decision: 'approve',
        reason: null,
      }),
    );
    metrics.observe(
      ev(
        AuditKind.approvalDelivery,
        {
          approvalWorkflowId: 'run-1/approval/4',
          notice: 'request',
          channel: 'email',
          principal: 'dana',
          outcome: 'failed',
          error: 'SMTP 421 "try later"',
        },
        { source: 'approvals' },
      ),
    );
    metrics.observe(
      ev(
        AuditKind.approvalDelivery,
        {
          approvalWorkflowId: 'run-1/approval/4',
          notice: 'request',
          principal: 'erin',
          outcome: 'no_channel',
          note: 'reachable through the web inbox only',
        },
        { source: 'approvals' },
      ),
    );
    metrics.observe(
      ev(
        AuditKind.approvalAttempt,
        {
          approvalWorkflowId: 'run-1/approval/4',
          channel: 'web',
          action: 'edit',
          principal: 'dana',
          outcome: 'ok',
          revision: 2,
        },
        { source: 'approvals' },
      ),
    );
    expect(counter(AuditMetric.votes).get({ outcome: 'refused' })).toBe(1);
    expect(counter(AuditMetric.votes).get({ outcome: 'approve' })).toBe(1);
    expect(counter(AuditMetric.approvalDeliveries).get({ channel: 'email', outcome: 'failed' })).toBe(1);
    expect(counter(AuditMetric.approvalDeliveries).get({ channel: 'none', outcome: 'no_channel' })).toBe(1);
    expect(counter(AuditMetric.approvalAttempts).get({ channel: 'web', action: 'edit', outcome: 'ok' })).toBe(
      1,
    );
  });

  it('reads model.call attrs as agent-run writes them from the model proxy’s response', async () => {
    const proxy = createModelProxy({ providers: { scripted: createScriptedProvider() } });
    const response = await proxy.complete({
      agentId: 'ops-agent',
      runId: 'run-1',
      turn: 0,
      model: {
        provider: 'scripted',
        turns: [{ say: 'hi', calls: [{ tool: 'fs.list', args: { path: '/' }, rationale: 'look' }] }],
      },
      messages: [{ role: 'user', content: 'list the files' }],
      tools: [],
    });
    // workflows/agent-run.ts → emit(AuditKind.modelCall, null, {...})
    const attrs = {
      turn: 1,
      provider: response.provider,
      model: response.model,
      finishReason: response.finishReason,
      proposed: response.toolCalls.map((c) => ({ tool: c.tool, rationale: c.rationale })),
      usage: response.usage,
      proxy: response.proxy,
    };
    const priced = metricsOf({
      pricing: (provider, model) =>
        provider === response.provider && model === response.model
          ? { inputUsdPerMTok: 3, outputUsdPerMTok: 15 }
          : undefined,
    });
    priced.metrics.observe(ev(AuditKind.modelCall, attrs));
    const labels = { agent: 'ops-agent', provider: response.provider, model: response.model };
    const tokens = priced.counter(AuditMetric.modelTokens);
    expect(tokens.get({ ...labels, direction: 'input' })).toBe(response.usage.inputTokens);
    expect(tokens.get({ ...labels, direction: 'output' })).toBe(response.usage.outputTokens);
    expect(response.usage.inputTokens).toBeGreaterThan(0);
    expect(priced.counter(AuditMetric.modelCost).get(labels)).toBeCloseTo(
      (response.usage.inputTokens * 3 + response.usage.outputTokens * 15) / 1e6,
      12,
    );
    expect(
      priced
        .counter(AuditMetric.modelCalls)
        .get({ provider: response.provider, model: response.model, finish_reason: 'tool_calls' }),
    ).toBe(1);
    // the proxy reports no fallback, and the turn's latency (proxy.latencyMs) fills the histogram
    expect(priced.counter(AuditMetric.modelFallbacks).size).toBe(0);
    expect(priced.histogram(AuditMetric.modelLatency).size).toBe(1);

    // a routed turn answered by the fallback target, with latency and cost on the event
    const { metrics, counter, histogram } = metricsOf();
    metrics.observe(
      ev(AuditKind.modelCall, {
        ...attrs,
        provider: 'local',
        model: 'llama',
        costUsd: 0.002,
        proxy: {
          traceId: 't',
          target: 'fallback-local',
          route: 'routes[0]',
          attempts: 2,
          fallbackCause: 'MODEL_RATE_LIMIT',
          overheadMs: 1.5,
          latencyMs: 1500,
        },
      }),
    );
    expect(counter(AuditMetric.modelFallbacks).get({ provider: 'local' })).toBe(1);
    expect(histogram(AuditMetric.modelLatency).get({ provider: 'local' })).toEqual({ count: 1, sum: 1.5 });
    expect(
      counter(AuditMetric.modelCost).get({ agent: 'ops-agent', provider: 'local', model: 'llama' }),
    ).toBe(0.002);
  });

  it('counts runs, posture changes, freezes, observer findings and interventions; lag from the last ts', () => {
    let nowMs = T0;
    const { registry, metrics, counter } = metricsOf({ now: () => nowMs });
    expect(samples(registry.render(), AuditMetric.lag)).toEqual([]);
    metrics.observe(
      ev(AuditKind.runStarted, {
        requestedBy: 'bob',
        task: 't',
        policyVersion: 'p',
        model: 'scripted',
        budgets: {},
      }),
    );
    metrics.observe(ev(AuditKind.runRefused, { code: 'RUN_REQUESTER_NOT_DIRECTOR', requestedBy: 'eve' }));
    metrics.observe(
      ev(AuditKind.postureChanged, { from: 'normal', to: 'conservative', by: 'observer', reason: null }),
    );
    metrics.observe(
      ev(AuditKind.postureChanged, {
        from: 'cancel',
        to: 'revoked',
        by: 'temporal-cancel',
        reason: 'workflow cancelled',
      }),
    );
    metrics.observe(
      ev(AuditKind.toolsFrozen, { tools: ['fs.write'], frozen: ['fs.write'], by: 'observer', reason: null }),
    );
    metrics.observe(ev(AuditKind.runFinished, { status: 'revoked', reason: 'cancelled', usage: {} }));
    // observer/service.ts
    metrics.observe(
      ev(
        AuditKind.observerFinding,
        {
          findingId: 'obs_1',
          rule: 'exfil-burst',
          severity: 'high',
          mode: 'enforce',
          status: 'open',
          group: 'agent=a',
          events: [1],
          at: 'x',
          runs: ['run-1'],
          detail: null,
        },
        { source: 'observer' },
      ),
    );
    for (const action of ['freeze', 'revoke'])
      metrics.observe(
        ev(
          AuditKind.observerIntervention,
          {
            interventionId: 'i',
            findingId: 'obs_1',
            rule: 'exfil-burst',
            action,
            tools: [],
            ttlMs: null,
            expiresAt: null,
            outcome: 'applied',
            error: null,
          },
          { source: 'observer', atMs: T0 + 2_000 },
        ),
      );
    nowMs = T0 + 7_500;
    const text = registry.render();
    expect(samples(text, AuditMetric.lag)).toEqual(['agent_runtime_audit_lag_seconds 5.5']);
    expect(counter(AuditMetric.runsStarted).get({ agent: 'ops-agent' })).toBe(1);
    expect(counter(AuditMetric.runsFinished).get({ agent: 'ops-agent', status: 'revoked' })).toBe(1);
    expect(counter(AuditMetric.runsRefused).get({ code: 'RUN_REQUESTER_NOT_DIRECTOR' })).toBe(1);
    expect(samples(text, AuditMetric.postureChanges)).toEqual([
      'agent_runtime_posture_changes_total{to="conservative"} 1',
      'agent_runtime_posture_changes_total{to="revoked"} 1',
    ]);
    expect(samples(text, AuditMetric.toolFreezes)).toEqual(['agent_runtime_tool_freezes_total 1']);
    expect(samples(text, AuditMetric.observerFindings)).toEqual([
      'agent_runtime_observer_findings_total{rule="exfil-burst",severity="high"} 1',
    ]);
    expect(samples(text, AuditMetric.observerInterventions)).toEqual([
      'agent_runtime_observer_interventions_total{action="freeze"} 1',
      'agent_runtime_observer_interventions_total{action="revoke"} 1',
    ]);
  });

  it('keeps free text out of labels and never throws on malformed events', () => {
    const { registry, metrics, counter } = metricsOf();
    metrics.observe(ev(AuditKind.decision, { tier: 'PROHIBITED!!', code: 'a message with spaces' }));
    metrics.observe(ev(AuditKind.decision, { tier: 'prohibited', code: 'x'.repeat(65) }, { agent: null }));
    metrics.observe(ev(AuditKind.postureChanged, { to: { nested: true } }));
    metrics.observe(ev(AuditKind.observerFinding, { rule: 'r', severity: 'apocalyptic' }));
    metrics.observe(
      ev(AuditKind.modelCall, {
        usage: { inputTokens: -5, outputTokens: Number.NaN },
        proxy: { latencyMs: 'slow' },
      }),
    );
    metrics.observe(ev('no.such.kind' as never, {}, { source: 'weird source' as never, ts: 'not a date' }));
    expect(counter(AuditMetric.decisions).get({ agent: 'ops-agent', tier: 'unknown' })).toBe(1);
    expect(counter(AuditMetric.denials).get({ agent: 'unknown', reason: 'unknown' })).toBe(1);
    expect(counter(AuditMetric.postureChanges).get({ to: 'unknown' })).toBe(1);
    expect(counter(AuditMetric.observerFindings).get({ rule: 'r', severity: 'unknown' })).toBe(1);
    expect(counter(AuditMetric.modelTokens).size).toBe(0);
    expect(counter(AuditMetric.events).get({ source: 'unknown', kind: 'unknown' })).toBe(1);
    const junk = fc.oneof(fc.anything(), fc.dictionary(fc.string(), fc.anything()));
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.values(AuditKind), 'x'),
        junk,
        fc.record({
          agent: fc.anything(),
          run: fc.anything(),
          step: fc.anything(),
          ts: fc.anything(),
          source: fc.anything(),
        }),
        (kind, attrs, envelope) => {
          metrics.observe({ seq: 1, kind, attrs, ...envelope } as unknown as AuditEvent);
          metrics.appendFailed({ kind, attrs, ...envelope } as unknown as AuditEventInput);
        },
      ),
      { numRuns: 2_000 },
    );
    metrics.observe(null as unknown as AuditEvent);
    expect(() => registry.render()).not.toThrow();
  });

  it('meteredAudit observes each stored event once and counts failed appends', async () => {
    const { metrics, counter } = metricsOf();
    const audit = meteredAudit(createMemoryAudit(), metrics);
    const input: AuditEventInput = {
      id: 'wf/run/1',
      source: 'workflow',
      agent: 'a',
      run: 'r',
      step: 1,
      kind: AuditKind.decision,
      attrs: { tier: 'autonomous', tool: 't' },
    };
    const first = await audit.append(input);
    const again = await audit.append(input); // a retried workflow task: the sink keeps the first
    expect(again.seq).toBe(first.seq);
    await audit.append({ ...input, id: 'wf/run/2' });
    await audit.append({
      source: 'guard',
      agent: 'a',
      run: 'r',
      step: 1,
      kind: AuditKind.executionResult,
      attrs: { tool: 't', ok: true },
    });
    expect(counter(AuditMetric.decisions).get({ agent: 'a', tier: 'autonomous' })).toBe(2);
    await expect(audit.append({ ...input, id: 'wf/run/3', kind: 'bogus' as never })).rejects.toThrow();
    expect(counter(AuditMetric.appendFailures).get({ source: 'workflow', kind: 'unknown' })).toBe(1);
    expect(counter(AuditMetric.events).get({ source: 'workflow', kind: 'decision' })).toBe(2);
  });
});

// --- a real run on the dev server --------------------------------------------------------------

const stack = useAgentStack({ name: 'metrics' });

describe('audit metrics of a real run', () => {
  it('match what the run did: every tier, an approval, denials, tokens', async () => {
    const governance = await loadGovernance(OPS_GOVERNANCE);
    const handle = await stack.start({
      governance,
      requestedBy: 'bob',
      turns: [
        {
          say: 'Looking around, then writing.',
          calls: [
            { tool: 'fs.list', args: { path: '/workspace/docs' }, rationale: 'see what docs exist' },
            {
              tool: 'fs.write',
              args: { path: '/workspace/docs/m.md', content: '# M\n' },
              rationale: 'write the doc',
            },
            { tool: 'fs.read', args: { path: '/workspace/secrets/token' }, rationale: 'need the token' },
            {
              tool: 'fs.write',
              args: { path: '/workspace/config/app.yaml', content: 'replicas: 3\n', mode: 'overwrite' },
              rationale: 'scale up',
            },
            { tool: 'shell.exec', args: { cmd: 'rm -rf /' }, rationale: 'clean up' },
          ],
        },
        { final: 'Done.' },
      ],
    });
    const waiting = await stack.waitFor(handle, (v) => v.pendingApproval !== null);
    const approvalId = waiting.pendingApproval?.approvalWorkflowId ?? '';
    await expect(stack.vote(approvalId, 'bob', 'approve')).rejects.toMatchObject({
      code: 'VOTE_BY_REQUESTER',
    });
    await stack.vote(approvalId, 'dana', 'approve');
    const result = await handle.result();
    expect(result.status).toBe('completed');

    const events = stack.audit.events().filter((e) => e.run === handle.workflowId);
    const { registry, metrics, counter, histogram } = metricsOf();
    for (const e of events) metrics.observe(e);
    const agent = governance.document.identity.id;
    const text = registry.render();
    expect(samples(text, AuditMetric.decisions)).toEqual([
      `agent_runtime_decisions_total{agent="${agent}",tier="autonomous"} 1`,
      `agent_runtime_decisions_total{agent="${agent}",tier="preapproved"} 1`,
      `agent_runtime_decisions_total{agent="${agent}",tier="prohibited"} 2`,
      `agent_runtime_decisions_total{agent="${agent}",tier="approval"} 1`,
    ]);
    expect(samples(text, AuditMetric.denials)).toEqual([
      `agent_runtime_denials_total{agent="${agent}",reason="rule_matched"} 1`,
      `agent_runtime_denials_total{agent="${agent}",reason="unknown_tool"} 1`,
    ]);
    expect(counter(AuditMetric.executions).get({ tool: 'fs.list', outcome: 'ok' })).toBe(1);
    expect(counter(AuditMetric.executions).get({ tool: 'fs.write', outcome: 'ok' })).toBe(2);
    expect(histogram(AuditMetric.executionSeconds).get({ tool: 'fs.write' })?.count).toBe(2);
    expect(samples(text, AuditMetric.approvalsPending)).toEqual(['agent_runtime_approvals_pending 0']);
    expect(counter(AuditMetric.approvalsDecided).get({ outcome: 'approved' })).toBe(1);
    expect(histogram(AuditMetric.approvalLatency).get({ outcome: 'approved' })?.count).toBe(1);
    // the CLI refused bob before anything was signed: no vote.refused reached the workflow
    expect(counter(AuditMetric.votes).get({ outcome: 'refused' })).toBeUndefined();
    expect(counter(AuditMetric.votes).get({ outcome: 'approve' })).toBe(1);
    const modelCall = events.find((e) => e.kind === AuditKind.modelCall);
    const provider = String(modelCall?.attrs['provider']);
    const model = String(modelCall?.attrs['model']);
    const tokens = (direction: string) =>
      counter(AuditMetric.modelTokens).get({ agent, provider, model, direction });
    expect(tokens('input')).toBe(result.usage.inputTokens);
    expect(tokens('output')).toBe(result.usage.outputTokens);
    expect(counter(AuditMetric.runsFinished).get({ agent, status: 'completed' })).toBe(1);
    // every event counted once, under its own source and kind
    const total = samples(text, AuditMetric.events).reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
    expect(total).toBe(events.length);
    expect(counter(AuditMetric.events).get({ source: 'guard', kind: 'execution.result' })).toBe(3);
  });
});

// --- the endpoint ------------------------------------------------------------------------------

describe('serveMetrics', () => {
  it('serves /metrics and /healthz; 404 elsewhere, 405 for other methods', async () => {
    const registry = new MetricsRegistry();
    registry.counter({ name: 'agent_runtime_test_hits_total', help: 'Hits.' }).inc();
    registerProcessMetrics(registry, { startedAtMs: 1_700_000_000_000 });
    const server = await serveMetrics({ registry, port: 0, extra: () => 'temporal_worker_start 1' });
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      const body = await res.text();
      expect(body).toContain('\nagent_runtime_test_hits_total 1\n');
      expect(body).toContain('\nagent_runtime_process_start_time_seconds 1700000000\n');
      expect(body).toMatch(/\nagent_runtime_process_resident_memory_bytes [1-9]\d+\n/);
      expect(body.endsWith('\ntemporal_worker_start 1\n')).toBe(true);
      expect((await fetch(`${server.url}/metrics?name[]=x`)).status).toBe(200);
      const health = await fetch(`${server.url}/healthz`);
      expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
      const head = await fetch(`${server.url}/metrics`, { method: 'HEAD' });
      expect([head.status, await head.text()]).toEqual([200, '']);
      for (const path of ['/', '/metrics/', '/METRICS', '/%6Detrics', '/metrics%2F', '/favicon.ico']) {
        const r = await fetch(`${server.url}${path}`);
        expect([path, r.status, await r.text()]).toEqual([path, 404, 'Not found\n']);
      }
      for (const method of ['POST', 'PUT', 'DELETE']) {
        const r = await fetch(`${server.url}/metrics`, { method, body: method === 'DELETE' ? null : 'x' });
        expect([method, r.status, r.headers.get('allow')]).toEqual([method, 405, 'GET, HEAD']);
        await r.body?.cancel();
      }
    } finally {
      await server.close();
    }
  });

  it('still answers when the extra source fails, and counts it', async () => {
    const registry = new MetricsRegistry();
    const core = await serveMetrics({ registry: new MetricsRegistry(), port: 0 });
    const coreUrl = `${core.url}/metrics`;
    const server = await serveMetrics({
      registry,
      port: 0,
      extra: () => fetchExposition(coreUrl, { timeoutMs: 500 }),
    });
    try {
      expect(await (await fetch(`${server.url}/metrics`)).text()).toContain(
        '# TYPE agent_runtime_metrics_series_overflow_total counter\n# HELP',
      );
      await core.close();
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(200);
      expect(samples(await res.text(), 'agent_runtime_metrics_collect_failures_total')).toEqual([
        'agent_runtime_metrics_collect_failures_total{metric="extra"} 1',
      ]);
      await expect(fetchExposition(`${server.url}/nope`)).rejects.toMatchObject({
        code: 'METRICS_FETCH_FAILED',
      });
    } finally {
      await server.close();
    }
  });

  it('refuses a bad port and reports a port in use', async () => {
    const registry = new MetricsRegistry();
    await expect(serveMetrics({ registry, port: 70_000 })).rejects.toMatchObject({
      code: 'METRICS_INVALID_OPTION',
      message: 'port must be an integer from 0 to 65535, got 70000',
    });
    await expect(serveMetrics({ registry, port: 1.5 })).rejects.toMatchObject({
      code: 'METRICS_INVALID_OPTION',
    });
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      await expect(serveMetrics({ registry, port })).rejects.toMatchObject({
        code: 'METRICS_LISTEN_FAILED',
        message: `cannot serve metrics on 127.0.0.1:${port}: EADDRINUSE`,
      });
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

describe('temporalPrometheusOptions', () => {
  it('is the telemetryOptions shape Runtime.install takes (nothing installed here)', () => {
    const telemetry: NonNullable<RuntimeOptions['telemetryOptions']> = temporalPrometheusOptions(
      '127.0.0.1:9464',
      {
        globalTags: { process: 'agents-worker' },
      },
    );
    expect(telemetry).toEqual({
      metrics: {
        metricPrefix: 'temporal_',
        globalTags: { process: 'agents-worker' },
        prometheus: {
          bindAddress: '127.0.0.1:9464',
          countersTotalSuffix: false,
          unitSuffix: false,
          useSecondsForDurations: false,
        },
      },
    });
    expect(temporalPrometheusOptions('[::1]:9464').metrics.prometheus.bindAddress).toBe('[::1]:9464');
    expect(temporalPrometheusOptions('0.0.0.0:9464').metrics).not.toHaveProperty('globalTags');
    for (const bad of ['127.0.0.1', ':9464', '127.0.0.1:0', '127.0.0.1:65536', 'http://x:1', 'a b:1'])
      expect(() => temporalPrometheusOptions(bad)).toThrow(
        `Temporal metrics bind address must be host:port with a port from 1 to 65535, got ${JSON.stringify(bad)}`,
      );
  });
});
