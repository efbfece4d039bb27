/**
 * The aggregator client against a real aggregator on a real SQLite store. Faults are injected
 * by wrapping the real `fetch` (refusing, losing answers, cutting streams), never by mocking.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { AuditEventInput } from '../activities/audit/types.ts';
import { createAuditAggregatorClient } from './client.ts';
import { openSqliteAuditStore } from './index.ts';
import type { AuditRecord, AuditStore } from './index.ts';
import { AuditAggregatorError, startAuditAggregator, tokenSha256 } from './server.ts';
import type { AuditAggregator } from './server.ts';

const WRITER = 'client-writer-token-0123456789';
const OBSERVER = 'client-observer-token-0123456789';
const READER = 'client-reader-token-0123456789';

let store: AuditStore;
let aggregator: AuditAggregator;
let streamNo = 0;
const freshStream = (): string => `c${++streamNo}`;

const event = (n: number, extra: Partial<AuditEventInput> = {}): AuditEventInput => ({
  source: 'workflow',
  agent: 'agent-1',
  run: 'run-1',
  step: n,
  kind: 'decision',
  attrs: { n },
  ...extra,
});

/** The real fetch, counting POSTs to /v1/events and their event counts. */
function countingFetch(): { fetch: typeof fetch; posts: number[] } {
  const posts: number[] = [];
  return {
    posts,
    fetch: async (input, init) => {
      if (init?.method === 'POST')
        posts.push((JSON.parse(String(init.body)) as { events: unknown[] }).events.length);
      return fetch(input, init);
    },
  };
}

beforeAll(async () => {
  store = await openSqliteAuditStore({ file: ':memory:' });
  aggregator = await startAuditAggregator({
    store,
    tokens: [
      { name: 'worker', tokenSha256: tokenSha256(WRITER), sources: ['workflow'] },
      { name: 'observer', tokenSha256: tokenSha256(OBSERVER), sources: ['observer'] },
      { name: 'reader', tokenSha256: tokenSha256(READER), sources: [] },
    ],
  });
});

afterAll(async () => {
  await aggregator?.close();
  await store?.close();
});

