/**
 * The observer heartbeat lease, as the `agents` worker sees it. The independent observer renews a
 * lease (default name `observer`) on the audit aggregator about every second; a
 * {@link createLeaseWatcher watcher} polls `GET /v1/leases/{name}` and keeps the last lease it
 * fetched in memory, and the `observerLease` local activity ({@link leaseActivities}) answers the
 * AgentRun workflow from that memory. A run that requires the lease turns `conservative` when it
 * is not valid.
 *
 * Fail-safe by construction: a failed poll (aggregator down, 5xx, malformed answer) keeps the last
 * known expiry, so the lease lapses by itself on the watcher's clock; a 404 `AUDIT_LEASE_NOT_FOUND`
 * is the aggregator saying there is no lease, and ends it at once.
 * @module
 */
import { z } from 'zod';
import { AgentRuntimeError } from '../policy/errors.ts';
import type { ObserverLeaseActivities, ObserverLeaseStatus } from '../workflows/run-types.ts';

export type { ObserverLeaseActivities, ObserverLeaseStatus };

/** Stable codes of {@link LeaseError}. */
export const LeaseErrorCode = {
  /** `createLeaseWatcher` options are invalid. */
  configInvalid: 'LEASE_CONFIG_INVALID',
  /** The aggregator could not be reached or did not answer in time. */
  unreachable: 'LEASE_UNREACHABLE',
  /** The aggregator answered with an unexpected HTTP status. */
  httpError: 'LEASE_HTTP_ERROR',
  /** The aggregator's answer is not a lease (or not the lease asked for). */
  responseInvalid: 'LEASE_RESPONSE_INVALID',
} as const;
export type LeaseErrorCode = (typeof LeaseErrorCode)[keyof typeof LeaseErrorCode];

