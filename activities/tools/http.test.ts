import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, afterEach, describe, expect, it, vi } from 'vitest';
import { httpRequest } from '../../tools/builtin-specs.ts';
import { createToolRegistry } from './define.ts';
import { blockedReason, httpTool, parseIp } from './http.ts';
import type { ToolResult } from './define.ts';
import type { HttpLookup, HttpRequestArgs, HttpRequestOutput } from './http.ts';

// Every server listens on 127.0.0.1 (or 127.0.0.2) on an ephemeral port; public addresses only ever appear
// in injected lookup answers, and the tests that use them stub socket creation so nothing leaves the host.

interface TestServer {
  readonly port: number;
  readonly hits: http.IncomingMessage[];
  readonly url: (path?: string) => string;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void,
  options: { host?: string; port?: number } = {},
): Promise<TestServer> {
  const host = options.host ?? '127.0.0.1';
  const hits: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { port, hits, url: (path = '/') => `http://${host}:${port}${path}` };
}

/** Echoes the request as JSON. */
const echo = (req: http.IncomingMessage, res: http.ServerResponse, body: string): void => {
  res.setHeader('content-type', 'application/json');
  res.setHeader('set-cookie', 'session=secret');
  res.setHeader('x-internal-debug', 'leak');
  res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }));
};

const LOCAL = { allowedHosts: ['127.0.0.1'], allowPrivateAddresses: ['127.0.0.1/32'] } as const;
const ctx = { idempotencyKey: 'run-1/step-3' };

function get(url: string, extra: Partial<HttpRequestArgs> = {}): HttpRequestArgs {
  return { method: 'GET', url, ...extra };
}

function output(result: ToolResult): HttpRequestOutput {
  if (!result.ok) throw new Error(`expected success, got ${result.code}: ${result.message}`);
  return result.output as HttpRequestOutput;
}

function echoed(result: ToolResult): {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
} {
  return JSON.parse(output(result).body) as ReturnType<typeof echoed>;
}

/** A lookup answering from a table, counting calls. */
function fakeDns(table: Record<string, string | string[]>): HttpLookup & { calls: string[] } {
  const calls: string[] = [];
  const lookup = async (hostname: string) => {
    calls.push(hostname);
    const answer = table[hostname];
    if (answer === undefined) throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return (Array.isArray(answer) ? answer : [answer]).map((address) => ({
      address,
      family: address.includes(':') ? 6 : 4,
    }));
  };
  return Object.assign(lookup, { calls });
}

/** Spies on socket creation by the http agents (the tool uses a fresh `http.Agent` per hop). */
function spyConnections() {
  return vi.spyOn(http.Agent.prototype, 'createConnection');
}

