/**
 * The shipped examples (examples/<name>/governance.yaml) load, and their policyVersion behaves:
 * a sha256 of the document's meaning. Layout, key order and YAML-vs-JSON do not change it; any
 * change to a rule does. Loaded documents are deeply frozen.
 */
import { globSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { formatProblem } from '../policy/errors.ts';
import { parseGovernance } from '../policy/load.ts';
import type { LoadedGovernance } from '../policy/load.ts';

const EXAMPLES_DIR = fileURLToPath(new URL('../examples/', import.meta.url));
const EXAMPLES = globSync('*/governance.yaml', { cwd: EXAMPLES_DIR })
  .map((path) => path.split('\\').join('/'))
  .filter((path) => !path.startsWith('invalid/'))
  .sort();

type Raw = Record<string, unknown>;

function textOf(example: string): string {
  return readFileSync(`${EXAMPLES_DIR}${example}`, 'utf8');
}

/** Loads text and fails the test with every problem listed when it does not validate. */
function mustLoad(text: string, file: string): LoadedGovernance {
  const result = parseGovernance(text, file);
  if (!result.ok)
    throw new Error(`${file} did not validate:\n${result.problems.map(formatProblem).join('\n')}`);
  return result;
}

function versionOf(text: string, file = 'governance.yaml'): string {
  return mustLoad(text, file).policyVersion;
}

/** Same data, every mapping's keys in reverse order (list order is meaningful and kept). */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([key, child]) => [key, reverseKeys(child)]),
    );
  }
  return value;
}

function rulesOf(raw: Raw): Raw[] {
  const actions = raw.actions as Raw;
  return actions.rules as Raw[];
}

/** Every object and array reachable from `value`, with its path. */
function* containers(value: unknown, path = 'document'): Generator<[string, object]> {
  if (typeof value !== 'object' || value === null) return;
  yield [path, value];
  for (const [key, child] of Object.entries(value)) yield* containers(child, `${path}.${key}`);
}

test('the examples directory holds at least the two shipped examples', () => {
  expect(EXAMPLES).toEqual(
    expect.arrayContaining(['ops-staging/governance.yaml', 'support-finance/governance.yaml']),
  );
});

describe.each(EXAMPLES)('examples/%s', (example) => {
  const text = textOf(example);
  const file = `examples/${example}`;

  test('validates', () => {
    const result = parseGovernance(text, file);
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
    expect(result.ok).toBe(true);
  });

  test('policyVersion is a sha256 hex digest, stable across loads', () => {
    const first = mustLoad(text, file);
    const second = mustLoad(text, file);
    expect(first.policyVersion).toMatch(/^[0-9a-f]{64}$/);
    expect(second.policyVersion).toBe(first.policyVersion);
    expect(second.document).toEqual(first.document);
  });

  test('policyVersion ignores key order, indentation, quoting, flow style and comments', () => {
    const base = versionOf(text);
    const reordered = reverseKeys(parse(text));
    const variants = [
      stringify(reordered, { indent: 4, defaultStringType: 'QUOTE_DOUBLE', lineWidth: 0 }),
      stringify(reordered, { indent: 2, collectionStyle: 'flow', lineWidth: 0 }),
      stringify(parse(text), {
        indent: 3,
        defaultKeyType: 'QUOTE_SINGLE',
        defaultStringType: 'QUOTE_SINGLE',
      }),
    ];
    for (const variant of variants) {
      expect(variant).not.toBe(text);
      expect(versionOf(variant)).toBe(base);
    }
    // the first variant really does start with a different key
    const firstKey = (yaml: string): string | undefined => Object.keys(parse(yaml) as Raw)[0];
    expect(firstKey(variants[0] ?? '')).not.toBe(firstKey(text));
  });

  test('policyVersion is the same for the YAML and the JSON form of the document', () => {
    const raw: unknown = parse(text);
    const base = versionOf(text);
    expect(versionOf(JSON.stringify(raw, null, 2), 'governance.json')).toBe(base);
    expect(versionOf(JSON.stringify(reverseKeys(raw)), 'governance.json')).toBe(base);
  });

  test('policyVersion changes when any rule changes', () => {
    const base = versionOf(text);
    const original = rulesOf(parse(text) as Raw);
    const ruleCount = original.length;
    expect(ruleCount).toBeGreaterThan(1);
    const variants = new Map<string, string>();
    const variant = (label: string, change: (rules: Raw[]) => void): void => {
      const raw = parse(text) as Raw;
      change(rulesOf(raw));
      variants.set(label, versionOf(stringify(raw)));
    };
    for (let i = 0; i < ruleCount; i++) {
      const rule = (rules: Raw[]): Raw => rules[i] as Raw;
      variant(`rules[${i}].id`, (rules) => void (rule(rules).id = `${String(rule(rules).id)}-v2`));
      variant(`rules[${i}].description`, (rules) => void (rule(rules).description = 'Changed after review.'));
      variant(`rules[${i}].tool`, (rules) => void (rule(rules).tool = `x.${String(rule(rules).tool)}`));
      variant(`rules[${i}].reason`, (rules) => void (rule(rules).reason = 'A different reason.'));
      variant(`rules[${i}] removed`, (rules) => void rules.splice(i, 1));
      if (original[i]?.limits !== undefined) {
        variant(`rules[${i}].limits.perRun`, (rules) => {
          const l = rule(rules).limits as Raw;
          l.perRun = Number(l.perRun) + 1;
        });
      }
      if (original[i]?.approval !== undefined) {
        variant(
          `rules[${i}].approval.timeout`,
          (rules) => void ((rule(rules).approval as Raw).timeout = '2d'),
        );
      }
    }
    // file order breaks ties between equally restrictive rules, so it is part of the policy
    variant(
      'rules[0] and rules[1] swapped',
      (rules) => void rules.splice(0, 2, rules[1] as Raw, rules[0] as Raw),
    );

    for (const [label, version] of variants) expect(version, label).not.toBe(base);
    expect(new Set(variants.values()).size).toBe(variants.size);
  });

  test('the loaded document is deeply frozen', () => {
    const loaded = mustLoad(text, file);
    const thawed = [...containers(loaded.document)]
      .filter(([, value]) => !Object.isFrozen(value))
      .map(([path]) => path);
    expect(thawed).toEqual([]);
    expect(Object.isFrozen(loaded)).toBe(true);

    // test files are ES modules, so strict mode: writes to frozen objects throw
    const document = loaded.document as unknown as Raw;
    const identity = document.identity as Raw;
    const rules = (document.actions as Raw).rules as Raw[];
    const firstRule = rules[0] as Raw;
    expect(() => {
      identity.name = 'Someone else';
    }).toThrow(TypeError);
    expect(() => {
      firstRule.tier = 'autonomous';
    }).toThrow(TypeError);
    expect(() => {
      delete identity.id;
    }).toThrow(TypeError);
    expect(() => rules.push({ id: 'sneaky', tool: '**', tier: 'autonomous' })).toThrow(TypeError);
    expect(() => {
      document.extra = true;
    }).toThrow(TypeError);
    expect(identity.name).toBe((parse(text) as { identity: Raw }).identity.name);
  });
});
