/**
 * Starting AgentRuns from a client: the requester's authority is checked here, before anything
 * starts (and again by the workflow), and the run is labelled for the Temporal UI.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { AgentRuntimeError, compilePolicy } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import type { ModelConfig } from '../activities/model/types.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import { TaskQueue } from '../workflows/run-types.ts';
import type { AgentRunInput, RunBudgets } from '../workflows/run-types.ts';

/** A run that must not start. */
export class RunRefusedError extends AgentRuntimeError {}

export const DEFAULT_BUDGETS: RunBudgets = Object.freeze({
  maxSteps: 50,
  maxTokens: 200_000,
  maxWallTimeMs: 24 * 60 * 60_000,
});

export interface StartRunOptions {
  readonly governance: LoadedGovernance;
  readonly task: string;
  /** The authenticated principal starting the run. */
  readonly requestedBy: string;
  readonly model: ModelConfig;
  readonly budgets?: Partial<RunBudgets>;
  readonly trustedKeys: Readonly<Record<string, string>>;
  readonly workflowId?: string;
  readonly taskQueue?: string;
  readonly taskQueues?: AgentRunInput['taskQueues'];
  readonly options?: AgentRunInput['options'];
}

/** Builds the workflow input; throws {@link RunRefusedError} when the requester may not direct the agent. */
export function buildRunInput(options: StartRunOptions): AgentRunInput {
  const { document, policyVersion } = options.governance;
  const policy = compilePolicy(document, policyVersion);
  if (!policy.directors.has(options.requestedBy))
    throw new RunRefusedError(
      'RUN_REQUESTER_NOT_DIRECTOR',
      `principal "${options.requestedBy}" may not direct agent "${document.identity.id}" (directors: ${[...policy.directors].join(', ') || 'none'})`,
    );
  if (options.task.trim() === '') throw new RunRefusedError('RUN_EMPTY_TASK', 'the task is empty');
  return {
    agentId: document.identity.id,
    policy: { document, policyVersion },
    task: options.task,
    requestedBy: options.requestedBy,
    model: options.model,
    budgets: { ...DEFAULT_BUDGETS, ...options.budgets },
    trustedKeys: options.trustedKeys,
    ...(options.taskQueues ? { taskQueues: options.taskQueues } : {}),
    ...(options.options ? { options: options.options } : {}),
  };
}

/** Starts a run; returns its handle. */
export async function startAgentRun(
  client: Client,
  options: StartRunOptions,
): Promise<WorkflowHandle<typeof agentRunWorkflow>> {
  const input = buildRunInput(options);
  const workflowId = options.workflowId ?? `run-${input.agentId}-${randomBytes(6).toString('hex')}`;
  const task = input.task.replace(/\s+/g, ' ');
  return client.workflow.start<typeof agentRunWorkflow>('agentRunWorkflow', {
    taskQueue: options.taskQueue ?? TaskQueue.agents,
    workflowId,
    args: [input],
    searchAttributes: {
      AgentId: [input.agentId],
      RequestedBy: [input.requestedBy],
      PolicyVersion: [input.policy.policyVersion],
      RunState: ['RUNNING'],
    },
    staticSummary: `${input.agentId}: ${task}`.slice(0, 200),
    staticDetails: [
      `**Agent**: ${input.agentId} · **requested by**: ${input.requestedBy}`,
      `**Task**: ${task.slice(0, 2000)}`,
      `**Policy**: \`${input.policy.policyVersion}\``,
      `**Model**: ${input.model.provider} · **budgets**: ${input.budgets.maxSteps} steps, ${input.budgets.maxTokens} tokens, ${Math.round(input.budgets.maxWallTimeMs / 60_000)} min`,
    ].join('\n\n'),
  });
}
