/**
 * `agent-runtime start`: the embedded Temporal dev server (with its Web UI) and the decision table
 * of an example governance document. Runs until Ctrl-C, or exits at once with `--no-wait`.
 * @module
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compilePolicy } from '../../policy/index.ts';
import { findProjectRoot } from '../../worker/temporal/binary.ts';
import { startDevServer } from '../../worker/temporal/dev-server.ts';
import { SEARCH_ATTRIBUTES } from '../../worker/temporal/search-attributes.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { Command } from '../io.ts';
import { streamLogger } from '../logger.ts';
import { loadOrReport, printDecisionTable } from './governance.ts';

const USAGE = `usage:
  agent-runtime start [--governance <file>] [--port N] [--ui-port N] [--no-wait]`;

export const startCommand: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      governance: { type: 'string' },
      port: { type: 'string' },
      'ui-port': { type: 'string' },
      'no-wait': { type: 'boolean', default: false },
    },
  });
  const root = findProjectRoot() ?? process.cwd();
  const file = values.governance ?? join(root, 'examples', 'ops-staging', 'governance.yaml');
  const port = values.port === undefined ? 7233 : Number(values.port);
  const uiPort = values['ui-port'] === undefined ? 8233 : Number(values['ui-port']);
  if (!Number.isInteger(port) || !Number.isInteger(uiPort))
    throw new UsageError('--port/--ui-port: expected integers', USAGE);

  const loaded = await loadOrReport(file, io);
  if (!loaded) return ExitCode.failed;

  const stateDir = join(root, '.agent-runtime');
  await mkdir(stateDir, { recursive: true });
  println(io.stdout, 'Starting the embedded Temporal dev server…');
  const server = await startDevServer({
    port,
    ui: true,
    uiPort,
    dbFilename: join(stateDir, 'temporal.db'),
    searchAttributes: SEARCH_ATTRIBUTES,
    logger: streamLogger(io.stderr),
  });
  try {
    println(
      io.stdout,
      `Temporal frontend  ${server.address} (namespace ${server.namespace}), ready in ${server.startupMs} ms`,
    );
    if (server.uiUrl) println(io.stdout, `Temporal Web UI    ${server.uiUrl}`);
    println(io.stdout, `State              ${stateDir}`);
    println(io.stdout);
    printDecisionTable(compilePolicy(loaded.document, loaded.policyVersion), io);
    println(io.stdout);
    if (values['no-wait']) return ExitCode.ok;
    println(io.stdout, 'Press Ctrl-C to stop.');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    println(io.stdout, 'Stopping…');
    return ExitCode.ok;
  } finally {
    await server.stop();
  }
};
