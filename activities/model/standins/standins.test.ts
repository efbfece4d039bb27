import { afterEach, describe, expect, it } from 'vitest';
import { startAnthropicStandIn, startOpenAIStandIn } from './index.ts';
import type { StandIn } from './index.ts';

const standIns: StandIn[] = [];
afterEach(async () => {
  for (const standIn of standIns.splice(0)) await standIn.close();
});

async function track(standIn: Promise<StandIn>): Promise<StandIn> {
  const started = await standIn;
  standIns.push(started);
  return started;
}

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; text: string; json: unknown }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const ANTHROPIC_HEADERS = { 'anthropic-version': '2023-06-01', 'x-api-key': 'k' };

describe('OpenAI stand-in', () => {
  it('answers a completion in the real shape and records the request', async () => {
    const openai = await track(startOpenAIStandIn());
    expect(openai.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    openai.reply({
      text: 'Let me look.',
      toolCalls: [{ name: 'fs.read', args: { path: 'a' } }],
      usage: { inputTokens: 10, outputTokens: 4 },
    });
    const answer = await post(
      `${openai.url}/chat/completions`,
      { model: 'gpt-x', messages: [] },
      { authorization: 'Bearer k' },
    );
    expect(answer.status).toBe(200);
    expect(answer.headers.get('x-request-id')).toBe('req_standin_1');
    expect(answer.json).toEqual({
      id: 'chatcmpl-standin-1',
      object: 'chat.completion',
      created: 1_767_225_600,
      model: 'gpt-x',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'Let me look.',
            refusal: null,
            tool_calls: [
              {
                id: 'call_standin_1_0',
                type: 'function',
                function: { name: 'fs__read', arguments: '{"path":"a"}' },
              },
            ],
          },
          logprobs: null,
          finish_reason: 'tool_calls',
        },
      ],
      usage: { prompt_tokens: 10, completion_tokens: 4, total_tokens: 14 },
      system_fingerprint: null,
    });
    expect(openai.requests).toEqual([
      {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: expect.objectContaining({ authorization: 'Bearer k' }) as unknown,
        body: { model: 'gpt-x', messages: [] },
        n: 1,
      },
    ]);
  });

  it('streams chat.completion.chunk events ending in [DONE]', async () => {
    const openai = await track(startOpenAIStandIn({ chunkChars: 5 }));
    openai.reply({
      text: 'Hi there',
      toolCalls: [{ id: 'c1', name: 'a.b', args: { x: 1 } }],
      usage: { inputTokens: 3, outputTokens: 2 },
    });
    const answer = await post(`${openai.url}/chat/completions`, {
      model: 'gpt-x',
      messages: [],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(answer.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(answer.text).toMatchInlineSnapshot(`
      "data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

      data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"Hi th"},"logprobs":null,"finish_reason":null}],"usage":null}

      data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"ere"},"logprobs":null,"finish_reason":null}],"usage":null}

      data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"a__b","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

      data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"x\\":"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

      data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

      data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

      data: {"id":"chatcmpl-standin-1","object":"chat.completion.chunk","created":1767225600,"model":"gpt-x","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}

      data: [DONE]

      "
    `);
  });

  it('fails the next N requests, then answers; replies may be functions of the request', async () => {
    const openai = await track(
      startOpenAIStandIn({ fallback: (request) => ({ text: `request ${request.n}` }) }),
    );
    openai.failNext('server_error', 2);
    openai.failNext({ kind: 'rate_limit', retryAfterSeconds: 9 });
    const body = { model: 'gpt-x', messages: [] };
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await post(`${openai.url}/chat/completions`, body));
    expect(answers.map((a) => a.status)).toEqual([500, 500, 429, 200]);
    expect(answers[0]?.json).toEqual({
      error: {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: null,
      },
    });
    expect(answers[2]?.headers.get('retry-after')).toBe('9');
    expect(
      (answers[3]?.json as { choices: { message: { content: string } }[] }).choices[0]?.message.content,
    ).toBe('request 4');
  });

  it('refuses unknown paths, wrong keys and bodies the API would refuse', async () => {
    const openai = await track(startOpenAIStandIn({ apiKey: 'sk-right' }));
    const auth = { authorization: 'Bearer sk-right' };
    expect((await post(`${openai.url}/completions`, {}, auth)).status).toBe(404);
    const wrongKey = await post(
      `${openai.url}/chat/completions`,
      { model: 'm', messages: [] },
      { authorization: 'Bearer sk-wrong' },
    );
    expect(wrongKey.status).toBe(401);
    expect((wrongKey.json as { error: { code: string } }).error.code).toBe('invalid_api_key');
    expect((await post(`${openai.url}/chat/completions`, '{nope', auth)).status).toBe(400);
    expect((await post(`${openai.url}/chat/completions`, { messages: [] }, auth)).status).toBe(400);
    expect(openai.requests.map((r) => r.body)).toEqual([
      {},
      { model: 'm', messages: [] },
      '{nope',
      { messages: [] },
    ]);
  });
});

