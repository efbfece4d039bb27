/**
 * The audit aggregator as its own process: an append-only HTTP API in front of one
 * {@link AuditStore}. Writers authenticate with bearer tokens (stored as sha256, compared in
 * constant time) limited to the sources they may write; readers hold tokens with no sources.
 * Appends are serialised per stream, deduplicated by event id (a bounded LRU) and checked for
 * writer-side gaps (`writerSeq`), which become `audit.gap` records. Subscriptions are
 * Server-Sent Events over the store's `subscribe`. Leases (the observer's heartbeat) live in
 * memory only, so a restart loses them: the fail-safe direction.
 *
 * Wire format and codes: `docs/audit-aggregator.md`.
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { listen } from '../common/listen.ts';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { prepareEvent } from '../activities/audit/event.ts';
import { AuditError, AuditErrorCode } from '../activities/audit/errors.ts';
import type { AuditEventInput, AuditSource } from '../activities/audit/types.ts';
import { AgentRuntimeError } from '../policy/errors.ts';
import { formatPath } from '../policy/load.ts';
import type { AuditRecord, CheckpointSigner } from './chain.ts';
import { AuditStoreError, AuditStoreErrorCode, messageOf } from './errors.ts';
import { MAX_SEARCH_LIMIT, STREAM_PATTERN } from './store.ts';
import type { AuditAppendInput, AuditStore } from './store.ts';

/** Stable codes of the aggregator's error responses (and of {@link AuditAggregatorError}). */
export const AuditAggregatorErrorCode = {
  /** No bearer token, or one the aggregator does not know. 401. */
  unauthorized: 'AUDIT_UNAUTHORIZED',
  /** An event's source is not one the token may write; nothing of the batch was appended. 403. */
  sourceForbidden: 'AUDIT_SOURCE_FORBIDDEN',
  /** Only a token that may write source `observer` may put a lease. 403. */
  leaseForbidden: 'AUDIT_LEASE_FORBIDDEN',
  /** An event failed validation; the message names the first problem (`events[3].kind: …`). 400. */
  eventInvalid: 'AUDIT_EVENT_INVALID',
  /** The body, a path segment or a query parameter is malformed. 400. */
  requestInvalid: 'AUDIT_REQUEST_INVALID',
  /** The body is larger than {@link MAX_BODY_BYTES}. 413. */
  bodyTooLarge: 'AUDIT_BODY_TOO_LARGE',
  /** PUT, PATCH or DELETE on events or streams: the log is append-only. 405. */
  appendOnly: 'AUDIT_APPEND_ONLY',
  /** Another method than the route serves. 405. */
  methodNotAllowed: 'AUDIT_METHOD_NOT_ALLOWED',
  /** No such route. 404. */
  notFound: 'AUDIT_NOT_FOUND',
  /** No lease of that name was put since the aggregator started. 404. */
  leaseNotFound: 'AUDIT_LEASE_NOT_FOUND',
  /** The store failed or is closed; retry later. 503. */
  unavailable: 'AUDIT_UNAVAILABLE',
  /** An unexpected failure. 500. */
  internal: 'AUDIT_INTERNAL',
  /** Invalid aggregator options or service configuration. */
  configInvalid: 'AUDIT_AGGREGATOR_CONFIG_INVALID',
  /** The client was closed. */
  clientClosed: 'AUDIT_CLIENT_CLOSED',
  /** The aggregator answered something the client cannot read. */
  protocol: 'AUDIT_PROTOCOL_ERROR',
} as const;
export type AuditAggregatorErrorCode =
  (typeof AuditAggregatorErrorCode)[keyof typeof AuditAggregatorErrorCode];

/** A refusal or failure of the aggregator, on either side of the wire; match on `code`. */
export class AuditAggregatorError extends AgentRuntimeError {
  /** The HTTP status the aggregator answered with, when it came from a response. */
  readonly status: number | undefined;
  constructor(code: string, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status;
  }
}

