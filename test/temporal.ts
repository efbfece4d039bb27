/**
 * Test helpers for the shared Temporal dev server started by `test/global-setup.ts`.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { inject } from 'vitest';

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
