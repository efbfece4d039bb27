/**
 * Small `node:http` helpers: security headers on every response, bounded form bodies, cookies.
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONTENT_SECURITY_POLICY } from './html.ts';

/** Headers sent with every response of the web app. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Cache-Control': 'no-store',
  'Referrer-Policy': 'no-referrer',
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'X-Robots-Tag': 'noindex, nofollow',
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** Default limit of a POST body. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Sends an HTML page (HEAD requests get the headers only; Node drops the body). */
export function sendHtml(
  res: ServerResponse,
  status: number,
  html: string,
  headers: Readonly<Record<string, string | readonly string[]>> = {},
): void {
  const body = Buffer.from(html, 'utf8');
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': String(body.length),
    ...headers,
  });
  res.end(body);
}

/** A 303 See Other to a same-origin path. */
export function redirect(
  res: ServerResponse,
  location: string,
  headers: Readonly<Record<string, string | readonly string[]>> = {},
): void {
  res.writeHead(303, { ...SECURITY_HEADERS, Location: location, 'Content-Length': '0', ...headers });
  res.end();
}

/** A parsed form body, or why it was refused. */
export type FormBody =
  | { readonly ok: true; readonly fields: ReadonlyMap<string, string> }
  | { readonly ok: false; readonly status: 400 | 413 | 415; readonly reason: string };

/**
 * Reads an `application/x-www-form-urlencoded` body of at most `maxBytes`. A field given twice is
 * refused (no guessing which one counts).
 */
export async function readForm(req: IncomingMessage, maxBytes: number): Promise<FormBody> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    return { ok: false, status: 415, reason: 'unsupported_media_type' };
  }
  const declared = Number(req.headers['content-length'] ?? '0');
  if (Number.isFinite(declared) && declared > maxBytes)
    return { ok: false, status: 413, reason: 'too_large' };
  const body = await readBounded(req, maxBytes);
  if (body === null) return { ok: false, status: 413, reason: 'too_large' };
  const fields = new Map<string, string>();
  for (const [key, value] of new URLSearchParams(body.toString('utf8'))) {
    if (fields.has(key)) return { ok: false, status: 400, reason: 'duplicate_field' };
    fields.set(key, value);
  }
  return { ok: true, fields };
}

/** The body, or null once it passes `maxBytes` (the rest is left unread; reply with `Connection: close`). */
export function readBounded(req: IncomingMessage, maxBytes: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** Cookies of a request (first value wins). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!cookies.has(name)) cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

/** Constant-time string comparison (compares sha256 digests, so lengths may differ). */
export function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}

/** Audit detail of a request: peer address and user agent. */
export function clientDetail(req: IncomingMessage): {
  readonly ip: string | null;
  readonly userAgent: string | null;
} {
  const ua = req.headers['user-agent'];
  return { ip: req.socket.remoteAddress ?? null, userAgent: ua === undefined ? null : ua.slice(0, 300) };
}
