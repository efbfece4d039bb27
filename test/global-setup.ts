/**
 * vitest globalSetup: starts ONE shared in-memory Temporal dev server for the whole test run and hands its address
 * and namespace to tests through `inject('temporalAddress')` / `inject('temporalNamespace')` (see `test/temporal.ts`).
 */
import type { TestProject } from 'vitest/node';
import { startDevServer } from '../worker/temporal/dev-server.ts';
import { SEARCH_ATTRIBUTES } from '../worker/temporal/search-attributes.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `host:port` of the shared test dev server. */
    temporalAddress: string;
    /** Namespace of the shared test dev server. */
    temporalNamespace: string;
  }
}

/** Starts the shared server; the returned function stops it after the run. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startDevServer({
    namespace: 'default',
    // AgentId, RequestedBy, PolicyVersion, RunState, LastDecision, ApprovalState (all Keyword)
    searchAttributes: SEARCH_ATTRIBUTES,
    logger: {
      info: () => {},
      warn: (message) => process.stderr.write(`[temporal dev server] ${message}\n`),
    },
  });
  project.provide('temporalAddress', server.address);
  project.provide('temporalNamespace', server.namespace);
  return () => server.stop();
}
