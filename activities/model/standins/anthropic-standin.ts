/**
 * A stand-in for the Anthropic Messages API (`POST /v1/messages`), over real HTTP on 127.0.0.1,
 * for tests: scripted replies in Anthropic's real JSON shapes (`type: 'message'`, `content` of
 * `text` and `tool_use` blocks, `stop_reason`, `usage`), streaming as the real SSE sequence
 * (message_start, ping, content_block_start / content_block_delta (`text_delta`,
 * `input_json_delta`) / content_block_stop, message_delta, message_stop), errors as
 * `{type:'error', error:{type, message}, request_id}`, and the failures of {@link StandInFailure}.
 * Like the real API it refuses requests without `anthropic-version`, `model`, `max_tokens` or
 * `messages` (HTTP 400).
 *
 * ```ts
 * const anthropic = await startAnthropicStandIn({ apiKey: 'sk-ant-test' });
 * anthropic.reply({ text: 'Reading it.', toolCalls: [{ name: 'fs.read', args: { path: 'README.md' } }] });
 * anthropic.failNext('overloaded', 2);
 * // config: { provider: 'anthropic', baseUrl: anthropic.url, model: 'claude-test' }
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

/** Starts an Anthropic stand-in; its `url` is the origin, as an `anthropic` `baseUrl` is. */
export function startAnthropicStandIn(options: StandInOptions = {}): Promise<StandIn> {
  return startStandIn(anthropicWire, options);
}

function error(status: number, type: string, message: string, n: number): WireAnswer {
  return { status, body: { type: 'error', error: { type, message }, request_id: `req_standin_${n}` } };
}

function modelOf(reply: StandInReply, request: RecordedRequest): string {
  const asked = (request.body as { model?: unknown } | null)?.model;
  return reply.model ?? (typeof asked === 'string' ? asked : 'claude-standin');
}

function toolId(reply: StandInReply, n: number, index: number): string {
  return reply.toolCalls?.[index]?.id ?? `toolu_standin_${n}_${index}`;
}

function stopReason(reply: StandInReply): string {
  return reply.finishReason ?? ((reply.toolCalls?.length ?? 0) > 0 ? 'tool_use' : 'end_turn');
}

// `input` of a non-streamed tool_use: JSON text is parsed; unparsable text is sent as is
// (the real API never does that; it lets tests feed a provider a malformed input)
function input(args: unknown): unknown {
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args) as unknown;
  } catch {
    return args;
  }
}

const anthropicWire: WireFormat = {
  basePath: '',
  headers: (n) => ({ 'request-id': `req_standin_${n}` }),
  routes: (method, path) => method === 'POST' && /^\/v1\/messages(\?.*)?$/.test(path),
  notFound: (_method, _path, n) => error(404, 'not_found_error', 'Not Found', n),
  authorized: (headers: IncomingHttpHeaders, apiKey) => headers['x-api-key'] === apiKey,
  validate(request, parsed): WireAnswer | undefined {
    if (request.headers['anthropic-version'] === undefined) {
      return error(400, 'invalid_request_error', 'anthropic-version: header is required', request.n);
    }
    if (!parsed) {
      return error(
        400,
        'invalid_request_error',
        'There was an issue with your request body: invalid JSON',
        request.n,
      );
    }
    const body = (request.body ?? {}) as Record<string, unknown>;
    for (const field of ['model', 'max_tokens', 'messages']) {
      if (body[field] === undefined) {
        return error(400, 'invalid_request_error', `${field}: Field required`, request.n);
      }
    }
    return undefined;
  },
  failure(kind, n, retryAfterSeconds): WireAnswer {
    switch (kind) {
      case 'server_error':
        return error(500, 'api_error', 'Internal server error', n);
      case 'rate_limit':
        return {
          ...error(
            429,
            'rate_limit_error',
            'This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.',
            n,
          ),
          headers: { 'retry-after': String(retryAfterSeconds) },
        };
      case 'overloaded':
        return error(529, 'overloaded_error', 'Overloaded', n);
      case 'context_length':
        return error(400, 'invalid_request_error', 'prompt is too long: 215234 tokens > 200000 maximum', n);
      case 'auth':
        return error(401, 'authentication_error', 'invalid x-api-key', n);
    }
  },
  completion(reply, request, usage) {
    const content: Record<string, unknown>[] = [];
    if (reply.text !== undefined && reply.text !== '') content.push({ type: 'text', text: reply.text });
    for (const [index, call] of (reply.toolCalls ?? []).entries()) {
      content.push({
        type: 'tool_use',
        id: toolId(reply, request.n, index),
        name: wireToolName(call.name),
        input: input(call.args),
      });
    }
    return {
      id: `msg_standin_${request.n}`,
      type: 'message',
      role: 'assistant',
      model: modelOf(reply, request),
      content,
      stop_reason: stopReason(reply),
      stop_sequence: null,
      usage: { input_tokens: usage.inputTokens, output_tokens: usage.outputTokens },
    };
  },
  events(reply, request, usage, chunkChars) {
    const out = [
      sse(
        {
          type: 'message_start',
          message: {
            id: `msg_standin_${request.n}`,
            type: 'message',
            role: 'assistant',
            model: modelOf(reply, request),
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: usage.inputTokens, output_tokens: 1 },
          },
        },
        'message_start',
      ),
      sse({ type: 'ping' }, 'ping'),
    ];
    let index = 0;
    if (reply.text !== undefined && reply.text !== '') {
      out.push(
        sse(
          { type: 'content_block_start', index, content_block: { type: 'text', text: '' } },
          'content_block_start',
        ),
      );
      for (const piece of pieces(reply.text, chunkChars)) {
        out.push(
          sse(
            { type: 'content_block_delta', index, delta: { type: 'text_delta', text: piece } },
            'content_block_delta',
          ),
        );
      }
      out.push(sse({ type: 'content_block_stop', index }, 'content_block_stop'));
      index++;
    }
    for (const [position, call] of (reply.toolCalls ?? []).entries()) {
      out.push(
        sse(
          {
            type: 'content_block_start',
            index,
            content_block: {
              type: 'tool_use',
              id: toolId(reply, request.n, position),
              name: wireToolName(call.name),
              input: {},
            },
          },
          'content_block_start',
        ),
      );
      for (const piece of pieces(argumentsText(call.args), chunkChars)) {
        out.push(
          sse(
            { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: piece } },
            'content_block_delta',
          ),
        );
      }
      out.push(sse({ type: 'content_block_stop', index }, 'content_block_stop'));
      index++;
    }
    out.push(
      sse(
        {
          type: 'message_delta',
          delta: { stop_reason: stopReason(reply), stop_sequence: null },
          usage: { output_tokens: usage.outputTokens },
        },
        'message_delta',
      ),
      sse({ type: 'message_stop' }, 'message_stop'),
    );
    return out;
  },
  streamError: (n) =>
    sse(
      {
        type: 'error',
        error: { type: 'overloaded_error', message: 'Overloaded' },
        request_id: `req_standin_${n}`,
      },
      'error',
    ),
  malformedEvent: () => sse('{"type":"message_start","message":{"id":', 'message_start'),
};
