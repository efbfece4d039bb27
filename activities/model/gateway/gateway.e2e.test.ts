/**
 * The OpenAI-compatible endpoint over the real proxy and router against two OpenAI wire-format
 * stand-ins: a plain request falls back from a failing primary and is traced; a stream falls
 * back only before its first token; a stream broken after output ends with an explicit error.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtinProviders, createProviderRouter } from '../index.ts';
import { createModelProxy } from '../proxy.ts';
import type { ProxyTrace } from '../proxy.ts';
import { startOpenAIStandIn } from '../standins/index.ts';
import type { StandIn } from '../standins/index.ts';
import { createProxyCaller } from './caller.ts';
import { createModelGateway } from './server.ts';

const KEY = 'sk-gateway-agent-1';
const env = { STANDIN_KEY: 'sk-upstream' };
let primary: StandIn;
let fallback: StandIn;
let server: Server;
let url: string;
const traces: ProxyTrace[] = [];

beforeAll(async () => {
  primary = await startOpenAIStandIn();
  fallback = await startOpenAIStandIn();
  const providers = builtinProviders({ env });
  const target = (standIn: StandIn, model: string) => ({
    provider: { provider: 'openai-compatible', baseUrl: standIn.url, model, apiKeyEnv: 'STANDIN_KEY' },
  });
  const router = createProviderRouter(
    {
      targets: { primary: target(primary, 'gpt-primary'), fallback: target(fallback, 'gpt-fallback') },
      routes: [{ targets: ['primary', 'fallback'] }],
      retry: { maxAttempts: 1, baseMs: 0, maxMs: 0, jitter: 0 },
    },
    providers,
  );
  const proxy = createModelProxy({ providers, router, onTrace: (t) => traces.push(t) });
  server = createServer(
    createModelGateway({
      keys: [{ agentId: 'support-bot', keySha256: createHash('sha256').update(KEY).digest('hex') }],
      caller: createProxyCaller({ proxy, router, env }),
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await primary.close();
  await fallback.close();
});

const ask = (stream: boolean) =>
  fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'any', stream, messages: [{ role: 'user', content: 'Is the API up?' }] }),
  });

describe('gateway over the proxy', () => {
  it('a plain request falls back from a failing primary; the call is traced with the chain', async () => {
    primary.failNext('server_error');
    fallback.reply({ text: 'Yes, it is up.' });
    const res = await ask(false);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]?.message.content).toBe('Yes, it is up.');
    expect(traces.at(-1)).toMatchObject({
      agentId: 'support-bot',
      target: 'fallback',
      fallbackCause: 'MODEL_SERVER_ERROR',
    });
    // the upstream key went to the upstream only; the agent's key never left the gateway
    expect(fallback.requests.at(-1)?.headers.authorization).toBe('Bearer sk-upstream');
  });

  it('a stream falls back when the primary fails before its first token', async () => {
    primary.failNext('overloaded');
    fallback.reply({ text: 'Streaming from the fallback.' });
    const res = await ask(true);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.trim().endsWith('data: [DONE]')).toBe(true);
    const content = text
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)) as { choices: { delta?: { content?: string } }[] })
      .map((c) => c.choices[0]?.delta?.content ?? '')
      .join('');
    expect(content).toBe('Streaming from the fallback.');
    // streamed calls are traced too, with the assembled completion
    expect(traces.at(-1)).toMatchObject({
      agentId: 'support-bot',
      route: 'stream',
      response: { content: 'Streaming from the fallback.' },
      error: null,
    });
  });

  it('a stream broken after output ends with an explicit error event, never [DONE], and no fallback', async () => {
    const before = fallback.requests.length;
    primary.failNext({ kind: 'disconnect', afterChunks: 2 });
    primary.reply({ text: 'This answer will be cut off somewhere in the middle of the sentence.' });
    const res = await ask(true);
    expect(res.status).toBe(200);
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events).not.toContain('data: [DONE]');
    expect(JSON.parse(events.at(-1)!.slice(6))).toMatchObject({
      error: { type: 'server_error' },
      finish_reason: 'error',
    });
    expect(fallback.requests.length).toBe(before);
    expect(traces.at(-1)).toMatchObject({
      route: 'stream',
      response: null,
      error: { code: 'MODEL_SERVER_ERROR' },
    });
  });
});
