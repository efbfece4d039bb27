/**
 * The `agents` worker in a process of its own, for `bench/parked.ts`, so the resident memory it
 * reports is the worker's alone (no client, bundler, tools worker or benchmark bookkeeping).
 * Started with `fork()`; arguments are one JSON object (see {@link AgentsWorkerProcessConfig}).
 * Sends `{ ready: true }` once polling; shuts down on the message `'stop'` or when the parent goes.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { NativeConnection } from '@temporalio/worker';
import { openAuditFile } from '../activities/audit/index.ts';
import { createModelActivities } from '../activities/model/index.ts';
import { createAgentsWorker } from '../worker/workers.ts';
import { installQuietRuntime } from './harness.ts';

/** What the parent passes as the one command-line argument (JSON). */
export interface AgentsWorkerProcessConfig {
  readonly address: string;
  readonly namespace: string;
  readonly taskQueue: string;
  /** File holding the bundled workflow code (built by the parent, so no bundler runs here). */
  readonly bundleFile: string;
  /** Audit file of this worker's sink (fsync `never`, as in `dev`). */
  readonly auditFile: string;
  readonly maxCachedWorkflows?: number;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as AgentsWorkerProcessConfig;
  installQuietRuntime();
  const connection = await NativeConnection.connect({ address: config.address });
  const audit = await openAuditFile(config.auditFile);
  const code = await readFile(config.bundleFile, 'utf8');
  const worker = await createAgentsWorker({
    connection,
    namespace: config.namespace,
    taskQueue: config.taskQueue,
    bundle: { code, sourceMap: '' },
    activities: createModelActivities(),
    audit,
    ...(config.maxCachedWorkflows === undefined ? {} : { maxCachedWorkflows: config.maxCachedWorkflows }),
  });
  const stop = (): void => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  process.on('message', (message) => {
    if (message === 'stop') stop();
  });
  process.on('disconnect', stop);
  const running = worker.run();
  process.send?.({ ready: true });
  await running;
  await audit.close();
  await connection.close();
  if (process.connected) process.disconnect();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
