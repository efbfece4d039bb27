/**
 * The metrics endpoint of a process: `GET /metrics` (the registry, then any extra exposition text,
 * such as the Temporal Core SDK's own output) and `GET /healthz`. Everything else is 404, or 405
 * for another method on those two paths.
 * @module
 */
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import { listen } from '../common/listen.ts';
import { performance } from 'node:perf_hooks';
import { EXPOSITION_CONTENT_TYPE, MetricsError, MetricsErrorCode } from './registry.ts';
import type { MetricsRegistry } from './registry.ts';

/** Options of {@link serveMetrics}. */
export interface ServeMetricsOptions {
  readonly registry: MetricsRegistry;
  /** Interface to bind (default `127.0.0.1`; `0.0.0.0` inside a container). */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  /**
   * More exposition text appended after the registry's (e.g. {@link fetchExposition} of the Core
   * SDK's bind address). When it fails, the scrape still answers with the registry's metrics and
   * `agent_runtime_metrics_collect_failures_total{metric="extra"}` counts the failure.
   */
  readonly extra?: () => Promise<string> | string;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://host:port` as bound. */
  readonly url: string;
  close(): Promise<void>;
}

const HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};
const TEXT = 'text/plain; charset=utf-8';
const PATHS: readonly string[] = ['/metrics', '/healthz'];

function reply(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...HEADERS, 'content-type': TEXT, ...headers });
  res.end(body);
}

/** Joins exposition texts so each starts on a line of its own. */
function joinExposition(first: string, second: string): string {
  if (second.length === 0) return first;
  return `${first}${first.endsWith('\n') ? '' : '\n'}${second}${second.endsWith('\n') ? '' : '\n'}`;
}

/** Starts the endpoint. Throws {@link MetricsError} `METRICS_INVALID_OPTION` or `METRICS_LISTEN_FAILED`. */
export async function serveMetrics(options: ServeMetricsOptions): Promise<MetricsServer> {
  const { registry, extra } = options;
  const host = options.host ?? '127.0.0.1';
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535)
    throw new MetricsError(
      MetricsErrorCode.invalidOption,
      `port must be an integer from 0 to 65535, got ${JSON.stringify(options.port)}`,
    );

  const metrics = async (): Promise<string> => {
    let more = '';
    if (extra) {
      try {
        const text = await extra();
        if (typeof text === 'string') more = text;
      } catch {
        registry.collectFailures.inc({ metric: 'extra' });
      }
    }
    return joinExposition(registry.render(), more);
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (!PATHS.includes(path)) return reply(res, 404, 'Not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return reply(res, 405, 'Method not allowed\n', { allow: 'GET, HEAD' });
    if (path === '/healthz') return reply(res, 200, 'ok\n');
    metrics().then(
      (body) =>
        reply(res, 200, req.method === 'HEAD' ? '' : body, { 'content-type': EXPOSITION_CONTENT_TYPE }),
      () => reply(res, 500, 'metrics unavailable\n'),
    );
  });
  // a scrape is small; slow clients cannot hold sockets open
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  let url: string;
  try {
    url = await listen(server, options.port, host);
  } catch (error) {
    throw new MetricsError(
      MetricsErrorCode.listenFailed,
      `cannot serve metrics on ${host}:${options.port}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    );
  }
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Fetches exposition text from another endpoint (the Core SDK's Prometheus bind address), for
 * {@link ServeMetricsOptions.extra}. Throws on a non-2xx answer or after `timeoutMs` (default 2 s).
 */
export async function fetchExposition(
  url: string,
  options: { readonly timeoutMs?: number; readonly fetch?: typeof fetch } = {},
): Promise<string> {
  const res = await (options.fetch ?? fetch)(url, {
    signal: AbortSignal.timeout(options.timeoutMs ?? 2_000),
  });
  if (!res.ok) throw new MetricsError(MetricsErrorCode.fetchFailed, `${url} answered ${res.status}`);
  return res.text();
}

/** Registers process gauges computed on scrape: start time, resident memory, V8 heap in use. */
export function registerProcessMetrics(
  registry: MetricsRegistry,
  options: { readonly startedAtMs?: number } = {},
): void {
  const startedAtMs = options.startedAtMs ?? performance.timeOrigin;
  registry.gauge({
    name: 'agent_runtime_process_start_time_seconds',
    help: 'Start time of the process, in seconds since the epoch.',
    collect: (gauge) => gauge.set(undefined, startedAtMs / 1000),
  });
  registry.gauge({
    name: 'agent_runtime_process_resident_memory_bytes',
    help: 'Resident set size of the process, in bytes.',
    collect: (gauge) => gauge.set(undefined, process.memoryUsage.rss()),
  });
  registry.gauge({
    name: 'agent_runtime_process_heap_used_bytes',
    help: 'V8 heap in use, in bytes.',
    collect: (gauge) => gauge.set(undefined, process.memoryUsage().heapUsed),
  });
}
