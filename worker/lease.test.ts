/**
 * The lease watcher against a real HTTP server on 127.0.0.1 that serves `GET /v1/leases/{name}`
 * as the aggregator does, with an injected clock.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createLeaseWatcher,
  leaseActivities,
  LeaseError,
  NO_OBSERVER_LEASE,
  staticLeaseSource,
} from './lease.ts';
import type { LeaseWatcher, LeaseWatcherOptions } from './lease.ts';

const TOKEN = 'lease-token-123';
const T0 = Date.parse('2026-03-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

type Answer = { status: number; body: unknown; delayMs?: number } | 'hang';
interface Seen {
  readonly url: string;
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
}

let server: Server;
let base: string;
const seen: Seen[] = [];
let answers: Answer[] = [];
let fallback: Answer = { status: 500, body: { error: { code: 'NO_ANSWER_SCRIPTED' } } };

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', method: req.method ?? '', headers: req.headers });
    const answer = answers.shift() ?? fallback;
    if (answer === 'hang') return;
    const send = () => {
      const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(text);
    };
    if (answer.delayMs) setTimeout(send, answer.delayMs);
    else send();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const watchers: LeaseWatcher[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
  seen.length = 0;
  answers = [];
  fallback = { status: 500, body: { error: { code: 'NO_ANSWER_SCRIPTED' } } };
});

function watch(overrides: Partial<LeaseWatcherOptions> = {}) {
  const clock = { ms: T0 };
  const errors: LeaseError[] = [];
  const watcher = createLeaseWatcher({
    url: base,
    token: TOKEN,
    now: () => clock.ms,
    onError: (e) => errors.push(e as LeaseError),
    ...overrides,
  });
  watchers.push(watcher);
  return { watcher, clock, errors };
}

const lease = (expiresAtMs: number, extra: Record<string, unknown> = {}) => ({
  status: 200,
  body: {
    name: 'observer',
    holder: 'observer-7f3a',
    expiresAt: iso(expiresAtMs),
    renewedAt: iso(expiresAtMs - 3000),
    ...extra,
  },
});
const notFound = {
  status: 404,
  body: { error: { code: 'AUDIT_LEASE_NOT_FOUND', message: 'no lease named observer' } },
};

describe('createLeaseWatcher', () => {
  it('fetches the lease with the bearer token; valid while it expires after now()', async () => {
    const { watcher, clock, errors } = watch();
    expect(watcher.status()).toEqual(NO_OBSERVER_LEASE);
    answers = [lease(T0 + 3000)];
    await expect(watcher.poll()).resolves.toEqual({
      valid: true,
      expiresAt: '2026-03-01T12:00:03.000Z',
      holder: 'observer-7f3a',
      checkedAt: '2026-03-01T12:00:00.000Z',
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: 'GET',
      url: '/v1/leases/observer',
      headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/json' },
    });
    clock.ms = T0 + 2999;
    expect(watcher.status().valid).toBe(true);
    clock.ms = T0 + 3000; // expiry is exclusive
    expect(watcher.status()).toMatchObject({ valid: false, expiresAt: '2026-03-01T12:00:03.000Z' });
    expect(errors).toEqual([]);
  });

  it('an expired lease is not valid; an offset timestamp is normalised to UTC', async () => {
    const { watcher } = watch();
    answers = [lease(T0 - 1, { expiresAt: '2026-03-01T13:59:59.999+02:00' })];
    await expect(watcher.poll()).resolves.toEqual({
      valid: false,
      expiresAt: '2026-03-01T11:59:59.999Z',
      holder: 'observer-7f3a',
      checkedAt: '2026-03-01T12:00:00.000Z',
    });
  });

  it('404 AUDIT_LEASE_NOT_FOUND ends a known lease at once', async () => {
    const { watcher, clock, errors } = watch();
    answers = [lease(T0 + 10_000), notFound];
    expect((await watcher.poll()).valid).toBe(true);
    clock.ms = T0 + 1000;
    await expect(watcher.poll()).resolves.toEqual({
      valid: false,
      expiresAt: null,
      holder: null,
      checkedAt: '2026-03-01T12:00:01.000Z',
    });
    expect(errors).toEqual([]);
  });

  it('500 keeps the last known expiry, so the lease lapses by itself on the clock', async () => {
    const { watcher, clock, errors } = watch();
    answers = [lease(T0 + 3000), { status: 500, body: { error: { code: 'AUDIT_INTERNAL' } } }];
    await watcher.poll();
    clock.ms = T0 + 1000;
    await expect(watcher.poll()).resolves.toEqual({
      valid: true,
      expiresAt: '2026-03-01T12:00:03.000Z',
      holder: 'observer-7f3a',
      checkedAt: '2026-03-01T12:00:00.000Z', // the last answer, not the failed poll
    });
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['LEASE_HTTP_ERROR', `the aggregator answered 500 for ${base}/v1/leases/observer`],
    ]);
    clock.ms = T0 + 3001;
    expect(watcher.status().valid).toBe(false);
  });

  it('a 404 that is not AUDIT_LEASE_NOT_FOUND (a wrong URL) is a failure, not "no lease"', async () => {
    const { watcher, errors } = watch();
    answers = [lease(T0 + 3000), { status: 404, body: '<html>Not Found</html>' }];
    await watcher.poll();
    expect((await watcher.poll()).valid).toBe(true);
    expect(errors.map((e) => e.code)).toEqual(['LEASE_HTTP_ERROR']);
  });

  it('connection refused keeps the last expiry, then lapses', async () => {
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const port = (dead.address() as AddressInfo).port;
    await new Promise((resolve) => dead.close(resolve));
    // the same watcher first sees the live server, then a port nobody listens on
    let target = base;
    const { watcher, clock, errors } = watch({
      fetch: (input, init) => fetch(String(input).replace(base, target), init),
    });
    answers = [lease(T0 + 2000)];
    await watcher.poll();
    target = `http://127.0.0.1:${port}`;
    clock.ms = T0 + 1500;
    expect(await watcher.poll()).toMatchObject({ valid: true, expiresAt: '2026-03-01T12:00:02.000Z' });
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['LEASE_UNREACHABLE', `the aggregator could not be reached (${base}/v1/leases/observer)`],
    ]);
    expect((errors[0]?.cause as Error).message).toBe('fetch failed');
    clock.ms = T0 + 2000;
    expect(watcher.status().valid).toBe(false);
  });

  it('an aggregator that does not answer in time is unreachable', async () => {
    const { watcher, errors } = watch({ timeoutMs: 100 });
    answers = ['hang'];
    await expect(watcher.poll()).resolves.toEqual(NO_OBSERVER_LEASE);
    expect(errors.map((e) => e.message)).toEqual([
      `the aggregator did not answer within 100 ms (${base}/v1/leases/observer)`,
    ]);
  });

  it('refuses answers that are not the lease asked for, and keeps the last one', async () => {
    const { watcher, errors } = watch();
    answers = [
      lease(T0 + 5000),
      { status: 200, body: 'not json' },
      lease(T0 + 9000, { name: 'someone-else' }),
      lease(T0 + 9000, { expiresAt: 'tomorrow' }),
      { status: 200, body: { name: 'observer' } },
      { status: 200, body: 'x'.repeat(70_000) },
    ];
    for (let i = 0; i < 6; i += 1) await watcher.poll();
    expect(watcher.status()).toMatchObject({ valid: true, expiresAt: '2026-03-01T12:00:05.000Z' });
    expect(errors.map((e) => e.message)).toMatchInlineSnapshot(`
      [
        "the aggregator's answer is not a lease: (root): Invalid input: expected object, received undefined",
        "the aggregator answered lease "someone-else", not "observer"",
        "the aggregator's answer is not a lease: expiresAt: Invalid ISO datetime",
        "the aggregator's answer is not a lease: holder: Invalid input: expected string, received undefined; expiresAt: Invalid input: expected string, received undefined; renewedAt: Invalid input: expected string, received undefined",
        "the aggregator's answer is not a lease: (root): Invalid input: expected object, received undefined",
      ]
    `);
    expect(errors.every((e) => e instanceof LeaseError && e.code === 'LEASE_RESPONSE_INVALID')).toBe(true);
  });

  it('keeps a path prefix and polls the named lease', async () => {
    const { watcher } = watch({ url: `${base}/aggregator/`, name: 'observer.eu-1' });
    answers = [lease(T0 + 1000, { name: 'observer.eu-1' })];
    expect((await watcher.poll()).valid).toBe(true);
    expect(seen.map((s) => s.url)).toEqual(['/aggregator/v1/leases/observer.eu-1']);
  });

  it('an older poll answering late does not overwrite a newer answer', async () => {
    const { watcher } = watch();
    answers = [{ ...lease(T0 + 1000), delayMs: 150 }, lease(T0 + 8000)];
    const slow = watcher.poll();
    await new Promise((r) => setTimeout(r, 30));
    await watcher.poll();
    await slow;
    expect(watcher.status().expiresAt).toBe('2026-03-01T12:00:08.000Z');
  });

  it('start() polls at once and every pollMs; close() stops and aborts the poll in flight', async () => {
    const { watcher, errors } = watch({ pollMs: 20 });
    fallback = lease(T0 + 60_000);
    await watcher.start();
    expect(seen).toHaveLength(1);
    expect(watcher.status().valid).toBe(true);
    await expect.poll(() => seen.length, { timeout: 2000 }).toBeGreaterThanOrEqual(4);
    fallback = 'hang';
    await expect.poll(() => seen.length, { timeout: 2000 }).toBeGreaterThanOrEqual(5);
    watcher.close();
    watcher.close();
    const count = seen.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.length).toBe(count);
    expect(errors).toEqual([]); // the aborted poll is not reported
    await expect(watcher.poll()).resolves.toMatchObject({ valid: true });
    expect(seen.length).toBe(count);
  });

  it('a throwing onError does not stop the polling', async () => {
    const { watcher } = watch({
      pollMs: 20,
      onError: () => {
        throw new Error('handler broke');
      },
    });
    await watcher.start();
    await expect.poll(() => seen.length, { timeout: 2000 }).toBeGreaterThanOrEqual(3);
  });

  it('refuses invalid options', () => {
    const refuse = (options: Partial<LeaseWatcherOptions>) => {
      try {
        createLeaseWatcher({ url: base, token: TOKEN, ...options });
        return 'accepted';
      } catch (error) {
        return `${(error as LeaseError).code}: ${(error as Error).message}`;
      }
    };
    expect([
      refuse({ url: 'ftp://127.0.0.1/' }),
      refuse({ url: 'not a url' }),
      refuse({ url: 'http://user:pw@127.0.0.1/' }),
      refuse({ url: `${base}/?x=1` }),
      refuse({ token: '' }),
      refuse({ token: 'with space' }),
      refuse({ name: '../admin' }),
      refuse({ pollMs: 0 }),
      refuse({ pollMs: 1.5 }),
      refuse({ timeoutMs: -1 }),
    ]).toMatchInlineSnapshot(`
      [
        "LEASE_CONFIG_INVALID: lease watcher options: url: expected an http(s) URL",
        "LEASE_CONFIG_INVALID: lease watcher options: url: expected an http(s) URL",
        "LEASE_CONFIG_INVALID: lease watcher options: url: expected a URL without credentials, query or fragment",
        "LEASE_CONFIG_INVALID: lease watcher options: url: expected a URL without credentials, query or fragment",
        "LEASE_CONFIG_INVALID: lease watcher options: token: expected 1-4096 visible ASCII characters",
        "LEASE_CONFIG_INVALID: lease watcher options: token: expected 1-4096 visible ASCII characters",
        "LEASE_CONFIG_INVALID: lease watcher options: name: expected 1-128 of A-Z a-z 0-9 . _ -",
        "LEASE_CONFIG_INVALID: lease watcher options: pollMs: expected an integer from 10 to 3600000",
        "LEASE_CONFIG_INVALID: lease watcher options: pollMs: expected an integer from 10 to 3600000",
        "LEASE_CONFIG_INVALID: lease watcher options: timeoutMs: expected an integer from 1 to 600000",
      ]
    `);
  });
});

describe('lease sources and the activity', () => {
  it('staticLeaseSource answers a frozen copy; leaseActivities answers the source', async () => {
    const status = { valid: true, expiresAt: iso(T0), holder: 'h', checkedAt: iso(T0) };
    const source = staticLeaseSource(status);
    status.valid = false;
    expect(source.status()).toMatchObject({ valid: true });
    expect(Object.isFrozen(source.status())).toBe(true);
    let current = NO_OBSERVER_LEASE;
    const { observerLease } = leaseActivities({ status: () => current });
    await expect(observerLease()).resolves.toEqual(NO_OBSERVER_LEASE);
    current = source.status();
    await expect(observerLease()).resolves.toMatchObject({ valid: true, holder: 'h' });
  });
});
