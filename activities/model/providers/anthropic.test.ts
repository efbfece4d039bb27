import { afterEach, describe, expect, it } from 'vitest';
import { ModelError, ModelErrorCode } from '../errors.ts';
import type { ChatMessage, ModelConfig, ModelRequest, ToolDefinition } from '../types.ts';
import { startAnthropicStandIn } from '../standins/anthropic-standin.ts';
import type { StandIn, StandInOptions } from '../standins/anthropic-standin.ts';
import { createAnthropicProvider } from './anthropic.ts';
import type { AnthropicModelConfig } from './anthropic.ts';
import type { Clock } from './http.ts';

const KEY = 'sk-ant-test-0123456789abcdefSECRET';
const env = { TEST_ANTHROPIC_KEY: KEY };
const provider = createAnthropicProvider({ env });

const standIns: StandIn[] = [];
afterEach(async () => {
  for (const standIn of standIns.splice(0)) await standIn.close();
});

async function start(options: StandInOptions = {}): Promise<StandIn> {
  const standIn = await startAnthropicStandIn({ apiKey: KEY, ...options });
  standIns.push(standIn);
  return standIn;
}

function config(baseUrl: string, extra: Partial<AnthropicModelConfig> = {}): ModelConfig {
  const model: AnthropicModelConfig = {
    provider: 'anthropic',
    baseUrl,
    model: 'claude-test',
    apiKeyEnv: 'TEST_ANTHROPIC_KEY',
    ...extra,
  };
  // until `AnthropicModelConfig` joins the `ModelConfig` union
  return model as unknown as ModelConfig;
}

const TOOLS: readonly ToolDefinition[] = [
  {
    name: 'fs.read',
    description: 'Read a file',
    parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
  },
  { name: 'http_request', description: 'HTTP', parameters: { type: 'object' } },
];

function request(model: ModelConfig, messages: readonly ChatMessage[], tools = TOOLS): ModelRequest {
  return { agentId: 'agent-1', runId: 'run-1', turn: 3, model, messages, tools };
}

const MESSAGES: readonly ChatMessage[] = [
  { role: 'system', content: 'You are careful.' },
  { role: 'user', content: 'Read the README.' },
  {
    role: 'assistant',
    content: 'Reading it.',
    toolCalls: [
      { id: 'toolu_a', tool: 'fs.read', args: { path: 'README.md' }, rationale: 'Reading it.' },
      { id: 'toolu_b', tool: 'fs.read', args: '{"path": oops', rationale: null },
    ],
  },
  { role: 'tool', toolCallId: 'toolu_a', tool: 'fs.read', content: '{"ok":true,"output":"hello"}' },
  {
    role: 'tool',
    toolCallId: 'toolu_b',
    tool: 'fs.read',
    content: '{"ok":false,"code":"TOOL_INVALID_ARGUMENTS"}',
  },
  { role: 'system', content: 'Budget: 2 more calls.' },
  { role: 'user', content: 'Go on.' },
  { role: 'assistant', content: null, toolCalls: [] },
];

async function failure(promise: Promise<unknown>): Promise<ModelError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ModelError) return error;
    throw error;
  }
  throw new Error('expected a ModelError');
}

