/**
 * The `scripted` provider: plays a fixed list of turns, for tests, demos and the benchmark. It is
 * deterministic: the n-th assistant turn of a conversation plays `turns[n]`, whatever the messages
 * say, so a replayed or retried call gets the same reply.
 *
 * Script files are YAML (or JSON):
 *
 * ```yaml
 * turns:
 *   - say: Let me look.
 *     calls:
 *       - { tool: fs.read, args: { path: README.md }, rationale: need the file }
 *   - final: Done.
 *     usage: { inputTokens: 120, outputTokens: 8 }
 * ```
 * @module
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMap, isSeq, isScalar, LineCounter, parseDocument } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { formatProblem } from '../../policy/errors.ts';
import type { DocumentProblem } from '../../policy/errors.ts';
import { formatPath } from '../../policy/load.ts';
import { describeValue } from '../../policy/schema.ts';
import { ModelError, ModelErrorCode } from './errors.ts';
import type {
  ChatMessage,
  ModelProvider,
  ModelRequest,
  ModelResponse,
  ProposedCall,
  ScriptedTurn,
} from './types.ts';
import { estimateUsage } from './usage.ts';

/** The answer once every turn has been played. */
export const SCRIPT_FINISHED = '(script finished)';

/** Largest script accepted, in characters. */
export const MAX_SCRIPT_CHARS = 1024 * 1024;

const UsageSchema = z.strictObject({
  inputTokens: z.int().nonnegative(),
  outputTokens: z.int().nonnegative(),
});

const CallSchema = z.strictObject({
  tool: z.string().min(1),
  /** Missing means `{}`. */
  args: z.unknown().optional(),
  rationale: z.string().optional(),
});

const TurnSchema = z
  .strictObject({
    say: z.string().optional(),
    calls: z.array(CallSchema).min(1).optional(),
    final: z.string().optional(),
    usage: UsageSchema.optional(),
    /** Simulated model latency before the turn is answered (a real model thinks for seconds). */
    thinkMs: z.int().min(0).max(60_000).optional(),
  })
  .superRefine((turn, ctx) => {
    if (turn.calls !== undefined && turn.final !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected either "calls" or "final", not both' });
    } else if (turn.calls === undefined && turn.final === undefined) {
      ctx.addIssue({ code: 'custom', message: 'expected "calls" (a non-empty list) or "final"' });
    } else if (turn.final !== undefined && turn.say !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['say'],
        message: '"say" goes with "calls"; a final turn gives its text in "final"',
      });
    }
  });

/** A script: `{ turns: [...] }`, each turn either `calls` (with an optional `say`) or `final`. */
export const ScriptSchema = z.strictObject({ turns: z.array(TurnSchema).min(1) });

const ALLOWED_KEYS: Readonly<Record<string, readonly string[]>> = {
  '': ['turns'],
  turns: ['say', 'calls', 'final', 'usage', 'thinkMs'],
  calls: ['tool', 'args', 'rationale'],
  usage: ['inputTokens', 'outputTokens'],
};

type Path = readonly PropertyKey[];

