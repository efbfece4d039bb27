import { afterEach, describe, expect, it } from 'vitest';
import { ModelError, ModelErrorCode } from '../errors.ts';
import { createOpenAICompatibleProvider } from '../openai-compatible.ts';
import type { ChatMessage, ModelConfig, ModelRequest, ToolDefinition } from '../types.ts';
import { startAnthropicStandIn } from '../standins/anthropic-standin.ts';
import { startOpenAIStandIn } from '../standins/openai-standin.ts';
import type { StandIn, StandInOptions, StandInReply } from '../standins/server.ts';
import type { AnthropicModelConfig } from './anthropic.ts';
import { ModelStreamInterruptedError, streamAnthropic, streamOpenAICompatible } from './streaming.ts';
import type { ModelStreamEvent, OpenAIStreamOptions, StreamOptions } from './streaming.ts';

const KEY = 'sk-test-0123456789abcdefSECRET';
const env = { TEST_KEY: KEY };

const standIns: StandIn[] = [];
afterEach(async () => {
  for (const standIn of standIns.splice(0)) await standIn.close();
});

interface Vendor {
  readonly name: string;
  start(options?: StandInOptions): Promise<StandIn>;
  config(url: string, extra?: { timeoutMs?: number }): ModelConfig;
  stream(
    request: ModelRequest,
    options?: OpenAIStreamOptions,
  ): AsyncGenerator<ModelStreamEvent, void, undefined>;
  /** Index of the first SSE event carrying text, in the stand-in's sequence. */
  readonly firstTextChunk: number;
  /** Code of the stand-in's in-stream error event. */
  readonly streamErrorCode: ModelErrorCode;
}

const openai: Vendor = {
  name: 'openai-compatible',
  start: (options) => startOpenAIStandIn({ apiKey: KEY, ...options }),
  config: (url, extra = {}) => ({
    provider: 'openai-compatible',
    baseUrl: url,
    model: 'gpt-test',
    apiKeyEnv: 'TEST_KEY',
    ...extra,
  }),
  stream: (request, options = {}) => streamOpenAICompatible(request, { env, ...options }),
  // role chunk, then text
  firstTextChunk: 1,
  streamErrorCode: ModelErrorCode.serverError,
};

const anthropic: Vendor = {
  name: 'anthropic',
  start: (options) => startAnthropicStandIn({ apiKey: KEY, ...options }),
  config: (url, extra = {}) => {
    const config: AnthropicModelConfig = {
      provider: 'anthropic',
      baseUrl: url,
      model: 'claude-test',
      apiKeyEnv: 'TEST_KEY',
      ...extra,
    };
    // until `AnthropicModelConfig` joins the `ModelConfig` union
    return config as unknown as ModelConfig;
  },
  stream: (request, options: StreamOptions = {}) => streamAnthropic(request, { env, ...options }),
  // message_start, ping, content_block_start, then text
  firstTextChunk: 3,
  streamErrorCode: ModelErrorCode.overloaded,
};

const TOOLS: readonly ToolDefinition[] = [
  {
    name: 'fs.read',
    description: 'Read a file',
    parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
  },
  { name: 'http_request', description: 'HTTP', parameters: { type: 'object' } },
];

const MESSAGES: readonly ChatMessage[] = [
  { role: 'system', content: 'You are careful.' },
  { role: 'user', content: 'Read the README.' },
  {
    role: 'assistant',
    content: 'Reading it.',
    toolCalls: [{ id: 'call_a', tool: 'fs.read', args: { path: 'README.md' }, rationale: 'Reading it.' }],
  },
  { role: 'tool', toolCallId: 'call_a', tool: 'fs.read', content: '{"ok":true,"output":"hello"}' },
];

function request(model: ModelConfig, messages = MESSAGES, tools = TOOLS): ModelRequest {
  return { agentId: 'agent-1', runId: 'run-1', turn: 3, model, messages, tools };
}

const REPLY: StandInReply = {
  text: 'Reading it now.',
  toolCalls: [
    { id: 'call_1', name: 'fs.read', args: { path: 'README.md' } },
    // invalid JSON arguments reach the gateway raw
    { id: 'call_2', name: 'http_request', args: '{"url": nope' },
  ],
  usage: { inputTokens: 42, outputTokens: 7 },
  model: 'model-2025',
};

