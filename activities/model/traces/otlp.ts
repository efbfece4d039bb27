/**
 * OTLP/HTTP (JSON) export of model traces as OpenTelemetry spans: one `chat {model}` CLIENT span
 * per model call with the GenAI attributes of {@link toGenAiAttributes} (content attributes only
 * when captured, after redaction), the run as the trace, the call's error as the span status. It
 * is a {@link TraceStore} that only appends, so the background trace writer batches and retries
 * nothing on the caller's path; reading goes to the real store.
 * @module
 */
import { otlpAnyValue, otlpId, otlpResource, otlpUrl, postOtlp } from '../../../common/otlp.ts';
import { TraceStoreError } from './errors.ts';
import type { TraceStore } from './store.ts';
import { toGenAiAttributes } from './types.ts';
import type { ModelTrace } from './types.ts';

export interface OtlpExporterOptions {
  /** The collector's base URL, e.g. `http://127.0.0.1:4318` (spans go to `/v1/traces`). */
  readonly endpoint: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly serviceName?: string;
  readonly fetch?: typeof fetch;
  /** Per-request time limit (default 10 s). */
  readonly timeoutMs?: number;
}

/** One trace as an OTLP span (trace id from the run, span id from the call). */
export function toOtlpSpan(trace: ModelTrace): Record<string, unknown> {
  const startNs = BigInt(Math.round(trace.ts)) * 1_000_000n;
  const endNs = startNs + BigInt(Math.round(trace.latencyMs * 1_000_000));
  const attributes = {
    ...toGenAiAttributes(trace),
    'gen_ai.agent.id': trace.agentId,
    'govern.run.id': trace.runId,
    'govern.route': trace.route,
    'govern.target': trace.target,
    ...(trace.fallbackCause === null ? {} : { 'govern.fallback.cause': trace.fallbackCause }),
  };
  return {
    traceId: otlpId(trace.runId, 16),
    spanId: otlpId(trace.id, 8),
    name: `chat ${trace.model}`,
    kind: 3, // SPAN_KIND_CLIENT
    startTimeUnixNano: String(startNs),
    endTimeUnixNano: String(endNs),
    attributes: Object.entries(attributes).map(([key, value]) => ({ key, value: otlpAnyValue(value) })),
    status: trace.error ? { code: 2, message: `${trace.error.code}: ${trace.error.message}` } : { code: 1 },
  };
}

/** A trace "store" that exports every batch to an OTLP/HTTP collector. */
export function createOtlpTraceExporter(options: OtlpExporterOptions): TraceStore {
  const url = otlpUrl(options.endpoint, 'traces');
  const unsupported = (what: string) => () =>
    Promise.reject(new TraceStoreError('TRACE_STORE_QUERY_FAILED', `the OTLP exporter cannot ${what}`));
  const appendMany = async (traces: readonly ModelTrace[]): Promise<number> => {
    if (traces.length === 0) return 0;
    const body = {
      resourceSpans: [
        {
          resource: otlpResource(options.serviceName ?? 'agent-runtime'),
          scopeSpans: [{ scope: { name: 'agent-runtime.model-proxy' }, spans: traces.map(toOtlpSpan) }],
        },
      ],
    };
    let response: Response;
    try {
      response = await postOtlp(url, JSON.stringify(body), {
        headers: options.headers,
        fetch: options.fetch,
        timeoutMs: options.timeoutMs,
      });
    } catch (error) {
      throw new TraceStoreError(
        'TRACE_STORE_QUERY_FAILED',
        `OTLP export to ${url} failed: ${(error as Error).message}`,
      );
    }
    if (!response.ok)
      throw new TraceStoreError(
        'TRACE_STORE_QUERY_FAILED',
        `OTLP export to ${url} answered ${response.status}`,
      );
    return traces.length;
  };
  return {
    append: async (trace) => (await appendMany([trace])) === 1,
    appendMany,
    search: unsupported('search'),
    byRun: unsupported('read traces'),
    close: () => Promise.resolve(),
  };
}