describe('http.request: happy paths on 127.0.0.1', () => {
  it('GETs, returns a safe subset of headers, the UTF-8 body and the final URL', async () => {
    const server = await serve(echo);
    const tool = httpTool(LOCAL);
    expect(tool.spec).toBe(httpRequest);
    const result = await tool.execute(get(server.url('/things?x=1#frag')), ctx);
    const out = output(result);
    expect(out.status).toBe(200);
    expect(out.truncated).toBe(false);
    expect(out.finalUrl).toBe(server.url('/things?x=1'));
    expect(out.redirects).toEqual([]);
    expect(Object.keys(out.headers).sort()).toEqual(['content-length', 'content-type', 'date']);
    const seen = echoed(result);
    expect(seen.url).toBe('/things?x=1');
    expect(seen.headers.host).toBe(`127.0.0.1:${server.port}`);
    expect(seen.headers['accept-encoding']).toBe('identity');
    expect(seen.headers['idempotency-key']).toBeUndefined();
  });

  it('sends Idempotency-Key on POST (replacing a caller-supplied one), with the body', async () => {
    const server = await serve(echo);
    const tool = httpTool(LOCAL);
    const seen = echoed(
      await tool.execute(
        {
          method: 'POST',
          url: server.url('/orders'),
          headers: { 'Content-Type': 'application/json', 'Idempotency-Key': 'forged' },
          body: '{"qty":1,"note":"é"}',
        },
        ctx,
      ),
    );
    expect(seen.method).toBe('POST');
    expect(seen.headers['idempotency-key']).toBe('run-1/step-3');
    expect(seen.headers['content-type']).toBe('application/json');
    expect(seen.headers['content-length']).toBe(String(Buffer.byteLength('{"qty":1,"note":"é"}')));
    expect(seen.body).toBe('{"qty":1,"note":"é"}');
  });

  it.each(['PUT', 'PATCH', 'DELETE'] as const)('sends Idempotency-Key on %s', async (method) => {
    const server = await serve(echo);
    const seen = echoed(await httpTool(LOCAL).execute({ method, url: server.url() }, ctx));
    expect(seen.headers['idempotency-key']).toBe('run-1/step-3');
  });

  it('resolves names through the lookup and keeps the name in Host', async () => {
    const server = await serve(echo);
    const lookup = fakeDns({ 'api.acme.test': '127.0.0.1' });
    const tool = httpTool({
      allowedHosts: ['*.acme.test'],
      allowPrivateAddresses: ['127.0.0.1/32'],
      lookup,
    });
    const seen = echoed(await tool.execute(get(`http://API.Acme.Test.:${server.port}/`), ctx));
    expect(seen.headers.host).toBe(`api.acme.test:${server.port}`);
    expect(lookup.calls).toEqual(['api.acme.test']);
  });

  it('follows redirects: 303 turns POST into GET without body, 307 keeps both', async () => {
    const server = await serve((req, res, body) => {
      if (req.url === '/see-other') res.writeHead(303, { location: '/echo' }).end();
      else if (req.url === '/temporary') res.writeHead(307, { location: '/echo' }).end();
      else echo(req, res, body);
    });
    const tool = httpTool(LOCAL);
    const post = (path: string) =>
      tool.execute(
        { method: 'POST', url: server.url(path), headers: { 'content-type': 'text/plain' }, body: 'hi' },
        ctx,
      );

    const seeOther = await post('/see-other');
    expect(echoed(seeOther)).toMatchObject({ method: 'GET', body: '' });
    expect(echoed(seeOther).headers['content-type']).toBeUndefined();
    expect(echoed(seeOther).headers['idempotency-key']).toBeUndefined();
    expect(output(seeOther).redirects).toEqual([server.url('/echo')]);
    expect(output(seeOther).finalUrl).toBe(server.url('/echo'));

    const temporary = await post('/temporary');
    expect(echoed(temporary)).toMatchObject({ method: 'POST', body: 'hi' });
    expect(echoed(temporary).headers['idempotency-key']).toBe('run-1/step-3');
  });

  it('drops Authorization and Cookie on a cross-origin redirect', async () => {
    const target = await serve(echo);
    const origin = await serve((_req, res) => res.writeHead(302, { location: target.url('/x') }).end());
    const tool = httpTool(LOCAL);
    const seen = echoed(
      await tool.execute(
        get(origin.url(), { headers: { Authorization: 'Bearer t', Cookie: 'a=b', 'X-Ok': '1' } }),
        ctx,
      ),
    );
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers.cookie).toBeUndefined();
    expect(seen.headers['x-ok']).toBe('1');
  });
});

