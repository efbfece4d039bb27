/**
 * Redaction, applied to a trace BEFORE anything is stored: default rules for API keys, bearer
 * tokens, e-mail addresses and (Luhn-checked) card numbers, plus configured extra rules. Every
 * string of the prompt, tool-call arguments (keys and values, recursively), rationales,
 * completion, tool descriptions and error is redacted. A replacement such as `[REDACTED:email]`
 * is never matched again by a later rule, so redacting twice changes nothing.
 *
 * In `metadata` capture mode the redacted text is then replaced by digests
 * (`[sha256:<hex> len=<n>]`, HMAC-SHA-256 when a `hashKey` is configured) and tool-call arguments
 * by their shape (`{ "invoice": "string" }`): no prompt or completion text is kept. The digest is
 * of the redacted text, so a redacted secret never reaches it; an unkeyed digest of a short text
 * can still be confirmed by guessing, which is what `hashKey` is for.
 * @module
 */
import { createHash, createHmac } from 'node:crypto';
import { z } from 'zod';
import { checkRegexSafety } from '../../../policy/index.ts';
import type { ChatMessage, ProposedCall, ToolDefinition } from '../types.ts';
import { TraceConfigError } from './errors.ts';
import { ContentCapture } from './types.ts';
import type { ModelTrace, TraceCompletion } from './types.ts';

/** Names of the built-in rules, in the order they run (before any configured rule). */
export const DEFAULT_RULES = [
  'bearer_token',
  'api_key_assignment',
  'api_key',
  'email',
  'card_number',
] as const;
export type DefaultRuleName = (typeof DEFAULT_RULES)[number];

/** Rule names accepted: they appear in placeholders and counts. */
export const RULE_NAME_PATTERN = /^[a-z][a-z0-9_]{0,31}$/;

/** Nesting below which argument values are replaced by `[TRUNCATED:depth]`. */
export const MAX_REDACT_DEPTH = 64;

const RuleSchema = z.strictObject({
  /** Lower-case name: counts are keyed by it and the default replacement is `[REDACTED:<name>]`. */
  name: z.string().regex(RULE_NAME_PATTERN, 'expected lower-case letters, digits and _ (at most 32)'),
  /** A JavaScript regular expression (compiled with the `u` flag), checked for catastrophic backtracking. */
  pattern: z.string().min(1),
  /** Literal text put in place of each match (no `$` substitution); default `[REDACTED:<name>]`. */
  replacement: z.string().max(200).optional(),
  ignoreCase: z.boolean().optional(),
});

/** The redaction configuration: capture mode, extra rules, built-in rules turned off. */
export const RedactionConfigSchema = z.strictObject({
  capture: z.enum(ContentCapture).default(ContentCapture.full),
  rules: z.array(RuleSchema).max(64).default([]),
  disableDefaults: z.array(z.enum(DEFAULT_RULES)).default([]),
  /** Key of the HMAC used for `metadata` digests; without it digests are plain SHA-256. */
  hashKey: z.string().min(16).optional(),
});
/** A redaction configuration as written (every field optional). */
export type RedactionConfig = z.input<typeof RedactionConfigSchema>;
/** A validated redaction configuration. */
export type ParsedRedactionConfig = z.output<typeof RedactionConfigSchema>;

/** Matches per rule name; rules that matched nothing are absent. */
export type RedactionCounts = Readonly<Record<string, number>>;

/** Applies one configuration's rules and capture mode. */
export interface Redactor {
  readonly capture: ContentCapture;
  /** The rules applied, in order. */
  readonly rules: readonly string[];
  /** Redacts one text. */
  redactText(text: string): { readonly text: string; readonly counts: RedactionCounts };
  /** Redacts every content string of `trace`, then applies the capture mode. */
  redactTrace(trace: ModelTrace): { readonly trace: ModelTrace; readonly counts: RedactionCounts };
}

interface Hit {
  readonly start: number;
  readonly end: number;
  readonly replacement: string;
}

interface Rule {
  readonly name: string;
  find(text: string): Iterable<Hit>;
}

function regexRule(name: string, re: RegExp, replace: (m: RegExpExecArray) => string): Rule {
  return {
    name,
    find(text) {
      const hits: Hit[] = [];
      for (const m of text.matchAll(re)) {
        // a configured pattern may match empty text at some positions (`\b`): nothing to redact
        if (m[0].length === 0) continue;
        hits.push({ start: m.index, end: m.index + m[0].length, replacement: replace(m) });
      }
      return hits;
    },
  };
}

