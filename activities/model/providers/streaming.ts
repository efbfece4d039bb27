/**
 * Streaming model calls for both wire formats: OpenAI Chat Completions (`data:` chunks ending in
 * `[DONE]`) and Anthropic Messages (`event:` + `data:`: message_start, content_block_start/delta/
 * stop, message_delta, message_stop, error). Each call is an async generator of
 * {@link ModelStreamEvent}s: text deltas as they arrive, each tool call once it is complete,
 * then usage, then `finish`.
 *
 * Failures depend on the phase, so a gateway can fall back freely before output and never
 * mistakes a broken stream for an answer:
 * - before the first event is yielded, the generator throws a typed {@link ModelError}, mapped
 *   exactly as the non-streaming providers map it (HTTP errors, an `error` event, transport
 *   failures, the deadlines);
 * - after an event was yielded, it throws a {@link ModelStreamInterruptedError}
 *   (`MODEL_SERVER_ERROR`, `afterOutput: true`, the typed error as `cause`); it never finishes
 *   cleanly: a stream without its end marker (`[DONE]` or a finish reason; `message_stop`) fails.
 * - the caller's own cancellation (`signal`) is rethrown as is, in either phase.
 *
 * Stopping early (`break`, `return()`) aborts the request and releases the connection.
 * @module
 */
import { z } from 'zod';
import { ModelError, ModelErrorCode } from '../errors.ts';
import type { ModelRequest, ModelResponse, ProposedCall, TokenUsage } from '../types.ts';
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
import { CallGuard, quote, systemClock, transportFailure, zodProblems } from './http.ts';
import type { Clock, ToolNames } from './http.ts';
import {
  openAIError,
  openAIFinishReason,
  parseOpenAIArguments,
  prepareOpenAIStreamCall,
} from './openai-wire.ts';
import { parseSSE } from './sse.ts';
import type { SSEEvent } from './sse.ts';

/** One event of a streamed reply. */
export type ModelStreamEvent =
  | { readonly type: 'text'; readonly delta: string }
  /** A tool call, emitted once its arguments are complete. */
  | { readonly type: 'tool_call'; readonly call: ProposedCall }
  /** Reported usage (estimated when the server reports none); just before `finish`. */
  | { readonly type: 'usage'; readonly usage: TokenUsage }
  /** The last event; `model` is the model that answered (the configured one when not reported). */
  | { readonly type: 'finish'; readonly finishReason: ModelResponse['finishReason']; readonly model: string };

/** What both streaming calls take; everything defaults to the process's own. */
export interface StreamOptions {
  /** Where `apiKeyEnv` is looked up. */
  readonly env?: NodeJS.ProcessEnv;
  readonly fetch?: typeof fetch;
  /** Timers and `now` (for retry-after dates). */
  readonly clock?: Clock;
  /** The caller's cancellation; its reason is rethrown as is. */
  readonly signal?: AbortSignal;
  /**
   * Time limit from sending the request to the first output (a text delta or the start of a tool
   * call): covers connecting, a slow first byte and the model's time to first token. Firing throws
   * `MODEL_TIMEOUT` (before output, so falling back is safe). Default: none; the config's
   * `timeoutMs` always limits the whole stream.
   */
  readonly firstEventTimeoutMs?: number;
}

/** {@link streamOpenAICompatible}'s options. */
export interface OpenAIStreamOptions extends StreamOptions {
  /** Ask for a final usage chunk (`stream_options.include_usage`); default true. Turn off for servers that reject it. */
  readonly includeUsage?: boolean;
}

/**
 * A stream that broke after events were yielded: the turn failed and must not be used as an
 * answer. Its `cause` is the typed error that broke it (a timeout, a disconnect, an `error` event).
 */
export class ModelStreamInterruptedError extends ModelError {
  /** Always true: output was already yielded, so a fallback would duplicate it. */
  readonly afterOutput = true as const;

  constructor(reason: string, cause: unknown) {
    super(ModelErrorCode.serverError, `stream interrupted after output: ${reason}`, { cause });
  }
}

