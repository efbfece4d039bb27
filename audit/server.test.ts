/**
 * The audit aggregator's wire API against a real SQLite store on a real HTTP server: auth,
 * validation, append-only, dedupe, writer gaps, reads, SSE under load, leases, metrics; and
 * `agent-runtime audit serve` as a real child process.
 */
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { PassThrough } from 'node:stream';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import type { AuditEventInput } from '../activities/audit/types.ts';
import { initSigningKey, loadPublicKeys } from '../approval-channels/keys.ts';
import { main } from '../cli/main.ts';
import { createAuditAggregatorClient } from './client.ts';
import { openSqliteAuditStore, verifyStream } from './index.ts';
import type { AuditRecord, AuditStore } from './index.ts';
import { loadAggregatorConfig } from './service-config.ts';
import { MAX_BODY_BYTES, startAuditAggregator, tokenSha256 } from './server.ts';
import type { AggregatorToken, AuditAggregator } from './server.ts';

const T = {
  writer: 'writer-token-0123456789abcdef',
  observer: 'observer-token-0123456789abcdef',
  reader: 'reader-token-0123456789abcdef',
} as const;
const TOKENS: AggregatorToken[] = [
  { name: 'worker', tokenSha256: tokenSha256(T.writer), sources: ['workflow', 'guard'] },
  { name: 'observer', tokenSha256: tokenSha256(T.observer), sources: ['observer'] },
  { name: 'auditor', tokenSha256: tokenSha256(T.reader), sources: [] },
];

const event = (n: number, extra: Partial<AuditEventInput> = {}): AuditEventInput => ({
  source: 'workflow',
  agent: 'agent-1',
  run: `run-${n}`,
  step: n,
  kind: 'decision',
  attrs: { n, tool: 'shell.exec', tier: 'autonomous' },
  ...extra,
});

let dir: string;
let store: AuditStore;
let aggregator: AuditAggregator;
let now = new Date('2026-05-01T10:00:00.000Z');
let streamNo = 0;
const freshStream = (): string => `s${++streamNo}`;

interface Answer {
  readonly status: number;
  readonly body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  readonly headers: Headers;
}

