import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { afterEach, describe, expect, it } from 'vitest';
import { createToolRegistry } from '../../activities/tools/index.ts';
import type { ToolContext, ToolResult } from '../../activities/tools/index.ts';
import { compilePolicy, decide, parseGovernanceOrThrow, toolCatalog } from '../../policy/index.ts';
import { DEMO_ORDERS, startFakeBillingApi } from './fake-api.ts';
import type { FakeBillingApi, FakeBillingApiOptions } from './fake-api.ts';
import { BILLING_TOOL_SPECS, billingRefund, toolSpecs } from './spec.ts';
import { BillingUnavailableError, billingTools } from './tool.ts';
import type { BillingRefundOutput, BillingToolsConfig } from './tool.ts';

const API_KEY = 'sk_test_4f9a2c';
const ORDERS = {
  ord_usd0001: { chargedCents: 10_000, currency: 'USD' },
  ord_eur0001: { chargedCents: 50_000, currency: 'EUR' },
} as const;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeApi(options: Partial<FakeBillingApiOptions> = {}): Promise<FakeBillingApi> {
  const api = await startFakeBillingApi({ apiKey: API_KEY, orders: ORDERS, ...options });
  cleanups.push(() => api.close());
  return api;
}

/** A raw server answering every request with `status` and `body`. */
async function rawServer(status: number, body = '{}'): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((_req, res) => {
    hits++;
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits };
}

function registry(config: Partial<BillingToolsConfig> & { baseUrl: string }) {
  return createToolRegistry(billingTools({ apiKey: API_KEY, ...config }));
}

const refund = (more: Record<string, unknown> = {}) => ({
  orderId: 'ord_usd0001',
  amountCents: 2500,
  currency: 'USD',
  reason: 'Item arrived damaged',
  ...more,
});
const ctx = (idempotencyKey = 'run-1/step-4'): ToolContext => ({ idempotencyKey });

function output(result: ToolResult): BillingRefundOutput {
  if (!result.ok) throw new Error(`expected success, got ${result.code}: ${result.message}`);
  return result.output as BillingRefundOutput;
}

