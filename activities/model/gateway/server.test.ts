/**
 * The OpenAI-compatible endpoint over real HTTP: per-agent keys, the wire mapping both ways,
 * streaming, and the phase rule (an error before output is a plain error response; after output
 * an explicit error event and no `[DONE]`).
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError, ModelErrorCode } from '../errors.ts';
import type { ModelResponse } from '../types.ts';
import type { GatewayRequest } from './openai-wire.ts';
import { createModelGateway } from './server.ts';
import type { GatewayCaller, GatewayStreamEvent } from './server.ts';

const KEY = 'sk-agent-test-123';
const seen: { agentId: string; request: GatewayRequest }[] = [];
let behaviour: 'ok' | 'budget' | 'fail-before' | 'fail-after' = 'ok';

const reply: ModelResponse = {
  content: 'Checking the status page.',
  toolCalls: [
    { id: 'call_1', tool: 'get_status', args: { service: 'api' }, rationale: 'Checking the status page.' },
  ],
  finishReason: 'tool_calls',
  usage: { inputTokens: 12, outputTokens: 7 },
  provider: 'openai-compatible',
  model: 'gpt-test',
};

const caller: GatewayCaller = {
  complete: async (agentId, request) => {
    seen.push({ agentId, request });
    if (behaviour === 'budget')
      throw new ModelError(
        ModelErrorCode.budgetExhausted,
        'the token budget of agent support-bot for today is spent',
      );
    return reply;
  },
  stream: async function* (agentId, request): AsyncGenerator<GatewayStreamEvent> {
    seen.push({ agentId, request });
    if (behaviour === 'fail-before')
      throw new ModelError(ModelErrorCode.overloaded, 'every target is overloaded');
    yield { type: 'text', delta: 'Hel' };
    yield { type: 'text', delta: 'lo' };
    if (behaviour === 'fail-after')
      throw new ModelError(ModelErrorCode.serverError, 'stream interrupted after output');
    yield { type: 'tool_call', call: reply.toolCalls[0]! };
    yield { type: 'finish', finishReason: 'tool_calls' };
    yield { type: 'usage', usage: reply.usage };
  },
};

let server: Server;
let url: string;
beforeAll(async () => {
  server = createServer(
    createModelGateway({
      keys: [{ agentId: 'support-bot', keySha256: createHash('sha256').update(KEY).digest('hex') }],
      caller,
      now: () => 1_700_000_000_000,
      newId: () => 'chatcmpl-test',
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const body = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: 'gpt-test',
    messages: [
      { role: 'system', content: 'You help.' },
      { role: 'user', content: 'Is the API up?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'c0', type: 'function', function: { name: 'get_status', arguments: '{"service":"web"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c0', content: '{"up":true}' },
    ],
    tools: [{ type: 'function', function: { name: 'get_status', parameters: { type: 'object' } } }],
    ...extra,
  });

const post = (text: string, key: string | null = KEY) =>
  fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
    },
    body: text,
  });

describe('POST /v1/chat/completions', () => {
  it('refuses a missing or unknown key with 401 in OpenAI’s shape, before reading anything else', async () => {
    for (const key of [null, 'sk-wrong']) {
      const res = await post(body(), key);
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({
        error: { message: 'invalid API key', type: 'invalid_request_error', code: 'invalid_api_key' },
      });
    }
    expect(seen).toEqual([]);
  });

  it('refuses malformed bodies with 400 naming the path', async () => {
    const bad = await post(JSON.stringify({ model: 'x', messages: [{ role: 'robot', content: 'hi' }] }));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(
      /^messages\.0\.role: /,
    );
    const orphan = await post(
      JSON.stringify({ model: 'x', messages: [{ role: 'tool', tool_call_id: 'nope', content: '1' }] }),
    );
    expect(((await orphan.json()) as { error: { message: string } }).error.message).toBe(
      'tool message for unknown tool_call_id nope',
    );
    expect((await post('{not json')).status).toBe(400);
  });

  it('maps the request into the proxy’s terms and the reply back into a chat.completion', async () => {
    behaviour = 'ok';
    const res = await post(body());
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchInlineSnapshot(`
      {
        "choices": [
          {
            "finish_reason": "tool_calls",
            "index": 0,
            "message": {
              "content": "Checking the status page.",
              "role": "assistant",
              "tool_calls": [
                {
                  "function": {
                    "arguments": "{"service":"api"}",
                    "name": "get_status",
                  },
                  "id": "call_1",
                  "type": "function",
                },
              ],
            },
          },
        ],
        "created": 1700000000,
        "id": "chatcmpl-test",
        "model": "gpt-test",
        "object": "chat.completion",
        "usage": {
          "completion_tokens": 7,
          "prompt_tokens": 12,
          "total_tokens": 19,
        },
      }
    `);
    const last = seen.at(-1)!;
    expect(last.agentId).toBe('support-bot');
    expect(last.request.messages).toEqual([
      { role: 'system', content: 'You help.' },
      { role: 'user', content: 'Is the API up?' },
      {
        role: 'assistant',
        content: null,
        toolCalls: [{ id: 'c0', tool: 'get_status', args: { service: 'web' }, rationale: null }],
      },
      { role: 'tool', toolCallId: 'c0', tool: 'get_status', content: '{"up":true}' },
    ]);
  });

  it('a spent budget is a 429 insufficient_quota', async () => {
    behaviour = 'budget';
    const res = await post(body());
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('insufficient_quota');
  });

  it('streams chunks, the tool call, the finish and usage, then [DONE]', async () => {
    behaviour = 'ok';
    const res = await post(body({ stream: true }));
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const data = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.slice('data: '.length)) as Record<string, unknown>);
    const deltas = data.map(
      (d) => (d.choices as { delta?: { content?: string } }[])[0]?.delta?.content ?? '',
    );
    expect(deltas.join('')).toBe('Hello');
    expect(JSON.stringify(data)).toContain('"tool_calls":[{"index":0,"id":"call_1"');
    expect(
      data.some((d) => (d.choices as { finish_reason: string | null }[])[0]?.finish_reason === 'tool_calls'),
    ).toBe(true);
    expect(data.at(-1)).toMatchObject({ usage: { total_tokens: 19 } });
  });

  it('a stream that fails before any output is a plain error response', async () => {
    behaviour = 'fail-before';
    const res = await post(body({ stream: true }));
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/json');
  });

  it('a stream broken after output ends with an explicit error event and no [DONE]', async () => {
    behaviour = 'fail-after';
    const res = await post(body({ stream: true }));
    expect(res.status).toBe(200);
    const events = (await res.text()).split('\n\n').filter(Boolean);
    expect(events).not.toContain('data: [DONE]');
    expect(JSON.parse(events.at(-1)!.slice('data: '.length))).toEqual({
      error: { message: 'stream interrupted after output', type: 'server_error', code: 'upstream_error' },
      finish_reason: 'error',
    });
  });
});
