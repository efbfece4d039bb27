/**
 * The AgentRun workflow: model step → proposed tool calls → decision (pure, here in workflow
 * code) → record → act. `autonomous`/`preapproved` calls run as the `executeTool` activity on the
 * `tools` queue, behind the execution guard; `approval` calls start the approval child workflow
 * and run only once it approves; `prohibited` calls go back to the model as structured denials.
 *
 * Run control (Updates, each with a validator): `setPosture`, `freezeTools`, `unfreezeTools`,
 * `updatePolicy` (applied at the next action boundary). Query `status`. Cancelling the workflow
 * revokes the run.
 *
 * With `options.requireObserverLease` every action boundary first asks the `observerLease` local
 * activity whether the observer's heartbeat lease is valid: a `normal` run without one turns
 * `conservative`, and turns back once the lease is valid again unless an Update set the posture since.
 * @module
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineUpdate,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import {
  actionDigest,
  compilePolicy,
  decide,
  offeredTools,
  policyVersionOf,
  Posture,
  POSTURES,
  validateGovernance,
} from '../policy/index.ts';
import type { CompiledPolicy, Decision, GovernanceDocument } from '../policy/index.ts';
import type { ChatMessage, ModelResponse, ProposedCall } from '../activities/model/types.ts';
import type { ModelActivities } from '../activities/model/index.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { approvalWorkflow } from './approval.ts';
import type { ApprovalResult } from './approval-types.ts';
import { workflowAuditor } from './audit.ts';
import { setLastDecision } from './last-decision.ts';
export { LastDecisionKey } from './last-decision.ts';
import { systemPrompt, toolDefinition } from './prompt.ts';
import { workflowToolCatalog } from './tool-catalog.ts';
import {
  approvalWorkflowIdFor,
  PostureCause,
  RunStatus,
  TaskQueue,
  type AgentRunInput,
  type AgentRunResult,
  type CarriedRunState,
  type ControlRequest,
  type DecisionRecord,
  type ObserverLeaseActivities,
  type ObserverLeaseStatus,
  type PinnedPolicy,
  type RunUsage,
  type RunView,
  type ToolCallInput,
  type ToolCallResult,
} from './run-types.ts';

/** Stable codes of a refused run start and of refused control requests. */
export const RunErrorCode = {
  requesterNotDirector: 'RUN_REQUESTER_NOT_DIRECTOR',
  invalidPolicy: 'RUN_INVALID_POLICY',
  policyVersionMismatch: 'RUN_POLICY_VERSION_MISMATCH',
  agentMismatch: 'RUN_AGENT_MISMATCH',
  invalidBudgets: 'RUN_INVALID_BUDGETS',
  invalidPosture: 'RUN_INVALID_POSTURE',
  revokedIsFinal: 'RUN_REVOKED_IS_FINAL',
  invalidToolList: 'RUN_INVALID_TOOL_LIST',
  runFinished: 'RUN_FINISHED',
} as const;
export type RunErrorCode = (typeof RunErrorCode)[keyof typeof RunErrorCode];

export const AgentIdKey = defineSearchAttributeKey('AgentId', SearchAttributeType.KEYWORD);
export const RequestedByKey = defineSearchAttributeKey('RequestedBy', SearchAttributeType.KEYWORD);
export const PolicyVersionKey = defineSearchAttributeKey('PolicyVersion', SearchAttributeType.KEYWORD);
export const RunStateKey = defineSearchAttributeKey('RunState', SearchAttributeType.KEYWORD);

export const statusQuery = defineQuery<RunView>('status');
export const setPostureUpdate = defineUpdate<RunView['posture'], [{ posture: string } & ControlRequest]>(
  'setPosture',
);
export const freezeToolsUpdate = defineUpdate<readonly string[], [{ tools: string[] } & ControlRequest]>(
  'freezeTools',
);
export const unfreezeToolsUpdate = defineUpdate<readonly string[], [{ tools: string[] } & ControlRequest]>(
  'unfreezeTools',
);
export const updatePolicyUpdate = defineUpdate<
  { readonly pendingPolicyVersion: string },
  [{ policy: PinnedPolicy } & ControlRequest]
>('updatePolicy');

const RECENT_DECISIONS = 20;

