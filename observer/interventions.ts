/**
 * How the observer acts on runs: Temporal Updates on the AgentRun workflow (`setPosture`,
 * `freezeTools`, `unfreezeTools`), cancellation (terminate when cancelling hangs), and Temporal
 * visibility to find an agent's open runs. The observer uses its own Temporal client, never the
 * agent's.
 * @module
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Client } from '@temporalio/client';

/** What an intervention attempt did. */
export type ControlOutcome = 'applied' | 'run-closed';

/** Acting on runs; every method resolves once the workflow acknowledged (Updates complete). */
export interface RunControl {
  setPosture(
    run: string,
    posture: 'normal' | 'conservative',
    by: string,
    reason: string,
  ): Promise<ControlOutcome>;
  freeze(run: string, tools: readonly string[], by: string, reason: string): Promise<ControlOutcome>;
  unfreeze(run: string, tools: readonly string[], by: string, reason: string): Promise<ControlOutcome>;
  /** The run's current posture and frozen tools, or null when it is closed or unknown. */
  state(run: string): Promise<{ readonly posture: string; readonly frozenTools: readonly string[] } | null>;
  /** Cancels the run; terminates it when it has not closed after `graceMs`. */
  revoke(run: string, reason: string, graceMs: number): Promise<'cancelled' | 'terminated' | 'run-closed'>;
  /** Open AgentRun workflow ids of `agent` (Temporal visibility). */
  openRuns(agent: string): Promise<string[]>;
}

const RUN_CLOSED_CODES = new Set(['RUN_FINISHED', 'RUN_REVOKED_IS_FINAL']);

function closedRun(error: unknown): boolean {
  if (error instanceof WorkflowNotFoundError) return true;
  const e = error as { name?: string; type?: string; cause?: { type?: string }; message?: string };
  if (e.name === 'WorkflowNotFoundError') return true;
  if (RUN_CLOSED_CODES.has(e.type ?? '') || RUN_CLOSED_CODES.has(e.cause?.type ?? '')) return true;
  return /workflow execution already completed|not found/i.test(e.message ?? '');
}

/** {@link RunControl} over a Temporal client. */
export function temporalRunControl(
  client: Client,
  options: { readonly workflowType?: string; readonly sleep?: (ms: number) => Promise<void> } = {},
): RunControl {
  const workflowType = options.workflowType ?? 'agentRunWorkflow';
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const update = async (run: string, name: string, arg: object): Promise<ControlOutcome> => {
    try {
      await client.workflow.getHandle(run).executeUpdate(name, { args: [arg] });
      return 'applied';
    } catch (error) {
      if (closedRun(error)) return 'run-closed';
      throw error;
    }
  };
  return {
    setPosture: (run, posture, by, reason) => update(run, 'setPosture', { posture, by, reason }),
    freeze: (run, tools, by, reason) => update(run, 'freezeTools', { tools: [...tools], by, reason }),
    unfreeze: (run, tools, by, reason) => update(run, 'unfreezeTools', { tools: [...tools], by, reason }),
    state: async (run) => {
      try {
        const view = await client.workflow
          .getHandle(run)
          .query<{ posture: string; frozenTools: readonly string[] }>('status');
        return { posture: view.posture, frozenTools: view.frozenTools };
      } catch (error) {
        if (closedRun(error)) return null;
        throw error;
      }
    },
    revoke: async (run, reason, graceMs) => {
      const handle = client.workflow.getHandle(run);
      try {
        const described = await handle.describe();
        if (described.status.name !== 'RUNNING') return 'run-closed';
        await handle.cancel();
      } catch (error) {
        if (closedRun(error)) return 'run-closed';
        throw error;
      }
      const deadline = Date.now() + graceMs;
      while (Date.now() < deadline) {
        if ((await handle.describe()).status.name !== 'RUNNING') return 'cancelled';
        await sleep(100);
      }
      await handle.terminate(`observer: ${reason} (cancellation did not finish within ${graceMs} ms)`);
      return 'terminated';
    },
    openRuns: async (agent) => {
      const ids: string[] = [];
      const query = `WorkflowType = '${workflowType}' AND ExecutionStatus = 'Running' AND AgentId = '${agent.replaceAll("'", "\\'")}'`;
      for await (const execution of client.workflow.list({ query })) {
        ids.push(execution.workflowId);
        if (ids.length >= 1_000) break;
      }
      return ids;
    },
  };
}