/** Streams an `openai-compatible` model's reply (`POST {baseUrl}/chat/completions` with `stream: true`). */
export async function* streamOpenAICompatible(
  request: ModelRequest,
  options: OpenAIStreamOptions = {},
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  options.signal?.throwIfAborted();
  const call = prepareOpenAIStreamCall(request, options.env ?? process.env, options.includeUsage ?? true);
  yield* run(call, options, openAIError, new OpenAIDecoder(request, call));
}

/** Streams an `anthropic` model's reply (`POST {baseUrl}/v1/messages` with `stream: true`). */
export async function* streamAnthropic(
  request: ModelRequest,
  options: StreamOptions = {},
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  options.signal?.throwIfAborted();
  const call = prepareAnthropicCall(request, options.env ?? process.env, true);
  yield* run(call, options, anthropicError, new AnthropicDecoder(request, call));
}

interface PreparedCall {
  readonly url: string;
  readonly where: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Readonly<Record<string, unknown>>;
  readonly names: ToolNames;
  readonly timeoutMs: number;
  readonly redact: (text: string) => string;
  readonly config: { readonly model: string };
}

type ErrorOf = (
  status: number | undefined,
  headers: Headers | undefined,
  body: unknown,
  where: string,
  redact: (text: string) => string,
  now: number,
) => ModelError;

interface Step {
  readonly events: readonly ModelStreamEvent[];
  /** The event carried output (stops the time-to-first-output limit). */
  readonly output: boolean;
  /** The stream's end marker: stop reading. */
  readonly done: boolean;
}

interface Decoder {
  /** Throws a typed `ModelError` for an error event or an invalid one. */
  onEvent(event: SSEEvent): Step;
  /** The body ended without the end marker: returns the final events or throws. */
  onEnd(): readonly ModelStreamEvent[];
}

async function* run(
  call: PreparedCall,
  options: StreamOptions,
  errorOf: ErrorOf,
  decoder: Decoder,
): AsyncGenerator<ModelStreamEvent, void, undefined> {
  const doFetch = options.fetch ?? fetch;
  const clock = options.clock ?? systemClock;
  const limits = { timeoutMs: call.timeoutMs, firstOutputMs: options.firstEventTimeoutMs };
  const guard = new CallGuard(clock, call.timeoutMs, options.signal);
  if (options.firstEventTimeoutMs !== undefined) guard.armFirstOutput(options.firstEventTimeoutMs);
  let events: AsyncGenerator<SSEEvent> | undefined;
  let yielded = false;
  try {
    let response: Response;
    try {
      response = await doFetch(call.url, {
        method: 'POST',
        headers: call.headers,
        body: JSON.stringify(call.body),
        signal: guard.signal,
        redirect: 'error',
      });
    } catch (error) {
      throw transportFailure(error, guard, limits, call.where, call.redact, 'connect');
    }
    const readText = async (): Promise<string> => {
      try {
        return await response.text();
      } catch (error) {
        throw transportFailure(error, guard, limits, call.where, call.redact, 'read');
      }
    };
    if (response.status < 200 || response.status > 299) {
      const text = await readText();
      throw errorOf(response.status, response.headers, text, call.where, call.redact, clock.now());
    }
    if (/application\/json/i.test(response.headers.get('content-type') ?? '') || response.body === null) {
      const text = response.body === null ? '' : await readText();
      throw new ModelError(
        ModelErrorCode.badResponse,
        `${call.where} answered without an event stream: ${quote(call.redact(text))}`,
      );
    }
    events = parseSSE(response.body);
    for (;;) {
      let next: IteratorResult<SSEEvent>;
      try {
        next = await events.next();
      } catch (error) {
        throw transportFailure(error, guard, limits, call.where, call.redact, 'read');
      }
      if (next.done === true) break;
      const step = decoder.onEvent(next.value);
      if (step.output) guard.disarmFirstOutput();
      for (const event of step.events) {
        yielded = true;
        yield event;
      }
      if (step.done) return;
    }
    for (const event of decoder.onEnd()) {
      yielded = true;
      yield event;
    }
  } catch (error) {
    if (guard.callerAborted) throw guard.callerReason;
    if (!yielded) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new ModelStreamInterruptedError(call.redact(reason), error);
  } finally {
    guard.release();
    try {
      await events?.return(undefined);
    } catch {
      // the body is already broken; nothing left to release
    }
  }
}

