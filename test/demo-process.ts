/**
 * Test support: `agent-runtime dev|start …` as a real child process on free ports, with its output
 * collected (what `npm start` runs).
 * @module
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { findFreePort } from '../worker/temporal/dev-server.ts';

const root = join(import.meta.dirname, '..');

/** A running `dev`/`start` process. */
export interface DemoProcess {
  readonly child: ChildProcess;
  /** The Temporal frontend it started. */
  readonly address: string;
  readonly exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `pattern` in stdout. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** The JSON lines of stdout (`--json`). */
  events(): Record<string, unknown>[];
  /** SIGTERM unless it has exited; resolves when it has. */
  stop(): Promise<void>;
}

/** Starts `agent-runtime <command> …args` (the built `bin/`) on free ports with its state in `stateDir`. */
export async function startDemoProcess(
  command: 'dev' | 'start',
  args: readonly string[],
  options: { readonly stateDir: string; readonly env?: NodeJS.ProcessEnv },
): Promise<DemoProcess> {
  const [port, uiPort] = [await findFreePort(), await findFreePort()];
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin', 'agent-runtime.js'),
      command,
      ...args,
      '--state-dir',
      options.stateDir,
      '--port',
      `${port}`,
      '--ui-port',
      `${uiPort}`,
      '--approvals-port',
      '0',
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } },
  );
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    address: `127.0.0.1:${port}`,
    exited,
    stdout: () => out,
    stderr: () => err,
    waitForOutput: (pattern, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const match = out.match(pattern);
          if (match) {
            clearTimeout(timer);
            child.stdout.off('data', check);
            resolve(match);
          }
          return match !== null;
        };
        const timer = setTimeout(() => {
          child.stdout.off('data', check);
          reject(new Error(`no ${String(pattern)} in:\n${out}\n--- stderr ---\n${err}`));
        }, timeoutMs);
        if (!check()) child.stdout.on('data', check);
      }),
    events: () =>
      out
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
