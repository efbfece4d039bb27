/**
 * Loading governance documents: YAML or JSON text → validated, frozen document + `policyVersion`.
 * Every problem is reported at once with file, line (where the YAML parser knows it), YAML path,
 * and expected vs got. No I/O: callers read the file and pass its text.
 * @module
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { digestOf } from './canonical.ts';
import { crossCheck } from './cross-check.ts';
import { GovernanceDocumentError } from './errors.ts';
import type { DocumentProblem } from './errors.ts';
import { describeValue, GovernanceDocumentSchema } from './schema.ts';
import type { GovernanceDocument } from './schema.ts';

// beyond this many syntax errors the rest are echoes of the first
const MAX_SYNTAX_ERRORS = 20;

/** Largest governance document accepted, in characters. */
export const MAX_DOCUMENT_CHARS = 2 * 1024 * 1024;

/** A validated document and its version. */
export interface LoadedGovernance {
  readonly document: GovernanceDocument;
  /** sha256 (hex) of the canonical JSON of the validated document, defaults applied. */
  readonly policyVersion: string;
  readonly file: string;
}

export type LoadResult =
  | ({ readonly ok: true } & LoadedGovernance)
  | { readonly ok: false; readonly problems: readonly DocumentProblem[] };

type Path = readonly PropertyKey[];

/** Parses and validates governance text. `file` is only used in messages. */
export function parseGovernance(input: string, file: string): LoadResult {
  const text = input.startsWith('\uFEFF') ? input.slice(1) : input;
  if (text.length > MAX_DOCUMENT_CHARS) {
    return fail([
      {
        file,
        line: undefined,
        path: '(root)',
        message: `expected at most ${MAX_DOCUMENT_CHARS} characters, got ${text.length}`,
      },
    ]);
  }
  if (file.toLowerCase().endsWith('.json')) {
    try {
      JSON.parse(text);
    } catch (error) {
      return fail([
        {
          file,
          line: jsonErrorLine(text, error),
          path: '(root)',
          message: `invalid JSON: ${(error as Error).message}`,
        },
      ]);
    }
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true });
  if (doc.errors.length > 0) {
    return fail(
      dedupe(
        doc.errors.slice(0, MAX_SYNTAX_ERRORS).map((error) => ({
          file,
          line: lineCounter.linePos(error.pos[0]).line,
          path: '(root)',
          message:
            error.code === 'DUPLICATE_KEY'
              ? `invalid YAML: duplicate key ${JSON.stringify(keyTextAt(text, error.pos[0]))}`
              : `invalid YAML: ${error.message.split('\n')[0]}`,
        })),
      ),
    );
  }
  if (doc.contents === null) {
    return fail([
      { file, line: undefined, path: '(root)', message: 'expected a governance document, got an empty file' },
    ]);
  }
  let raw: unknown;
  try {
    // aliases can expand exponentially; a governance document has no need for many
    raw = doc.toJS({ maxAliasCount: 50 });
  } catch (error) {
    return fail([
      { file, line: undefined, path: '(root)', message: `invalid YAML: ${(error as Error).message}` },
    ]);
  }
  const lineAt = (path: Path, atKey: boolean): number | undefined => {
    const node = nodeAt(doc.contents, path, atKey);
    return node?.range ? lineCounter.linePos(node.range[0]).line : undefined;
  };
  return validateRaw(raw, file, lineAt);
}

/**
 * Validates an already-parsed value (a workflow input, an `updatePolicy` signal): the same
 * checks as `parseGovernance`, without line numbers.
 */
export function validateGovernance(value: unknown, file = '(value)'): LoadResult {
  return validateRaw(value, file, () => undefined);
}

/** Like `parseGovernance`, but throws a `GovernanceDocumentError` listing every problem. */
export function parseGovernanceOrThrow(text: string, file: string): LoadedGovernance {
  const result = parseGovernance(text, file);
  if (!result.ok) throw new GovernanceDocumentError(result.problems);
  return result;
}

/** Computes the `policyVersion` of a validated document. */
export function policyVersionOf(document: GovernanceDocument): string {
  return digestOf(document);
}

function validateRaw(
  raw: unknown,
  file: string,
  lineAt: (path: Path, atKey: boolean) => number | undefined,
): LoadResult {
  const problems: DocumentProblem[] = [];
  const parsed = GovernanceDocumentSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      for (const { path, message, atKey } of describeIssue(issue)) {
        problems.push({ file, line: lineAt(path, atKey), path: formatPath(path), message });
      }
    }
  }
  for (const problem of crossCheck(raw)) {
    problems.push({
      file,
      line: lineAt(problem.path, false),
      path: formatPath(problem.path),
      message: problem.message,
    });
  }
  if (problems.length > 0 || !parsed.success) return fail(dedupe(problems));
  const document = deepFreeze(parsed.data);
  return Object.freeze({ ok: true as const, document, policyVersion: policyVersionOf(document), file });
}

function fail(problems: readonly DocumentProblem[]): LoadResult {
  return Object.freeze({ ok: false as const, problems: Object.freeze([...problems]) });
}

