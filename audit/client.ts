/**
 * The writer's and reader's side of the audit aggregator's HTTP API: an {@link AuditClient}
 * that batches concurrent appends into one `POST /v1/events` (one in flight at a time, so the
 * writer's `writerSeq` arrives in order), retries transient failures idempotently (every event
 * carries an id; the client makes one up when the caller gave none), and SSE subscriptions that
 * reconnect from the last seq delivered.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { AuditClient, AuditEvent, AuditEventInput } from '../activities/audit/types.ts';
import type { AuditRecord, Checkpoint } from './chain.ts';
import { messageOf } from './errors.ts';
import { AuditAggregatorError, AuditAggregatorErrorCode, MAX_EVENTS_PER_POST } from './server.ts';
import type { AppendedRef, AuditLease } from './server.ts';
import type { AuditReadQuery, AuditSearchQuery } from './store.ts';

/** Options of {@link createAuditAggregatorClient}. */
export interface AuditAggregatorClientOptions {
  /** The aggregator's base URL (`http://127.0.0.1:8390`). */
  readonly url: string;
  /** A bearer token the aggregator knows. */
  readonly token: string;
  /** The stream appends go to; default `default`. */
  readonly stream?: string;
  /**
   * This writer's name; the client appends a random instance suffix and numbers its events
   * (`writerSeq` 1, 2, 3, …) so the aggregator can record events lost on the way as gaps.
   */
  readonly writer?: string;
  /** Default the global `fetch`. */
  readonly fetch?: typeof fetch;
  readonly batch?: {
    /** Events per POST; default 500, at most {@link MAX_EVENTS_PER_POST}. */
    readonly maxEvents?: number;
    /** How long the first queued event waits for company; default 2 ms. */
    readonly maxDelayMs?: number;
  };
  readonly retry?: {
    /** Tries per request, the first included; default 5. */
    readonly attempts?: number;
    /** Backoff before the second try (doubling, with jitter); default 100 ms. */
    readonly baseDelayMs?: number;
  };
}

/** Options of {@link AuditAggregatorClient.subscribe}. */
export interface AuditSubscribeOptions {
  readonly signal?: AbortSignal;
  /** Each disconnect (before the reconnect) and a final refusal (4xx: no reconnect). */
  readonly onError?: (error: unknown) => void;
  /** Reconnect when nothing, not even a keepalive, arrived for this long; default 45 s. */
  readonly idleTimeoutMs?: number;
}

/** The aggregator client: an {@link AuditClient} plus reads, subscriptions and leases. */
export interface AuditAggregatorClient extends AuditClient {
  /** The writer name sent (with its instance suffix), when `writer` was given. */
  readonly writer: string | undefined;
  /** Appends in order; one result per event. */
  appendMany(events: readonly AuditEventInput[]): Promise<AuditEvent[]>;
  read(query: AuditReadQuery): Promise<AuditRecord[]>;
  search(query: AuditSearchQuery): Promise<AuditRecord[]>;
  checkpoints(stream: string): Promise<Checkpoint[]>;
  /**
   * Delivers the stream's records from `fromSeq` on, in seq order, each once; reconnects with
   * backoff after a disconnect. Returns the unsubscribe function.
   */
  subscribe(
    stream: string,
    fromSeq: number,
    onRecord: (record: AuditRecord) => void | Promise<void>,
    options?: AuditSubscribeOptions,
  ): () => void;
  /** The lease, or null when the aggregator has none of that name. */
  getLease(name: string): Promise<AuditLease | null>;
  putLease(name: string, holder: string, ttlMs: number): Promise<AuditLease>;
  /** Sends what is queued and waits for it; later appends reject with `AUDIT_CLIENT_CLOSED`. */
  close(): Promise<void>;
}

interface Pending {
  readonly input: AuditEventInput;
  /** The event as sent, without `writerSeq`. */
  readonly json: string;
  resolve(event: AuditEvent): void;
  reject(error: unknown): void;
}

const Code = AuditAggregatorErrorCode;
const MAX_BACKOFF_MS = 5_000;

/** Per-event refusals: worth resending the rest of the batch one by one. */
const PER_EVENT = new Set<string>([Code.eventInvalid, Code.sourceForbidden]);

