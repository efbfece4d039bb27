/**
 * Exports the governance document format as a JSON Schema (draft 2020-12) for editors:
 * `docs/governance.schema.json`. Built from the zod schema in `policy/schema.ts`, so it cannot
 * drift from the loader; `test/json-schema.test.ts` fails when the committed file is stale.
 *
 * The JSON Schema describes the *input* shape (keys with defaults are optional). Checks that a
 * JSON Schema cannot express — glob and regex safety, durations, references to roles and
 * principals, quorums — are done by the loader only.
 *
 * Usage: `node scripts/export-json-schema.ts` (writes the file), `--check` (exit 1 when stale).
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { GovernanceDocumentSchema } from '../policy/schema.ts';

/** Where the exported schema lives, relative to the repository root. */
export const JSON_SCHEMA_FILE = 'docs/governance.schema.json';
export const JSON_SCHEMA_PATH = fileURLToPath(new URL(`../${JSON_SCHEMA_FILE}`, import.meta.url));

/** Identifies the schema (a URN: the project has no canonical URL to host it at). */
export const JSON_SCHEMA_ID = 'urn:agent-runtime:schema:governance:1';

/** Builds the JSON Schema object for governance documents. */
export function buildGovernanceJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(GovernanceDocumentSchema, {
    target: 'draft-2020-12',
    io: 'input',
    // every type in the schema is representable; fail loudly if that ever changes
    unrepresentable: 'throw',
    cycles: 'throw',
    // selectors appear in several places; inlining keeps each editor hint self-contained
    reused: 'inline',
  }) as Record<string, unknown>;
  const { $schema, ...rest } = generated;
  return {
    $schema,
    $id: JSON_SCHEMA_ID,
    title: 'agent-runtime governance document (schemaVersion 1)',
    description:
      'Who an agent is, whom it serves, what it may do and who may direct or approve it. ' +
      'Generated from policy/schema.ts by scripts/export-json-schema.ts; do not edit by hand. ' +
      'The loader additionally checks durations, globs, regex safety, role and principal ' +
      'references, quorums and duplicate ids, which JSON Schema cannot express.',
    ...rest,
  };
}

/** The file's exact text: pretty-printed, with a trailing newline. */
export function renderGovernanceJsonSchema(): string {
  return `${JSON.stringify(buildGovernanceJsonSchema(), null, 2)}\n`;
}

function main(args: readonly string[]): number {
  const text = renderGovernanceJsonSchema();
  if (args.includes('--check')) {
    let current: string | undefined;
    try {
      current = readFileSync(JSON_SCHEMA_PATH, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === text) return 0;
    console.error(`${JSON_SCHEMA_FILE} is stale; run: node scripts/export-json-schema.ts`);
    return 1;
  }
  mkdirSync(dirname(JSON_SCHEMA_PATH), { recursive: true });
  writeFileSync(JSON_SCHEMA_PATH, text);
  console.log(`wrote ${JSON_SCHEMA_FILE}`);
  return 0;
}

if (import.meta.main) {
  process.exitCode = main(process.argv.slice(2));
}
