/**
 * CLI plumbing: output streams, usage errors and file reading, shared by every command.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { AgentRuntimeError } from '../policy/index.ts';

/** Where a command writes. Injected so commands can be run in-process. */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

/** A command: parsed by itself, returns the process exit code. */
export type Command = (argv: readonly string[], io: CliIo) => Promise<number>;

/** Exit codes: 0 success, 1 the input was judged and found wanting, 2 the command line was wrong. */
export const ExitCode = { ok: 0, failed: 1, usage: 2 } as const;

/** Raised for a malformed command line; printed with the command's usage text. */
export class UsageError extends AgentRuntimeError {
  readonly usage: string;
  constructor(message: string, usage: string) {
    super('CLI_USAGE', message);
    this.usage = usage;
  }
}

/** Writes one line. */
export function println(stream: NodeJS.WritableStream, text = ''): void {
  stream.write(`${text}\n`);
}

/** Reads a text file, turning OS errors into one clear line. */
export async function readTextFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new AgentRuntimeError(
      'CLI_FILE_UNREADABLE',
      `${file}: cannot read (${code ?? (error as Error).message})`,
    );
  }
}

/** Parses a JSON option value, naming the option on failure. */
export function parseJsonOption(option: string, value: string, usage: string): unknown {
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new UsageError(
      `${option}: expected JSON, got ${JSON.stringify(value)} (${(error as Error).message})`,
      usage,
    );
  }
}
