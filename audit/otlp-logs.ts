/**
 * OTLP/HTTP (JSON) export of audit records as OpenTelemetry log records, for a SIEM or an
 * OpenTelemetry collector. `export` only enqueues; a background sender posts batches (up to
 * `maxRecords`, or whatever `maxDelayMs` gathered) one request at a time, so records arrive in
 * seq order, and retries 5xx, 429 and network failures with backoff. The queue is bounded:
 * beyond `maxQueue` the oldest records are dropped and counted, and a batch that failed every
 * attempt is counted lost; both are told to `onError`, neither ever reaches the store's appends.
 *
 * {@link feedAuditLogExport} subscribes an exporter to streams of an {@link AuditStore}, waiting
 * for room in the queue instead of overflowing it (the store is the durable queue).
 * @module
 */
import { z } from 'zod';
import {
  DEFAULT_OTLP_TIMEOUT_MS,
  otlpAnyValue,
  otlpId,
  otlpResource,
  otlpUrl,
  postOtlp,
} from '../common/otlp.ts';
import type { OtlpKeyValue } from '../common/otlp.ts';
import { canonicalJson } from '../policy/canonical.ts';
import { AgentRuntimeError } from '../policy/errors.ts';
import type { AuditRecord } from './chain.ts';
import { messageOf } from './errors.ts';
import type { AuditStore } from './store.ts';

/** Stable codes of {@link AuditLogExportError}. */
export const AuditLogExportErrorCode = {
  /** The exporter's options are invalid. */
  configInvalid: 'AUDIT_OTLP_CONFIG_INVALID',
  /** A batch failed every attempt, or the collector refused it or some of its records. */
  exportFailed: 'AUDIT_OTLP_EXPORT_FAILED',
  /** More than `maxQueue` records waited: the oldest were dropped. */
  queueOverflow: 'AUDIT_OTLP_QUEUE_OVERFLOW',
  /** A record was exported after close, or was still queued when the close deadline passed. */
  closed: 'AUDIT_OTLP_EXPORTER_CLOSED',
} as const;
export type AuditLogExportErrorCode = (typeof AuditLogExportErrorCode)[keyof typeof AuditLogExportErrorCode];

