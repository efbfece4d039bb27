/**
 * The Grafana dashboard and the Prometheus config: every `agent_runtime_*` name a panel queries is one
 * this code (or the aggregator and observer, `names.ts`) produces, histogram suffixes only on
 * histograms, and the `temporal_*` names are what the Core SDK really exports (scraped from a worker
 * in a child process, so no runtime is installed here).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createAuditMetrics } from './audit-metrics.ts';
import { AggregatorMetric, AuditMetric, ObserverMetric, SERVICE_METRIC_NAMES } from './names.ts';
import { Histogram, MetricsRegistry } from './registry.ts';
import { registerProcessMetrics } from './server.ts';

const ROOT = join(import.meta.dirname, '..');
const DASHBOARD = join(ROOT, 'deploy', 'grafana', 'dashboards', 'agent-runtime.json');

interface Panel {
  readonly type: string;
  readonly title: string;
  readonly id: number;
  readonly datasource?: { readonly type: string; readonly uid: string };
  readonly targets?: readonly { readonly expr: string; readonly refId: string }[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  schemaVersion: number;
  uid: string;
  templating: { list: { type: string; name: string; query: unknown }[] };
  panels: Panel[];
};
const panels = dashboard.panels.filter((p) => p.type !== 'row');
const expressions = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

/** Metric names in a PromQL expression (label names and functions are not `prefix_…`). */
function namesIn(expr: string, prefix: string): string[] {
  return [...expr.matchAll(new RegExp(`\\b${prefix}[a-z0-9_]*`, 'g'))].map((m) => m[0]);
}

/** The registry every process builds, plus the aggregator's and observer's own names. */
function produced(): { names: Set<string>; histograms: Set<string> } {
  const registry = new MetricsRegistry();
  createAuditMetrics(registry);
  registerProcessMetrics(registry);
  const histograms = new Set(registry.names().filter((n) => registry.get(n) instanceof Histogram));
  histograms.add(AggregatorMetric.appendSeconds);
  histograms.add(ObserverMetric.ruleEvalSeconds);
  return { names: new Set([...registry.names(), ...SERVICE_METRIC_NAMES]), histograms };
}

/** Splits `x_bucket` / `x_sum` / `x_count` of a histogram `x` back to `x`. */
function family(name: string, histograms: ReadonlySet<string>): { base: string; suffix: string | null } {
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m && histograms.has(m[1] as string)) return { base: m[1] as string, suffix: m[2] as string };
  return { base: name, suffix: null };
}

describe('the Grafana dashboard', () => {
  it('is a schemaVersion ≥ 39 dashboard on a Prometheus datasource variable, with the five rows', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.templating.list.find((v) => v.type === 'datasource')).toMatchObject({
      name: 'datasource',
      query: 'prometheus',
    });
    expect(dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title)).toEqual([
      'Gateway',
      'Approvals',
      'Model',
      'Observer',
      'Temporal workers',
    ]);
    for (const p of panels) {
      expect([p.title, p.datasource]).toEqual([p.title, { type: 'prometheus', uid: '${datasource}' }]);
      expect(p.targets?.length ?? 0).toBeGreaterThan(0);
    }
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('queries only agent_runtime_* metrics the code produces, with histogram suffixes on histograms only', () => {
    const { names, histograms } = produced();
    const problems: string[] = [];
    const used = new Set<string>();
    for (const { panel, expr } of expressions) {
      let depth = 0;
      for (const c of expr) {
        depth += c === '(' ? 1 : c === ')' ? -1 : 0;
        if (depth < 0) break;
      }
      if (depth !== 0) problems.push(`${panel}: unbalanced parentheses in ${expr}`);
      for (const name of namesIn(expr, 'agent_runtime_')) {
        const { base, suffix } = family(name, histograms);
        used.add(base);
        if (!names.has(base)) problems.push(`${panel}: ${name} is produced by nothing`);
        if (histograms.has(base) && suffix === null)
          problems.push(`${panel}: histogram ${base} needs a suffix`);
        if (histograms.has(base) && expr.includes('histogram_quantile') && suffix !== 'bucket')
          problems.push(`${panel}: histogram_quantile over ${name}`);
      }
      if (expr.includes('histogram_quantile') && !/by \([^)]*\ble\b/.test(expr))
        problems.push(`${panel}: histogram_quantile without sum by (le)`);
    }
    expect(problems).toEqual([]);
    // what the brief asks each row to show is there
    for (const required of [
      AuditMetric.decisions,
      AuditMetric.denials,
      AuditMetric.executions,
      AuditMetric.approvalsPending,
      AuditMetric.approvalLatency,
      AuditMetric.approvalsDecided,
      AuditMetric.modelTokens,
      AuditMetric.modelCost,
      AuditMetric.modelLatency,
      AuditMetric.modelFallbacks,
      AuditMetric.observerFindings,
      AuditMetric.observerInterventions,
      AuditMetric.lag,
      AggregatorMetric.gaps,
    ])
      expect([required, used.has(required)]).toEqual([required, true]);
  });

  it('catches a name nothing produces', () => {
    const { histograms } = produced();
    expect(namesIn('sum(rate(agent_runtime_decision_total{agent=~"$agent"}[5m]))', 'agent_runtime_')).toEqual(
      ['agent_runtime_decision_total'],
    );
    expect(produced().names.has('agent_runtime_decision_total')).toBe(false);
    expect(family('agent_runtime_approval_latency_seconds_bucket', histograms)).toEqual({
      base: 'agent_runtime_approval_latency_seconds',
      suffix: 'bucket',
    });
    expect(family('agent_runtime_approvals_pending_count', histograms).suffix).toBeNull();
  });

  it('queries temporal_* names a Core SDK 1.24 worker really exports', async () => {
    const wanted = new Set(
      expressions.flatMap(({ expr }) => namesIn(expr, 'temporal_')).filter((n) => n !== 'temporal_'),
    );
    expect([...wanted].sort()).toEqual([
      'temporal_activity_execution_failed',
      'temporal_activity_execution_latency_bucket',
      'temporal_sticky_cache_size',
      'temporal_worker_task_slots_available',
      'temporal_workflow_completed',
      'temporal_workflow_failed',
      'temporal_workflow_task_execution_latency_bucket',
      'temporal_workflow_task_schedule_to_start_latency_bucket',
    ]);
    const exported = await scrapeCoreWorker();
    // activity and failure series appear only once an activity ran or a workflow failed; their
    // names are the Core SDK's (`activity_execution_latency`, `activity_execution_failed`, `workflow_failed`)
    const onlyAfterEvents = new Set([
      'temporal_activity_execution_failed',
      'temporal_activity_execution_latency_bucket',
      'temporal_workflow_failed',
    ]);
    expect([...wanted].filter((n) => !onlyAfterEvents.has(n) && !exported.includes(n))).toEqual([]);
    // Core's defaults, as temporalPrometheusOptions pins them: no `_total` on counters
    expect(exported).toContain('temporal_workflow_completed');
    expect(exported.some((n) => n.endsWith('_total'))).toBe(false);
  }, 120_000);
});