const REPLY_EVENTS: ModelStreamEvent[] = [
  { type: 'text', delta: 'Read' },
  { type: 'text', delta: 'ing ' },
  { type: 'text', delta: 'it n' },
  { type: 'text', delta: 'ow.' },
  {
    type: 'tool_call',
    call: { id: 'call_1', tool: 'fs.read', args: { path: 'README.md' }, rationale: 'Reading it now.' },
  },
  {
    type: 'tool_call',
    call: { id: 'call_2', tool: 'http_request', args: '{"url": nope', rationale: 'Reading it now.' },
  },
  { type: 'usage', usage: { inputTokens: 42, outputTokens: 7 } },
  { type: 'finish', finishReason: 'tool_calls', model: 'model-2025' },
];

interface Outcome {
  readonly events: ModelStreamEvent[];
  readonly error: unknown;
}

async function collect(stream: AsyncGenerator<ModelStreamEvent, void, undefined>): Promise<Outcome> {
  const events: ModelStreamEvent[] = [];
  try {
    for await (const event of stream) events.push(event);
  } catch (error) {
    return { events, error };
  }
  return { events, error: undefined };
}

function modelError(outcome: Outcome): ModelError {
  if (outcome.error instanceof ModelError) return outcome.error;
  throw new Error(`expected a ModelError, got ${String(outcome.error)}`);
}

