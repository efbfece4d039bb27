import { describe, expect, test } from 'vitest';
import { sampleTrace } from './cases.ts';
import type { AgentRuntimeError } from '../../../policy/errors.ts';
import { createRedactor } from './redact.ts';
import { openSqliteTraceStore } from './sqlite.ts';
import type { TraceStore } from './store.ts';
import type { ModelTrace } from './types.ts';
import { createTraceWriter } from './writer.ts';

let n = 0;
const ctx = { uid: (prefix: string) => `${prefix}w${++n}` };
const trace = (overrides: Partial<ModelTrace> = {}): ModelTrace =>
  sampleTrace(ctx, { agentId: 'agent', runId: 'run', ...overrides });

interface FakeStore extends TraceStore {
  readonly batches: ModelTrace[][];
  /** Makes every appendMany wait until `release()`. */
  hold(): void;
  release(): void;
  failWith: Error | null;
}

function fakeStore(): FakeStore {
  let gate: Promise<void> | null = null;
  let open: (() => void) | null = null;
  const store: FakeStore = {
    batches: [],
    failWith: null,
    hold() {
      gate = new Promise((resolve) => (open = resolve));
    },
    release() {
      open?.();
      gate = null;
    },
    async append(t) {
      return (await store.appendMany([t])) === 1;
    },
    async appendMany(traces) {
      store.batches.push([...traces]);
      if (gate !== null) await gate;
      if (store.failWith !== null) throw store.failWith;
      return traces.length;
    },
    async search() {
      return [];
    },
    async byRun() {
      return [];
    },
    async close() {},
  };
  return store;
}

function errors(): { list: [string, number][]; onError: (e: AgentRuntimeError, lost: number) => void } {
  const list: [string, number][] = [];
  return { list, onError: (e, lost) => list.push([e.code, lost]) };
}

