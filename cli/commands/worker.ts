/**
 * `agent-runtime worker --config F`: one `agents` or `tools` worker against a Temporal cluster,
 * as its own process. Prints one ready line, runs until SIGTERM or SIGINT, then shuts the worker
 * down (in-flight tasks finish) and exits 0.
 * @module
 */
import { messageOf } from '../../audit/errors.ts';
import { parseArgs } from 'node:util';
import { ExitCode, println, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';

const USAGE = `usage:
  agent-runtime worker --config F   run the agents or tools worker the file describes (until SIGTERM)
      (see docs/workers.md for the file; the aggregator token comes from $<audit.tokenEnv>)`;

/** `given`, or else the first SIGTERM or SIGINT from now on; `dispose` removes the handlers. */
function signalled(given: Promise<unknown> | undefined): {
  readonly received: Promise<unknown>;
  dispose(): void;
} {
  if (given !== undefined) return { received: given, dispose: () => undefined };
  let on: (signal: NodeJS.Signals) => void = () => undefined;
  const received = new Promise<unknown>((resolve) => {
    on = resolve;
    process.once('SIGTERM', on);
    process.once('SIGINT', on);
  });
  return {
    received,
    dispose: () => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
    },
  };
}

/**
 * Runs the command; `until` ends it (default: SIGTERM or SIGINT). Returns 0 after a clean stop,
 * 1 when the worker failed by itself.
 */
export async function runWorker(
  argv: readonly string[],
  io: CliIo,
  env: NodeJS.ProcessEnv = process.env,
  until?: Promise<unknown>,
): Promise<number> {
  const { values } = parseArgs({ args: [...argv], strict: true, options: { config: { type: 'string' } } });
  if (values.config === undefined) throw new UsageError('missing --config', USAGE);
  // from here on a signal stops the worker gracefully, also while it is starting
  const signals = signalled(until);
  try {
    return await serve(values.config, io, env, signals.received);
  } finally {
    signals.dispose();
  }
}

async function serve(
  configFile: string,
  io: CliIo,
  env: NodeJS.ProcessEnv,
  until: Promise<unknown>,
): Promise<number> {
  const { loadWorkerConfig } = await import('../../worker/config.ts');
  const { startConfiguredWorker } = await import('../../worker/main.ts');
  const config = await loadWorkerConfig(configFile, env);
  const worker = await startConfiguredWorker(config, env, (line) => println(io.stderr, line));
  const { address, namespace, taskQueue } = config.temporal;
  if (worker.metricsUrl) println(io.stdout, `worker ${config.role}: metrics at ${worker.metricsUrl}/metrics`);
  println(
    io.stdout,
    `worker ${config.role} ready on ${taskQueue} (temporal ${address}, namespace ${namespace})`,
  );
  const failure = await Promise.race([
    until.then(() => null),
    worker.done.then(
      () => null,
      (error: unknown) => error,
    ),
  ]);
  await worker.stop();
  if (failure !== null) {
    println(io.stderr, `agent-runtime: worker ${config.role} failed: ${messageOf(failure)}`);
    return ExitCode.failed;
  }
  println(io.stdout, `worker ${config.role} stopped`);
  return ExitCode.ok;
}

/** The `worker` command. */
export const workerCommand: Command = (argv, io) => runWorker(argv, io);
