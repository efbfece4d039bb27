/**
 * The `openai-compatible` provider: OpenAI Chat Completions over HTTP (`POST {baseUrl}/chat/completions`),
 * as spoken by OpenAI, Azure-style gateways, vLLM, llama.cpp, Ollama and LiteLLM.
 *
 * Tool names: our tools are named `namespace.name` (`fs.read`), but OpenAI function names must match
 * `^[a-zA-Z0-9_-]{1,64}$`. On the wire every `.` becomes `__` (`fs.read` ↔ `fs__read`); replies are
 * decoded through the table of the tools offered in the request, so the round trip is exact. Two
 * offered tools with the same wire name (`fs.read` and `fs__read`) are refused before sending.
 * A name the model invents is passed on verbatim, for the gateway to refuse as unknown.
 * @module
 */
import { z } from 'zod';
import { ModelError, ModelErrorCode } from './errors.ts';
import type {
  ChatMessage,
  ModelConfig,
  ModelProvider,
  ModelRequest,
  ModelResponse,
  ProposedCall,
  ToolDefinition,
} from './types.ts';
import { argsText, estimateUsage } from './usage.ts';

/** Time limit of one request when the config sets none. */
export const DEFAULT_TIMEOUT_MS = 60_000;

// provider text quoted in error messages is cut to this length
const MAX_QUOTED_CHARS = 300;

const WIRE_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

type OpenAIConfig = Extract<ModelConfig, { provider: 'openai-compatible' }>;

const ConfigSchema = z.strictObject({
  provider: z.literal('openai-compatible'),
  baseUrl: z.url({ protocol: /^https?$/ }),
  model: z.string().min(1),
  apiKeyEnv: z.string().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.int().positive().optional(),
  timeoutMs: z.int().positive().optional(),
});

const WireToolCallSchema = z.object({
  id: z.string().min(1).nullish(),
  type: z.string().nullish(),
  function: z.object({
    name: z.string().min(1),
    // some servers send the arguments as an object instead of JSON text
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  }),
});

const WireResponseSchema = z.object({
  model: z.string().nullish(),
  choices: z
    .array(
      z.object({
        finish_reason: z.string().nullish(),
        message: z.object({
          content: z.string().nullish(),
          refusal: z.string().nullish(),
          tool_calls: z.array(WireToolCallSchema).nullish(),
        }),
      }),
    )
    .min(1),
  usage: z
    .object({
      prompt_tokens: z.int().nonnegative(),
      completion_tokens: z.int().nonnegative(),
    })
    .nullish(),
});

/** What {@link createOpenAICompatibleProvider} takes; both default to the process's own. */
export interface OpenAICompatibleOptions {
  /** Where `apiKeyEnv` is looked up. */
  readonly env?: NodeJS.ProcessEnv;
  readonly fetch?: typeof fetch;
}

/** Builds the `openai-compatible` provider. */
export function createOpenAICompatibleProvider(options: OpenAICompatibleOptions = {}): ModelProvider {
  const env = options.env ?? process.env;
  const doFetch = options.fetch ?? fetch;
  return Object.freeze({
    name: 'openai-compatible',
    complete: (request: ModelRequest, signal?: AbortSignal) => complete(request, signal, env, doFetch),
  });
}

async function complete(
  request: ModelRequest,
  signal: AbortSignal | undefined,
  env: NodeJS.ProcessEnv,
  doFetch: typeof fetch,
): Promise<ModelResponse> {
  signal?.throwIfAborted();
  const config = checkConfig(request.model);
  const names = toolNameTable(request.tools);
  let apiKey: string | undefined;
  if (config.apiKeyEnv !== undefined) {
    apiKey = env[config.apiKeyEnv];
    if (apiKey === undefined || apiKey === '') {
      throw new ModelError(
        ModelErrorCode.auth,
        `environment variable ${config.apiKeyEnv} (apiKeyEnv) is not set on the worker`,
      );
    }
  }
  const url = `${config.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  const where = hostOf(config.baseUrl);
  const redact = (text: string): string =>
    apiKey === undefined ? text : text.replaceAll(apiKey, '[redacted]');
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (apiKey !== undefined) headers.authorization = `Bearer ${apiKey}`;
  const body = JSON.stringify(requestBody(config, request, names));

  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const combined = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
  let status: number;
  let responseHeaders: Headers;
  let text: string;
  try {
    const response = await doFetch(url, {
      method: 'POST',
      headers,
      body,
      signal: combined,
      redirect: 'error',
    });
    status = response.status;
    responseHeaders = response.headers;
    text = await response.text();
  } catch (error) {
    if (signal?.aborted === true) throw signal.reason;
    if (timeout.aborted) {
      throw new ModelError(ModelErrorCode.timeout, `${where} did not answer within ${timeoutMs} ms`);
    }
    throw new ModelError(
      ModelErrorCode.serverError,
      redact(`cannot reach ${where}: ${networkReason(error)}`),
      { cause: error },
    );
  }
  if (status < 200 || status > 299) throw httpError(status, responseHeaders, text, where, redact);
  return parseResponse(text, config, request, names, where, redact);
}

function checkConfig(model: ModelConfig): OpenAIConfig {
  const parsed = ConfigSchema.safeParse(model);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.')}: ${issue.message}`,
    );
    throw new ModelError(
      ModelErrorCode.badRequest,
      `invalid openai-compatible model config: ${problems.join('; ')}`,
    );
  }
  return Object.freeze(parsed.data) as OpenAIConfig;
}