function notJson(where: string, data: string, redact: (text: string) => string): ModelError {
  return new ModelError(
    ModelErrorCode.badResponse,
    `${where} sent an event that is not JSON: ${quote(redact(data))}`,
  );
}

function invalid(where: string, what: string, error: z.ZodError): ModelError {
  return new ModelError(
    ModelErrorCode.badResponse,
    `${where} sent an invalid ${what}: ${zodProblems(error, 3)}`,
  );
}

function incomplete(where: string, marker: string): ModelError {
  return new ModelError(ModelErrorCode.serverError, `${where} ended the stream before ${marker}`);
}

// ---------------------------------------------------------------- OpenAI Chat Completions

const OpenAIChunkSchema = z.looseObject({
  model: z.string().nullish(),
  choices: z
    .array(
      z.looseObject({
        index: z.int().nonnegative().nullish(),
        delta: z
          .looseObject({
            content: z.string().nullish(),
            refusal: z.string().nullish(),
            tool_calls: z
              .array(
                z.looseObject({
                  index: z.int().nonnegative().nullish(),
                  id: z.string().nullish(),
                  function: z
                    .looseObject({
                      name: z.string().nullish(),
                      arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
                    })
                    .nullish(),
                }),
              )
              .nullish(),
          })
          .nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .nullish(),
  usage: z
    .looseObject({ prompt_tokens: z.int().nonnegative(), completion_tokens: z.int().nonnegative() })
    .nullish(),
});

interface PartialCall {
  id: string | undefined;
  name: string | undefined;
  args: string;
}

class OpenAIDecoder implements Decoder {
  private readonly request: ModelRequest;
  private readonly call: PreparedCall;
  private content = '';
  private readonly partial = new Map<number, PartialCall>();
  private calls: ProposedCall[] | undefined;
  private sawFinish = false;
  private finishReason: string | null | undefined;
  private usage: TokenUsage | undefined;
  private model: string | undefined;

  constructor(request: ModelRequest, call: PreparedCall) {
    this.request = request;
    this.call = call;
  }

  onEvent(event: SSEEvent): Step {
    if (event.data.trim() === '[DONE]') return { events: this.end(), output: false, done: true };
    let json: unknown;
    try {
      json = JSON.parse(event.data);
    } catch {
      throw notJson(this.call.where, event.data, this.call.redact);
    }
    const error = (json as { error?: unknown } | null)?.error;
    if (error !== undefined && error !== null) {
      throw openAIError(undefined, undefined, json, this.call.where, this.call.redact, 0);
    }
    const parsed = OpenAIChunkSchema.safeParse(json);
    if (!parsed.success) throw invalid(this.call.where, 'chunk', parsed.error);
    const chunk = parsed.data;
    if (typeof chunk.model === 'string' && chunk.model !== '') this.model = chunk.model;
    if (chunk.usage !== null && chunk.usage !== undefined) {
      this.usage = Object.freeze({
        inputTokens: chunk.usage.prompt_tokens,
        outputTokens: chunk.usage.completion_tokens,
      });
    }
    const events: ModelStreamEvent[] = [];
    let output = false;
    const choice = (chunk.choices ?? []).find((c) => (c.index ?? 0) === 0);
    if (choice === undefined) return { events, output, done: false };
    for (const text of [choice.delta?.content, choice.delta?.refusal]) {
      if (typeof text === 'string' && text !== '') {
        this.content += text;
        events.push({ type: 'text', delta: text });
        output = true;
      }
    }
    for (const [position, delta] of (choice.delta?.tool_calls ?? []).entries()) {
      const index = delta.index ?? position;
      let entry = this.partial.get(index);
      if (entry === undefined) {
        entry = { id: undefined, name: undefined, args: '' };
        this.partial.set(index, entry);
      }
      if (typeof delta.id === 'string' && delta.id !== '') entry.id ??= delta.id;
      const name = delta.function?.name;
      if (typeof name === 'string' && name !== '') entry.name ??= name;
      const args = delta.function?.arguments;
      if (typeof args === 'string') entry.args += args;
      else if (args !== null && args !== undefined) entry.args += JSON.stringify(args);
      output = true;
    }
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) {
      this.sawFinish = true;
      this.finishReason = choice.finish_reason;
      for (const call of this.completeCalls()) events.push({ type: 'tool_call', call });
    }
    return { events, output, done: false };
  }

  onEnd(): readonly ModelStreamEvent[] {
    // servers that omit [DONE] still end with a finish reason
    if (!this.sawFinish) throw incomplete(this.call.where, '[DONE]');
    return this.end();
  }

  private completeCalls(): ProposedCall[] {
    if (this.calls !== undefined) return [];
    const rationale = this.content.trim() === '' ? null : this.content;
    const calls = [...this.partial.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, partial], position) => {
        if (partial.name === undefined) {
          throw new ModelError(
            ModelErrorCode.badResponse,
            `${this.call.where} streamed tool call ${index} without a name`,
          );
        }
        return Object.freeze({
          id: partial.id ?? `call_${this.request.turn}_${position}`,
          tool: this.call.names.fromWire.get(partial.name) ?? partial.name,
          args: parseOpenAIArguments(partial.args),
          rationale,
        });
      });
    this.calls = calls;
    return calls;
  }

  private end(): ModelStreamEvent[] {
    const events: ModelStreamEvent[] = this.completeCalls().map((call) => ({ type: 'tool_call', call }));
    const calls = this.calls ?? [];
    const content = this.content.trim() === '' ? null : this.content;
    events.push({ type: 'usage', usage: this.usage ?? estimateUsage(this.request.messages, content, calls) });
    events.push({
      type: 'finish',
      finishReason: openAIFinishReason(this.finishReason, calls.length > 0),
      model: this.model ?? this.call.config.model,
    });
    return events;
  }
}

