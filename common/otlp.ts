/**
 * OTLP/HTTP (JSON) pieces shared by the exporters of agent-runtime (model traces as spans, audit
 * records as logs): ids hashed from our own ids, `AnyValue`s, the resource, the signal's URL and
 * the POST itself.
 * @module
 */
import { createHash } from 'node:crypto';

/** An attribute value OTLP carries without nesting. */
export type OtlpScalar = string | number | boolean;

/** An OTLP `AnyValue` in its JSON encoding (64-bit integers as decimal strings). */
export type OtlpAnyValue =
  | { readonly stringValue: string }
  | { readonly boolValue: boolean }
  | { readonly intValue: string }
  | { readonly doubleValue: number }
  | { readonly arrayValue: { readonly values: readonly OtlpAnyValue[] } };

/** One OTLP `KeyValue`. */
export interface OtlpKeyValue {
  readonly key: string;
  readonly value: OtlpAnyValue;
}

/** Default per-request time limit of {@link postOtlp}. */
export const DEFAULT_OTLP_TIMEOUT_MS = 10_000;

/**
 * A `bytes`-long OTLP id (hex) derived from `text`: the first bytes of its sha256. Every exporter
 * derives a run's trace id this way (`otlpId(runId, 16)`), so spans and logs of a run join.
 */
export function otlpId(text: string, bytes: 8 | 16): string {
  return createHash('sha256')
    .update(text)
    .digest('hex')
    .slice(0, bytes * 2);
}

/** The `AnyValue` of a scalar or a list of strings; integers beyond 2^53 go as doubles. */
export function otlpAnyValue(value: OtlpScalar | readonly string[]): OtlpAnyValue {
  if (Array.isArray(value)) return { arrayValue: { values: value.map((v: string) => ({ stringValue: v })) } };
  if (typeof value === 'boolean') return { boolValue: value };
  if (typeof value === 'number')
    return Number.isSafeInteger(value) ? { intValue: String(value) } : { doubleValue: value };
  return { stringValue: value as string };
}

/** The resource every payload names: `service.name`. */
export function otlpResource(serviceName: string): { readonly attributes: readonly OtlpKeyValue[] } {
  return { attributes: [{ key: 'service.name', value: { stringValue: serviceName } }] };
}

/** `<endpoint>/v1/<signal>`, the OTLP/HTTP path of a signal under a collector's base URL. */
export function otlpUrl(endpoint: string, signal: 'traces' | 'logs'): string {
  return `${endpoint.replace(/\/+$/, '')}/v1/${signal}`;
}

/** How {@link postOtlp} sends. */
export interface OtlpPostOptions {
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly fetch?: typeof fetch | undefined;
  /** @default DEFAULT_OTLP_TIMEOUT_MS */
  readonly timeoutMs?: number | undefined;
  /** Aborts the request early (besides the time limit). */
  readonly signal?: AbortSignal | undefined;
}

/** POSTs one JSON payload; resolves with the response whatever its status, rejects on network errors. */
export function postOtlp(url: string, body: string, options: OtlpPostOptions = {}): Promise<Response> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_OTLP_TIMEOUT_MS);
  return (options.fetch ?? fetch)(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...options.headers },
    body,
    signal: options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]),
  });
}