describe('billing.refund against the fake API', () => {
  it('refunds: POSTs with bearer auth and the idempotency key, returns the refund', async () => {
    const api = await fakeApi();
    const result = await registry({ baseUrl: api.url }).execute('billing.refund', refund(), ctx());
    const out = output(result);
    expect(Object.keys(out).sort()).toEqual(['amountCents', 'currency', 'orderId', 'refundId', 'status']);
    expect(out).toMatchObject({
      orderId: 'ord_usd0001',
      amountCents: 2500,
      currency: 'USD',
      status: 'succeeded',
    });
    expect(out.refundId).toMatch(/^re_[0-9a-f]{24}$/);
    expect(api.refunds()).toEqual([
      expect.objectContaining({
        refundId: out.refundId,
        orderId: 'ord_usd0001',
        amountCents: 2500,
        reason: 'Item arrived damaged',
        idempotencyKey: 'run-1/step-4',
      }),
    ]);
    expect(api.requests()).toBe(1);
  });

  it('a retry with the same key returns the same refund; the API stores exactly one', async () => {
    const api = await fakeApi();
    const tools = registry({ baseUrl: api.url });
    const first = await tools.execute('billing.refund', refund(), ctx('run-1/step-4'));
    const second = await tools.execute('billing.refund', refund(), ctx('run-1/step-4'));
    expect(second).toStrictEqual(first);
    expect(api.refunds()).toHaveLength(1);
    expect(api.requests()).toBe(2);
    // another step is another refund
    const third = await tools.execute('billing.refund', refund(), ctx('run-1/step-5'));
    expect(output(third).refundId).not.toBe(output(first).refundId);
    expect(api.refunds()).toHaveLength(2);
  });

  it('an attempt that timed out after the API stored the refund is retried into that same refund', async () => {
    const api = await fakeApi({ delayMs: 400 });
    const impatient = registry({ baseUrl: api.url, timeoutMs: 100 });
    const failed = impatient.execute('billing.refund', refund(), ctx('run-2/step-1'));
    await expect(failed).rejects.toBeInstanceOf(BillingUnavailableError);
    await expect(failed).rejects.toMatchObject({
      code: 'BILLING_UNAVAILABLE',
      message: 'the billing API did not answer within 100 ms',
    });
    expect(api.refunds()).toHaveLength(1); // the first attempt did refund
    const retried = await registry({ baseUrl: api.url, timeoutMs: 5000 }).execute(
      'billing.refund',
      refund(),
      ctx('run-2/step-1'),
    );
    expect(output(retried).refundId).toBe(api.refunds()[0]?.refundId);
    expect(api.refunds()).toHaveLength(1);
    expect(api.requests()).toBe(2);
  });

  it('refuses an over-refund with BILLING_AMOUNT_EXCEEDS_CHARGE, API text in detail only', async () => {
    const api = await fakeApi();
    const tools = registry({ baseUrl: api.url });
    output(await tools.execute('billing.refund', refund({ amountCents: 6000 }), ctx('r/1')));
    const result = await tools.execute('billing.refund', refund({ amountCents: 6000 }), ctx('r/2'));
    expect(result).toStrictEqual({
      ok: false,
      code: 'BILLING_AMOUNT_EXCEEDS_CHARGE',
      message: 'The refund would exceed what is left of the amount charged for this order.',
      detail:
        'billing API 422 amount_exceeds_charge: order ord_usd0001: charged 10000, refunded 6000, asked 6000',
    });
    expect(api.refunds()).toHaveLength(1);
    // what is left can still be refunded
    output(await tools.execute('billing.refund', refund({ amountCents: 4000 }), ctx('r/3')));
    expect(api.refunds().reduce((sum, r) => sum + r.amountCents, 0)).toBe(10_000);
  });

  it('refuses an unknown order, a currency mismatch and a reused key with another body', async () => {
    const api = await fakeApi();
    const tools = registry({ baseUrl: api.url });
    expect(
      await tools.execute('billing.refund', refund({ orderId: 'ord_nope0001' }), ctx('a/1')),
    ).toMatchObject({
      ok: false,
      code: 'BILLING_ORDER_NOT_FOUND',
    });
    expect(
      await tools.execute('billing.refund', refund({ orderId: 'ord_eur0001' }), ctx('a/2')),
    ).toMatchObject({
      ok: false,
      code: 'BILLING_REJECTED',
      message: 'The billing API refused the refund (HTTP 422).',
      detail: expect.stringContaining('currency_mismatch'),
    });
    output(await tools.execute('billing.refund', refund(), ctx('a/3')));
    expect(await tools.execute('billing.refund', refund({ amountCents: 100 }), ctx('a/3'))).toMatchObject({
      ok: false,
      code: 'BILLING_REJECTED',
      detail: expect.stringContaining('idempotency_key_reused'),
    });
    expect(api.refunds()).toHaveLength(1);
  });

  it('an auth failure is a BILLING_REJECTED refusal that names no key', async () => {
    const api = await fakeApi();
    const result = await registry({ baseUrl: api.url, apiKey: 'sk_test_wrong' }).execute(
      'billing.refund',
      refund(),
      ctx(),
    );
    expect(result).toStrictEqual({
      ok: false,
      code: 'BILLING_REJECTED',
      message: 'The billing API refused the refund (HTTP 401).',
      detail: 'billing API 401 unauthorized: missing or wrong API key',
    });
    expect(JSON.stringify(result)).not.toContain('sk_test');
    expect(api.requests()).toBe(1);
    expect(api.refunds()).toEqual([]);
  });

  it.each([500, 502, 503, 429])('throws a retryable BILLING_UNAVAILABLE on HTTP %i', async (status) => {
    const server = await rawServer(status, '{"error":{"code":"down"}}');
    const call = registry({ baseUrl: server.url }).execute('billing.refund', refund(), ctx());
    await expect(call).rejects.toBeInstanceOf(BillingUnavailableError);
    await expect(call).rejects.toMatchObject({
      code: 'BILLING_UNAVAILABLE',
      message: `the billing API answered ${status}`,
    });
    expect(server.hits()).toBe(1);
  });

  it('throws BILLING_UNAVAILABLE when nothing listens', async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await expect(
      registry({ baseUrl: `http://127.0.0.1:${port}` }).execute('billing.refund', refund(), ctx()),
    ).rejects.toMatchObject({ code: 'BILLING_UNAVAILABLE', message: 'the billing API could not be reached' });
  });

  it('throws BILLING_INVALID_RESPONSE when a 2xx body is not the refund asked for', async () => {
    const wrong = await rawServer(
      201,
      JSON.stringify({
        refundId: 're_1',
        orderId: 'ord_usd0001',
        amountCents: 9999,
        currency: 'USD',
        status: 'ok',
      }),
    );
    await expect(
      registry({ baseUrl: wrong.url }).execute('billing.refund', refund(), ctx()),
    ).rejects.toMatchObject({ code: 'BILLING_INVALID_RESPONSE' });
    const garbage = await rawServer(200, 'not json');
    await expect(
      registry({ baseUrl: garbage.url }).execute('billing.refund', refund(), ctx()),
    ).rejects.toMatchObject({ code: 'BILLING_INVALID_RESPONSE' });
  });

  it('never lets invalid arguments reach the API', async () => {
    const api = await fakeApi();
    const tools = registry({ baseUrl: api.url });
    const invalid = [
      refund({ orderId: 'order_1234' }),
      refund({ orderId: 'ord_12' }),
      refund({ orderId: 'ord_12345/../x' }),
      refund({ amountCents: 0 }),
      refund({ amountCents: -5 }),
      refund({ amountCents: 12.5 }),
      refund({ amountCents: 10_000_001 }),
      refund({ amountCents: '2500' }),
      refund({ currency: 'usd' }),
      refund({ currency: 'USDT' }),
      refund({ reason: '' }),
      refund({ reason: 'x'.repeat(501) }),
      refund({ customerId: 'cus_1' }),
      { orderId: 'ord_usd0001', amountCents: 1, currency: 'USD' },
    ];
    for (const args of invalid) {
      await expect(tools.execute('billing.refund', args, ctx()), JSON.stringify(args)).rejects.toMatchObject({
        code: 'TOOL_INVALID_ARGUMENTS',
      });
    }
    expect(api.requests()).toBe(0);
    // the bounds themselves are valid
    output(
      await tools.execute('billing.refund', refund({ amountCents: 1, reason: 'x'.repeat(500) }), ctx('b/1')),
    );
    expect(api.requests()).toBe(1);
  });

  it('refuses a malformed configuration and keeps the API key out of the exposed config', () => {
    for (const config of [
      { baseUrl: 'not a url', apiKey: API_KEY },
      { baseUrl: 'ftp://127.0.0.1', apiKey: API_KEY },
      { baseUrl: 'http://user:pw@127.0.0.1', apiKey: API_KEY },
      { baseUrl: 'http://127.0.0.1', apiKey: '' },
      { baseUrl: 'http://127.0.0.1', apiKey: 'a\r\nX-Injected: 1' },
      { baseUrl: 'http://127.0.0.1', apiKey: API_KEY, timeoutMs: 0 },
    ]) {
      expect(() => billingTools(config), JSON.stringify(config)).toThrow(
        expect.objectContaining({ code: 'TOOL_INVALID_CONFIG' }),
      );
    }
    const [tool] = billingTools({ baseUrl: 'http://127.0.0.1:9/billing/', apiKey: API_KEY });
    expect(tool.spec).toBe(billingRefund);
    expect(tool.config).toStrictEqual({
      refundsUrl: 'http://127.0.0.1:9/billing/v1/refunds',
      timeoutMs: 10_000,
    });
    expect(JSON.stringify(tool.config)).not.toContain(API_KEY);
  });
});

