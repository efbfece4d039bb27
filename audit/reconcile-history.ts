/**
 * Reads what a run's Temporal histories say happened, for `reconcileRun`: every
 * continue-as-new generation of the AgentRun workflow (oldest first) and its approval children,
 * payloads decoded with the default payload converter and checked against the shapes the
 * workflow writes. {@link extractRunHistoryFacts} is pure; {@link fetchRunHistories} does the I/O.
 * @module
 */
import { isGrpcServiceError } from '@temporalio/client';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { Payload, PayloadConverter } from '@temporalio/common';
import { z } from 'zod';
import type { ModelActivities } from '../activities/model/index.ts';
import { EXECUTE_TOOL } from '../worker/guard.ts';
import { RunErrorCode } from '../workflows/agent-run.ts';
import { approvalWorkflow } from '../workflows/approval.ts';
import { messageOf } from './errors.ts';
import {
  ActivityState,
  ChildState,
  ProposalState,
  ReconcileError,
  ReconcileErrorCode,
  RunClose,
} from './reconcile.ts';
import type {
  ApprovalFact,
  ApprovalOutcome,
  ExecutionFact,
  ProposalFact,
  RecordedDecisionFact,
  RunHistoryFacts,
  RunLifecycleFact,
} from './reconcile.ts';

/** One workflow execution's history: its events as `WorkflowHandle.fetchHistory()` returns them. */
export interface History {
  readonly events?: Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events'];
}
type HistoryEvent = NonNullable<History['events']>[number];
type Failure = NonNullable<NonNullable<HistoryEvent['activityTaskFailedEventAttributes']>['failure']>;

/** The histories reconciliation reads. */
export interface RunHistories {
  readonly workflowId: string;
  /** The run's generations, oldest first (older ones past retention are missing). */
  readonly generations: readonly History[];
  /** Approval children's own histories by workflow id (those that could be read). */
  readonly children: ReadonlyMap<string, History>;
}

/** Most generations read; a longer chain is cut at its newest ones. */
export const MAX_GENERATIONS = 1_000;

const CALL_MODEL = 'callModel' satisfies keyof ModelActivities;
const GRPC_NOT_FOUND = 5;

/** Codes the workflow fails with before it emits `run.started`. */
const START_REFUSALS: ReadonlySet<string> = new Set([
  RunErrorCode.requesterNotDirector,
  RunErrorCode.invalidPolicy,
  RunErrorCode.policyVersionMismatch,
  RunErrorCode.agentMismatch,
  RunErrorCode.invalidBudgets,
]);

const step = z.int().min(1);
const RecordedSchema = z.object({ step, tool: z.string(), tier: z.string(), outcome: z.string() });
const RunInputSchema = z.object({
  carried: z
    .object({
      usage: z.object({ steps: z.int().min(0) }),
      recentDecisions: z.array(RecordedSchema),
    })
    .optional(),
});
const RunResultSchema = z.object({
  status: z.string(),
  usage: z.object({ steps: z.int().min(0) }),
  decisions: z.array(RecordedSchema),
});
const ModelResponseSchema = z.object({ toolCalls: z.array(z.object({ tool: z.string() })) });
const ToolCallSchema = z.object({ step, tool: z.string() });
const ToolResultSchema = z.object({ ok: z.boolean(), replayed: z.boolean().optional() });
const ApprovalRequestSchema = z.object({ step, action: z.object({ tool: z.string() }) });
const ApprovalResultSchema = z.object({
  status: z.enum(['approved', 'denied', 'timed_out']),
  revised: z.unknown().optional(),
});

function unreadable(message: string): ReconcileError {
  return new ReconcileError(ReconcileErrorCode.historyUnreadable, message);
}

