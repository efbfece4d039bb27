/**
 * `agent-runtime observer serve --config F`: the observer as its own process, with its own
 * credentials (an aggregator token allowed to write only `observer` events, its own Temporal
 * client) and its own store. Wires the aggregator subscription, Temporal visibility and run
 * control, the rule set, learning windows, baselines, alerts and a Prometheus endpoint.
 * @module
 */
import { hostname } from 'node:os';
import { Client, Connection } from '@temporalio/client';
import { createAuditAggregatorClient } from '../audit/client.ts';
import { createApprovalsAlertSink } from '../approval-channels/alerts-client.ts';
import { loadPublicKeys } from '../approval-channels/keys.ts';
import {
  createAuditMetrics,
  meteredAudit,
  MetricsRegistry,
  registerProcessMetrics,
  serveMetrics,
} from '../metrics/index.ts';
import type { MetricsServer } from '../metrics/index.ts';
import { ObserverMetric } from '../metrics/names.ts';
import { println, readTextFile, UsageError } from '../cli/io.ts';
import type { CliIo } from '../cli/io.ts';
import { parseArgs } from 'node:util';
import { createBaselineLearner } from './baselines.ts';
import { temporalRunControl } from './interventions.ts';
import { createLearningWindows } from './learning.ts';
import { builtinRules } from './rules/builtin.ts';
import { parseRules } from './rules/schema.ts';
import type { Rule } from './rules/schema.ts';
import { createObserverService } from './service.ts';
import type { ObserverAlert, ObserverService } from './service.ts';
import { durationMs, loadObserverConfig } from './service-config.ts';
import type { ObserverConfig } from './service-config.ts';
import { openObserverStore } from './store.ts';
import { startMetricsScraper } from './scrape.ts';

/** A running observer process's parts. */
export interface RunningObserver {
  readonly service: ObserverService;
  readonly metricsUrl: string | undefined;
  stop(): Promise<void>;
}

/** Loads every rule the configuration names (built-ins first); rule errors name their file. */
export async function loadConfiguredRules(config: ObserverConfig): Promise<Rule[]> {
  const rules = config.rules.builtin ? builtinRules() : [];
  for (const file of config.rules.files) {
    try {
      rules.push(...parseRules(await readTextFile(file)));
    } catch (error) {
      throw Object.assign(error as Error, { message: `${file}: ${(error as Error).message}` });
    }
  }
  return rules;
}

/** POSTs each alert as JSON (`text` makes it readable by Slack-compatible incoming webhooks). */
function webhookAlert(url: string): (alert: ObserverAlert) => Promise<void> {
  return async (alert) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: `agent-runtime observer: ${alert.summary}`, ...alert }),
      signal: AbortSignal.timeout(5_000),
    });
    if (!res.ok) throw new Error(`alert webhook answered ${res.status}`);
  };
}

