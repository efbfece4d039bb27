import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ModelError, ModelErrorCode } from './errors.ts';
import {
  createOpenAICompatibleProvider,
  decodeToolName,
  encodeToolName,
  parseRetryAfter,
} from './openai-compatible.ts';
import type { ChatMessage, ModelConfig, ModelRequest, ToolDefinition } from './types.ts';

// A local server speaking the Chat Completions wire format; every request is recorded.

interface Recorded {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: unknown;
}

interface Reply {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  /** Sent as JSON unless a string. */
  readonly body?: unknown;
  /** Never answer (for time limits). */
  readonly hang?: boolean;
}

interface TestServer {
  readonly requests: Recorded[];
  readonly baseUrl: string;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(reply: Reply | ((req: Recorded) => Reply)): Promise<TestServer> {
  const requests: Recorded[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const recorded: Recorded = {
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: text === '' ? undefined : (JSON.parse(text) as unknown),
      };
      requests.push(recorded);
      const r = typeof reply === 'function' ? reply(recorded) : reply;
      if (r.hang === true) return;
      res.writeHead(r.status ?? 200, { 'content-type': 'application/json', ...r.headers });
      res.end(typeof r.body === 'string' ? r.body : JSON.stringify(r.body ?? {}));
    });
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
  const port = (server.address() as AddressInfo).port;
  return { requests, baseUrl: `http://127.0.0.1:${port}/v1` };
}

const KEY = 'sk-test-0123456789abcdefSECRET';
const env = { TEST_MODEL_KEY: KEY };

function config(
  baseUrl: string,
  extra: Partial<Extract<ModelConfig, { provider: 'openai-compatible' }>> = {},
) {
  return {
    provider: 'openai-compatible',
    baseUrl,
    model: 'gpt-test',
    apiKeyEnv: 'TEST_MODEL_KEY',
    ...extra,
  } as const;
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
      { id: 'call_a', tool: 'fs.read', args: { path: 'README.md' }, rationale: 'Reading it.' },
      { id: 'call_b', tool: 'fs.read', args: '{"path": oops', rationale: null },
    ],
  },
  { role: 'tool', toolCallId: 'call_a', tool: 'fs.read', content: '{"ok":true,"output":"hello"}' },
  {
    role: 'tool',
    toolCallId: 'call_b',
    tool: 'fs.read',
    content: '{"ok":false,"code":"TOOL_INVALID_ARGUMENTS"}',
  },
  { role: 'assistant', content: null, toolCalls: [] },
];

function completion(message: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    id: 'chatcmpl-1',
    object: 'chat.completion',
    model: 'gpt-test-2025',
    choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 42, completion_tokens: 7, total_tokens: 49 },
    ...extra,
  };
}

async function failure(promise: Promise<unknown>): Promise<ModelError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ModelError) return error;
    throw error;
  }
  throw new Error('expected a ModelError');
}

const provider = createOpenAICompatibleProvider({ env });

