/**
 * `agent-runtime`: the command-line entry point.
 * @module
 */
import { AgentRuntimeError } from '../policy/index.ts';
import { benchCommand } from './commands/bench.ts';
import { governanceCommand } from './commands/governance.ts';
import { keysCommand } from './commands/keys.ts';
import { startCommand } from './commands/start.ts';
import { temporalCommand } from './commands/temporal.ts';
import { ExitCode, println, UsageError } from './io.ts';
import type { CliIo, Command } from './io.ts';

const COMMANDS: Readonly<Record<string, Command>> = {
  governance: governanceCommand,
  keys: keysCommand,
  bench: benchCommand,
  temporal: temporalCommand,
  start: startCommand,
};

const USAGE = `agent-runtime: runtime governance for AI agents that act

usage: agent-runtime <command> ...

commands:
  governance validate <file>        check a governance document
  governance explain <file> ...     decide one proposed call and say why
  governance table <file>           print every rule with its tier
  keys init [--dir D] [--force]     create the vote-signing key (approval service)
  bench decide [--rules N]          decision latency benchmark
  temporal provision|path           find or install the Temporal CLI (dev server)
  start                             embedded Temporal dev server + the example decision table`;

/** Runs the CLI with the given arguments; returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    println(name === undefined ? io.stderr : io.stdout, USAGE);
    return name === undefined ? ExitCode.usage : ExitCode.ok;
  }
  const command = COMMANDS[name];
  try {
    if (!command) throw new UsageError(`unknown command "${name}"`, USAGE);
    return await command(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      println(io.stderr, `agent-runtime: ${error.message}`);
      println(io.stderr, error.usage);
      return ExitCode.usage;
    }
    // node:util parseArgs reports unknown or malformed options with these codes
    const code = (error as { code?: string }).code;
    if (code?.startsWith('ERR_PARSE_ARGS')) {
      println(io.stderr, `agent-runtime: ${(error as Error).message}`);
      return ExitCode.usage;
    }
    if (error instanceof AgentRuntimeError) {
      println(io.stderr, `agent-runtime: ${error.message}`);
      return ExitCode.failed;
    }
    throw error;
  }
}