describe('appends', () => {
  test('concurrent appends share POSTs; each caller gets its own AuditEvent', async () => {
    const stream = freshStream();
    const counting = countingFetch();
    const client = createAuditAggregatorClient({
      url: aggregator.url,
      token: WRITER,
      stream,
      writer: 'batcher',
      fetch: counting.fetch,
      batch: { maxEvents: 100, maxDelayMs: 5 },
    });
    const inputs = Array.from({ length: 250 }, (_, i) => event(i, { id: `e-${i}` }));
    const events = await Promise.all(inputs.map((e) => client.append(e)));
    expect(events.map((e) => e.seq)).toEqual(inputs.map((_, i) => i + 1));
    expect(events[7]).toEqual({ ...inputs[7], seq: 8, ts: expect.any(String) });
    expect(counting.posts).toEqual([100, 100, 50]);
    expect(client.writer).toMatch(/^batcher#[0-9a-f]{12}$/);
    // appendMany keeps order; a writer with consecutive writerSeqs records no gap
    const more = await client.appendMany([event(1000), event(1001)]);
    expect(more.map((e) => e.seq)).toEqual([251, 252]);
    await client.close();
    expect((await store.read({ stream })).filter((r) => r.kind === 'audit.gap')).toEqual([]);
    await expect(client.append(event(1))).rejects.toMatchObject({ code: 'AUDIT_CLIENT_CLOSED' });
  });

  test('close() flushes what is queued', async () => {
    const stream = freshStream();
    const client = createAuditAggregatorClient({
      url: aggregator.url,
      token: WRITER,
      stream,
      batch: { maxDelayMs: 10_000 },
    });
    const pending = [client.append(event(1)), client.append(event(2))];
    await client.close();
    expect((await Promise.all(pending)).map((e) => e.seq)).toEqual([1, 2]);
  });

  test('a refused event rejects its caller with the server code; the rest of the batch is appended', async () => {
    const stream = freshStream();
    const client = createAuditAggregatorClient({
      url: aggregator.url,
      token: WRITER,
      stream,
      writer: 'mixed',
    });
    const results = await Promise.allSettled([
      client.append(event(1)),
      client.append(event(2, { source: 'guard' })),
      client.append({ ...event(3), kind: 'nope' } as unknown as AuditEventInput),
      client.append(event(4)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    const [, forbidden, invalid] = results as PromiseRejectedResult[];
    expect(forbidden?.reason).toBeInstanceOf(AuditAggregatorError);
    expect(forbidden?.reason).toMatchObject({ code: 'AUDIT_SOURCE_FORBIDDEN', status: 403 });
    expect(invalid?.reason).toMatchObject({ code: 'AUDIT_EVENT_INVALID', status: 400 });
    expect((invalid?.reason as Error).message).toBe('audit aggregator: events[0].kind: unknown kind "nope"');
    // refused events used no writerSeq: no gap
    expect((await store.read({ stream })).map((r) => r.kind)).toEqual(['decision', 'decision']);
    // a value JSON cannot carry fails alone, before anything is sent
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    await expect(client.append(event(5, { attrs: cyclic }))).rejects.toMatchObject({
      code: 'AUDIT_EVENT_INVALID',
    });
    await client.close();
  });

  test('an unknown token rejects with AUDIT_UNAUTHORIZED and is not retried', async () => {
    const counting = countingFetch();
    const client = createAuditAggregatorClient({
      url: aggregator.url,
      token: 'wrong',
      fetch: counting.fetch,
    });
    await expect(client.append(event(1))).rejects.toMatchObject({ code: 'AUDIT_UNAUTHORIZED', status: 401 });
    expect(counting.posts).toHaveLength(1);
  });

  test('5xx and lost answers are retried without duplicates (every event carries an id)', async () => {
    const stream = freshStream();
    let calls = 0;
    const flaky: typeof fetch = async (input, init) => {
      calls += 1;
      if (calls === 1)
        return new Response('{"error":{"code":"AUDIT_UNAVAILABLE","message":"x"}}', { status: 503 });
      const response = await fetch(input, init);
      if (calls === 2) throw new TypeError('fetch failed: socket hang up'); // appended, answer lost
      return response;
    };
    const client = createAuditAggregatorClient({
      url: aggregator.url,
      token: WRITER,
      stream,
      writer: 'flaky',
      fetch: flaky,
      retry: { baseDelayMs: 1 },
    });
    const events = await Promise.all([client.append(event(1)), client.append(event(2))]);
    expect(events.map((e) => e.seq)).toEqual([1, 2]);
    expect(calls).toBe(3);
    expect(await store.read({ stream })).toHaveLength(2);
    await client.close();
  });

  test('a batch lost after every retry rejects its callers, and the aggregator records the gap', async () => {
    const stream = freshStream();
    let down = false;
    const client = createAuditAggregatorClient({
      url: aggregator.url,
      token: WRITER,
      stream,
      writer: 'lossy',
      fetch: async (input, init) => {
        if (down && init?.method === 'POST') throw new TypeError('fetch failed: ECONNREFUSED');
        return fetch(input, init);
      },
      retry: { attempts: 3, baseDelayMs: 1 },
    });
    await client.append(event(1));
    down = true;
    await expect(Promise.all([client.append(event(2)), client.append(event(3))])).rejects.toThrow(
      /ECONNREFUSED/,
    );
    down = false;
    await client.append(event(4));
    await client.close();
    const stored = await store.read({ stream });
    expect(stored.map((r) => r.kind)).toEqual(['decision', 'audit.gap', 'decision']);
    expect(stored[1]?.attrs).toEqual({ writer: client.writer, expected: 2, got: 4, missing: 2 });
  });
});

describe('reads, leases and subscriptions', () => {
  test('read, search and checkpoints go through the reader token', async () => {
    const stream = freshStream();
    const writer = createAuditAggregatorClient({ url: aggregator.url, token: WRITER, stream });
    await writer.appendMany([event(1), event(2, { kind: 'execution.result' }), event(3)]);
    await writer.close();
    const reader = createAuditAggregatorClient({ url: aggregator.url, token: READER });
    expect(await reader.read({ stream, fromSeq: 2 })).toEqual(await store.read({ stream, fromSeq: 2 }));
    expect((await reader.search({ stream, kind: 'execution.result' })).map((r) => r.seq)).toEqual([2]);
    expect(await reader.checkpoints(stream)).toEqual([]);
    await expect(reader.read({ stream: 'bad name' })).rejects.toMatchObject({
      code: 'AUDIT_REQUEST_INVALID',
    });
  });

  test('leases: put by the observer, null when missing, refused for others', async () => {
    const observer = createAuditAggregatorClient({ url: aggregator.url, token: OBSERVER });
    const reader = createAuditAggregatorClient({ url: aggregator.url, token: READER });
    expect(await reader.getLease('heartbeat')).toBeNull();
    const lease = await observer.putLease('heartbeat', 'observer#1', 5_000);
    expect(lease).toMatchObject({ name: 'heartbeat', holder: 'observer#1' });
    expect(Date.parse(lease.expiresAt) - Date.parse(lease.renewedAt)).toBe(5_000);
    expect(await reader.getLease('heartbeat')).toEqual(lease);
    await expect(reader.putLease('heartbeat', 'me', 10)).rejects.toMatchObject({
      code: 'AUDIT_LEASE_FORBIDDEN',
    });
  });

  test('a subscription cut mid-stream reconnects from the last seq + 1: nothing twice, nothing lost', async () => {
    const stream = freshStream();
    const writer = createAuditAggregatorClient({ url: aggregator.url, token: WRITER, stream });
    await writer.appendMany(Array.from({ length: 300 }, (_, i) => event(i)));
    let connections = 0;
    const fromSeqs: string[] = [];
    // the first two connections break after some bytes
    const cutting: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      connections += 1;
      fromSeqs.push(new URL(String(input)).searchParams.get('fromSeq') ?? '');
      if (connections > 2 || response.body === null) return response;
      let bytes = 0;
      const cut = response.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            const room = 20_000 - bytes;
            bytes += chunk.length;
            if (bytes <= 20_000) return controller.enqueue(chunk);
            controller.enqueue(chunk.subarray(0, room)); // a frame cut in half
            controller.error(new Error('connection reset'));
          },
        }),
      );
      return new Response(cut, { status: response.status, headers: response.headers });
    };
    const reader = createAuditAggregatorClient({
      url: aggregator.url,
      token: READER,
      fetch: cutting,
      retry: { baseDelayMs: 1 },
    });
    const seen: AuditRecord[] = [];
    const errors: unknown[] = [];
    const stop = reader.subscribe(stream, 1, (r) => void seen.push(r), { onError: (e) => errors.push(e) });
    await writer.appendMany(Array.from({ length: 200 }, (_, i) => event(1000 + i)));
    await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(500);
    stop();
    expect(seen.map((r) => r.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(connections).toBeGreaterThanOrEqual(3);
    expect(fromSeqs[0]).toBe('1');
    expect(Number(fromSeqs[1])).toBeGreaterThan(1);
    expect(errors.length).toBeGreaterThanOrEqual(2);
    await writer.close();
  });

  test('a subscription with a refused token stops and reports once', async () => {
    const reader = createAuditAggregatorClient({ url: aggregator.url, token: 'nobody-knows-me' });
    const errors: unknown[] = [];
    reader.subscribe('default', 1, () => {}, { onError: (e) => errors.push(e) });
    await expect.poll(() => errors.length).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'AUDIT_UNAUTHORIZED' });
  });
});
