/**
 * The `http.request` tool implementation: an SSRF-hardened HTTP client on `node:http`/`node:https`.
 *
 * - only `http:`/`https:`; the host must be on the configured allow-list (exact names, or `*.example.com`
 *   matching exactly one label);
 * - every address the host resolves to is checked, and a single loopback, private, link-local, CGNAT,
 *   multicast, reserved, IPv4-mapped/-compatible, NAT64, 6to4 or Teredo address refuses the request unless
 *   `allowPrivateAddresses` covers it; literal IP hosts (including `http://2130706433/`, which the WHATWG
 *   parser normalises to `127.0.0.1`) go through the same check;
 * - the connection goes to the addresses that were checked (the socket's `lookup` is pinned), so a second,
 *   different DNS answer cannot be used (DNS rebinding); `Host` and the TLS server name stay the host name;
 * - redirects are followed by hand, each hop re-checked, at most `maxRedirects`;
 * - the response body is capped, the whole call (DNS, every hop, body) has one deadline, and the caller's
 *   `AbortSignal` is honoured.
 *
 * - HTTPS verifies the certificate against Node's default roots plus the configured `ca`, and the host name.
 *
 * Failures are returned as `{ ok: false, code, message, detail? }` with a stable `HTTP_*` code. The message is
 * what the model is told and never names a resolved address or DNS answer; `detail` (for the audit log only)
 * does.
 * @module
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP } from 'node:net';
import type { LookupFunction } from 'node:net';
import * as tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { z } from 'zod';
import { AgentRuntimeError } from '../../policy/errors.ts';
import { httpRequest } from '../../tools/builtin-specs.ts';
import { implementTool } from './define.ts';
import type { ToolImplementation, ToolResult } from './define.ts';

/** Stable error codes of the `http.request` tool. */
export const HttpErrorCode = {
  configInvalid: 'HTTP_CONFIG_INVALID',
  urlInvalid: 'HTTP_URL_INVALID',
  hostNotAllowed: 'HTTP_HOST_NOT_ALLOWED',
  addressBlocked: 'HTTP_ADDRESS_BLOCKED',
  dnsFailed: 'HTTP_DNS_FAILED',
  headerNotAllowed: 'HTTP_HEADER_NOT_ALLOWED',
  headerInvalid: 'HTTP_HEADER_INVALID',
  tooManyRedirects: 'HTTP_TOO_MANY_REDIRECTS',
  redirectInvalid: 'HTTP_REDIRECT_INVALID',
  responseTooLarge: 'HTTP_RESPONSE_TOO_LARGE',
  timeout: 'HTTP_TIMEOUT',
  aborted: 'HTTP_ABORTED',
  connectionFailed: 'HTTP_CONNECTION_FAILED',
  tlsFailed: 'HTTP_TLS_FAILED',
  internal: 'HTTP_INTERNAL',
} as const;
export type HttpErrorCode = (typeof HttpErrorCode)[keyof typeof HttpErrorCode];

/** One resolved address, as `dns.lookup(host, { all: true })` returns it. */
export interface HttpLookupAddress {
  readonly address: string;
  readonly family: number;
}

/** Resolves a host name to every address it has (the `node:dns/promises` `lookup` with `all: true`). */
export type HttpLookup = (hostname: string) => Promise<readonly HttpLookupAddress[]>;

/** Configuration of {@link httpTool}. */
export interface HttpRequestToolConfig {
  /** Host names the tool may reach: exact (`api.acme.test`, `127.0.0.1`, `[::1]`) or `*.acme.test` (one label). */
  readonly allowedHosts: readonly string[];
  /**
   * CIDRs (`127.0.0.1/32`, `fd00::/8`), single addresses, or host names whose addresses may be loopback,
   * private or otherwise blocked ranges (tests, local demos). Default: none.
   */
  readonly allowPrivateAddresses?: readonly string[];
  /** Largest response body, in bytes; more aborts the call with `HTTP_RESPONSE_TOO_LARGE`. Default 1 MiB. */
  readonly maxResponseBytes?: number;
  /** Deadline for the whole call (DNS, every redirect hop, the body), in ms. Default 10 000. */
  readonly timeoutMs?: number;
  /** Most redirects followed; one more fails with `HTTP_TOO_MANY_REDIRECTS`. Default 5. */
  readonly maxRedirects?: number;
  /** DNS resolution; default `lookup(host, { all: true })` from `node:dns/promises`. */
  readonly lookup?: HttpLookup;
  /**
   * Extra trusted CA certificate(s), PEM, for HTTPS (a private CA, a test's self-signed certificate); added to
   * Node's default roots. The host name is still verified against the certificate.
   */
  readonly ca?: string | Buffer;
}