/** Every configured alert channel (webhook, approvals service); an alert fails only when all of them fail. */
export function configuredAlertSink(
  config: ObserverConfig,
  env: NodeJS.ProcessEnv,
): ((alert: ObserverAlert) => Promise<void>) | undefined {
  const sinks: ((alert: ObserverAlert) => Promise<void>)[] = [];
  if (config.alerts.webhook) sinks.push(webhookAlert(config.alerts.webhook));
  const approvals = config.alerts.approvals;
  if (approvals) {
    const token = env[approvals.tokenEnv];
    if (!token)
      throw new UsageError(`$${approvals.tokenEnv} (the approvals service's alert token) is not set`, '');
    sinks.push(createApprovalsAlertSink({ url: approvals.url, token }));
  }
  if (sinks.length === 0) return undefined;
  return async (alert) => {
    const results = await Promise.allSettled(sinks.map((send) => send(alert)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length === results.length) throw failed[0]!.reason;
  };
}

/** Starts an observer from a validated configuration. */
export async function startObserver(
  config: ObserverConfig,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void,
): Promise<RunningObserver> {
  const token = env[config.aggregator.tokenEnv];
  if (!token) throw new UsageError(`$${config.aggregator.tokenEnv} (the aggregator token) is not set`, '');
  const rules = await loadConfiguredRules(config);
  const alert = configuredAlertSink(config, env);
  const aggregator = createAuditAggregatorClient({
    url: config.aggregator.url,
    token,
    stream: config.aggregator.stream,
    writer: 'observer',
  });
  const connection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const store = openObserverStore(config.store.file);
  const now = Date.now;
  const trustedKeys = config.governanceKeys.length ? await loadPublicKeys(config.governanceKeys) : new Map();
  const learning = createLearningWindows({ now, trustedKeys });
  const baselines = createBaselineLearner({ now });
  const saved = store.getState('baselines');
  if (saved !== undefined) {
    try {
      baselines.restore(saved);
    } catch (error) {
      log(`observer: stored baselines not restored: ${(error as Error).message}`);
    }
  }
  const savedWindows = store.getState('learning');
  if (savedWindows !== undefined) {
    try {
      learning.restore(savedWindows);
    } catch (error) {
      log(`observer: stored learning windows not restored: ${(error as Error).message}`);
    }
  }

  const registry = new MetricsRegistry();
  registerProcessMetrics(registry);
  const auditMetrics = createAuditMetrics(registry);
  const evalSeconds = registry.histogram({
    name: ObserverMetric.ruleEvalSeconds,
    help: 'Time to evaluate every rule against one event.',
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01],
  });
  const eventsCounter = registry.counter({
    name: ObserverMetric.events,
    help: 'Audit events the observer evaluated.',
  });

  const service = createObserverService({
    rules,
    store,
    source: {
      subscribe: (stream, fromSeq, onRecord, options) =>
        aggregator.subscribe(
          stream,
          fromSeq,
          (record) => {
            eventsCounter.inc();
            return onRecord(record);
          },
          options,
        ),
    },
    // its own writes only: every process meters what it writes, so sums across jobs count each event once
    audit: meteredAudit(aggregator, auditMetrics),
    control: temporalRunControl(client),
    lease: aggregator,
    heartbeat: {
      holder: `observer@${hostname()}:${process.pid}`,
      ttlMs: durationMs(config.heartbeat.ttl),
      everyMs: durationMs(config.heartbeat.every),
    },
    ...(alert ? { alert } : {}),
    learning,
    baselines,
    stream: config.aggregator.stream,
    enforce: config.rules.enforce,
    revokeGraceMs: durationMs(config.revokeGrace),
    onEvaluated: (ms) => evalSeconds.observe(undefined, ms / 1000),
    onError: (error) => log(`observer: ${(error as Error).message ?? String(error)}`),
  });
  registry.gauge({
    name: ObserverMetric.heartbeatAgeSeconds,
    help: 'Seconds since the observer last renewed its heartbeat lease.',
    collect: (gauge) => {
      const ok = service.stats.heartbeatOkAt;
      gauge.set(undefined, ok ? (now() - Date.parse(ok)) / 1000 : Number.POSITIVE_INFINITY);
    },
  });
  const scraper = startMetricsScraper({
    targets: config.scrape.map((t) => ({ job: t.job, url: t.url, everyMs: durationMs(t.every) })),
    onEvents: (events) => service.ingestMetrics(events),
    onError: (error) => log(`observer: scrape: ${(error as Error).message}`),
  });
  const persist = setInterval(() => {
    store.putState('baselines', baselines.snapshot());
    store.putState('learning', learning.snapshot());
  }, 10_000);
  await service.start();
  let metrics: MetricsServer | undefined;
  if (config.metrics)
    metrics = await serveMetrics({ registry, host: config.metrics.host, port: config.metrics.port });
  log(
    `observer: ${rules.length} rules (${config.rules.enforce ? 'enforcing' : 'shadow only'}), subscribed to ${config.aggregator.url} stream ${config.aggregator.stream}` +
      (metrics ? `, metrics at ${metrics.url}/metrics` : ''),
  );
  return {
    service,
    metricsUrl: metrics?.url,
    stop: async () => {
      clearInterval(persist);
      scraper.close();
      await service.stop();
      store.putState('baselines', baselines.snapshot());
      store.putState('learning', learning.snapshot());
      await metrics?.close();
      await aggregator.close();
      await connection.close();
      store.close();
    },
  };
}

/** The `observer serve` command: runs until SIGTERM or SIGINT. */
export async function serveObserver(argv: readonly string[], io: CliIo, usage: string): Promise<number> {
  const { values } = parseArgs({ args: [...argv], strict: true, options: { config: { type: 'string' } } });
  if (values.config === undefined) throw new UsageError('missing --config', usage);
  const config = await loadObserverConfig(values.config);
  const running = await startObserver(config, process.env, (line) => println(io.stdout, line));
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await running.stop();
  println(io.stdout, 'observer: stopped');
  return 0;
}