function isTransient(error: unknown): boolean {
  if (error instanceof AuditAggregatorError) {
    return error.status === undefined
      ? error.code !== Code.clientClosed
      : error.status >= 500 || error.status === 429;
  }
  return true; // fetch's network errors (connection refused, reset)
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Creates a client; nothing is sent until the first call. */
export function createAuditAggregatorClient(options: AuditAggregatorClientOptions): AuditAggregatorClient {
  const base = options.url.replace(/\/+$/, '');
  const doFetch = options.fetch ?? fetch;
  const stream = options.stream ?? 'default';
  const maxEvents = Math.min(MAX_EVENTS_PER_POST, Math.max(1, options.batch?.maxEvents ?? 500));
  const maxDelayMs = Math.max(0, options.batch?.maxDelayMs ?? 2);
  const attempts = Math.max(1, options.retry?.attempts ?? 5);
  const baseDelayMs = Math.max(0, options.retry?.baseDelayMs ?? 100);
  const instance = randomBytes(6).toString('hex');
  const writer = options.writer === undefined ? undefined : `${options.writer}#${instance}`;
  const idPrefix = `${writer ?? `client#${instance}`}:`;
  const auth = { authorization: `Bearer ${options.token}` };

  let closed = false;
  let autoId = 0;
  let nextWriterSeq = 1;
  const queue: Pending[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sending: Promise<void> | null = null;

  const backoff = (attempt: number): number =>
    Math.min(MAX_BACKOFF_MS, baseDelayMs * 2 ** attempt) * (0.75 + Math.random() * 0.5);

  /** One request; an error response becomes an {@link AuditAggregatorError} with the server's code. */
  const request = async (method: string, path: string, body?: string): Promise<unknown> => {
    const response = await doFetch(`${base}${path}`, {
      method,
      headers: body === undefined ? auth : { ...auth, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body }),
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text) as unknown;
    } catch {
      throw new AuditAggregatorError(
        Code.protocol,
        `audit aggregator: ${method} ${path}: HTTP ${response.status} with a body that is not JSON`,
        { status: response.status },
      );
    }
    if (!response.ok) {
      const error = (parsed as { error?: { code?: unknown; message?: unknown } }).error;
      throw new AuditAggregatorError(
        typeof error?.code === 'string' ? error.code : Code.protocol,
        `audit aggregator: ${typeof error?.message === 'string' ? error.message : `HTTP ${response.status}`}`,
        { status: response.status },
      );
    }
    return parsed;
  };

  const withRetry = async <T>(fn: () => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        if (attempt + 1 >= attempts || !isTransient(error)) throw error;
        await sleep(backoff(attempt));
      }
    }
  };

  /** POSTs `batch` (retrying); resolves or rejects each caller. */
  const post = async (batch: readonly Pending[]): Promise<void> => {
    const first = nextWriterSeq;
    const events = batch.map((p, i) =>
      writer === undefined ? p.json : `${p.json.slice(0, -1)},"writerSeq":${first + i}}`,
    );
    const body = `{"stream":${JSON.stringify(stream)},${
      writer === undefined ? '' : `"writer":${JSON.stringify(writer)},`
    }"events":[${events.join(',')}]}`;
    let refs: readonly AppendedRef[];
    try {
      const answer = (await withRetry(() => request('POST', '/v1/events', body))) as { records?: unknown };
      if (!Array.isArray(answer.records) || answer.records.length !== batch.length) {
        throw new AuditAggregatorError(
          Code.protocol,
          'audit aggregator: the answer does not match the batch',
        );
      }
      refs = answer.records as AppendedRef[];
    } catch (error) {
      if (error instanceof AuditAggregatorError && error.status !== undefined && error.status < 500) {
        // refused: nothing of the batch was appended, so its writerSeqs are free again
        if (batch.length > 1 && (PER_EVENT.has(error.code) || error.code === Code.bodyTooLarge)) {
          const half = error.code === Code.bodyTooLarge ? Math.ceil(batch.length / 2) : 1;
          for (let i = 0; i < batch.length; i += half) await post(batch.slice(i, i + half));
          return;
        }
      } else {
        // maybe appended, maybe lost: the aggregator sees the skipped writerSeqs as a gap
        nextWriterSeq += batch.length;
      }
      for (const p of batch) p.reject(error);
      return;
    }
    nextWriterSeq += batch.length;
    batch.forEach((p, i) => {
      const ref = refs[i];
      p.resolve({ ...p.input, seq: ref?.seq ?? 0, ts: ref?.ts ?? '' });
    });
  };

  const pump = (): void => {
    if (sending !== null || queue.length === 0) return;
    sending = (async () => {
      while (queue.length > 0) await post(queue.splice(0, maxEvents));
    })().finally(() => {
      sending = null;
      pump();
    });
  };

  const schedule = (): void => {
    if (queue.length >= maxEvents) {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      pump();
    } else {
      timer ??= setTimeout(() => {
        timer = undefined;
        pump();
      }, maxDelayMs);
    }
  };

  const enqueue = (input: AuditEventInput): Promise<AuditEvent> =>
    new Promise<AuditEvent>((resolve, reject) => {
      if (closed) {
        reject(new AuditAggregatorError(Code.clientClosed, 'audit aggregator client: closed'));
        return;
      }
      let json: string;
      try {
        const withId = input.id === undefined ? { ...input, id: `${idPrefix}${++autoId}` } : input;
        json = JSON.stringify(withId);
        if (!json.startsWith('{')) throw new TypeError('not an object');
      } catch (error) {
        reject(
          new AuditAggregatorError(Code.eventInvalid, `audit aggregator client: event: ${messageOf(error)}`, {
            cause: error,
          }),
        );
        return;
      }
      queue.push({ input, json, resolve, reject });
      schedule();
    });

  const get = <T>(path: string): Promise<T> => withRetry(async () => (await request('GET', path)) as T);
  const params = (values: Record<string, unknown>): string => {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(values))
      if (value !== undefined) search.set(key, String(value));
    const text = search.toString();
    return text === '' ? '' : `?${text}`;
  };
  const streamPath = (name: string, what: string): string =>
    `/v1/streams/${encodeURIComponent(name)}/${what}`;

  const subscribe: AuditAggregatorClient['subscribe'] = (name, fromSeq, onRecord, subscribeOptions = {}) => {
    const controller = new AbortController();
    const outer = subscribeOptions.signal;
    const stop = (): void => controller.abort();
    if (outer?.aborted) stop();
    outer?.addEventListener('abort', stop, { once: true });
    const idleMs = subscribeOptions.idleTimeoutMs ?? 45_000;
    const report = subscribeOptions.onError ?? (() => {});
    let next = fromSeq;

    const once = async (): Promise<void> => {
      const attempt = new AbortController();
      const abortAttempt = (): void => attempt.abort();
      controller.signal.addEventListener('abort', abortAttempt, { once: true });
      let idle: ReturnType<typeof setTimeout> | undefined;
      const touch = (): void => {
        if (idle !== undefined) clearTimeout(idle);
        idle = setTimeout(() => attempt.abort(new Error(`no data for ${idleMs} ms`)), idleMs);
      };
      try {
        touch();
        const response = await doFetch(
          `${base}${streamPath(name, 'subscribe')}${params({ fromSeq: next })}`,
          {
            headers: { ...auth, accept: 'text/event-stream' },
            signal: attempt.signal,
          },
        );
        if (!response.ok || response.body === null) {
          const text = await response.text().catch(() => '');
          let code: string = Code.protocol;
          let message = `HTTP ${response.status}`;
          try {
            const error = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
            code = error?.code ?? code;
            message = error?.message ?? message;
          } catch {
            // not JSON: keep the status
          }
          throw new AuditAggregatorError(code, `audit aggregator: ${message}`, { status: response.status });
        }
        const decoder = new TextDecoder();
        let buffer = '';
        let data: string[] = [];
        let event = 'message';
        for await (const chunk of response.body) {
          touch();
          buffer += decoder.decode(chunk, { stream: true });
          let newline: number;
          while ((newline = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, newline).replace(/\r$/, '');
            buffer = buffer.slice(newline + 1);
            if (line === '') {
              if (event === 'record' && data.length > 0) {
                const record = JSON.parse(data.join('\n')) as AuditRecord;
                if (record.seq === next) {
                  await onRecord(record);
                  next = record.seq + 1;
                } else if (record.seq > next) {
                  throw new AuditAggregatorError(
                    Code.protocol,
                    `audit aggregator: expected seq ${next}, got ${record.seq}; reconnecting`,
                  );
                }
                if (controller.signal.aborted) return;
              }
              data = [];
              event = 'message';
            } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            else if (line.startsWith('event:')) event = line.slice(6).trim();
          }
        }
        throw new AuditAggregatorError(Code.unavailable, 'audit aggregator: the subscription ended');
      } finally {
        if (idle !== undefined) clearTimeout(idle);
        controller.signal.removeEventListener('abort', abortAttempt);
      }
    };

    void (async () => {
      let failures = 0;
      while (!controller.signal.aborted) {
        const before = next;
        try {
          await once();
        } catch (error) {
          if (controller.signal.aborted) return;
          report(error);
          if (!isTransient(error)) return;
        }
        failures = next > before ? 0 : failures + 1;
        await sleep(backoff(Math.max(0, failures - 1)), controller.signal);
      }
    })();
    return stop;
  };

  const client: AuditAggregatorClient = {
    writer,
    append: enqueue,
    appendMany: (events) => Promise.all(events.map(enqueue)),
    read: (q) =>
      get<{ records: AuditRecord[] }>(
        `${streamPath(q.stream, 'events')}${params({ fromSeq: q.fromSeq, limit: q.limit })}`,
      ).then((r) => r.records),
    search: (q) => get<{ records: AuditRecord[] }>(`/v1/search${params({ ...q })}`).then((r) => r.records),
    checkpoints: (name) =>
      get<{ checkpoints: Checkpoint[] }>(streamPath(name, 'checkpoints')).then((r) => r.checkpoints),
    subscribe,
    async getLease(name) {
      try {
        return await get<AuditLease>(`/v1/leases/${encodeURIComponent(name)}`);
      } catch (error) {
        if (error instanceof AuditAggregatorError && error.code === Code.leaseNotFound) return null;
        throw error;
      }
    },
    putLease: (name, holder, ttlMs) =>
      withRetry(
        async () =>
          (await request(
            'PUT',
            `/v1/leases/${encodeURIComponent(name)}`,
            JSON.stringify({ holder, ttlMs }),
          )) as AuditLease,
      ),
    async close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      pump();
      while (sending !== null) await sending;
    },
  };
  return Object.freeze(client);
}