/** True when `digits` (digits only) passes the Luhn check. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

const WORD_CHAR = /[A-Za-z0-9_]/;
const DIGIT_RUN = /\d(?:[ -]?\d)*/g;
const DIGIT_GROUP = /\d+/g;

/**
 * Card numbers: 13–19 digits, optionally grouped by single spaces or dashes, passing Luhn. Within a
 * run of groups the leftmost, then longest, valid window of whole groups is taken; an ungrouped
 * run longer than 19 digits (an order id, a timestamp) is never a card.
 */
const cardRule: Rule = {
  name: 'card_number',
  find(text) {
    const hits: Hit[] = [];
    for (const run of text.matchAll(DIGIT_RUN)) {
      const start = run.index;
      const end = start + run[0].length;
      const groups = [...run[0].matchAll(DIGIT_GROUP)].map((g) => ({
        from: start + g.index,
        to: start + g.index + g[0].length,
        digits: g[0],
      }));
      // a group glued to a word (`visa13`, `x4111…`) is part of that word, not of a number
      if (WORD_CHAR.test(text[start - 1] ?? '')) groups.shift();
      if (WORD_CHAR.test(text[end] ?? '')) groups.pop();
      let i = 0;
      while (i < groups.length) {
        let found = -1;
        let digits = '';
        for (let j = i; j < groups.length; j++) {
          digits += groups[j]!.digits;
          if (digits.length > 19) break;
          if (digits.length >= 13 && luhnValid(digits)) found = j;
        }
        if (found < 0) {
          i++;
          continue;
        }
        hits.push({ start: groups[i]!.from, end: groups[found]!.to, replacement: '[REDACTED:card_number]' });
        i = found + 1;
      }
    }
    return hits;
  },
};

const TOKEN68 = '[A-Za-z0-9._~+/-]';

