/**
 * docs/governance.md cannot drift from policy/schema.ts: the zod schema is walked (zod v4 `_zod.def`)
 * to list every key path, and the reference must have exactly one table row per path, with the right
 * "Required" and "Default" cells; every backticked document path anywhere in the page must exist in
 * the schema; every relative link must point at a file that exists.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { GovernanceDocumentSchema } from '../policy/schema.ts';

const DOC_FILE = fileURLToPath(new URL('../docs/governance.md', import.meta.url));
const doc = readFileSync(DOC_FILE, 'utf8');

/** The placeholder a record's keys are written as, by the record's path. */
const RECORD_PLACEHOLDERS: Readonly<Record<string, string>> = {
  'authority.roles': '<role>',
  'actions.rules[].when.args': '<arg>',
};

interface ZodDef {
  readonly type: string;
  readonly shape?: Readonly<Record<string, ZodNode>>;
  readonly element?: ZodNode;
  readonly innerType?: ZodNode;
  readonly in?: ZodNode;
  readonly valueType?: ZodNode;
  readonly options?: readonly ZodNode[];
  readonly defaultValue?: unknown;
}
interface ZodNode {
  readonly _zod: { readonly def: ZodDef };
}

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'readonly', 'pipe', 'catch']);

/** One key of the document, as the schema defines it. */
interface SchemaKey {
  readonly path: string;
  /** `undefined` for record entries, which are neither required nor optional. */
  readonly required: boolean | undefined;
  readonly hasDefault: boolean;
  readonly defaultValue: unknown;
}

/** Strips optional/default/pipe wrappers; reports whether the key may be left out and its default. */
function unwrap(node: ZodNode): {
  inner: ZodNode;
  optional: boolean;
  hasDefault: boolean;
  defaultValue: unknown;
} {
  let inner = node;
  let optional = false;
  let hasDefault = false;
  let defaultValue: unknown;
  while (WRAPPERS.has(inner._zod.def.type)) {
    const def = inner._zod.def;
    if (def.type === 'optional') optional = true;
    if (def.type === 'default' || def.type === 'prefault') {
      optional = true;
      hasDefault = true;
      defaultValue = def.defaultValue;
    }
    const next = def.innerType ?? def.in;
    if (next === undefined) throw new Error(`cannot unwrap a zod ${def.type}`);
    inner = next;
  }
  return { inner, optional, hasDefault, defaultValue };
}

/** Every key path below `node` (objects by key, list items as `[]`, record entries by placeholder). */
function collectKeys(node: ZodNode, path: string, out: SchemaKey[]): SchemaKey[] {
  const def = node._zod.def;
  switch (def.type) {
    case 'object':
      for (const [key, child] of Object.entries(def.shape ?? {})) {
        const childPath = path === '' ? key : `${path}.${key}`;
        const { inner, optional, hasDefault, defaultValue } = unwrap(child);
        out.push({ path: childPath, required: !optional, hasDefault, defaultValue });
        collectKeys(inner, childPath, out);
      }
      break;
    case 'array':
      if (def.element) collectKeys(unwrap(def.element).inner, `${path}[]`, out);
      break;
    case 'record': {
      const placeholder = RECORD_PLACEHOLDERS[path];
      if (placeholder === undefined) throw new Error(`record at ${path} has no placeholder in this test`);
      const entryPath = `${path}.${placeholder}`;
      out.push({ path: entryPath, required: undefined, hasDefault: false, defaultValue: undefined });
      if (def.valueType) collectKeys(unwrap(def.valueType).inner, entryPath, out);
      break;
    }
    case 'union':
      for (const option of def.options ?? []) collectKeys(unwrap(option).inner, path, out);
      break;
    default:
      break;
  }
  return out;
}

const schemaRoot = GovernanceDocumentSchema as unknown as ZodNode;
const schemaKeys = collectKeys(schemaRoot, '', []);
const schemaPaths = new Set(schemaKeys.map((k) => k.path));