/** Wire name ↔ tool name for the tools offered in one request. */
interface ToolNameTable {
  readonly toWire: ReadonlyMap<string, string>;
  readonly fromWire: ReadonlyMap<string, string>;
}

/**
 * The wire name of a tool: every `.` becomes `__` (`fs.read` → `fs__read`). Throws
 * {@link ModelError} `MODEL_BAD_REQUEST` when the result is not a valid OpenAI function name.
 */
export function encodeToolName(name: string): string {
  const wire = name.replaceAll('.', '__');
  if (!WIRE_NAME.test(wire)) {
    throw new ModelError(
      ModelErrorCode.badRequest,
      `tool name ${JSON.stringify(name)} cannot be offered to an OpenAI-compatible model: its wire name ${JSON.stringify(wire)} must match ${WIRE_NAME.source}`,
    );
  }
  return wire;
}

/**
 * The inverse of {@link encodeToolName} for the offered `tools`: returns the tool name for a
 * wire name, or the wire name itself when no offered tool has it.
 */
export function decodeToolName(wire: string, tools: readonly ToolDefinition[]): string {
  return toolNameTable(tools).fromWire.get(wire) ?? wire;
}

/** Wire name ↔ tool name for the tools of one request; refuses collisions and duplicates. */
export function toolNameTable(tools: readonly ToolDefinition[]): ToolNameTable {
  const toWire = new Map<string, string>();
  const fromWire = new Map<string, string>();
  for (const tool of tools) {
    const wire = encodeToolName(tool.name);
    const other = fromWire.get(wire);
    if (other !== undefined && other !== tool.name) {
      throw new ModelError(
        ModelErrorCode.badRequest,
        `tools ${JSON.stringify(other)} and ${JSON.stringify(tool.name)} have the same wire name ${JSON.stringify(wire)}`,
      );
    }
    if (other !== undefined) {
      throw new ModelError(ModelErrorCode.badRequest, `tool ${JSON.stringify(tool.name)} is offered twice`);
    }
    toWire.set(tool.name, wire);
    fromWire.set(wire, tool.name);
  }
  return { toWire, fromWire };
}

/** The wire name of a tool in the history, which may be one the model invented. */
export function historyWireName(name: string, names: ToolNameTable): string {
  const known = names.toWire.get(name);
  if (known !== undefined) return known;
  const wire = name
    .replaceAll('.', '__')
    .replace(/[^a-zA-Z0-9_-]/g, '_')
    .slice(0, 64);
  return wire === '' ? '_' : wire;
}

/** The Chat Completions request body (the streaming call adds its `stream` fields to it). */
export function requestBody(
  config: Pick<OpenAIConfig, 'model' | 'maxTokens' | 'temperature'>,
  request: ModelRequest,
  names: ToolNameTable,
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: config.model,
    messages: request.messages.map((message) => wireMessage(message, names)),
  };
  if (request.tools.length > 0) {
    body.tools = request.tools.map((tool) => ({
      type: 'function',
      function: {
        name: names.toWire.get(tool.name),
        description: tool.description,
        parameters: tool.parameters,
      },
    }));
    body.tool_choice = 'auto';
  }
  if (config.maxTokens !== undefined) body.max_tokens = config.maxTokens;
  if (config.temperature !== undefined) body.temperature = config.temperature;
  return body;
}

function wireMessage(message: ChatMessage, names: ToolNameTable): Record<string, unknown> {
  switch (message.role) {
    case 'system':
    case 'user':
      return { role: message.role, content: message.content };
    case 'assistant': {
      const out: Record<string, unknown> = { role: 'assistant', content: message.content };
      if (message.toolCalls.length > 0) {
        out.tool_calls = message.toolCalls.map((call) => ({
          id: call.id,
          type: 'function',
          // raw (unparsable) arguments go back as the model wrote them
          function: { name: historyWireName(call.tool, names), arguments: argsText(call.args) },
        }));
      }
      return out;
    }
    case 'tool':
      return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
  }
}