// ---------------------------------------------------------------- Anthropic Messages

const AnthropicEventSchema = z.looseObject({
  type: z.string(),
  index: z.int().nonnegative().nullish(),
  message: z.looseObject({ model: z.string().nullish(), usage: UsageSchema.nullish() }).nullish(),
  content_block: z
    .looseObject({
      type: z.string(),
      text: z.string().nullish(),
      id: z.string().nullish(),
      name: z.string().nullish(),
      input: z.unknown().optional(),
    })
    .nullish(),
  delta: z
    .looseObject({
      type: z.string().nullish(),
      text: z.string().nullish(),
      partial_json: z.string().nullish(),
      stop_reason: z.string().nullish(),
    })
    .nullish(),
  usage: UsageSchema.nullish(),
});

type AnthropicBlock =
  | { readonly kind: 'text' }
  | {
      readonly kind: 'tool';
      readonly id: string;
      readonly name: string;
      json: string;
      readonly input: unknown;
    }
  | { readonly kind: 'other' };

class AnthropicDecoder implements Decoder {
  private readonly request: ModelRequest;
  private readonly call: PreparedCall;
  private readonly blocks = new Map<number, AnthropicBlock>();
  private readonly rationale = new RationaleTracker();
  private content = '';
  private readonly calls: ProposedCall[] = [];
  private stopReason: string | null | undefined;
  private inputTokens: number | undefined;
  private outputTokens: number | undefined;
  private model: string | undefined;

  constructor(request: ModelRequest, call: PreparedCall) {
    this.request = request;
    this.call = call;
  }