/** Validated arguments of `http.request`. */
export type HttpRequestArgs = z.infer<typeof httpRequest.args>;

/** What a successful call returns. */
export interface HttpRequestOutput {
  readonly status: number;
  /** A safe subset of the response headers (lower-case names; repeated headers joined with `, `). */
  readonly headers: Readonly<Record<string, string>>;
  /** The body decoded as UTF-8 (invalid sequences become U+FFFD). Empty for `HEAD`. */
  readonly body: string;
  /** Always `false`: an oversized body is an error, never silently cut. */
  readonly truncated: false;
  /** The URL of the response returned (after redirects). */
  readonly finalUrl: string;
  /** Every URL a redirect led to, in order. */
  readonly redirects: readonly string[];
}

/** A failure of one call, with a stable `HTTP_*` code; `message` is safe for the model, `detail` is not. */
export class HttpToolError extends AgentRuntimeError {
  /** Diagnostic detail (resolved addresses, low-level error codes) for the audit log, never for the model. */
  readonly detail: string | undefined;
  constructor(code: HttpErrorCode, message: string, options?: { cause?: unknown; detail?: string }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.detail = options?.detail;
  }
}

const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_REDIRECTS = 5;

const defaultLookup: HttpLookup = (hostname) => dnsLookup(hostname, { all: true });

/**
 * The `http.request` tool bound to its implementation. Arguments are validated once, by the registry
 * (`execute`), with the spec's schema; `run` trusts them. Throws `HTTP_CONFIG_INVALID` on a malformed
 * configuration.
 */
