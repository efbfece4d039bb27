/**
 * One worker process from a {@link WorkerConfig}: the `agents` worker (AgentRun workflows, the
 * model step, the observer lease) or the `tools` worker (the builtin tools behind the execution
 * guard), built from the same pieces as the embedded dev stack. Every audit event goes to the
 * audit aggregator (writer name = the role) and updates this process's metrics.
 * @module
 */
import { messageOf } from '../audit/errors.ts';
import { mkdir } from 'node:fs/promises';
import { NativeConnection } from '@temporalio/worker';
import type { Worker } from '@temporalio/worker';
import { builtinProviders, createModelActivities, createProviderRouter } from '../activities/model/index.ts';
import { loadPublicKeys } from '../approval-channels/keys.ts';
import { createAuditAggregatorClient } from '../audit/client.ts';
import { createAuditMetrics, meteredAudit, MetricsRegistry } from '../metrics/index.ts';
import { AgentRuntimeError } from '../policy/errors.ts';
import { bundleAgentWorkflows } from './bundle.ts';
import { WorkerError, WorkerErrorCode, WorkerRole } from './config.ts';
import type { AgentsWorkerConfig, ToolsWorkerConfig, WorkerConfig } from './config.ts';
import {
  installWorkerRuntime,
  runWorkers,
  serveWorkerMetrics,
  toolsStateDirs,
  watchObserverLease,
  workspaceTools,
} from './parts.ts';
import { createAgentsWorker, createToolsWorker } from './workers.ts';
import type { WorkerConnection } from './workers.ts';
import type { AuditClient } from '../activities/audit/types.ts';

/** A running configured worker. */
export interface ConfiguredWorker {
  readonly role: WorkerRole;
  readonly taskQueue: string;
  /** `http://host:port` of `/metrics`, when `metrics` is configured. */
  readonly metricsUrl: string | undefined;
  /** Settles when the worker stopped; rejects when it failed by itself. */
  readonly done: Promise<void>;
  /** Shuts the worker down (in-flight tasks finish), then closes the lease watcher, Temporal and the audit client. Idempotent. */
  stop(): Promise<void>;
}

type On = WorkerConnection & { readonly taskQueue: string };

/** On SIGTERM, running model calls and tool executions get this long to finish before they are cancelled. */
const SHUTDOWN_GRACE = '30s';

async function agentsWorker(
  config: AgentsWorkerConfig,
  on: On,
  audit: AuditClient,
  token: string,
  env: NodeJS.ProcessEnv,
  cleanups: (() => Promise<void>)[],
): Promise<Worker> {
  const lease =
    config.observerLease === false
      ? undefined
      : await watchObserverLease({ url: config.audit.url, token, ...config.observerLease });
  if (lease) cleanups.push(async () => lease.close());
  // one set of providers for the model step and the routes
  const providers = builtinProviders({ env });
  const router = config.model.routes ? createProviderRouter(config.model.routes, providers) : undefined;
  const activities = createModelActivities({ providers, proxy: router ? { router } : {} });
  const bundle = await bundleAgentWorkflows(config.toolSpecModules);
  return createAgentsWorker({
    ...on,
    bundle,
    activities,
    audit,
    shutdownGraceTime: SHUTDOWN_GRACE,
    ...(lease ? { lease } : {}),
  });
}

async function toolsWorker(config: ToolsWorkerConfig, on: On, audit: AuditClient): Promise<Worker> {
  const { workspace, stateDir, http } = config.tools;
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  return createToolsWorker({
    ...on,
    shutdownGraceTime: SHUTDOWN_GRACE,
    tools: workspaceTools({ workspace, stateDir, http }),
    trustedKeys: await loadPublicKeys(config.trustedKeys),
    audit,
    journalDir: toolsStateDirs(stateDir).journal,
  });
}

/**
 * Starts the worker `config` describes and runs it until `stop()`. The aggregator token is read
 * from `env[config.audit.tokenEnv]`, provider API keys from `env` too; `log` gets warnings.
 * Throws {@link WorkerError} (`WORKER_CONFIG_INVALID` without a token, `WORKER_START_FAILED` when
 * Temporal cannot be reached or the worker cannot be created) after undoing what it started.
 */
export async function startConfiguredWorker(
  config: WorkerConfig,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void,
): Promise<ConfiguredWorker> {
  const token = env[config.audit.tokenEnv];
  if (!token)
    throw new WorkerError(
      WorkerErrorCode.configInvalid,
      `$${config.audit.tokenEnv} (the audit aggregator token) is not set`,
    );
  const { address, namespace, taskQueue } = config.temporal;
  const coreMetrics = config.metrics?.temporalBindAddress;
  if (!installWorkerRuntime(coreMetrics) && coreMetrics)
    log(
      `warning: the Temporal runtime of this process was installed already; no Core metrics on ${coreMetrics}`,
    );

  const cleanups: (() => Promise<void>)[] = [];
  const undo = async (): Promise<void> => {
    while (cleanups.length > 0)
      await cleanups
        .pop()?.()
        .catch((error: unknown) => log(`warning: while stopping: ${messageOf(error)}`));
  };
  try {
    const aggregator = createAuditAggregatorClient({ url: config.audit.url, token, writer: config.role });
    cleanups.push(() => aggregator.close());
    const registry = new MetricsRegistry();
    const audit = meteredAudit(aggregator, createAuditMetrics(registry));

    let connection: NativeConnection;
    try {
      connection = await NativeConnection.connect({ address });
    } catch (error) {
      throw new WorkerError(
        WorkerErrorCode.startFailed,
        `cannot connect to Temporal at ${address}: ${messageOf(error)}`,
        { cause: error },
      );
    }
    cleanups.push(() => connection.close());
    const on: On = { connection, namespace, taskQueue };
    const worker =
      config.role === WorkerRole.agents
        ? await agentsWorker(config, on, audit, token, env, cleanups)
        : await toolsWorker(config, on, audit);

    let metricsUrl: string | undefined;
    if (config.metrics) {
      const metrics = await serveWorkerMetrics({
        registry,
        host: config.metrics.host,
        port: config.metrics.port,
        temporalMetricsAddress: coreMetrics,
      });
      metricsUrl = metrics.url;
      cleanups.push(() => metrics.close());
    }

    const running = runWorkers([worker]);
    cleanups.push(() => running.stop());
    let stopping: Promise<void> | undefined;
    return {
      role: config.role,
      taskQueue,
      metricsUrl,
      done: Promise.all(running.running).then(() => undefined),
      stop: () => (stopping ??= undo()),
    };
  } catch (error) {
    await undo();
    if (error instanceof AgentRuntimeError) throw error;
    throw new WorkerError(WorkerErrorCode.startFailed, `worker ${config.role}: ${messageOf(error)}`, {
      cause: error,
    });
  }
}
