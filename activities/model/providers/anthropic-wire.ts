/**
 * The Anthropic Messages wire format, shared by the non-streaming provider (`anthropic.ts`) and the
 * streaming one (`streaming.ts`): config validation, the request, error and stop-reason mapping.
 *
 * Messages: system messages (wherever they are) become the top-level `system` prompt, joined by
 * blank lines. An assistant turn becomes a `text` block (when it has non-blank text) followed by one
 * `tool_use` block per call; each `tool` message becomes a `tool_result` block of a user message,
 * `is_error` when its JSON says `"ok": false`. Consecutive messages of one role are merged into one
 * (so parallel tool results share one user message), with `tool_result` blocks first as the API
 * requires; messages left with no block are dropped. Tool names use the same `.`→`__` encoding as
 * the OpenAI provider.
 * @module
 */
import { z } from 'zod';
import { ModelError, ModelErrorCode } from '../errors.ts';
import { decodeToolName, encodeToolName, parseRetryAfter } from '../openai-compatible.ts';
import type { ChatMessage, ModelRequest, ModelResponse, ToolDefinition } from '../types.ts';
import { hostOf, quote, readApiKey, redactor, zodProblems } from './http.ts';
import type { ToolNames } from './http.ts';

/** Anthropic's public API. */
export const ANTHROPIC_BASE_URL = 'https://api.anthropic.com';
/** The `anthropic-version` header sent with every request. */
export const ANTHROPIC_VERSION = '2023-06-01';
/** `max_tokens` when the config sets none (the API requires one). */
export const DEFAULT_ANTHROPIC_MAX_TOKENS = 1024;
/** The variable holding the API key when the config names none. */
export const DEFAULT_ANTHROPIC_API_KEY_ENV = 'ANTHROPIC_API_KEY';
/** Time limit of one request when the config sets none. */
export const DEFAULT_ANTHROPIC_TIMEOUT_MS = 60_000;

/** Model config of the `anthropic` provider. JSON-serialisable: it travels in workflow input. */
export interface AnthropicModelConfig {
  readonly provider: 'anthropic';
  /** Default `https://api.anthropic.com`; requests go to `{baseUrl}/v1/messages`. */
  readonly baseUrl?: string;
  /** e.g. `claude-sonnet-4-5`. */
  readonly model: string;
  /** Name of the environment variable holding the API key on the worker (default `ANTHROPIC_API_KEY`). */
  readonly apiKeyEnv?: string;
  /** `max_tokens` of each reply (default 1024). */
  readonly maxTokens?: number;
  /** 0 to 1. */
  readonly temperature?: number;
  /** Per-request time limit in ms (default 60 s). */
  readonly timeoutMs?: number;
}

const ConfigSchema = z.strictObject({
  provider: z.literal('anthropic'),
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
  model: z.string().min(1),
  apiKeyEnv: z.string().min(1).optional(),
  maxTokens: z.int().positive().optional(),
  temperature: z.number().min(0).max(1).optional(),
  timeoutMs: z.int().positive().optional(),
});

const WIRE_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Everything one Anthropic call sends, computed before any I/O. */
export interface AnthropicCall {
  readonly config: AnthropicModelConfig;
  readonly url: string;
  readonly where: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Readonly<Record<string, unknown>>;
  readonly names: ToolNames;
  readonly timeoutMs: number;
  readonly redact: (text: string) => string;
}

/** Validates the config and builds the request; throws `ModelError` (bad_request, auth) before sending. */
export function prepareAnthropicCall(
  request: ModelRequest,
  env: NodeJS.ProcessEnv,
  stream: boolean,
): AnthropicCall {
  const config = checkAnthropicConfig(request.model);
  const names = anthropicToolNames(request.tools);
  const apiKey = readApiKey(env, config.apiKeyEnv ?? DEFAULT_ANTHROPIC_API_KEY_ENV);
  const baseUrl = config.baseUrl ?? ANTHROPIC_BASE_URL;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: stream ? 'text/event-stream' : 'application/json',
    'anthropic-version': ANTHROPIC_VERSION,
  };
  if (apiKey !== undefined) headers['x-api-key'] = apiKey;
  const body = anthropicRequestBody(config, request, names);
  return {
    config,
    url: `${baseUrl.replace(/\/+$/, '')}/v1/messages`,
    where: hostOf(baseUrl),
    headers,
    body: stream ? { ...body, stream: true } : body,
    names,
    timeoutMs: config.timeoutMs ?? DEFAULT_ANTHROPIC_TIMEOUT_MS,
    redact: redactor(apiKey),
  };
}