/** The message of an invalid script: `invalid script (N problems):` then `file[:line]: path: message` lines. */
export class ScriptError extends ModelError {
  readonly problems: readonly DocumentProblem[];
  constructor(problems: readonly DocumentProblem[]) {
    super(
      ModelErrorCode.scriptInvalid,
      `invalid script (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map(formatProblem).join('\n'),
    );
    this.problems = Object.freeze([...problems]);
  }
}

/**
 * Parses and validates script text (YAML or JSON); `file` is only used in messages. Returns the
 * frozen turns, or throws a {@link ScriptError} (code `MODEL_SCRIPT_INVALID`) listing every
 * problem with its line and YAML path, e.g. `script.yaml:7: turns[2].calls[0].tool: expected a string, got number 3`.
 */
export function parseScript(input: string, file: string): readonly ScriptedTurn[] {
  const text = input.startsWith('\uFEFF') ? input.slice(1) : input;
  const root = (message: string, line?: number): never => {
    throw new ScriptError([{ file, line, path: '(root)', message }]);
  };
  if (text.length > MAX_SCRIPT_CHARS)
    root(`expected at most ${MAX_SCRIPT_CHARS} characters, got ${text.length}`);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true });
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    root(`invalid YAML: ${syntax.message.split('\n')[0] ?? ''}`, lineCounter.linePos(syntax.pos[0]).line);
  }
  if (doc.contents === null) root('expected a script with "turns", got an empty file');
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 50 });
  } catch (error) {
    root(`invalid YAML: ${(error as Error).message}`);
  }
  return validate(raw, file, (path) => {
    const node = nodeAt(doc.contents, path);
    return node?.range ? lineCounter.linePos(node.range[0]).line : undefined;
  });
}

/** Validates turns that arrived as a value (the `scripted` model config in workflow input). */
export function validateTurns(turns: unknown, file = '(model config)'): readonly ScriptedTurn[] {
  return validate({ turns }, file, () => undefined);
}

/** Reads and parses a script file; see {@link parseScript}. */
export async function loadScriptFile(path: string): Promise<readonly ScriptedTurn[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ScriptError([
      { file: path, line: undefined, path: '(root)', message: `cannot read: ${reason}` },
    ]);
  }
  return parseScript(text, path);
}

function validate(
  raw: unknown,
  file: string,
  lineAt: (path: Path) => number | undefined,
): readonly ScriptedTurn[] {
  const parsed = ScriptSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    const seen = new Set<string>();
    const problems: DocumentProblem[] = [];
    for (const issue of parsed.error.issues) {
      for (const [path, message] of describeIssue(issue)) {
        const formatted = formatPath(path);
        if (seen.has(`${formatted}\0${message}`)) continue;
        seen.add(`${formatted}\0${message}`);
        problems.push({ file, line: lineAt(path), path: formatted, message });
      }
    }
    throw new ScriptError(problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)));
  }
  return Object.freeze(parsed.data.turns.map(freezeTurn));
}

function freezeTurn(turn: z.infer<typeof TurnSchema>): ScriptedTurn {
  const out: {
    say?: string;
    calls?: NonNullable<ScriptedTurn['calls']>;
    final?: string;
    usage?: NonNullable<ScriptedTurn['usage']>;
    thinkMs?: number;
  } = {};
  if (turn.say !== undefined) out.say = turn.say;
  if (turn.calls !== undefined) {
    out.calls = Object.freeze(
      turn.calls.map((call) =>
        Object.freeze({
          tool: call.tool,
          args: deepFreeze(call.args === undefined ? {} : call.args),
          ...(call.rationale === undefined ? {} : { rationale: call.rationale }),
        }),
      ),
    );
  }
  if (turn.final !== undefined) out.final = turn.final;
  if (turn.usage !== undefined) out.usage = Object.freeze({ ...turn.usage });
  if (turn.thinkMs !== undefined) out.thinkMs = turn.thinkMs;
  return Object.freeze(out);
}

function describeIssue(issue: z.core.$ZodIssue): [Path, string][] {
  const path = issue.path;
  const got = describeValue(issue.input);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const parent = [...path].reverse().find((key) => typeof key === 'string') ?? '';
      const allowed = (ALLOWED_KEYS[String(parent)] ?? []).join(', ');
      return issue.keys.map((key) => [[...path, key], `unknown key "${key}" (expected one of: ${allowed})`]);
    }
    case 'invalid_type': {
      const expected = expectedPhrase(issue.expected);
      if (issue.input === undefined) return [[path, `missing required key: expected ${expected}`]];
      return [[path, `expected ${expected}, got ${got}`]];
    }
    case 'too_small': {
      if (issue.origin === 'array') {
        const n = Array.isArray(issue.input) ? issue.input.length : 0;
        return [[path, `expected at least ${String(issue.minimum)} item, got ${n} items`]];
      }
      if (issue.origin === 'string') return [[path, 'expected a non-empty string']];
      return [[path, `expected at least ${String(issue.minimum)}, got ${got}`]];
    }
    default:
      return [[path, issue.message]];
  }
}

function expectedPhrase(expected: string): string {
  switch (expected) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'string':
      return 'a string';
    case 'int':
      return 'an integer';
    case 'number':
      return 'a number';
    default:
      return expected;
  }
}

function nodeAt(root: unknown, path: Path): YamlNode | undefined {
  let node = root as YamlNode | null | undefined;
  let best = node ?? undefined;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(key),
      );
      if (!pair) break;
      node = (pair.value ?? pair.key) as YamlNode | null;
      best = node ?? best;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key] as YamlNode | undefined;
      if (!item) break;
      node = item;
      best = item;
    } else {
      break;
    }
  }
  return best;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Builds the `scripted` provider (provider `scripted`, model `script`). */
export function createScriptedProvider(): ModelProvider {
  return Object.freeze({
    name: 'scripted',
    complete: async (request: ModelRequest, signal?: AbortSignal): Promise<ModelResponse> => {
      signal?.throwIfAborted();
      const response = playScript(request);
      const thinkMs = scriptedTurnAt(request)?.thinkMs ?? 0;
      if (thinkMs > 0) await sleep(thinkMs, undefined, signal ? { signal } : {});
      return response;
    },
  });
}

function scriptedTurnAt(request: ModelRequest): ScriptedTurn | undefined {
  if (request.model.provider !== 'scripted') return undefined;
  return validateTurns(request.model.turns)[countAssistantTurns(request.messages)];
}

/** The reply the script gives to `request`: `turns[n]`, n = assistant messages so far. Pure. */
export function playScript(request: ModelRequest): ModelResponse {
  if (request.model.provider !== 'scripted') {
    throw new ModelError(
      ModelErrorCode.badRequest,
      `the scripted provider cannot serve a "${request.model.provider}" model config`,
    );
  }
  const turns = validateTurns(request.model.turns);
  const n = countAssistantTurns(request.messages);
  const turn = turns[n];
  if (turn === undefined) return respond(request.messages, SCRIPT_FINISHED, [], 'stop', undefined);
  if (turn.final !== undefined) return respond(request.messages, turn.final, [], 'stop', turn.usage);
  const say = turn.say ?? null;
  const calls: ProposedCall[] = (turn.calls ?? []).map((call, index) =>
    Object.freeze({
      id: `call_${n}_${index}`,
      tool: call.tool,
      args: call.args,
      rationale: call.rationale ?? say,
    }),
  );
  return respond(request.messages, say, calls, 'tool_calls', turn.usage);
}

function countAssistantTurns(messages: readonly ChatMessage[]): number {
  let n = 0;
  for (const message of messages) if (message.role === 'assistant') n++;
  return n;
}

function respond(
  messages: readonly ChatMessage[],
  content: string | null,
  toolCalls: readonly ProposedCall[],
  finishReason: ModelResponse['finishReason'],
  usage: ScriptedTurn['usage'],
): ModelResponse {
  return Object.freeze({
    content,
    toolCalls: Object.freeze([...toolCalls]),
    finishReason,
    usage: usage === undefined ? estimateUsage(messages, content, toolCalls) : Object.freeze({ ...usage }),
    provider: 'scripted',
    model: 'script',
  });
}