/** A loss or refusal of the OTLP log export; `code` is an {@link AuditLogExportErrorCode}. */
export class AuditLogExportError extends AgentRuntimeError {
  declare readonly code: AuditLogExportErrorCode;
  constructor(code: AuditLogExportErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** OTLP severity numbers used (`SeverityNumber` of the logs data model). */
export const OtlpSeverity = { INFO: 9, WARN: 13, ERROR: 17, FATAL: 21 } as const;
export type OtlpSeverity = keyof typeof OtlpSeverity;

/** Nesting of `attrs` flattened into dotted keys; deeper values go as their canonical JSON. */
export const MAX_ATTR_DEPTH = 4;
/** `attrs` leaves exported per record; the rest are counted in `droppedAttributesCount`. */
export const MAX_ATTRS = 64;
/** String values (and JSON of values too deep) are cut to this many characters, ending in `…`. */
export const MAX_ATTR_STRING = 2_048;
/** Prefix of every attribute key. */
export const ATTR_PREFIX = 'agent_runtime.audit.';

/** Defaults of {@link createOtlpLogExporter}. */
export const OTLP_LOG_DEFAULTS = Object.freeze({
  maxRecords: 512,
  maxDelayMs: 1_000,
  maxQueue: 10_000,
  attempts: 5,
  baseDelayMs: 200,
  maxBackoffMs: 5_000,
  timeoutMs: DEFAULT_OTLP_TIMEOUT_MS,
  closeTimeoutMs: 10_000,
  serviceName: 'agent-runtime',
});

/** Options of {@link createOtlpLogExporter}. */
export interface OtlpLogExporterOptions {
  /** The collector's base URL, e.g. `http://127.0.0.1:4318` (logs go to `/v1/logs`). */
  readonly endpoint: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** `service.name` of the resource; default `agent-runtime`. */
  readonly serviceName?: string;
  readonly fetch?: typeof fetch;
  readonly batch?: {
    /** Records per request; default 512. */
    readonly maxRecords?: number;
    /** How long the first queued record waits for company; default 1000 ms. */
    readonly maxDelayMs?: number;
  };
  readonly retry?: {
    /** Tries per batch, the first included; default 5. */
    readonly attempts?: number;
    /** Backoff before the second try (doubling, with jitter, at most 5 s); default 200 ms. */
    readonly baseDelayMs?: number;
  };
  /** Records held before the oldest are dropped; default 10,000. */
  readonly maxQueue?: number;
  /** Per-request time limit; default 10 s. */
  readonly timeoutMs?: number;
  /** How long `close()` keeps trying before it drops what is left; default 10 s. */
  readonly closeTimeoutMs?: number;
  /** Source of `observedTimeUnixNano` (epoch ms); default `Date.now`. */
  readonly now?: () => number;
  /**
   * Told about every loss, with the number of records lost: a failed or refused batch, the first
   * overflow since the queue last emptied, a record exported after close. Must not throw.
   */
  readonly onError?: (error: AuditLogExportError, lost: number) => void;
}

/** What an exporter has done so far. */
export interface OtlpLogExporterStats {
  /** Queued or being sent. */
  readonly pending: number;
  /** Accepted by the collector. */
  readonly exported: number;
  /** Dropped unsent: queue overflow, exported after close, left at the close deadline. */
  readonly dropped: number;
  /** Lost in a batch that failed every attempt or was refused (also partially). */
  readonly failed: number;
  /** Requests retried. */
  readonly retries: number;
}

/** A background OTLP log exporter of audit records. */
export interface OtlpLogExporter {
  /** Enqueues `record` and returns at once; never throws, never waits. */
  export(record: AuditRecord): void;
  /**
   * Undefined while the queue has room; else a promise that resolves once it has (or the
   * exporter closes). A producer that can wait awaits it instead of overflowing the queue.
   */
  waitForRoom(): Promise<void> | undefined;
  /** Sends everything queued so far (retries included); resolves when it is sent or lost. */
  flush(): Promise<void>;
  /** Stops accepting records and flushes, for at most `closeTimeoutMs`. Idempotent. */
  close(): Promise<void>;
  readonly stats: OtlpLogExporterStats;
}

const positive = z.int().min(1);
const OptionsSchema = z.object({
  endpoint: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
  headers: z.record(z.string(), z.string()).optional(),
  serviceName: z.string().min(1).optional(),
  batch: z
    .strictObject({ maxRecords: positive.optional(), maxDelayMs: z.int().min(0).optional() })
    .optional(),
  retry: z.strictObject({ attempts: positive.optional(), baseDelayMs: z.int().min(0).optional() }).optional(),
  maxQueue: positive.optional(),
  timeoutMs: positive.optional(),
  closeTimeoutMs: z.int().min(0).optional(),
});

const truncate = (text: string): string =>
  text.length <= MAX_ATTR_STRING ? text : `${text.slice(0, MAX_ATTR_STRING - 1)}…`;

const FINDING_SEVERITY: Readonly<Record<string, OtlpSeverity>> = {
  low: 'INFO',
  medium: 'WARN',
  high: 'ERROR',
  critical: 'FATAL',
};

/**
 * The severity of a record: observer findings by their own severity (low INFO, medium WARN,
 * high ERROR, critical FATAL); refusals, denials and writer gaps WARN; everything else INFO.
 */
export function auditSeverity(record: Pick<AuditRecord, 'kind' | 'attrs'>): OtlpSeverity {
  const { kind, attrs } = record;
  if (kind === 'observer.finding') {
    const severity = attrs['severity'];
    return (typeof severity === 'string' ? FINDING_SEVERITY[severity] : undefined) ?? 'WARN';
  }
  if (kind.endsWith('refused') || kind === 'audit.gap') return 'WARN';
  if (kind === 'decision' && attrs['tier'] === 'prohibited') return 'WARN';
  if (kind === 'approval.decided' && (attrs['status'] === 'denied' || attrs['status'] === 'timed_out'))
    return 'WARN';
  return 'INFO';
}

/** `attrs` as OTLP attributes under `agent_runtime.audit.attrs.` (see {@link MAX_ATTR_DEPTH} …). */
export function flattenAuditAttrs(attrs: Readonly<Record<string, unknown>>): {
  readonly attributes: OtlpKeyValue[];
  readonly dropped: number;
} {
  const attributes: OtlpKeyValue[] = [];
  let dropped = 0;
  const leaf = (key: string, value: OtlpKeyValue['value']): void => {
    if (attributes.length < MAX_ATTRS) attributes.push({ key, value });
    else dropped++;
  };
  const walk = (key: string, value: unknown, depth: number): void => {
    if (value === null || value === undefined) return;
    if (typeof value === 'string') return leaf(key, { stringValue: truncate(value) });
    if (typeof value === 'number' || typeof value === 'boolean') return leaf(key, otlpAnyValue(value));
    if (typeof value !== 'object') return;
    const entries = Array.isArray(value)
      ? value.map((v, i) => [String(i), v] as const)
      : Object.keys(value)
          .sort()
          .map((k) => [k, (value as Record<string, unknown>)[k]] as const);
    if (depth >= MAX_ATTR_DEPTH || entries.length === 0) {
      return leaf(key, { stringValue: truncate(canonicalJson(value)) });
    }
    for (const [k, v] of entries) walk(`${key}.${k}`, v, depth + 1);
  };
  for (const key of Object.keys(attrs).sort()) walk(`${ATTR_PREFIX}attrs.${key}`, attrs[key], 1);
  return { attributes, dropped };
}

const nanos = (ms: number): string => String(BigInt(Math.round(ms)) * 1_000_000n);

/** The body: `kind from source (agent …, run …, step …)`. */
function summary(record: AuditRecord): string {
  const about = [
    record.agent === null ? null : `agent ${record.agent}`,
    record.run === null ? null : `run ${record.run}`,
    record.step === null ? null : `step ${record.step}`,
  ].filter((x) => x !== null);
  return `${record.kind} from ${record.source}${about.length === 0 ? '' : ` (${about.join(', ')})`}`;
}

/**
 * One record as an OTLP `LogRecord`: its time, severity, a short body, the envelope as
 * `agent_runtime.audit.*` attributes plus the flattened attrs, and (with a run) the run's trace
 * id, the one the model trace exporter gives the run's spans.
 */
export function toOtlpLogRecord(record: AuditRecord, observedMs: number): Record<string, unknown> {
  const severity = auditSeverity(record);
  const envelope: [string, string | number | null][] = [
    ['stream', record.stream],
    ['seq', record.seq],
    ['kind', record.kind],
    ['source', record.source],
    ['agent', record.agent],
    ['run', record.run],
    ['step', record.step],
    ['hash', record.hash],
    ['prev_hash', record.prevHash],
  ];
  const { attributes, dropped } = flattenAuditAttrs(record.attrs);
  return {
    timeUnixNano: nanos(Date.parse(record.ts)),
    observedTimeUnixNano: nanos(observedMs),
    severityNumber: OtlpSeverity[severity],
    severityText: severity,
    body: { stringValue: summary(record) },
    attributes: [
      ...envelope.flatMap(([key, value]) =>
        value === null ? [] : [{ key: `${ATTR_PREFIX}${key}`, value: otlpAnyValue(value) }],
      ),
      ...attributes,
    ],
    ...(dropped === 0 ? {} : { droppedAttributesCount: dropped }),
    ...(record.run === null ? {} : { traceId: otlpId(record.run, 16) }),
  };
}

interface Queued {
  readonly record: AuditRecord;
  readonly observedMs: number;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

/** Creates an exporter; nothing is sent until the first record. Throws on invalid options. */
export function createOtlpLogExporter(options: OtlpLogExporterOptions): OtlpLogExporter {
  const parsed = OptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AuditLogExportError(
      AuditLogExportErrorCode.configInvalid,
      `OTLP log exporter: ${issue?.path.join('.') || '(options)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const d = OTLP_LOG_DEFAULTS;
  const url = otlpUrl(options.endpoint, 'logs');
  const maxRecords = options.batch?.maxRecords ?? d.maxRecords;
  const maxDelayMs = options.batch?.maxDelayMs ?? d.maxDelayMs;
  const attempts = options.retry?.attempts ?? d.attempts;
  const baseDelayMs = options.retry?.baseDelayMs ?? d.baseDelayMs;
  const maxQueue = options.maxQueue ?? d.maxQueue;
  const closeTimeoutMs = options.closeTimeoutMs ?? d.closeTimeoutMs;
  const now = options.now ?? Date.now;
  const resource = otlpResource(options.serviceName ?? d.serviceName);
  // aborted at the close deadline: the request in flight and any backoff end at once
  const abandon = new AbortController();

  const queue: Queued[] = [];
  let inFlight = 0;
  let exported = 0;
  let dropped = 0;
  let failed = 0;
  let retries = 0;
  let overflowing = false;
  let closed = false;
  let closing: Promise<void> | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sending: Promise<void> | null = null;
  let roomWaiters: (() => void)[] = [];

  const report = (code: AuditLogExportErrorCode, message: string, lost: number, cause?: unknown): void => {
    try {
      options.onError?.(
        new AuditLogExportError(code, message, cause === undefined ? undefined : { cause }),
        lost,
      );
    } catch {
      // a broken error handler must not stop the exporter
    }
  };
  const range = (batch: readonly Queued[]): string => {
    const first = batch[0]?.record;
    const last = batch.at(-1)?.record;
    return first === undefined || last === undefined
      ? ''
      : `${first.stream} ${first.seq}..${last.stream === first.stream ? '' : `${last.stream} `}${last.seq}`;
  };
  const wakeWaiters = (): void => {
    if (queue.length >= maxQueue && !closed) return;
    const waiters = roomWaiters;
    roomWaiters = [];
    for (const wake of waiters) wake();
  };

  /** Posts one batch, retrying transient failures; counts and reports what it loses. */
  const send = async (batch: readonly Queued[]): Promise<void> => {
    const body = JSON.stringify({
      resourceLogs: [
        {
          resource,
          scopeLogs: [
            {
              scope: { name: 'agent-runtime.audit' },
              logRecords: batch.map((q) => toOtlpLogRecord(q.record, q.observedMs)),
            },
          ],
        },
      ],
    });
    for (let attempt = 1; ; attempt++) {
      let problem: string;
      let transient: boolean;
      let cause: unknown;
      try {
        const response = await postOtlp(url, body, {
          headers: options.headers,
          fetch: options.fetch,
          timeoutMs: options.timeoutMs ?? d.timeoutMs,
          signal: abandon.signal,
        });
        const answer = await response.text().catch(() => '');
        if (response.ok) {
          const rejected = partialRejection(answer);
          exported += batch.length - rejected.count;
          if (rejected.count > 0) {
            failed += rejected.count;
            report(
              AuditLogExportErrorCode.exportFailed,
              `OTLP log export to ${url}: the collector rejected ${rejected.count} of records ${range(batch)}${rejected.message}`,
              rejected.count,
            );
          }
          return;
        }
        problem = `answered ${response.status}`;
        transient = response.status >= 500 || response.status === 429;
      } catch (error) {
        problem = `failed: ${messageOf(error)}`;
        transient = true;
        cause = error;
      }
      if (!transient || attempt >= attempts || abandon.signal.aborted) {
        failed += batch.length;
        report(
          AuditLogExportErrorCode.exportFailed,
          `OTLP log export to ${url} ${problem}${attempt > 1 ? ` (after ${attempt} attempts)` : ''}; records ${range(batch)} lost`,
          batch.length,
          cause,
        );
        return;
      }
      retries++;
      const backoff = Math.min(d.maxBackoffMs, baseDelayMs * 2 ** (attempt - 1));
      await sleep(backoff * (0.75 + Math.random() * 0.5), abandon.signal);
    }
  };

  const drain = async (): Promise<void> => {
    while (queue.length > 0) {
      if (abandon.signal.aborted) {
        const left = queue.splice(0);
        dropped += left.length;
        report(
          AuditLogExportErrorCode.closed,
          `OTLP log exporter: closed with records ${range(left)} unsent`,
          left.length,
        );
        break;
      }
      const batch = queue.splice(0, maxRecords);
      inFlight = batch.length;
      wakeWaiters();
      try {
        await send(batch);
      } finally {
        inFlight = 0;
      }
    }
    overflowing = false;
  };

  const start = (): Promise<void> => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    sending ??= drain().finally(() => {
      sending = null;
      if (queue.length > 0) schedule();
    });
    return sending;
  };

  const schedule = (): void => {
    if (sending !== null) return; // the running drain takes it
    if (queue.length >= maxRecords || closed) void start();
    else timer ??= setTimeout(() => void start(), maxDelayMs);
  };

  const flush = async (): Promise<void> => {
    while (queue.length > 0 || sending !== null) await (sending ?? start());
  };

  return {
    export(record) {
      if (closed) {
        dropped++;
        report(
          AuditLogExportErrorCode.closed,
          `OTLP log exporter: record ${record.stream} ${record.seq} exported after close`,
          1,
        );
        return;
      }
      queue.push({ record, observedMs: now() });
      if (queue.length > maxQueue) {
        queue.shift();
        dropped++;
        if (!overflowing) {
          overflowing = true;
          report(
            AuditLogExportErrorCode.queueOverflow,
            `OTLP log exporter: more than ${maxQueue} records queued; dropping the oldest`,
            1,
          );
        }
      }
      schedule();
    },
    waitForRoom() {
      if (queue.length < maxQueue || closed) return undefined;
      return new Promise<void>((resolve) => roomWaiters.push(resolve));
    },
    flush,
    close() {
      closing ??= (async () => {
        closed = true;
        wakeWaiters();
        const deadline = setTimeout(() => abandon.abort(), closeTimeoutMs);
        try {
          await flush();
        } finally {
          clearTimeout(deadline);
        }
      })();
      return closing;
    },
    get stats(): OtlpLogExporterStats {
      return { pending: queue.length + inFlight, exported, dropped, failed, retries };
    },
  };
}

/** `partialSuccess` of an OTLP `ExportLogsServiceResponse`, if the answer has one. */
function partialRejection(answer: string): { readonly count: number; readonly message: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer);
  } catch {
    return { count: 0, message: '' };
  }
  const partial = (parsed as { partialSuccess?: { rejectedLogRecords?: unknown; errorMessage?: unknown } })
    ?.partialSuccess;
  const count = Number(partial?.rejectedLogRecords ?? 0);
  const message = typeof partial?.errorMessage === 'string' ? `: ${partial.errorMessage}` : '';
  return { count: Number.isSafeInteger(count) && count > 0 ? count : 0, message };
}

/**
 * The last seq of `stream` (0 when empty). The store keeps seqs gap-free from 1, so this probes
 * single records: O(log head) indexed reads.
 */
export async function streamHead(store: Pick<AuditStore, 'read'>, stream: string): Promise<number> {
  const exists = async (seq: number): Promise<boolean> =>
    (await store.read({ stream, fromSeq: seq, limit: 1 })).length > 0;
  let low = 0; // known to exist (0: the empty prefix)
  let high = 1; // probed upwards until it does not exist
  while (await exists(high)) {
    low = high;
    high *= 2;
  }
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (await exists(mid)) low = mid;
    else high = mid;
  }
  return low;
}

const CATCH_UP_PAGE = 500;

/** Where a feed starts: after the stream's current head (`head`), or at seq 1 (`start`). */
export type AuditExportStart = 'head' | 'start';

/** Options of {@link feedAuditLogExport}. */
export interface AuditLogFeedOptions {
  readonly streams: readonly string[];
  /** @default 'head' */
  readonly fromSeq?: AuditExportStart;
}

/** A running feed of streams into an exporter. */
export interface AuditLogFeed {
  /** Where each stream's export started (seq of the first record it exports). */
  readonly startedAt: Readonly<Record<string, number>>;
  /**
   * Ends the subscriptions, exports what was appended up to now but not yet delivered, and
   * closes the exporter (flushing it for at most its `closeTimeoutMs`). Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Subscribes `exporter` to each stream of `store`: from the current head on (so a restart does
 * not resend history) or, with `fromSeq: 'start'`, from seq 1. Delivery waits for room in the
 * exporter's queue, which holds the subscription, never the appends.
 */
export async function feedAuditLogExport(
  store: Pick<AuditStore, 'read' | 'subscribe'>,
  exporter: OtlpLogExporter,
  options: AuditLogFeedOptions,
): Promise<AuditLogFeed> {
  const feeds = await Promise.all(
    [...new Set(options.streams)].map(async (stream) => {
      const first = options.fromSeq === 'start' ? 1 : (await streamHead(store, stream)) + 1;
      const state = { stream, first, next: first, stop: (): void => {} };
      state.stop = store.subscribe(stream, first, (record) => {
        if (record.seq < state.next) return undefined;
        exporter.export(record);
        state.next = record.seq + 1;
        return exporter.waitForRoom();
      });
      return state;
    }),
  );
  let closing: Promise<void> | null = null;
  return {
    startedAt: Object.freeze(Object.fromEntries(feeds.map((f) => [f.stream, f.first]))),
    close() {
      closing ??= (async () => {
        for (const f of feeds) f.stop();
        try {
          // records appended while the subscription still had them to deliver; no waiting for
          // room here (a stuck collector must not hold the shutdown): overflow drops, counted
          for (const f of feeds) {
            for (;;) {
              const page = await store.read({ stream: f.stream, fromSeq: f.next, limit: CATCH_UP_PAGE });
              for (const record of page) exporter.export(record);
              f.next = (page.at(-1)?.seq ?? f.next - 1) + 1;
              if (page.length < CATCH_UP_PAGE) break;
            }
          }
        } finally {
          await exporter.close();
        }
      })();
      return closing;
    },
  };
}