describe('Anthropic stand-in', () => {
  const request = { model: 'claude-x', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };

  it('answers a message in the real shape', async () => {
    const anthropic = await track(startAnthropicStandIn());
    expect(anthropic.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    anthropic.reply({
      text: 'Looking.',
      toolCalls: [{ name: 'fs.read', args: { path: 'a' } }],
      usage: { inputTokens: 9, outputTokens: 3 },
    });
    const answer = await post(`${anthropic.url}/v1/messages`, request, ANTHROPIC_HEADERS);
    expect(answer.headers.get('request-id')).toBe('req_standin_1');
    expect(answer.json).toEqual({
      id: 'msg_standin_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [
        { type: 'text', text: 'Looking.' },
        { type: 'tool_use', id: 'toolu_standin_1_0', name: 'fs__read', input: { path: 'a' } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 9, output_tokens: 3 },
    });
  });

  it('streams the real event sequence', async () => {
    const anthropic = await track(startAnthropicStandIn({ chunkChars: 5 }));
    anthropic.reply({
      text: 'Hi there',
      toolCalls: [{ id: 't1', name: 'a.b', args: { x: 1 } }],
      usage: { inputTokens: 3, outputTokens: 2 },
    });
    const answer = await post(
      `${anthropic.url}/v1/messages`,
      { ...request, stream: true },
      ANTHROPIC_HEADERS,
    );
    expect(answer.text).toMatchInlineSnapshot(`
      "event: message_start
      data: {"type":"message_start","message":{"id":"msg_standin_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}

      event: ping
      data: {"type":"ping"}

      event: content_block_start
      data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

      event: content_block_delta
      data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi th"}}

      event: content_block_delta
      data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ere"}}

      event: content_block_stop
      data: {"type":"content_block_stop","index":0}

      event: content_block_start
      data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"a__b","input":{}}}

      event: content_block_delta
      data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"x\\":"}}

      event: content_block_delta
      data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}

      event: content_block_stop
      data: {"type":"content_block_stop","index":1}

      event: message_delta
      data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":2}}

      event: message_stop
      data: {"type":"message_stop"}

      "
    `);
  });

  it('injects each failure in the vendor’s error shape', async () => {
    const anthropic = await track(startAnthropicStandIn());
    const kinds = [
      'server_error',
      'rate_limit',
      'overloaded',
      'context_length',
      'auth',
      'malformed_json',
    ] as const;
    for (const kind of kinds) anthropic.failNext(kind);
    const answers = [];
    for (let i = 0; i < kinds.length; i++)
      answers.push(await post(`${anthropic.url}/v1/messages`, request, ANTHROPIC_HEADERS));
    expect(
      answers.map((a) => [a.status, (a.json as { error?: { type: string } } | undefined)?.error?.type]),
    ).toEqual([
      [500, 'api_error'],
      [429, 'rate_limit_error'],
      [529, 'overloaded_error'],
      [400, 'invalid_request_error'],
      [401, 'authentication_error'],
      [200, undefined],
    ]);
    expect(answers[1]?.headers.get('retry-after')).toBe('1');
    expect(answers[2]?.json).toEqual({
      type: 'error',
      error: { type: 'overloaded_error', message: 'Overloaded' },
      request_id: 'req_standin_3',
    });
    expect(answers[5]?.text).toBe('{"id": "truncated", "content": [');
  });

  it('refuses requests without anthropic-version, max_tokens or the right key', async () => {
    const anthropic = await track(startAnthropicStandIn({ apiKey: 'sk-ant-right' }));
    const headers = { 'anthropic-version': '2023-06-01', 'x-api-key': 'sk-ant-right' };
    const noVersion = await post(`${anthropic.url}/v1/messages`, request, { 'x-api-key': 'sk-ant-right' });
    expect(noVersion.status).toBe(400);
    expect((noVersion.json as { error: { message: string } }).error.message).toBe(
      'anthropic-version: header is required',
    );
    const { max_tokens: _, ...noMax } = request;
    const missing = await post(`${anthropic.url}/v1/messages`, noMax, headers);
    expect((missing.json as { error: { message: string } }).error.message).toBe('max_tokens: Field required');
    expect(
      (await post(`${anthropic.url}/v1/messages`, request, { ...headers, 'x-api-key': 'x' })).status,
    ).toBe(401);
    expect((await post(`${anthropic.url}/v1/complete`, request, headers)).status).toBe(404);
  });

  it('slows the first byte, and closes promptly with requests still hanging', async () => {
    const anthropic = await startAnthropicStandIn();
    anthropic.failNext({ kind: 'slow_first_byte', delayMs: 150 });
    const started = Date.now();
    expect((await post(`${anthropic.url}/v1/messages`, request, ANTHROPIC_HEADERS)).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);

    anthropic.failNext('hang');
    anthropic.failNext({ kind: 'slow_first_byte', delayMs: 60_000 });
    const hung = post(`${anthropic.url}/v1/messages`, request, ANTHROPIC_HEADERS).catch(
      (error: unknown) => error,
    );
    const slow = post(`${anthropic.url}/v1/messages`, request, ANTHROPIC_HEADERS).catch(
      (error: unknown) => error,
    );
    while (anthropic.requests.length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
    const closing = Date.now();
    await anthropic.close();
    expect(Date.now() - closing).toBeLessThan(1000);
    expect(await hung).toBeInstanceOf(Error);
    expect(await slow).toBeInstanceOf(Error);
  });
});