/** A lease watcher refused its options or a poll failed; `code` is a {@link LeaseErrorCode}. */
export class LeaseError extends AgentRuntimeError {
  declare readonly code: LeaseErrorCode;
  constructor(code: LeaseErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Anything that knows the observer lease: a {@link LeaseWatcher}, or a fixed one in tests. */
export interface LeaseSource {
  status(): ObserverLeaseStatus;
}

/** Polls the aggregator for the observer lease. */
export interface LeaseWatcher extends LeaseSource {
  /** Polls now and then every `pollMs`; resolves after the first poll. Idempotent. */
  start(): Promise<void>;
  /** One poll now (never rejects: a failure goes to `onError`); resolves with the status after it. */
  poll(): Promise<ObserverLeaseStatus>;
  /** Stops polling and aborts a poll in flight. Idempotent. */
  close(): void;
}

/** Options of {@link createLeaseWatcher}. */
export interface LeaseWatcherOptions {
  /** The audit aggregator's base URL (http or https; a path prefix is kept). */
  readonly url: string;
  /** Bearer token for the aggregator. */
  readonly token: string;
  /** Lease name (default `observer`). */
  readonly name?: string;
  /** Time between polls in ms (default 1000). */
  readonly pollMs?: number;
  /** Longest one poll may take in ms (default 5000). */
  readonly timeoutMs?: number;
  /** Clock in ms since the epoch (default `Date.now`); validity is judged on it. */
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
  /** Every failed poll (a {@link LeaseError}); default: ignored. */
  readonly onError?: (error: unknown) => void;
}

/** No lease known: what a worker without a watcher answers. */
export const NO_OBSERVER_LEASE: ObserverLeaseStatus = Object.freeze({
  valid: false,
  expiresAt: null,
  holder: null,
  checkedAt: null,
});

/** A source that always answers `status`. */
export function staticLeaseSource(status: ObserverLeaseStatus): LeaseSource {
  const fixed = Object.freeze({ ...status });
  return { status: () => fixed };
}

/** The `observerLease` activity for the `agents` worker (the workflow calls it as a local activity). */
export function leaseActivities(source: LeaseSource): ObserverLeaseActivities {
  return {
    async observerLease() {
      return source.status();
    },
  };
}

/** An integer in [min, max], with one message for every way to miss it. */
function intIn(min: number, max: number) {
  const message = `an integer from ${min} to ${max}`;
  return z.int(message).min(min, message).max(max, message);
}

const LEASE_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const OptionsSchema = z.object({
  url: z
    .string()
    .refine((value) => /^https?:$/.test(URL.parse(value)?.protocol ?? ''), 'an http(s) URL')
    .refine((value) => {
      const url = URL.parse(value);
      return (
        url === null || (url.username === '' && url.password === '' && url.search === '' && url.hash === '')
      );
    }, 'a URL without credentials, query or fragment'),
  token: z.string().regex(/^[\x21-\x7e]{1,4096}$/, '1-4096 visible ASCII characters'),
  name: z.string().regex(LEASE_NAME, '1-128 of A-Z a-z 0-9 . _ -').default('observer'),
  pollMs: intIn(10, 3_600_000).default(1000),
  timeoutMs: intIn(1, 600_000).default(5000),
});

const LeaseBody = z.object({
  name: z.string(),
  holder: z.string().min(1).max(256),
  expiresAt: z.iso.datetime({ offset: true }),
  renewedAt: z.iso.datetime({ offset: true }),
});
const NotFoundBody = z.object({ error: z.object({ code: z.literal('AUDIT_LEASE_NOT_FOUND') }) });
const MAX_BODY_CHARS = 64 * 1024;

/**
 * Watches the observer lease on the aggregator. Throws {@link LeaseError} `LEASE_CONFIG_INVALID`
 * on invalid options; call `start()` to begin polling.
 */
export function createLeaseWatcher(options: LeaseWatcherOptions): LeaseWatcher {
  const { now = Date.now, fetch: fetchImpl = fetch, onError } = options;
  const parsed = OptionsSchema.safeParse({
    url: options.url,
    token: options.token,
    name: options.name,
    pollMs: options.pollMs,
    timeoutMs: options.timeoutMs,
  });
  if (!parsed.success)
    throw new LeaseError(
      LeaseErrorCode.configInvalid,
      `lease watcher options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: expected ${i.message}`).join('; ')}`,
    );
  const { name, pollMs, timeoutMs, token } = parsed.data;
  const base = new URL(parsed.data.url);
  const leaseUrl = `${base.origin}${base.pathname.replace(/\/+$/, '')}/v1/leases/${encodeURIComponent(name)}`;

  let expiresAtMs: number | null = null;
  let holder: string | null = null;
  let checkedAt: string | null = null;
  let issued = 0;
  let applied = 0;
  let closed = false;
  let started: Promise<void> | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closing = new AbortController();

  const status = (): ObserverLeaseStatus => ({
    valid: expiresAtMs !== null && expiresAtMs > now(),
    expiresAt: expiresAtMs === null ? null : new Date(expiresAtMs).toISOString(),
    holder,
    checkedAt,
  });

  /** Fetches the lease; returns the new lease (or null for none), throws a LeaseError otherwise. */
  const fetchLease = async (): Promise<{ expiresAtMs: number; holder: string } | null> => {
    let statusCode: number;
    let text: string;
    try {
      const response = await fetchImpl(leaseUrl, {
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        redirect: 'error',
        signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), closing.signal]),
      });
      statusCode = response.status;
      text = await response.text();
    } catch (error) {
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      throw new LeaseError(
        LeaseErrorCode.unreachable,
        timedOut
          ? `the aggregator did not answer within ${timeoutMs} ms (${leaseUrl})`
          : `the aggregator could not be reached (${leaseUrl})`,
        { cause: error },
      );
    }
    const body = text.length > MAX_BODY_CHARS ? undefined : parseJson(text);
    if (statusCode === 404 && NotFoundBody.safeParse(body).success) return null;
    if (statusCode !== 200)
      throw new LeaseError(LeaseErrorCode.httpError, `the aggregator answered ${statusCode} for ${leaseUrl}`);
    const lease = LeaseBody.safeParse(body);
    if (!lease.success)
      throw new LeaseError(
        LeaseErrorCode.responseInvalid,
        `the aggregator's answer is not a lease: ${lease.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
      );
    if (lease.data.name !== name)
      throw new LeaseError(
        LeaseErrorCode.responseInvalid,
        `the aggregator answered lease ${JSON.stringify(lease.data.name.slice(0, 128))}, not ${JSON.stringify(name)}`,
      );
    return { expiresAtMs: Date.parse(lease.data.expiresAt), holder: lease.data.holder };
  };

  const poll = async (): Promise<ObserverLeaseStatus> => {
    if (closed) return status();
    issued += 1;
    const ticket = issued;
    try {
      const lease = await fetchLease();
      // an older poll answering late must not overwrite a newer answer
      if (ticket > applied) {
        applied = ticket;
        expiresAtMs = lease?.expiresAtMs ?? null;
        holder = lease?.holder ?? null;
        checkedAt = new Date(now()).toISOString();
      }
    } catch (error) {
      if (!closed) {
        try {
          onError?.(error);
        } catch {
          // a failing error handler must not stop the polling
        }
      }
    }
    return status();
  };

  const schedule = (): void => {
    if (closed) return;
    timer = setTimeout(() => void poll().then(schedule), pollMs);
    timer.unref();
  };

  return {
    status,
    poll,
    start() {
      started ??= poll().then(schedule);
      return started;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      closing.abort();
    },
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