const TOP_LEVEL = Object.keys(schemaRoot._zod.def.shape ?? {});
// a document path: a top-level key, then `.key`, `[]`, `[3]` or `["quoted key"]` segments
const PATH_SHAPE = new RegExp(
  `^(?:${TOP_LEVEL.join('|')})(?:\\.[A-Za-z_$<][\\w$<>-]*|\\[\\d*\\]|\\["[^"\\]]*"\\])*$`,
);

type Segment = { readonly kind: 'key'; readonly name: string } | { readonly kind: 'item' };

function segmentsOf(path: string): Segment[] {
  const out: Segment[] = [];
  const re = /\.?([A-Za-z_$<][\w$<>-]*)|\[(\d*)\]|\["([^"\]]*)"\]/gy;
  let match: RegExpExecArray | null;
  while ((match = re.exec(path)) !== null) {
    if (match[1] !== undefined) out.push({ kind: 'key', name: match[1] });
    else if (match[3] !== undefined) out.push({ kind: 'key', name: match[3] });
    else out.push({ kind: 'item' });
  }
  return out;
}

/** Whether a written path (real indices and names allowed) names a key of the schema. */
function existsInSchema(path: string): boolean {
  let node: ZodNode | undefined = schemaRoot;
  for (const segment of segmentsOf(path)) {
    if (node === undefined) return false;
    const def: ZodDef = unwrap(node).inner._zod.def;
    if (segment.kind === 'item') node = def.type === 'array' ? def.element : undefined;
    else if (def.type === 'object') node = def.shape?.[segment.name];
    else if (def.type === 'record') node = def.valueType;
    else node = undefined;
  }
  return node !== undefined;
}

/** The page without fenced code blocks (YAML examples and error output are not references). */
function prose(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '');
}

/** Every inline code span of the prose. */
function codeSpans(markdown: string): string[] {
  return [...prose(markdown).matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);
}

interface Row {
  readonly path: string;
  readonly cells: readonly string[];
  /** Column index by lower-cased header text. */
  readonly columns: ReadonlyMap<string, number>;
  readonly line: number;
}

