/**
 * Test support: runs a CLI command in process, capturing what it writes.
 * @module
 */
import { PassThrough } from 'node:stream';
import { main } from '../cli/main.ts';
import type { CliIo, Command } from '../cli/io.ts';

/** What a command printed and returned. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `command` (default: the whole `agent-runtime` CLI) with `argv`. */
export async function runCli(argv: readonly string[], command: Command = main): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on('data', (chunk: Buffer) => out.push(chunk.toString()));
  stderr.on('data', (chunk: Buffer) => err.push(chunk.toString()));
  const io: CliIo = { stdout, stderr };
  const code = await command(argv, io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}
