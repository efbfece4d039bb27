/**
 * The model trace: one record per model turn (prompt after redaction, tools offered, completion or
 * error, tokens, latency, route, attempts and fallback cause), and its OpenTelemetry GenAI view.
 * Pure: no I/O, so the record shape can be shared with any process that reads traces.
 * @module
 */
import type { ChatMessage, ModelResponse, ProposedCall, TokenUsage, ToolDefinition } from '../types.ts';

/** How much of a conversation a trace keeps. */
export const ContentCapture = {
  /** Prompt, completion, rationales and tool arguments are kept (after redaction). */
  full: 'full',
  /** Only shapes and hashes: text becomes a digest marker, arguments their shape. */
  metadata: 'metadata',
} as const;
export type ContentCapture = (typeof ContentCapture)[keyof typeof ContentCapture];

/** One try of one routing target within a model turn. */
export interface TraceAttempt {
  /** The routing target's name (e.g. `primary`, `fallback-local`). */
  readonly target: string;
  readonly provider: string;
  readonly model: string;
  /** `ok`, or the error code the try ended with (a `ModelErrorCode`, or the router's own reason). */
  readonly outcome: string;
  readonly durationMs: number;
  /** How long the provider asked to wait, when it did. */
  readonly retryAfterMs?: number;
  /** True when the target was passed over without a request (circuit open, over budget). */
  readonly skipped?: boolean;
}

/** What the model answered. */
export interface TraceCompletion {
  readonly content: string | null;
  /** Proposed calls, each with the model's stated (unverified) rationale. */
  readonly toolCalls: readonly ProposedCall[];
  readonly finishReason: ModelResponse['finishReason'];
}

/** Why the turn failed, when it did. */
export interface TraceError {
  readonly code: string;
  readonly message: string;
}

/** One model turn as stored. Strings are redacted before the record is built into a store. */
export interface ModelTrace {
  /** Unique per turn and attempt chain; appending the same id twice stores it once. */
  readonly id: string;
  /** When the turn started, in milliseconds since the epoch. */
  readonly ts: number;
  readonly agentId: string;
  readonly runId: string;
  /** The model turn within the run (0-based). */
  readonly step: number;
  /** The route the model proxy chose. */
  readonly route: string;
  /** What the call was for (e.g. `plan`, `act`, `summarise`). */
  readonly purpose: string;
  /** The routing target that answered (or the last one tried). */
  readonly target: string;
  readonly provider: string;
  readonly model: string;
  readonly attempts: readonly TraceAttempt[];
  /** Why a fallback target was used (e.g. `MODEL_RATE_LIMIT on primary`); null when none was. */
  readonly fallbackCause: string | null;
  /** The prompt, after redaction. */
  readonly messages: readonly ChatMessage[];
  /** The tools offered. */
  readonly tools: readonly ToolDefinition[];
  readonly completion: TraceCompletion | null;
  readonly error: TraceError | null;
  readonly usage: TokenUsage;
  /** Wall time of the whole turn, all attempts included. */
  readonly latencyMs: number;
  /** Time spent in the gateway itself (routing, redaction, budgets), not waiting for a model. */
  readonly overheadMs: number;
  /** False in `metadata` capture mode: text fields then hold digests, arguments their shape. */
  readonly contentCaptured: boolean;
}

/** A value of a flat OpenTelemetry attribute map. */
export type AttributeValue = string | number | boolean | string[];

/** OTel GenAI finish reasons (output message schema) for the provider-neutral ones. */
const FINISH_REASON: Readonly<Record<TraceCompletion['finishReason'], string>> = {
  tool_calls: 'tool_call',
  stop: 'stop',
  length: 'length',
  content_filter: 'content_filter',
  other: 'other',
};

type Part =
  | { readonly type: 'text'; readonly content: string }
  | { readonly type: 'tool_call'; readonly id: string; readonly name: string; readonly arguments: unknown }
  | { readonly type: 'tool_call_response'; readonly id: string; readonly response: string };

function callParts(calls: readonly ProposedCall[]): Part[] {
  return calls.map((c) => ({ type: 'tool_call', id: c.id, name: c.tool, arguments: c.args }));
}

function inputMessage(message: ChatMessage): { role: string; parts: Part[] } {
  switch (message.role) {
    case 'system':
    case 'user':
      return { role: message.role, parts: [{ type: 'text', content: message.content }] };
    case 'assistant':
      return {
        role: 'assistant',
        parts: [
          ...(message.content === null ? [] : [{ type: 'text', content: message.content } as const]),
          ...callParts(message.toolCalls),
        ],
      };
    case 'tool':
      return {
        role: 'tool',
        parts: [{ type: 'tool_call_response', id: message.toolCallId, response: message.content }],
      };
  }
}

/**
 * The trace as a flat OpenTelemetry attribute map, with the GenAI semantic-convention names
 * (`gen_ai.*`) and governance extras under `govern.*`. The opt-in content attributes
 * (`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.tool.definitions`, as JSON strings)
 * and the error message are present only when the trace captured content.
 */
export function toGenAiAttributes(trace: ModelTrace): Record<string, AttributeValue> {
  const requested = trace.attempts[0];
  const attributes: Record<string, AttributeValue> = {
    'gen_ai.operation.name': 'chat',
    'gen_ai.provider.name': trace.provider,
    'gen_ai.request.model': requested?.model ?? trace.model,
    'gen_ai.conversation.id': trace.runId,
    'gen_ai.agent.id': trace.agentId,
    'gen_ai.usage.input_tokens': trace.usage.inputTokens,
    'gen_ai.usage.output_tokens': trace.usage.outputTokens,
    'govern.trace.id': trace.id,
    'govern.run.step': trace.step,
    'govern.route': trace.route,
    'govern.purpose': trace.purpose,
    'govern.target': trace.target,
    'govern.attempts.count': trace.attempts.length,
    'govern.attempts': trace.attempts.map((a) => `${a.target}:${a.skipped === true ? 'skipped' : a.outcome}`),
    'govern.model.latency_ms': trace.latencyMs,
    'govern.gateway.overhead_ms': trace.overheadMs,
    'govern.content.captured': trace.contentCaptured,
  };
  if (trace.fallbackCause !== null) attributes['govern.fallback.cause'] = trace.fallbackCause;
  if (trace.completion !== null) {
    attributes['gen_ai.response.model'] = trace.model;
    attributes['gen_ai.response.finish_reasons'] = [FINISH_REASON[trace.completion.finishReason]];
  }
  if (trace.error !== null) attributes['error.type'] = trace.error.code;
  if (!trace.contentCaptured) return attributes;

  attributes['gen_ai.input.messages'] = JSON.stringify(trace.messages.map(inputMessage));
  if (trace.completion !== null) {
    const { content, toolCalls, finishReason } = trace.completion;
    attributes['gen_ai.output.messages'] = JSON.stringify([
      {
        role: 'assistant',
        parts: [...(content === null ? [] : [{ type: 'text', content }]), ...callParts(toolCalls)],
        finish_reason: FINISH_REASON[finishReason],
      },
    ]);
    const rationales = toolCalls.map((c) => c.rationale ?? '');
    if (rationales.some((r) => r !== '')) attributes['govern.tool_call.rationales'] = rationales;
  }
  attributes['gen_ai.tool.definitions'] = JSON.stringify(
    trace.tools.map((t) => ({
      type: 'function',
      name: t.name,
      description: t.description,
      parameters: t.parameters,
    })),
  );
  if (trace.error !== null) attributes['govern.error.message'] = trace.error.message;
  return attributes;
}
