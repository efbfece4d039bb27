/**
 * Runs an `agent-runtime` subcommand as a child process of the stack (the audit aggregator and the
 * observer run in their own processes, with their own credentials), waits for the line that says
 * it is ready, and stops it with SIGTERM (SIGKILL after a grace period).
 * @module
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { AgentRuntimeError } from '../policy/errors.ts';

/** The CLI entry beside this module: `cli/bin.ts` from source (Node strips types), `cli/bin.js` from `dist`. */
export function cliEntry(): string {
  const self = fileURLToPath(import.meta.url);
  return fileURLToPath(new URL(`../cli/bin${extname(self)}`, import.meta.url));
}

/** A running child. */
export interface ChildHandle {
  readonly name: string;
  readonly pid: number;
  /** The regex match of the ready line. */
  readonly ready: RegExpMatchArray;
  /** Settles with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  /** Sends a signal without waiting (tests kill the observer with SIGKILL). */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves when it exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartChildOptions {
  readonly name: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** A stdout line matching this means ready. */
  readonly ready: RegExp;
  readonly timeoutMs?: number;
  /** Every other output line (stdout and stderr). */
  readonly onLine?: (line: string) => void;
}

/** Starts `node <cli entry> ...args` and waits for its ready line. */
export async function startChild(options: StartChildOptions): Promise<ChildHandle> {
  const child: ChildProcess = spawn(process.execPath, [cliEntry(), ...options.args], {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', () => resolve('spawn-failed'));
  });
  const tail: string[] = [];
  const keep = (line: string): void => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
  };
  const ready = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new AgentRuntimeError(
          'CHILD_START_TIMEOUT',
          `${options.name} did not get ready within ${options.timeoutMs ?? 30_000} ms:\n${tail.join('\n')}`,
        ),
      );
    }, options.timeoutMs ?? 30_000);
    let done = false;
    const stdout = createInterface({ input: child.stdout! });
    stdout.on('line', (line) => {
      const match = done ? null : line.match(options.ready);
      if (match) {
        done = true;
        clearTimeout(timer);
        resolve(match);
      } else {
        keep(line);
      }
      options.onLine?.(line);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      keep(line);
      options.onLine?.(line);
    });
    void exited.then((code) => {
      if (done) return;
      clearTimeout(timer);
      reject(
        new AgentRuntimeError(
          'CHILD_EXITED',
          `${options.name} exited (${code}) before it was ready:\n${tail.join('\n')}`,
        ),
      );
    });
  });
  let stopping: Promise<void> | undefined;
  return {
    name: options.name,
    pid: child.pid ?? -1,
    ready,
    exited,
    kill: (signal) => {
      child.kill(signal);
    },
    stop: (graceMs = 5_000) => {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