function defaultRule(name: DefaultRuleName): Rule {
  switch (name) {
    case 'bearer_token':
      // the token must hold a digit: "Bearer authentication" is prose, not a credential
      return regexRule(
        name,
        new RegExp(`\\b(Bearer)([ \\t]+)(?=${TOKEN68}*\\d)${TOKEN68}{8,}=*`, 'gi'),
        (m) => `${m[1]}${m[2]}[REDACTED:bearer_token]`,
      );
    case 'api_key_assignment':
      return regexRule(
        name,
        /\b(api[_-]?key)(["']?[ \t]*[:=][ \t]*)(["']?)[^\s"'`,;&)}\]]+/gi,
        (m) => `${m[1]}${m[2]}${m[3]}[REDACTED:api_key]`,
      );
    case 'api_key':
      return regexRule(
        name,
        /(?<![A-Za-z0-9_-])(?:sk-[A-Za-z0-9_-]{16,}|xox[abp]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}(?![0-9A-Z]))/g,
        () => '[REDACTED:api_key]',
      );
    case 'email':
      return regexRule(
        name,
        /[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}/g,
        () => '[REDACTED:email]',
      );
    case 'card_number':
      return cardRule;
  }
}

/** Text no rule touches: earlier placeholders and metadata digests. */
const LOCKED = /\[REDACTED:[a-z][a-z0-9_]*\]|\[sha256:[0-9a-f]{64} len=\d+\]/g;

const DIGEST = /^\[sha256:[0-9a-f]{64} len=\d+\]$/;

interface Segment {
  readonly text: string;
  readonly locked: boolean;
}

function lockedSplit(text: string): Segment[] {
  const segments: Segment[] = [];
  let at = 0;
  for (const m of text.matchAll(LOCKED)) {
    if (m.index > at) segments.push({ text: text.slice(at, m.index), locked: false });
    segments.push({ text: m[0], locked: true });
    at = m.index + m[0].length;
  }
  if (at < text.length) segments.push({ text: text.slice(at), locked: false });
  return segments;
}

/** Makes a string storable everywhere: NUL and lone surrogates become U+FFFD. */
export function storableText(text: string): string {
  return text.replaceAll('\0', '\uFFFD').toWellFormed();
}

function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
}

/** Validates a redaction configuration; throws {@link TraceConfigError} naming every problem. */
export function parseRedactionConfig(input: unknown = {}): ParsedRedactionConfig {
  const parsed = RedactionConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new TraceConfigError(`invalid redaction config: ${formatIssues(parsed.error).join('; ')}`);
  }
  const problems: string[] = [];
  const names = new Set<string>(DEFAULT_RULES.filter((n) => !parsed.data.disableDefaults.includes(n)));
  for (const [index, rule] of parsed.data.rules.entries()) {
    if (names.has(rule.name)) problems.push(`rules.${index}.name: duplicate rule name ${rule.name}`);
    names.add(rule.name);
    const unsafe = checkRegexSafety(rule.pattern);
    if (unsafe !== undefined) {
      problems.push(`rules.${index}.pattern: ${unsafe}`);
    } else if (new RegExp(rule.pattern, 'u').test('')) {
      problems.push(`rules.${index}.pattern: matches the empty string`);
    }
  }
  if (problems.length > 0) throw new TraceConfigError(`invalid redaction config: ${problems.join('; ')}`);
  return parsed.data;
}

/** The digest marker that stands for `text` in `metadata` mode. */
export function contentDigest(text: string, hashKey?: string): string {
  const hash = hashKey === undefined ? createHash('sha256') : createHmac('sha256', hashKey);
  return `[sha256:${hash.update(text, 'utf8').digest('hex')} len=${text.length}]`;
}

const SHAPE_NAMES: ReadonlySet<string> = new Set(['string', 'number', 'boolean']);

/** The shape of a JSON value: leaves become their type name (a shape is its own shape). */
export function shapeOf(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map(shapeOf);
  if (typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shapeOf(v)]));
  }
  return typeof value === 'string' && SHAPE_NAMES.has(value) ? value : typeof value;
}

/**
 * Builds a redactor from a configuration (default: the built-in rules, `full` capture). Throws
 * {@link TraceConfigError} for an invalid configuration, including a pattern prone to
 * catastrophic backtracking (see `checkRegexSafety`).
 */
export function createRedactor(config: RedactionConfig = {}): Redactor {
  const valid = parseRedactionConfig(config);
  const rules: Rule[] = [
    ...DEFAULT_RULES.filter((n) => !valid.disableDefaults.includes(n)).map(defaultRule),
    ...valid.rules.map((r) => {
      const replacement = r.replacement ?? `[REDACTED:${r.name}]`;
      return regexRule(
        r.name,
        new RegExp(r.pattern, r.ignoreCase === true ? 'giu' : 'gu'),
        () => replacement,
      );
    }),
  ];
  const hasCardRule = rules.includes(cardRule);
  const hasAssignmentRule = rules.some((r) => r.name === 'api_key_assignment');
  const { hashKey } = valid;

  function redactString(input: string, counts: Record<string, number>): string {
    let segments = lockedSplit(storableText(input));
    for (const rule of rules) {
      const next: Segment[] = [];
      for (const segment of segments) {
        if (segment.locked) {
          next.push(segment);
          continue;
        }
        let at = 0;
        for (const hit of rule.find(segment.text)) {
          if (hit.start < at) continue;
          if (hit.start > at) next.push({ text: segment.text.slice(at, hit.start), locked: false });
          next.push({ text: hit.replacement, locked: true });
          counts[rule.name] = (counts[rule.name] ?? 0) + 1;
          at = hit.end;
        }
        if (at === 0) next.push(segment);
        else if (at < segment.text.length) next.push({ text: segment.text.slice(at), locked: false });
      }
      segments = next;
    }
    return segments.map((s) => s.text).join('');
  }

  function redactValue(value: unknown, counts: Record<string, number>, depth: number): unknown {
    if (typeof value === 'string') return redactString(value, counts);
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) return null;
      // a card number written as a JSON number
      if (hasCardRule && Number.isSafeInteger(value) && Math.abs(value) >= 1e12) {
        const text = String(value);
        const redacted = redactString(text, counts);
        return redacted === text ? value : redacted;
      }
      return value;
    }
    if (typeof value === 'boolean' || value === null) return value;
    if (typeof value === 'bigint') return redactString(value.toString(), counts);
    if (typeof value !== 'object') return null;
    if (depth >= MAX_REDACT_DEPTH) return '[TRUNCATED:depth]';
    if (Array.isArray(value)) {
      return value.map((v) => (v === undefined ? null : redactValue(v, counts, depth + 1)));
    }
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      const redactedKey = redactString(key, counts);
      // a structured `api_key: <value>` is the assignment rule's case, split across key and value
      if (hasAssignmentRule && typeof v === 'string' && /^api[_-]?key$/i.test(key)) {
        const text = storableText(v);
        // an empty value, a placeholder or a shape's type name is no secret
        if (text !== '' && !SHAPE_NAMES.has(text) && !/^\[REDACTED:[a-z][a-z0-9_]*\]$/.test(text)) {
          counts['api_key_assignment'] = (counts['api_key_assignment'] ?? 0) + 1;
          out[redactedKey] = '[REDACTED:api_key]';
          continue;
        }
      }
      out[redactedKey] = redactValue(v, counts, depth + 1);
    }
    return out;
  }

  const metadata = valid.capture === ContentCapture.metadata;
  // an already-digested text stays as it is: redacting twice changes nothing
  const digest = (text: string): string => (DIGEST.test(text) ? text : contentDigest(text, hashKey));
  const digestOrNull = (text: string | null): string | null => (text === null ? null : digest(text));

  const callArgs = (args: unknown, counts: Record<string, number>): unknown => {
    const redacted = redactValue(args, counts, 0);
    return metadata ? shapeOf(redacted) : redacted;
  };

  function call(c: ProposedCall, counts: Record<string, number>): ProposedCall {
    const rationale = c.rationale === null ? null : redactString(c.rationale, counts);
    return {
      id: storableText(c.id),
      tool: storableText(c.tool),
      args: callArgs(c.args, counts),
      rationale: metadata ? digestOrNull(rationale) : rationale,
    };
  }

  function message(m: ChatMessage, counts: Record<string, number>): ChatMessage {
    const text = (s: string): string => {
      const redacted = redactString(s, counts);
      return metadata ? digest(redacted) : redacted;
    };
    switch (m.role) {
      case 'system':
      case 'user':
        return { role: m.role, content: text(m.content) };
      case 'assistant':
        return {
          role: 'assistant',
          content: m.content === null ? null : text(m.content),
          toolCalls: m.toolCalls.map((c) => call(c, counts)),
        };
      case 'tool':
        return {
          role: 'tool',
          toolCallId: storableText(m.toolCallId),
          tool: storableText(m.tool),
          content: text(m.content),
        };
    }
  }

  function tool(t: ToolDefinition, counts: Record<string, number>): ToolDefinition {
    const description = redactString(t.description, counts);
    return {
      name: storableText(t.name),
      description: metadata ? digest(description) : description,
      parameters: redactValue(t.parameters, counts, 0) as Record<string, unknown>,
    };
  }

  function completion(c: TraceCompletion, counts: Record<string, number>): TraceCompletion {
    const content = c.content === null ? null : redactString(c.content, counts);
    return {
      content: metadata ? digestOrNull(content) : content,
      toolCalls: c.toolCalls.map((tc) => call(tc, counts)),
      finishReason: c.finishReason,
    };
  }

  return Object.freeze({
    capture: valid.capture,
    rules: Object.freeze(rules.map((r) => r.name)),
    redactText(text: string) {
      const counts: Record<string, number> = {};
      return { text: redactString(text, counts), counts };
    },
    redactTrace(trace: ModelTrace) {
      const counts: Record<string, number> = {};
      const s = storableText;
      const redacted: ModelTrace = {
        id: s(trace.id),
        ts: trace.ts,
        agentId: s(trace.agentId),
        runId: s(trace.runId),
        step: trace.step,
        route: s(trace.route),
        purpose: s(trace.purpose),
        target: s(trace.target),
        provider: s(trace.provider),
        model: s(trace.model),
        attempts: trace.attempts.map((a) => ({
          ...a,
          target: s(a.target),
          provider: s(a.provider),
          model: s(a.model),
          outcome: s(a.outcome),
        })),
        fallbackCause: trace.fallbackCause === null ? null : redactString(trace.fallbackCause, counts),
        messages: trace.messages.map((m) => message(m, counts)),
        tools: trace.tools.map((t) => tool(t, counts)),
        completion: trace.completion === null ? null : completion(trace.completion, counts),
        error:
          trace.error === null
            ? null
            : { code: s(trace.error.code), message: redactString(trace.error.message, counts) },
        usage: { inputTokens: trace.usage.inputTokens, outputTokens: trace.usage.outputTokens },
        latencyMs: trace.latencyMs,
        overheadMs: trace.overheadMs,
        contentCaptured: trace.contentCaptured && !metadata,
      };
      return { trace: redacted, counts };
    },
  });
}