describe.each([openai, anthropic])('$name streaming', (vendor) => {
  async function start(options: StandInOptions = {}): Promise<StandIn> {
    const standIn = await vendor.start({ chunkChars: 4, ...options });
    standIns.push(standIn);
    return standIn;
  }

  it('yields text deltas, tool calls assembled from deltas, usage and finish', async () => {
    const server = await start({ replies: [REPLY] });
    const outcome = await collect(vendor.stream(request(vendor.config(server.url))));
    expect(outcome.error).toBeUndefined();
    expect(outcome.events).toEqual(REPLY_EVENTS);
    expect(server.requests[0]?.headers.accept).toBe('text/event-stream');
    expect((server.requests[0]?.body as { stream?: unknown }).stream).toBe(true);
  });

  it('finishes a plain answer with "stop" and the configured model when none is reported', async () => {
    const server = await start({ replies: [{ text: 'Hi.', usage: { inputTokens: 3, outputTokens: 1 } }] });
    const outcome = await collect(vendor.stream(request(vendor.config(server.url), MESSAGES, [])));
    const model = (vendor.config(server.url) as { model: string }).model;
    expect(outcome.events).toEqual([
      { type: 'text', delta: 'Hi.' },
      { type: 'usage', usage: { inputTokens: 3, outputTokens: 1 } },
      { type: 'finish', finishReason: 'stop', model },
    ]);
  });

  it.each([
    ['server_error' as const, ModelErrorCode.serverError, 500, undefined],
    [{ kind: 'rate_limit' as const, retryAfterSeconds: 3 }, ModelErrorCode.rateLimit, 429, 3000],
    ['overloaded' as const, ModelErrorCode.overloaded, undefined, undefined],
    ['context_length' as const, ModelErrorCode.contextLength, 400, undefined],
    ['auth' as const, ModelErrorCode.auth, 401, undefined],
  ])('throws a typed error before the first event: %j', async (injected, code, status, retryAfterMs) => {
    const server = await start();
    server.failNext(injected);
    const outcome = await collect(vendor.stream(request(vendor.config(server.url))));
    expect(outcome.events).toEqual([]);
    const error = modelError(outcome);
    expect(error).not.toBeInstanceOf(ModelStreamInterruptedError);
    expect(error.code).toBe(code);
    if (status !== undefined) expect(error.status).toBe(status);
    expect(error.retryAfterMs).toBe(retryAfterMs);
  });

  it('throws a typed error for an error event before any output', async () => {
    const server = await start();
    server.failNext({ kind: 'stream_error', afterChunks: vendor.firstTextChunk });
    const outcome = await collect(vendor.stream(request(vendor.config(server.url))));
    expect(outcome.events).toEqual([]);
    const error = modelError(outcome);
    expect(error).not.toBeInstanceOf(ModelStreamInterruptedError);
    expect(error.code).toBe(vendor.streamErrorCode);
    expect(error.message).toMatch(/^127\.0\.0\.1:\d+ reported .*in the stream: /);
  });

  it('fails a stream that breaks after output with afterOutput, never a clean finish', async () => {
    const server = await start({ replies: [REPLY] });
    server.failNext({ kind: 'disconnect', afterChunks: vendor.firstTextChunk + 2 });
    const outcome = await collect(vendor.stream(request(vendor.config(server.url))));
    expect(outcome.events).toEqual(REPLY_EVENTS.slice(0, 2));
    const error = modelError(outcome);
    expect(error).toBeInstanceOf(ModelStreamInterruptedError);
    expect((error as ModelStreamInterruptedError).afterOutput).toBe(true);
    expect(error.code).toBe(ModelErrorCode.serverError);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(
      /^stream interrupted after output: 127\.0\.0\.1:\d+ broke off its answer: /,
    );
    expect((error.cause as ModelError).code).toBe(ModelErrorCode.serverError);
  });

  it('fails an error event after output with afterOutput, keeping the typed error as cause', async () => {
    const server = await start({ replies: [REPLY] });
    server.failNext({ kind: 'stream_error', afterChunks: vendor.firstTextChunk + 1 });
    const outcome = await collect(vendor.stream(request(vendor.config(server.url))));
    expect(outcome.events).toEqual(REPLY_EVENTS.slice(0, 1));
    const error = modelError(outcome);
    expect(error).toBeInstanceOf(ModelStreamInterruptedError);
    expect(error.code).toBe(ModelErrorCode.serverError);
    expect((error.cause as ModelError).code).toBe(vendor.streamErrorCode);
  });

  it('throws a typed server error when the connection drops before any output', async () => {
    const server = await start({ replies: [REPLY] });
    server.failNext({ kind: 'disconnect', afterChunks: vendor.firstTextChunk });
    const outcome = await collect(vendor.stream(request(vendor.config(server.url))));
    expect(outcome.events).toEqual([]);
    const error = modelError(outcome);
    expect(error).not.toBeInstanceOf(ModelStreamInterruptedError);
    expect(error.code).toBe(ModelErrorCode.serverError);
  });

  it('times out a slow first byte with firstEventTimeoutMs', async () => {
    const server = await start({ replies: [REPLY] });
    server.failNext({ kind: 'slow_first_byte', delayMs: 5000 });
    const started = Date.now();
    const outcome = await collect(
      vendor.stream(request(vendor.config(server.url)), { firstEventTimeoutMs: 150 }),
    );
    expect(outcome.events).toEqual([]);
    const error = modelError(outcome);
    expect(error.code).toBe(ModelErrorCode.timeout);
    expect(error.message).toMatch(/^127\.0\.0\.1:\d+ sent no output within 150 ms$/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('lets a slow stream run past firstEventTimeoutMs once output has started', async () => {
    const server = await start({ replies: [REPLY], chunkDelayMs: 30 });
    const outcome = await collect(
      vendor.stream(request(vendor.config(server.url)), { firstEventTimeoutMs: 400 }),
    );
    expect(outcome.error).toBeUndefined();
    expect(outcome.events).toEqual(REPLY_EVENTS);
  });

  it('times out a hang with the config deadline, and a slow stream after output as interrupted', async () => {
    const server = await start({ replies: [REPLY] });
    server.failNext('hang');
    const hung = modelError(
      await collect(vendor.stream(request(vendor.config(server.url, { timeoutMs: 200 })))),
    );
    expect(hung.code).toBe(ModelErrorCode.timeout);
    expect(hung.message).toMatch(/did not answer within 200 ms$/);

    const slow = await start({ replies: [REPLY], chunkDelayMs: 120 });
    const outcome = await collect(vendor.stream(request(vendor.config(slow.url, { timeoutMs: 700 }))));
    expect(outcome.events.length).toBeGreaterThan(0);
    expect(outcome.events.some((event) => event.type === 'finish')).toBe(false);
    const error = modelError(outcome);
    expect(error).toBeInstanceOf(ModelStreamInterruptedError);
    expect((error.cause as ModelError).code).toBe(ModelErrorCode.timeout);
  });

  it('refuses an event that is not JSON as bad_response', async () => {
    const server = await start();
    server.failNext('malformed_json');
    const error = modelError(await collect(vendor.stream(request(vendor.config(server.url)))));
    expect(error.code).toBe(ModelErrorCode.badResponse);
    expect(error.message).toMatch(/^127\.0\.0\.1:\d+ sent an event that is not JSON: /);
  });

  it('refuses a JSON answer where an event stream was asked for', async () => {
    const server = await start();
    server.failNext({ kind: 'http', status: 200, body: { id: 'x' } });
    const error = modelError(await collect(vendor.stream(request(vendor.config(server.url)))));
    expect(error.code).toBe(ModelErrorCode.badResponse);
    expect(error.message).toMatch(/answered without an event stream: \{"id":"x"\}$/);
  });

  it('fails a stream that ends cleanly but without its end marker', async () => {
    const server = await start();
    const first =
      vendor === openai
        ? 'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        : 'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Hel"}}\n\n';
    server.failNext({
      kind: 'http',
      status: 200,
      body: first,
      headers: { 'content-type': 'text/event-stream' },
    });
    const outcome = await collect(vendor.stream(request(vendor.config(server.url))));
    expect(outcome.events).toEqual([{ type: 'text', delta: 'Hel' }]);
    const error = modelError(outcome);
    expect(error).toBeInstanceOf(ModelStreamInterruptedError);
    expect(error.message).toMatch(/ended the stream before (\[DONE\]|message_stop)$/);
  });

  it("rethrows the caller's cancellation as is, before and after output", async () => {
    const server = await start({ replies: [REPLY, REPLY], chunkDelayMs: 50 });
    server.failNext('hang');
    const before = new AbortController();
    const reason = new Error('activity cancelled');
    setTimeout(() => before.abort(reason), 50);
    expect(
      (await collect(vendor.stream(request(vendor.config(server.url)), { signal: before.signal }))).error,
    ).toBe(reason);

    const after = new AbortController();
    const stream = vendor.stream(request(vendor.config(server.url)), { signal: after.signal });
    expect((await stream.next()).value).toEqual(REPLY_EVENTS[0]);
    after.abort(reason);
    const rest = await collect(stream);
    expect(rest.error).toBe(reason);
    expect(rest.events.some((event) => event.type === 'finish')).toBe(false);
  });

  it('stops reading and releases the request when the consumer breaks early', async () => {
    const server = await start({ replies: [REPLY], chunkDelayMs: 200 });
    const started = Date.now();
    for await (const event of vendor.stream(request(vendor.config(server.url)))) {
      expect(event).toEqual(REPLY_EVENTS[0]);
      break;
    }
    expect(Date.now() - started).toBeLessThan(1500);
    // the stand-in still answers the next request
    const outcome = await collect(vendor.stream(request(vendor.config(server.url), MESSAGES, [])));
    expect(outcome.error).toBeUndefined();
  });

  it('refuses a missing key and an invalid config before sending', async () => {
    const server = await start();
    const noKey = modelError(await collect(vendor.stream(request(vendor.config(server.url)), { env: {} })));
    expect(noKey.code).toBe(ModelErrorCode.auth);
    const badUrl = modelError(await collect(vendor.stream(request(vendor.config('nope')))));
    expect(badUrl.code).toBe(ModelErrorCode.badRequest);
    expect(server.requests).toHaveLength(0);
  });
});

describe('openai-compatible stream request', () => {
  it('sends the non-streaming body plus stream and stream_options', async () => {
    const server = await startOpenAIStandIn({ apiKey: KEY });
    standIns.push(server);
    const model = openai.config(server.url);
    await createOpenAICompatibleProvider({ env }).complete(request(model));
    await collect(openai.stream(request(model)));
    const [plain, streamed] = server.requests;
    expect(streamed?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(streamed?.body).toEqual({
      ...(plain?.body as object),
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(streamed?.body).toMatchInlineSnapshot(`
      {
        "messages": [
          {
            "content": "You are careful.",
            "role": "system",
          },
          {
            "content": "Read the README.",
            "role": "user",
          },
          {
            "content": "Reading it.",
            "role": "assistant",
            "tool_calls": [
              {
                "function": {
                  "arguments": "{"path":"README.md"}",
                  "name": "fs__read",
                },
                "id": "call_a",
                "type": "function",
              },
            ],
          },
          {
            "content": "{"ok":true,"output":"hello"}",
            "role": "tool",
            "tool_call_id": "call_a",
          },
        ],
        "model": "gpt-test",
        "stream": true,
        "stream_options": {
          "include_usage": true,
        },
        "tool_choice": "auto",
        "tools": [
          {
            "function": {
              "description": "Read a file",
              "name": "fs__read",
              "parameters": {
                "properties": {
                  "path": {
                    "type": "string",
                  },
                },
                "required": [
                  "path",
                ],
                "type": "object",
              },
            },
            "type": "function",
          },
          {
            "function": {
              "description": "HTTP",
              "name": "http_request",
              "parameters": {
                "type": "object",
              },
            },
            "type": "function",
          },
        ],
      }
    `);
  });

  it('estimates usage when includeUsage is off and the server reports none', async () => {
    const server = await startOpenAIStandIn({ replies: [{ text: 'Hello.' }] });
    standIns.push(server);
    const { apiKeyEnv: _, ...model } = openai.config(server.url) as Extract<
      ModelConfig,
      { provider: 'openai-compatible' }
    >;
    const outcome = await collect(
      streamOpenAICompatible(request(model, [{ role: 'user', content: 'hello' }]), { includeUsage: false }),
    );
    expect((server.requests[0]?.body as Record<string, unknown>).stream_options).toBeUndefined();
    expect(outcome.events.at(-2)).toEqual({ type: 'usage', usage: { inputTokens: 2, outputTokens: 2 } });
  });

  it('accepts a stream that omits [DONE] after its finish reason, and ids it did not send', async () => {
    const server = await startOpenAIStandIn();
    standIns.push(server);
    const body = [
      'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"fs__read","arguments":"{\\"path\\""}}]}}]}',
      'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":\\"a\\"}"}}]}}]}',
      'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
      '',
      '',
    ].join('\n\n');
    server.failNext({ kind: 'http', status: 200, body, headers: { 'content-type': 'text/event-stream' } });
    const { apiKeyEnv: _, ...model } = openai.config(server.url) as Extract<
      ModelConfig,
      { provider: 'openai-compatible' }
    >;
    const outcome = await collect(streamOpenAICompatible(request(model)));
    expect(outcome.error).toBeUndefined();
    expect(outcome.events.slice(0, 1)).toEqual([
      { type: 'tool_call', call: { id: 'call_3_0', tool: 'fs.read', args: { path: 'a' }, rationale: null } },
    ]);
    expect(outcome.events.at(-1)).toEqual({ type: 'finish', finishReason: 'tool_calls', model: 'gpt-test' });
  });
});

describe('anthropic stream request', () => {
  it('sends the Messages body with stream: true', async () => {
    const server = await startAnthropicStandIn({ apiKey: KEY });
    standIns.push(server);
    await collect(anthropic.stream(request(anthropic.config(server.url))));
    const [sent] = server.requests;
    expect(sent?.path).toBe('/v1/messages');
    expect(sent?.headers['x-api-key']).toBe(KEY);
    expect(sent?.headers['anthropic-version']).toBe('2023-06-01');
    expect(sent?.body).toMatchInlineSnapshot(`
      {
        "max_tokens": 1024,
        "messages": [
          {
            "content": [
              {
                "text": "Read the README.",
                "type": "text",
              },
            ],
            "role": "user",
          },
          {
            "content": [
              {
                "text": "Reading it.",
                "type": "text",
              },
              {
                "id": "call_a",
                "input": {
                  "path": "README.md",
                },
                "name": "fs__read",
                "type": "tool_use",
              },
            ],
            "role": "assistant",
          },
          {
            "content": [
              {
                "content": "{"ok":true,"output":"hello"}",
                "tool_use_id": "call_a",
                "type": "tool_result",
              },
            ],
            "role": "user",
          },
        ],
        "model": "claude-test",
        "stream": true,
        "system": "You are careful.",
        "tools": [
          {
            "description": "Read a file",
            "input_schema": {
              "properties": {
                "path": {
                  "type": "string",
                },
              },
              "required": [
                "path",
              ],
              "type": "object",
            },
            "name": "fs__read",
          },
          {
            "description": "HTTP",
            "input_schema": {
              "type": "object",
            },
            "name": "http_request",
          },
        ],
      }
    `);
  });

  it('takes rationale from the text right before each tool_use and counts cached input', async () => {
    const server = await startAnthropicStandIn();
    standIns.push(server);
    const events = [
      [
        'message_start',
        {
          type: 'message_start',
          message: {
            model: 'claude-x',
            usage: { input_tokens: 5, cache_read_input_tokens: 100, output_tokens: 1 },
          },
        },
      ],
      [
        'content_block_start',
        { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } },
      ],
      [
        'content_block_delta',
        { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'hmm' } },
      ],
      ['content_block_stop', { type: 'content_block_stop', index: 0 }],
      [
        'content_block_start',
        { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
      ],
      [
        'content_block_delta',
        { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'First.' } },
      ],
      ['content_block_stop', { type: 'content_block_stop', index: 1 }],
      [
        'content_block_start',
        {
          type: 'content_block_start',
          index: 2,
          content_block: { type: 'tool_use', id: 't1', name: 'fs__read', input: {} },
        },
      ],
      ['content_block_stop', { type: 'content_block_stop', index: 2 }],
      [
        'content_block_start',
        { type: 'content_block_start', index: 3, content_block: { type: 'text', text: 'Second.' } },
      ],
      ['content_block_stop', { type: 'content_block_stop', index: 3 }],
      [
        'content_block_start',
        {
          type: 'content_block_start',
          index: 4,
          content_block: { type: 'tool_use', id: 't2', name: 'fs__read', input: {} },
        },
      ],
      [
        'content_block_delta',
        {
          type: 'content_block_delta',
          index: 4,
          delta: { type: 'input_json_delta', partial_json: '{"path":' },
        },
      ],
      [
        'content_block_delta',
        { type: 'content_block_delta', index: 4, delta: { type: 'input_json_delta', partial_json: '"b"}' } },
      ],
      ['content_block_stop', { type: 'content_block_stop', index: 4 }],
      [
        'message_delta',
        { type: 'message_delta', delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 9 } },
      ],
      ['message_stop', { type: 'message_stop' }],
    ] as const;
    const body = events
      .map(([event, data]) => `event: ${event}\r\ndata: ${JSON.stringify(data)}\r\n\r\n`)
      .join('');
    server.failNext({ kind: 'http', status: 200, body, headers: { 'content-type': 'text/event-stream' } });
    const outcome = await collect(
      anthropic.stream(request(anthropic.config(server.url)), { env: { TEST_KEY: 'k' } }),
    );
    expect(outcome.error).toBeUndefined();
    expect(outcome.events).toEqual([
      { type: 'text', delta: 'First.' },
      { type: 'tool_call', call: { id: 't1', tool: 'fs.read', args: {}, rationale: 'First.' } },
      { type: 'text', delta: 'Second.' },
      { type: 'tool_call', call: { id: 't2', tool: 'fs.read', args: { path: 'b' }, rationale: 'Second.' } },
      { type: 'usage', usage: { inputTokens: 105, outputTokens: 9 } },
      { type: 'finish', finishReason: 'tool_calls', model: 'claude-x' },
    ]);
  });

  it('maps a refusal to content_filter', async () => {
    const server = await startAnthropicStandIn({
      replies: [
        {
          text: 'I can’t help with that.',
          finishReason: 'refusal',
          usage: { inputTokens: 1, outputTokens: 1 },
        },
      ],
    });
    standIns.push(server);
    const outcome = await collect(
      anthropic.stream(request(anthropic.config(server.url)), { env: { TEST_KEY: 'k' } }),
    );
    expect(outcome.events.at(-1)).toEqual({
      type: 'finish',
      finishReason: 'content_filter',
      model: 'claude-test',
    });
  });
});
