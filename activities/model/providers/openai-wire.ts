/**
 * The OpenAI Chat Completions wire format as `streaming.ts` needs it: the request body, the error
 * and finish-reason mapping. These mirror the private functions of `../openai-compatible.ts`
 * exactly (a test pins that the streaming request equals the non-streaming one plus `stream`);
 * once that module exports them, this file reduces to re-exports.
 * @module
 */
import { z } from 'zod';
import { ModelError, ModelErrorCode } from '../errors.ts';
import { DEFAULT_TIMEOUT_MS, parseRetryAfter, requestBody, toolNameTable } from '../openai-compatible.ts';
import type { ModelConfig, ModelRequest, ModelResponse, ToolDefinition } from '../types.ts';
import { hostOf, quote, readApiKey, redactor, zodProblems } from './http.ts';
import type { ToolNames } from './http.ts';

/** The `openai-compatible` model config. */
export type OpenAIModelConfig = Extract<ModelConfig, { provider: 'openai-compatible' }>;

const ConfigSchema = z.strictObject({
  provider: z.literal('openai-compatible'),
  baseUrl: z.url({ protocol: /^https?$/ }),
  model: z.string().min(1),
  apiKeyEnv: z.string().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.int().positive().optional(),
  timeoutMs: z.int().positive().optional(),
});

/** Everything one streaming Chat Completions call sends, computed before any I/O. */
export interface OpenAICall {
  readonly config: OpenAIModelConfig;
  readonly url: string;
  readonly where: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Readonly<Record<string, unknown>>;
  readonly names: ToolNames;
  readonly timeoutMs: number;
  readonly redact: (text: string) => string;
}

/**
 * Validates the config and builds a streaming request (`stream: true`, and
 * `stream_options.include_usage` unless `includeUsage` is false); throws `ModelError` before sending.
 */
export function prepareOpenAIStreamCall(
  request: ModelRequest,
  env: NodeJS.ProcessEnv,
  includeUsage: boolean,
): OpenAICall {
  const parsed = ConfigSchema.safeParse(request.model);
  if (!parsed.success) {
    throw new ModelError(
      ModelErrorCode.badRequest,
      `invalid openai-compatible model config: ${zodProblems(parsed.error, 20)}`,
    );
  }
  const config = Object.freeze(parsed.data) as OpenAIModelConfig;
  const names = openAIToolNames(request.tools);
  const apiKey = readApiKey(env, config.apiKeyEnv);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
  if (apiKey !== undefined) headers.authorization = `Bearer ${apiKey}`;
  const body: Record<string, unknown> = { ...openAIRequestBody(config, request, names), stream: true };
  if (includeUsage) body.stream_options = { include_usage: true };
  return {
    config,
    url: `${config.baseUrl.replace(/\/+$/, '')}/chat/completions`,
    where: hostOf(config.baseUrl),
    headers,
    body,
    names,
    timeoutMs: config.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    redact: redactor(apiKey),
  };
}

/** Wire names of the offered tools (the non-streaming provider's own table). */
const openAIToolNames = (tools: readonly ToolDefinition[]): ToolNames => toolNameTable(tools);

/** The Chat Completions body the non-streaming provider sends. */
export function openAIRequestBody(
  config: OpenAIModelConfig,
  request: ModelRequest,
  names: ToolNames,
): Record<string, unknown> {
  return requestBody(config, request, names);
}

/** JSON arguments; text that is not JSON stays raw, for the gateway to refuse as invalid arguments. */
export function parseOpenAIArguments(args: string): unknown {
  if (args.trim() === '') return {};
  try {
    return JSON.parse(args) as unknown;
  } catch {
    return args;
  }
}

/** `finish_reason` → finish reason, as the non-streaming provider maps it. */
export function openAIFinishReason(
  reason: string | null | undefined,
  hasCalls: boolean,
): ModelResponse['finishReason'] {
  switch (reason) {
    case 'tool_calls':
    case 'function_call':
      return 'tool_calls';
    case 'stop':
    case null:
    case undefined:
      return hasCalls ? 'tool_calls' : reason === 'stop' ? 'stop' : 'other';
    case 'length':
      return 'length';
    case 'content_filter':
      return 'content_filter';
    default:
      return 'other';
  }
}

interface WireError {
  readonly message: string | undefined;
  readonly type: string | undefined;
  readonly code: string | undefined;
}