/**
 * Runs a worker with `temporalPrometheusOptions` in a child process against the shared dev server,
 * completes one workflow, and returns the metric names its Core exporter serves.
 */
async function scrapeCoreWorker(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'core-metrics-'));
  const require = createRequire(join(ROOT, 'package.json'));
  const url = (path: string) => pathToFileURL(path).href;
  const script = `
    const w = await import(${JSON.stringify(url(require.resolve('@temporalio/worker')))});
    const c = await import(${JSON.stringify(url(require.resolve('@temporalio/client')))});
    const { temporalPrometheusOptions } = await import(${JSON.stringify(url(join(ROOT, 'metrics', 'temporal.ts')))});
    const { findFreePort } = await import(${JSON.stringify(url(join(ROOT, 'worker', 'temporal', 'dev-server.ts')))});
    const { parseGovernanceOrThrow, policyVersionOf } = await import(${JSON.stringify(url(join(ROOT, 'policy', 'index.ts')))});
    const { readFileSync } = await import('node:fs');
    const [address, namespace, file] = process.argv.slice(2);
    const port = await findFreePort();
    w.Runtime.install({
      logger: new w.DefaultLogger('ERROR'),
      telemetryOptions: temporalPrometheusOptions('127.0.0.1:' + port),
    });
    const connection = await w.NativeConnection.connect({ address });
    const taskQueue = 'core-metrics-' + process.pid;
    const worker = await w.Worker.create({
      connection, namespace, taskQueue,
      workflowsPath: ${JSON.stringify(join(ROOT, 'test', 'workflows', 'decision-workflow.ts'))},
      bundlerOptions: { logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error } },
    });
    const running = worker.run();
    const client = new c.Client({ connection: await c.Connection.connect({ address }), namespace });
    const gov = parseGovernanceOrThrow(readFileSync(file, 'utf8'), file);
    await client.workflow.execute('decisionWorkflow', {
      taskQueue, workflowId: taskQueue,
      args: [{ document: gov.document, policyVersion: policyVersionOf(gov.document), calls: [], posture: 'normal' }],
    });
    let names = [];
    for (let i = 0; i < 50 && !names.includes('temporal_workflow_completed'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      const text = await (await fetch('http://127.0.0.1:' + port + '/metrics')).text();
      names = [...new Set(text.split('\\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]))];
    }
    worker.shutdown();
    await running;
    process.stdout.write(JSON.stringify(names.sort()));
    process.exit(0);
  `;
  const file = join(dir, 'core-metrics.mjs');
  writeFileSync(file, script);
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        file,
        inject('temporalAddress'),
        inject('temporalNamespace'),
        join(ROOT, 'examples', 'ops-staging', 'governance.yaml'),
      ],
      { cwd: ROOT, timeout: 100_000 },
    );
    return JSON.parse(stdout) as string[];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the Prometheus and Grafana provisioning', () => {
  it('scrapes the compose services', () => {
    const config = parseYaml(readFileSync(join(ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    expect(
      Object.fromEntries(
        config.scrape_configs.map((j) => [j.job_name, j.static_configs.flatMap((s) => s.targets)]),
      ),
    ).toEqual({
      'agents-worker': ['agents-worker:9464'],
      'tools-worker': ['tools-worker:9464'],
      approvals: ['approvals:9465'],
      'audit-aggregator': ['audit-aggregator:9466'],
      observer: ['observer:9467'],
      temporal: ['temporal:8000'],
    });
    for (const job of config.scrape_configs) expect(job.metrics_path ?? '/metrics').toBe('/metrics');
  });

  it('provisions the Prometheus datasource and the dashboard folder', () => {
    const read = (path: string) =>
      parseYaml(readFileSync(join(ROOT, 'deploy', 'grafana', 'provisioning', path), 'utf8'));
    expect(read('datasources/prometheus.yaml')).toMatchObject({
      apiVersion: 1,
      datasources: [{ type: 'prometheus', url: 'http://prometheus:9090', isDefault: true }],
    });
    expect(read('dashboards/agent-runtime.yaml')).toMatchObject({
      apiVersion: 1,
      providers: [{ type: 'file', options: { path: '/var/lib/grafana/dashboards' } }],
    });
  });
});