describe('createTraceWriter', () => {
  test('write returns before a slow store finishes; flush waits for it', async () => {
    const store = fakeStore();
    store.hold();
    const { list, onError } = errors();
    const writer = createTraceWriter(store, { onError });
    const t = trace();
    expect(writer.write(t)).toBeUndefined();
    expect(store.batches).toEqual([]); // nothing happened on the caller's turn
    expect(writer.stats.pending).toBe(1);
    let flushed = false;
    const flushing = writer.flush().then(() => (flushed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.batches).toHaveLength(1);
    expect(flushed).toBe(false);
    store.release();
    await flushing;
    expect(flushed).toBe(true);
    expect(writer.stats).toEqual({ pending: 0, written: 1, duplicates: 0, dropped: 0, failed: 0 });
    expect(list).toEqual([]);
  });

  test('batches in order, at most batchSize per append', async () => {
    const store = fakeStore();
    const writer = createTraceWriter(store, { onError: () => {}, batchSize: 100, redactor: null });
    const all = Array.from({ length: 250 }, (_, i) => trace({ step: i }));
    for (const t of all) writer.write(t);
    await writer.flush();
    expect(store.batches.map((b) => b.length)).toEqual([100, 100, 50]);
    expect(store.batches.flat()).toEqual(all);
  });

  test('a failing store is reported through onError, never thrown; the writer keeps going', async () => {
    const store = fakeStore();
    store.failWith = new Error('connection reset');
    const { list, onError } = errors();
    const writer = createTraceWriter(store, { onError });
    writer.write(trace());
    writer.write(trace());
    await expect(writer.flush()).resolves.toBeUndefined();
    expect(list).toEqual([['TRACE_STORE_QUERY_FAILED', 2]]);
    store.failWith = null;
    writer.write(trace());
    await writer.flush();
    expect(writer.stats).toMatchObject({ written: 1, failed: 2 });
  });

  test('an onError that throws does not stop the writer', async () => {
    const store = fakeStore();
    store.failWith = new Error('down');
    const writer = createTraceWriter(store, {
      onError: () => {
        throw new Error('handler bug');
      },
    });
    writer.write(trace());
    await writer.flush();
    store.failWith = null;
    writer.write(trace());
    await writer.flush();
    expect(writer.stats).toMatchObject({ written: 1, failed: 1 });
  });

  test('the queue is bounded: the oldest are dropped and counted, reported once per overflow', async () => {
    const store = fakeStore();
    const { list, onError } = errors();
    const pending: (() => void)[] = [];
    const writer = createTraceWriter(store, { onError, maxQueue: 3, schedule: (run) => pending.push(run) });
    const all = Array.from({ length: 6 }, (_, i) => trace({ step: i }));
    for (const t of all) writer.write(t);
    expect(writer.stats).toMatchObject({ pending: 3, dropped: 3 });
    expect(list).toEqual([['TRACE_QUEUE_OVERFLOW', 1]]);
    expect(pending).toHaveLength(1);
    pending.shift()?.();
    await writer.flush();
    expect(store.batches.flat().map((t) => t.step)).toEqual([3, 4, 5]);
    // a new overflow after draining is reported again
    for (const t of all) writer.write(t);
    pending.shift()?.();
    await writer.flush();
    expect(list).toEqual([
      ['TRACE_QUEUE_OVERFLOW', 1],
      ['TRACE_QUEUE_OVERFLOW', 1],
    ]);
    expect(writer.stats).toMatchObject({ dropped: 6, written: 6 });
  });

  test('redacts by default; an invalid trace is reported alone, the rest of its batch is stored', async () => {
    const store = fakeStore();
    const { list, onError } = errors();
    const writer = createTraceWriter(store, { onError });
    writer.write(trace({ messages: [{ role: 'user', content: 'mail dave@example.com' }] }));
    writer.write({ ...trace(), step: -1 });
    writer.write({ broken: true } as unknown as ModelTrace);
    writer.write(trace());
    await writer.flush();
    expect(store.batches).toHaveLength(1);
    expect(store.batches[0]).toHaveLength(2);
    expect(store.batches[0]?.[0]?.messages[0]).toEqual({ role: 'user', content: 'mail [REDACTED:email]' });
    expect(list).toEqual([
      ['TRACE_INVALID', 1],
      ['TRACE_INVALID', 1],
    ]);
    expect(writer.stats).toMatchObject({ written: 2, failed: 2 });
  });

  test('close drains, then refuses further writes through onError', async () => {
    const store = fakeStore();
    store.hold();
    const { list, onError } = errors();
    const writer = createTraceWriter(store, { onError });
    writer.write(trace());
    const closing = writer.close();
    writer.write(trace());
    store.release();
    await closing;
    await writer.close();
    expect(store.batches.flat()).toHaveLength(1);
    expect(list).toEqual([['TRACE_WRITER_CLOSED', 1]]);
    expect(writer.stats).toMatchObject({ written: 1, dropped: 1, pending: 0 });
  });

  test('over a real store: duplicates counted, metadata redactor applied', async () => {
    const store = await openSqliteTraceStore({ file: ':memory:' });
    const writer = createTraceWriter(store, {
      onError: () => {},
      redactor: createRedactor({ capture: 'metadata' }),
    });
    const t = trace({ runId: 'real' });
    writer.write(t);
    writer.write(t);
    writer.write(trace({ runId: 'real', step: 1 }));
    await writer.close();
    const stored = await store.byRun('real');
    expect(stored.map((s) => s.contentCaptured)).toEqual([false, false]);
    expect(writer.stats).toMatchObject({ written: 2, duplicates: 1 });
    await store.close();
  });

  test('refuses a non-positive maxQueue or batchSize', () => {
    expect(() => createTraceWriter(fakeStore(), { onError: () => {}, maxQueue: 0 })).toThrow(RangeError);
    expect(() => createTraceWriter(fakeStore(), { onError: () => {}, batchSize: 1.5 })).toThrow(RangeError);
  });
});