describe('http.request: hostile cases', () => {
  it('refuses a host that is not on the allow-list, before resolving or connecting', async () => {
    const lookup = fakeDns({ 'evil.test': '127.0.0.1' });
    const connections = spyConnections();
    const tool = httpTool({ allowedHosts: ['api.acme.test', '*.acme.test'], lookup });
    expect(await tool.execute(get('http://evil.test/'), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_HOST_NOT_ALLOWED",
        "message": "host "evil.test" is not on the allow-list",
        "ok": false,
      }
    `);
    // the wildcard is one label deep, and does not cover the bare domain
    for (const url of ['http://a.b.acme.test/', 'http://acme.test/', 'http://acme.test.evil.test/']) {
      expect(await tool.execute(get(url), ctx)).toMatchObject({ ok: false, code: 'HTTP_HOST_NOT_ALLOWED' });
    }
    expect(lookup.calls).toEqual([]);
    expect(connections).not.toHaveBeenCalled();
  });

  it('refuses an allowed name whose DNS answer is loopback (no allowance), without connecting', async () => {
    const server = await serve(echo);
    const connections = spyConnections();
    const tool = httpTool({
      allowedHosts: ['api.acme.test'],
      lookup: fakeDns({ 'api.acme.test': '127.0.0.1' }),
    });
    expect(await tool.execute(get(`http://api.acme.test:${server.port}/`), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_ADDRESS_BLOCKED",
        "detail": "host "api.acme.test" resolves to 127.0.0.1, which is not allowed (loopback)",
        "message": "host "api.acme.test" resolves to an address that is not allowed",
        "ok": false,
      }
    `);
    expect(connections).not.toHaveBeenCalled();
    expect(server.hits).toHaveLength(0);
  });

  it('refuses when ANY resolved address is blocked (public + private answer)', async () => {
    const connections = spyConnections();
    const tool = httpTool({
      allowedHosts: ['api.acme.test'],
      lookup: fakeDns({ 'api.acme.test': ['93.184.216.34', '10.0.0.7'] }),
    });
    expect(await tool.execute(get('http://api.acme.test/'), ctx)).toMatchObject({
      ok: false,
      code: 'HTTP_ADDRESS_BLOCKED',
    });
    expect(connections).not.toHaveBeenCalled();
  });

  it('refuses the cloud metadata address 169.254.169.254, literal or resolved', async () => {
    const connections = spyConnections();
    const tool = httpTool({
      allowedHosts: ['169.254.169.254', 'metadata.acme.test'],
      allowPrivateAddresses: ['127.0.0.1/32'],
      lookup: fakeDns({ 'metadata.acme.test': '169.254.169.254' }),
    });
    expect(await tool.execute(get('http://169.254.169.254/latest/meta-data/'), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_ADDRESS_BLOCKED",
        "detail": "address 169.254.169.254 is not allowed (link-local)",
        "message": "the IP address in the URL is not allowed (link-local)",
        "ok": false,
      }
    `);
    expect(await tool.execute(get('http://metadata.acme.test/'), ctx)).toMatchObject({
      ok: false,
      code: 'HTTP_ADDRESS_BLOCKED',
    });
    expect(connections).not.toHaveBeenCalled();
  });

  it('refuses IPv4-mapped IPv6 loopback (::ffff:127.0.0.1), literal or resolved', async () => {
    const server = await serve(echo);
    const connections = spyConnections();
    const tool = httpTool({
      allowedHosts: ['[::ffff:127.0.0.1]', 'mapped.acme.test'],
      lookup: fakeDns({ 'mapped.acme.test': '::ffff:127.0.0.1' }),
    });
    expect(await tool.execute(get(`http://[::ffff:127.0.0.1]:${server.port}/`), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_ADDRESS_BLOCKED",
        "detail": "address ::ffff:7f00:1 is not allowed (IPv4-mapped loopback)",
        "message": "the IP address in the URL is not allowed (IPv4-mapped loopback)",
        "ok": false,
      }
    `);
    expect(await tool.execute(get(`http://mapped.acme.test:${server.port}/`), ctx)).toMatchObject({
      ok: false,
      code: 'HTTP_ADDRESS_BLOCKED',
    });
    expect(connections).not.toHaveBeenCalled();
    expect(server.hits).toHaveLength(0);
  });

  it('normalises decimal, octal and hex IP hosts to 127.0.0.1 and refuses them', async () => {
    const server = await serve(echo);
    const connections = spyConnections();
    const tool = httpTool({ allowedHosts: ['127.0.0.1'] });
    expect(await tool.execute(get(`http://2130706433:${server.port}/`), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_ADDRESS_BLOCKED",
        "detail": "address 127.0.0.1 is not allowed (loopback)",
        "message": "the IP address in the URL is not allowed (loopback)",
        "ok": false,
      }
    `);
    for (const host of ['0x7f.1', '0177.0.0.1', '0x7f000001', '127.1']) {
      expect(await tool.execute(get(`http://${host}:${server.port}/`), ctx)).toMatchObject({
        ok: false,
        code: 'HTTP_ADDRESS_BLOCKED',
      });
    }
    expect(connections).not.toHaveBeenCalled();
    expect(server.hits).toHaveLength(0);
    // the parser really reads it as 127.0.0.1: with the allowance the request reaches the server
    const allowed = httpTool(LOCAL);
    expect(output(await allowed.execute(get(`http://2130706433:${server.port}/`), ctx)).finalUrl).toBe(
      server.url('/'),
    );
  });

  it('refuses a redirect from an allowed server to a host not on the allow-list', async () => {
    const server = await serve((_req, res) =>
      res.writeHead(302, { location: 'http://evil.test/steal' }).end(),
    );
    const lookup = fakeDns({ 'evil.test': '127.0.0.1' });
    const tool = httpTool({ ...LOCAL, lookup });
    expect(await tool.execute(get(server.url()), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_HOST_NOT_ALLOWED",
        "message": "host "evil.test" is not on the allow-list",
        "ok": false,
      }
    `);
    expect(lookup.calls).toEqual([]);
    expect(server.hits).toHaveLength(1);
  });

  it('re-checks every hop: a redirect to 127.0.0.1 is refused when only another loopback host is allowed', async () => {
    const admin = await serve(echo); // the "internal admin" service on another port
    const api = await serve((_req, res) => res.writeHead(302, { location: admin.url('/admin') }).end());
    const lookup = fakeDns({ 'api.acme.test': '127.0.0.1', 'admin.acme.test': '127.0.0.1' });

    // the literal address is not an allowed host
    const byAddress = httpTool({
      allowedHosts: ['api.acme.test'],
      allowPrivateAddresses: ['api.acme.test'],
      lookup,
    });
    expect(await byAddress.execute(get(`http://api.acme.test:${api.port}/`), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_HOST_NOT_ALLOWED",
        "message": "host "127.0.0.1" is not on the allow-list",
        "ok": false,
      }
    `);

    // an allowed name that resolves to loopback is re-checked on its own hop: the allowance is for api only
    const api2 = await serve((_req, res) =>
      res.writeHead(301, { location: `http://admin.acme.test:${admin.port}/admin` }).end(),
    );
    const byName = httpTool({
      allowedHosts: ['*.acme.test'],
      allowPrivateAddresses: ['api.acme.test'],
      lookup,
    });
    expect(await byName.execute(get(`http://api.acme.test:${api2.port}/`), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_ADDRESS_BLOCKED",
        "detail": "host "admin.acme.test" resolves to 127.0.0.1, which is not allowed (loopback)",
        "message": "host "admin.acme.test" resolves to an address that is not allowed",
        "ok": false,
      }
    `);
    expect(api.hits).toHaveLength(1);
    expect(api2.hits).toHaveLength(1);
    expect(admin.hits).toHaveLength(0);
  });

  it('stops a redirect loop after maxRedirects', async () => {
    const server = await serve((_req, res) => res.writeHead(302, { location: '/loop' }).end());
    const tool = httpTool({ ...LOCAL, maxRedirects: 3 });
    expect(await tool.execute(get(server.url('/loop')), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_TOO_MANY_REDIRECTS",
        "message": "too many redirects (more than 3)",
        "ok": false,
      }
    `);
    expect(server.hits).toHaveLength(4);
  });

  it('pins the checked address: a second, different DNS answer is never used (DNS rebinding)', async () => {
    const checked = await serve(echo, { host: '127.0.0.1' });
    // a second server on the same port of another loopback address, which the rebinding answer points at
    const rebound = await serve((_req, res) => res.end('rebound'), { host: '127.0.0.2', port: checked.port });
    let calls = 0;
    const lookup: HttpLookup = async () => [
      { address: ++calls === 1 ? '127.0.0.1' : '127.0.0.2', family: 4 },
    ];
    const tool = httpTool({
      allowedHosts: ['rebind.acme.test'],
      allowPrivateAddresses: ['127.0.0.1/32'],
      lookup,
    });
    const connections = spyConnections();
    const result = await tool.execute(get(`http://rebind.acme.test:${checked.port}/`), ctx);
    expect(connections).toHaveBeenCalledTimes(1); // the spy the "no connection" assertions rely on works
    expect(echoed(result).headers.host).toBe(`rebind.acme.test:${checked.port}`);
    expect(calls).toBe(1);
    expect(checked.hits).toHaveLength(1);
    expect(rebound.hits).toHaveLength(0);
  });

  it('pins the checked address even when the rebinding answer would be loopback (socket creation stubbed)', async () => {
    const connections = spyConnections().mockImplementation(function (this: http.Agent, options) {
      const socket = new Socket();
      const lookup = (options as { lookup?: (...args: unknown[]) => void }).lookup;
      // ask the socket's lookup what it would connect to, then fail without connecting
      lookup?.('rebind.acme.test', { all: true }, (_err: unknown, addresses: unknown) => {
        answers.push(addresses);
      });
      process.nextTick(() => socket.destroy(Object.assign(new Error('stubbed'), { code: 'ESTUBBED' })));
      return socket;
    });
    const answers: unknown[] = [];
    let calls = 0;
    const lookup: HttpLookup = async () => [
      { address: ++calls === 1 ? '93.184.216.34' : '127.0.0.1', family: 4 },
    ];
    const tool = httpTool({ allowedHosts: ['rebind.acme.test'], lookup });
    expect(await tool.execute(get('http://rebind.acme.test/'), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_CONNECTION_FAILED",
        "detail": "Error: stubbed",
        "message": "the request failed (ESTUBBED)",
        "ok": false,
      }
    `);
    expect(connections).toHaveBeenCalledTimes(1);
    expect(connections.mock.calls[0]?.[0]).toMatchObject({ host: 'rebind.acme.test' });
    expect(answers).toEqual([[{ address: '93.184.216.34', family: 4 }]]);
    expect(calls).toBe(1);
  });

  it('aborts an oversized body (streamed, and declared by Content-Length)', async () => {
    let streaming: NodeJS.Timeout | undefined;
    const server = await serve((req, res) => {
      if (req.url === '/declared') {
        res.writeHead(200, { 'content-length': '4096' }).end('x'.repeat(4096));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      streaming = setInterval(() => res.write('y'.repeat(512)), 1);
      res.on('close', () => clearInterval(streaming));
    });
    cleanups.push(() => clearInterval(streaming));
    const tool = httpTool({ ...LOCAL, maxResponseBytes: 1024 });
    expect(await tool.execute(get(server.url('/endless')), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_RESPONSE_TOO_LARGE",
        "message": "response body exceeds 1024 bytes",
        "ok": false,
      }
    `);
    expect(await tool.execute(get(server.url('/declared')), ctx)).toMatchObject({
      ok: false,
      code: 'HTTP_RESPONSE_TOO_LARGE',
    });
    // HEAD announces the length of a body it does not send
    expect(output(await tool.execute({ method: 'HEAD', url: server.url('/declared') }, ctx))).toMatchObject({
      status: 200,
      body: '',
    });
  });

  it('times out on a slow server', async () => {
    const server = await serve(() => {
      /* never answers */
    });
    const tool = httpTool({ ...LOCAL, timeoutMs: 200 });
    expect(await tool.execute(get(server.url()), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_TIMEOUT",
        "message": "request timed out after 200 ms",
        "ok": false,
      }
    `);
  });

  it('times out on a hanging DNS lookup', async () => {
    const tool = httpTool({
      allowedHosts: ['slow.acme.test'],
      timeoutMs: 100,
      lookup: () => new Promise(() => {}),
    });
    expect(await tool.execute(get('http://slow.acme.test/'), ctx)).toMatchObject({
      ok: false,
      code: 'HTTP_TIMEOUT',
    });
  });

  it("honours the caller's AbortSignal", async () => {
    const server = await serve(() => {
      /* never answers */
    });
    const tool = httpTool(LOCAL);
    const controller = new AbortController();
    const pending = tool.execute(get(server.url()), { ...ctx, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    expect(await pending).toMatchInlineSnapshot(`
      {
        "code": "HTTP_ABORTED",
        "message": "request was cancelled",
        "ok": false,
      }
    `);
  });

  it('refuses a caller-supplied Host header (and Connection, Proxy-*, Transfer-Encoding)', async () => {
    const server = await serve(echo);
    const tool = httpTool(LOCAL);
    expect(await tool.execute(get(server.url(), { headers: { Host: 'internal.acme.test' } }), ctx))
      .toMatchInlineSnapshot(`
        {
          "code": "HTTP_HEADER_NOT_ALLOWED",
          "message": "header "Host" may not be set",
          "ok": false,
        }
      `);
    for (const name of ['connection', 'Proxy-Authorization', 'proxy-connection', 'Transfer-Encoding']) {
      expect(await tool.execute(get(server.url(), { headers: { [name]: 'x' } }), ctx)).toMatchObject({
        ok: false,
        code: 'HTTP_HEADER_NOT_ALLOWED',
      });
    }
    expect(await tool.execute(get(server.url(), { headers: { 'X-A': 'v\r\nX-Injected: 1' } }), ctx))
      .toMatchInlineSnapshot(`
        {
          "code": "HTTP_HEADER_INVALID",
          "message": "header "X-A" has an invalid name or value",
          "ok": false,
        }
      `);
    expect(server.hits).toHaveLength(0);
  });

  it('refuses non-http schemes and credentials in the URL, also in a redirect', async () => {
    const server = await serve((_req, res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
    const tool = httpTool(LOCAL);
    expect(await tool.execute(get(server.url()), ctx)).toMatchInlineSnapshot(`
      {
        "code": "HTTP_URL_INVALID",
        "message": "scheme "file:" is not allowed; use http or https",
        "ok": false,
      }
    `);
    expect(await tool.execute(get(`http://user:pw@127.0.0.1:${server.port}/`), ctx)).toMatchObject({
      ok: false,
      code: 'HTTP_URL_INVALID',
    });
  });
});