export function httpTool(
  config: HttpRequestToolConfig,
): ToolImplementation<HttpRequestArgs, HttpRequestToolConfig> {
  const hosts = compileAllowedHosts(config.allowedHosts);
  const allowance = compileAllowance(config.allowPrivateAddresses ?? []);
  const maxResponseBytes = positiveInt(
    config.maxResponseBytes,
    DEFAULT_MAX_RESPONSE_BYTES,
    'maxResponseBytes',
  );
  const timeoutMs = positiveInt(config.timeoutMs, DEFAULT_TIMEOUT_MS, 'timeoutMs');
  const maxRedirects = config.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  if (!Number.isInteger(maxRedirects) || maxRedirects < 0) {
    throw new AgentRuntimeError(HttpErrorCode.configInvalid, 'maxRedirects must be a non-negative integer');
  }
  const settings: Settings = {
    hosts,
    allowance,
    maxResponseBytes,
    timeoutMs,
    maxRedirects,
    lookup: config.lookup ?? defaultLookup,
    ca: trustedCas(config.ca),
  };

  const run = async (
    args: HttpRequestArgs,
    ctx: { readonly idempotencyKey: string; readonly signal?: AbortSignal },
  ): Promise<ToolResult> => {
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort(new HttpToolError(HttpErrorCode.timeout, `request timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onCallerAbort = (): void => {
      controller.abort(new HttpToolError(HttpErrorCode.aborted, 'request was cancelled'));
    };
    ctx.signal?.addEventListener('abort', onCallerAbort, { once: true });
    try {
      if (ctx.signal?.aborted === true) onCallerAbort();
      const output = await perform(settings, args, ctx.idempotencyKey, controller.signal);
      return { ok: true, output };
    } catch (error) {
      if (error instanceof HttpToolError) return fail(error.code, error.message, error.detail);
      return fail(HttpErrorCode.internal, 'the request failed unexpectedly', describe(error));
    } finally {
      clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onCallerAbort);
    }
  };

  return implementTool(httpRequest, run, config);
}

function fail(code: string, message: string, detail: string | undefined): ToolResult {
  return detail === undefined ? { ok: false, code, message } : { ok: false, code, message, detail };
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Node's default roots plus `ca`, or undefined (Node's defaults) when no `ca` is configured. */
function trustedCas(ca: string | Buffer | undefined): readonly (string | Buffer)[] | undefined {
  if (ca === undefined) return undefined;
  try {
    new X509Certificate(ca);
  } catch (error) {
    throw new AgentRuntimeError(HttpErrorCode.configInvalid, 'ca is not a PEM or DER certificate', {
      cause: error,
    });
  }
  const defaults =
    typeof tls.getCACertificates === 'function' ? tls.getCACertificates('default') : tls.rootCertificates;
  return [...defaults, ca];
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new AgentRuntimeError(HttpErrorCode.configInvalid, `${name} must be a positive integer`);
  }
  return value;
}

interface Settings {
  readonly hosts: AllowedHosts;
  readonly allowance: Allowance;
  readonly maxResponseBytes: number;
  readonly timeoutMs: number;
  readonly maxRedirects: number;
  readonly lookup: HttpLookup;
  readonly ca: readonly (string | Buffer)[] | undefined;
}

// ---------------------------------------------------------------------------------------------------------
// The request loop

const NON_IDEMPOTENT = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Caller headers refused outright (names lower-case; `proxy-*` by prefix). */
const REFUSED_HEADERS = new Set(['host', 'connection', 'transfer-encoding']);
/** Caller headers dropped silently: other hop-by-hop headers, and those the tool sets itself. */
const DROPPED_HEADERS = new Set([
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'content-length',
  'accept-encoding',
  'idempotency-key',
]);
/** Request headers that describe the body; dropped when a redirect turns the request into a GET. */
const BODY_HEADERS = new Set(['content-type', 'content-encoding', 'content-language', 'content-location']);
/** Request headers carrying credentials; dropped on a cross-origin redirect. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie']);
/** Response headers returned to the caller. */
const SAFE_RESPONSE_HEADERS = new Set([
  'cache-control',
  'content-encoding',
  'content-language',
  'content-length',
  'content-type',
  'date',
  'etag',
  'expires',
  'last-modified',
  'location',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'retry-after',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'x-request-id',
]);

async function perform(
  settings: Settings,
  args: HttpRequestArgs,
  idempotencyKey: string,
  signal: AbortSignal,
): Promise<HttpRequestOutput> {
  let url = parseTarget(args.url, settings.hosts);
  let method: string = args.method;
  let body: string | undefined = args.body;
  let headers = sanitiseRequestHeaders(args.headers ?? {});
  const redirects: string[] = [];

  for (;;) {
    const target = await resolveTarget(url, settings, signal);
    const sent = new Map(headers);
    sent.set('accept-encoding', 'identity');
    if (NON_IDEMPOTENT.has(method)) sent.set('idempotency-key', idempotencyKey);
    if (body !== undefined) sent.set('content-length', String(Buffer.byteLength(body, 'utf8')));
    else if (NON_IDEMPOTENT.has(method)) sent.set('content-length', '0');

    const response = await exchange(
      target,
      method,
      sent,
      body,
      settings.maxResponseBytes,
      settings.ca,
      signal,
    );
    const location = response.headers.location;
    if (!REDIRECT_STATUSES.has(response.status) || location === undefined) {
      return {
        status: response.status,
        headers: safeResponseHeaders(response.headers),
        body: method === 'HEAD' ? '' : new TextDecoder('utf-8').decode(response.body),
        truncated: false,
        finalUrl: url.href,
        redirects,
      };
    }

    if (redirects.length >= settings.maxRedirects) {
      throw new HttpToolError(
        HttpErrorCode.tooManyRedirects,
        `too many redirects (more than ${settings.maxRedirects})`,
      );
    }
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      throw new HttpToolError(HttpErrorCode.redirectInvalid, 'the server sent an invalid redirect location');
    }
    next.hash = '';
    const nextUrl = parseTarget(next.href, settings.hosts);
    // RFC 9110 §15.4: 303 turns everything but HEAD into GET; 301/302 historically turn POST into GET
    // (as every browser and fetch do); 307/308 keep method and body.
    if (
      (response.status === 303 && method !== 'HEAD') ||
      ((response.status === 301 || response.status === 302) && method === 'POST')
    ) {
      method = 'GET';
      body = undefined;
      headers = new Map([...headers].filter(([name]) => !BODY_HEADERS.has(name)));
    }
    if (nextUrl.origin !== url.origin) {
      headers = new Map([...headers].filter(([name]) => !CREDENTIAL_HEADERS.has(name)));
    }
    redirects.push(nextUrl.href);
    url = nextUrl;
  }
}

/** Parses a URL and checks scheme, credentials and the host allow-list. */
function parseTarget(raw: string, hosts: AllowedHosts): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new HttpToolError(HttpErrorCode.urlInvalid, 'the URL is not valid');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new HttpToolError(
      HttpErrorCode.urlInvalid,
      `scheme "${url.protocol}" is not allowed; use http or https`,
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new HttpToolError(HttpErrorCode.urlInvalid, 'credentials in the URL are not allowed');
  }
  const host = normaliseHost(url.hostname);
  if (!hostAllowed(hosts, host)) {
    throw new HttpToolError(HttpErrorCode.hostNotAllowed, `host "${host}" is not on the allow-list`);
  }
  url.hash = '';
  return url;
}

interface Target {
  readonly url: URL;
  /** Host name as sent in `Host` and TLS SNI (trailing dot stripped; IPv6 without brackets). */
  readonly hostname: string;
  /** Whether the host is an IP literal (no SNI, no lookup). */
  readonly literal: boolean;
  /** The checked addresses the socket is pinned to. */
  readonly addresses: readonly HttpLookupAddress[];
}

/** Resolves the host and checks every address; the result pins the connection. */
async function resolveTarget(url: URL, settings: Settings, signal: AbortSignal): Promise<Target> {
  const host = normaliseHost(url.hostname);
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  const literalVersion = isIP(bare);
  let addresses: HttpLookupAddress[];
  if (literalVersion !== 0) {
    addresses = [{ address: bare, family: literalVersion }];
  } else {
    let answer: readonly HttpLookupAddress[];
    try {
      answer = await abortable(settings.lookup(bare), signal);
    } catch (error) {
      if (error instanceof HttpToolError) throw error;
      throw new HttpToolError(HttpErrorCode.dnsFailed, `could not resolve host "${host}"`, {
        cause: error,
        detail: `lookup of "${bare}" failed: ${describe(error)}`,
      });
    }
    addresses = [];
    for (const entry of answer) {
      const family = isIP(entry.address);
      if (family === 0) {
        throw new HttpToolError(HttpErrorCode.dnsFailed, `host "${host}" resolved to an invalid address`, {
          detail: `lookup of "${bare}" answered ${JSON.stringify(entry.address)}`,
        });
      }
      addresses.push({ address: entry.address, family });
    }
    if (addresses.length === 0) {
      throw new HttpToolError(HttpErrorCode.dnsFailed, `host "${host}" has no addresses`);
    }
  }
  for (const { address } of addresses) {
    const ip = parseIp(address);
    const reason = ip === undefined ? 'unparseable' : blockedReason(ip);
    if (reason === undefined) continue;
    if (ip !== undefined && isAllowed(settings.allowance, ip, host)) continue;
    // the message never names the address nor, for a name, its range: both describe the internal network
    throw new HttpToolError(
      HttpErrorCode.addressBlocked,
      literalVersion !== 0
        ? `the IP address in the URL is not allowed (${reason})`
        : `host "${host}" resolves to an address that is not allowed`,
      {
        detail:
          literalVersion !== 0
            ? `address ${address} is not allowed (${reason})`
            : `host "${host}" resolves to ${address}, which is not allowed (${reason})`,
      },
    );
  }
  return { url, hostname: bare, literal: literalVersion !== 0, addresses };
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

function abortReason(signal: AbortSignal): HttpToolError {
  const reason: unknown = signal.reason;
  return reason instanceof HttpToolError
    ? reason
    : new HttpToolError(HttpErrorCode.aborted, 'request was cancelled');
}

/** A `net` lookup that only ever answers with the checked addresses. */
function pinnedLookup(addresses: readonly HttpLookupAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    const first = addresses[0];
    if (options.all === true) {
      callback(
        null,
        addresses.map((a) => ({ address: a.address, family: a.family })),
      );
    } else if (first !== undefined) {
      callback(null, first.address, first.family);
    } else {
      callback(Object.assign(new Error('no checked address'), { code: 'ENOTFOUND' }), '', 0);
    }
  };
}

interface RawResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One request/response on a fresh, pinned connection. Redirect bodies are not read. */
function exchange(
  target: Target,
  method: string,
  headers: ReadonlyMap<string, string>,
  body: string | undefined,
  maxBytes: number,
  ca: readonly (string | Buffer)[] | undefined,
  signal: AbortSignal,
): Promise<RawResponse> {
  const { url } = target;
  const secure = url.protocol === 'https:';
  const hostHeader =
    (target.hostname.includes(':') ? `[${target.hostname}]` : target.hostname) +
    (url.port === '' ? '' : `:${url.port}`);
  const outgoing: Record<string, string> = { host: hostHeader };
  for (const [name, value] of headers) outgoing[name] = value;
  const options: https.RequestOptions = {
    method,
    host: target.hostname,
    port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
    path: `${url.pathname}${url.search}`,
    headers: outgoing,
    // a fresh agent per hop: no pooled socket from another (differently resolved) request is reused
    agent: false,
    lookup: pinnedLookup(target.addresses),
    setHost: false,
  };
  if (secure && !target.literal) options.servername = target.hostname;
  if (secure && ca !== undefined) options.ca = [...ca];

  return new Promise<RawResponse>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    let settled = false;
    let request: http.ClientRequest | undefined;
    const settle = (action: () => void): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      action();
    };
    const failWith = (error: HttpToolError): void => {
      settle(() => reject(error));
      request?.destroy();
    };
    const onAbort = (): void => failWith(abortReason(signal));

    try {
      request = (secure ? https : http).request(options, (response) => {
        const status = response.statusCode ?? 0;
        if (REDIRECT_STATUSES.has(status) && response.headers.location !== undefined) {
          settle(() => resolve({ status, headers: response.headers, body: Buffer.alloc(0) }));
          response.destroy();
          request?.destroy();
          return;
        }
        const declared = Number(response.headers['content-length']);
        if (method !== 'HEAD' && Number.isFinite(declared) && declared > maxBytes) {
          failWith(tooLarge(maxBytes));
          return;
        }
        const chunks: Buffer[] = [];
        let total = 0;
        response.on('data', (chunk: Buffer) => {
          total += chunk.length;
          if (total > maxBytes) {
            failWith(tooLarge(maxBytes));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => {
          settle(() => resolve({ status, headers: response.headers, body: Buffer.concat(chunks, total) }));
        });
        response.on('error', (error) => failWith(connectionError(error)));
        response.on('close', () => {
          if (!response.complete) failWith(connectionError(new Error('response ended early')));
        });
      });
    } catch (error) {
      failWith(connectionError(error));
      return;
    }
    request.on('error', (error) => failWith(connectionError(error)));
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) {
      onAbort();
      return;
    }
    request.end(body);
  });
}

function tooLarge(maxBytes: number): HttpToolError {
  return new HttpToolError(HttpErrorCode.responseTooLarge, `response body exceeds ${maxBytes} bytes`);
}

/** Certificate verification and handshake failures (OpenSSL verify codes, Node's `ERR_TLS_*`/`ERR_SSL_*`). */
const TLS_ERROR = /^ERR_(?:TLS|SSL)_|CERT|SELF_SIGNED|ISSUER|LEAF_SIGNATURE|CRL_/;

function connectionError(error: unknown): HttpToolError {
  const code =
    typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
      ? error.code
      : undefined;
  // the low-level message can name the connected address, so it goes to `detail` only
  const detail = describe(error);
  if (code !== undefined && TLS_ERROR.test(code)) {
    return new HttpToolError(
      HttpErrorCode.tlsFailed,
      `the server's TLS certificate was not accepted (${code})`,
      { cause: error, detail },
    );
  }
  return new HttpToolError(
    HttpErrorCode.connectionFailed,
    `the request failed${code === undefined ? '' : ` (${code})`}`,
    { cause: error, detail },
  );
}

// ---------------------------------------------------------------------------------------------------------
// Headers

function sanitiseRequestHeaders(headers: Readonly<Record<string, string>>): Map<string, string> {
  const result = new Map<string, string>();
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    try {
      http.validateHeaderName(rawName);
      http.validateHeaderValue(rawName, value);
    } catch {
      throw new HttpToolError(
        HttpErrorCode.headerInvalid,
        `header "${rawName}" has an invalid name or value`,
      );
    }
    if (REFUSED_HEADERS.has(name) || name.startsWith('proxy-')) {
      throw new HttpToolError(HttpErrorCode.headerNotAllowed, `header "${rawName}" may not be set`);
    }
    if (DROPPED_HEADERS.has(name)) continue;
    result.set(name, value);
  }
  return result;
}