/** Parses an `anthropic` model config; throws `MODEL_BAD_REQUEST` listing the problems. */
export function checkAnthropicConfig(model: unknown): AnthropicModelConfig {
  const parsed = ConfigSchema.safeParse(model);
  if (!parsed.success) {
    throw new ModelError(
      ModelErrorCode.badRequest,
      `invalid anthropic model config: ${zodProblems(parsed.error, 20)}`,
    );
  }
  return Object.freeze(parsed.data) as AnthropicModelConfig;
}

/** The wire-name table of the offered tools; throws `MODEL_BAD_REQUEST` for unencodable or colliding names. */
export function anthropicToolNames(tools: readonly ToolDefinition[]): ToolNames {
  for (const tool of tools) {
    const wire = tool.name.replaceAll('.', '__');
    if (!WIRE_NAME.test(wire)) {
      throw new ModelError(
        ModelErrorCode.badRequest,
        `tool name ${JSON.stringify(tool.name)} cannot be offered to an Anthropic model: its wire name ${JSON.stringify(wire)} must match ${WIRE_NAME.source}`,
      );
    }
  }
  // checks collisions and duplicates, with the OpenAI provider's messages
  decodeToolName('', tools);
  const toWire = new Map<string, string>();
  const fromWire = new Map<string, string>();
  for (const tool of tools) {
    const wire = encodeToolName(tool.name);
    toWire.set(tool.name, wire);
    fromWire.set(wire, tool.name);
  }
  return { toWire, fromWire };
}

/** The wire name of a tool in the history, which may be one the model invented. */
function historyWireName(name: string, names: ToolNames): string {
  const known = names.toWire.get(name);
  if (known !== undefined) return known;
  const wire = name
    .replaceAll('.', '__')
    .replace(/[^a-zA-Z0-9_-]/g, '_')
    .slice(0, 64);
  return wire === '' ? '_' : wire;
}

/** The Messages API body (without `stream`). */
export function anthropicRequestBody(
  config: AnthropicModelConfig,
  request: ModelRequest,
  names: ToolNames,
): Record<string, unknown> {
  const { system, messages } = anthropicMessages(request.messages, names);
  const body: Record<string, unknown> = {
    model: config.model,
    max_tokens: config.maxTokens ?? DEFAULT_ANTHROPIC_MAX_TOKENS,
  };
  if (system !== undefined) body.system = system;
  body.messages = messages;
  if (request.tools.length > 0) {
    body.tools = request.tools.map((tool) => ({
      name: names.toWire.get(tool.name),
      description: tool.description,
      input_schema: tool.parameters,
    }));
  }
  if (config.temperature !== undefined) body.temperature = config.temperature;
  return body;
}

type Block = Record<string, unknown> & { readonly type: string };

interface WireMessage {
  readonly role: 'user' | 'assistant';
  readonly content: Block[];
}

