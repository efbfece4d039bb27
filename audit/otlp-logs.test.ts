/**
 * OTLP log export of audit records against a real collector (an HTTP server on 127.0.0.1) and a
 * real SQLite store: the exact log record, batching, retries, a collector that hangs or refuses,
 * close, feeding from the head or the start, the configuration, and `agent-runtime audit serve`
 * as a real child process exporting every record it appends.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { toOtlpSpan } from '../activities/model/traces/otlp.ts';
import type { ModelTrace } from '../activities/model/traces/types.ts';
import type { AuditEventInput } from '../activities/audit/types.ts';
import { initSigningKey } from '../approval-channels/keys.ts';
import { createAuditAggregatorClient } from './client.ts';
import { openSqliteAuditStore } from './index.ts';
import type { AuditRecord, AuditStore } from './index.ts';
import {
  MAX_ATTRS,
  auditSeverity,
  createOtlpLogExporter,
  feedAuditLogExport,
  flattenAuditAttrs,
  streamHead,
  toOtlpLogRecord,
} from './otlp-logs.ts';
import type { AuditLogExportError, OtlpLogExporterOptions } from './otlp-logs.ts';
import { loadAggregatorConfig, parseOtlpHeaders } from './service-config.ts';
import { tokenSha256 } from './server.ts';

type Reply = number | 'hang' | { status: number; body: string };

interface LogRecordJson {
  readonly attributes: { key: string; value: Record<string, unknown> }[];
  readonly [key: string]: unknown;
}
interface Received {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: {
    resourceLogs: {
      resource: unknown;
      scopeLogs: { scope: unknown; logRecords: LogRecordJson[] }[];
    }[];
  };
  readonly status: number | 'hang';
}

/** A collector: answers the n-th request (1-based) with `reply(n)`. */
interface Collector {
  readonly url: string;
  readonly requests: Received[];
  /** `stream:seq` of every record in an answered 2xx request, in arrival order. */
  accepted(): string[];
  close(): Promise<void>;
}

