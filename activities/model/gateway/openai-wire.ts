/**
 * The OpenAI Chat Completions wire format of the model gateway's own endpoint: requests from
 * agents not built on agent-runtime parsed (zod, once, at the edge) into provider-neutral
 * messages and tools, and provider-neutral replies written back as `chat.completion` objects and
 * `chat.completion.chunk` stream events.
 * @module
 */
import { z } from 'zod';
import type { ChatMessage, ModelResponse, ProposedCall, ToolDefinition, TokenUsage } from '../types.ts';

const TextPart = z.object({ type: z.literal('text'), text: z.string() });
const Content = z
  .union([z.string(), z.array(TextPart)])
  .nullable()
  .optional();

const WireToolCall = z.object({
  id: z.string().min(1),
  type: z.literal('function').default('function'),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

const WireMessage = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: Content }),
  z.object({ role: z.literal('developer'), content: Content }),
  z.object({ role: z.literal('user'), content: Content }),
  z.object({ role: z.literal('assistant'), content: Content, tool_calls: z.array(WireToolCall).optional() }),
  z.object({ role: z.literal('tool'), content: Content, tool_call_id: z.string().min(1) }),
]);

/** The request body the endpoint accepts (unknown fields are ignored, as OpenAI does). */
export const ChatCompletionRequest = z.object({
  model: z.string().min(1),
  messages: z.array(WireMessage).min(1).max(2_000),
  tools: z
    .array(
      z.object({
        type: z.literal('function'),
        function: z.object({
          name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
          description: z.string().max(4_096).optional(),
          parameters: z.record(z.string(), z.unknown()).optional(),
        }),
      }),
    )
    .max(128)
    .optional(),
  stream: z.boolean().optional(),
  max_tokens: z.number().int().positive().optional(),
  max_completion_tokens: z.number().int().positive().optional(),
  temperature: z.number().min(0).max(2).optional(),
});
export type ChatCompletionRequest = z.output<typeof ChatCompletionRequest>;

/** A parsed request in the proxy's terms. */
export interface GatewayRequest {
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly tools: readonly ToolDefinition[];
  readonly stream: boolean;
  readonly maxTokens: number | undefined;
}

/** Why a request body was refused, in OpenAI's error shape. */
export interface WireError {
  readonly status: number;
  readonly body: {
    readonly error: { readonly message: string; readonly type: string; readonly code: string | null };
  };
}

function text(content: z.output<typeof Content>): string {
  if (content === null || content === undefined) return '';
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

/** Parses a request body; a refusal names the first problem's path. */
export function parseChatCompletionRequest(
  body: unknown,
):
  | { readonly ok: true; readonly request: GatewayRequest }
  | { readonly ok: false; readonly error: WireError } {
  const parsed = ChatCompletionRequest.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      error: invalidRequest(`${issue?.path.join('.') || '(body)'}: ${issue?.message ?? 'invalid request'}`),
    };
  }
  const names = new Map<string, string>(); // tool call id → tool name, for the tool messages
  const messages: ChatMessage[] = [];
  for (const m of parsed.data.messages) {
    switch (m.role) {
      case 'system':
      case 'developer':
        messages.push({ role: 'system', content: text(m.content) });
        break;
      case 'user':
        messages.push({ role: 'user', content: text(m.content) });
        break;
      case 'assistant': {
        const calls: ProposedCall[] = [];
        for (const c of m.tool_calls ?? []) {
          let args: unknown;
          try {
            args = JSON.parse(c.function.arguments);
          } catch {
            return { ok: false, error: invalidRequest(`tool call ${c.id}: arguments are not JSON`) };
          }
          names.set(c.id, c.function.name);
          calls.push({ id: c.id, tool: c.function.name, args, rationale: null });
        }
        messages.push({ role: 'assistant', content: text(m.content) || null, toolCalls: calls });
        break;
      }
      case 'tool': {
        const tool = names.get(m.tool_call_id);
        if (tool === undefined)
          return {
            ok: false,
            error: invalidRequest(`tool message for unknown tool_call_id ${m.tool_call_id}`),
          };
        messages.push({ role: 'tool', toolCallId: m.tool_call_id, tool, content: text(m.content) });
        break;
      }
    }
  }
  return {
    ok: true,
    request: {
      model: parsed.data.model,
      messages,
      tools: (parsed.data.tools ?? []).map((t) => ({
        name: t.function.name,
        description: t.function.description ?? '',
        parameters: t.function.parameters ?? { type: 'object', properties: {} },
      })),
      stream: parsed.data.stream ?? false,
      maxTokens: parsed.data.max_completion_tokens ?? parsed.data.max_tokens,
    },
  };
}

/** A 400 in OpenAI's shape. */
export function invalidRequest(message: string): WireError {
  return { status: 400, body: { error: { message, type: 'invalid_request_error', code: null } } };
}

const FINISH: Readonly<Record<ModelResponse['finishReason'], string>> = {
  tool_calls: 'tool_calls',
  stop: 'stop',
  length: 'length',
  content_filter: 'content_filter',
  other: 'stop',
};

function wireCalls(calls: readonly ProposedCall[]) {
  return calls.map((c) => ({
    id: c.id,
    type: 'function' as const,
    function: { name: c.tool, arguments: JSON.stringify(c.args ?? {}) },
  }));
}

function wireUsage(usage: TokenUsage) {
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
  };
}

/** A `chat.completion` object. */
export function chatCompletion(id: string, createdS: number, model: string, response: ModelResponse) {
  const calls = wireCalls(response.toolCalls);
  return {
    id,
    object: 'chat.completion',
    created: createdS,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: response.content,
          ...(calls.length > 0 ? { tool_calls: calls } : {}),
        },
        finish_reason: FINISH[response.finishReason],
      },
    ],
    usage: wireUsage(response.usage),
  };
}

/** The SSE events of a streamed reply: a role chunk, content deltas, tool calls, the finish, usage. */
export function chunk(
  id: string,
  createdS: number,
  model: string,
  delta: Record<string, unknown>,
  finishReason: string | null = null,
): string {
  return `data: ${JSON.stringify({
    id,
    object: 'chat.completion.chunk',
    created: createdS,
    model,
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  })}\n\n`;
}

/** A stream's tool-call delta for one complete call. */
export function toolCallDelta(index: number, call: ProposedCall): Record<string, unknown> {
  return { tool_calls: [{ index, ...wireCalls([call])[0] }] };
}

/** The final usage chunk (OpenAI's `stream_options.include_usage` shape). */
export function usageChunk(id: string, createdS: number, model: string, usage: TokenUsage): string {
  return `data: ${JSON.stringify({
    id,
    object: 'chat.completion.chunk',
    created: createdS,
    model,
    choices: [],
    usage: wireUsage(usage),
  })}\n\n`;
}

/** The mapped finish reason. */
export function wireFinish(reason: ModelResponse['finishReason']): string {
  return FINISH[reason];
}