  onEvent(event: SSEEvent): Step {
    const none: Step = { events: [], output: false, done: false };
    if (event.event === 'ping') return none;
    let json: unknown;
    try {
      json = JSON.parse(event.data);
    } catch {
      throw notJson(this.call.where, event.data, this.call.redact);
    }
    const type = (json as { type?: unknown } | null)?.type ?? event.event;
    if (type === 'error') {
      throw anthropicError(undefined, undefined, json, this.call.where, this.call.redact, 0);
    }
    const parsed = AnthropicEventSchema.safeParse(json);
    if (!parsed.success) throw invalid(this.call.where, `${String(type)} event`, parsed.error);
    const data = parsed.data;
    switch (data.type) {
      case 'message_start':
        if (typeof data.message?.model === 'string' && data.message.model !== '')
          this.model = data.message.model;
        this.addUsage(data.message?.usage);
        return none;
      case 'content_block_start': {
        const block = data.content_block;
        const index = data.index ?? this.blocks.size;
        if (block?.type === 'text') {
          this.blocks.set(index, { kind: 'text' });
          this.rationale.startText();
          return this.text(block.text ?? '');
        }
        if (block?.type === 'tool_use') {
          if (
            typeof block.id !== 'string' ||
            block.id === '' ||
            typeof block.name !== 'string' ||
            block.name === ''
          ) {
            throw new ModelError(
              ModelErrorCode.badResponse,
              `${this.call.where} started a tool_use block without an id or a name`,
            );
          }
          this.blocks.set(index, {
            kind: 'tool',
            id: block.id,
            name: block.name,
            json: '',
            input: block.input,
          });
          return { events: [], output: true, done: false };
        }
        this.blocks.set(index, { kind: 'other' });
        return none;
      }
      case 'content_block_delta': {
        const block = this.blocks.get(data.index ?? -1);
        if (data.delta?.type === 'text_delta' && block?.kind !== 'tool')
          return this.text(data.delta.text ?? '');
        if (data.delta?.type === 'input_json_delta' && block?.kind === 'tool') {
          block.json += data.delta.partial_json ?? '';
        }
        return none;
      }
      case 'content_block_stop': {
        const index = data.index ?? -1;
        const block = this.blocks.get(index);
        this.blocks.delete(index);
        if (block?.kind !== 'tool') return none;
        return { events: [{ type: 'tool_call', call: this.toolCall(block) }], output: true, done: false };
      }
      case 'message_delta':
        if (data.delta?.stop_reason !== undefined) this.stopReason = data.delta.stop_reason;
        this.addUsage(data.usage);
        return none;
      case 'message_stop':
        return { events: this.end(), output: false, done: true };
      default:
        return none;
    }
  }

  onEnd(): readonly ModelStreamEvent[] {
    throw incomplete(this.call.where, 'message_stop');
  }

  private text(delta: string): Step {
    if (delta === '') return { events: [], output: false, done: false };
    this.content += delta;
    this.rationale.addText(delta);
    return { events: [{ type: 'text', delta }], output: true, done: false };
  }

  private toolCall(block: Extract<AnthropicBlock, { kind: 'tool' }>): ProposedCall {
    const start = block.input;
    const args =
      block.json.trim() !== ''
        ? parseToolInput(block.json)
        : typeof start === 'object' && start !== null
          ? start
          : {};
    const call = Object.freeze({
      id: block.id,
      tool: this.call.names.fromWire.get(block.name) ?? block.name,
      args,
      rationale: this.rationale.callRationale(),
    });
    this.calls.push(call);
    return call;
  }

  private addUsage(usage: z.infer<typeof UsageSchema> | null | undefined): void {
    if (usage === null || usage === undefined) return;
    const input = inputTokensOf(usage);
    if (input !== undefined) this.inputTokens = input;
    if (typeof usage.output_tokens === 'number') this.outputTokens = usage.output_tokens;
  }

  private end(): ModelStreamEvent[] {
    const events: ModelStreamEvent[] = [];
    // tool blocks the server never closed
    for (const block of this.blocks.values()) {
      if (block.kind === 'tool') events.push({ type: 'tool_call', call: this.toolCall(block) });
    }
    this.blocks.clear();
    const content = this.content.trim() === '' ? null : this.content;
    const usage =
      this.inputTokens === undefined || this.outputTokens === undefined
        ? estimateUsage(this.request.messages, content, this.calls)
        : Object.freeze({ inputTokens: this.inputTokens, outputTokens: this.outputTokens });
    events.push({ type: 'usage', usage });
    events.push({
      type: 'finish',
      finishReason: anthropicFinishReason(this.stopReason, this.calls.length > 0),
      model: this.model ?? this.call.config.model,
    });
    return events;
  }
}
