/**
 * Test helpers for the shared Temporal dev server started by `test/global-setup.ts`.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { afterAll, beforeAll, inject } from 'vitest';

let runtimeInstalled = false;

/** Keeps the SDK's worker lifecycle chatter out of test output; warnings and errors still show. */
function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // already installed by another suite in this process
  }
}

/**
 * Connects to the shared test dev server. Call `teardown()` on the result when done (it closes the connections and
 * leaves the shared server running).
 */
export function connectTestEnv(): Promise<TestWorkflowEnvironment> {
  installQuietRuntime();
  return TestWorkflowEnvironment.createFromExistingServer({
    address: inject('temporalAddress'),
    namespace: inject('temporalNamespace'),
  });
}

const QUIET_BUNDLER_LOGGER = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (message: string) => console.error(message),
};

/** A test file's view of the shared server: its connection and one bundle of its workflow module. */
export interface TemporalSuite {
  readonly env: TestWorkflowEnvironment;
  readonly bundle: WorkflowBundleWithSourceMap;
  /** A worker on `taskQueue` running the suite's bundle (and `activities`, if any). */
  createWorker(taskQueue: string, activities?: object): Promise<Worker>;
}

/**
 * Registers `beforeAll`/`afterAll` hooks that connect to the shared dev server and bundle
 * `workflowsPath` once for the calling test file. Read the fields inside tests, not at import time.
 */
export function useTemporal(workflowsPath: string): TemporalSuite {
  let env: TestWorkflowEnvironment | undefined;
  let bundle: WorkflowBundleWithSourceMap | undefined;
  beforeAll(async () => {
    env = await connectTestEnv();
    bundle = await bundleWorkflowCode({ workflowsPath, logger: QUIET_BUNDLER_LOGGER });
  });
  afterAll(async () => {
    await env?.teardown();
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('useTemporal: read the suite inside a test, after beforeAll');
    return value;
  };
  return {
    get env() {
      return ready(env);
    },
    get bundle() {
      return ready(bundle);
    },
    createWorker: (taskQueue, activities) =>
      Worker.create({
        connection: ready(env).nativeConnection,
        namespace: ready(env).namespace ?? 'default',
        taskQueue,
        workflowBundle: ready(bundle),
        ...(activities === undefined ? {} : { activities }),
      }),
  };
}
