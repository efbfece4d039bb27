/**
 * The three worker roles: `agents` (AgentRun and approval workflows, the model step), `tools`
 * (tool implementations behind the execution guard) and `approvals` (notifications).
 * @module
 */
import type { Duration } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { Worker } from '@temporalio/worker';
import type {
  ActivityInterceptorsFactory,
  NativeConnection,
  WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { createToolRegistry } from '../activities/tools/define.ts';
import type { AnyToolImplementation, ToolRegistry } from '../activities/tools/define.ts';
import { createApprovalActivities } from '../activities/approvals/index.ts';
import type { NoticeSink } from '../activities/approvals/index.ts';
import type { AuditClient } from '../activities/audit/types.ts';
import { idempotencyKeyFor, TaskQueue } from '../workflows/run-types.ts';
import type { ToolCallInput } from '../workflows/run-types.ts';
import { EXECUTE_TOOL, executionGuard } from './guard.ts';
import { fileJournal } from './journal.ts';
import { leaseActivities, NO_OBSERVER_LEASE, staticLeaseSource } from './lease.ts';
import type { LeaseSource } from './lease.ts';
import type { ExecutionJournal } from './journal.ts';
import { auditSinks } from './sinks.ts';

/** Where a worker connects. */
export interface WorkerConnection {
  readonly connection: NativeConnection;
  readonly namespace: string;
  /** How long a shutdown lets running activities finish before cancelling them (default 0: at once). */
  readonly shutdownGraceTime?: Duration;
}

export interface AgentsWorkerOptions extends WorkerConnection {
  readonly taskQueue?: string;
  readonly bundle: WorkflowBundleWithSourceMap;
  /** The model step (`createModelActivities()`), plus anything else the workflows call on this queue. */
  readonly activities: object;
  readonly audit: AuditClient;
  /**
   * The observer heartbeat lease (a `createLeaseWatcher`), answered by the `observerLease` activity
   * to runs with `requireObserverLease`. Without one that activity answers "no lease".
   */
  readonly lease?: LeaseSource;
  /** 0 forces a replay on every task (tests of replay safety). */
  readonly maxCachedWorkflows?: number;
  readonly identity?: string;
}

/** The `agents` worker: AgentRun and approval workflows and the model step. */
export function createAgentsWorker(options: AgentsWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    ...(options.shutdownGraceTime === undefined ? {} : { shutdownGraceTime: options.shutdownGraceTime }),
    taskQueue: options.taskQueue ?? TaskQueue.agents,
    workflowBundle: options.bundle,
    activities: {
      ...options.activities,
      ...leaseActivities(options.lease ?? staticLeaseSource(NO_OBSERVER_LEASE)),
    },
    sinks: auditSinks(options.audit),
    ...(options.maxCachedWorkflows === undefined ? {} : { maxCachedWorkflows: options.maxCachedWorkflows }),
    ...(options.identity === undefined ? {} : { identity: options.identity }),
  });
}

export interface ToolsWorkerOptions extends WorkerConnection {
  readonly taskQueue?: string;
  readonly tools: readonly AnyToolImplementation[];
  /** Vote-signing public keys (keyId → key): the worker's own configuration. */
  readonly trustedKeys: ReadonlyMap<string, Uint8Array>;
  readonly audit: AuditClient;
  /** Directory of the execution journal (outside every tool root). */
  readonly journalDir?: string;
  readonly journal?: ExecutionJournal;
  readonly trustedPolicyVersions?: ReadonlySet<string>;
  readonly identity?: string;
  readonly now?: () => number;
  /** Activity interceptors that wrap the guard (metrics, tracing); they see every attempt, refused ones too. */
  readonly outerInterceptors?: readonly ActivityInterceptorsFactory[];
}

/** The `executeTool` activity: runs the registry (which validates the arguments once more). */
export function toolActivities(registry: ToolRegistry) {
  return {
    async [EXECUTE_TOOL](call: ToolCallInput) {
      let signal: AbortSignal | undefined;
      try {
        signal = Context.current().cancellationSignal;
      } catch {
        signal = undefined;
      }
      const idempotencyKey = idempotencyKeyFor(call.runWorkflowId, call.step);
      return registry.execute(call.tool, call.args, signal ? { idempotencyKey, signal } : { idempotencyKey });
    },
  };
}

/** The `tools` worker: `executeTool` behind the execution guard. */
export function createToolsWorker(options: ToolsWorkerOptions): Promise<Worker> {
  const registry = createToolRegistry(options.tools);
  const journal =
    options.journal ?? (options.journalDir === undefined ? undefined : fileJournal(options.journalDir));
  if (journal === undefined) throw new Error('createToolsWorker needs a journal or a journalDir');
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    ...(options.shutdownGraceTime === undefined ? {} : { shutdownGraceTime: options.shutdownGraceTime }),
    taskQueue: options.taskQueue ?? TaskQueue.tools,
    activities: toolActivities(registry),
    interceptors: {
      activity: [
        ...(options.outerInterceptors ?? []),
        executionGuard({
          tools: registry.specs(),
          trustedKeys: options.trustedKeys,
          audit: options.audit,
          journal,
          ...(options.trustedPolicyVersions === undefined
            ? {}
            : { trustedPolicyVersions: options.trustedPolicyVersions }),
          ...(options.now === undefined ? {} : { now: options.now }),
        }),
      ],
    },
    ...(options.identity === undefined ? {} : { identity: options.identity }),
  });
}

export interface ApprovalsWorkerOptions extends WorkerConnection {
  readonly taskQueue?: string;
  readonly sink: NoticeSink;
  readonly audit?: AuditClient;
}

/** The `approvals` worker: notification activities (the `log` channel in this issue). */
export function createApprovalsWorker(options: ApprovalsWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    ...(options.shutdownGraceTime === undefined ? {} : { shutdownGraceTime: options.shutdownGraceTime }),
    taskQueue: options.taskQueue ?? TaskQueue.approvals,
    activities: createApprovalActivities(options.sink, options.audit),
  });
}
