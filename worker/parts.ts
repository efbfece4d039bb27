/**
 * Pieces every process that hosts workers assembles the same way: the embedded dev stack
 * (`worker/stack.ts`) and the one-worker process of `agent-runtime worker` (`worker/main.ts`).
 * @module
 */
import { join } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import type { Worker } from '@temporalio/worker';
import type { AnyToolImplementation } from '../activities/tools/define.ts';
import { builtinTools } from '../activities/tools/index.ts';
import type { HttpRequestToolConfig } from '../activities/tools/http.ts';
import { fetchExposition, registerProcessMetrics, serveMetrics } from '../metrics/index.ts';
import type { MetricsRegistry, MetricsServer } from '../metrics/index.ts';
import { temporalPrometheusOptions } from '../metrics/temporal.ts';
import { createLeaseWatcher } from './lease.ts';
import type { LeaseWatcher } from './lease.ts';

let runtimeInstalled = false;

/**
 * Installs the Temporal Core runtime of this process (SDK log level WARN, plus the Core
 * Prometheus exporter on `temporalMetricsAddress` when given). Only the first call of a process
 * does anything; returns whether this call installed it (false: it was installed already, and the
 * Core exporter could not be added).
 */
export function installWorkerRuntime(temporalMetricsAddress?: string): boolean {
  if (runtimeInstalled) return false;
  runtimeInstalled = true;
  try {
    Runtime.install({
      logger: new DefaultLogger('WARN'),
      ...(temporalMetricsAddress
        ? { telemetryOptions: temporalPrometheusOptions(temporalMetricsAddress) }
        : {}),
    });
    return true;
  } catch {
    // installed already (tests)
    return false;
  }
}

/** Where the `tools` worker keeps its state, under one state directory. */
export interface ToolsStateDirs {
  /** Idempotency records of the fs tools. */
  readonly fs: string;
  /** The execution guard's journal. */
  readonly journal: string;
}

/** `<stateDir>/fs` and `<stateDir>/journal`. */
export function toolsStateDirs(stateDir: string): ToolsStateDirs {
  return { fs: join(stateDir, 'fs'), journal: join(stateDir, 'journal') };
}

/**
 * The builtin tools of a `tools` worker: the fs tools see `workspace` as `/workspace` (and nothing
 * else), `http.request` reaches only the hosts `http` allows (default none).
 */
export function workspaceTools(options: {
  readonly workspace: string;
  readonly stateDir: string;
  readonly http?: HttpRequestToolConfig | undefined;
}): readonly AnyToolImplementation[] {
  return builtinTools({
    fs: {
      roots: [],
      mounts: { '/workspace': options.workspace },
      stateDir: toolsStateDirs(options.stateDir).fs,
    },
    http: options.http ?? { allowedHosts: [] },
  });
}

/** Options of {@link serveWorkerMetrics}. */
export interface WorkerMetricsOptions {
  readonly registry: MetricsRegistry;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** The Core SDK's Prometheus bind address, whose output is appended to every scrape. */
  readonly temporalMetricsAddress?: string | undefined;
}

/** Registers the process gauges and serves `/metrics` (the registry, then Core's own metrics). */
export function serveWorkerMetrics(options: WorkerMetricsOptions): Promise<MetricsServer> {
  registerProcessMetrics(options.registry);
  const temporal = options.temporalMetricsAddress;
  return serveMetrics({
    registry: options.registry,
    port: options.port,
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(temporal ? { extra: () => fetchExposition(`http://${temporal}/metrics`) } : {}),
  });
}

/** Starts watching the observer lease on the aggregator; resolves after the first poll. */
export async function watchObserverLease(options: {
  readonly url: string;
  readonly token: string;
  readonly name?: string;
  readonly pollMs: number;
}): Promise<LeaseWatcher> {
  const lease = createLeaseWatcher({
    url: options.url,
    token: options.token,
    ...(options.name === undefined ? {} : { name: options.name }),
    pollMs: options.pollMs,
    onError: () => undefined, // a lapsed lease is the signal; the runs audit it
  });
  await lease.start();
  return lease;
}

/** Running workers and the way to stop them. */
export interface RunningWorkers {
  /** Each worker's `run()`: settles when it stopped (rejects when it failed). */
  readonly running: readonly Promise<void>[];
  /** Asks each running worker to shut down (finishing in-flight tasks) and waits for all of them. */
  stop(): Promise<void>;
}

/** Runs `workers`. */
export function runWorkers(workers: readonly Worker[]): RunningWorkers {
  const running = workers.map((worker) => worker.run());
  return {
    running,
    stop: async () => {
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      await Promise.allSettled(running);
    },
  };
}