async function startCollector(reply: (n: number) => Reply = () => 200): Promise<Collector> {
  const requests: Received[] = [];
  const server: Server = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const answer = reply(requests.length + 1);
      const status = typeof answer === 'object' ? answer.status : answer;
      requests.push({
        path: req.url ?? '',
        headers: req.headers,
        body: JSON.parse(text) as Received['body'],
        status,
      });
      if (status === 'hang') return;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof answer === 'object' ? answer.body : '{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    accepted: () =>
      requests
        .filter((r) => typeof r.status === 'number' && r.status < 300)
        .flatMap((r) => r.body.resourceLogs.flatMap((l) => l.scopeLogs.flatMap((s) => s.logRecords)))
        .map((l) => {
          const attr = (k: string) => l.attributes.find((a) => a.key === `agent_runtime.audit.${k}`)?.value;
          return `${String(attr('stream')?.['stringValue'])}:${String(attr('seq')?.['intValue'])}`;
        }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const event = (n: number, extra: Partial<AuditEventInput> = {}): AuditEventInput => ({
  source: 'workflow',
  agent: 'agent-1',
  run: `run-${n}`,
  step: n,
  kind: 'decision',
  attrs: { n, tool: 'shell.exec', tier: 'autonomous' },
  ...extra,
});

/** A model call of `runId`, as the model proxy traces it. */
const modelTrace = (runId: string): ModelTrace => ({
  id: 'call-1',
  ts: 1_700_000_000_000,
  agentId: 'support-bot',
  runId,
  step: 2,
  route: 'routes[0]',
  purpose: 'act',
  target: 'primary',
  provider: 'openai-compatible',
  model: 'gpt-x',
  attempts: [
    { target: 'primary', provider: 'openai-compatible', model: 'gpt-x', outcome: 'ok', durationMs: 5 },
  ],
  fallbackCause: null,
  messages: [],
  tools: [],
  completion: { content: 'ok', toolCalls: [], finishReason: 'stop' },
  error: null,
  usage: { inputTokens: 1, outputTokens: 1 },
  latencyMs: 5,
  overheadMs: 0.1,
  contentCaptured: false,
});

let dir: string;
let storeNo = 0;
const openStore = (): Promise<AuditStore> =>
  openSqliteAuditStore({
    file: join(dir, `audit-${++storeNo}.db`),
    clock: () => new Date('2026-05-01T10:00:00.000Z'),
  });
const seqs = (from: number, to: number, stream = 'default'): string[] =>
  Array.from({ length: to - from + 1 }, (_, i) => `${stream}:${from + i}`);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ar-otlp-logs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An exporter whose losses are collected, with short retries. */
function exporterFor(
  collector: { url: string },
  options: Partial<OtlpLogExporterOptions> = {},
): { exporter: ReturnType<typeof createOtlpLogExporter>; errors: string[]; lost: number[] } {
  const errors: string[] = [];
  const lost: number[] = [];
  const exporter = createOtlpLogExporter({
    endpoint: collector.url,
    retry: { attempts: 3, baseDelayMs: 5 },
    batch: { maxRecords: 100, maxDelayMs: 5 },
    onError: (error: AuditLogExportError, n) => {
      errors.push(`${error.code}: ${error.message.replace(collector.url, '<collector>')}`);
      lost.push(n);
    },
    ...options,
  });
  return { exporter, errors, lost };
}

describe('the log record', () => {
  test('one record, exactly: envelope and flattened attrs, severity, body, the run as trace id', async () => {
    const collector = await startCollector();
    const store = await openStore();
    try {
      const record = await store.append('default', {
        source: 'workflow',
        agent: 'support-bot',
        run: 'run-7',
        step: 2,
        kind: 'decision',
        attrs: {
          tool: 'payments.refund',
          tier: 'prohibited',
          args: { amount: 120.5, ids: [3, 4] },
          reason: null,
        },
      });
      const { exporter, errors } = exporterFor(collector, {
        headers: { authorization: 'Bearer collector-token' },
        serviceName: 'audit-aggregator',
        now: () => Date.parse('2026-05-01T10:00:01.500Z'),
      });
      exporter.export(record);
      await exporter.close();
      expect(errors).toEqual([]);
      expect(collector.requests).toHaveLength(1);
      const [request] = collector.requests;
      expect(request?.path).toBe('/v1/logs');
      expect(request?.headers['content-type']).toBe('application/json');
      expect(request?.headers.authorization).toBe('Bearer collector-token');
      expect(request?.body).toMatchInlineSnapshot(`
        {
          "resourceLogs": [
            {
              "resource": {
                "attributes": [
                  {
                    "key": "service.name",
                    "value": {
                      "stringValue": "audit-aggregator",
                    },
                  },
                ],
              },
              "scopeLogs": [
                {
                  "logRecords": [
                    {
                      "attributes": [
                        {
                          "key": "agent_runtime.audit.stream",
                          "value": {
                            "stringValue": "default",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.seq",
                          "value": {
                            "intValue": "1",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.kind",
                          "value": {
                            "stringValue": "decision",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.source",
                          "value": {
                            "stringValue": "workflow",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.agent",
                          "value": {
                            "stringValue": "support-bot",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.run",
                          "value": {
                            "stringValue": "run-7",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.step",
                          "value": {
                            "intValue": "2",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.hash",
                          "value": {
                            "stringValue": "6359292e6c7261c0225b89f5c1ebc1a2a75d6577fffde01c5d81ed79c17c2b7e",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.prev_hash",
                          "value": {
                            "stringValue": "0000000000000000000000000000000000000000000000000000000000000000",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.attrs.args.amount",
                          "value": {
                            "doubleValue": 120.5,
                          },
                        },
                        {
                          "key": "agent_runtime.audit.attrs.args.ids.0",
                          "value": {
                            "intValue": "3",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.attrs.args.ids.1",
                          "value": {
                            "intValue": "4",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.attrs.tier",
                          "value": {
                            "stringValue": "prohibited",
                          },
                        },
                        {
                          "key": "agent_runtime.audit.attrs.tool",
                          "value": {
                            "stringValue": "payments.refund",
                          },
                        },
                      ],
                      "body": {
                        "stringValue": "decision from workflow (agent support-bot, run run-7, step 2)",
                      },
                      "observedTimeUnixNano": "1777629601500000000",
                      "severityNumber": 13,
                      "severityText": "WARN",
                      "timeUnixNano": "1777629600000000000",
                      "traceId": "b4c05df04575822cec8550e9491c58e1",
                    },
                  ],
                  "scope": {
                    "name": "agent-runtime.audit",
                  },
                },
              ],
            },
          ],
        }
      `);
      const [log] = request?.body.resourceLogs[0]?.scopeLogs[0]?.logRecords ?? [];
      // the run's trace id is the one the model trace exporter gives the run's spans
      expect(log?.['traceId']).toBe(toOtlpSpan(modelTrace('run-7')).traceId);
      expect(log?.attributes.find((x) => x.key === 'agent_runtime.audit.hash')?.value).toEqual({
        stringValue: record.hash,
      });
    } finally {
      await store.close();
      await collector.close();
    }
  });

  test('severity: refusals and denials WARN, findings by their severity, the rest INFO', () => {
    const of = (kind: string, attrs: Record<string, unknown> = {}) =>
      auditSeverity({ kind: kind as AuditRecord['kind'], attrs });
    expect({
      runStarted: of('run.started'),
      runRefused: of('run.refused'),
      executionRefused: of('execution.refused'),
      voteRefused: of('vote.refused'),
      policyRefused: of('policy.update_refused'),
      gap: of('audit.gap'),
      allowed: of('decision', { tier: 'autonomous' }),
      denied: of('decision', { tier: 'prohibited' }),
      approvalDenied: of('approval.decided', { status: 'denied' }),
      approvalApproved: of('approval.decided', { status: 'approved' }),
      low: of('observer.finding', { severity: 'low' }),
      medium: of('observer.finding', { severity: 'medium' }),
      high: of('observer.finding', { severity: 'high' }),
      critical: of('observer.finding', { severity: 'critical' }),
      unknown: of('observer.finding', { severity: 'weird' }),
    }).toEqual({
      runStarted: 'INFO',
      runRefused: 'WARN',
      executionRefused: 'WARN',
      voteRefused: 'WARN',
      policyRefused: 'WARN',
      gap: 'WARN',
      allowed: 'INFO',
      denied: 'WARN',
      approvalDenied: 'WARN',
      approvalApproved: 'INFO',
      low: 'INFO',
      medium: 'WARN',
      high: 'ERROR',
      critical: 'FATAL',
      unknown: 'WARN',
    });
  });

  test('hostile attrs stay bounded: depth, count, string length, huge numbers, empty containers', () => {
    const deep = { a: { b: { c: { d: { e: 1 } } } } };
    const many = Object.fromEntries(
      Array.from({ length: MAX_ATTRS + 10 }, (_, i) => [`k${String(i).padStart(3, '0')}`, i]),
    );
    const values = (attrs: Record<string, unknown>) =>
      Object.fromEntries(
        flattenAuditAttrs(attrs).attributes.map((a) => [
          a.key.replace('agent_runtime.audit.attrs.', ''),
          a.value,
        ]),
      );
    expect(values(deep)).toEqual({ 'a.b.c.d': { stringValue: '{"e":1}' } });
    const long = values({ s: 'x'.repeat(5_000) })['s'] as { stringValue: string };
    expect(long.stringValue).toHaveLength(2_048);
    expect(long.stringValue.endsWith('x…')).toBe(true);
    expect(values({ big: 2 ** 60, neg: -3, t: true, none: null, o: {}, l: [] })).toEqual({
      big: { doubleValue: 2 ** 60 },
      neg: { intValue: '-3' },
      t: { boolValue: true },
      o: { stringValue: '{}' },
      l: { stringValue: '[]' },
    });
    const flat = flattenAuditAttrs(many);
    expect(flat.attributes).toHaveLength(MAX_ATTRS);
    expect(flat.dropped).toBe(10);
  });

  test('a record with too many attrs says how many it dropped; one without a run has no trace id', () => {
    const record: AuditRecord = {
      stream: 'default',
      seq: 3,
      ts: '2026-05-01T10:00:00.000Z',
      source: 'cli',
      agent: null,
      run: null,
      step: null,
      kind: 'policy.updated',
      attrs: Object.fromEntries(Array.from({ length: MAX_ATTRS + 1 }, (_, i) => [`k${i}`, i])),
      prevHash: '0'.repeat(64),
      hash: 'f'.repeat(64),
    };
    {
      const log = toOtlpLogRecord(record, 0);
      expect(log['droppedAttributesCount']).toBe(1);
      expect(log['traceId']).toBeUndefined();
      expect(log['body']).toEqual({ stringValue: 'policy.updated from cli' });
      const keys = (log['attributes'] as { key: string }[]).map((a) => a.key).slice(0, 5);
      expect(keys).toEqual([
        'agent_runtime.audit.stream',
        'agent_runtime.audit.seq',
        'agent_runtime.audit.kind',
        'agent_runtime.audit.source',
        'agent_runtime.audit.hash',
      ]);
    }
  });
});

describe('sending', () => {
  test('batches up to maxRecords in seq order; a lone record waits maxDelayMs for company', async () => {
    const collector = await startCollector();
    const store = await openStore();
    try {
      const records = await store.appendMany(
        'default',
        Array.from({ length: 25 }, (_, i) => event(i + 1)),
      );
      const { exporter, errors } = exporterFor(collector, { batch: { maxRecords: 10, maxDelayMs: 1_000 } });
      for (const r of records) exporter.export(r);
      await exporter.flush();
      expect(collector.requests.map((r) => r.body.resourceLogs[0]?.scopeLogs[0]?.logRecords.length)).toEqual([
        10, 10, 5,
      ]);
      expect(collector.accepted()).toEqual(seqs(1, 25));

      const [late] = await store.appendMany('default', [event(26)]);
      exporter.export(late!);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(collector.requests).toHaveLength(3); // still waiting for company
      await expect.poll(() => collector.requests.length, { timeout: 3_000, interval: 20 }).toBe(4);
      expect(exporter.stats).toEqual({ pending: 0, exported: 26, dropped: 0, failed: 0, retries: 0 });
      await exporter.close();
      expect(errors).toEqual([]);
    } finally {
      await store.close();
      await collector.close();
    }
  });

  test('503 then 200: retried, every record accepted once; 429 and network errors retry too', async () => {
    const collector = await startCollector((n) => (n === 1 ? 503 : n === 2 ? 429 : 200));
    const store = await openStore();
    try {
      const records = await store.appendMany(
        'default',
        Array.from({ length: 5 }, (_, i) => event(i + 1)),
      );
      const { exporter, errors } = exporterFor(collector);
      for (const r of records) exporter.export(r);
      await exporter.close();
      expect(collector.requests.map((r) => r.status)).toEqual([503, 429, 200]);
      expect(collector.accepted()).toEqual(seqs(1, 5));
      expect(exporter.stats).toEqual({ pending: 0, exported: 5, dropped: 0, failed: 0, retries: 2 });
      expect(errors).toEqual([]);
    } finally {
      await store.close();
      await collector.close();
    }
  });

  test('a 4xx is not retried; a partial success counts the rejected records; retries run out', async () => {
    const collector = await startCollector((n) =>
      n === 1
        ? 400
        : n === 2
          ? { status: 200, body: '{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"too old"}}' }
          : 500,
    );
    const store = await openStore();
    try {
      const records = await store.appendMany(
        'default',
        Array.from({ length: 9 }, (_, i) => event(i + 1)),
      );
      const { exporter, errors, lost } = exporterFor(collector, { batch: { maxRecords: 3, maxDelayMs: 5 } });
      for (const r of records) exporter.export(r);
      await exporter.close();
      expect(collector.requests.map((r) => r.status)).toEqual([400, 200, 500, 500, 500]);
      expect(errors).toMatchInlineSnapshot(`
        [
          "AUDIT_OTLP_EXPORT_FAILED: OTLP log export to <collector>/v1/logs answered 400; records default 1..3 lost",
          "AUDIT_OTLP_EXPORT_FAILED: OTLP log export to <collector>/v1/logs: the collector rejected 2 of records default 4..6: too old",
          "AUDIT_OTLP_EXPORT_FAILED: OTLP log export to <collector>/v1/logs answered 500 (after 3 attempts); records default 7..9 lost",
        ]
      `);
      expect(lost).toEqual([3, 2, 3]);
      expect(exporter.stats).toEqual({ pending: 0, exported: 1, dropped: 0, failed: 8, retries: 2 });
    } finally {
      await store.close();
      await collector.close();
    }
  });

  test('a collector that hangs: appends go on unaffected, the queue overflows, drops are counted', async () => {
    const collector = await startCollector(() => 'hang');
    const store = await openStore();
    try {
      const { exporter, errors, lost } = exporterFor(collector, {
        batch: { maxRecords: 5, maxDelayMs: 1 },
        retry: { attempts: 2, baseDelayMs: 5 },
        timeoutMs: 150,
        maxQueue: 20,
        closeTimeoutMs: 200,
      });
      // fed straight from a subscription: nothing waits for the exporter
      store.subscribe('default', 1, (r) => exporter.export(r));
      const started = performance.now();
      for (let i = 0; i < 20; i++) {
        await store.appendMany(
          'default',
          Array.from({ length: 10 }, (_, j) => event(i * 10 + j + 1)),
        );
      }
      const appendMs = performance.now() - started;
      await expect.poll(() => exporter.stats.dropped, { timeout: 2_000 }).toBeGreaterThan(0);
      // waiting for the exporter would take two 150 ms timeouts per append: 6 s
      expect(appendMs).toBeLessThan(1_500);
      await expect.poll(() => collector.requests.length, { timeout: 2_000 }).toBeGreaterThan(0);
      const closing = performance.now();
      await exporter.close();
      expect(performance.now() - closing).toBeLessThan(1_500);
      const s = exporter.stats;
      expect(s.pending).toBe(0);
      expect(s.exported).toBe(0);
      expect(s.dropped + s.failed).toBe(200);
      // every failed batch is reported with its size
      expect(errors.flatMap((e, i) => (e.startsWith('AUDIT_OTLP_EXPORT_FAILED') ? [lost[i]] : []))).toEqual(
        Array.from({ length: s.failed / 5 }, () => 5),
      );
      expect(errors[0]).toBe(
        'AUDIT_OTLP_QUEUE_OVERFLOW: OTLP log exporter: more than 20 records queued; dropping the oldest',
      );
      expect(errors.some((e) => /^AUDIT_OTLP_EXPORT_FAILED: .*failed: .*\(after 2 attempts\)/.test(e))).toBe(
        true,
      );
      expect(errors.at(-1)).toMatch(
        /^AUDIT_OTLP_EXPORTER_CLOSED: OTLP log exporter: closed with records default \d+\.\.200 unsent$/,
      );
      expect((await store.read({ stream: 'default' })).length).toBe(200);
    } finally {
      await store.close();
      await collector.close();
    }
  });

  test('a collector that refuses connections: every batch is lost after its retries, and reported', async () => {
    const gone = await startCollector();
    await gone.close(); // nothing listens on that port any more
    const store = await openStore();
    try {
      const records = await store.appendMany(
        'default',
        Array.from({ length: 4 }, (_, i) => event(i + 1)),
      );
      const { exporter, errors, lost } = exporterFor(gone, { batch: { maxRecords: 2, maxDelayMs: 1 } });
      for (const r of records) exporter.export(r);
      await exporter.close();
      expect(errors).toEqual([
        'AUDIT_OTLP_EXPORT_FAILED: OTLP log export to <collector>/v1/logs failed: fetch failed (after 3 attempts); records default 1..2 lost',
        'AUDIT_OTLP_EXPORT_FAILED: OTLP log export to <collector>/v1/logs failed: fetch failed (after 3 attempts); records default 3..4 lost',
      ]);
      expect(lost).toEqual([2, 2]);
      expect(exporter.stats).toEqual({ pending: 0, exported: 0, dropped: 0, failed: 4, retries: 4 });
    } finally {
      await store.close();
    }
  });

  test('close() sends what is queued at once; a record exported after close is dropped and reported', async () => {
    const collector = await startCollector();
    const store = await openStore();
    try {
      const records = await store.appendMany(
        'default',
        Array.from({ length: 3 }, (_, i) => event(i + 1)),
      );
      const { exporter, errors } = exporterFor(collector, { batch: { maxRecords: 100, maxDelayMs: 60_000 } });
      for (const r of records) exporter.export(r);
      const started = performance.now();
      await exporter.close();
      expect(performance.now() - started).toBeLessThan(1_000);
      expect(collector.accepted()).toEqual(seqs(1, 3));
      exporter.export(records[0]!);
      expect(errors).toEqual([
        'AUDIT_OTLP_EXPORTER_CLOSED: OTLP log exporter: record default 1 exported after close',
      ]);
      expect(exporter.stats).toEqual({ pending: 0, exported: 3, dropped: 1, failed: 0, retries: 0 });
      await exporter.close(); // idempotent
    } finally {
      await store.close();
      await collector.close();
    }
  });

  test('invalid options are refused at creation, naming the option', () => {
    expect(() => createOtlpLogExporter({ endpoint: 'ftp://x' })).toThrowErrorMatchingInlineSnapshot(
      `[AuditLogExportError: OTLP log exporter: endpoint: expected an http(s) URL]`,
    );
    expect(() =>
      createOtlpLogExporter({ endpoint: 'http://127.0.0.1:1', batch: { maxRecords: 0 } }),
    ).toThrowErrorMatchingInlineSnapshot(
      `[AuditLogExportError: OTLP log exporter: batch.maxRecords: Too small: expected number to be >=1]`,
    );
  });
});

describe('feeding from a store', () => {
  test('streamHead finds the last seq with a few indexed reads', async () => {
    const store = await openStore();
    try {
      expect(await streamHead(store, 'default')).toBe(0);
      let seq = 0;
      for (const target of [1, 2, 7, 64, 65, 300]) {
        await store.appendMany(
          'default',
          Array.from({ length: target - seq }, (_, i) => event(seq + i + 1)),
        );
        seq = target;
        expect(await streamHead(store, 'default')).toBe(target);
      }
    } finally {
      await store.close();
    }
  });

  test('from the head by default, from seq 1 with start; close exports what was not yet delivered', async () => {
    const collector = await startCollector();
    const store = await openStore();
    try {
      await store.appendMany(
        'default',
        Array.from({ length: 5 }, (_, i) => event(i + 1)),
      );
      await store.appendMany(
        'other',
        Array.from({ length: 2 }, (_, i) => event(i + 1)),
      );
      const head = await feedAuditLogExport(store, exporterFor(collector).exporter, {
        streams: ['default', 'other'],
      });
      expect(head.startedAt).toEqual({ default: 6, other: 3 });
      await store.appendMany('default', [event(6), event(7)]);
      await store.append('other', event(3));
      // appended and closed at once: the subscription may not have delivered them yet
      await store.appendMany('default', [event(8), event(9)]);
      await head.close();
      expect(collector.accepted().filter((s) => s.startsWith('default:'))).toEqual(seqs(6, 9));
      expect(collector.accepted().filter((s) => s.startsWith('other:'))).toEqual(['other:3']);

      const second = await startCollector();
      const { exporter, errors } = exporterFor(second, {
        maxQueue: 3,
        batch: { maxRecords: 2, maxDelayMs: 1 },
      });
      const all = await feedAuditLogExport(store, exporter, { streams: ['default'], fromSeq: 'start' });
      expect(all.startedAt).toEqual({ default: 1 });
      // the backlog is bigger than the queue: the subscription waits for room instead of dropping
      await expect.poll(() => second.accepted().length, { timeout: 5_000 }).toBe(9);
      await all.close();
      expect(second.accepted()).toEqual(seqs(1, 9));
      expect(exporter.stats.dropped).toBe(0);
      expect(errors).toEqual([]);
      await second.close();
    } finally {
      await store.close();
      await collector.close();
    }
  });

  test('a hanging collector holds only the subscription: appends stay fast, nothing overflows', async () => {
    const collector = await startCollector(() => 'hang');
    const store = await openStore();
    try {
      const { exporter } = exporterFor(collector, {
        batch: { maxRecords: 5, maxDelayMs: 1 },
        retry: { attempts: 1 },
        timeoutMs: 5_000,
        maxQueue: 10,
        closeTimeoutMs: 100,
      });
      const feed = await feedAuditLogExport(store, exporter, { streams: ['default'] });
      const started = performance.now();
      for (let i = 0; i < 10; i++) {
        await store.appendMany(
          'default',
          Array.from({ length: 50 }, (_, j) => event(i * 50 + j + 1)),
        );
      }
      expect(performance.now() - started).toBeLessThan(1_000);
      await expect.poll(() => exporter.stats.pending, { timeout: 2_000 }).toBe(10 + 5); // queue full + one in flight
      expect(exporter.stats.dropped).toBe(0); // the subscription waits instead
      await feed.close(); // the close deadline abandons the stuck request and what is left
      const s = exporter.stats;
      expect(s.pending).toBe(0);
      expect(s.exported).toBe(0);
      expect(s.failed + s.dropped).toBe(500);
    } finally {
      await store.close();
      await collector.close();
    }
  });
});

describe('configuration', () => {
  let cfgDir: string;
  beforeAll(async () => {
    cfgDir = await mkdtemp(join(tmpdir(), 'ar-otlp-cfg-'));
  });
  afterAll(async () => {
    await rm(cfgDir, { recursive: true, force: true });
  });
  const BASE = [
    'listen: { port: 8390 }',
    'store: { kind: sqlite, file: data/audit.db }',
    'checkpointKey: keys/audit.key',
    'tokens:',
    `  - { name: auditor, tokenSha256: ${tokenSha256('reader-token-0123456789abcdef')}, sources: [] }`,
  ].join('\n');
  const load = async (exportYaml: string, env: Record<string, string> = {}, withoutTokens = false) => {
    const file = join(cfgDir, 'aggregator.yaml');
    await writeFile(file, `${BASE}\n${exportYaml}`);
    return loadAggregatorConfig(file, env, { withoutTokens });
  };
  const problem = (exportYaml: string, env: Record<string, string> = {}): Promise<string> =>
    load(exportYaml, env).then(
      () => 'no error',
      (e: Error & { code?: string }) => `${e.code}: ${e.message.replaceAll(cfgDir, '<dir>')}`,
    );

  test('defaults: the default stream from the head; headers from the environment', async () => {
    expect((await load('')).export).toBeUndefined();
    expect((await load('export: { otlp: { endpoint: "http://collector:4318" } }')).export).toEqual({
      otlp: { endpoint: 'http://collector:4318', headers: {}, streams: ['default'], fromSeq: 'head' },
    });
    const yaml = [
      'export:',
      '  otlp:',
      '    endpoint: https://siem.example/otlp',
      '    headersEnv: SIEM_HEADERS',
      '    serviceName: audit-eu',
      '    streams: [default, ops]',
      '    fromSeq: start',
    ].join('\n');
    expect((await load(yaml, { SIEM_HEADERS: 'Authorization=Bearer%20abc , x-tenant=7' })).export).toEqual({
      otlp: {
        endpoint: 'https://siem.example/otlp',
        headers: { authorization: 'Bearer abc', 'x-tenant': '7' },
        serviceName: 'audit-eu',
        streams: ['default', 'ops'],
        fromSeq: 'start',
      },
    });
    // tools that only open the store read no secrets
    expect((await load(yaml, {}, true)).export?.otlp.headers).toEqual({});
  });

  test('errors name the path and what was expected, never a header value', async () => {
    expect(await problem('export: { otlp: { endpoint: "ftp://collector" } }')).toMatchInlineSnapshot(
      `"AUDIT_AGGREGATOR_CONFIG_INVALID: <dir>/aggregator.yaml:6: invalid audit aggregator configuration: export.otlp.endpoint: expected an http:// or https:// URL"`,
    );
    expect(await problem('export: { otlp: { endpoint: "http://c", fromSeq: tail } }')).toMatchInlineSnapshot(
      `"AUDIT_AGGREGATOR_CONFIG_INVALID: <dir>/aggregator.yaml:6: invalid audit aggregator configuration: export.otlp.fromSeq: expected "head" or "start""`,
    );
    expect(
      await problem('export: { otlp: { endpoint: "http://c", streams: [default, "bad name"] } }'),
    ).toMatchInlineSnapshot(
      `"AUDIT_AGGREGATOR_CONFIG_INVALID: <dir>/aggregator.yaml:6: invalid audit aggregator configuration: export.otlp.streams[1]: expected a stream name"`,
    );
    expect(
      await problem('export: { otlp: { endpoint: "http://c", streams: [a, a] } }'),
    ).toMatchInlineSnapshot(
      `"AUDIT_AGGREGATOR_CONFIG_INVALID: <dir>/aggregator.yaml:6: invalid audit aggregator configuration: export.otlp.streams: a stream is named twice"`,
    );
    expect(await problem('export: { otlp: { endpoint: "http://c", port: 1 } }')).toMatchInlineSnapshot(
      `"AUDIT_AGGREGATOR_CONFIG_INVALID: <dir>/aggregator.yaml:6: invalid audit aggregator configuration: export.otlp: Unrecognized key: "port""`,
    );
    const withEnv = 'export: { otlp: { endpoint: "http://c", headersEnv: SIEM_HEADERS } }';
    expect(await problem(withEnv)).toMatchInlineSnapshot(
      `"AUDIT_AGGREGATOR_CONFIG_INVALID: <dir>/aggregator.yaml:6: invalid audit aggregator configuration: export.otlp.headersEnv: $SIEM_HEADERS is not set"`,
    );
    expect(
      await problem(withEnv, { SIEM_HEADERS: 'authorization=secret-value,broken' }),
    ).toMatchInlineSnapshot(
      `"AUDIT_AGGREGATOR_CONFIG_INVALID: <dir>/aggregator.yaml:6: invalid audit aggregator configuration: export.otlp.headersEnv: $SIEM_HEADERS: entry 2: expected name=value"`,
    );
  });

  test('header lists: URL-decoded values, bad encodings and control characters refused', () => {
    expect(parseOtlpHeaders('a=1,b=x%3Dy,,c=')).toEqual({ a: '1', b: 'x=y', c: '' });
    expect(parseOtlpHeaders('a=%E0%A4%A')).toBe('entry 1 (a): the value is not valid URL encoding');
    expect(parseOtlpHeaders('a=ok,b=x%0D%0Ainjected: 1')).toBe(
      'entry 2 (b): the value contains a control character',
    );
    expect(parseOtlpHeaders('bad name=1')).toBe('entry 1: expected name=value');
  });
});

describe('agent-runtime audit serve with export.otlp (a real child process)', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const WRITER = 'writer-token-0123456789abcdef';

  test('records appended through the client reach the collector in seq order; a restart resends nothing', async () => {
    const work = await mkdtemp(join(tmpdir(), 'ar-otlp-proc-'));
    const collector = await startCollector();
    try {
      await initSigningKey(join(work, 'keys'));
      const configFile = join(work, 'aggregator.yaml');
      await writeFile(
        configFile,
        stringify({
          listen: { host: '127.0.0.1', port: 0 },
          store: { kind: 'sqlite', file: 'data/audit.db' },
          checkpointKey: 'keys/vote-signing.key',
          tokens: [{ name: 'worker', tokenEnv: 'AUDIT_WRITER_TOKEN', sources: ['workflow'] }],
          export: { otlp: { endpoint: collector.url, headersEnv: 'OTLP_HEADERS' } },
        }),
      );
      const serve = async (appends: number, firstN: number): Promise<string> => {
        const child = spawn(
          process.execPath,
          [join(root, 'cli/bin.ts'), 'audit', 'serve', '--config', configFile],
          {
            cwd: root,
            env: {
              ...process.env,
              AUDIT_WRITER_TOKEN: WRITER,
              OTLP_HEADERS: 'authorization=Bearer%20siem-token',
            },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        try {
          await expect
            .poll(() => stdout, { timeout: 20_000 })
            .toMatch(/audit aggregator listening on http:\/\/127\.0\.0\.1:\d+\n/);
          const url = /listening on (\S+)/.exec(stdout)![1]!;
          const writer = createAuditAggregatorClient({ url, token: WRITER, writer: 'otlp-test' });
          await Promise.all(Array.from({ length: appends }, (_, i) => writer.append(event(firstN + i))));
          await writer.close();
          child.kill('SIGTERM');
          expect(await exited).toBe(0);
        } finally {
          if (child.exitCode === null) child.kill('SIGKILL');
        }
        expect(stderr).toBe('');
        return stdout;
      };

      const first = await serve(120, 1);
      expect(first).toContain(`exporting audit records to ${collector.url} (OTLP logs): default from seq 1`);
      // every record, in seq order, once: SIGTERM flushed the exporter before the process exited
      expect(collector.accepted()).toEqual(seqs(1, 120));
      expect(collector.requests.every((r) => r.headers.authorization === 'Bearer siem-token')).toBe(true);

      const second = await serve(5, 121);
      expect(second).toContain('default from seq 121');
      expect(collector.accepted()).toEqual(seqs(1, 125));
    } finally {
      await collector.close();
      await rm(work, { recursive: true, force: true });
    }
  });
});