describe('http.request: through the registry', () => {
  it('validates arguments once, in the registry: invalid arguments never reach the server', async () => {
    const server = await serve(echo);
    const tool = httpTool(LOCAL);
    expect(tool.spec).toBe(httpRequest);
    const registry = createToolRegistry([tool]);
    for (const args of [
      { method: 'TRACE', url: server.url() },
      { method: 'GET', url: `file:///etc/passwd` },
      { method: 'GET', url: server.url(), extra: true },
      { method: 'GET', url: server.url(), headers: { a: 1 } },
    ]) {
      await expect(registry.execute('http.request', args, ctx), JSON.stringify(args)).rejects.toMatchObject({
        code: 'TOOL_INVALID_ARGUMENTS',
      });
    }
    expect(server.hits).toHaveLength(0);
    expect(output(await registry.execute('http.request', get(server.url()), ctx)).status).toBe(200);
    expect(server.hits).toHaveLength(1);
  });
});

const IPV4 = /\b\d{1,3}(?:\.\d{1,3}){3}\b/;
const IPV6 = /[0-9a-f]{0,4}:[0-9a-f]{0,4}:[0-9a-f:.]*/i;

describe('http.request: refusal messages are safe for the model', () => {
  it.each([
    ['10.0.0.7', 'private'],
    ['fd00::1', 'unique local (private)'],
    ['169.254.169.254', 'link-local'],
  ])('a name resolving to %s: message names no address, detail does', async (address, reason) => {
    const tool = httpTool({
      allowedHosts: ['internal.acme.test'],
      lookup: fakeDns({ 'internal.acme.test': ['93.184.216.34', address] }),
    });
    const result = await tool.execute(get('http://internal.acme.test/'), ctx);
    if (result.ok) throw new Error('expected a refusal');
    expect(result.code).toBe('HTTP_ADDRESS_BLOCKED');
    expect(result.message).toBe('host "internal.acme.test" resolves to an address that is not allowed');
    expect(result.message).not.toMatch(IPV4);
    expect(result.message).not.toMatch(IPV6);
    expect(result.message).not.toContain(reason); // the range would describe the internal network too
    expect(result.detail).toContain(address);
    expect(result.detail).toContain(reason);
  });

  it('a literal host the URL parser normalised is not echoed back as an address', async () => {
    const tool = httpTool({ allowedHosts: ['127.0.0.1'] });
    const result = await tool.execute(get('http://2130706433/'), ctx);
    if (result.ok) throw new Error('expected a refusal');
    expect(result.code).toBe('HTTP_ADDRESS_BLOCKED');
    expect(result.message).not.toMatch(IPV4);
    expect(result.detail).toContain('127.0.0.1');
  });

  it('a refused connection names its error code but not the address in the message', async () => {
    // a port that was just free: nothing listens on it
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const result = await httpTool(LOCAL).execute(get(`http://127.0.0.1:${port}/`), ctx);
    expect(result).toMatchObject({
      ok: false,
      code: 'HTTP_CONNECTION_FAILED',
      message: 'the request failed (ECONNREFUSED)',
    });
    if (result.ok) return;
    expect(result.message).not.toMatch(IPV4);
    expect(result.detail).toContain(`127.0.0.1:${port}`);
  });
});

