/**
 * docs/governance.schema.json (the JSON Schema for editors) is generated from the zod schema and
 * must not go stale; it is a real draft 2020-12 schema that accepts the examples and rejects
 * unknown keys.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { parseGovernance } from '../policy/load.ts';
import {
  JSON_SCHEMA_FILE,
  JSON_SCHEMA_ID,
  JSON_SCHEMA_PATH,
  renderGovernanceJsonSchema,
} from '../scripts/export-json-schema.ts';

const committedText = readFileSync(JSON_SCHEMA_PATH, 'utf8');

function readExample(path: string): string {
  return readFileSync(new URL(`../examples/${path}`, import.meta.url), 'utf8');
}

let compiled: ValidateFunction | undefined;
/** Compiles the committed schema once (lazily, so a compile error fails a test, not the file). */
function validator(): ValidateFunction {
  // strict: unknown keywords or formats in the exported schema are errors, not silently ignored.
  // allowUnionTypes: scalar constraint values are `type: [string, number, boolean]`, which is
  // plain draft 2020-12 but needs opting in under ajv's strictTypes.
  // zod emits `format: "email"` together with a `pattern`; the pattern does the checking.
  compiled ??= new Ajv2020({
    strict: true,
    allowUnionTypes: true,
    allErrors: true,
    formats: { email: true },
  }).compile(JSON.parse(committedText) as object);
  return compiled;
}

const describeErrors = (errors: readonly ErrorObject[] | null | undefined): string[] =>
  (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);

test(`${JSON_SCHEMA_FILE} is up to date with policy/schema.ts`, () => {
  expect(
    committedText,
    `${JSON_SCHEMA_FILE} is stale: run \`node scripts/export-json-schema.ts\` and commit the result`,
  ).toBe(renderGovernanceJsonSchema());
});

test('the schema names itself for editors', () => {
  const schema = JSON.parse(committedText) as Record<string, unknown>;
  expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
  expect(schema.$id).toBe(JSON_SCHEMA_ID);
  expect(schema.title).toEqual(expect.any(String));
  expect(schema.description).toEqual(expect.any(String));
});

describe('validating with ajv (draft 2020-12)', () => {
  test('the schema compiles in strict mode', () => {
    expect(validator()).toEqual(expect.any(Function));
  });

  test.each(['ops-staging/governance.yaml', 'support-finance/governance.yaml'])(
    'examples/%s is valid',
    (path) => {
      const document: unknown = parse(readExample(path));
      const validate = validator();
      const valid = validate(document);
      expect(describeErrors(validate.errors)).toEqual([]);
      expect(valid).toBe(true);
    },
  );

  test('an unknown top-level key fails', () => {
    const document = parse(readExample('ops-staging/governance.yaml')) as Record<string, unknown>;
    document.permissions = [];
    const validate = validator();
    expect(validate(document)).toBe(false);
    expect(validate.errors).toContainEqual(
      expect.objectContaining({
        instancePath: '',
        keyword: 'additionalProperties',
        params: { additionalProperty: 'permissions' },
      }),
    );
  });

  test('a typo inside a rule ("teir") fails, as it does in the loader', () => {
    const document: unknown = parse(readExample('invalid/06-rule-key-typo-teir.yaml'));
    const validate = validator();
    expect(validate(document)).toBe(false);
    expect(validate.errors).toContainEqual(
      expect.objectContaining({
        instancePath: '/actions/rules/0',
        keyword: 'additionalProperties',
        params: { additionalProperty: 'teir' },
      }),
    );
    expect(validate.errors).toContainEqual(
      expect.objectContaining({
        instancePath: '/actions/rules/0',
        keyword: 'required',
        params: { missingProperty: 'tier' },
      }),
    );
  });

  test("cross-reference checks are the loader's alone (duplicate rule ids pass the JSON Schema)", () => {
    const text = readExample('invalid/10-duplicate-rule-ids.yaml');
    expect(validator()(parse(text))).toBe(true);
    expect(parseGovernance(text, 'duplicate-rule-ids.yaml').ok).toBe(false);
  });
});
