/**
 * Reconciles one run's audit trail with its Temporal history. Pure and deterministic: the facts
 * come from `reconcile-history.ts`, the events from any audit store. Every decision, approval and
 * execution in one must have its counterpart in the other with the same step, tool and outcome,
 * and the run's start and end must agree.
 * @module
 */
import { AuditKind } from '../activities/audit/types.ts';
import { AgentRuntimeError } from '../policy/errors.ts';
import { Tier } from '../policy/tiers.ts';
import { RunErrorCode } from '../workflows/agent-run.ts';

/** Stable codes of {@link ReconcileError}. */
export const ReconcileErrorCode = {
  /** No workflow with the run id exists in the namespace. */
  runNotFound: 'RECONCILE_RUN_NOT_FOUND',
  /** A history event or payload does not have the shape the AgentRun workflow writes. */
  historyUnreadable: 'RECONCILE_HISTORY_UNREADABLE',
  /** The audit store holds more records for the run than one search returns. */
  auditTooLarge: 'RECONCILE_AUDIT_TOO_LARGE',
} as const;
export type ReconcileErrorCode = (typeof ReconcileErrorCode)[keyof typeof ReconcileErrorCode];

/** Reconciliation could not be carried out; `code` is a {@link ReconcileErrorCode}. */
export class ReconcileError extends AgentRuntimeError {
  declare readonly code: ReconcileErrorCode;
  constructor(code: ReconcileErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The part of an audit record reconciliation reads (an `AuditRecord` or an `AuditEvent`). */
export interface AuditEventLike {
  readonly seq: number;
  readonly kind: string;
  readonly run: string | null;
  readonly step: number | null;
  readonly attrs: Readonly<Record<string, unknown>>;
  readonly source: string;
}

/** Whether the history shows the workflow got past a proposed call's decision. */
export const ProposalState = {
  decided: 'decided',
  /** The run is open or was stopped mid-step: the history cannot tell whether it was decided. */
  pending: 'pending',
} as const;
export type ProposalState = (typeof ProposalState)[keyof typeof ProposalState];

/** One tool call a `callModel` result proposed. */
export interface ProposalFact {
  /** The step the call took; null when the run stopped before it (no step, no decision). */
  readonly step: number | null;
  readonly tool: string;
  /** Continue-as-new generation, 0 for the first. */
  readonly generation: number;
  /** Model turn across generations, 0-based. */
  readonly turn: number;
  readonly state: ProposalState;
}

/** How a scheduled activity ended, as the history says. */
export const ActivityState = {
  open: 'open',
  completed: 'completed',
  failed: 'failed',
  timedOut: 'timed_out',
  cancelled: 'cancelled',
} as const;
export type ActivityState = (typeof ActivityState)[keyof typeof ActivityState];

/** One `executeTool` activity. */
export interface ExecutionFact {
  readonly step: number;
  readonly tool: string;
  readonly generation: number;
  readonly state: ActivityState;
  /** Completed: the tool result's `ok`. */
  readonly ok: boolean | null;
  /** Completed: whether the guard answered from its journal without running the tool. */
  readonly replayed: boolean | null;
  /** Failed: the failure's type (`GUARD_*`, `TOOL_*`, …). */
  readonly failureCode: string | null;
}

/** How an approval child workflow stands, as the parent's (and its own) history says. */
export const ChildState = {
  initiated: 'initiated',
  startFailed: 'start_failed',
  open: 'open',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
  terminated: 'terminated',
  timedOut: 'timed_out',
} as const;
export type ChildState = (typeof ChildState)[keyof typeof ChildState];

/** What an approval ended with, in the terms of `approval.decided`'s `status`. */
export type ApprovalOutcome = 'approved' | 'denied' | 'timed_out' | 'cancelled';

/** One approval child workflow. */
export interface ApprovalFact {
  readonly step: number;
  readonly tool: string;
  readonly workflowId: string;
  readonly generation: number;
  readonly state: ChildState;
  /** Completed: the approval's status; cancelled: `cancelled`; otherwise null. */
  readonly outcome: ApprovalOutcome | null;
  /** Whether an approver edited the action (approve with edits). */
  readonly revised: boolean;
}

/** A decision the workflow itself recorded (its result and continue-as-new state keep the last 20). */
export interface RecordedDecisionFact {
  readonly step: number;
  readonly tool: string;
  readonly tier: string;
  readonly outcome: string;
}

/** How the workflow (its last generation) stands. */
export const RunClose = {
  open: 'open',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
  terminated: 'terminated',
  timedOut: 'timed_out',
} as const;
export type RunClose = (typeof RunClose)[keyof typeof RunClose];

/** The run's start and end. */
export interface RunLifecycleFact {
  /** Generations read (continue-as-new runs). */
  readonly generations: number;
  /** Whether the first generation's history was read (older ones may be past retention). */
  readonly firstGenerationSeen: boolean;
  /** Steps taken in generations whose history is gone: audit records of those steps are not compared. */
  readonly stepsBefore: number;
  readonly close: RunClose;
  /** Completed: the result's `status`. */
  readonly status: string | null;
  /** Failed: the failure's type. */
  readonly failureCode: string | null;
  /** The coded failure that refused the run before it started (`RUN_REQUESTER_NOT_DIRECTOR`, …). */
  readonly refusedAtStart: string | null;
}

/** What the run's Temporal histories (all generations, the approval children) say happened. */
export interface RunHistoryFacts {
  readonly workflowId: string;
  readonly run: RunLifecycleFact;
  readonly proposals: readonly ProposalFact[];
  readonly executions: readonly ExecutionFact[];
  readonly approvals: readonly ApprovalFact[];
  readonly recorded: readonly RecordedDecisionFact[];
}

/** Kinds of differences. */
export const DifferenceKind = {
  missingInAudit: 'missing_in_audit',
  missingInHistory: 'missing_in_history',
  mismatch: 'mismatch',
} as const;
export type DifferenceKind = (typeof DifferenceKind)[keyof typeof DifferenceKind];

/** One disagreement between the audit trail and the history. */
export interface ReconcileDifference {
  readonly kind: DifferenceKind;
  /** The step, or null for run-level records. */
  readonly step: number | null;
  /** The audit kind at stake (`decision`, `execution.started`, `run.finished`, …). */
  readonly what: string;
  readonly detail: string;
  /** The audit record concerned, when there is one. */
  readonly seq: number | null;
}

/** How one side of a step compares. */
export const CheckState = {
  ok: 'ok',
  differs: 'differs',
  /** Nothing expected, nothing found. */
  none: 'none',
  /** Still open in the history. */
  pending: 'pending',
} as const;
export type CheckState = (typeof CheckState)[keyof typeof CheckState];

/** One step as reconciled. */
export interface StepSummary {
  readonly step: number;
  readonly tool: string | null;
  /** The audit decision's tier. */
  readonly tier: string | null;
  readonly decision: CheckState;
  readonly approval: CheckState;
  readonly execution: CheckState;
}

/** The outcome of {@link reconcileRun}. */
export interface ReconcileReport {
  readonly runId: string;
  /** True when there are no differences. */
  readonly ok: boolean;
  readonly generations: number;
  readonly close: RunClose;
  readonly status: string | null;
  readonly steps: readonly StepSummary[];
  readonly differences: readonly ReconcileDifference[];
}

/** The writer each reconciled kind must come from. */
const EXPECTED_SOURCE: Readonly<Record<string, string>> = {
  [AuditKind.runStarted]: 'workflow',
  [AuditKind.runRefused]: 'workflow',
  [AuditKind.runFinished]: 'workflow',
  [AuditKind.decision]: 'workflow',
  [AuditKind.approvalRequested]: 'workflow',
  [AuditKind.approvalDecided]: 'workflow',
  [AuditKind.executionStarted]: 'guard',
  [AuditKind.executionResult]: 'guard',
  [AuditKind.executionRefused]: 'guard',
};

const STEP_KINDS: ReadonlySet<string> = new Set([
  AuditKind.decision,
  AuditKind.approvalRequested,
  AuditKind.approvalDecided,
  AuditKind.executionStarted,
  AuditKind.executionResult,
  AuditKind.executionRefused,
]);

/** A value for a message: strings as they are, anything else as JSON. */
function show(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? 'undefined');
}

function ofKind(events: readonly AuditEventLike[], kind: string): AuditEventLike[] {
  return events.filter((e) => e.kind === kind);
}

/** Compares a run's audit events with its history facts. Events of other runs are ignored. */
export function reconcileRun(input: {
  runId: string;
  audit: readonly AuditEventLike[];
  history: RunHistoryFacts;
}): ReconcileReport {
  const { runId, history } = input;
  const { run } = history;
  const events = input.audit.filter((e) => e.run === runId).toSorted((a, b) => a.seq - b.seq);
  const differences: ReconcileDifference[] = [];
  const add = (
    kind: DifferenceKind,
    step: number | null,
    what: string,
    detail: string,
    seq: number | null = null,
  ): void => {
    differences.push({ kind, step, what, detail, seq });
  };

  for (const e of events) {
    const expected = EXPECTED_SOURCE[e.kind];
    if (expected !== undefined && e.source !== expected)
      add(
        DifferenceKind.mismatch,
        e.step,
        e.kind,
        `seq ${e.seq} was written by ${show(e.source)}, expected ${expected}`,
        e.seq,
      );
  }
  reconcileLifecycle(run, events, add);

  // guard refusals before the input parsed carry no step: attribute them by failure code
  const unattributed = new Map<number, AuditEventLike[]>();
  const byStep = new Map<number, AuditEventLike[]>();
  const push = (map: Map<number, AuditEventLike[]>, step: number, e: AuditEventLike): void => {
    map.set(step, [...(map.get(step) ?? []), e]);
  };
  for (const e of events) {
    if (!STEP_KINDS.has(e.kind)) continue;
    if (e.step !== null) {
      if (e.step > run.stepsBefore) push(byStep, e.step, e);
      continue;
    }
    const owner =
      e.kind === AuditKind.executionRefused
        ? history.executions.find(
            (x) => x.state === ActivityState.failed && x.failureCode === e.attrs['code'],
          )
        : undefined;
    if (owner) push(unattributed, owner.step, e);
    else
      add(
        DifferenceKind.missingInHistory,
        null,
        e.kind,
        `seq ${e.seq} names no step and matches nothing in the history`,
        e.seq,
      );
  }

  const steps = new Set<number>(byStep.keys());
  for (const p of history.proposals) if (p.step !== null) steps.add(p.step);
  for (const x of history.executions) steps.add(x.step);
  for (const a of history.approvals) steps.add(a.step);

  const summaries: StepSummary[] = [];
  for (const step of [...steps].toSorted((a, b) => a - b)) {
    if (step <= run.stepsBefore) continue;
    const found = reconcileStep(step, history, byStep.get(step) ?? [], unattributed.get(step) ?? [], add);
    const differs = (prefix: string): boolean =>
      differences.some((d) => d.step === step && d.what.startsWith(prefix));
    const mark = (prefix: string, present: boolean, pending: boolean): CheckState =>
      differs(prefix)
        ? CheckState.differs
        : pending
          ? CheckState.pending
          : present
            ? CheckState.ok
            : CheckState.none;
    summaries.push({
      step,
      tool: found.tool,
      tier: found.tier,
      decision: mark(AuditKind.decision, found.decision.present, found.decision.pending),
      approval: mark('approval.', found.approval.present, found.approval.pending),
      execution: mark('execution.', found.execution.present, found.execution.pending),
    });
  }

  const ordered = differences
    .map((d, i) => ({ d, i }))
    .toSorted((a, b) => (a.d.step ?? 0) - (b.d.step ?? 0) || a.i - b.i)
    .map(({ d }) => d);
  return {
    runId,
    ok: ordered.length === 0,
    generations: run.generations,
    close: run.close,
    status: run.status,
    steps: summaries,
    differences: ordered,
  };
}

type Add = (
  kind: DifferenceKind,
  step: number | null,
  what: string,
  detail: string,
  seq?: number | null,
) => void;

/** Expected-once run-level records: missing, unexpected, extra and mismatched ones. */
function expectOnce(
  what: string,
  found: readonly AuditEventLike[],
  expected: boolean,
  describeHistory: string,
  add: Add,
  compare?: (e: AuditEventLike) => string | null,
): void {
  const [first, ...extra] = found;
  if (first === undefined) {
    if (expected)
      add(DifferenceKind.missingInAudit, null, what, `${describeHistory}; the audit has no ${what}`);
    return;
  }
  if (!expected) {
    for (const e of found)
      add(
        DifferenceKind.missingInHistory,
        null,
        what,
        `seq ${e.seq} has no counterpart: ${describeHistory}`,
        e.seq,
      );
    return;
  }
  const problem = compare?.(first) ?? null;
  if (problem !== null) add(DifferenceKind.mismatch, null, what, problem, first.seq);
  for (const e of extra)
    add(
      DifferenceKind.missingInHistory,
      null,
      what,
      `seq ${e.seq} repeats ${what} (seq ${first.seq})`,
      e.seq,
    );
}

function reconcileLifecycle(run: RunLifecycleFact, events: readonly AuditEventLike[], add: Add): void {
  if (run.firstGenerationSeen) {
    const refused = run.refusedAtStart;
    expectOnce(
      AuditKind.runStarted,
      ofKind(events, AuditKind.runStarted),
      refused === null,
      refused === null ? 'the history starts the workflow' : `the workflow was refused at start (${refused})`,
      add,
    );
    expectOnce(
      AuditKind.runRefused,
      ofKind(events, AuditKind.runRefused),
      refused === RunErrorCode.requesterNotDirector,
      refused === null ? 'the history starts the workflow' : `the workflow failed with ${refused}`,
      add,
      (e) =>
        e.attrs['code'] === refused
          ? null
          : `seq ${e.seq} refuses with ${show(e.attrs['code'])}, the workflow failed with ${refused}`,
    );
  }
  const status =
    run.close === RunClose.completed ? run.status : run.close === RunClose.cancelled ? 'revoked' : null;
  expectOnce(
    AuditKind.runFinished,
    ofKind(events, AuditKind.runFinished),
    status !== null,
    `the workflow is ${run.close}${run.status === null ? '' : ` with status ${run.status}`}`,
    add,
    (e) =>
      e.attrs['status'] === status
        ? null
        : `seq ${e.seq} says status ${show(e.attrs['status'])}, the workflow ${run.close === RunClose.cancelled ? 'was cancelled (revoked)' : `returned ${status}`}`,
  );
}

interface StepFindings {
  readonly tool: string | null;
  readonly tier: string | null;
  readonly decision: { readonly present: boolean; readonly pending: boolean };
  readonly approval: { readonly present: boolean; readonly pending: boolean };
  readonly execution: { readonly present: boolean; readonly pending: boolean };
}

function reconcileStep(
  step: number,
  history: RunHistoryFacts,
  audit: readonly AuditEventLike[],
  attributed: readonly AuditEventLike[],
  add: Add,
): StepFindings {
  const proposal = history.proposals.find((p) => p.step === step);
  const executions = history.executions.filter((x) => x.step === step);
  const approvals = history.approvals.filter((a) => a.step === step);
  const decisions = ofKind(audit, AuditKind.decision);
  const primary = decisions.filter((d) => !Object.hasOwn(d.attrs, 'editedBy'));
  const edits = decisions.filter((d) => Object.hasOwn(d.attrs, 'editedBy'));
  const approval = approvals[0];
  const execution = executions[0];
  const tier = primary[0] === undefined ? null : show(primary[0].attrs['tier']);
  const miss = (what: string, detail: string): void => add(DifferenceKind.missingInAudit, step, what, detail);
  const extra = (e: AuditEventLike, detail: string): void =>
    add(DifferenceKind.missingInHistory, step, e.kind, `seq ${e.seq} ${detail}`, e.seq);
  const differ = (what: string, detail: string, seq: number | null = null): void =>
    add(DifferenceKind.mismatch, step, what, detail, seq);

  // --- decision ↔ proposed call ---------------------------------------------------------------
  const [decision, ...repeated] = primary;
  if (decision === undefined) {
    if (proposal?.state === ProposalState.decided)
      miss(AuditKind.decision, `the history proposes ${proposal.tool}; the audit has no decision`);
  } else if (proposal === undefined) {
    for (const d of primary)
      extra(d, `decides ${show(d.attrs['tool'])} but the history proposes no call at step ${step}`);
  } else {
    if (decision.attrs['tool'] !== proposal.tool)
      differ(
        AuditKind.decision,
        `seq ${decision.seq} decides ${show(decision.attrs['tool'])}, the history proposed ${proposal.tool}`,
        decision.seq,
      );
    for (const d of repeated) extra(d, `is a second decision for one proposed call (seq ${decision.seq})`);
    const recorded = history.recorded.find((r) => r.step === step);
    if (recorded !== undefined && recorded.tier !== tier)
      differ(
        AuditKind.decision,
        `seq ${decision.seq} says ${tier}, the workflow recorded ${recorded.tier}`,
        decision.seq,
      );
    const against = (what: string): void =>
      differ(AuditKind.decision, `seq ${decision.seq} says ${tier} but the history ${what}`, decision.seq);
    if (tier === Tier.prohibited) {
      if (execution) against('schedules executeTool');
      if (approval) against('starts an approval');
    } else if (tier === Tier.autonomous || tier === Tier.preapproved) {
      if (approval) against('starts an approval');
      if (!execution) against('schedules no executeTool');
    } else if (tier === Tier.approval) {
      if (!approval) against('starts no approval');
    } else against('knows no such tier');
  }
  const editAllowed = approvals.some((a) => a.revised);
  for (const d of edits) {
    if (!editAllowed) extra(d, 'is an edited decision but the approval returned no edited action');
    else if (proposal !== undefined && d.attrs['tool'] !== proposal.tool)
      differ(
        AuditKind.decision,
        `seq ${d.seq} edits ${show(d.attrs['tool'])}, the history proposed ${proposal.tool}`,
        d.seq,
      );
  }

  // --- approval.requested/decided ↔ approval child started/closed ------------------------------
  const requested = ofKind(audit, AuditKind.approvalRequested);
  const decided = ofKind(audit, AuditKind.approvalDecided);
  for (const a of approvals.slice(1))
    differ(AuditKind.approvalRequested, `the history starts a second approval ${a.workflowId}`);
  if (approval === undefined) {
    for (const e of [...requested, ...decided])
      extra(e, `has no approval child at step ${step} in the history`);
  } else {
    const [request, ...again] = requested;
    if (request === undefined)
      miss(
        AuditKind.approvalRequested,
        `the history starts approval ${approval.workflowId} for ${approval.tool}; the audit has no approval.requested`,
      );
    else {
      if (request.attrs['tool'] !== approval.tool)
        differ(
          AuditKind.approvalRequested,
          `seq ${request.seq} asks about ${show(request.attrs['tool'])}, the approval child is for ${approval.tool}`,
          request.seq,
        );
      if (request.attrs['approvalWorkflowId'] !== approval.workflowId)
        differ(
          AuditKind.approvalRequested,
          `seq ${request.seq} names ${show(request.attrs['approvalWorkflowId'])}, the child is ${approval.workflowId}`,
          request.seq,
        );
      for (const e of again) extra(e, `repeats approval.requested (seq ${request.seq})`);
    }
    const outcome = approval.outcome;
    // a run cancelled through Temporal ends without deciding its pending approval
    const expectDecided =
      outcome !== null && (outcome !== 'cancelled' || history.run.close !== RunClose.cancelled);
    const [verdict, ...more] = decided;
    if (verdict === undefined) {
      if (expectDecided)
        miss(
          AuditKind.approvalDecided,
          `the approval child ended ${outcome}; the audit has no approval.decided`,
        );
    } else if (outcome === null) {
      const open = approval.state === ChildState.open || approval.state === ChildState.initiated;
      add(
        open ? DifferenceKind.missingInHistory : DifferenceKind.mismatch,
        step,
        AuditKind.approvalDecided,
        `seq ${verdict.seq} says ${show(verdict.attrs['status'])} but the approval child ${open ? 'is still open' : `ended ${approval.state}`}`,
        verdict.seq,
      );
    } else {
      if (verdict.attrs['status'] !== outcome)
        differ(
          AuditKind.approvalDecided,
          `seq ${verdict.seq} says ${show(verdict.attrs['status'])}, the approval child ended ${outcome}`,
          verdict.seq,
        );
      for (const e of more) extra(e, `repeats approval.decided (seq ${verdict.seq})`);
    }
  }

  // --- execution.started/result/refused ↔ executeTool scheduled/completed/failed ---------------
  const started = ofKind(audit, AuditKind.executionStarted);
  const results = ofKind(audit, AuditKind.executionResult);
  const refused = [...ofKind(audit, AuditKind.executionRefused), ...attributed];
  for (const x of executions.slice(1))
    differ(AuditKind.executionStarted, `the history schedules a second executeTool (${x.tool})`);
  if (execution === undefined) {
    for (const e of [...started, ...results, ...refused])
      extra(
        e,
        `reports ${show(e.attrs['tool'] ?? e.attrs['code'])} but the history schedules no executeTool at step ${step}`,
      );
  } else {
    for (const e of [...started, ...results])
      if (e.attrs['tool'] !== execution.tool)
        differ(
          e.kind,
          `seq ${e.seq} runs ${show(e.attrs['tool'])}, the history's executeTool runs ${execution.tool}`,
          e.seq,
        );
    const last = results.at(-1);
    const described = `the history's executeTool ${execution.tool} ${execution.state}`;
    if (execution.state === ActivityState.completed) {
      if (execution.replayed === true) {
        if (!results.some((r) => r.attrs['replayed'] === true))
          miss(
            AuditKind.executionResult,
            `${described} from the journal; the audit has no replayed execution.result`,
          );
      } else if (started.length === 0)
        miss(AuditKind.executionStarted, `${described}; the audit has no execution.started`);
      if (last === undefined)
        miss(AuditKind.executionResult, `${described}; the audit has no execution.result`);
      else if (last.attrs['ok'] !== execution.ok)
        differ(
          AuditKind.executionResult,
          `seq ${last.seq} says ok ${show(last.attrs['ok'])}, ${described} with ok ${show(execution.ok)}`,
          last.seq,
        );
      for (const e of refused) differ(e.kind, `seq ${e.seq} refused the call but ${described}`, e.seq);
    } else if (execution.state === ActivityState.failed) {
      const code = execution.failureCode ?? '';
      if (code.startsWith('GUARD_')) {
        const refusal = refused.at(-1);
        if (refusal === undefined)
          miss(AuditKind.executionRefused, `${described} (${code}); the audit has no execution.refused`);
        else if (refusal.attrs['code'] !== code)
          differ(
            AuditKind.executionRefused,
            `seq ${refusal.seq} refuses with ${show(refusal.attrs['code'])}, the activity failed with ${code}`,
            refusal.seq,
          );
      } else {
        if (started.length === 0)
          miss(AuditKind.executionStarted, `${described} (${code}); the audit has no execution.started`);
        if (code.startsWith('TOOL_') && last === undefined)
          miss(AuditKind.executionResult, `${described} (${code}); the audit has no execution.result`);
        if (last !== undefined && last.attrs['ok'] === true)
          differ(AuditKind.executionResult, `seq ${last.seq} says ok but ${described} (${code})`, last.seq);
      }
    }
    if (approval !== undefined && approval.outcome !== 'approved')
      differ(
        AuditKind.executionStarted,
        `the history runs executeTool though the approval ${approval.outcome === null ? `is ${approval.state}` : `ended ${approval.outcome}`}`,
      );
  }

  return {
    tool:
      proposal?.tool ?? execution?.tool ?? approval?.tool ?? (decision ? show(decision.attrs['tool']) : null),
    tier,
    decision: {
      present: decision !== undefined || proposal?.state === ProposalState.decided,
      pending: decision === undefined && proposal?.state === ProposalState.pending,
    },
    approval: {
      present: approval !== undefined || requested.length + decided.length > 0,
      pending: approval?.state === ChildState.open || approval?.state === ChildState.initiated,
    },
    execution: {
      present: execution !== undefined || started.length + results.length + refused.length > 0,
      pending: execution?.state === ActivityState.open,
    },
  };
}