function parseResponse(
  text: string,
  config: OpenAIConfig,
  request: ModelRequest,
  names: ToolNameTable,
  where: string,
  redact: (text: string) => string,
): ModelResponse {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ModelError(
      ModelErrorCode.badResponse,
      `${where} answered with something that is not JSON: ${quote(redact(text))}`,
    );
  }
  const parsed = WireResponseSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .slice(0, 5)
      .map(
        (issue) =>
          `${issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.')}: ${issue.message}`,
      );
    throw new ModelError(
      ModelErrorCode.badResponse,
      redact(`${where} answered with an invalid completion: ${problems.join('; ')}`),
    );
  }
  const wire = parsed.data;
  const choice = wire.choices[0]!;
  const raw = choice.message.content ?? choice.message.refusal ?? null;
  const content = raw === null || raw.trim() === '' ? null : raw;
  const toolCalls: ProposedCall[] = (choice.message.tool_calls ?? []).map((call, index) =>
    Object.freeze({
      id: call.id ?? `call_${request.turn}_${index}`,
      tool: names.fromWire.get(call.function.name) ?? call.function.name,
      args: parseArguments(call.function.arguments),
      rationale: content,
    }),
  );
  const usage =
    wire.usage === null || wire.usage === undefined
      ? estimateUsage(request.messages, content, toolCalls)
      : Object.freeze({ inputTokens: wire.usage.prompt_tokens, outputTokens: wire.usage.completion_tokens });
  return Object.freeze({
    content,
    toolCalls: Object.freeze(toolCalls),
    finishReason: finishReason(choice.finish_reason, toolCalls.length > 0),
    usage,
    provider: 'openai-compatible',
    model: wire.model === null || wire.model === undefined || wire.model === '' ? config.model : wire.model,
  });
}

/** JSON arguments; text that is not JSON stays raw, for the gateway to refuse as invalid arguments. */
function parseArguments(args: string | Record<string, unknown> | null | undefined): unknown {
  if (args === null || args === undefined) return {};
  if (typeof args !== 'string') return args;
  if (args.trim() === '') return {};
  try {
    return JSON.parse(args) as unknown;
  } catch {
    return args;
  }
}

// servers that answer tool calls with "stop" (or nothing) are normalised to "tool_calls"
function finishReason(reason: string | null | undefined, hasCalls: boolean): ModelResponse['finishReason'] {
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

function wireError(text: string): WireError {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { message: text.trim() === '' ? undefined : text, type: undefined, code: undefined };
  }
  const error = (json as { error?: unknown } | null)?.error;
  if (typeof error === 'string') return { message: error, type: undefined, code: undefined };
  if (typeof error !== 'object' || error === null) {
    const detail = (json as { detail?: unknown; message?: unknown } | null)?.detail;
    const message = (json as { message?: unknown } | null)?.message;
    return {
      message: typeof detail === 'string' ? detail : typeof message === 'string' ? message : text,
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

function httpError(
  status: number,
  headers: Headers,
  text: string,
  where: string,
  redact: (text: string) => string,
): ModelError {
  const error = wireError(text);
  // redact before cutting, so no prefix of the key survives
  const detail = error.message === undefined ? '' : `: ${quote(redact(error.message))}`;
  const message = `${where} answered HTTP ${status}${detail}`;
  const tags = `${error.code ?? ''} ${error.type ?? ''}`;
  const retryAfterMs = parseRetryAfter(headers);
  const withRetry = retryAfterMs === undefined ? { status } : { status, retryAfterMs };
  if (status === 401 || status === 403) return new ModelError(ModelErrorCode.auth, message, { status });
  if (status === 429) return new ModelError(ModelErrorCode.rateLimit, message, withRetry);
  if (status === 400 || status === 404 || status === 413 || status === 422) {
    if (CONTEXT_LENGTH.test(tags) || (status !== 404 && CONTEXT_LENGTH.test(error.message ?? ''))) {
      return new ModelError(ModelErrorCode.contextLength, message, { status });
    }
    if (CONTENT_POLICY.test(tags) || (status !== 404 && CONTENT_POLICY.test(error.message ?? ''))) {
      return new ModelError(ModelErrorCode.contentPolicy, message, { status });
    }
    return new ModelError(ModelErrorCode.badRequest, message, { status });
  }
  if (status === 408) return new ModelError(ModelErrorCode.timeout, message, { status });
  if (status === 503 || status === 529) return new ModelError(ModelErrorCode.overloaded, message, withRetry);
  if (status >= 500) return new ModelError(ModelErrorCode.serverError, message, withRetry);
  if (status >= 400) return new ModelError(ModelErrorCode.badRequest, message, { status });
  // 1xx/3xx (redirects are not followed)
  return new ModelError(ModelErrorCode.badResponse, message, { status });
}

/**
 * How long to wait before retrying, from `retry-after-ms` (milliseconds) or `retry-after`
 * (seconds or an HTTP date); undefined when neither is present and valid.
 */
export function parseRetryAfter(headers: Headers, now: number = Date.now()): number | undefined {
  const number = /^\s*\d+(\.\d+)?\s*$/;
  const ms = headers.get('retry-after-ms');
  if (ms !== null && number.test(ms)) return Math.ceil(Number(ms));
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  if (number.test(value)) return Math.ceil(Number(value) * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function hostOf(baseUrl: string): string {
  try {
    return new URL(baseUrl).host;
  } catch {
    return '(invalid baseUrl)';
  }
}

function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return error instanceof Error ? error.message : String(error);
}

function quote(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_QUOTED_CHARS ? `${flat.slice(0, MAX_QUOTED_CHARS - 3)}...` : flat;
}
