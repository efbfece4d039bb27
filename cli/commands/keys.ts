/**
 * `agent-runtime keys init [--dir <dir>] [--force]`: the approval service's vote-signing key.
 * @module
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initSigningKey } from '../../approval-channels/keys.ts';
import { findProjectRoot } from '../../worker/temporal/binary.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { Command } from '../io.ts';

const USAGE = `usage:
  agent-runtime keys init [--dir <dir>] [--force]   create the Ed25519 vote-signing key (default .agent-runtime/keys)`;

export const keysCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub !== 'init')
    throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: { dir: { type: 'string' }, force: { type: 'boolean', default: false } },
  });
  const dir = values.dir ?? join(findProjectRoot() ?? process.cwd(), '.agent-runtime', 'keys');
  const files = await initSigningKey(dir, { force: values.force });
  println(io.stdout, `key ${files.keyId}`);
  println(io.stdout, `  secret (approval service only, mode 600): ${files.secretKeyFile}`);
  println(io.stdout, `  public (workers, workflows):             ${files.publicKeyFile}`);
  return ExitCode.ok;
};