/** The `patched` id guarding the observer lease check (histories of older code have no marker). */
export const OBSERVER_LEASE_PATCH = 'observer-lease';
/** `by` of the posture changes the observer lease check makes. */
export const OBSERVER_LEASE_BY = 'observer-lease';

export async function agentRunWorkflow(input: AgentRunInput): Promise<AgentRunResult> {
  const info = workflowInfo();
  const runId = info.workflowId;
  const emit = workflowAuditor(input.agentId, runId);
  const catalog = workflowToolCatalog();
  const toolQueue = input.taskQueues?.tools ?? TaskQueue.tools;
  const approvalQueue = input.taskQueues?.approvals ?? TaskQueue.approvals;
  const maxOutput = input.options?.maxToolOutputChars ?? 16_000;

  const { callModel } = proxyActivities<ModelActivities>({
    startToCloseTimeout: '2 minutes',
    retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 5 },
  });
  const { executeTool } = proxyActivities<{ executeTool(input: ToolCallInput): Promise<ToolCallResult> }>({
    taskQueue: toolQueue,
    startToCloseTimeout: input.options?.toolTimeoutMs ?? 5 * 60_000,
    retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 10 },
  });
  const requireLease = input.options?.requireObserverLease === true;
  // the worker answers from memory; a failure after two attempts counts as no lease
  const { observerLease } = proxyLocalActivities<ObserverLeaseActivities>({
    startToCloseTimeout: '2s',
    retry: { initialInterval: '100ms', maximumAttempts: 2 },
  });

  // --- start: the pinned policy, the requester's authority ----------------------------------
  let policy = pinPolicy(input.policy, input.agentId);
  const carried = input.carried;
  if (!carried) {
    if (!policy.directors.has(input.requestedBy)) {
      emit(AuditKind.runRefused, null, {
        code: RunErrorCode.requesterNotDirector,
        requestedBy: input.requestedBy,
      });
      throw ApplicationFailure.create({
        type: RunErrorCode.requesterNotDirector,
        message: `principal "${input.requestedBy}" may not direct agent "${input.agentId}"`,
        nonRetryable: true,
      });
    }
    checkBudgets(input);
  }

  let pinned: PinnedPolicy = carried?.policy ?? input.policy;
  if (carried) policy = pinPolicy(carried.policy, input.agentId);
  let pendingPolicy: (PinnedPolicy & { by: string }) | null = null;
  let posture: Posture = carried?.posture ?? Posture.normal;
  let postureCause: PostureCause | null = carried?.postureCause ?? null;
  let lease: ObserverLeaseStatus | null = null;
  let frozenTools: string[] = [...(carried?.frozenTools ?? [])];
  const used: Record<string, number> = { ...carried?.used };
  let usage: RunUsage = carried?.usage ?? { steps: 0, modelTurns: 0, inputTokens: 0, outputTokens: 0 };
  const recent: DecisionRecord[] = [...(carried?.recentDecisions ?? [])];
  const startedAtMs = carried?.startedAtMs ?? Date.now();
  const generation = carried?.generation ?? 0;
  const messages: ChatMessage[] = carried
    ? [...carried.messages]
    : [
        { role: 'system', content: systemPrompt(pinned.document, input.requestedBy) },
        { role: 'user', content: input.task },
      ];
  let state: RunView['state'] = 'running';
  let pendingApproval: RunView['pendingApproval'] = null;
  let turnsThisGeneration = 0;

  const view = (): RunView => ({
    agentId: input.agentId,
    requestedBy: input.requestedBy,
    state,
    step: usage.steps,
    posture,
    frozenTools: [...frozenTools],
    policyVersion: pinned.policyVersion,
    pendingPolicyVersion: pendingPolicy?.policyVersion ?? null,
    pendingApproval,
    recentDecisions: [...recent],
    usage,
    budgets: input.budgets,
    generation,
    postureCause,
    observerLease: lease,
  });
  const showDetails = (): void => {
    const budgets = input.budgets;
    setCurrentDetails(
      [
        `**State**: ${state}${pendingApproval ? ` (approval for step ${pendingApproval.step}: ${pendingApproval.tool})` : ''}`,
        `**Posture**: ${posture}${postureCause === PostureCause.observerLease ? ' (observer lease)' : ''}${frozenTools.length ? ` · frozen: ${frozenTools.join(', ')}` : ''}`,
        `**Usage**: ${usage.steps}/${budgets.maxSteps} steps · ${usage.inputTokens + usage.outputTokens}/${budgets.maxTokens} tokens · ${usage.modelTurns} model turns`,
        `**Policy**: ${pinned.policyVersion.slice(0, 12)}${pendingPolicy ? ` (next: ${pendingPolicy.policyVersion.slice(0, 12)})` : ''}`,
      ].join('\n\n'),
    );
  };
  const setRunState = (value: string): void => upsertSearchAttributes([{ key: RunStateKey, value }]);

  // --- run control --------------------------------------------------------------------------
  const ensureOpen = (): void => {
    if (state === 'finished')
      throw ApplicationFailure.create({ type: RunErrorCode.runFinished, message: 'the run has finished' });
  };
  const changePosture = (next: Posture, by: string, reason: string | null): void => {
    if (next === posture) return;
    emit(AuditKind.postureChanged, null, { from: posture, to: next, by, reason });
    posture = next;
    showDetails();
  };
  setHandler(statusQuery, view);
  setHandler(
    setPostureUpdate,
    (request) => {
      // an operator's (or the observer's) posture is theirs, even when it matches: the lease never undoes it
      postureCause = PostureCause.control;
      changePosture(request.posture as Posture, request.by, request.reason ?? null);
      return posture;
    },
    {
      description:
        'Set the run posture: normal, conservative or revoked (final). Applies at the next action boundary.',
      validator: (request) => {
        ensureOpen();
        checkControl(request);
        if (!(POSTURES as readonly unknown[]).includes(request.posture))
          throw ApplicationFailure.create({
            type: RunErrorCode.invalidPosture,
            message: `expected posture normal, conservative or revoked, got ${JSON.stringify(request.posture)}`,
          });
        if (posture === Posture.revoked && request.posture !== Posture.revoked)
          throw ApplicationFailure.create({
            type: RunErrorCode.revokedIsFinal,
            message: 'a revoked run stays revoked',
          });
      },
    },
  );
  const toolListValidator = (request: { tools: string[] } & ControlRequest): void => {
    ensureOpen();
    checkControl(request);
    if (
      !Array.isArray(request.tools) ||
      request.tools.length === 0 ||
      request.tools.length > 100 ||
      !request.tools.every((t) => typeof t === 'string' && /^[A-Za-z0-9_.*{},-]{1,128}$/.test(t))
    )
      throw ApplicationFailure.create({
        type: RunErrorCode.invalidToolList,
        message: 'expected 1 to 100 tool names or tool globs',
      });
  };
  setHandler(
    freezeToolsUpdate,
    (request) => {
      const added = request.tools.filter((t) => !frozenTools.includes(t));
      frozenTools = [...frozenTools, ...added];
      emit(AuditKind.toolsFrozen, null, {
        tools: added,
        frozen: frozenTools,
        by: request.by,
        reason: request.reason ?? null,
      });
      showDetails();
      return [...frozenTools];
    },
    {
      description: 'Freeze tools (names or globs) for this run from the next action boundary.',
      validator: toolListValidator,
    },
  );
  setHandler(
    unfreezeToolsUpdate,
    (request) => {
      frozenTools = frozenTools.filter((t) => !request.tools.includes(t));
      emit(AuditKind.toolsUnfrozen, null, {
        tools: request.tools,
        frozen: frozenTools,
        by: request.by,
        reason: request.reason ?? null,
      });
      showDetails();
      return [...frozenTools];
    },
    { description: 'Unfreeze tools frozen earlier.', validator: toolListValidator },
  );
  setHandler(
    updatePolicyUpdate,
    (request) => {
      pendingPolicy = { ...request.policy, by: request.by };
      emit(AuditKind.policyUpdated, null, {
        phase: 'received',
        from: pinned.policyVersion,
        to: request.policy.policyVersion,
        by: request.by,
        reason: request.reason ?? null,
      });
      showDetails();
      return { pendingPolicyVersion: request.policy.policyVersion };
    },
    {
      description: 'Pin a new governance document (and its policyVersion) from the next action boundary.',
      validator: (request) => {
        ensureOpen();
        checkControl(request);
        pinPolicy(request.policy, input.agentId);
      },
    },
  );

  // --- helpers ------------------------------------------------------------------------------
  const applyPendingPolicy = (): void => {
    if (pendingPolicy === null) return;
    const next = pendingPolicy;
    pendingPolicy = null;
    const from = pinned.policyVersion;
    policy = pinPolicy(next, input.agentId);
    pinned = { document: next.document, policyVersion: next.policyVersion };
    emit(AuditKind.policyUpdated, null, { phase: 'applied', from, to: pinned.policyVersion, by: next.by });
    upsertSearchAttributes([{ key: PolicyVersionKey, value: pinned.policyVersion }]);
  };
  // handlers change the posture between awaits; a function keeps the compiler from narrowing it
  const isRevoked = (): boolean => posture === Posture.revoked;
  /** The observer lease check of an action boundary: no valid lease → conservative, until it is back. */
  const checkObserverLease = async (): Promise<void> => {
    let missing: string;
    try {
      const answer = await observerLease();
      lease = {
        valid: answer?.valid === true,
        expiresAt: typeof answer?.expiresAt === 'string' ? answer.expiresAt : null,
        holder: typeof answer?.holder === 'string' ? answer.holder : null,
        checkedAt: typeof answer?.checkedAt === 'string' ? answer.checkedAt : null,
      };
      missing = lease.expiresAt === null ? 'no lease' : `lease expired at ${lease.expiresAt}`;
    } catch (error) {
      if (isCancellation(error)) throw error;
      lease = { valid: false, expiresAt: null, holder: null, checkedAt: null };
      missing = `lease check failed: ${failureMessage(error, 'the observerLease activity failed').slice(0, 200)}`;
    }
    if (!lease.valid && posture === Posture.normal) {
      changePosture(Posture.conservative, OBSERVER_LEASE_BY, `observer heartbeat missing (${missing})`);
      postureCause = PostureCause.observerLease;
    } else if (
      lease.valid &&
      posture === Posture.conservative &&
      postureCause === PostureCause.observerLease
    ) {
      changePosture(
        Posture.normal,
        OBSERVER_LEASE_BY,
        `observer heartbeat back (lease valid until ${lease.expiresAt ?? '?'})`,
      );
    }
    showDetails();
  };
  const record = (entry: DecisionRecord): void => {
    recent.push(entry);
    while (recent.length > RECENT_DECISIONS) recent.shift();
  };
  const setOutcome = (step: number, outcome: DecisionRecord['outcome']): void => {
    const index = recent.findIndex((d) => d.step === step);
    const entry = recent[index];
    if (entry) recent[index] = { ...entry, outcome };
  };
  const finish = async (
    status: RunStatus,
    answer: string | null,
    reason: string | null,
  ): Promise<AgentRunResult> => {
    state = 'finished';
    setRunState(
      status === RunStatus.completed
        ? 'COMPLETED'
        : status === RunStatus.revoked
          ? 'REVOKED'
          : 'BUDGET_EXHAUSTED',
    );
    showDetails();
    emit(AuditKind.runFinished, null, { status, reason, usage });
    await condition(allHandlersFinished);
    return { status, answer, reason, usage, policyVersion: pinned.policyVersion, decisions: [...recent] };
  };
  const budgetProblem = (): string | null => {
    const { maxSteps, maxTokens, maxWallTimeMs } = input.budgets;
    if (usage.steps >= maxSteps) return `step budget of ${maxSteps} used`;
    if (usage.inputTokens + usage.outputTokens >= maxTokens) return `token budget of ${maxTokens} used`;
    if (Date.now() - startedAtMs >= maxWallTimeMs) return `wall-time budget of ${maxWallTimeMs} ms used`;
    return null;
  };
  const toolMessage = (call: ProposedCall, body: unknown): ChatMessage => {
    let content = JSON.stringify(body) ?? 'null';
    if (content.length > maxOutput)
      content = JSON.stringify({ truncated: true, chars: content.length, head: content.slice(0, maxOutput) });
    return { role: 'tool', toolCallId: call.id, tool: call.tool, content };
  };
  const denied = (code: string, hint: string) => ({ ok: false, denied: { code, hint } });

  /** Runs one proposed call through the gate; returns what the model is told. */
  const act = async (call: ProposedCall, step: number): Promise<unknown> => {
    // the check precedes the decision; the re-decide after an approval edit needs none (that action
    // is approval-tier already and the lease only moves between normal and conservative)
    if (requireLease && patched(OBSERVER_LEASE_PATCH)) await checkObserverLease();
    applyPendingPolicy();
    const decision: Decision = decide(
      policy,
      { tool: call.tool, args: call.args, director: input.requestedBy },
      { tools: catalog, posture, frozenTools, used },
    );
    const summaryTarget = decision.resource ?? '';
    const label = `${call.tool}${summaryTarget ? ` ${summaryTarget}` : ''} — ${decision.tier}${decision.ruleId ? ` (${decision.ruleId})` : ''}`;
    const entry: DecisionRecord = {
      step,
      tool: call.tool,
      tier: decision.tier,
      ruleId: decision.ruleId,
      code: decision.code,
      resource: decision.resource,
      outcome:
        decision.tier === 'prohibited'
          ? 'denied'
          : decision.tier === 'approval'
            ? 'approval_pending'
            : 'executed',
      atMs: Date.now(),
    };
    record(entry);
    emit(AuditKind.decision, step, {
      tool: call.tool,
      args: call.args,
      rationale: call.rationale,
      tier: decision.tier,
      baseTier: decision.baseTier,
      ruleId: decision.ruleId,
      code: decision.code,
      reason: decision.reason,
      resource: decision.resource,
      posture: decision.posture,
      policyVersion: decision.policyVersion,
    });
    setLastDecision(`${decision.tier}:${decision.ruleId ?? decision.code}:${call.tool}`);

    if (decision.tier === 'prohibited') {
      const denial = decision.denial ?? { code: decision.code, hint: 'This action is not permitted.' };
      return denied(denial.code, denial.hint);
    }

    let args: unknown = call.args;
    let edited: { readonly by: string; readonly args: unknown } | null = null;
    const toolInput = (): Omit<ToolCallInput, 'approval'> => ({
      runWorkflowId: runId,
      step,
      agentId: input.agentId,
      requester: input.requestedBy,
      tool: call.tool,
      args,
      rationale: call.rationale,
      policy: pinned,
      posture,
      frozenTools: [...frozenTools],
      used: { ...used },
      claimed: { tier: decision.tier, ruleId: decision.ruleId },
    });
    let approval: ToolCallInput['approval'] = null;
    if (decision.tier === 'approval') {
      const outcome = await requestApproval(call, step, decision);
      if (outcome.status !== 'approved') {
        setOutcome(step, outcome.status === 'denied' ? 'approval_denied' : 'approval_timed_out');
        return outcome.status === 'denied'
          ? denied(
              'approval_denied',
              `A human reviewer denied this action${outcome.reason ? `: ${outcome.reason}` : ''}. Do not retry it unchanged.`,
            )
          : denied(
              'approval_timed_out',
              'No approver decided in time, so the action was denied. Do not retry it now.',
            );
      }
      if (outcome.revised) {
        // approved with edits: the edited call must still fall under the rule that was approved
        const redecided = decide(
          policy,
          { tool: call.tool, args: outcome.revised.args, director: input.requestedBy },
          { tools: catalog, posture, frozenTools, used },
        );
        emit(AuditKind.decision, step, {
          tool: call.tool,
          args: outcome.revised.args,
          rationale: null,
          editedBy: outcome.revised.by,
          tier: redecided.tier,
          baseTier: redecided.baseTier,
          ruleId: redecided.ruleId,
          code: redecided.code,
          reason: redecided.reason,
          resource: redecided.resource,
          posture: redecided.posture,
          policyVersion: redecided.policyVersion,
        });
        if (
          redecided.tier === 'prohibited' ||
          redecided.ruleId !== decision.ruleId ||
          redecided.resource !== outcome.revised.resource
        ) {
          setOutcome(step, 'denied');
          return denied(
            'approval_edit_refused',
            'A reviewer edited this action, and the edited action is not permitted. Do not retry it unchanged.',
          );
        }
        args = outcome.revised.args;
        edited = { by: outcome.revised.by, args };
      }
      setOutcome(step, 'executed');
      approval = {
        approvalWorkflowId: approvalWorkflowIdFor(runId, step),
        escalated: outcome.escalated,
        votes: outcome.votes,
      };
    } else if (decision.ruleId !== null) {
      used[decision.ruleId] = (used[decision.ruleId] ?? 0) + 1;
    }

    try {
      const result = await executeTool.executeWithOptions({ summary: label.slice(0, 200) }, [
        { ...toolInput(), approval },
      ]);
      if (!result.ok) setOutcome(step, 'failed');
      // the model learns that what ran is not what it proposed
      const editNote = edited
        ? {
            edited: {
              by: edited.by,
              args: edited.args,
              note: 'A reviewer changed the arguments before approving.',
            },
          }
        : {};
      return result.ok
        ? { ok: true, output: result.output, ...editNote }
        : { ok: false, error: { code: result.code, message: result.message }, ...editNote };
    } catch (error) {
      if (isCancellation(error)) throw error;
      const code = failureCode(error);
      setOutcome(step, code.startsWith('GUARD_') ? 'refused_by_guard' : 'failed');
      return code.startsWith('GUARD_')
        ? denied(code, 'The execution guard refused this action. Do not retry it unchanged.')
        : { ok: false, error: { code, message: 'The tool failed.' } };
    }
  };

  const requestApproval = async (
    call: ProposedCall,
    step: number,
    decision: Decision,
  ): Promise<ApprovalResult & { escalated: boolean }> => {
    const approvalWorkflowId = approvalWorkflowIdFor(runId, step);
    const requirement = decision.approval;
    if (requirement === null) throw new Error('approval decision without requirement');
    const digest = actionDigest({
      tool: call.tool,
      args: call.args,
      resource: decision.resource,
      policyVersion: decision.policyVersion,
    });
    emit(AuditKind.approvalRequested, step, {
      approvalWorkflowId,
      tool: call.tool,
      actionDigest: digest,
      ruleId: decision.ruleId,
      eligible: requirement.eligible,
      quorum: requirement.quorum,
      timeoutMs: requirement.timeoutMs,
    });
    // the wait ends early when the run is revoked; the approval request is then cancelled
    const approvalScope = new CancellationScope();
    const revokeWatch = new CancellationScope();
    const revoked = revokeWatch.run(() => condition(isRevoked));
    revoked.catch(() => undefined);
    try {
      const waiting = approvalScope.run(async () => {
        const child = await startChild(approvalWorkflow, {
          workflowId: approvalWorkflowId,
          args: [
            {
              runWorkflowId: runId,
              step,
              agentId: input.agentId,
              requester: input.requestedBy,
              action: {
                tool: call.tool,
                args: call.args,
                resource: decision.resource,
                rationale: call.rationale,
              },
              actionDigest: digest,
              ruleId: decision.ruleId,
              policyVersion: decision.policyVersion,
              approval: requirement,
              notifyTaskQueue: approvalQueue,
              trustedKeys: input.trustedKeys,
            },
          ],
          staticSummary:
            `Approval: ${call.tool}${decision.resource ? ` ${decision.resource}` : ''} (step ${step})`.slice(
              0,
              200,
            ),
          staticDetails: `Run \`${runId}\` of agent **${input.agentId}** asks to run \`${call.tool}\` (rule ${decision.ruleId ?? 'default'}).\n\nRationale (unverified, from the model): ${call.rationale ?? '—'}`,
          searchAttributes: {
            AgentId: [input.agentId],
            RequestedBy: [input.requestedBy],
            PolicyVersion: [decision.policyVersion],
            ApprovalState: ['PENDING'],
          },
        });
        // announced once the child exists, so a vote sent on seeing it has somewhere to go
        pendingApproval = { step, tool: call.tool, approvalWorkflowId };
        state = 'waiting_approval';
        setRunState('WAITING_APPROVAL');
        showDetails();
        return child.result();
      });
      waiting.catch(() => undefined);
      const winner = await Promise.race([waiting, revoked.then(() => null)]);
      if (winner === null) {
        approvalScope.cancel();
        await waiting.catch(() => undefined);
        emit(AuditKind.approvalDecided, step, {
          approvalWorkflowId,
          status: 'cancelled',
          reason: 'the run was revoked',
        });
        return {
          status: 'denied',
          approvedBy: [],
          deniedBy: null,
          reason: 'the run was revoked',
          votes: [],
          attempts: [],
          escalated: false,
          revised: null,
        };
      }
      const result = winner;
      emit(AuditKind.approvalDecided, step, {
        approvalWorkflowId,
        status: result.status,
        approvedBy: result.approvedBy,
        deniedBy: result.deniedBy,
        reason: result.reason,
        refusedAttempts: result.attempts.filter((a) => !a.accepted).length,
      });
      return { ...result, escalated: result.escalated };
    } catch (error) {
      if (isCancellation(error)) throw error;
      if (error instanceof ChildWorkflowFailure) {
        return {
          status: 'denied',
          approvedBy: [],
          deniedBy: null,
          reason: 'the approval could not be completed',
          votes: [],
          attempts: [],
          escalated: false,
          revised: null,
        };
      }
      throw error;
    } finally {
      revokeWatch.cancel();
      pendingApproval = null;
      state = 'running';
      setRunState('RUNNING');
    }
  };

  // --- the loop -----------------------------------------------------------------------------
  if (!carried) {
    emit(AuditKind.runStarted, null, {
      requestedBy: input.requestedBy,
      task: input.task,
      policyVersion: pinned.policyVersion,
      model: input.model.provider,
      budgets: input.budgets,
    });
    upsertSearchAttributes([
      { key: AgentIdKey, value: input.agentId },
      { key: RequestedByKey, value: input.requestedBy },
      { key: PolicyVersionKey, value: pinned.policyVersion },
    ]);
  }
  setRunState('RUNNING');
  showDetails();

  try {
    for (;;) {
      applyPendingPolicy();
      if (isRevoked()) return await finish(RunStatus.revoked, null, 'the run was revoked');
      const exhausted = budgetProblem();
      if (exhausted) return await finish(RunStatus.budgetExhausted, null, exhausted);

      const limit = input.options?.continueAsNewAfterTurns;
      if (workflowInfo().continueAsNewSuggested || (limit !== undefined && turnsThisGeneration >= limit)) {
        await condition(allHandlersFinished);
        applyPendingPolicy();
        const next: CarriedRunState = {
          messages,
          policy: pinned,
          posture,
          frozenTools,
          used,
          usage,
          recentDecisions: recent,
          startedAtMs,
          generation: generation + 1,
          ...(postureCause === null ? {} : { postureCause }),
        };
        return await continueAsNew<typeof agentRunWorkflow>({ ...input, carried: next });
      }

      const offered = offeredTools(policy, catalog, { posture, frozenTools }).map((name) =>
        toolDefinition(catalog.get(name) as NonNullable<ReturnType<typeof catalog.get>>),
      );
      let response: ModelResponse;
      try {
        response = await callModel.executeWithOptions({ summary: `model turn ${usage.modelTurns + 1}` }, [
          {
            agentId: input.agentId,
            runId,
            turn: usage.modelTurns,
            model: input.model,
            messages,
            tools: offered,
            runTokenLimit: input.budgets.maxTokens,
          },
        ]);
      } catch (error) {
        // the model proxy refused the call: a token budget (run or agent per day) is spent
        if (failureCode(error) === MODEL_BUDGET_EXHAUSTED)
          return await finish(
            RunStatus.budgetExhausted,
            null,
            failureMessage(error, 'token budget exhausted'),
          );
        throw error;
      }
      turnsThisGeneration += 1;
      usage = {
        ...usage,
        modelTurns: usage.modelTurns + 1,
        inputTokens: usage.inputTokens + response.usage.inputTokens,
        outputTokens: usage.outputTokens + response.usage.outputTokens,
      };
      emit(AuditKind.modelCall, null, {
        turn: usage.modelTurns,
        provider: response.provider,
        model: response.model,
        finishReason: response.finishReason,
        proposed: response.toolCalls.map((c) => ({ tool: c.tool, rationale: c.rationale })),
        usage: response.usage,
        // the model proxy's trace id, target and fallback cause, for correlating with traces
        proxy: (response as { proxy?: unknown }).proxy ?? null,
      });
      messages.push({ role: 'assistant', content: response.content, toolCalls: response.toolCalls });
      if (response.toolCalls.length === 0) return await finish(RunStatus.completed, response.content, null);

      for (const call of response.toolCalls) {
        applyPendingPolicy();
        if (isRevoked() || budgetProblem() !== null) {
          messages.push(toolMessage(call, denied('not_run', 'The run stopped before this call.')));
          continue;
        }
        usage = { ...usage, steps: usage.steps + 1 };
        const body = await act(call, usage.steps);
        messages.push(toolMessage(call, body));
        showDetails();
      }
    }
  } catch (error) {
    if (isCancellation(error)) {
      // Cancel = revoke: record it, then let the workflow end as cancelled.
      await CancellationScope.nonCancellable(async () => {
        state = 'finished';
        posture = Posture.revoked;
        setRunState('REVOKED');
        emit(AuditKind.postureChanged, null, {
          from: 'cancel',
          to: Posture.revoked,
          by: 'temporal-cancel',
          reason: 'workflow cancelled',
        });
        emit(AuditKind.runFinished, null, { status: RunStatus.revoked, reason: 'cancelled', usage });
        showDetails();
      });
    }
    throw error;
  }
}