function wireError(body: unknown): WireError {
  let json = body;
  if (typeof body === 'string') {
    try {
      json = JSON.parse(body);
    } catch {
      return { message: body.trim() === '' ? undefined : body, type: undefined, code: undefined };
    }
  }
  const error = (json as { error?: unknown } | null)?.error;
  if (typeof error === 'string') return { message: error, type: undefined, code: undefined };
  if (typeof error !== 'object' || error === null) {
    const detail = (json as { detail?: unknown; message?: unknown } | null)?.detail;
    const message = (json as { message?: unknown } | null)?.message;
    return {
      message:
        typeof detail === 'string'
          ? detail
          : typeof message === 'string'
            ? message
            : typeof body === 'string'
              ? body
              : JSON.stringify(body),
      type: undefined,
      code: undefined,
    };
  }
  const e = error as { message?: unknown; type?: unknown; code?: unknown };
  return {
    message: typeof e.message === 'string' ? e.message : undefined,
    type: typeof e.type === 'string' ? e.type : undefined,
    code: typeof e.code === 'string' || typeof e.code === 'number' ? String(e.code) : undefined,
  };
}

const CONTEXT_LENGTH = /context[_ ]length|context window|maximum context|too many tokens/i;
const CONTENT_POLICY = /content[_ ]filter|content[_ ](management )?policy|safety system/i;
const RATE_LIMIT = /rate[_ ]limit/i;
const OVERLOADED = /overloaded/i;

/**
 * The {@link ModelError} of an OpenAI-style error: an HTTP error answer (status and headers set,
 * mapped exactly as the non-streaming provider does) or an `{"error": …}` chunk inside a stream
 * (status undefined; mapped by its code, type and text, a server error when they say nothing).
 */
export function openAIError(
  status: number | undefined,
  headers: Headers | undefined,
  body: unknown,
  where: string,
  redact: (text: string) => string,
  now: number,
): ModelError {
  const error = wireError(body);
  const detail = error.message === undefined ? '' : `: ${quote(redact(error.message))}`;
  const tags = `${error.code ?? ''} ${error.type ?? ''}`;
  const text = error.message ?? '';
  if (status === undefined) {
    const message = `${where} reported an error in the stream${detail}`;
    const code =
      CONTEXT_LENGTH.test(tags) || CONTEXT_LENGTH.test(text)
        ? ModelErrorCode.contextLength
        : CONTENT_POLICY.test(tags) || CONTENT_POLICY.test(text)
          ? ModelErrorCode.contentPolicy
          : RATE_LIMIT.test(tags)
            ? ModelErrorCode.rateLimit
            : OVERLOADED.test(tags) || OVERLOADED.test(text)
              ? ModelErrorCode.overloaded
              : error.type === 'invalid_request_error'
                ? ModelErrorCode.badRequest
                : ModelErrorCode.serverError;
    return new ModelError(code, message);
  }
  const message = `${where} answered HTTP ${status}${detail}`;
  const retryAfterMs = headers === undefined ? undefined : parseRetryAfter(headers, now);
  const withRetry = retryAfterMs === undefined ? { status } : { status, retryAfterMs };
  if (status === 401 || status === 403) return new ModelError(ModelErrorCode.auth, message, { status });
  if (status === 429) return new ModelError(ModelErrorCode.rateLimit, message, withRetry);
  if (status === 400 || status === 404 || status === 413 || status === 422) {
    if (CONTEXT_LENGTH.test(tags) || (status !== 404 && CONTEXT_LENGTH.test(text))) {
      return new ModelError(ModelErrorCode.contextLength, message, { status });
    }
    if (CONTENT_POLICY.test(tags) || (status !== 404 && CONTENT_POLICY.test(text))) {
      return new ModelError(ModelErrorCode.contentPolicy, message, { status });
    }
    return new ModelError(ModelErrorCode.badRequest, message, { status });
  }
  if (status === 408) return new ModelError(ModelErrorCode.timeout, message, { status });
  if (status === 503 || status === 529) return new ModelError(ModelErrorCode.overloaded, message, withRetry);
  if (status >= 500) return new ModelError(ModelErrorCode.serverError, message, withRetry);
  if (status >= 400) return new ModelError(ModelErrorCode.badRequest, message, { status });
  return new ModelError(ModelErrorCode.badResponse, message, { status });
}