describe('the fake billing API itself', () => {
  const post = (api: FakeBillingApi, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${api.url}/v1/refunds`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${API_KEY}`,
        'idempotency-key': 'k-1',
        'content-type': 'application/json',
        ...headers,
      },
      body: JSON.stringify(body),
    });

  it('replays a repeated key with 200 and Idempotent-Replayed: true; another body is 422', async () => {
    const api = await fakeApi();
    const created = await post(api, refund());
    expect(created.status).toBe(201);
    expect(created.headers.get('idempotent-replayed')).toBeNull();
    const replayed = await post(api, refund());
    expect(replayed.status).toBe(200);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    expect(await replayed.json()).toStrictEqual(await created.json());
    const reused = await post(api, refund({ reason: 'something else' }));
    expect(reused.status).toBe(422);
    expect(await reused.json()).toMatchObject({ error: { code: 'idempotency_key_reused' } });
    expect(api.refunds()).toHaveLength(1);
  });

  it('requires the bearer key, an Idempotency-Key and a valid JSON body', async () => {
    const api = await fakeApi();
    expect((await post(api, refund(), { authorization: `Bearer ${API_KEY}x` })).status).toBe(401);
    expect((await post(api, refund(), { authorization: '' })).status).toBe(401);
    expect((await post(api, refund(), { 'idempotency-key': '' })).status).toBe(400);
    expect((await post(api, refund({ amountCents: 0 }))).status).toBe(400);
    expect((await post(api, refund({ extra: 1 }))).status).toBe(400);
    expect((await post(api, refund(), { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await fetch(`${api.url}/v1/refunds`)).status).toBe(405);
    expect((await fetch(`${api.url}/v1/other`, { method: 'POST' })).status).toBe(404);
    expect(api.refunds()).toEqual([]);
    expect(api.requests()).toBe(8);
  });

  it('fake-api-main starts from the environment, prints its URL and stops on SIGTERM', async () => {
    const main = fileURLToPath(new URL('./fake-api-main.ts', import.meta.url));
    const child = spawn(process.execPath, [main], {
      env: { ...process.env, BILLING_API_KEY: API_KEY, BILLING_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    cleanups.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk;
        if (out.includes('\n')) resolve(out.trim());
      });
      child.once('exit', (code) => reject(new Error(`exited ${code} before printing a URL`)));
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const [demoOrder] = Object.keys(DEMO_ORDERS);
    const result = await registry({ baseUrl: url }).execute(
      'billing.refund',
      refund({ orderId: demoOrder, amountCents: 100 }),
      ctx(),
    );
    expect(output(result).orderId).toBe(demoOrder);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('fake-api-main refuses to start without BILLING_API_KEY', async () => {
    const main = fileURLToPath(new URL('./fake-api-main.ts', import.meta.url));
    const env = { ...process.env };
    delete env.BILLING_API_KEY;
    const child = spawn(process.execPath, [main], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    expect(await new Promise((resolve) => child.once('exit', resolve))).toBe(2);
    expect(stderr).toContain('BILLING_API_KEY');
  });
});

describe('the billing spec and the support-finance governance document', () => {
  const file = fileURLToPath(new URL('../support-finance/governance.yaml', import.meta.url));
  const policy = compilePolicy(parseGovernanceOrThrow(readFileSync(file, 'utf8'), file).document);
  const tools = toolCatalog(BILLING_TOOL_SPECS);
  const decideRefund = (args: Record<string, unknown>) =>
    decide(policy, { tool: 'billing.refund', args: refund(args) }, { tools });

  it('exports the spec for the workflow bundle', () => {
    expect(toolSpecs).toBe(BILLING_TOOL_SPECS);
    expect(BILLING_TOOL_SPECS).toEqual([billingRefund]);
    expect(Object.isFrozen(billingRefund)).toBe(true);
    expect(billingRefund.name).toBe('billing.refund');
    expect(billingRefund.effect).toBe('idempotent');
    expect(billingRefund.resource?.(billingRefund.args.parse(refund()))).toBe('billing://orders/ord_usd0001');
  });

  it('2500 USD: preapproved by refund-small', () => {
    expect(decideRefund({ amountCents: 2500 })).toMatchObject({
      tier: 'preapproved',
      ruleId: 'refund-small',
      resource: 'billing://orders/ord_usd0001',
    });
  });

  it('20000 USD: approval by one finance lead (refund-medium)', () => {
    const decision = decideRefund({ amountCents: 20_000 });
    expect(decision).toMatchObject({ tier: 'approval', ruleId: 'refund-medium' });
    expect(decision.approval).toMatchObject({ quorum: 1, eligible: ['fatima', 'felix'] });
  });

  it('60000 EUR: approval by two finance leads (refund-large)', () => {
    const decision = decideRefund({ amountCents: 60_000, currency: 'EUR' });
    expect(decision).toMatchObject({ tier: 'approval', ruleId: 'refund-large' });
    expect(decision.approval).toMatchObject({ quorum: 2, highRisk: true });
  });

  it('600000 USD: prohibited (refund-too-large)', () => {
    expect(decideRefund({ amountCents: 600_000 })).toMatchObject({
      tier: 'prohibited',
      ruleId: 'refund-too-large',
    });
  });

  it('GBP: prohibited (refund-other-currency)', () => {
    expect(decideRefund({ currency: 'GBP' })).toMatchObject({
      tier: 'prohibited',
      ruleId: 'refund-other-currency',
    });
  });

  it('arguments the spec refuses are prohibited before any rule', () => {
    expect(decideRefund({ orderId: 'not-an-order' })).toMatchObject({
      tier: 'prohibited',
      ruleId: null,
      code: 'invalid_arguments',
    });
  });
});

describe('workflow safety', () => {
  const logger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

  it('the spec module bundles with the Temporal workflow bundler (no Node built-ins)', async () => {
    const bundle = await bundleWorkflowCode({
      workflowsPath: fileURLToPath(new URL('./spec.ts', import.meta.url)),
      logger,
    });
    expect(bundle.code).toContain('billing.refund');
  });

  it('control: the fake API module (node:http) does not', async () => {
    const errors: string[] = [];
    await expect(
      bundleWorkflowCode({
        workflowsPath: fileURLToPath(new URL('./fake-api.ts', import.meta.url)),
        logger: {
          ...logger,
          error: (message: string) => {
            errors.push(message);
          },
        },
      }),
    ).rejects.toThrow(/Webpack finished with errors/);
    expect(errors.join('\n')).toMatch(/node:http|node:crypto/);
  });
});
