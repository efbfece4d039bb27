import { createServer } from 'node:http';
import { afterEach, describe, expect, test } from 'vitest';
import { listen } from '../common/listen.ts';
import { MetricsRegistry, serveMetrics } from '../metrics/index.ts';
import type { MetricsServer } from '../metrics/index.ts';
import type { AuditEvent } from '../activities/audit/types.ts';
import { parseExposition, sampleEvents, startMetricsScraper } from './scrape.ts';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

function registry(): MetricsRegistry {
  const r = new MetricsRegistry();
  r.counter({ name: 'agent_runtime_decisions_total', help: 'd', labelNames: ['agent', 'tier'] }).inc(
    { agent: 'ops "x"\\y', tier: 'approval' },
    3,
  );
  r.gauge({ name: 'agent_runtime_approvals_pending', help: 'p' }).set(undefined, 40);
  r.histogram({
    name: 'agent_runtime_model_latency_seconds',
    help: 'l',
    labelNames: ['provider'],
    buckets: [1],
  }).observe({ provider: 'scripted' }, 0.5);
  return r;
}

describe('parseExposition', () => {
  test('reads what our registry renders: labels unescaped, histogram buckets skipped, +Inf kept', () => {
    const text = `${registry().render()}junk line\nagent_runtime_x{a="1"} +Inf\nagent_runtime_y NaN\n`;
    const samples = parseExposition(text).filter(
      (s) => s.name.startsWith('agent_runtime_') && !s.name.includes('overflow'),
    );
    expect(samples).toEqual([
      { name: 'agent_runtime_decisions_total', labels: { agent: 'ops "x"\\y', tier: 'approval' }, value: 3 },
      { name: 'agent_runtime_approvals_pending', labels: {}, value: 40 },
      { name: 'agent_runtime_model_latency_seconds_sum', labels: { provider: 'scripted' }, value: 0.5 },
      { name: 'agent_runtime_model_latency_seconds_count', labels: { provider: 'scripted' }, value: 1 },
      { name: 'agent_runtime_x', labels: { a: '1' }, value: Infinity },
    ]);
  });

  test('stops at the sample limit', () => {
    expect(parseExposition('a 1\nb 2\nc 3\n', 2)).toHaveLength(2);
  });

  test('events carry the agent label, negative seqs and never a run', () => {
    let seq = 0;
    const events = sampleEvents(
      'workers',
      [{ name: 'n', labels: { agent: 'a1' }, value: 1 }],
      new Date('2026-12-01T00:00:00Z'),
      () => --seq,
    );
    expect(events).toEqual([
      {
        seq: -1,
        ts: '2026-12-01T00:00:00.000Z',
        source: 'observer',
        agent: 'a1',
        run: null,
        step: null,
        kind: 'metric.sample',
        attrs: { job: 'workers', name: 'n', labels: { agent: 'a1' }, value: 1 },
      },
    ]);
  });
});

describe('startMetricsScraper', () => {
  test('scrapes a real /metrics endpoint; a failing target reports and does not stop the others', async () => {
    const metrics: MetricsServer = await serveMetrics({ registry: registry(), port: 0 });
    closers.push(() => metrics.close());
    const broken = createServer((_req, res) => res.writeHead(500).end());
    const brokenUrl = await listen(broken, 0, '127.0.0.1');
    closers.push(() => new Promise((resolve) => broken.close(() => resolve())));
    const got: AuditEvent[] = [];
    const errors: string[] = [];
    const scraper = startMetricsScraper({
      targets: [
        { job: 'workers', url: `${metrics.url}/metrics`, everyMs: 60_000 },
        { job: 'broken', url: `${brokenUrl}/metrics`, everyMs: 60_000 },
      ],
      onEvents: async (events) => void got.push(...events),
      onError: (error) => errors.push((error as Error).message),
    });
    closers.push(async () => scraper.close());
    await scraper.scrapeOnce();
    expect(got.find((e) => e.attrs['name'] === 'agent_runtime_approvals_pending')).toMatchObject({
      kind: 'metric.sample',
      attrs: { job: 'workers', value: 40 },
    });
    expect(got.every((e) => e.seq < 0)).toBe(true);
    expect(errors).toEqual([`${brokenUrl}/metrics answered 500`]);
  });
});