describe('request', () => {
  it('sends the exact Chat Completions body, auth header and encoded tool names', async () => {
    const server = await serve({ body: completion({ content: 'Done.' }) });
    await provider.complete(
      request(config(`${server.baseUrl}/`, { maxTokens: 256, temperature: 0 }), MESSAGES),
    );
    expect(server.requests).toHaveLength(1);
    const [sent] = server.requests;
    expect(sent?.method).toBe('POST');
    expect(sent?.url).toBe('/v1/chat/completions');
    expect(sent?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent?.headers['content-type']).toBe('application/json');
    expect(sent?.body).toEqual({
      model: 'gpt-test',
      messages: [
        { role: 'system', content: 'You are careful.' },
        { role: 'user', content: 'Read the README.' },
        {
          role: 'assistant',
          content: 'Reading it.',
          tool_calls: [
            {
              id: 'call_a',
              type: 'function',
              function: { name: 'fs__read', arguments: '{"path":"README.md"}' },
            },
            // raw arguments go back verbatim
            { id: 'call_b', type: 'function', function: { name: 'fs__read', arguments: '{"path": oops' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_a', content: '{"ok":true,"output":"hello"}' },
        { role: 'tool', tool_call_id: 'call_b', content: '{"ok":false,"code":"TOOL_INVALID_ARGUMENTS"}' },
        { role: 'assistant', content: null },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'fs__read',
            description: 'Read a file',
            parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
          },
        },
        {
          type: 'function',
          function: { name: 'http_request', description: 'HTTP', parameters: { type: 'object' } },
        },
      ],
      tool_choice: 'auto',
      max_tokens: 256,
      temperature: 0,
    });
  });

  it('omits tools, tool_choice, limits and the auth header when not configured', async () => {
    const server = await serve({ body: completion({ content: 'Hi.' }) });
    const { apiKeyEnv: _, ...noKey } = config(server.baseUrl);
    await provider.complete(request(noKey, [{ role: 'user', content: 'hi' }], []));
    expect(server.requests[0]?.headers.authorization).toBeUndefined();
    expect(server.requests[0]?.body).toEqual({
      model: 'gpt-test',
      messages: [{ role: 'user', content: 'hi' }],
    });
  });

  it('refuses a missing API key variable without sending anything', async () => {
    const server = await serve({ body: completion({ content: 'x' }) });
    const error = await failure(
      createOpenAICompatibleProvider({ env: {} }).complete(request(config(server.baseUrl), MESSAGES)),
    );
    expect(error.code).toBe(ModelErrorCode.auth);
    expect(error.retryable).toBe(false);
    expect(error.message).toBe('environment variable TEST_MODEL_KEY (apiKeyEnv) is not set on the worker');
    expect(server.requests).toHaveLength(0);
  });

  it('refuses colliding or unencodable tool names and invalid configs without sending anything', async () => {
    const server = await serve({ body: completion({ content: 'x' }) });
    const colliding: ToolDefinition[] = [
      { name: 'fs.read', description: '', parameters: {} },
      { name: 'fs__read', description: '', parameters: {} },
    ];
    const collision = await failure(provider.complete(request(config(server.baseUrl), MESSAGES, colliding)));
    expect(collision.code).toBe(ModelErrorCode.badRequest);
    expect(collision.message).toBe('tools "fs.read" and "fs__read" have the same wire name "fs__read"');

    const spaced = [{ name: 'fs read', description: '', parameters: {} }];
    const unencodable = await failure(provider.complete(request(config(server.baseUrl), MESSAGES, spaced)));
    expect(unencodable.code).toBe(ModelErrorCode.badRequest);

    const badUrl = await failure(provider.complete(request(config('not a url'), MESSAGES)));
    expect(badUrl.code).toBe(ModelErrorCode.badRequest);
    expect(badUrl.message).toMatch(/^invalid openai-compatible model config: baseUrl: /);
    expect(server.requests).toHaveLength(0);
  });
});

describe('tool names on the wire', () => {
  it('round-trips dotted names and leaves unknown names alone', () => {
    const names = ['fs.read', 'a.b.c', 'http_request', 'x-y', 'n__m', 'A9'];
    const tools = names.map((name) => ({ name, description: '', parameters: {} }));
    for (const name of names) {
      const wire = encodeToolName(name);
      expect(wire).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
      expect(decodeToolName(wire, tools)).toBe(name);
    }
    expect(encodeToolName('fs.read')).toBe('fs__read');
    expect(decodeToolName('fs__write', tools)).toBe('fs__write');
    expect(() => encodeToolName(`a.${'b'.repeat(62)}`)).toThrow(ModelError);
    expect(() => encodeToolName('')).toThrow(ModelError);
  });
});

describe('response', () => {
  it('parses tool calls: decoded names, JSON arguments, rationale, usage, model', async () => {
    const good = await serve({
      body: {
        model: 'gpt-test-2025',
        choices: [
          {
            finish_reason: 'tool_calls',
            message: {
              role: 'assistant',
              content: 'I will read the README first.',
              tool_calls: [
                {
                  id: 'call_1',
                  type: 'function',
                  function: { name: 'fs__read', arguments: '{"path":"README.md"}' },
                },
                {
                  id: 'call_2',
                  type: 'function',
                  function: { name: 'http_request', arguments: '{"url": nope' },
                },
                { id: 'call_3', type: 'function', function: { name: 'fs__read', arguments: '' } },
                { type: 'function', function: { name: 'made__up', arguments: '{}' } },
              ],
            },
          },
        ],
        usage: { prompt_tokens: 42, completion_tokens: 7 },
      },
    });
    expect(await provider.complete(request(config(good.baseUrl), MESSAGES))).toEqual({
      content: 'I will read the README first.',
      toolCalls: [
        {
          id: 'call_1',
          tool: 'fs.read',
          args: { path: 'README.md' },
          rationale: 'I will read the README first.',
        },
        // unparsable arguments stay raw: the gateway refuses them as invalid arguments
        {
          id: 'call_2',
          tool: 'http_request',
          args: '{"url": nope',
          rationale: 'I will read the README first.',
        },
        { id: 'call_3', tool: 'fs.read', args: {}, rationale: 'I will read the README first.' },
        // no id: a deterministic one; an invented name passes verbatim
        { id: 'call_3_3', tool: 'made__up', args: {}, rationale: 'I will read the README first.' },
      ],
      finishReason: 'tool_calls',
      usage: { inputTokens: 42, outputTokens: 7 },
      provider: 'openai-compatible',
      model: 'gpt-test-2025',
    });
  });

  it('gives a null rationale without text, and normalises "stop" with tool calls', async () => {
    const server = await serve({
      body: completion({
        content: '  ',
        tool_calls: [
          { id: 'c', type: 'function', function: { name: 'fs__read', arguments: '{"path":"a"}' } },
        ],
      }),
    });
    const reply = await provider.complete(request(config(server.baseUrl), MESSAGES));
    expect(reply.content).toBeNull();
    expect(reply.toolCalls).toEqual([{ id: 'c', tool: 'fs.read', args: { path: 'a' }, rationale: null }]);
    expect(reply.finishReason).toBe('tool_calls');
  });

  it.each([
    ['stop', 'stop'],
    ['length', 'length'],
    ['content_filter', 'content_filter'],
    ['something_else', 'other'],
    [null, 'other'],
  ] as const)('maps finish_reason %s to %s', async (wire, mapped) => {
    const server = await serve({
      body: { choices: [{ finish_reason: wire, message: { role: 'assistant', content: 'Answer.' } }] },
    });
    const reply = await provider.complete(
      request(config(server.baseUrl), [{ role: 'user', content: 'hello' }]),
    );
    expect(reply.finishReason).toBe(mapped);
    expect(reply.content).toBe('Answer.');
    expect(reply.toolCalls).toEqual([]);
    // no usage reported: estimated, ceil(5 / 4) and ceil(7 / 4); no model reported: the configured one
    expect(reply.usage).toEqual({ inputTokens: 2, outputTokens: 2 });
    expect(reply.model).toBe('gpt-test');
  });

  it.each([
    [
      'not JSON',
      'this is not json',
      /^127\.0\.0\.1:\d+ answered with something that is not JSON: this is not json$/,
    ],
    ['no choices', { choices: [] }, /invalid completion: choices: /],
    [
      'wrong types',
      { choices: [{ message: { content: 5 } }] },
      /invalid completion: choices\.0\.message\.content: /,
    ],
    [
      'bad tool call',
      { choices: [{ message: { tool_calls: [{ id: 'x', function: { arguments: '{}' } }] } }] },
      /choices\.0\.message\.tool_calls\.0\.function\.name/,
    ],
  ])('refuses a malformed answer (%s) as bad_response', async (_, body, message) => {
    const server = await serve({ body });
    const error = await failure(provider.complete(request(config(server.baseUrl), MESSAGES)));
    expect(error.code).toBe(ModelErrorCode.badResponse);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(message);
  });
});

describe('errors', () => {
  const openaiError = (message: string, code: string | null = null, type = 'invalid_request_error') => ({
    error: { message, type, param: null, code },
  });

  it.each([
    [401, openaiError('Incorrect API key provided'), {}, ModelErrorCode.auth, undefined],
    [403, openaiError('Forbidden'), {}, ModelErrorCode.auth, undefined],
    [
      429,
      openaiError('Rate limit reached', 'rate_limit_exceeded'),
      { 'retry-after': '7' },
      ModelErrorCode.rateLimit,
      7000,
    ],
    [
      429,
      openaiError('slow down'),
      { 'retry-after': '2', 'retry-after-ms': '1500' },
      ModelErrorCode.rateLimit,
      1500,
    ],
    [429, openaiError('slow down'), { 'retry-after': 'soon' }, ModelErrorCode.rateLimit, undefined],
    [429, 'Too Many Requests', {}, ModelErrorCode.rateLimit, undefined],
    [
      400,
      openaiError("This model's maximum context length is 8192 tokens.", 'context_length_exceeded'),
      {},
      ModelErrorCode.contextLength,
      undefined,
    ],
    [400, openaiError('Prompt rejected', 'content_filter'), {}, ModelErrorCode.contentPolicy, undefined],
    [
      400,
      openaiError('Your request was rejected as a result of our safety system.', 'content_policy_violation'),
      {},
      ModelErrorCode.contentPolicy,
      undefined,
    ],
    [400, openaiError("Invalid value for 'tool_choice'"), {}, ModelErrorCode.badRequest, undefined],
    [404, openaiError('The model `gpt-test` does not exist'), {}, ModelErrorCode.badRequest, undefined],
    [422, { detail: 'Unprocessable' }, {}, ModelErrorCode.badRequest, undefined],
    [500, openaiError('Internal error', null, 'server_error'), {}, ModelErrorCode.serverError, undefined],
    [502, 'Bad Gateway', {}, ModelErrorCode.serverError, undefined],
    [504, '', {}, ModelErrorCode.serverError, undefined],
    [503, openaiError('Service unavailable'), { 'retry-after': '3' }, ModelErrorCode.overloaded, 3000],
    [529, { error: 'Overloaded' }, {}, ModelErrorCode.overloaded, undefined],
  ] as const)('maps HTTP %i %j to its code', async (status, body, headers, code, retryAfterMs) => {
    const server = await serve({ status, body, headers });
    const error = await failure(provider.complete(request(config(server.baseUrl), MESSAGES)));
    expect(error.code).toBe(code);
    expect(error.status).toBe(status);
    expect(error.retryAfterMs).toBe(retryAfterMs);
    const retryable = ![
      ModelErrorCode.auth,
      ModelErrorCode.contextLength,
      ModelErrorCode.contentPolicy,
      ModelErrorCode.badRequest,
    ].includes(code as 'MODEL_AUTH');
    expect(error.retryable).toBe(retryable);
    expect(error.message).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+ answered HTTP ${status}`));
    const text = typeof body === 'string' ? body : 'error' in body ? body.error : body.detail;
    const quoted = typeof text === 'string' ? text : text.message;
    if (quoted !== '') expect(error.message).toContain(quoted);
  });

  it('honours a retry-after HTTP date', async () => {
    const at = new Date(Math.ceil((Date.now() + 30_000) / 1000) * 1000);
    const server = await serve({ status: 429, body: {}, headers: { 'retry-after': at.toUTCString() } });
    const error = await failure(provider.complete(request(config(server.baseUrl), MESSAGES)));
    expect(error.retryAfterMs).toBeGreaterThan(25_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(31_000);
  });

  it('parses retry-after forms exactly', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    const h = (init: Record<string, string>) => new Headers(init);
    expect(parseRetryAfter(h({ 'retry-after': '1.5' }), now)).toBe(1500);
    expect(parseRetryAfter(h({ 'retry-after': 'Wed, 01 Jan 2025 00:00:10 GMT' }), now)).toBe(10_000);
    expect(parseRetryAfter(h({ 'retry-after': 'Tue, 31 Dec 2024 23:59:00 GMT' }), now)).toBe(0);
    expect(parseRetryAfter(h({ 'retry-after-ms': '250.2', 'retry-after': '9' }), now)).toBe(251);
    expect(parseRetryAfter(h({ 'retry-after-ms': 'x', 'retry-after': '9' }), now)).toBe(9000);
    expect(parseRetryAfter(h({}), now)).toBeUndefined();
  });

  it('times out with MODEL_TIMEOUT', async () => {
    const server = await serve({ hang: true });
    const started = Date.now();
    const error = await failure(
      provider.complete(request(config(server.baseUrl, { timeoutMs: 200 }), MESSAGES)),
    );
    expect(error.code).toBe(ModelErrorCode.timeout);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/^127\.0\.0\.1:\d+ did not answer within 200 ms$/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("rethrows the caller's cancellation as is", async () => {
    const server = await serve({ hang: true });
    const controller = new AbortController();
    const reason = new Error('activity cancelled');
    setTimeout(() => controller.abort(reason), 50);
    await expect(
      provider.complete(request(config(server.baseUrl), MESSAGES), controller.signal),
    ).rejects.toBe(reason);
  });

  it('maps an unreachable server to a retryable server error', async () => {
    const server = await serve({ body: {} });
    const baseUrl = server.baseUrl;
    await cleanups.pop()?.();
    const error = await failure(provider.complete(request(config(baseUrl), MESSAGES)));
    expect(error.code).toBe(ModelErrorCode.serverError);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/^cannot reach 127\.0\.0\.1:\d+: ECONNREFUSED$/);
  });

  it('never puts the API key in an error message, even when the server echoes it', async () => {
    const echo = (req: Recorded): string => String(req.headers.authorization);
    const cases: ((req: Recorded) => Reply)[] = [
      (req) => ({ status: 401, body: { error: { message: `Incorrect API key provided: ${echo(req)}` } } }),
      // the key straddles the 300-character cut of quoted text
      (req) => ({ status: 400, body: { error: { message: `${'x'.repeat(270)} ${echo(req)}` } } }),
      (req) => ({ status: 500, body: `<html>${echo(req)}</html>` }),
      (req) => ({ status: 200, body: `not json ${echo(req)}` }),
    ];
    for (const reply of cases) {
      const server = await serve(reply);
      const error = await failure(provider.complete(request(config(server.baseUrl), MESSAGES)));
      expect(server.requests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);
      expect(error.message).not.toContain(KEY.slice(0, 10));
      expect(error.message).toContain('[redacted]');
    }
  });
});
