/**
 * Workflows of the action benchmark (`bench/actions.ts`), bundled on their own. Deterministic
 * workflow code: no Node built-ins, no I/O.
 *
 * - {@link benchGovernedActions} runs N autonomous actions the way AgentRun's `act()` does, minus
 *   the model step: decide in workflow code on the pinned compiled policy, emit the same `decision`
 *   audit event through the sink, upsert `LastDecision`, then call `executeTool` on the tools queue
 *   with the same {@link ToolCallInput} AgentRun sends (so the execution guard re-validates,
 *   re-decides and appends its audit events).
 * - {@link benchBareActions} runs the same number of calls of a plain activity running the same
 *   no-op function, with the same activity options and no decision, audit or guard.
 * @module
 */
import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import { compilePolicy, decide, policyVersionOf, Posture, validateGovernance } from '../policy/index.ts';
import type { CompiledPolicy } from '../policy/index.ts';
import { AuditKind } from '../activities/audit/types.ts';
import type { ToolResult } from '../activities/tools/define.ts';
import { workflowAuditor } from '../workflows/audit.ts';
import { setLastDecision } from '../workflows/last-decision.ts';
import { registerToolSpecs, workflowToolCatalog } from '../workflows/tool-catalog.ts';
import type { PinnedPolicy, ToolCallInput, ToolCallResult } from '../workflows/run-types.ts';
import { BARE_ACTIVITY, benchNoop, toolSpecs } from './noop-spec.ts';

registerToolSpecs(toolSpecs);

/** The options AgentRun gives `executeTool` (default tool timeout); both sides use them. */
const ACTIVITY_OPTIONS = {
  startToCloseTimeout: 5 * 60_000,
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10 },
} as const;

export interface BenchActionsInput {
  /** Task queue of the activity (the guarded tools queue, or the bare activity queue). */
  readonly activityQueue: string;
  /** Actions to run, one after the other. */
  readonly actions: number;
  /** `i` of the first call. */
  readonly first: number;
}

export interface GovernedActionsInput extends BenchActionsInput {
  readonly agentId: string;
  readonly requestedBy: string;
  readonly policy: PinnedPolicy;
}

/** Governed side: decide → audit → `executeTool` behind the guard, `actions` times. Returns the ok count. */
export async function benchGovernedActions(input: GovernedActionsInput): Promise<number> {
  const runId = workflowInfo().workflowId;
  const emit = workflowAuditor(input.agentId, runId);
  const catalog = workflowToolCatalog();
  const policy = pin(input.policy, input.agentId);
  const { executeTool } = proxyActivities<{ executeTool(input: ToolCallInput): Promise<ToolCallResult> }>({
    taskQueue: input.activityQueue,
    ...ACTIVITY_OPTIONS,
  });
  const used: Record<string, number> = {};
  let ok = 0;
  for (let k = 0; k < input.actions; k++) {
    const step = k + 1;
    const args = { i: input.first + k };
    const decision = decide(
      policy,
      { tool: benchNoop.name, args, director: input.requestedBy },
      { tools: catalog, posture: Posture.normal, frozenTools: [], used },
    );
    emit(AuditKind.decision, step, {
      tool: benchNoop.name,
      args,
      rationale: null,
      tier: decision.tier,
      baseTier: decision.baseTier,
      ruleId: decision.ruleId,
      code: decision.code,
      reason: decision.reason,
      resource: decision.resource,
      posture: decision.posture,
      policyVersion: decision.policyVersion,
    });
    setLastDecision(`${decision.tier}:${decision.ruleId ?? decision.code}:${benchNoop.name}`);
    if (decision.tier !== 'autonomous' && decision.tier !== 'preapproved')
      throw ApplicationFailure.nonRetryable(`bench.noop was decided ${decision.tier} (${decision.code})`);
    const call: ToolCallInput = {
      runWorkflowId: runId,
      step,
      agentId: input.agentId,
      requester: input.requestedBy,
      tool: benchNoop.name,
      args,
      rationale: null,
      policy: input.policy,
      posture: Posture.normal,
      frozenTools: [],
      used: { ...used },
      claimed: { tier: decision.tier, ruleId: decision.ruleId },
      approval: null,
    };
    if (decision.ruleId !== null) used[decision.ruleId] = (used[decision.ruleId] ?? 0) + 1;
    const label = `${benchNoop.name} ${decision.resource ?? ''} — ${decision.tier} (${decision.ruleId ?? 'default'})`;
    const result = await executeTool.executeWithOptions({ summary: label.slice(0, 200) }, [call]);
    if (result.ok) ok += 1;
  }
  return ok;
}

/** Bare side: the same no-op as a plain activity, `actions` times. Returns the ok count. */
export async function benchBareActions(input: BenchActionsInput): Promise<number> {
  const activities = proxyActivities<
    Record<typeof BARE_ACTIVITY, (args: { i: number }) => Promise<ToolResult>>
  >({
    taskQueue: input.activityQueue,
    ...ACTIVITY_OPTIONS,
  });
  let ok = 0;
  for (let k = 0; k < input.actions; k++) {
    const result = await activities[BARE_ACTIVITY]({ i: input.first + k });
    if (result.ok) ok += 1;
  }
  return ok;
}

/** What AgentRun does once per run with its pinned policy: validate, check the hash, compile. */
function pin(pinned: PinnedPolicy, agentId: string): CompiledPolicy {
  const loaded = validateGovernance(pinned.document, 'policy');
  if (!loaded.ok) throw ApplicationFailure.nonRetryable('invalid governance document');
  const version = policyVersionOf(loaded.document);
  if (version !== pinned.policyVersion || loaded.document.identity.id !== agentId)
    throw ApplicationFailure.nonRetryable('the pinned policy does not match');
  return compilePolicy(loaded.document, version);
}