/** One bearer token the aggregator accepts. */
export interface AggregatorToken {
  /** Who holds it (in messages and metrics only). */
  readonly name: string;
  /** sha256 (64 lowercase hex digits) of the token; the token itself is never stored. */
  readonly tokenSha256: string;
  /** Sources the holder may append; `[]` = read only. `aggregator` is the aggregator's own. */
  readonly sources: readonly AuditSource[];
}

/** Options of {@link startAuditAggregator}. */
export interface AuditAggregatorOptions {
  readonly store: AuditStore;
  readonly tokens: readonly AggregatorToken[];
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0 (a free port). */
  readonly port?: number;
  /** Lease times; default the system clock. */
  readonly clock?: () => Date;
  /** SSE keepalive comment interval; default 15 s. */
  readonly keepaliveMs?: number;
  /** Ids remembered per stream for idempotent appends; default {@link DEFAULT_DEDUPE_WINDOW}. */
  readonly dedupeWindow?: number;
  /** When given, `close()` checkpoints every stream appended to since the start. */
  readonly checkpointSigner?: CheckpointSigner;
  /** Unexpected failures (answered 500) and failed final checkpoints. */
  readonly onError?: (error: unknown) => void;
}

/** A running aggregator. */
export interface AuditAggregator {
  /** `http://host:port` as bound. */
  readonly url: string;
  /** Stops listening, ends subscriptions, waits for appends in flight, writes final checkpoints. */
  close(): Promise<void>;
}

/** What `POST /v1/events` answers per event. */
export interface AppendedRef {
  readonly seq: number;
  readonly ts: string;
  readonly hash: string;
}

/** A lease as `PUT`/`GET /v1/leases/{name}` answer it. */
export interface AuditLease {
  readonly name: string;
  readonly holder: string;
  /** ISO-8601 UTC. */
  readonly expiresAt: string;
  /** ISO-8601 UTC. */
  readonly renewedAt: string;
}

/** Largest request body. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** Events per `POST /v1/events`. */
export const MAX_EVENTS_PER_POST = 1_000;
/** Default ids remembered per stream. */
export const DEFAULT_DEDUPE_WINDOW = 100_000;
/** Default SSE keepalive interval. */
export const DEFAULT_KEEPALIVE_MS = 15_000;
/** Longest lease. */
export const MAX_LEASE_TTL_MS = 600_000;
/** Default and largest `limit` of `GET /v1/streams/{stream}/events`. */
export const DEFAULT_READ_LIMIT = 1_000;
/** Writer names: a name plus an instance suffix. */
export const WRITER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@#/-]{0,127}$/;

const MAX_WRITERS = 10_000;
const MAX_LEASES = 1_000;

// Record<…> keeps this exhaustive: every source but the aggregator's own.
const WRITER_SOURCES = {
  workflow: 'workflow',
  guard: 'guard',
  approvals: 'approvals',
  cli: 'cli',
  model: 'model',
  observer: 'observer',
} as const satisfies { readonly [K in Exclude<AuditSource, 'aggregator'>]: K };

/** The sources a token may be granted (all but `aggregator`). */
export const WRITABLE_SOURCES: readonly AuditSource[] = Object.freeze(Object.values(WRITER_SOURCES));

/** zod schema of a token's `sources`, shared with the service configuration. */
export const TokenSourcesSchema = z
  .array(
    z.enum(WRITER_SOURCES, {
      error: (iss) =>
        `expected one of ${WRITABLE_SOURCES.join(', ')}, got ${JSON.stringify(iss.input)}` +
        (iss.input === 'aggregator' ? ' (the aggregator writes that source itself)' : ''),
    }),
  )
  .refine((s) => new Set(s).size === s.length, 'lists a source twice');

