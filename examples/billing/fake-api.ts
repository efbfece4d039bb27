/**
 * A fake billing API for the example and its tests: a real `node:http` server on 127.0.0.1 with
 * `POST /v1/refunds`, bearer auth, JSON validation, per-order refund limits and Idempotency-Key
 * semantics (same key and body: the stored refund again, `200` with `Idempotent-Replayed: true`;
 * same key, other body: `422 idempotency_key_reused`). State lives in memory.
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';

/** An order the API knows: what was charged, in which currency. */
export interface FakeOrder {
  readonly chargedCents: number;
  readonly currency: string;
}

/** Options of {@link startFakeBillingApi}. */
export interface FakeBillingApiOptions {
  /** The bearer token clients must send. */
  readonly apiKey: string;
  /** Known orders by id. Default none. */
  readonly orders?: Readonly<Record<string, FakeOrder>>;
  /** Delay before answering, after the refund is stored (a client that gives up still caused one refund). */
  readonly delayMs?: number;
  /** Port on 127.0.0.1; default 0 (any free port). */
  readonly port?: number;
}

/** A refund the API stored. */
export interface StoredRefund {
  readonly refundId: string;
  readonly orderId: string;
  readonly amountCents: number;
  readonly currency: string;
  readonly reason: string;
  readonly status: 'succeeded';
  readonly idempotencyKey: string;
  readonly createdAt: string;
}

/** A running fake API. */
export interface FakeBillingApi {
  /** Base URL, `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Refunds stored so far, oldest first. */
  refunds(): readonly StoredRefund[];
  /** Requests received so far (any path, any outcome). */
  requests(): number;
  /** Stops the server, dropping open connections. */
  close(): Promise<void>;
}

/** Orders the demo (`fake-api-main.ts`) can refund against. */
export const DEMO_ORDERS: Readonly<Record<string, FakeOrder>> = Object.freeze({
  ord_demo1001: Object.freeze({ chargedCents: 4_999, currency: 'USD' }),
  ord_demo1002: Object.freeze({ chargedCents: 120_000, currency: 'USD' }),
  ord_demo1003: Object.freeze({ chargedCents: 75_000, currency: 'EUR' }),
  ord_demo1004: Object.freeze({ chargedCents: 900_000, currency: 'USD' }),
});

const RefundRequest = z.strictObject({
  orderId: z.string().min(1).max(100),
  amountCents: z.int().positive(),
  currency: z.string().regex(/^[A-Z]{3}$/),
  reason: z.string().min(1).max(500),
});
type RefundRequest = z.infer<typeof RefundRequest>;

const MAX_BODY_BYTES = 64 * 1024;
const MAX_KEY_CHARS = 255;

/** Starts the fake API on 127.0.0.1. */
export async function startFakeBillingApi(options: FakeBillingApiOptions): Promise<FakeBillingApi> {
  const expectedAuth = digest(`Bearer ${options.apiKey}`);
  const orders = new Map(Object.entries(options.orders ?? {}));
  const delayMs = options.delayMs ?? 0;
  const refunds: StoredRefund[] = [];
  const byKey = new Map<string, { readonly fingerprint: string; readonly refund: StoredRefund }>();
  const timers = new Set<NodeJS.Timeout>();
  let requestCount = 0;

  const send = (
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    const write = (): void => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    };
    if (delayMs <= 0 || status >= 400) {
      write();
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      write();
    }, delayMs);
    timers.add(timer);
  };
  const error = (res: http.ServerResponse, status: number, code: string, message: string): void =>
    send(res, status, { error: { code, message } });

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): void => {
    if (req.url !== '/v1/refunds') return error(res, 404, 'route_not_found', 'no such route');
    if (req.method !== 'POST') return error(res, 405, 'method_not_allowed', 'use POST');
    if (!timingSafeEqual(digest(req.headers.authorization ?? ''), expectedAuth))
      return error(res, 401, 'unauthorized', 'missing or wrong API key');
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || key === '' || key.length > MAX_KEY_CHARS)
      return error(
        res,
        400,
        'idempotency_key_missing',
        `an Idempotency-Key of 1-${MAX_KEY_CHARS} characters is required`,
      );
    if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
      return error(res, 415, 'unsupported_media_type', 'send application/json');
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      return error(res, 400, 'invalid_request', 'the body is not JSON');
    }
    const parsed = RefundRequest.safeParse(json);
    if (!parsed.success)
      return error(res, 400, 'invalid_request', parsed.error.issues.map((i) => i.message).join('; '));
    const request = parsed.data;

    const fingerprint = fingerprintOf(request);
    const earlier = byKey.get(key);
    if (earlier !== undefined) {
      if (earlier.fingerprint !== fingerprint)
        return error(
          res,
          422,
          'idempotency_key_reused',
          'this Idempotency-Key was used with another request',
        );
      return send(res, 200, publicRefund(earlier.refund), { 'Idempotent-Replayed': 'true' });
    }

    const order = orders.get(request.orderId);
    if (order === undefined) return error(res, 404, 'order_not_found', `no order ${request.orderId}`);
    if (order.currency !== request.currency)
      return error(
        res,
        422,
        'currency_mismatch',
        `order ${request.orderId} was charged in ${order.currency}`,
      );
    const refunded = refunds
      .filter((r) => r.orderId === request.orderId)
      .reduce((sum, r) => sum + r.amountCents, 0);
    if (refunded + request.amountCents > order.chargedCents)
      return error(
        res,
        422,
        'amount_exceeds_charge',
        `order ${request.orderId}: charged ${order.chargedCents}, refunded ${refunded}, asked ${request.amountCents}`,
      );

    const refund: StoredRefund = Object.freeze({
      refundId: `re_${randomBytes(12).toString('hex')}`,
      ...request,
      status: 'succeeded',
      idempotencyKey: key,
      createdAt: new Date().toISOString(),
    });
    refunds.push(refund);
    byKey.set(key, { fingerprint, refund });
    return send(res, 201, publicRefund(refund));
  };

  const server = http.createServer((req, res) => {
    requestCount++;
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES)
        error(res, 413, 'payload_too_large', `the body exceeds ${MAX_BODY_BYTES} bytes`);
      else handle(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    refunds: () => [...refunds],
    requests: () => requestCount,
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.closeAllConnections();
        server.close((err) => (err === undefined ? resolve() : reject(err)));
      }),
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function fingerprintOf(request: RefundRequest): string {
  return JSON.stringify([request.orderId, request.amountCents, request.currency, request.reason]);
}

function publicRefund(refund: StoredRefund) {
  return {
    refundId: refund.refundId,
    orderId: refund.orderId,
    amountCents: refund.amountCents,
    currency: refund.currency,
    status: refund.status,
    createdAt: refund.createdAt,
  };
}
