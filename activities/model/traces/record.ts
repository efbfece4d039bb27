/**
 * What both trace stores share about a record: validation before a write, parsing a row back, and
 * the searchable text built from a trace (prompt, completion, rationales, tool names and
 * arguments, error).
 * @module
 */
import { z } from 'zod';
import { TraceStoreError, TraceErrorCode, messageOf } from './errors.ts';
import type { ProposedCall } from '../types.ts';
import type { ModelTrace } from './types.ts';

/** Deepest JSON nesting stored in tool-call arguments and tool parameters (both stores alike). */
export const MAX_JSON_DEPTH = 100;
/** Largest trace stored, as JSON text in characters. */
export const MAX_TRACE_CHARS = 8 * 1024 * 1024;
/** Longest searchable text indexed per trace (newest messages first, so the cut drops the oldest). */
export const MAX_SEARCH_TEXT_CHARS = 100_000;

/** True when `value` can be stored in and looked up by both stores (no NUL, no lone surrogate). */
export function usableText(value: unknown): value is string {
  return typeof value === 'string' && !value.includes('\0') && value.isWellFormed();
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** True for a JSON value both stores keep exactly: finite numbers, usable strings and keys, bounded depth. */
export function isStorableJson(value: unknown, depth = 0): boolean {
  if (value === null || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value);
  if (typeof value === 'string') return usableText(value);
  if (depth >= MAX_JSON_DEPTH) return false;
  if (Array.isArray(value)) return value.every((v) => isStorableJson(v, depth + 1));
  if (!isPlainObject(value)) return false;
  return Object.entries(value).every(([k, v]) => usableText(k) && isStorableJson(v, depth + 1));
}

const Text = z.string().refine(usableText, 'must not contain NUL characters or lone surrogates');
const Key = Text.min(1);
const Count = z.int().min(0);
const Ms = z.number().min(0).refine(Number.isFinite, 'must be finite');
const JSON_PROBLEM = `expected JSON (finite numbers, no NUL or lone surrogates, at most ${MAX_JSON_DEPTH} deep)`;
const Json = z.custom<unknown>((v) => isStorableJson(v), JSON_PROBLEM);
const JsonObject = z.custom<Record<string, unknown>>(
  (v) => isPlainObject(v) && isStorableJson(v),
  JSON_PROBLEM,
);

const CallSchema = z.strictObject({ id: Text, tool: Text, args: Json, rationale: Text.nullable() });

const MessageSchema = z.discriminatedUnion('role', [
  z.strictObject({ role: z.literal('system'), content: Text }),
  z.strictObject({ role: z.literal('user'), content: Text }),
  z.strictObject({ role: z.literal('assistant'), content: Text.nullable(), toolCalls: z.array(CallSchema) }),
  z.strictObject({ role: z.literal('tool'), toolCallId: Text, tool: Text, content: Text }),
]);

const TraceSchema = z.strictObject({
  id: Key,
  ts: Count,
  agentId: Key,
  runId: Key,
  step: Count,
  route: Text,
  purpose: Text,
  target: Text,
  provider: Text,
  model: Text,
  attempts: z.array(
    z.strictObject({
      target: Text,
      provider: Text,
      model: Text,
      outcome: Text,
      durationMs: Ms,
      retryAfterMs: Ms.optional(),
      skipped: z.boolean().optional(),
    }),
  ),
  fallbackCause: Text.nullable(),
  messages: z.array(MessageSchema),
  tools: z.array(z.strictObject({ name: Text, description: Text, parameters: JsonObject })),
  completion: z
    .strictObject({
      content: Text.nullable(),
      toolCalls: z.array(CallSchema),
      finishReason: z.enum(['tool_calls', 'stop', 'length', 'content_filter', 'other']),
    })
    .nullable(),
  error: z.strictObject({ code: Text, message: Text }).nullable(),
  usage: z.strictObject({ inputTokens: Count, outputTokens: Count }),
  latencyMs: Ms,
  overheadMs: Ms,
  contentCaptured: z.boolean(),
});

function problems(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}

/** A trace ready to be written: the validated record and its JSON text. */
export interface EncodedTrace {
  readonly trace: ModelTrace;
  readonly json: string;
}

/** Validates `value` as a {@link ModelTrace}; throws `TRACE_INVALID` naming the first problems. */
export function validateTrace(value: unknown): EncodedTrace {
  const parsed = TraceSchema.safeParse(value);
  if (!parsed.success) {
    throw new TraceStoreError(TraceErrorCode.invalidTrace, `invalid trace: ${problems(parsed.error)}`);
  }
  const json = JSON.stringify(value);
  if (json.length > MAX_TRACE_CHARS) {
    throw new TraceStoreError(
      TraceErrorCode.invalidTrace,
      `invalid trace: ${json.length} characters of JSON, at most ${MAX_TRACE_CHARS}`,
    );
  }
  return { trace: value as ModelTrace, json };
}

/** Parses a stored record (JSON text) back; throws `TRACE_STORE_ROW_INVALID` for a tampered row. */
export function traceFromJson(json: unknown): ModelTrace {
  let value: unknown;
  try {
    value = typeof json === 'string' ? JSON.parse(json) : json;
  } catch (error) {
    throw new TraceStoreError(TraceErrorCode.rowInvalid, `stored trace is not JSON: ${messageOf(error)}`);
  }
  const parsed = TraceSchema.safeParse(value);
  if (!parsed.success) {
    throw new TraceStoreError(
      TraceErrorCode.rowInvalid,
      `stored trace is invalid: ${problems(parsed.error)}`,
    );
  }
  return value as ModelTrace;
}

function jsonStrings(value: unknown, out: string[], depth = 0): void {
  if (typeof value === 'string') out.push(value);
  else if (depth < MAX_JSON_DEPTH && typeof value === 'object' && value !== null) {
    for (const v of Array.isArray(value) ? value : Object.values(value)) jsonStrings(v, out, depth + 1);
  }
}

/**
 * The text a trace is found by: completion, its calls (tool, rationale, argument strings), error,
 * fallback cause, then the prompt newest message first; NFC-normalised and cut at
 * {@link MAX_SEARCH_TEXT_CHARS}. Without captured content only tool names, error and fallback
 * cause are searchable (digests and shapes are not words anyone searches for).
 */
export function searchText(trace: ModelTrace): string {
  const parts: string[] = [];
  const content = trace.contentCaptured;
  const calls = (list: readonly ProposedCall[]): void => {
    for (const c of list) {
      parts.push(c.tool);
      if (content) {
        if (c.rationale !== null) parts.push(c.rationale);
        jsonStrings(c.args, parts);
      }
    }
  };
  if (trace.completion !== null) {
    if (content && trace.completion.content !== null) parts.push(trace.completion.content);
    calls(trace.completion.toolCalls);
  }
  if (trace.error !== null) parts.push(trace.error.code, trace.error.message);
  if (trace.fallbackCause !== null) parts.push(trace.fallbackCause);
  for (let i = trace.messages.length - 1; i >= 0; i--) {
    const m = trace.messages[i]!;
    switch (m.role) {
      case 'system':
      case 'user':
        if (content) parts.push(m.content);
        break;
      case 'assistant':
        if (content && m.content !== null) parts.push(m.content);
        calls(m.toolCalls);
        break;
      case 'tool':
        parts.push(m.tool);
        if (content) parts.push(m.content);
        break;
    }
  }
  const text = parts.join('\n').normalize('NFC');
  return text.length <= MAX_SEARCH_TEXT_CHARS ? text : text.slice(0, MAX_SEARCH_TEXT_CHARS).toWellFormed();
}
