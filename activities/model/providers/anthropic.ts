/**
 * The `anthropic` provider: the Anthropic Messages API over HTTP (`POST {baseUrl}/v1/messages`),
 * non-streaming. The message mapping is described in `anthropic-wire.ts`; streaming is
 * `streamAnthropic` in `streaming.ts`.
 *
 * Reply: the text blocks joined make `content` (blank → null); each `tool_use` block is a
 * `ProposedCall` whose rationale is the text right before it; other block types (thinking, server
 * tools) are ignored. `stop_reason` maps to the finish reason (`tool_use` → tool_calls, `end_turn`
 * and `stop_sequence` → stop, `max_tokens` → length, `refusal` → content_filter). Input tokens
 * include cache writes and reads.
 * @module
 */
import { z } from 'zod';
import { ModelError, ModelErrorCode } from '../errors.ts';
import type { ModelProvider, ModelRequest, ModelResponse, ProposedCall } from '../types.ts';
import { estimateUsage } from '../usage.ts';
import {
  anthropicError,
  anthropicFinishReason,
  inputTokensOf,
  parseToolInput,
  prepareAnthropicCall,
  RationaleTracker,
  UsageSchema,
} from './anthropic-wire.ts';
import type { AnthropicCall } from './anthropic-wire.ts';
import { CallGuard, quote, systemClock, transportFailure, zodProblems } from './http.ts';
import type { Clock } from './http.ts';

export type { AnthropicModelConfig } from './anthropic-wire.ts';
export {
  ANTHROPIC_BASE_URL,
  ANTHROPIC_VERSION,
  DEFAULT_ANTHROPIC_API_KEY_ENV,
  DEFAULT_ANTHROPIC_MAX_TOKENS,
  DEFAULT_ANTHROPIC_TIMEOUT_MS,
} from './anthropic-wire.ts';

/** What {@link createAnthropicProvider} takes; everything defaults to the process's own. */
export interface AnthropicProviderOptions {
  /** Where `apiKeyEnv` is looked up. */
  readonly env?: NodeJS.ProcessEnv;
  readonly fetch?: typeof fetch;
  /** Timers and `now` (for retry-after dates). */
  readonly clock?: Clock;
}

const TextBlock = z.object({ type: z.literal('text'), text: z.string() });
const ToolUseBlock = z.object({
  type: z.literal('tool_use'),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.unknown().optional(),
});
const OtherBlock = z.looseObject({
  type: z.string().refine((type) => type !== 'text' && type !== 'tool_use', 'malformed content block'),
});

const ResponseSchema = z.object({
  type: z.literal('message'),
  model: z.string().nullish(),
  content: z.array(z.union([TextBlock, ToolUseBlock, OtherBlock])),
  stop_reason: z.string().nullish(),
  usage: UsageSchema.nullish(),
});

/** Builds the `anthropic` provider. */
export function createAnthropicProvider(options: AnthropicProviderOptions = {}): ModelProvider {
  const env = options.env ?? process.env;
  const doFetch = options.fetch ?? fetch;
  const clock = options.clock ?? systemClock;
  return Object.freeze({
    name: 'anthropic',
    complete: (request: ModelRequest, signal?: AbortSignal) => complete(request, signal, env, doFetch, clock),
  });
}

async function complete(
  request: ModelRequest,
  signal: AbortSignal | undefined,
  env: NodeJS.ProcessEnv,
  doFetch: typeof fetch,
  clock: Clock,
): Promise<ModelResponse> {
  signal?.throwIfAborted();
  const call = prepareAnthropicCall(request, env, false);
  const guard = new CallGuard(clock, call.timeoutMs, signal);
  let response: Response;
  let text: string;
  try {
    try {
      response = await doFetch(call.url, {
        method: 'POST',
        headers: call.headers,
        body: JSON.stringify(call.body),
        signal: guard.signal,
        redirect: 'error',
      });
    } catch (error) {
      throw transportFailure(error, guard, call, call.where, call.redact, 'connect');
    }
    try {
      text = await response.text();
    } catch (error) {
      throw transportFailure(error, guard, call, call.where, call.redact, 'read');
    }
  } finally {
    guard.release();
  }
  if (response.status < 200 || response.status > 299) {
    throw anthropicError(response.status, response.headers, text, call.where, call.redact, clock.now());
  }
  return parseResponse(text, call, request, clock);
}

function parseResponse(
  text: string,
  call: AnthropicCall,
  request: ModelRequest,
  clock: Clock,
): ModelResponse {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ModelError(
      ModelErrorCode.badResponse,
      `${call.where} answered with something that is not JSON: ${quote(call.redact(text))}`,
    );
  }
  if ((json as { type?: unknown } | null)?.type === 'error') {
    throw anthropicError(200, undefined, json, call.where, call.redact, clock.now());
  }
  const parsed = ResponseSchema.safeParse(json);
  if (!parsed.success) {
    throw new ModelError(
      ModelErrorCode.badResponse,
      call.redact(`${call.where} answered with an invalid message: ${zodProblems(parsed.error)}`),
    );
  }
  const wire = parsed.data;
  const rationale = new RationaleTracker();
  let joined = '';
  const toolCalls: ProposedCall[] = [];
  for (const block of wire.content) {
    if (block.type === 'text') {
      const { text: blockText } = block as z.infer<typeof TextBlock>;
      rationale.startText();
      rationale.addText(blockText);
      joined += blockText;
    } else if (block.type === 'tool_use') {
      const use = block as z.infer<typeof ToolUseBlock>;
      toolCalls.push(
        Object.freeze({
          id: use.id,
          tool: call.names.fromWire.get(use.name) ?? use.name,
          args: typeof use.input === 'string' ? parseToolInput(use.input) : (use.input ?? {}),
          rationale: rationale.callRationale(),
        }),
      );
    }
  }
  const content = joined.trim() === '' ? null : joined;
  const input = wire.usage === null || wire.usage === undefined ? undefined : inputTokensOf(wire.usage);
  const output = wire.usage?.output_tokens;
  const usage =
    input === undefined || output === null || output === undefined
      ? estimateUsage(request.messages, content, toolCalls)
      : Object.freeze({ inputTokens: input, outputTokens: output });
  return Object.freeze({
    content,
    toolCalls: Object.freeze(toolCalls),
    finishReason: anthropicFinishReason(wire.stop_reason, toolCalls.length > 0),
    usage,
    provider: 'anthropic',
    model:
      wire.model === null || wire.model === undefined || wire.model === '' ? call.config.model : wire.model,
  });
}