const SHA256_HEX = /^[0-9a-f]{64}$/;
const TokensSchema = z
  .array(
    z.strictObject({
      name: z.string().min(1).max(128),
      tokenSha256: z.string().regex(SHA256_HEX, 'expected 64 lowercase hex digits'),
      sources: TokenSourcesSchema,
    }),
  )
  .min(1, 'expected at least one token')
  .refine((t) => new Set(t.map((x) => x.tokenSha256)).size === t.length, 'two tokens have the same hash');

/** sha256 (hex) of a token, as {@link AggregatorToken.tokenSha256}. */
export function tokenSha256(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const Code = AuditAggregatorErrorCode;
const MUTATING = new Set(['PUT', 'PATCH', 'DELETE']);
const HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

class HttpError extends AuditAggregatorError {
  constructor(status: number, code: AuditAggregatorErrorCode, message: string) {
    super(code, message, { status });
  }
}

/** A Map that forgets its least recently set key beyond `size`. */
class Lru<K, V> {
  readonly #size: number;
  readonly #map = new Map<K, V>();
  constructor(size: number) {
    this.#size = size;
  }
  get(key: K): V | undefined {
    return this.#map.get(key);
  }
  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#size) {
      const oldest = this.#map.keys().next();
      if (!oldest.done) this.#map.delete(oldest.value);
    }
  }
}

// --- metrics: a tiny Prometheus text-format (0.0.4) exposition -------------------------------------

type Labels = Readonly<Record<string, string>>;

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly samples: Map<string, { labels: Labels; value: number }>;
}

const escapeLabel = (value: string): string =>
  value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
const labelText = (labels: Labels): string => {
  const entries = Object.entries(labels);
  return entries.length === 0 ? '' : `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;
};

class Metrics {
  readonly #families: Family[] = [];
  readonly #histograms: {
    name: string;
    help: string;
    buckets: readonly number[];
    counts: number[];
    sum: number;
    count: number;
  }[] = [];

  family(name: string, help: string, type: 'counter' | 'gauge'): Family {
    const family: Family = { name, help, type, samples: new Map() };
    this.#families.push(family);
    return family;
  }

  add(family: Family, labels: Labels, by = 1): void {
    const key = labelText(labels);
    const sample = family.samples.get(key);
    if (sample === undefined) family.samples.set(key, { labels, value: by });
    else sample.value += by;
  }

  set(family: Family, labels: Labels, value: number): void {
    family.samples.set(labelText(labels), { labels, value });
  }

  histogram(name: string, help: string, buckets: readonly number[]): (value: number) => void {
    const h = { name, help, buckets, counts: buckets.map(() => 0), sum: 0, count: 0 };
    this.#histograms.push(h);
    return (value) => {
      h.buckets.forEach((bound, i) => {
        if (value <= bound) h.counts[i] = (h.counts[i] ?? 0) + 1;
      });
      h.sum += value;
      h.count += 1;
    };
  }

  render(): string {
    const lines: string[] = [];
    for (const f of this.#families) {
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      for (const s of f.samples.values()) lines.push(`${f.name}${labelText(s.labels)} ${s.value}`);
    }
    for (const h of this.#histograms) {
      lines.push(`# HELP ${h.name} ${h.help}`, `# TYPE ${h.name} histogram`);
      h.buckets.forEach((bound, i) => lines.push(`${h.name}_bucket{le="${bound}"} ${h.counts[i] ?? 0}`));
      lines.push(
        `${h.name}_bucket{le="+Inf"} ${h.count}`,
        `${h.name}_sum ${h.sum}`,
        `${h.name}_count ${h.count}`,
      );
    }
    return `${lines.join('\n')}\n`;
  }
}

// --- request parsing ---------------------------------------------------------------------------------

function bad(message: string): HttpError {
  return new HttpError(400, Code.requestInvalid, message);
}

function zodProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue === undefined ? '(root): invalid' : `${formatPath(issue.path)}: ${issue.message}`;
}