/** Decodes the first payload and checks its shape; `where` names the event in errors. */
function decode<T>(
  schema: z.ZodType<T>,
  payloads: readonly Payload[] | null | undefined,
  where: string,
  converter: PayloadConverter,
): T {
  const payload = payloads?.[0];
  let value: unknown;
  try {
    value = payload === undefined ? undefined : converter.fromPayload(payload);
  } catch (error) {
    throw unreadable(`${where}: cannot decode the payload (${messageOf(error)}); is a payload codec in use?`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw unreadable(
      `${where}: ${parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    );
  return parsed.data;
}

/** The first application failure type in a failure and its causes. */
function failureType(failure: Failure | null | undefined): string | null {
  for (let f = failure, depth = 0; f && depth < 20; f = f.cause, depth += 1) {
    const type = f.applicationFailureInfo?.type;
    if (type) return type;
  }
  return null;
}

function startedAttributes(history: History) {
  return history.events?.[0]?.workflowExecutionStartedEventAttributes ?? null;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Extracts the facts reconciliation compares from a run's histories. Pure. */
export function extractRunHistoryFacts(
  histories: RunHistories,
  converter: PayloadConverter = defaultPayloadConverter,
): RunHistoryFacts {
  const { workflowId } = histories;
  /** One entry per completed model turn, in order across generations. */
  const turns: { readonly generation: number; readonly tools: readonly string[] }[] = [];
  const executions: Mutable<ExecutionFact>[] = [];
  const approvals: Mutable<ApprovalFact>[] = [];
  const recorded = new Map<number, RecordedDecisionFact>();
  const record = (decisions: readonly RecordedDecisionFact[]): void => {
    for (const d of decisions) recorded.set(d.step, d);
  };
  let modelCallsScheduled = 0;
  let firstGenerationSeen = false;
  let stepsBefore = 0;
  let close: RunClose = RunClose.open;
  let status: string | null = null;
  let failureCode: string | null = null;
  let totalSteps: number | null = null;

  for (const [generation, history] of histories.generations.entries()) {
    const activities = new Map<string, { type: 'model' } | { type: 'tool'; fact: Mutable<ExecutionFact> }>();
    const children = new Map<string, Mutable<ApprovalFact>>();
    const last = generation === histories.generations.length - 1;
    for (const event of history.events ?? []) {
      const where = `${workflowId} generation ${generation} event ${String(event.eventId)}`;
      const started = event.workflowExecutionStartedEventAttributes;
      if (started) {
        const input = decode(RunInputSchema, started.input?.payloads, `${where} workflow input`, converter);
        if (generation === 0) {
          firstGenerationSeen = input.carried === undefined;
          stepsBefore = input.carried?.usage.steps ?? 0;
        }
        record(input.carried?.recentDecisions ?? []);
        continue;
      }
      const scheduled = event.activityTaskScheduledEventAttributes;
      if (scheduled) {
        const type = scheduled.activityType?.name;
        if (type === CALL_MODEL) {
          modelCallsScheduled += 1;
          activities.set(String(event.eventId), { type: 'model' });
        } else if (type === EXECUTE_TOOL) {
          const call = decode(
            ToolCallSchema,
            scheduled.input?.payloads,
            `${where} executeTool input`,
            converter,
          );
          const fact: Mutable<ExecutionFact> = {
            step: call.step,
            tool: call.tool,
            generation,
            state: ActivityState.open,
            ok: null,
            replayed: null,
            failureCode: null,
          };
          executions.push(fact);
          activities.set(String(event.eventId), { type: 'tool', fact });
        }
        continue;
      }
      const completed = event.activityTaskCompletedEventAttributes;
      if (completed) {
        const activity = activities.get(String(completed.scheduledEventId));
        if (activity?.type === 'model') {
          const response = decode(
            ModelResponseSchema,
            completed.result?.payloads,
            `${where} callModel result`,
            converter,
          );
          turns.push({ generation, tools: response.toolCalls.map((c) => c.tool) });
        } else if (activity?.type === 'tool') {
          const result = decode(
            ToolResultSchema,
            completed.result?.payloads,
            `${where} executeTool result`,
            converter,
          );
          Object.assign(activity.fact, {
            state: ActivityState.completed,
            ok: result.ok,
            replayed: result.replayed ?? false,
          });
        }
        continue;
      }
      const toolEnd = (scheduledEventId: unknown, state: ActivityState, failure?: Failure | null): void => {
        const activity = activities.get(String(scheduledEventId));
        if (activity?.type === 'tool')
          Object.assign(activity.fact, { state, failureCode: failureType(failure) });
      };
      if (event.activityTaskFailedEventAttributes) {
        const a = event.activityTaskFailedEventAttributes;
        toolEnd(a.scheduledEventId, ActivityState.failed, a.failure);
        continue;
      }
      if (event.activityTaskTimedOutEventAttributes) {
        const a = event.activityTaskTimedOutEventAttributes;
        toolEnd(a.scheduledEventId, ActivityState.timedOut, a.failure);
        continue;
      }
      if (event.activityTaskCanceledEventAttributes) {
        toolEnd(event.activityTaskCanceledEventAttributes.scheduledEventId, ActivityState.cancelled);
        continue;
      }
      const initiated = event.startChildWorkflowExecutionInitiatedEventAttributes;
      if (initiated) {
        if (initiated.workflowType?.name !== approvalWorkflow.name) continue;
        const request = decode(
          ApprovalRequestSchema,
          initiated.input?.payloads,
          `${where} approval child input`,
          converter,
        );
        const fact: Mutable<ApprovalFact> = {
          step: request.step,
          tool: request.action.tool,
          workflowId: initiated.workflowId ?? '',
          generation,
          state: ChildState.initiated,
          outcome: null,
          revised: false,
        };
        approvals.push(fact);
        children.set(String(event.eventId), fact);
        continue;
      }
      const child = (initiatedEventId: unknown): Mutable<ApprovalFact> | undefined =>
        children.get(String(initiatedEventId));
      if (event.startChildWorkflowExecutionFailedEventAttributes) {
        const fact = child(event.startChildWorkflowExecutionFailedEventAttributes.initiatedEventId);
        if (fact) fact.state = ChildState.startFailed;
        continue;
      }
      if (event.childWorkflowExecutionStartedEventAttributes) {
        const fact = child(event.childWorkflowExecutionStartedEventAttributes.initiatedEventId);
        if (fact) fact.state = ChildState.open;
        continue;
      }
      if (event.childWorkflowExecutionCompletedEventAttributes) {
        const a = event.childWorkflowExecutionCompletedEventAttributes;
        const fact = child(a.initiatedEventId);
        if (fact)
          closeApproval(
            fact,
            decode(ApprovalResultSchema, a.result?.payloads, `${where} approval result`, converter),
          );
        continue;
      }
      const childEnd = (initiatedEventId: unknown, state: ChildState): void => {
        const fact = child(initiatedEventId);
        if (fact) {
          fact.state = state;
          fact.outcome = state === ChildState.cancelled ? 'cancelled' : null;
        }
      };
      if (event.childWorkflowExecutionFailedEventAttributes) {
        childEnd(event.childWorkflowExecutionFailedEventAttributes.initiatedEventId, ChildState.failed);
        continue;
      }
      if (event.childWorkflowExecutionCanceledEventAttributes) {
        childEnd(event.childWorkflowExecutionCanceledEventAttributes.initiatedEventId, ChildState.cancelled);
        continue;
      }
      if (event.childWorkflowExecutionTimedOutEventAttributes) {
        childEnd(event.childWorkflowExecutionTimedOutEventAttributes.initiatedEventId, ChildState.timedOut);
        continue;
      }
      if (event.childWorkflowExecutionTerminatedEventAttributes) {
        childEnd(
          event.childWorkflowExecutionTerminatedEventAttributes.initiatedEventId,
          ChildState.terminated,
        );
        continue;
      }
      if (!last) continue;
      if (event.workflowExecutionCompletedEventAttributes) {
        const result = decode(
          RunResultSchema,
          event.workflowExecutionCompletedEventAttributes.result?.payloads,
          `${where} workflow result`,
          converter,
        );
        close = RunClose.completed;
        status = result.status;
        totalSteps = result.usage.steps;
        record(result.decisions);
      } else if (event.workflowExecutionFailedEventAttributes) {
        close = RunClose.failed;
        failureCode = failureType(event.workflowExecutionFailedEventAttributes.failure);
      } else if (event.workflowExecutionCanceledEventAttributes) close = RunClose.cancelled;
      else if (event.workflowExecutionTerminatedEventAttributes) close = RunClose.terminated;
      else if (event.workflowExecutionTimedOutEventAttributes) close = RunClose.timedOut;
    }
  }

  // an approval child the parent never saw close (the parent ended first): its own history tells
  for (const fact of approvals) {
    if (fact.state !== ChildState.open && fact.state !== ChildState.initiated) continue;
    const own = histories.children.get(fact.workflowId);
    for (const event of own?.events ?? []) {
      const where = `${fact.workflowId} event ${String(event.eventId)}`;
      if (event.workflowExecutionStartedEventAttributes) fact.state = ChildState.open;
      else if (event.workflowExecutionCompletedEventAttributes)
        closeApproval(
          fact,
          decode(
            ApprovalResultSchema,
            event.workflowExecutionCompletedEventAttributes.result?.payloads,
            `${where} approval result`,
            converter,
          ),
        );
      else if (event.workflowExecutionCanceledEventAttributes) {
        fact.state = ChildState.cancelled;
        fact.outcome = 'cancelled';
      } else if (event.workflowExecutionFailedEventAttributes) fact.state = ChildState.failed;
      else if (event.workflowExecutionTerminatedEventAttributes) fact.state = ChildState.terminated;
      else if (event.workflowExecutionTimedOutEventAttributes) fact.state = ChildState.timedOut;
    }
  }

  const lastGeneration = histories.generations.length - 1;
  const evidence = [...executions, ...approvals].reduce((most, fact) => Math.max(most, fact.step), 0);
  // steps are numbered across generations; calls past a completed run's step count never ran
  let counter = stepsBefore;
  const proposals: ProposalFact[] = [];
  turns.forEach(({ generation, tools }, turn) => {
    for (const tool of tools) {
      counter += 1;
      // a run that did not complete: decided if anything later happened (a command, a model turn, a new generation)
      const decided =
        totalSteps !== null ||
        counter <= evidence ||
        modelCallsScheduled > turn + 1 ||
        generation < lastGeneration;
      proposals.push({
        step: totalSteps === null || counter <= totalSteps ? counter : null,
        tool,
        generation,
        turn,
        state: decided ? ProposalState.decided : ProposalState.pending,
      });
    }
  });

  const refusedAtStart =
    firstGenerationSeen &&
    histories.generations.length === 1 &&
    close === RunClose.failed &&
    modelCallsScheduled === 0 &&
    failureCode !== null &&
    START_REFUSALS.has(failureCode)
      ? failureCode
      : null;
  const run: RunLifecycleFact = {
    generations: histories.generations.length,
    firstGenerationSeen,
    stepsBefore,
    close,
    status,
    failureCode,
    refusedAtStart,
  };
  return {
    workflowId,
    run,
    proposals,
    executions,
    approvals,
    recorded: [...recorded.values()].toSorted((a, b) => a.step - b.step),
  };
}

function closeApproval(fact: Mutable<ApprovalFact>, result: z.infer<typeof ApprovalResultSchema>): void {
  fact.state = ChildState.completed;
  fact.outcome = result.status satisfies ApprovalOutcome;
  fact.revised = result.revised !== undefined && result.revised !== null;
}

function isNotFound(error: unknown): boolean {
  return isGrpcServiceError(error) && error.code === GRPC_NOT_FOUND;
}

/**
 * Fetches the run's generations (walking continue-as-new back from the latest run) and the
 * approval children's histories. Throws `RECONCILE_RUN_NOT_FOUND` when the workflow does not exist.
 */
export async function fetchRunHistories(client: Client, workflowId: string): Promise<RunHistories> {
  const generations: History[] = [];
  let runId: string | undefined;
  while (generations.length < MAX_GENERATIONS) {
    let history: History;
    try {
      history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    } catch (error) {
      if (!isNotFound(error)) throw error;
      if (runId === undefined)
        throw new ReconcileError(
          ReconcileErrorCode.runNotFound,
          `no workflow ${JSON.stringify(workflowId)} in namespace ${client.options.namespace}`,
          { cause: error },
        );
      break; // an older generation past retention
    }
    generations.unshift(history);
    const previous = startedAttributes(history)?.continuedExecutionRunId;
    if (!previous) break;
    runId = previous;
  }

  const children = new Map<string, History>();
  for (const history of generations) {
    const started = new Map<string, string>();
    for (const event of history.events ?? []) {
      const a = event.childWorkflowExecutionStartedEventAttributes;
      if (a?.workflowExecution?.runId) started.set(String(a.initiatedEventId), a.workflowExecution.runId);
    }
    for (const event of history.events ?? []) {
      const a = event.startChildWorkflowExecutionInitiatedEventAttributes;
      if (!a?.workflowId || a.workflowType?.name !== approvalWorkflow.name) continue;
      try {
        children.set(
          a.workflowId,
          await client.workflow.getHandle(a.workflowId, started.get(String(event.eventId))).fetchHistory(),
        );
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
  }
  return { workflowId, generations, children };
}

/** {@link fetchRunHistories} then {@link extractRunHistoryFacts}: what `reconcileRun` compares. */
export async function fetchRunHistoryFacts(
  client: Client,
  workflowId: string,
  converter: PayloadConverter = defaultPayloadConverter,
): Promise<RunHistoryFacts> {
  return extractRunHistoryFacts(await fetchRunHistories(client, workflowId), converter);
}
