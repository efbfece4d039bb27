/**
 * Reading a service's YAML (or JSON) configuration file once, validated with zod: one error that
 * names the file and every problem's path.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import type { z } from 'zod';

/**
 * Reads and validates `file`; on a read, YAML or schema error throws `makeError(message)`, the
 * message being `<file>: invalid <what>` followed by one `  path: problem` line per issue.
 */
export async function readConfigFile<S extends z.ZodType>(
  file: string,
  schema: S,
  what: string,
  makeError: (message: string) => Error,
): Promise<z.output<S>> {
  let raw: unknown;
  try {
    raw = parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw makeError(`${file}: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success)
    throw makeError(
      [`${file}: invalid ${what}`]
        .concat(parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`))
        .join('\n'),
    );
  return parsed.data;
}