const opensslMissing = spawnSync('openssl', ['version']).error !== undefined;

describe.skipIf(opensslMissing)(
  opensslMissing ? 'http.request over HTTPS (SKIPPED: openssl not found on PATH)' : 'http.request over HTTPS',
  () => {
    let dir = '';
    let cert = '';
    let key = '';
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'http-tool-tls-'));
      const made = spawnSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=DNS:localhost,IP:127.0.0.1',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        { encoding: 'utf8' },
      );
      if (made.status !== 0) throw new Error(`openssl failed: ${made.stderr}`);
      cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
      key = readFileSync(join(dir, 'key.pem'), 'utf8');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    async function serveTls(): Promise<{
      port: number;
      hits: http.IncomingMessage[];
      servernames: (string | false | null)[];
    }> {
      const hits: http.IncomingMessage[] = [];
      const servernames: (string | false | null)[] = [];
      const server = https.createServer({ key, cert }, (req, res) => {
        hits.push(req);
        servernames.push((req.socket as TLSSocket).servername);
        res.setHeader('content-type', 'text/plain');
        res.end(`secure ${req.method} ${req.url}`);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      cleanups.push(
        () =>
          new Promise<void>((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
          }),
      );
      return { port: (server.address() as AddressInfo).port, hits, servernames };
    }

    it('reaches a server whose certificate is trusted through `ca`, loopback allowed explicitly', async () => {
      const server = await serveTls();
      const tool = httpTool({ ...LOCAL, ca: cert });
      const out = output(await tool.execute(get(`https://127.0.0.1:${server.port}/x?y=1`), ctx));
      expect(out.status).toBe(200);
      expect(out.body).toBe('secure GET /x?y=1');
      expect(out.finalUrl).toBe(`https://127.0.0.1:${server.port}/x?y=1`);
      expect(server.hits).toHaveLength(1);
    });

    it('verifies against the host name, sent as SNI (lookup pinned to 127.0.0.1)', async () => {
      const server = await serveTls();
      const tool = httpTool({
        allowedHosts: ['localhost'],
        allowPrivateAddresses: ['127.0.0.1/32'],
        lookup: fakeDns({ localhost: '127.0.0.1' }),
        ca: Buffer.from(cert),
      });
      expect(output(await tool.execute(get(`https://localhost:${server.port}/`), ctx)).body).toBe(
        'secure GET /',
      );
      expect(server.servernames).toEqual(['localhost']);
    });

    it('refuses an untrusted certificate with HTTP_TLS_FAILED, sending no request', async () => {
      const server = await serveTls();
      const result = await httpTool(LOCAL).execute(get(`https://127.0.0.1:${server.port}/`), ctx);
      expect(result).toMatchObject({ ok: false, code: 'HTTP_TLS_FAILED' });
      if (result.ok) return;
      expect(result.message).toBe(
        "the server's TLS certificate was not accepted (DEPTH_ZERO_SELF_SIGNED_CERT)",
      );
      expect(result.message).not.toMatch(IPV4);
      expect(server.hits).toHaveLength(0);
    });

    it('refuses a trusted certificate that does not name the host', async () => {
      const server = await serveTls();
      const tool = httpTool({
        allowedHosts: ['api.acme.test'],
        allowPrivateAddresses: ['127.0.0.1/32'],
        lookup: fakeDns({ 'api.acme.test': '127.0.0.1' }),
        ca: cert,
      });
      const result = await tool.execute(get(`https://api.acme.test:${server.port}/`), ctx);
      expect(result).toMatchObject({
        ok: false,
        code: 'HTTP_TLS_FAILED',
        message: "the server's TLS certificate was not accepted (ERR_TLS_CERT_ALTNAME_INVALID)",
      });
      expect(server.hits).toHaveLength(0);
    });
  },
);