/** System prompt and Anthropic messages of a conversation (see the module notes). */
export function anthropicMessages(
  messages: readonly ChatMessage[],
  names: ToolNames,
): { system: string | undefined; messages: WireMessage[] } {
  const system: string[] = [];
  const out: WireMessage[] = [];
  const push = (role: WireMessage['role'], blocks: Block[]): void => {
    if (blocks.length === 0) return;
    const last = out.at(-1);
    if (last?.role === role) {
      last.content.push(...blocks);
      // tool results must open the user message that answers the tool calls
      if (role === 'user') {
        const results = last.content.filter((b) => b.type === 'tool_result');
        const others = last.content.filter((b) => b.type !== 'tool_result');
        last.content.splice(0, last.content.length, ...results, ...others);
      }
    } else {
      out.push({ role, content: blocks });
    }
  };
  for (const message of messages) {
    switch (message.role) {
      case 'system':
        if (message.content.trim() !== '') system.push(message.content);
        break;
      case 'user':
        push('user', message.content.trim() === '' ? [] : [{ type: 'text', text: message.content }]);
        break;
      case 'assistant': {
        const blocks: Block[] = [];
        if (message.content !== null && message.content.trim() !== '') {
          blocks.push({ type: 'text', text: message.content });
        }
        for (const call of message.toolCalls) {
          blocks.push({
            type: 'tool_use',
            id: call.id,
            name: historyWireName(call.tool, names),
            input: toolInput(call.args),
          });
        }
        push('assistant', blocks);
        break;
      }
      case 'tool': {
        const block: Block = {
          type: 'tool_result',
          tool_use_id: message.toolCallId,
          content: message.content,
        };
        if (isFailedResult(message.content)) block.is_error = true;
        push('user', [block]);
        break;
      }
    }
  }
  return { system: system.length === 0 ? undefined : system.join('\n\n'), messages: out };
}

/**
 * `tool_use.input` must be an object: JSON text of an object is parsed; anything else (raw text
 * the model wrote, arrays, scalars, from a history another provider produced) is wrapped as
 * `{"_arguments": value}`.
 */
function toolInput(args: unknown): Record<string, unknown> {
  let value = args;
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value) as unknown;
    } catch {
      return { _arguments: args };
    }
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    return value as Record<string, unknown>;
  }
  return { _arguments: args };
}

function isFailedResult(content: string): boolean {
  try {
    const parsed = JSON.parse(content) as unknown;
    return typeof parsed === 'object' && parsed !== null && (parsed as { ok?: unknown }).ok === false;
  } catch {
    return false;
  }
}

/** A tool_use `input` as a `ProposedCall`'s args: a JSON object stays, text is parsed when it can be. */
export function parseToolInput(json: string): unknown {
  if (json.trim() === '') return {};
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return json;
  }
}

/**
 * Tracks the rationale of tool calls in content order: a call's rationale is the text of the text
 * blocks right before it (skipping over other calls), blank → null.
 */
export class RationaleTracker {
  private segment = '';
  private closed = false;

  /** A text block starts. */
  startText(): void {
    if (this.closed) {
      this.segment = '';
      this.closed = false;
    }
  }

  /** Text arrives in the current text block. */
  addText(text: string): void {
    this.segment += text;
  }

  /** A tool call ends; returns its rationale. */
  callRationale(): string | null {
    this.closed = true;
    return this.segment.trim() === '' ? null : this.segment;
  }
}

/** Maps `stop_reason` to a finish reason. */
export function anthropicFinishReason(
  reason: string | null | undefined,
  hasCalls: boolean,
): ModelResponse['finishReason'] {
  switch (reason) {
    case 'tool_use':
      return 'tool_calls';
    case 'end_turn':
    case 'stop_sequence':
      return hasCalls ? 'tool_calls' : 'stop';
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'refusal':
      return 'content_filter';
    default:
      return hasCalls ? 'tool_calls' : 'other';
  }
}

/** The `usage` object of a message (and of stream events). */
export const UsageSchema = z.looseObject({
  input_tokens: z.int().nonnegative().nullish(),
  output_tokens: z.int().nonnegative().nullish(),
  cache_creation_input_tokens: z.int().nonnegative().nullish(),
  cache_read_input_tokens: z.int().nonnegative().nullish(),
});

/**
 * Total input tokens of a wire usage, undefined when it reports none: uncached plus cache writes
 * and reads (as OpenAI's `prompt_tokens` counts cached tokens too).
 */
export function inputTokensOf(usage: z.infer<typeof UsageSchema>): number | undefined {
  if (usage.input_tokens === null || usage.input_tokens === undefined) return undefined;
  return usage.input_tokens + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0);
}

interface WireError {
  readonly message: string | undefined;
  readonly type: string | undefined;
}