describe('request', () => {
  it('sends the Messages API body, headers and encoded tool names', async () => {
    const anthropic = await start();
    await provider.complete(
      request(config(`${anthropic.url}/`, { maxTokens: 256, temperature: 0 }), MESSAGES),
    );
    expect(anthropic.requests).toHaveLength(1);
    const [sent] = anthropic.requests;
    expect(sent?.method).toBe('POST');
    expect(sent?.path).toBe('/v1/messages');
    expect(sent?.headers['x-api-key']).toBe(KEY);
    expect(sent?.headers['anthropic-version']).toBe('2023-06-01');
    expect(sent?.headers['content-type']).toBe('application/json');
    expect(sent?.headers.authorization).toBeUndefined();
    expect(sent?.body).toMatchInlineSnapshot(`
      {
        "max_tokens": 256,
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
                "id": "toolu_a",
                "input": {
                  "path": "README.md",
                },
                "name": "fs__read",
                "type": "tool_use",
              },
              {
                "id": "toolu_b",
                "input": {
                  "_arguments": "{"path": oops",
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
                "tool_use_id": "toolu_a",
                "type": "tool_result",
              },
              {
                "content": "{"ok":false,"code":"TOOL_INVALID_ARGUMENTS"}",
                "is_error": true,
                "tool_use_id": "toolu_b",
                "type": "tool_result",
              },
              {
                "text": "Go on.",
                "type": "text",
              },
            ],
            "role": "user",
          },
        ],
        "model": "claude-test",
        "system": "You are careful.

      Budget: 2 more calls.",
        "temperature": 0,
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

  it('defaults max_tokens to 1024, the key variable to ANTHROPIC_API_KEY, and omits the rest', async () => {
    const anthropic = await start();
    const { apiKeyEnv: _, ...noKeyEnv } = config(anthropic.url) as unknown as AnthropicModelConfig;
    await createAnthropicProvider({ env: { ANTHROPIC_API_KEY: KEY } }).complete(
      request(noKeyEnv as unknown as ModelConfig, [{ role: 'user', content: 'hi' }], []),
    );
    expect(anthropic.requests[0]?.headers['x-api-key']).toBe(KEY);
    expect(anthropic.requests[0]?.body).toEqual({
      model: 'claude-test',
      max_tokens: 1024,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
    });
  });

  it('wraps arguments that are not a JSON object, as tool_use input must be one', async () => {
    const anthropic = await start();
    const messages: ChatMessage[] = [
      { role: 'user', content: 'x' },
      {
        role: 'assistant',
        content: '  ',
        toolCalls: [
          { id: 't1', tool: 'fs.read', args: ['a'], rationale: null },
          { id: 't2', tool: 'fs.read', args: '{"path":"a"}', rationale: null },
          { id: 't3', tool: 'made.up tool', args: 7, rationale: null },
        ],
      },
      { role: 'tool', toolCallId: 't1', tool: 'fs.read', content: 'not json' },
    ];
    await provider.complete(request(config(anthropic.url), messages));
    const body = anthropic.requests[0]?.body as { messages: unknown[] };
    expect(body.messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 't1', name: 'fs__read', input: { _arguments: ['a'] } },
          { type: 'tool_use', id: 't2', name: 'fs__read', input: { path: 'a' } },
          // a name no offered tool has: made wire-safe
          { type: 'tool_use', id: 't3', name: 'made__up_tool', input: { _arguments: 7 } },
        ],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'not json' }] },
    ]);
  });

  it('refuses a missing key, bad tool names and invalid configs without sending anything', async () => {
    const anthropic = await start();
    const noKey = await failure(
      createAnthropicProvider({ env: {} }).complete(request(config(anthropic.url), MESSAGES)),
    );
    expect(noKey.code).toBe(ModelErrorCode.auth);
    expect(noKey.message).toBe(
      'environment variable TEST_ANTHROPIC_KEY (apiKeyEnv) is not set on the worker',
    );

    const colliding: ToolDefinition[] = [
      { name: 'fs.read', description: '', parameters: {} },
      { name: 'fs__read', description: '', parameters: {} },
    ];
    const collision = await failure(provider.complete(request(config(anthropic.url), MESSAGES, colliding)));
    expect(collision.code).toBe(ModelErrorCode.badRequest);
    expect(collision.message).toBe('tools "fs.read" and "fs__read" have the same wire name "fs__read"');

    const spaced = [{ name: 'fs read', description: '', parameters: {} }];
    const unencodable = await failure(provider.complete(request(config(anthropic.url), MESSAGES, spaced)));
    expect(unencodable.code).toBe(ModelErrorCode.badRequest);
    expect(unencodable.message).toMatch(/^tool name "fs read" cannot be offered to an Anthropic model/);

    const badConfig = await failure(
      provider.complete(request(config('not a url', { temperature: 1.5 }), MESSAGES)),
    );
    expect(badConfig.code).toBe(ModelErrorCode.badRequest);
    expect(badConfig.message).toMatch(/^invalid anthropic model config: baseUrl: .*; temperature: /);
    expect(anthropic.requests).toHaveLength(0);
  });
});

describe('response', () => {
  it('round-trips tool calls: reply → history → next request', async () => {
    const anthropic = await start();
    anthropic.reply({
      text: 'I will read the README first.',
      toolCalls: [
        { id: 'toolu_1', name: 'fs.read', args: { path: 'README.md' } },
        { id: 'toolu_2', name: 'http_request', args: { url: 'https://example.com' } },
      ],
      usage: { inputTokens: 42, outputTokens: 7 },
      model: 'claude-test-2025',
    });
    anthropic.reply({ text: 'The README says hello.', usage: { inputTokens: 80, outputTokens: 6 } });
    const first: ChatMessage[] = [{ role: 'user', content: 'Read the README.' }];
    const reply = await provider.complete(request(config(anthropic.url), first));
    expect(reply).toEqual({
      content: 'I will read the README first.',
      toolCalls: [
        {
          id: 'toolu_1',
          tool: 'fs.read',
          args: { path: 'README.md' },
          rationale: 'I will read the README first.',
        },
        {
          id: 'toolu_2',
          tool: 'http_request',
          args: { url: 'https://example.com' },
          rationale: 'I will read the README first.',
        },
      ],
      finishReason: 'tool_calls',
      usage: { inputTokens: 42, outputTokens: 7 },
      provider: 'anthropic',
      model: 'claude-test-2025',
    });

    const second: ChatMessage[] = [
      ...first,
      { role: 'assistant', content: reply.content, toolCalls: reply.toolCalls },
      ...reply.toolCalls.map((call): ChatMessage => ({
        role: 'tool',
        toolCallId: call.id,
        tool: call.tool,
        content: '{"ok":true}',
      })),
    ];
    const final = await provider.complete(request(config(anthropic.url), second));
    expect(final.content).toBe('The README says hello.');
    expect(final.finishReason).toBe('stop');
    expect(final.model).toBe('claude-test');
    expect((anthropic.requests[1]?.body as { messages: unknown }).messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Read the README.' }] },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'I will read the README first.' },
          { type: 'tool_use', id: 'toolu_1', name: 'fs__read', input: { path: 'README.md' } },
          { type: 'tool_use', id: 'toolu_2', name: 'http_request', input: { url: 'https://example.com' } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'toolu_1', content: '{"ok":true}' },
          { type: 'tool_result', tool_use_id: 'toolu_2', content: '{"ok":true}' },
        ],
      },
    ]);
  });

  it('takes each call’s rationale from the text right before it; counts cached input tokens', async () => {
    const anthropic = await start();
    anthropic.failNext({
      kind: 'http',
      status: 200,
      body: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-test',
        content: [
          { type: 'thinking', thinking: 'hmm', signature: 'sig' },
          { type: 'text', text: 'First the README. ' },
          { type: 'tool_use', id: 't1', name: 'fs__read', input: { path: 'README.md' } },
          { type: 'tool_use', id: 't2', name: 'fs__read', input: { path: 'b' } },
          { type: 'text', text: 'Then an invented tool.' },
          { type: 'tool_use', id: 't3', name: 'made__up', input: {} },
        ],
        stop_reason: 'tool_use',
        stop_sequence: null,
        usage: {
          input_tokens: 10,
          cache_creation_input_tokens: 100,
          cache_read_input_tokens: 1000,
          output_tokens: 5,
        },
      },
    });
    const reply = await provider.complete(request(config(anthropic.url), MESSAGES));
    expect(reply.content).toBe('First the README. Then an invented tool.');
    expect(reply.toolCalls).toEqual([
      { id: 't1', tool: 'fs.read', args: { path: 'README.md' }, rationale: 'First the README. ' },
      { id: 't2', tool: 'fs.read', args: { path: 'b' }, rationale: 'First the README. ' },
      { id: 't3', tool: 'made__up', args: {}, rationale: 'Then an invented tool.' },
    ]);
    expect(reply.usage).toEqual({ inputTokens: 1110, outputTokens: 5 });
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['refusal', 'content_filter'],
    ['pause_turn', 'other'],
  ] as const)('maps stop_reason %s to %s', async (stopReason, finishReason) => {
    const anthropic = await start({ replies: [{ text: 'Answer.', finishReason: stopReason }] });
    const reply = await provider.complete(
      request(config(anthropic.url), [{ role: 'user', content: 'hello' }]),
    );
    expect(reply.finishReason).toBe(finishReason);
    expect(reply.content).toBe('Answer.');
    expect(reply.toolCalls).toEqual([]);
  });

  it('estimates usage the server does not report and gives null content without text', async () => {
    const anthropic = await start();
    anthropic.failNext({
      kind: 'http',
      status: 200,
      body: { type: 'message', content: [], stop_reason: 'end_turn' },
    });
    const reply = await provider.complete(
      request(config(anthropic.url), [{ role: 'user', content: 'hello' }]),
    );
    expect(reply).toMatchObject({
      content: null,
      finishReason: 'stop',
      usage: { inputTokens: 2, outputTokens: 0 },
    });
  });

  it.each([
    ['not JSON', 'malformed_json' as const, /answered with something that is not JSON: \{"id": "truncated"/],
    [
      'not a message',
      { kind: 'http' as const, status: 200, body: { type: 'completion', completion: 'x' } },
      /answered with an invalid message: type: /,
    ],
    [
      'a tool_use without an id',
      {
        kind: 'http' as const,
        status: 200,
        body: { type: 'message', content: [{ type: 'tool_use', name: 'x' }] },
      },
      /answered with an invalid message: content\.0/,
    ],
  ])('refuses a malformed answer (%s) as bad_response', async (_, injected, message) => {
    const anthropic = await start();
    anthropic.failNext(injected);
    const error = await failure(provider.complete(request(config(anthropic.url), MESSAGES)));
    expect(error.code).toBe(ModelErrorCode.badResponse);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(message);
  });
});

describe('errors', () => {
  const anthropicError = (type: string, message: string) => ({ type: 'error', error: { type, message } });

  it.each([
    ['server_error', ModelErrorCode.serverError, 500, undefined],
    [{ kind: 'rate_limit', retryAfterSeconds: 7 }, ModelErrorCode.rateLimit, 429, 7000],
    ['overloaded', ModelErrorCode.overloaded, 529, undefined],
    ['context_length', ModelErrorCode.contextLength, 400, undefined],
    ['auth', ModelErrorCode.auth, 401, undefined],
  ] as const)('maps the injected failure %j to %s', async (injected, code, status, retryAfterMs) => {
    const anthropic = await start();
    anthropic.failNext(injected);
    const error = await failure(provider.complete(request(config(anthropic.url), MESSAGES)));
    expect(error.code).toBe(code);
    expect(error.status).toBe(status);
    expect(error.retryAfterMs).toBe(retryAfterMs);
    expect(error.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+ answered HTTP ${status}: `));
  });

  it.each([
    [403, anthropicError('permission_error', 'Your API key does not have permission'), ModelErrorCode.auth],
    [402, anthropicError('billing_error', 'Your credit balance is too low'), ModelErrorCode.auth],
    [
      400,
      anthropicError(
        'invalid_request_error',
        'input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, decrease input length or `max_tokens` and try again',
      ),
      ModelErrorCode.contextLength,
    ],
    [
      400,
      anthropicError('invalid_request_error', 'Output blocked by content filtering policy'),
      ModelErrorCode.contentPolicy,
    ],
    [
      400,
      anthropicError('invalid_request_error', 'messages.1.content: Field required'),
      ModelErrorCode.badRequest,
    ],
    [404, anthropicError('not_found_error', 'model: claude-nope'), ModelErrorCode.badRequest],
    [
      413,
      anthropicError('request_too_large', 'Request exceeds the maximum allowed number of bytes.'),
      ModelErrorCode.badRequest,
    ],
    // the type decides over the status
    [500, anthropicError('overloaded_error', 'Overloaded'), ModelErrorCode.overloaded],
    [503, 'Service Unavailable', ModelErrorCode.overloaded],
    [504, anthropicError('timeout_error', 'Request timed out'), ModelErrorCode.timeout],
    [502, '<html>Bad Gateway</html>', ModelErrorCode.serverError],
  ] as const)('maps HTTP %i %j to its code', async (status, body, code) => {
    const anthropic = await start();
    anthropic.failNext({ kind: 'http', status, body });
    const error = await failure(provider.complete(request(config(anthropic.url), MESSAGES)));
    expect(error.code).toBe(code);
    expect(error.status).toBe(status);
    expect(error.message).toContain(typeof body === 'string' ? body : body.error.message.slice(0, 40));
  });

  it('honours a retry-after HTTP date against the injected clock', async () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    const clock: Clock = { now: () => now, setTimeout: () => () => {} };
    const anthropic = await start();
    anthropic.failNext({
      kind: 'http',
      status: 429,
      body: anthropicError('rate_limit_error', 'slow down'),
      headers: { 'retry-after': 'Thu, 01 Jan 2026 00:00:30 GMT' },
    });
    const error = await failure(
      createAnthropicProvider({ env, clock }).complete(request(config(anthropic.url), MESSAGES)),
    );
    expect(error.retryAfterMs).toBe(30_000);
  });

  it('times out with MODEL_TIMEOUT on a hang and on a slow first byte', async () => {
    const anthropic = await start();
    anthropic.failNext('hang');
    anthropic.failNext({ kind: 'slow_first_byte', delayMs: 5000 });
    for (let i = 0; i < 2; i++) {
      const started = Date.now();
      const error = await failure(
        provider.complete(request(config(anthropic.url, { timeoutMs: 200 }), MESSAGES)),
      );
      expect(error.code).toBe(ModelErrorCode.timeout);
      expect(error.message).toMatch(/^127\.0\.0\.1:\d+ did not answer within 200 ms$/);
      expect(Date.now() - started).toBeLessThan(3000);
    }
  });

  it('times out when the injected clock says so', async () => {
    let fire: (() => void) | undefined;
    const clock: Clock = {
      now: () => Date.now(),
      setTimeout: (callback) => {
        fire = callback;
        return () => {
          fire = undefined;
        };
      },
    };
    const anthropic = await start();
    anthropic.failNext('hang');
    const pending = failure(
      createAnthropicProvider({ env, clock }).complete(request(config(anthropic.url), MESSAGES)),
    );
    while (anthropic.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    fire?.();
    const error = await pending;
    expect(error.code).toBe(ModelErrorCode.timeout);
    expect(error.message).toMatch(/did not answer within 60000 ms$/);
  });

  it("rethrows the caller's cancellation as is", async () => {
    const anthropic = await start();
    anthropic.failNext('hang');
    const controller = new AbortController();
    const reason = new Error('activity cancelled');
    setTimeout(() => controller.abort(reason), 50);
    await expect(provider.complete(request(config(anthropic.url), MESSAGES), controller.signal)).rejects.toBe(
      reason,
    );
  });

  it('maps an unreachable server and a broken-off body to retryable server errors', async () => {
    const anthropic = await start();
    anthropic.failNext('disconnect');
    const broken = await failure(provider.complete(request(config(anthropic.url), MESSAGES)));
    expect(broken.code).toBe(ModelErrorCode.serverError);
    expect(broken.message).toMatch(/^127\.0\.0\.1:\d+ broke off its answer: /);

    await standIns.pop()?.close();
    const error = await failure(provider.complete(request(config(anthropic.url), MESSAGES)));
    expect(error.code).toBe(ModelErrorCode.serverError);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/^cannot reach 127\.0\.0\.1:\d+: ECONNREFUSED$/);
  });

  it('never puts the API key in an error message, even when the server echoes it', async () => {
    const anthropic = await start();
    const bodies = [
      { status: 401, body: anthropicError('authentication_error', `invalid x-api-key: ${KEY}`) },
      { status: 400, body: anthropicError('invalid_request_error', `${'x'.repeat(270)} ${KEY}`) },
      { status: 500, body: `<html>${KEY}</html>` },
      { status: 200, body: `not json ${KEY}` },
    ];
    for (const { status, body } of bodies) {
      anthropic.failNext({ kind: 'http', status, body });
      const error = await failure(provider.complete(request(config(anthropic.url), MESSAGES)));
      expect(error.message).not.toContain(KEY.slice(0, 12));
      expect(error.message).toContain('[redacted]');
    }
  });
});