describe('address classification', () => {
  const reason = (address: string) => {
    const ip = parseIp(address);
    if (ip === undefined) throw new Error(`unparseable ${address}`);
    return blockedReason(ip);
  };

  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.31.0.1', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'unspecified/"this network"'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved/broadcast'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['fd00::1', 'unique local (private)'],
    ['fe80::1%eth0', 'link-local'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:7f00:1', 'IPv4-mapped loopback'],
    ['::ffff:a9fe:a9fe', 'IPv4-mapped link-local'],
    ['::127.0.0.1', 'IPv4-compatible loopback'],
    ['64:ff9b::7f00:1', 'NAT64 loopback'],
    ['64:ff9b::10.0.0.1', 'NAT64 private'],
    ['2002:7f00:1::', '6to4 loopback'],
    ['2002:a9fe:a9fe::1', '6to4 link-local'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'Teredo'],
  ])('blocks %s (%s)', (address, expected) => {
    expect(reason(address)).toBe(expected);
  });

  it.each([
    '93.184.216.34',
    '8.8.8.8',
    '172.32.0.1',
    '100.128.0.1',
    '2606:4700::1111',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ])('lets the public address %s through', (address) => {
    expect(reason(address)).toBeUndefined();
  });
});

describe('configuration', () => {
  it.each([
    [{ allowedHosts: ['*'] }],
    [{ allowedHosts: ['*.com'] }],
    [{ allowedHosts: ['a.*.acme.test'] }],
    [{ allowedHosts: ['http://acme.test/'] }],
    [{ allowedHosts: ['acme.test'], allowPrivateAddresses: ['10.0.0.0/33'] }],
    [{ allowedHosts: ['acme.test'], maxResponseBytes: 0 }],
    [{ allowedHosts: ['acme.test'], maxRedirects: -1 }],
    [{ allowedHosts: ['acme.test'], ca: 'not a certificate' }],
  ])('refuses %j', (config) => {
    expect(() => httpTool(config)).toThrow(expect.objectContaining({ code: 'HTTP_CONFIG_INVALID' }));
  });
});
