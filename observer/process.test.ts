import { createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, test } from 'vitest';
import { listen } from '../common/listen.ts';
import { configuredAlertSink } from './process.ts';
import { ObserverConfigSchema } from './service-config.ts';
import type { ObserverAlert } from './service.ts';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function receiver(status: number): Promise<{ url: string; got: { auth: string; body: unknown }[] }> {
  const got: { auth: string; body: unknown }[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ auth: req.headers.authorization ?? '', body: JSON.parse(body) as unknown });
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(status < 300 ? '{"delivered":[]}' : '{"error":{"code":"X","message":"no"}}');
    });
  });
  const url = await listen(server, 0, '127.0.0.1');
  closers.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { url, got };
}

const alert: ObserverAlert = {
  findingId: 'obs_1',
  ruleId: 'refund-walking-under-limit',
  severity: 'medium',
  agent: 'support-agent',
  runs: ['run-1'],
  summary: 'refund-walking-under-limit (medium) on agent=support-agent',
  at: '2026-12-01T10:00:00.000Z',
};

const config = (alerts: object) =>
  ObserverConfigSchema.parse({
    aggregator: { url: 'http://127.0.0.1:1', tokenEnv: 'T' },
    store: { file: 'x.db' },
    alerts,
  });

describe('the observer alert channels', () => {
  test('a webhook and the approvals service both get the alert; the approvals call carries its token', async () => {
    const hook = await receiver(200);
    const approvals = await receiver(202);
    const send = configuredAlertSink(
      config({ webhook: hook.url, approvals: { url: approvals.url, tokenEnv: 'ALERT_TOKEN' } }),
      { ALERT_TOKEN: 'alert-token-123' },
    );
    await send!(alert);
    expect(hook.got[0]?.body).toMatchObject({
      text: `agent-runtime observer: ${alert.summary}`,
      findingId: 'obs_1',
    });
    expect(approvals.got).toEqual([{ auth: 'Bearer alert-token-123', body: alert }]);
  });

  test('one channel failing is not a failed alert; all failing is', async () => {
    const down = await receiver(500);
    const up = await receiver(202);
    const one = configuredAlertSink(
      config({ webhook: down.url, approvals: { url: up.url, tokenEnv: 'A' } }),
      {
        A: 'alert-token-123',
      },
    );
    await expect(one!(alert)).resolves.toBeUndefined();
    const none = configuredAlertSink(config({ webhook: down.url }), {});
    await expect(none!(alert)).rejects.toThrow('alert webhook answered 500');
  });

  test('no channel: no sink; an unset token variable is refused at start', () => {
    expect(configuredAlertSink(config({}), {})).toBeUndefined();
    expect(() =>
      configuredAlertSink(config({ approvals: { url: 'http://127.0.0.1:9', tokenEnv: 'MISSING' } }), {}),
    ).toThrow("$MISSING (the approvals service's alert token) is not set");
  });
});
