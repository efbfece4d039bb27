/**
 * A stand-in for the OpenAI Chat Completions API (`POST …/chat/completions`), over real HTTP on
 * 127.0.0.1, for tests: scripted replies in OpenAI's real JSON shapes (`object: 'chat.completion'`,
 * `choices[0].message.tool_calls[].function.arguments` as JSON text, `usage`), streaming as
 * `chat.completion.chunk` SSE events ending in `data: [DONE]` (a usage chunk when the request asks
 * with `stream_options.include_usage`), errors as `{error:{message,type,param,code}}`, and the
 * failures of {@link StandInFailure}.
 *
 * ```ts
 * const openai = await startOpenAIStandIn();
 * openai.reply({ text: 'Reading it.', toolCalls: [{ name: 'fs.read', args: { path: 'README.md' } }] });
 * openai.failNext({ kind: 'rate_limit', retryAfterSeconds: 2 });
 * // config: { provider: 'openai-compatible', baseUrl: openai.url, model: 'gpt-test' }
 * ```
 * @module
 */
import type { IncomingHttpHeaders } from 'node:http';
import { argumentsText, pieces, sse, startStandIn, wireToolName } from './server.ts';
import type {
  RecordedRequest,
  StandIn,
  StandInOptions,
  StandInReply,
  Usage,
  WireAnswer,
  WireFormat,
} from './server.ts';

export type {
  RecordedRequest,
  StandIn,
  StandInFailure,
  StandInFailureKind,
  StandInOptions,
  StandInReply,
  StandInReplySource,
  StandInToolCall,
} from './server.ts';

/** Starts an OpenAI stand-in; its `url` ends in `/v1`, as an `openai-compatible` `baseUrl` does. */
export function startOpenAIStandIn(options: StandInOptions = {}): Promise<StandIn> {
  return startStandIn(openAIWire, options);
}

const CREATED = 1_767_225_600; // 2026-01-01T00:00:00Z: fixed, so snapshots are stable

function error(
  status: number,
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
) {
  return { status, body: { error: { message, type, param, code } } };
}

function modelOf(reply: StandInReply, request: RecordedRequest): string {
  const asked = (request.body as { model?: unknown } | null)?.model;
  return reply.model ?? (typeof asked === 'string' ? asked : 'gpt-standin');
}

function callId(reply: StandInReply, n: number, index: number): string {
  return reply.toolCalls?.[index]?.id ?? `call_standin_${n}_${index}`;
}

function finish(reply: StandInReply): string {
  return reply.finishReason ?? ((reply.toolCalls?.length ?? 0) > 0 ? 'tool_calls' : 'stop');
}

function wireUsage(usage: Usage) {
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
  };
}

const openAIWire: WireFormat = {
  basePath: '/v1',
  headers: (n) => ({ 'x-request-id': `req_standin_${n}` }),
  routes: (method, path) => method === 'POST' && /\/chat\/completions(\?.*)?$/.test(path),
  notFound: (method, path) => error(404, `Invalid URL (${method} ${path})`, 'invalid_request_error', null),
  authorized: (headers: IncomingHttpHeaders, apiKey) => headers.authorization === `Bearer ${apiKey}`,
  validate(request, parsed): WireAnswer | undefined {
    if (!parsed) {
      return error(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        'invalid_request_error',
        null,
      );
    }
    const body = request.body as { model?: unknown; messages?: unknown } | undefined;
    if (typeof body?.model !== 'string') {
      return error(400, 'you must provide a model parameter', 'invalid_request_error', null);
    }
    if (!Array.isArray(body.messages)) {
      return error(
        400,
        "Missing required parameter: 'messages'.",
        'invalid_request_error',
        'missing_required_parameter',
        'messages',
      );
    }
    return undefined;
  },
  failure(kind, _n, retryAfterSeconds): WireAnswer {
    switch (kind) {
      case 'server_error':
        return error(
          500,
          'The server had an error while processing your request. Sorry about that!',
          'server_error',
          null,
        );
      case 'rate_limit':
        return {
          ...error(
            429,
            `Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${retryAfterSeconds}s.`,
            'requests',
            'rate_limit_exceeded',
          ),
          headers: { 'retry-after': String(retryAfterSeconds) },
        };
      case 'overloaded':
        return error(
          503,
          'That model is currently overloaded with other requests. You can retry your request.',
          'server_error',
          null,
        );
      case 'context_length':
        return error(
          400,
          "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.",
          'invalid_request_error',
          'context_length_exceeded',
          'messages',
        );
      case 'auth':
        return error(
          401,
          'Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.',
          'invalid_request_error',
          'invalid_api_key',
        );
    }
  },
  completion(reply, request, usage) {
    const calls = reply.toolCalls ?? [];
    const message: Record<string, unknown> = {
      role: 'assistant',
      content: reply.text ?? null,
      refusal: null,
    };
    if (calls.length > 0) {
      message.tool_calls = calls.map((call, index) => ({
        id: callId(reply, request.n, index),
        type: 'function',
        function: { name: wireToolName(call.name), arguments: argumentsText(call.args) },
      }));
    }
    return {
      id: `chatcmpl-standin-${request.n}`,
      object: 'chat.completion',
      created: CREATED,
      model: modelOf(reply, request),
      choices: [{ index: 0, message, logprobs: null, finish_reason: finish(reply) }],
      usage: wireUsage(usage),
      system_fingerprint: null,
    };
  },
  events(reply, request, usage, chunkChars) {
    const includeUsage =
      (request.body as { stream_options?: { include_usage?: unknown } } | null)?.stream_options
        ?.include_usage === true;
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) => ({
      id: `chatcmpl-standin-${request.n}`,
      object: 'chat.completion.chunk',
      created: CREATED,
      model: modelOf(reply, request),
      system_fingerprint: null,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {}),
    });
    const out = [sse(chunk({ role: 'assistant', content: '', refusal: null }))];
    for (const piece of pieces(reply.text ?? '', chunkChars)) out.push(sse(chunk({ content: piece })));
    for (const [index, call] of (reply.toolCalls ?? []).entries()) {
      out.push(
        sse(
          chunk({
            tool_calls: [
              {
                index,
                id: callId(reply, request.n, index),
                type: 'function',
                function: { name: wireToolName(call.name), arguments: '' },
              },
            ],
          }),
        ),
      );
      for (const piece of pieces(argumentsText(call.args), chunkChars)) {
        out.push(sse(chunk({ tool_calls: [{ index, function: { arguments: piece } }] })));
      }
    }
    out.push(sse(chunk({}, finish(reply))));
    if (includeUsage) {
      out.push(
        sse({
          id: `chatcmpl-standin-${request.n}`,
          object: 'chat.completion.chunk',
          created: CREATED,
          model: modelOf(reply, request),
          system_fingerprint: null,
          choices: [],
          usage: wireUsage(usage),
        }),
      );
    }
    out.push(sse('[DONE]'));
    return out;
  },
  streamError: () =>
    sse({
      error: {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: null,
      },
    }),
  malformedEvent: () => sse('{"id":"chatcmpl-standin","object":"chat.completion.chunk","choices":[{'),
};