/** Table rows whose first cell is exactly one backticked document path. */
function keyRows(markdown: string): Row[] {
  const rows: Row[] = [];
  let columns: Map<string, number> | undefined;
  markdown.split('\n').forEach((line, i) => {
    if (!line.startsWith('|')) {
      columns = undefined;
      return;
    }
    const body = line.trimEnd();
    // `\|` inside a cell is an escaped pipe, not a column break
    const cells = body
      .slice(1, body.endsWith('|') ? -1 : undefined)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    if (columns === undefined) {
      columns = new Map(cells.map((c, j) => [c.toLowerCase(), j]));
      return;
    }
    const first = /^`([^`]+)`$/.exec(cells[0] ?? '');
    if (first && PATH_SHAPE.test(first[1]!)) rows.push({ path: first[1]!, cells, columns, line: i + 1 });
  });
  return rows;
}

function columnOf(row: Row, name: string): string | undefined {
  const index = row.columns.get(name);
  return index === undefined ? undefined : row.cells[index];
}

const rows = keyRows(doc);

describe('the schema walk', () => {
  test('finds the keys it must (the walk itself works)', () => {
    expect(schemaKeys.length).toBeGreaterThan(80);
    for (const path of [
      'schemaVersion',
      'identity.values',
      'authority.roles.<role>.level',
      'authority.principals[].slack.user',
      'actions.default.approval.escalate.to.minLevel',
      'actions.rules[].approval.quorum',
      'actions.rules[].when.args.<arg>.matches',
      'actions.rules[].when.director.principals',
      'actions.rules[].limits.perRun',
    ]) {
      expect(schemaPaths, path).toContain(path);
    }
    expect(schemaKeys.find((k) => k.path === 'actions.rules[].approval.quorum')).toMatchObject({
      required: false,
      hasDefault: true,
      defaultValue: 1,
    });
    expect(schemaKeys.find((k) => k.path === 'identity.id')?.required).toBe(true);
  });

  test('resolves written paths with indices and names, and refuses made-up ones', () => {
    expect(existsInSchema('actions.rules[2].tier')).toBe(true);
    expect(existsInSchema('authority.roles.editor.level')).toBe(true);
    expect(existsInSchema('authority.roles["site lead"]')).toBe(true);
    expect(existsInSchema('actions.rules[].when.args.<arg>.lte')).toBe(true);
    expect(existsInSchema('actions.rules[].teir')).toBe(false);
    expect(existsInSchema('actions.rules[].when.args.<arg>.between')).toBe(false);
    expect(existsInSchema('authority.directors[].roles')).toBe(false);
    expect(existsInSchema('identity.id.more')).toBe(false);
  });
});

describe('docs/governance.md', () => {
  test('has one row for every key of the schema', () => {
    const documented = new Set(rows.map((r) => r.path));
    const missing = [...schemaPaths].filter((p) => !documented.has(p));
    expect(missing, 'keys of policy/schema.ts without a row in docs/governance.md').toEqual([]);
  });

  test('has no row twice', () => {
    const seen = new Map<string, number>();
    const twice: string[] = [];
    for (const row of rows) {
      const previous = seen.get(row.path);
      if (previous !== undefined) twice.push(`${row.path} (lines ${previous} and ${row.line})`);
      else seen.set(row.path, row.line);
    }
    expect(twice).toEqual([]);
  });

  test('names no key the schema does not have, in rows or prose', () => {
    const unknownRows = rows.filter((r) => !schemaPaths.has(r.path)).map((r) => `${r.path} (line ${r.line})`);
    expect(unknownRows, 'rows must use the canonical path ([] for items, <role>/<arg> for names)').toEqual(
      [],
    );
    const candidates = codeSpans(doc).filter((span) => PATH_SHAPE.test(span));
    expect(candidates.length).toBeGreaterThan(schemaPaths.size);
    const unknown = [...new Set(candidates.filter((span) => !existsInSchema(span)))];
    expect(unknown, 'backticked document paths that are not keys of policy/schema.ts').toEqual([]);
  });

  test('says required or optional exactly as the schema does', () => {
    const wrong: string[] = [];
    for (const key of schemaKeys) {
      if (key.required === undefined) continue;
      const row = rows.find((r) => r.path === key.path);
      if (!row) continue; // reported by the row test
      const cell = columnOf(row, 'required');
      const expected = key.required ? 'required' : 'optional';
      if (cell !== expected)
        wrong.push(`${key.path}: "${cell ?? '(no Required column)'}", expected ${expected}`);
    }
    expect(wrong).toEqual([]);
  });

  test('states every schema default in its Default column', () => {
    const defaulted = schemaKeys.filter((k) => k.hasDefault);
    expect(defaulted.map((k) => k.path)).toEqual(
      expect.arrayContaining(['actions.rules', 'actions.rules[].approval.quorum']),
    );
    const wrong: string[] = [];
    for (const key of defaulted) {
      const row = rows.find((r) => r.path === key.path);
      if (!row) continue;
      const cell = columnOf(row, 'default') ?? '';
      const expected = `\`${JSON.stringify(key.defaultValue)}\``;
      if (!cell.includes(expected)) wrong.push(`${key.path}: "${cell}", expected it to contain ${expected}`);
    }
    expect(wrong).toEqual([]);
  });

  test('links only to files that exist', () => {
    const links = [...prose(doc).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
      .map((m) => m[1]!)
      .filter((target) => !/^[a-z]+:/i.test(target));
    expect(links.length).toBeGreaterThan(10);
    const broken = links.filter((target) => !existsSync(resolve(dirname(DOC_FILE), target)));
    expect(broken).toEqual([]);
  });
});