async function api(
  method: string,
  path: string,
  options: { token?: string | null; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const token = options.token === undefined ? T.writer : options.token;
  const response = await fetch(`${aggregator.url}${path}`, {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...options.headers,
    },
    ...(options.body === undefined
      ? {}
      : { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // text (metrics)
  }
  return { status: response.status, body, headers: response.headers };
}

const post = (body: unknown, token?: string): Promise<Answer> =>
  api('POST', '/v1/events', { body, ...(token === undefined ? {} : { token }) });

async function metric(line: string): Promise<number> {
  const text = (await api('GET', '/metrics', { token: null })).body as string;
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.slice(line.length + 1));
}

/** Reads SSE from `path` until `count` records arrived (or `until` returns true for the raw text). */
async function readSse(
  path: string,
  count: number,
  headers: Record<string, string> = {},
): Promise<{ records: AuditRecord[]; raw: string; ids: number[] }> {
  const controller = new AbortController();
  const response = await fetch(`${aggregator.url}${path}`, {
    headers: { authorization: `Bearer ${T.reader}`, ...headers },
    signal: controller.signal,
  });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const records: AuditRecord[] = [];
  const ids: number[] = [];
  let raw = '';
  const decoder = new TextDecoder();
  for await (const chunk of response.body!) {
    raw += decoder.decode(chunk, { stream: true });
    const frames = raw.split('\n\n');
    records.length = 0;
    ids.length = 0;
    for (const frame of frames.slice(0, -1)) {
      const data = frame.split('\n').find((l) => l.startsWith('data: '));
      const id = frame.split('\n').find((l) => l.startsWith('id: '));
      if (data !== undefined) records.push(JSON.parse(data.slice(6)) as AuditRecord);
      if (id !== undefined) ids.push(Number(id.slice(4)));
    }
    if (records.length >= count) break;
  }
  controller.abort();
  return { records, raw, ids };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ar-aggregator-'));
  store = await openSqliteAuditStore({ file: join(dir, 'audit.db') });
  aggregator = await startAuditAggregator({
    store,
    tokens: TOKENS,
    clock: () => now,
    keepaliveMs: 40,
    dedupeWindow: 3,
  });
});

afterAll(async () => {
  await aggregator?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('health, metrics and routing', () => {
  test('binds 127.0.0.1; /healthz and /metrics need no token', async () => {
    expect(aggregator.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await api('GET', '/healthz', { token: null })).toMatchObject({ status: 200, body: { ok: true } });
    const metrics = await api('GET', '/metrics', { token: null });
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    for (const name of [
      'agent_runtime_audit_appended_total',
      'agent_runtime_audit_refused_total',
      'agent_runtime_audit_append_seconds',
      'agent_runtime_audit_subscribers',
      'agent_runtime_audit_head_seq',
      'agent_runtime_audit_gaps_total',
    ]) {
      expect(metrics.body).toContain(`# TYPE ${name} `);
    }
  });

  test('unknown paths are 404; a wrong method is 405 AUDIT_METHOD_NOT_ALLOWED', async () => {
    expect(await api('GET', '/v2/events')).toMatchObject({
      status: 404,
      body: { error: { code: 'AUDIT_NOT_FOUND' } },
    });
    expect(await api('GET', '/v1/streams/default')).toMatchObject({ status: 404 });
    const wrong = await api('GET', '/v1/events');
    expect(wrong).toMatchObject({ status: 405, body: { error: { code: 'AUDIT_METHOD_NOT_ALLOWED' } } });
    expect(wrong.headers.get('allow')).toBe('POST');
    expect(await api('POST', '/v1/streams/default/events', { body: {} })).toMatchObject({
      status: 405,
      body: { error: { code: 'AUDIT_METHOD_NOT_ALLOWED' } },
    });
  });

  test('PUT, PATCH and DELETE on events and streams are 405 AUDIT_APPEND_ONLY, counted, whoever asks', async () => {
    const before = await metric('agent_runtime_audit_refused_total{code="AUDIT_APPEND_ONLY"}');
    const paths = ['/v1/events', '/v1/streams/default/events', '/v1/streams/default/checkpoints'];
    for (const path of paths) {
      for (const method of ['PUT', 'PATCH', 'DELETE']) {
        for (const token of [T.writer, null]) {
          const answer = await api(method, path, { token, body: { events: [] } });
          expect(answer.status).toBe(405);
          expect(answer.body.error.code).toBe('AUDIT_APPEND_ONLY');
        }
      }
    }
    expect(await metric('agent_runtime_audit_refused_total{code="AUDIT_APPEND_ONLY"}')).toBe(before + 18);
  });
});

describe('authentication and authorisation', () => {
  test('a missing, malformed or unknown token is 401 AUDIT_UNAUTHORIZED, on reads and writes', async () => {
    for (const headers of [{}, { authorization: 'Basic abc' }, { authorization: `Bearer ${T.writer}x` }]) {
      for (const [method, path] of [
        ['POST', '/v1/events'],
        ['GET', '/v1/streams/default/events'],
        ['GET', '/v1/search'],
        ['GET', '/v1/leases/observer'],
      ] as const) {
        const answer = await api(method, path, {
          token: null,
          headers,
          ...(method === 'POST' ? { body: { events: [event(1)] } } : {}),
        });
        expect(answer.status).toBe(401);
        expect(answer.body.error.code).toBe('AUDIT_UNAUTHORIZED');
      }
    }
  });

  test('a source the token may not write is 403 and nothing of the batch is appended', async () => {
    const stream = freshStream();
    const answer = await post({ stream, events: [event(1), event(2, { source: 'observer' })] });
    expect(answer.status).toBe(403);
    expect(answer.body.error).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_SOURCE_FORBIDDEN",
        "message": "events[1].source: token "worker" may not write source "observer"",
      }
    `);
    expect(await store.read({ stream })).toEqual([]);
    // a read-only token writes nothing; nobody forges the aggregator's own gap records
    expect((await post({ stream, events: [event(1)] }, T.reader)).body.error.code).toBe(
      'AUDIT_SOURCE_FORBIDDEN',
    );
    expect(
      (await post({ stream, events: [event(1, { source: 'aggregator', kind: 'audit.gap' })] })).status,
    ).toBe(403);
    expect(await store.read({ stream })).toEqual([]);
  });

  test('a token list with the aggregator source, a bad hash or a duplicate is refused at start', async () => {
    const start = (tokens: AggregatorToken[]) => startAuditAggregator({ store, tokens });
    await expect(
      start([{ name: 'x', tokenSha256: tokenSha256('a'), sources: ['aggregator'] }]),
    ).rejects.toThrowErrorMatchingInlineSnapshot(
      `[AuditAggregatorError: audit aggregator: tokens: [0].sources[0]: expected one of workflow, guard, approvals, cli, model, observer, got "aggregator" (the aggregator writes that source itself)]`,
    );
    await expect(start([{ name: 'x', tokenSha256: 'abc', sources: [] }])).rejects.toThrow(/64 lowercase hex/);
    await expect(
      start([
        { name: 'a', tokenSha256: tokenSha256('a'), sources: [] },
        { name: 'b', tokenSha256: tokenSha256('a'), sources: [] },
      ]),
    ).rejects.toThrow(/same hash/);
  });
});

describe('POST /v1/events', () => {
  test('appends in input order and answers seq, ts and hash of each', async () => {
    const stream = freshStream();
    const answer = await post({ stream, events: [event(1), event(2, { source: 'guard' }), event(3)] });
    expect(answer.status).toBe(200);
    const stored = await store.read({ stream });
    expect(answer.body).toEqual({ records: stored.map(({ seq, ts, hash }) => ({ seq, ts, hash })) });
    expect(stored.map((r) => [r.seq, r.run, r.source])).toEqual([
      [1, 'run-1', 'workflow'],
      [2, 'run-2', 'guard'],
      [3, 'run-3', 'workflow'],
    ]);
    // the default stream when none is named
    const before = (await store.read({ stream: 'default' })).length;
    expect((await post({ events: [event(9)] })).status).toBe(200);
    expect(await store.read({ stream: 'default' })).toHaveLength(before + 1);
  });

  test('the first invalid event is named as events[i].path; nothing of the batch is appended', async () => {
    const stream = freshStream();
    const invalid = async (events: unknown[]): Promise<string> => {
      const answer = await post({ stream, events });
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('AUDIT_EVENT_INVALID');
      return answer.body.error.message as string;
    };
    expect(await invalid([event(0), event(1), event(2), { ...event(3), kind: 'x' }])).toMatchInlineSnapshot(
      `"events[3].kind: unknown kind "x""`,
    );
    expect(await invalid([event(0), 'nope'])).toMatchInlineSnapshot(`"events[1]: expected an object"`);
    let deep: Record<string, unknown> = { end: true };
    for (let i = 0; i < 70; i++) deep = { a: deep };
    expect(await invalid([event(0), { ...event(1), attrs: deep }])).toMatch(
      /^events\[1\]\.attrs(\.a)+: nested deeper than 64 levels$/,
    );
    expect(await invalid([{ ...event(0), attrs: [1, 2] }])).toMatchInlineSnapshot(
      `"events[0].attrs: expected a plain object"`,
    );
    expect(await invalid([{ ...event(0), step: -1 }])).toMatchInlineSnapshot(
      `"events[0].step: expected a non-negative integer or null"`,
    );
    expect(await invalid([{ ...event(0), writerSeq: 0 }])).toMatchInlineSnapshot(
      `"events[0].writerSeq: expected a positive integer"`,
    );
    expect(await invalid([{ ...event(0), writerSeq: 1 }])).toMatchInlineSnapshot(
      `"events[0].writerSeq: needs "writer" in the body"`,
    );
    expect(await store.read({ stream })).toEqual([]);
  });

  test('malformed bodies are 400 AUDIT_REQUEST_INVALID', async () => {
    const cases: [unknown, string][] = [
      ['{not json', 'body: not valid JSON'],
      [{ events: [] }, 'events: expected 1 to 1000 events'],
      [{ events: Array.from({ length: 1001 }, (_, i) => event(i)) }, 'events: expected 1 to 1000 events'],
      [{ stream: '../x', events: [event(1)] }, 'stream: expected a stream name'],
      [{ writer: ' spaced', events: [event(1)] }, 'writer: expected a writer name'],
      [{ events: [event(1)], extra: true }, 'Unrecognized key'],
      [[event(1)], '(root)'],
    ];
    for (const [body, message] of cases) {
      const answer = await post(typeof body === 'string' ? body : body);
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('AUDIT_REQUEST_INVALID');
      expect(answer.body.error.message).toContain(message);
    }
  });

  test('a body over 4 MiB is 413, declared or streamed', async () => {
    const big = JSON.stringify({ events: [event(1, { attrs: { pad: 'x'.repeat(MAX_BODY_BYTES) } })] });
    expect(await post(big)).toMatchObject({ status: 413, body: { error: { code: 'AUDIT_BODY_TOO_LARGE' } } });
    // chunked: no content-length, the limit is counted while reading
    const status = await new Promise<number>((resolve, reject) => {
      const url = new URL('/v1/events', aggregator.url);
      const req = httpRequest(
        url,
        {
          method: 'POST',
          headers: { authorization: `Bearer ${T.writer}`, 'transfer-encoding': 'chunked' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      const chunk = Buffer.alloc(256 * 1024, 'x');
      let sent = 0;
      const pump = (): void => {
        while (sent < MAX_BODY_BYTES + chunk.length * 4) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    expect(status).toBe(413);
    expect((await api('GET', '/healthz', { token: null })).status).toBe(200);
  });

  test('an id appended before is answered with the stored record, within and across batches', async () => {
    const stream = freshStream();
    const first = await post({
      stream,
      events: [event(1, { id: 'a' }), event(2, { id: 'b' }), event(3, { id: 'a' })],
    });
    expect(first.status).toBe(200);
    expect(first.body.records[2]).toEqual(first.body.records[0]);
    const again = await post({ stream, events: [event(4, { id: 'b' }), event(5)] });
    expect(again.body.records[0]).toEqual(first.body.records[1]);
    expect((await store.read({ stream })).map((r) => r.run)).toEqual(['run-1', 'run-2', 'run-5']);
    // ids are per stream
    const other = await post({ stream: freshStream(), events: [event(1, { id: 'a' })] });
    expect(other.body.records[0].seq).toBe(1);
  });

  test('the id window is bounded (an LRU): an id pushed out is appended again', async () => {
    const stream = freshStream();
    await post({ stream, events: ['a', 'b', 'c', 'd'].map((id, i) => event(i, { id })) });
    const answer = await post({ stream, events: [event(9, { id: 'd' }), event(10, { id: 'a' })] });
    expect(answer.body.records.map((r: { seq: number }) => r.seq)).toEqual([4, 5]);
  });

  test('a writer skipping writerSeq gets an audit.gap record first; new writers start fresh', async () => {
    const stream = freshStream();
    const gapsBefore = await metric('agent_runtime_audit_gaps_total');
    const send = (writer: string, seqs: number[]) =>
      post({ stream, writer, events: seqs.map((writerSeq) => ({ ...event(writerSeq), writerSeq })) });
    expect((await send('worker#a1', [1, 2])).status).toBe(200);
    const gapped = await send('worker#a1', [5, 6]);
    expect(gapped.body.records.map((r: { seq: number }) => r.seq)).toEqual([4, 5]);
    expect((await send('worker#b2', [1])).status).toBe(200); // another instance: no gap
    await send('worker#a1', [6, 7]); // a replay below the head is no gap
    const stored = await store.read({ stream });
    expect(stored.map((r) => `${r.source}:${r.kind}`)).toEqual([
      'workflow:decision',
      'workflow:decision',
      'aggregator:audit.gap',
      'workflow:decision',
      'workflow:decision',
      'workflow:decision',
      'workflow:decision',
      'workflow:decision',
    ]);
    expect(stored[2]).toMatchObject({
      agent: null,
      run: null,
      step: null,
      attrs: { writer: 'worker#a1', expected: 3, got: 5, missing: 2 },
    });
    // a writer first seen at 3 lost 1 and 2
    await send('worker#c3', [3]);
    expect((await store.read({ stream })).at(-2)?.attrs).toEqual({
      writer: 'worker#c3',
      expected: 1,
      got: 3,
      missing: 2,
    });
    expect(await metric('agent_runtime_audit_gaps_total')).toBe(gapsBefore + 2);
    expect(await metric('agent_runtime_audit_appended_total{source="aggregator"}')).toBeGreaterThanOrEqual(2);
    expect(await metric(`agent_runtime_audit_head_seq{stream="${stream}"}`)).toBe(10);
  });

  test('concurrent batches with the same ids append each once', async () => {
    const stream = freshStream();
    const answers = await Promise.all(
      Array.from({ length: 8 }, () =>
        post({ stream, events: [event(1, { id: 'x' }), event(2, { id: 'y' })] }),
      ),
    );
    for (const a of answers) expect(a.body).toEqual(answers[0]!.body);
    expect(await store.read({ stream })).toHaveLength(2);
  });
});

describe('reads', () => {
  let stream: string;
  beforeAll(async () => {
    stream = freshStream();
    await post({
      stream,
      events: Array.from({ length: 12 }, (_, i) =>
        event(i + 1, {
          kind: i % 3 === 0 ? 'execution.result' : 'decision',
          attrs: { n: i, needle: i === 7 ? 'Found' : 'no' },
        }),
      ),
    });
  });

  test('GET events pages with fromSeq and limit, for reader and writer tokens', async () => {
    for (const token of [T.reader, T.writer, T.observer]) {
      const page = await api('GET', `/v1/streams/${stream}/events?fromSeq=4&limit=3`, { token });
      expect(page.status).toBe(200);
      expect(page.body.records.map((r: AuditRecord) => r.seq)).toEqual([4, 5, 6]);
    }
    const all = await api('GET', `/v1/streams/${stream}/events`, { token: T.reader });
    expect(all.body.records).toEqual(await store.read({ stream }));
  });

  test('bad query parameters and stream names are 400', async () => {
    for (const path of [
      `/v1/streams/${stream}/events?fromSeq=0`,
      `/v1/streams/${stream}/events?limit=10001`,
      `/v1/streams/${stream}/events?limit=1&limit=2`,
      `/v1/streams/${stream}/events?fromseq=1`,
      `/v1/streams/bad%20name/events`,
      `/v1/streams/a%2Fb/events`,
      `/v1/streams/%ZZ/events`,
      `/v1/search?since=yesterday`,
      `/v1/search?limit=abc`,
      `/v1/search?drop=table`,
    ]) {
      const answer = await api('GET', path, { token: T.reader });
      expect(answer.status, path).toBe(400);
      expect(answer.body.error.code).toBe('AUDIT_REQUEST_INVALID');
    }
  });

  test('GET /v1/search filters by stream, kind and text', async () => {
    const found = await api('GET', `/v1/search?stream=${stream}&kind=execution.result`, { token: T.reader });
    expect(found.body.records.map((r: AuditRecord) => r.seq)).toEqual([1, 4, 7, 10]);
    const text = await api('GET', `/v1/search?stream=${stream}&text=found&limit=5`, { token: T.reader });
    expect(text.body.records.map((r: AuditRecord) => r.seq)).toEqual([8]);
  });

  test('GET checkpoints lists the signed checkpoints', async () => {
    const { ed25519Signer } = await import('./chain.ts');
    const { ed25519 } = await import('@noble/curves/ed25519.js');
    const signed = await store.checkpoint(stream, ed25519Signer(ed25519.utils.randomSecretKey()));
    const answer = await api('GET', `/v1/streams/${stream}/checkpoints`, { token: T.reader });
    expect(answer.body).toEqual({ checkpoints: [signed] });
  });
});

describe('GET /v1/streams/{stream}/subscribe (SSE)', () => {
  test('backlog then live, id = seq, keepalive comments; Last-Event-ID resumes after it', async () => {
    const stream = freshStream();
    await post({ stream, events: [event(1), event(2), event(3)] });
    const reading = readSse(`/v1/streams/${stream}/subscribe?fromSeq=2`, 4);
    await new Promise((r) => setTimeout(r, 100));
    await post({ stream, events: [event(4), event(5)] });
    const { records, raw, ids } = await reading;
    expect(ids).toEqual([2, 3, 4, 5]);
    expect(records).toEqual((await store.read({ stream })).slice(1));
    expect(raw).toContain('\nevent: record\ndata: ');
    expect(raw).toContain(': keepalive\n\n');
    const resumed = await readSse(`/v1/streams/${stream}/subscribe?fromSeq=1`, 2, { 'last-event-id': '3' });
    expect(resumed.ids).toEqual([4, 5]);
  });

  test('the subscriber gauge follows open subscriptions', async () => {
    const stream = freshStream();
    await expect.poll(() => metric('agent_runtime_audit_subscribers')).toBe(0);
    const before = 0;
    const controller = new AbortController();
    const response = await fetch(`${aggregator.url}/v1/streams/${stream}/subscribe`, {
      headers: { authorization: `Bearer ${T.reader}` },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(await metric('agent_runtime_audit_subscribers')).toBe(before + 1);
    controller.abort();
    await expect.poll(() => metric('agent_runtime_audit_subscribers')).toBe(before);
  });

  test('2,000 appends interleaved with subscribers: none lost, none twice, in order', async () => {
    const stream = freshStream();
    const total = 2_000;
    const early: AuditRecord[] = [];
    const late: AuditRecord[] = [];
    const reader = createAuditAggregatorClient({ url: aggregator.url, token: T.reader });
    const errors: unknown[] = [];
    const stopEarly = reader.subscribe(stream, 1, (r) => void early.push(r), {
      onError: (e) => errors.push(e),
    });
    let stopLate: (() => void) | undefined;
    const lanes = Array.from({ length: 4 }, async (_, lane) => {
      for (let batch = 0; batch < 25; batch++) {
        const events = Array.from({ length: 20 }, (_, i) => event(lane * 10_000 + batch * 100 + i));
        expect((await post({ stream, events })).status).toBe(200);
        if (lane === 0 && batch === 10) {
          stopLate = reader.subscribe(stream, 1, async (r) => {
            if (r.seq % 97 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
            late.push(r);
          });
        }
      }
    });
    await Promise.all(lanes);
    await expect.poll(() => early.length, { timeout: 20_000 }).toBe(total);
    await expect.poll(() => late.length, { timeout: 20_000 }).toBe(total);
    stopEarly();
    stopLate?.();
    const stored = await store.read({ stream });
    expect(stored).toHaveLength(total);
    expect(early.map((r) => r.seq)).toEqual(stored.map((r) => r.seq));
    expect(early.map((r) => r.hash)).toEqual(stored.map((r) => r.hash));
    expect(late.map((r) => r.hash)).toEqual(stored.map((r) => r.hash));
    expect(errors).toEqual([]);
  });
});

describe('a subscription the store dropped', () => {
  test('is ended after two quiet keepalive periods, so the client resubscribes and misses nothing', async () => {
    const own = await openSqliteAuditStore({ file: ':memory:' });
    let subscriptions = 0;
    // the first subscription goes silent after seq 3, as the store does when a backlog read fails
    const dropping: AuditStore = {
      ...own,
      subscribe(stream, fromSeq, onRecord) {
        const first = ++subscriptions === 1;
        return own.subscribe(stream, fromSeq, (r) => (first && r.seq > 3 ? undefined : onRecord(r)));
      },
    };
    const agg = await startAuditAggregator({ store: dropping, tokens: TOKENS, keepaliveMs: 30 });
    try {
      const writer = createAuditAggregatorClient({ url: agg.url, token: T.writer });
      const reader = createAuditAggregatorClient({
        url: agg.url,
        token: T.reader,
        retry: { baseDelayMs: 1 },
      });
      await writer.appendMany([event(1), event(2)]);
      const seen: number[] = [];
      const stop = reader.subscribe('default', 1, (r) => void seen.push(r.seq));
      await expect.poll(() => seen.length).toBe(2);
      await writer.appendMany([event(3), event(4), event(5)]);
      await expect.poll(() => seen, { timeout: 5_000 }).toEqual([1, 2, 3, 4, 5]);
      expect(subscriptions).toBe(2);
      stop();
      await writer.close();
    } finally {
      await agg.close();
      await own.close();
    }
  });
});

describe('leases', () => {
  test('only an observer token puts; any token reads; times by the injected clock', async () => {
    now = new Date('2026-05-01T10:00:00.000Z');
    const put = await api('PUT', '/v1/leases/observer', {
      token: T.observer,
      body: { holder: 'observer#1', ttlMs: 30_000 },
    });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({
      name: 'observer',
      holder: 'observer#1',
      expiresAt: '2026-05-01T10:00:30.000Z',
      renewedAt: '2026-05-01T10:00:00.000Z',
    });
    for (const token of [T.reader, T.writer, T.observer]) {
      expect((await api('GET', '/v1/leases/observer', { token })).body).toEqual(put.body);
    }
    now = new Date('2026-05-01T10:00:10.000Z');
    const renewed = await api('PUT', '/v1/leases/observer', {
      token: T.observer,
      body: { holder: 'observer#1', ttlMs: 30_000 },
    });
    expect(renewed.body.expiresAt).toBe('2026-05-01T10:00:40.000Z');
    const refused = await api('PUT', '/v1/leases/observer', {
      token: T.writer,
      body: { holder: 'x', ttlMs: 1 },
    });
    expect(refused).toMatchObject({ status: 403, body: { error: { code: 'AUDIT_LEASE_FORBIDDEN' } } });
    expect((await api('GET', '/v1/leases/observer', { token: T.reader })).body.holder).toBe('observer#1');
  });

  test('an unknown lease is 404 AUDIT_LEASE_NOT_FOUND; bad bodies are 400', async () => {
    expect(await api('GET', '/v1/leases/nobody', { token: T.reader })).toMatchObject({
      status: 404,
      body: { error: { code: 'AUDIT_LEASE_NOT_FOUND' } },
    });
    for (const body of [
      { holder: 'x', ttlMs: 0 },
      { holder: 'x', ttlMs: 600_001 },
      { holder: 'x', ttlMs: 1.5 },
      { holder: '', ttlMs: 10 },
      { holder: 'x' },
      { holder: 'x', ttlMs: 10, extra: 1 },
    ]) {
      const answer = await api('PUT', '/v1/leases/observer', { token: T.observer, body });
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe('AUDIT_REQUEST_INVALID');
    }
  });
});

describe('failures of the store', () => {
  test('a closed store is 503 AUDIT_UNAVAILABLE, not a crash', async () => {
    const own = await openSqliteAuditStore({ file: ':memory:' });
    const errors: unknown[] = [];
    const agg = await startAuditAggregator({ store: own, tokens: TOKENS, onError: (e) => errors.push(e) });
    await own.close();
    const response = await fetch(`${agg.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${T.writer}`, 'content-type': 'application/json' },
      body: JSON.stringify({ events: [event(1)] }),
    });
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('AUDIT_UNAVAILABLE');
    await agg.close();
    expect(errors).toEqual([]);
  });
});

describe('agent-runtime audit serve (a real child process)', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ar-aggregator-proc-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('serves the client, subscribers see every record, SIGTERM closes cleanly and the store verifies', async () => {
    const keys = await initSigningKey(join(work, 'keys'));
    const configFile = join(work, 'aggregator.yaml');
    await writeFile(
      configFile,
      stringify({
        listen: { host: '127.0.0.1', port: 0 },
        store: { kind: 'sqlite', file: 'data/audit.db', checkpoints: { everyAppends: 50 } },
        checkpointKey: 'keys/vote-signing.key',
        tokens: [
          { name: 'worker', tokenEnv: 'AUDIT_WRITER_TOKEN', sources: ['workflow', 'guard'] },
          { name: 'auditor', tokenSha256: tokenSha256(T.reader), sources: [] },
        ],
      }),
    );
    const child = spawn(
      process.execPath,
      [join(root, 'cli/bin.ts'), 'audit', 'serve', '--config', configFile],
      {
        cwd: root,
        env: { ...process.env, AUDIT_WRITER_TOKEN: T.writer },
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
      const seen: AuditRecord[] = [];
      const reader = createAuditAggregatorClient({ url, token: T.reader });
      const stop = reader.subscribe('default', 1, (r) => void seen.push(r));
      const writer = createAuditAggregatorClient({ url, token: T.writer, writer: 'proc-test' });
      const appended = await Promise.all(Array.from({ length: 120 }, (_, i) => writer.append(event(i + 1))));
      expect(appended.map((e) => e.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
      await writer.close();
      await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(120);
      stop();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stdout).toContain('audit aggregator stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    expect(stderr).toBe('');
    const config = await loadAggregatorConfig(configFile, { AUDIT_WRITER_TOKEN: T.writer });
    const verifying = await openSqliteAuditStore({ file: (config.store as { file: string }).file });
    try {
      const result = await verifyStream(verifying, 'default', await loadPublicKeys([keys.publicKeyFile]));
      expect(result).toEqual({ ok: true, count: 120, lastSeq: 120 });
      // the final checkpoint at shutdown covers the last record
      expect((await verifying.checkpoints('default')).at(-1)?.seq).toBe(120);
    } finally {
      await verifying.close();
    }
    // the CLI reads the same store through the configuration, no token needed
    const out = new PassThrough();
    const text: string[] = [];
    out.on('data', (c: Buffer) => text.push(c.toString()));
    const io = { stdout: out, stderr: out };
    const exportFile = join(work, 'export.ndjson');
    expect(await main(['audit', 'export', '--config', configFile, '--out', exportFile], io)).toBe(0);
    expect(await main(['audit', 'verify', '--config', configFile, '--key', keys.publicKeyFile], io)).toBe(0);
    expect(await main(['audit', 'verify', '--file', exportFile, '--key', keys.publicKeyFile], io)).toBe(0);
    const verified = text
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('ok: '));
    expect(verified).toHaveLength(2);
    expect(verified[0]).toBe(verified[1]);
    expect(verified[0]).toMatch(/^ok: 120 records \(last seq 120\), \d+ signed checkpoints$/);
  });
});

describe('loadAggregatorConfig', () => {
  let cfgDir: string;
  beforeAll(async () => {
    cfgDir = await mkdtemp(join(tmpdir(), 'ar-aggregator-cfg-'));
  });
  afterAll(async () => {
    await rm(cfgDir, { recursive: true, force: true });
  });
  const load = async (text: string, env: Record<string, string> = {}) => {
    const file = join(cfgDir, 'aggregator.yaml');
    await writeFile(file, text);
    return loadAggregatorConfig(file, env);
  };
  const problem = async (text: string, env: Record<string, string> = {}): Promise<string> => {
    const error = await load(text, env).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'AUDIT_AGGREGATOR_CONFIG_INVALID' });
    return (error as Error).message.replaceAll(cfgDir, '<dir>');
  };
  const VALID = [
    'listen: { port: 8390 }',
    'store: { kind: sqlite, file: data/audit.db }',
    'checkpointKey: keys/audit.key',
    'tokens:',
    '  - { name: worker, tokenEnv: AUDIT_WORKER_TOKEN, sources: [workflow, guard] }',
    `  - { name: auditor, tokenSha256: ${tokenSha256(T.reader)}, sources: [] }`,
  ].join('\n');

  test('resolves paths, hashes environment tokens and fills in default checkpoints', async () => {
    const config = await load(VALID, { AUDIT_WORKER_TOKEN: T.writer });
    expect(config).toEqual({
      listen: { host: '127.0.0.1', port: 8390 },
      store: {
        kind: 'sqlite',
        file: join(cfgDir, 'data/audit.db'),
        checkpoints: { everyAppends: 1000, everySeconds: 10 },
      },
      checkpointKey: join(cfgDir, 'keys/audit.key'),
      tokens: [
        { name: 'worker', tokenSha256: tokenSha256(T.writer), sources: ['workflow', 'guard'] },
        { name: 'auditor', tokenSha256: tokenSha256(T.reader), sources: [] },
      ],
    });
  });

  test('errors name the file, line, YAML path and what was expected', async () => {
    expect(
      await problem(VALID.replace('[workflow, guard]', '[workflow, root]'), { AUDIT_WORKER_TOKEN: T.writer }),
    ).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:5: invalid audit aggregator configuration: tokens[0].sources[1]: expected one of workflow, guard, approvals, cli, model, observer, got "root""`,
    );
    expect(await problem(VALID)).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:5: invalid audit aggregator configuration: tokens[0].tokenEnv: $AUDIT_WORKER_TOKEN is not set"`,
    );
    expect(await problem(VALID, { AUDIT_WORKER_TOKEN: 'short' })).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:5: invalid audit aggregator configuration: tokens[0].tokenEnv: $AUDIT_WORKER_TOKEN is 5 characters; expected at least 16"`,
    );
    expect(await problem(VALID.replace('{ port: 8390 }', '{ port: 99999 }'))).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:1: invalid audit aggregator configuration: listen.port: expected a port from 0 to 65535"`,
    );
    expect(await problem(VALID.replace('kind: sqlite', 'kind: mysql'))).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:2: invalid audit aggregator configuration: store.kind: expected "sqlite" or "postgres", got "mysql""`,
    );
    expect(
      await problem(
        VALID.replace('tokenEnv: AUDIT_WORKER_TOKEN', `tokenEnv: X, tokenSha256: ${'a'.repeat(64)}`),
      ),
    ).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:5: invalid audit aggregator configuration: tokens[0]: expected exactly one of tokenSha256 or tokenEnv"`,
    );
    expect(
      await problem(VALID.replace('name: auditor', 'name: worker'), { AUDIT_WORKER_TOKEN: T.writer }),
    ).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:5: invalid audit aggregator configuration: tokens: two tokens have the same name"`,
    );
    expect(await problem(VALID.replace('checkpointKey: keys/audit.key\n', ''))).toMatchInlineSnapshot(
      `"<dir>/aggregator.yaml:1: invalid audit aggregator configuration: checkpointKey: Invalid input: expected string, received undefined"`,
    );
    expect(await problem('listen: [\n')).toMatch(/^<dir>\/aggregator\.yaml:\d+: invalid YAML: /);
    await expect(loadAggregatorConfig(join(cfgDir, 'missing.yaml'), {})).rejects.toThrow(
      /missing\.yaml: cannot read \(ENOENT\)/,
    );
  });
});