function dedupe(problems: DocumentProblem[]): DocumentProblem[] {
  const seen = new Set<string>();
  const out = problems.filter((p) => {
    const key = `${p.path}\0${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return out.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

interface Described {
  readonly path: Path;
  readonly message: string;
  readonly atKey: boolean;
}

function describeIssue(issue: z.core.$ZodIssue): Described[] {
  const path = issue.path;
  const got = (): string => describeValue(issue.input);
  const custom = issue.message.startsWith('expected') ? issue.message : undefined;
  const withGot = (message: string): string =>
    message.includes(', got ') ? message : `${message}, got ${got()}`;
  const one = (message: string, atKey = false): Described[] => [{ path, message, atKey }];
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({
        path: [...path, key],
        message: `unknown key "${key}" (expected one of: ${allowedKeys(path).join(', ')})`,
        atKey: true,
      }));
    case 'invalid_type':
      if (issue.input === undefined)
        return one(`missing required key: expected ${expectedPhrase(issue.expected)}`);
      return one(withGot(custom ?? `expected ${expectedPhrase(issue.expected)}`));
    case 'invalid_value': {
      const expected = `expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}`;
      if (issue.input === undefined) return one(`missing required key: ${expected}`);
      return one(withGot(custom ?? expected));
    }
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const word = issue.code === 'too_small' ? 'at least' : 'at most';
      const plural = (n: number | bigint): string => (Number(n) === 1 ? '' : 's');
      const size = Array.isArray(issue.input)
        ? `${issue.input.length} item${plural(issue.input.length)}`
        : typeof issue.input === 'string'
          ? `${issue.input.length} character${plural(issue.input.length)}`
          : got();
      const unit =
        issue.origin === 'array'
          ? ` item${plural(bound)}`
          : issue.origin === 'string'
            ? ` character${plural(bound)}`
            : '';
      return one(`expected ${word} ${String(bound)}${unit}, got ${size}`);
    }
    case 'invalid_format':
      return one(withGot(custom ?? `expected ${issue.format}`));
    case 'invalid_key':
      return one(`invalid key ${got()}: ${issue.issues.map((i) => i.message).join('; ')}`, true);
    case 'invalid_union':
      return one(withGot(custom ?? 'expected one of several shapes'));
    case 'custom': {
      // messages that already quote the offending text need no ", got"
      const quoted = typeof issue.input === 'string' && issue.message.includes(JSON.stringify(issue.input));
      return one(issue.input === undefined || quoted ? issue.message : withGot(issue.message));
    }
    default:
      return one(issue.message);
  }
}

function expectedPhrase(expected: string): string {
  if (expected === 'object') return 'a mapping';
  if (expected === 'array') return 'a list';
  return expected;
}

/** Walks the zod schema along a path to list the keys an object there accepts. */
function allowedKeys(path: Path): string[] {
  let schema: unknown = GovernanceDocumentSchema;
  for (const key of path) {
    schema = unwrap(schema);
    const def = (
      schema as {
        def?: { type?: string; shape?: Record<string, unknown>; element?: unknown; valueType?: unknown };
      }
    ).def;
    if (def?.type === 'object' && typeof key === 'string') schema = def.shape?.[key];
    else if (def?.type === 'array') schema = def.element;
    else if (def?.type === 'record') schema = def.valueType;
    else return [];
  }
  const def = (unwrap(schema) as { def?: { type?: string; shape?: Record<string, unknown> } }).def;
  return def?.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

function unwrap(schema: unknown): unknown {
  let current = schema as { def?: { type?: string; innerType?: unknown; in?: unknown } } | undefined;
  while (
    current?.def &&
    ['optional', 'default', 'nullable', 'pipe', 'readonly'].includes(current.def.type ?? '')
  ) {
    current = (current.def.innerType ?? current.def.in) as typeof current;
  }
  return current;
}

function nodeAt(root: unknown, path: Path, atKey: boolean): YamlNode | undefined {
  let node = root as YamlNode | null | undefined;
  let best = node ?? undefined;
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(key),
      );
      if (!pair) break;
      const keyNode = pair.key as YamlNode | null;
      if (last && atKey && keyNode) return keyNode;
      node = pair.value as YamlNode | null;
      best = node ?? keyNode ?? best;
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

/** `actions.rules[2].tier` style paths. */
export function formatPath(path: Path): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$-]*$/.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

function jsonErrorLine(text: string, error: unknown): number | undefined {
  const message = (error as Error).message;
  if (message.includes('end of JSON input')) return text.trimEnd().split('\n').length;
  const match = /position (\d+)/.exec(message);
  if (!match) return undefined;
  return text.slice(0, Number(match[1])).split('\n').length;
}

function keyTextAt(text: string, offset: number): string {
  const rest = text.slice(offset, offset + 200);
  const quoted = /^(["'])(.*?)\1/.exec(rest);
  return quoted ? quoted[2]! : (/^[^:\n]*/.exec(rest)?.[0] ?? '').trim();
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