/** Validates and compiles a pinned policy; throws a coded failure when it is not acceptable. */
function pinPolicy(pinned: PinnedPolicy, agentId: string): CompiledPolicy {
  const loaded = validateGovernance(pinned?.document, 'policy');
  if (!loaded.ok)
    throw ApplicationFailure.create({
      type: RunErrorCode.invalidPolicy,
      message: `invalid governance document: ${loaded.problems
        .slice(0, 5)
        .map((p) => `${p.path}: ${p.message}`)
        .join('; ')}`,
      nonRetryable: true,
    });
  const document: GovernanceDocument = loaded.document;
  const version = policyVersionOf(document);
  if (version !== pinned.policyVersion)
    throw ApplicationFailure.create({
      type: RunErrorCode.policyVersionMismatch,
      message: `policyVersion ${String(pinned.policyVersion).slice(0, 80)} is not the hash of the document (${version})`,
      nonRetryable: true,
    });
  if (document.identity.id !== agentId)
    throw ApplicationFailure.create({
      type: RunErrorCode.agentMismatch,
      message: `the document governs agent "${document.identity.id}", not "${agentId}"`,
      nonRetryable: true,
    });
  return compilePolicy(document, version);
}

function checkBudgets(input: AgentRunInput): void {
  const b = input.budgets;
  const ok = (n: unknown) => typeof n === 'number' && Number.isInteger(n) && n > 0;
  if (!b || !ok(b.maxSteps) || !ok(b.maxTokens) || !ok(b.maxWallTimeMs))
    throw ApplicationFailure.create({
      type: RunErrorCode.invalidBudgets,
      message: 'budgets need positive integers maxSteps, maxTokens and maxWallTimeMs',
      nonRetryable: true,
    });
}

function checkControl(request: ControlRequest): void {
  if (typeof request?.by !== 'string' || request.by.length === 0 || request.by.length > 128)
    throw ApplicationFailure.create({
      type: 'RUN_INVALID_CONTROL',
      message: 'a control request names who sends it (by)',
    });
}

/** The stable code of a failed activity (the `ApplicationFailure` type), or a generic one. */
/** The model proxy's refusal when a token budget is spent (`activities/model`'s `ModelErrorCode.budgetExhausted`). */
const MODEL_BUDGET_EXHAUSTED = 'MODEL_BUDGET_EXHAUSTED';

/** The message of a failed activity's cause, or `fallback`. */
function failureMessage(error: unknown, fallback: string): string {
  let cause: unknown = error;
  while (cause instanceof ActivityFailure) cause = cause.cause;
  return (cause as { message?: unknown } | null)?.message === undefined
    ? fallback
    : String((cause as { message: unknown }).message);
}

function failureCode(error: unknown): string {
  let cause: unknown = error;
  while (cause instanceof ActivityFailure) cause = cause.cause;
  const type = (cause as { type?: unknown } | null)?.type;
  return typeof type === 'string' && type.length > 0 ? type : 'TOOL_FAILED';
}