function query(url: URL, allowed: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of url.searchParams) {
    if (!allowed.includes(key)) throw bad(`unknown query parameter ${JSON.stringify(key)}`);
    if (Object.hasOwn(out, key)) throw bad(`query parameter ${key} given twice`);
    out[key] = value;
  }
  return out;
}

function positiveInt(
  name: string,
  value: string | undefined,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^[1-9]\d{0,15}$/.test(value) || n > max) {
    throw bad(`${name}: expected an integer from 1 to ${max}, got ${JSON.stringify(value.slice(0, 40))}`);
  }
  return n;
}

function segment(raw: string, what: string): string {
  let value: string;
  try {
    value = decodeURIComponent(raw);
  } catch {
    throw bad(`${what}: not valid percent-encoding`);
  }
  if (!STREAM_PATTERN.test(value)) throw bad(`${what}: invalid name ${JSON.stringify(value.slice(0, 80))}`);
  return value;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.off('data', onData);
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function tooLarge(): HttpError {
  return new HttpError(413, Code.bodyTooLarge, `the body is larger than ${MAX_BODY_BYTES} bytes`);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (error) {
    throw bad(`body: not valid JSON (${messageOf(error)})`);
  }
}

const AppendSchema = z.strictObject({
  stream: z
    .string({ error: 'expected a stream name' })
    .regex(STREAM_PATTERN, { error: 'expected a stream name ([A-Za-z0-9._:-], at most 128)' })
    .default('default'),
  writer: z
    .string({ error: 'expected a writer name' })
    .regex(WRITER_PATTERN, { error: 'expected a writer name ([A-Za-z0-9._:@#/-], at most 128)' })
    .optional(),
  events: z
    .array(z.unknown(), { error: 'expected an array of events' })
    .min(1, { error: `expected 1 to ${MAX_EVENTS_PER_POST} events` })
    .max(MAX_EVENTS_PER_POST, { error: `expected 1 to ${MAX_EVENTS_PER_POST} events` }),
});

const LeaseSchema = z.strictObject({
  holder: z
    .string({ error: 'expected a string' })
    .min(1, { error: 'expected a non-empty string' })
    .max(256, { error: 'expected at most 256 characters' })
    .refine((s) => s.isWellFormed() && !s.includes('\0'), { error: 'contains NUL or a lone surrogate' }),
  ttlMs: z
    .int({ error: `expected an integer from 1 to ${MAX_LEASE_TTL_MS}` })
    .min(1, { error: `expected an integer from 1 to ${MAX_LEASE_TTL_MS}` })
    .max(MAX_LEASE_TTL_MS, { error: `expected an integer from 1 to ${MAX_LEASE_TTL_MS}` }),
});

interface ParsedEvent {
  readonly input: AuditAppendInput;
  readonly id: string | undefined;
  readonly writerSeq: number | undefined;
}

/** Validates one wire event with the store's own checks; names the first problem under `events[i]`. */
function parseEvent(raw: unknown, index: number, writer: string | undefined): ParsedEvent {
  const at = `events[${index}]`;
  const invalid = (message: string): HttpError => new HttpError(400, Code.eventInvalid, message);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw invalid(`${at}: expected an object`);
  const { writerSeq, ...rest } = raw as Record<string, unknown>;
  if (writerSeq !== undefined) {
    if (typeof writerSeq !== 'number' || !Number.isSafeInteger(writerSeq) || writerSeq < 1) {
      throw invalid(`${at}.writerSeq: expected a positive integer`);
    }
    if (writer === undefined) throw invalid(`${at}.writerSeq: needs "writer" in the body`);
  }
  let id: string | undefined;
  try {
    ({ id } = prepareEvent(rest as unknown as AuditEventInput));
  } catch (error) {
    if (!(error instanceof AuditError) || error.code !== AuditErrorCode.invalidEvent) throw error;
    const first = (error.message.replace(/^invalid audit event: /, '').split('; ')[0] ?? '').replace(
      /^\(root\)/,
      '',
    );
    throw invalid(first.startsWith(':') ? `${at}${first}` : `${at}.${first}`);
  }
  const { id: _id, ...input } = rest;
  return { input: input as unknown as AuditAppendInput, id, writerSeq };
}

// --- the server --------------------------------------------------------------------------------------

interface StreamLane {
  tail: Promise<unknown>;
  readonly ids: Lru<string, AppendedRef>;
}

interface Caller {
  readonly token: AggregatorToken;
}

/** Starts the aggregator; resolves once it listens. */
export async function startAuditAggregator(options: AuditAggregatorOptions): Promise<AuditAggregator> {
  const parsedTokens = TokensSchema.safeParse(options.tokens);
  if (!parsedTokens.success) {
    throw new AuditAggregatorError(
      Code.configInvalid,
      `audit aggregator: tokens: ${zodProblem(parsedTokens.error)}`,
    );
  }
  const { store } = options;
  const clock = options.clock ?? (() => new Date());
  const keepaliveMs = options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS;
  const dedupeWindow = options.dedupeWindow ?? DEFAULT_DEDUPE_WINDOW;
  if (!Number.isSafeInteger(keepaliveMs) || keepaliveMs < 10) {
    throw new AuditAggregatorError(
      Code.configInvalid,
      'audit aggregator: keepaliveMs must be an integer ≥ 10',
    );
  }
  if (!Number.isSafeInteger(dedupeWindow) || dedupeWindow < 0) {
    throw new AuditAggregatorError(
      Code.configInvalid,
      'audit aggregator: dedupeWindow must be a non-negative integer',
    );
  }
  const onError = options.onError ?? (() => {});
  const tokens = options.tokens.map((token) => ({ token, digest: Buffer.from(token.tokenSha256, 'hex') }));

  const metrics = new Metrics();
  const appended = metrics.family(
    'agent_runtime_audit_appended_total',
    'Records appended, by source.',
    'counter',
  );
  const refused = metrics.family(
    'agent_runtime_audit_refused_total',
    'Requests refused, by error code.',
    'counter',
  );
  const gapsTotal = metrics.family(
    'agent_runtime_audit_gaps_total',
    'Writer sequence gaps recorded.',
    'counter',
  );
  const subscribers = metrics.family('agent_runtime_audit_subscribers', 'Open SSE subscriptions.', 'gauge');
  const headSeq = metrics.family('agent_runtime_audit_head_seq', 'Last seq appended, by stream.', 'gauge');
  const observeAppend = metrics.histogram(
    'agent_runtime_audit_append_seconds',
    'Time to append one POST /v1/events batch to the store.',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  metrics.add(gapsTotal, {}, 0);
  metrics.set(subscribers, {}, 0);
  let openSubscriptions = 0;

  const lanes = new Map<string, StreamLane>();
  const writerSeqs = new Lru<string, number>(MAX_WRITERS);
  const leases = new Map<string, AuditLease>();
  const sse = new Set<ServerResponse>();
  const written = new Set<string>();
  const heads = new Map<string, number>();
  let closing: Promise<void> | null = null;

  const laneOf = (stream: string): StreamLane => {
    let lane = lanes.get(stream);
    if (lane === undefined) {
      lane = { tail: Promise.resolve(), ids: new Lru(Math.max(1, dedupeWindow)) };
      lanes.set(stream, lane);
    }
    return lane;
  };
  const serial = <T>(lane: StreamLane, fn: () => Promise<T>): Promise<T> => {
    const run = lane.tail.then(fn, fn);
    lane.tail = run.catch(() => {});
    return run;
  };

  const authenticate = (req: IncomingMessage): Caller => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([!-~]{1,4096})$/.exec(header) : null;
    if (match?.[1] === undefined) throw new HttpError(401, Code.unauthorized, 'a bearer token is required');
    const presented = createHash('sha256').update(match[1], 'utf8').digest();
    let found: AggregatorToken | undefined;
    // every token is compared, so the time taken does not say which one nearly matched
    for (const { token, digest } of tokens) if (timingSafeEqual(presented, digest)) found = token;
    if (found === undefined) throw new HttpError(401, Code.unauthorized, 'unknown token');
    return { token: found };
  };

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...HEADERS,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  };

  const append = async (caller: Caller, body: unknown): Promise<{ records: AppendedRef[] }> => {
    const parsed = AppendSchema.safeParse(body);
    if (!parsed.success) throw bad(zodProblem(parsed.error));
    const { stream, writer, events } = parsed.data;
    const parsedEvents = events.map((raw, i) => parseEvent(raw, i, writer));
    parsedEvents.forEach((event, i) => {
      if (!caller.token.sources.includes(event.input.source)) {
        throw new HttpError(
          403,
          Code.sourceForbidden,
          `events[${i}].source: token "${caller.token.name}" may not write source "${event.input.source}"`,
        );
      }
    });
    const lane = laneOf(stream);
    return serial(lane, async () => {
      const writerKey = writer === undefined ? undefined : `${stream}\n${writer}`;
      let last = writerKey === undefined ? 0 : (writerSeqs.get(writerKey) ?? 0);
      const inputs: AuditAppendInput[] = [];
      const slots: (number | AppendedRef)[] = [];
      const batchIds = new Map<string, number>();
      let gaps = 0;
      for (const event of parsedEvents) {
        const seen = event.id === undefined ? undefined : (lane.ids.get(event.id) ?? batchIds.get(event.id));
        if (seen !== undefined) {
          slots.push(seen);
          if (event.writerSeq !== undefined) last = Math.max(last, event.writerSeq);
          continue;
        }
        if (writer !== undefined && event.writerSeq !== undefined) {
          if (event.writerSeq > last + 1) {
            gaps += 1;
            inputs.push({
              source: 'aggregator',
              kind: 'audit.gap',
              agent: null,
              run: null,
              step: null,
              attrs: {
                writer,
                expected: last + 1,
                got: event.writerSeq,
                missing: event.writerSeq - last - 1,
              },
            });
          }
          last = Math.max(last, event.writerSeq);
        }
        if (event.id !== undefined) batchIds.set(event.id, inputs.length);
        slots.push(inputs.length);
        inputs.push(event.input);
      }
      let records: AuditRecord[] = [];
      if (inputs.length > 0) {
        const t0 = performance.now();
        records = await store.appendMany(stream, inputs);
        observeAppend((performance.now() - t0) / 1000);
        written.add(stream);
        for (const record of records) metrics.add(appended, { source: record.source });
        const head = records.at(-1);
        if (head !== undefined) {
          heads.set(stream, head.seq);
          metrics.set(headSeq, { stream }, head.seq);
        }
        if (gaps > 0) metrics.add(gapsTotal, {}, gaps);
      }
      const refOf = (record: AuditRecord | undefined): AppendedRef => {
        if (record === undefined) throw new Error('the store returned fewer records than appended');
        return { seq: record.seq, ts: record.ts, hash: record.hash };
      };
      const answer = slots.map((slot) => (typeof slot === 'number' ? refOf(records[slot]) : slot));
      parsedEvents.forEach((event, i) => {
        const ref = answer[i];
        if (event.id !== undefined && ref !== undefined && dedupeWindow > 0) lane.ids.set(event.id, ref);
      });
      if (writerKey !== undefined) writerSeqs.set(writerKey, last);
      return { records: answer };
    });
  };

  const subscribe = (req: IncomingMessage, res: ServerResponse, stream: string, url: URL): void => {
    const q = query(url, ['fromSeq']);
    const lastId = req.headers['last-event-id'];
    const resumeAfter = typeof lastId === 'string' && /^\d{1,16}$/.test(lastId) ? Number(lastId) : undefined;
    const fromSeq = resumeAfter === undefined ? (positiveInt('fromSeq', q['fromSeq']) ?? 1) : resumeAfter + 1;
    let done = false;
    let delivered = fromSeq - 1;
    let waiting = false;
    let progressAt = performance.now();
    const onRecord = (record: AuditRecord): void | Promise<void> => {
      if (done) return;
      delivered = record.seq;
      progressAt = performance.now();
      if (res.write(`id: ${record.seq}\nevent: record\ndata: ${JSON.stringify(record)}\n\n`)) return;
      waiting = true;
      return new Promise((resolve) => {
        const finish = (): void => {
          waiting = false;
          progressAt = performance.now();
          res.off('drain', finish);
          res.off('close', finish);
          resolve();
        };
        res.on('drain', finish);
        res.on('close', finish);
      });
    };
    // throws before anything is written when the store is closed
    const unsubscribe = store.subscribe(stream, fromSeq, onRecord);
    res.writeHead(200, {
      ...HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': subscribed\n\n');
    sse.add(res);
    openSubscriptions += 1;
    metrics.set(subscribers, {}, openSubscriptions);
    const tick = (): void => {
      // the store drops a subscription whose read failed; end it so the client resubscribes
      const stuck =
        !waiting && (heads.get(stream) ?? 0) > delivered && performance.now() - progressAt > 2 * keepaliveMs;
      if (stuck) res.end();
      else res.write(': keepalive\n\n');
    };
    const timer = setInterval(tick, keepaliveMs);
    res.once('close', () => {
      done = true;
      clearInterval(timer);
      unsubscribe();
      sse.delete(res);
      openSubscriptions -= 1;
      metrics.set(subscribers, {}, openSubscriptions);
    });
  };

  const putLease = async (caller: Caller, name: string, body: unknown): Promise<AuditLease> => {
    if (!caller.token.sources.includes('observer')) {
      throw new HttpError(
        403,
        Code.leaseForbidden,
        `token "${caller.token.name}" may not put leases (only a token that writes source "observer")`,
      );
    }
    const parsed = LeaseSchema.safeParse(body);
    if (!parsed.success) throw bad(zodProblem(parsed.error));
    const now = clock();
    if (!leases.has(name) && leases.size >= MAX_LEASES) {
      for (const [key, lease] of leases) if (Date.parse(lease.expiresAt) <= now.getTime()) leases.delete(key);
      if (leases.size >= MAX_LEASES) throw bad(`at most ${MAX_LEASES} leases`);
    }
    const lease: AuditLease = {
      name,
      holder: parsed.data.holder,
      expiresAt: new Date(now.getTime() + parsed.data.ttlMs).toISOString(),
      renewedAt: now.toISOString(),
    };
    leases.set(name, lease);
    return lease;
  };

  type Route = (req: IncomingMessage, res: ServerResponse, caller: Caller, url: URL) => Promise<void> | void;
  const route = (path: string): { methods: Readonly<Record<string, Route>> } | undefined => {
    if (path === '/v1/events') {
      return {
        methods: {
          POST: async (req, res, caller) => send(res, 200, await append(caller, await readJson(req))),
        },
      };
    }
    if (path === '/v1/search') {
      return {
        methods: {
          GET: async (_req, res, _caller, url) => {
            const q = query(url, ['stream', 'kind', 'agent', 'run', 'since', 'text', 'limit']);
            const limit = positiveInt('limit', q['limit'], MAX_SEARCH_LIMIT);
            const { limit: _l, ...filters } = q;
            const records = await store.search({ ...filters, ...(limit === undefined ? {} : { limit }) });
            send(res, 200, { records });
          },
        },
      };
    }
    const streamMatch = /^\/v1\/streams\/([^/]+)\/(events|checkpoints|subscribe)$/.exec(path);
    if (streamMatch?.[1] !== undefined) {
      const raw = streamMatch[1];
      const what = streamMatch[2];
      if (what === 'events') {
        return {
          methods: {
            GET: async (_req, res, _caller, url) => {
              const stream = segment(raw, 'stream');
              const q = query(url, ['fromSeq', 'limit']);
              const fromSeq = positiveInt('fromSeq', q['fromSeq']) ?? 1;
              const limit = positiveInt('limit', q['limit'], MAX_SEARCH_LIMIT) ?? DEFAULT_READ_LIMIT;
              send(res, 200, { records: await store.read({ stream, fromSeq, limit }) });
            },
          },
        };
      }
      if (what === 'checkpoints') {
        return {
          methods: {
            GET: async (_req, res, _caller, url) => {
              const stream = segment(raw, 'stream');
              query(url, []);
              send(res, 200, { checkpoints: await store.checkpoints(stream) });
            },
          },
        };
      }
      return {
        methods: { GET: (req, res, _caller, url) => subscribe(req, res, segment(raw, 'stream'), url) },
      };
    }
    const leaseMatch = /^\/v1\/leases\/([^/]+)$/.exec(path);
    if (leaseMatch?.[1] !== undefined) {
      const raw = leaseMatch[1];
      return {
        methods: {
          GET: (_req, res, _caller, url) => {
            query(url, []);
            const name = segment(raw, 'lease');
            const lease = leases.get(name);
            if (lease === undefined)
              throw new HttpError(404, Code.leaseNotFound, `no lease ${JSON.stringify(name)}`);
            send(res, 200, lease);
          },
          PUT: async (req, res, caller, url) => {
            query(url, []);
            const name = segment(raw, 'lease');
            send(res, 200, await putLease(caller, name, await readJson(req)));
          },
        },
      };
    }
    return undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://aggregator.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/healthz' && method === 'GET') return send(res, 200, { ok: true });
    if (path === '/metrics' && method === 'GET') {
      res.writeHead(200, { ...HEADERS, 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(metrics.render());
      return;
    }
    if ((path === '/v1/events' || path.startsWith('/v1/streams/')) && MUTATING.has(method)) {
      throw new HttpError(405, Code.appendOnly, `${method} ${path}: the audit log is append-only`);
    }
    const found = route(path);
    if (found === undefined) throw new HttpError(404, Code.notFound, `no route ${path}`);
    const handler = Object.hasOwn(found.methods, method) ? found.methods[method] : undefined;
    if (handler === undefined) {
      res.setHeader('allow', Object.keys(found.methods).join(', '));
      throw new HttpError(405, Code.methodNotAllowed, `${method} is not allowed on ${path}`);
    }
    if (closing !== null) throw new HttpError(503, Code.unavailable, 'the aggregator is shutting down');
    await handler(req, res, authenticate(req), url);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      let status = 500;
      let code: string = Code.internal;
      let message = 'internal error';
      if (error instanceof HttpError) {
        ({ code, message } = error);
        status = error.status ?? 500;
      } else if (error instanceof AuditStoreError) {
        if (error.code === AuditStoreErrorCode.invalidInput) {
          status = 400;
          code = Code.requestInvalid;
        } else {
          status = 503;
          code = Code.unavailable;
        }
        message = error.message;
      } else {
        onError(error);
      }
      metrics.add(refused, { code });
      if (res.headersSent) {
        res.end();
        return;
      }
      if (status === 413) res.setHeader('connection', 'close');
      send(res, status, { error: { code, message } });
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const host = options.host ?? '127.0.0.1';
  const url = await listen(server, options.port ?? 0, host);
  return {
    url,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const res of sse) res.end();
        server.closeIdleConnections();
        await Promise.all([...lanes.values()].map((lane) => lane.tail));
        server.closeAllConnections();
        await stopped;
        if (options.checkpointSigner !== undefined) {
          for (const stream of written) {
            try {
              await store.checkpoint(stream, options.checkpointSigner);
            } catch (error) {
              onError(error);
            }
          }
        }
      })();
      return closing;
    },
  };
}