function safeResponseHeaders(headers: http.IncomingHttpHeaders): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || !SAFE_RESPONSE_HEADERS.has(name)) continue;
    result[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Host allow-list

interface AllowedHosts {
  readonly exact: ReadonlySet<string>;
  /** Suffixes such as `.acme.test` from `*.acme.test`. */
  readonly wildcards: readonly string[];
}

/** Lower-case, trailing dot stripped; IPv6 in brackets, as `URL.hostname` spells it. */
function normaliseHost(hostname: string): string {
  const lower = hostname.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function canonicalHost(entry: string): string | undefined {
  const text = isIP(entry) === 6 ? `[${entry}]` : entry;
  try {
    const url = new URL(`http://${text}/`);
    if (url.host !== url.hostname || url.username !== '' || url.pathname !== '/') return undefined;
    const host = normaliseHost(url.hostname);
    return host === '' ? undefined : host;
  } catch {
    return undefined;
  }
}

function compileAllowedHosts(entries: readonly string[]): AllowedHosts {
  const exact = new Set<string>();
  const wildcards: string[] = [];
  for (const entry of entries) {
    if (entry.startsWith('*.')) {
      const suffix = canonicalHost(entry.slice(2));
      if (suffix === undefined || !suffix.includes('.') || suffix.includes('*') || isIpHost(suffix)) {
        throw new AgentRuntimeError(
          HttpErrorCode.configInvalid,
          `allowedHosts: "${entry}" is not a valid wildcard (use *.example.com)`,
        );
      }
      wildcards.push(`.${suffix}`);
      continue;
    }
    const host = canonicalHost(entry);
    if (host === undefined || host.includes('*')) {
      throw new AgentRuntimeError(HttpErrorCode.configInvalid, `allowedHosts: "${entry}" is not a host name`);
    }
    exact.add(host);
  }
  return { exact, wildcards };
}

function isIpHost(host: string): boolean {
  return isIP(host.startsWith('[') ? host.slice(1, -1) : host) !== 0;
}

function hostAllowed(hosts: AllowedHosts, host: string): boolean {
  if (hosts.exact.has(host)) return true;
  if (isIpHost(host)) return false;
  return hosts.wildcards.some((suffix) => {
    if (!host.endsWith(suffix)) return false;
    const label = host.slice(0, -suffix.length);
    return label !== '' && !label.includes('.');
  });
}

// ---------------------------------------------------------------------------------------------------------
// Addresses

interface Ip {
  readonly version: 4 | 6;
  /** 4 or 16 bytes. */
  readonly bytes: readonly number[];
}

/** Parses a textual IPv4 or IPv6 address (zone index ignored); undefined if it is not one. */
export function parseIp(text: string): Ip | undefined {
  const address = text.includes('%') ? text.slice(0, text.indexOf('%')) : text;
  const version = isIP(address);
  if (version === 4) return { version: 4, bytes: address.split('.').map(Number) };
  if (version !== 6) return undefined;
  let head = address;
  let tail: number[] = [];
  const lastColon = address.lastIndexOf(':');
  const dotted = address.slice(lastColon + 1);
  if (dotted.includes('.')) {
    const v4 = dotted.split('.').map(Number);
    tail = [((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0)];
    head = address.slice(0, lastColon + 1); // `::ffff:` or `1:2:3:4:5:6:` or `::`
    if (!head.endsWith('::')) head = head.slice(0, -1);
  }
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  let words: number[];
  const gap = head.indexOf('::');
  if (gap === -1) {
    words = [...groups(head), ...tail];
  } else {
    const left = groups(head.slice(0, gap));
    const right = [...groups(head.slice(gap + 2)), ...tail];
    words = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  }
  if (words.length !== 8) return undefined;
  return { version: 6, bytes: words.flatMap((w) => [w >> 8, w & 0xff]) };
}

interface Cidr {
  readonly version: 4 | 6;
  readonly bytes: readonly number[];
  readonly bits: number;
}

function cidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (parsed === undefined) throw new Error(`bad built-in CIDR ${text}`);
  return parsed;
}

function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const ip = parseIp(slash === -1 ? text : text.slice(0, slash));
  if (ip === undefined) return undefined;
  const max = ip.version === 4 ? 32 : 128;
  if (slash === -1) return { ...ip, bits: max };
  const bitsText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  return bits > max ? undefined : { ...ip, bits };
}

function inCidr(ip: Ip, range: Cidr): boolean {
  if (ip.version !== range.version) return false;
  let bits = range.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((ip.bytes[i] ?? 0) & mask) !== ((range.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

const BLOCKED_V4: readonly (readonly [Cidr, string])[] = [
  [cidr('0.0.0.0/8'), 'unspecified/"this network"'],
  [cidr('10.0.0.0/8'), 'private'],
  [cidr('100.64.0.0/10'), 'carrier-grade NAT'],
  [cidr('127.0.0.0/8'), 'loopback'],
  [cidr('169.254.0.0/16'), 'link-local'],
  [cidr('172.16.0.0/12'), 'private'],
  [cidr('192.0.0.0/24'), 'IETF protocol assignment'],
  [cidr('192.0.2.0/24'), 'documentation'],
  [cidr('192.88.99.0/24'), '6to4 relay anycast'],
  [cidr('192.168.0.0/16'), 'private'],
  [cidr('198.18.0.0/15'), 'benchmarking'],
  [cidr('198.51.100.0/24'), 'documentation'],
  [cidr('203.0.113.0/24'), 'documentation'],
  [cidr('224.0.0.0/4'), 'multicast'],
  [cidr('240.0.0.0/4'), 'reserved/broadcast'],
];

const BLOCKED_V6: readonly (readonly [Cidr, string])[] = [
  [cidr('::/128'), 'unspecified'],
  [cidr('::1/128'), 'loopback'],
  [cidr('100::/64'), 'discard-only'],
  [cidr('2001::/32'), 'Teredo'],
  [cidr('2001:db8::/32'), 'documentation'],
  [cidr('64:ff9b:1::/48'), 'local-use NAT64'],
  [cidr('fc00::/7'), 'unique local (private)'],
  [cidr('fe80::/10'), 'link-local'],
  [cidr('fec0::/10'), 'site-local'],
  [cidr('ff00::/8'), 'multicast'],
];

/** IPv6 forms that embed an IPv4 address: the range, and the byte offset of the IPv4 address. */
const EMBEDDING_V6: readonly (readonly [Cidr, number, string])[] = [
  [cidr('::ffff:0:0/96'), 12, 'IPv4-mapped'],
  [cidr('::ffff:0:0:0/96'), 12, 'IPv4-translated'],
  [cidr('::/96'), 12, 'IPv4-compatible'],
  [cidr('64:ff9b::/96'), 12, 'NAT64'],
  [cidr('2002::/16'), 2, '6to4'],
];

/** Why an address may not be connected to, or undefined if it is a public unicast address. */
export function blockedReason(ip: Ip): string | undefined {
  if (ip.version === 4) return BLOCKED_V4.find(([range]) => inCidr(ip, range))?.[1];
  const direct = BLOCKED_V6.find(([range]) => inCidr(ip, range));
  if (direct !== undefined) return direct[1];
  for (const [range, offset, label] of EMBEDDING_V6) {
    if (!inCidr(ip, range)) continue;
    const inner = blockedReason({ version: 4, bytes: ip.bytes.slice(offset, offset + 4) });
    return inner === undefined ? undefined : `${label} ${inner}`;
  }
  return undefined;
}

const MAPPED = cidr('::ffff:0:0/96');

interface Allowance {
  readonly ranges: readonly Cidr[];
  readonly hosts: ReadonlySet<string>;
}

function compileAllowance(entries: readonly string[]): Allowance {
  const ranges: Cidr[] = [];
  const hosts = new Set<string>();
  for (const entry of entries) {
    const range = parseCidr(
      entry.startsWith('[') && entry.includes(']') ? entry.replace(/[[\]]/g, '') : entry,
    );
    if (range !== undefined) {
      ranges.push(range);
      continue;
    }
    const host = entry.includes('/') ? undefined : canonicalHost(entry);
    if (host === undefined || host.includes('*')) {
      throw new AgentRuntimeError(
        HttpErrorCode.configInvalid,
        `allowPrivateAddresses: "${entry}" is neither a CIDR, an address nor a host name`,
      );
    }
    hosts.add(host);
  }
  return { ranges, hosts };
}

function isAllowed(allowance: Allowance, ip: Ip, host: string): boolean {
  if (allowance.hosts.has(host)) return true;
  const mapped = inCidr(ip, MAPPED) ? { version: 4 as const, bytes: ip.bytes.slice(12) } : undefined;
  return allowance.ranges.some(
    (range) => inCidr(ip, range) || (mapped !== undefined && inCidr(mapped, range)),
  );
}