/** The `{type:'error', error:{type, message}}` body (or whatever else the server sent). */
export function anthropicWireError(body: unknown): WireError {
  let json = body;
  if (typeof body === 'string') {
    try {
      json = JSON.parse(body);
    } catch {
      return { message: body.trim() === '' ? undefined : body, type: undefined };
    }
  }
  const error = (json as { error?: unknown } | null)?.error;
  if (typeof error === 'string') return { message: error, type: undefined };
  if (typeof error !== 'object' || error === null) {
    const message = (json as { message?: unknown } | null)?.message;
    return {
      message: typeof message === 'string' ? message : typeof body === 'string' ? body : JSON.stringify(body),
      type: undefined,
    };
  }
  const e = error as { message?: unknown; type?: unknown };
  return {
    message: typeof e.message === 'string' ? e.message : undefined,
    type: typeof e.type === 'string' ? e.type : undefined,
  };
}

const CONTEXT_LENGTH =
  /prompt is too long|context limit|context window|context[_ ]length|maximum context|too many (input )?tokens/i;
const CONTENT_POLICY = /content[_ ]filter|content[_ ](management |usage )?policy|usage policy|safety/i;

/**
 * The {@link ModelError} of an Anthropic error: an HTTP error answer (`status` and `headers` set)
 * or an `error` event inside a stream (`status` undefined). The error `type` decides first, the
 * status next: auth (401/403/402, `authentication_error`, `permission_error`, `billing_error`),
 * rate limit (429, with retry-after), overloaded (529, 503, `overloaded_error`), timeout (408,
 * 504 `timeout_error`), server error (5xx, `api_error`), context length and content policy (a 400
 * whose text says so), otherwise bad request.
 */
export function anthropicError(
  status: number | undefined,
  headers: Headers | undefined,
  body: unknown,
  where: string,
  redact: (text: string) => string,
  now: number,
): ModelError {
  const error = anthropicWireError(body);
  const detail = error.message === undefined ? '' : `: ${quote(redact(error.message))}`;
  const message =
    status === undefined
      ? `${where} reported ${error.type ?? 'an error'} in the stream${detail}`
      : `${where} answered HTTP ${status}${detail}`;
  const retryAfterMs = headers === undefined ? undefined : parseRetryAfter(headers, now);
  const base = status === undefined ? {} : { status };
  const withRetry = retryAfterMs === undefined ? base : { ...base, retryAfterMs };
  const text = error.message ?? '';
  const type = error.type ?? '';
  const make = (code: ModelErrorCode, options: { status?: number; retryAfterMs?: number } = base) =>
    new ModelError(code, message, options);

  if (type === 'authentication_error' || type === 'permission_error' || type === 'billing_error') {
    return make(ModelErrorCode.auth);
  }
  if (type === 'rate_limit_error') return make(ModelErrorCode.rateLimit, withRetry);
  if (type === 'overloaded_error') return make(ModelErrorCode.overloaded, withRetry);
  if (type === 'timeout_error') return make(ModelErrorCode.timeout, withRetry);
  if (type === 'api_error') return make(ModelErrorCode.serverError, withRetry);
  if (status === undefined) {
    if (CONTEXT_LENGTH.test(text)) return make(ModelErrorCode.contextLength);
    if (CONTENT_POLICY.test(text)) return make(ModelErrorCode.contentPolicy);
    return type === 'invalid_request_error'
      ? make(ModelErrorCode.badRequest)
      : make(ModelErrorCode.serverError);
  }
  if (status === 401 || status === 402 || status === 403) return make(ModelErrorCode.auth);
  if (status === 429) return make(ModelErrorCode.rateLimit, withRetry);
  if (status === 529 || status === 503) return make(ModelErrorCode.overloaded, withRetry);
  if (status === 408 || status === 504) return make(ModelErrorCode.timeout, withRetry);
  if (status >= 500) return make(ModelErrorCode.serverError, withRetry);
  if (status === 400 || status === 413 || status === 422) {
    if (CONTEXT_LENGTH.test(text)) return make(ModelErrorCode.contextLength);
    if (CONTENT_POLICY.test(text)) return make(ModelErrorCode.contentPolicy);
    return make(ModelErrorCode.badRequest);
  }
  if (status >= 400) return make(ModelErrorCode.badRequest);
  // 1xx/3xx (redirects are not followed)
  return make(ModelErrorCode.badResponse);
}
