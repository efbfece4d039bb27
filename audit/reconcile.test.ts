/**
 * reconcileRun on hand-built facts: a clean run, then one tampering or divergence per case.
 */
import { describe, expect, it } from 'vitest';
import { AuditKind } from '../activities/audit/types.ts';
import { reconcileRun } from './reconcile.ts';
import type {
  ApprovalFact,
  AuditEventLike,
  ExecutionFact,
  ProposalFact,
  RunHistoryFacts,
  RunLifecycleFact,
} from './reconcile.ts';

const RUN = 'run-1';

/** Audit events with consecutive seqs. */
function trail(
  ...events: [kind: string, step: number | null, attrs?: Record<string, unknown>, source?: string][]
): AuditEventLike[] {
  return events.map(([kind, step, attrs = {}, source], i) => ({
    seq: i + 1,
    kind,
    run: RUN,
    step,
    attrs,
    source:
      source ??
      (kind.startsWith('execution.') ? 'guard' : kind.startsWith('vote.') ? 'approvals' : 'workflow'),
  }));
}

const proposal = (step: number | null, tool: string, extra: Partial<ProposalFact> = {}): ProposalFact => ({
  step,
  tool,
  generation: 0,
  turn: 0,
  state: 'decided',
  ...extra,
});
const execution = (step: number, tool: string, extra: Partial<ExecutionFact> = {}): ExecutionFact => ({
  step,
  tool,
  generation: 0,
  state: 'completed',
  ok: true,
  replayed: false,
  failureCode: null,
  ...extra,
});
const approval = (step: number, tool: string, extra: Partial<ApprovalFact> = {}): ApprovalFact => ({
  step,
  tool,
  workflowId: `${RUN}/approval/${step}`,
  generation: 0,
  state: 'completed',
  outcome: 'approved',
  revised: false,
  ...extra,
});
const lifecycle = (extra: Partial<RunLifecycleFact> = {}): RunLifecycleFact => ({
  generations: 1,
  firstGenerationSeen: true,
  stepsBefore: 0,
  close: 'completed',
  status: 'completed',
  failureCode: null,
  refusedAtStart: null,
  ...extra,
});

/** Step 1 autonomous read, step 2 approved write, step 3 prohibited read. */
function cleanHistory(): RunHistoryFacts {
  return {
    workflowId: RUN,
    run: lifecycle(),
    proposals: [proposal(1, 'fs.list'), proposal(2, 'fs.write'), proposal(3, 'fs.read')],
    executions: [execution(1, 'fs.list'), execution(2, 'fs.write')],
    approvals: [approval(2, 'fs.write')],
    recorded: [
      { step: 1, tool: 'fs.list', tier: 'autonomous', outcome: 'executed' },
      { step: 2, tool: 'fs.write', tier: 'approval', outcome: 'executed' },
      { step: 3, tool: 'fs.read', tier: 'prohibited', outcome: 'denied' },
    ],
  };
}

function cleanAudit(): AuditEventLike[] {
  return trail(
    [AuditKind.runStarted, null],
    [AuditKind.modelCall, null],
    [AuditKind.decision, 1, { tool: 'fs.list', tier: 'autonomous' }],
    [AuditKind.executionStarted, 1, { tool: 'fs.list' }],
    [AuditKind.executionResult, 1, { tool: 'fs.list', ok: true, replayed: false }],
    [AuditKind.decision, 2, { tool: 'fs.write', tier: 'approval' }],
    [AuditKind.approvalRequested, 2, { tool: 'fs.write', approvalWorkflowId: `${RUN}/approval/2` }],
    [AuditKind.voteAccepted, 2, {}, 'approvals'],
    [AuditKind.approvalDecided, 2, { status: 'approved' }],
    [AuditKind.executionStarted, 2, { tool: 'fs.write' }],
    [AuditKind.executionResult, 2, { tool: 'fs.write', ok: true, replayed: false }],
    [AuditKind.decision, 3, { tool: 'fs.read', tier: 'prohibited' }],
    [AuditKind.modelCall, null],
    [AuditKind.runFinished, null, { status: 'completed' }],
  );
}

const without = (events: AuditEventLike[], kind: string, step: number | null) => {
  const index = events.findIndex((e) => e.kind === kind && e.step === step);
  if (index < 0) throw new Error(`no ${kind} at step ${step}`);
  return events.filter((_, i) => i !== index);
};
const withEvent = (
  events: AuditEventLike[],
  kind: string,
  step: number | null,
  attrs = {},
  source?: string,
) => [...events, { seq: events.length + 1, kind, run: RUN, step, attrs, source: source ?? 'workflow' }];
const patch = (events: AuditEventLike[], kind: string, step: number | null, attrs: Record<string, unknown>) =>
  events.map((e) => (e.kind === kind && e.step === step ? { ...e, attrs: { ...e.attrs, ...attrs } } : e));
const withHistory = (change: Partial<RunHistoryFacts>): RunHistoryFacts => ({ ...cleanHistory(), ...change });

interface Case {
  readonly name: string;
  readonly audit: AuditEventLike[];
  readonly history: RunHistoryFacts;
  /** [kind, step, what] of each expected difference, in report order. */
  readonly expected: readonly [string, number | null, string][];
}

const cases: Case[] = [
  { name: 'a clean run', audit: cleanAudit(), history: cleanHistory(), expected: [] },
  {
    name: 'a dropped execution.started',
    audit: without(cleanAudit(), AuditKind.executionStarted, 1),
    history: cleanHistory(),
    expected: [['missing_in_audit', 1, 'execution.started']],
  },
  {
    name: 'a dropped decision',
    audit: without(cleanAudit(), AuditKind.decision, 3),
    history: cleanHistory(),
    expected: [['missing_in_audit', 3, 'decision']],
  },
  {
    name: 'a dropped execution.result',
    audit: without(cleanAudit(), AuditKind.executionResult, 2),
    history: cleanHistory(),
    expected: [['missing_in_audit', 2, 'execution.result']],
  },
  {
    name: 'an extra audit decision with no proposal in history',
    audit: withEvent(cleanAudit(), AuditKind.decision, 7, { tool: 'fs.write', tier: 'preapproved' }),
    history: cleanHistory(),
    expected: [['missing_in_history', 7, 'decision']],
  },
  {
    name: 'a second decision for one proposal',
    audit: withEvent(cleanAudit(), AuditKind.decision, 3, { tool: 'fs.read', tier: 'autonomous' }),
    history: cleanHistory(),
    expected: [['missing_in_history', 3, 'decision']],
  },
  {
    name: 'a decision on another tool than proposed',
    audit: patch(cleanAudit(), AuditKind.decision, 1, { tool: 'fs.read' }),
    history: cleanHistory(),
    expected: [['mismatch', 1, 'decision']],
  },
  {
    name: 'an execution of another tool than scheduled',
    audit: patch(cleanAudit(), AuditKind.executionStarted, 1, { tool: 'shell.exec' }),
    history: cleanHistory(),
    expected: [['mismatch', 1, 'execution.started']],
  },
  {
    name: 'an execution.started with no executeTool in history',
    audit: withEvent(cleanAudit(), AuditKind.executionStarted, 3, { tool: 'fs.read' }, 'guard'),
    history: cleanHistory(),
    expected: [['missing_in_history', 3, 'execution.started']],
  },
  {
    name: 'a result that says ok where the tool failed',
    audit: cleanAudit(),
    history: withHistory({ executions: [execution(1, 'fs.list', { ok: false }), execution(2, 'fs.write')] }),
    expected: [['mismatch', 1, 'execution.result']],
  },
  {
    name: 'a decision downgraded to prohibited while the history ran the tool',
    audit: patch(cleanAudit(), AuditKind.decision, 1, { tier: 'prohibited' }),
    history: cleanHistory(),
    expected: [
      ['mismatch', 1, 'decision'], // the workflow recorded autonomous
      ['mismatch', 1, 'decision'], // and scheduled executeTool
    ],
  },
  {
    name: 'an approval-tier call the audit calls autonomous',
    audit: patch(cleanAudit(), AuditKind.decision, 2, { tier: 'autonomous' }),
    history: withHistory({ recorded: [] }),
    expected: [['mismatch', 2, 'decision']],
  },
  {
    name: 'audit says approved, the approval child was denied',
    audit: without(without(cleanAudit(), AuditKind.executionStarted, 2), AuditKind.executionResult, 2),
    history: withHistory({
      executions: [execution(1, 'fs.list')],
      approvals: [approval(2, 'fs.write', { outcome: 'denied' })],
    }),
    expected: [['mismatch', 2, 'approval.decided']],
  },
  {
    name: 'audit says approved, the approval timed out',
    audit: without(without(cleanAudit(), AuditKind.executionStarted, 2), AuditKind.executionResult, 2),
    history: withHistory({
      executions: [execution(1, 'fs.list')],
      approvals: [approval(2, 'fs.write', { outcome: 'timed_out' })],
    }),
    expected: [['mismatch', 2, 'approval.decided']],
  },
  {
    name: 'the history ran a tool whose approval was denied',
    audit: patch(cleanAudit(), AuditKind.approvalDecided, 2, { status: 'denied' }),
    history: withHistory({ approvals: [approval(2, 'fs.write', { outcome: 'denied' })] }),
    expected: [['mismatch', 2, 'execution.started']],
  },
  {
    name: 'audit says decided, the approval child failed',
    audit: cleanAudit(),
    history: withHistory({ approvals: [approval(2, 'fs.write', { state: 'failed', outcome: null })] }),
    expected: [
      ['mismatch', 2, 'approval.decided'],
      ['mismatch', 2, 'execution.started'],
    ],
  },
  {
    name: 'audit says decided, the approval child is still open',
    audit: cleanAudit().filter((e) => !(e.step === 2 && e.kind.startsWith('execution.'))),
    history: withHistory({
      executions: [execution(1, 'fs.list')],
      approvals: [approval(2, 'fs.write', { state: 'open', outcome: null })],
    }),
    expected: [['missing_in_history', 2, 'approval.decided']],
  },
  {
    name: 'a dropped approval.requested and approval.decided',
    audit: without(without(cleanAudit(), AuditKind.approvalRequested, 2), AuditKind.approvalDecided, 2),
    history: cleanHistory(),
    expected: [
      ['missing_in_audit', 2, 'approval.requested'],
      ['missing_in_audit', 2, 'approval.decided'],
    ],
  },
  {
    name: 'an approval request for another tool',
    audit: patch(cleanAudit(), AuditKind.approvalRequested, 2, { tool: 'fs.read' }),
    history: cleanHistory(),
    expected: [['mismatch', 2, 'approval.requested']],
  },
  {
    name: 'an edited decision without an edit in the approval',
    audit: withEvent(cleanAudit(), AuditKind.decision, 2, {
      tool: 'fs.write',
      tier: 'approval',
      editedBy: 'bob',
    }),
    history: cleanHistory(),
    expected: [['missing_in_history', 2, 'decision']],
  },
  {
    name: 'an edited decision after approve-with-edits',
    audit: withEvent(cleanAudit(), AuditKind.decision, 2, {
      tool: 'fs.write',
      tier: 'approval',
      editedBy: 'bob',
    }),
    history: withHistory({ approvals: [approval(2, 'fs.write', { revised: true })] }),
    expected: [],
  },
  {
    name: 'a decision written by the wrong source',
    audit: cleanAudit().map((e) =>
      e.kind === AuditKind.decision && e.step === 3 ? { ...e, source: 'cli' } : e,
    ),
    history: cleanHistory(),
    expected: [['mismatch', 3, 'decision']],
  },
  {
    name: 'a run.finished with another status',
    audit: patch(cleanAudit(), AuditKind.runFinished, null, { status: 'revoked' }),
    history: cleanHistory(),
    expected: [['mismatch', null, 'run.finished']],
  },
  {
    name: 'a dropped run.started and run.finished',
    audit: without(without(cleanAudit(), AuditKind.runStarted, null), AuditKind.runFinished, null),
    history: cleanHistory(),
    expected: [
      ['missing_in_audit', null, 'run.started'],
      ['missing_in_audit', null, 'run.finished'],
    ],
  },
  {
    name: 'a run.finished for a run still open, with a call not decided yet',
    audit: cleanAudit(),
    history: withHistory({
      run: lifecycle({ close: 'open', status: null }),
      proposals: [...cleanHistory().proposals, proposal(4, 'fs.list', { state: 'pending' })],
    }),
    expected: [['missing_in_history', null, 'run.finished']],
  },
  {
    name: 'a cancelled run: revoked, its pending approval cancelled without approval.decided',
    audit: trail(
      [AuditKind.runStarted, null],
      [AuditKind.decision, 1, { tool: 'fs.list', tier: 'autonomous' }],
      [AuditKind.executionStarted, 1, { tool: 'fs.list' }],
      [AuditKind.executionResult, 1, { tool: 'fs.list', ok: true }],
      [AuditKind.decision, 2, { tool: 'fs.write', tier: 'approval' }],
      [AuditKind.approvalRequested, 2, { tool: 'fs.write', approvalWorkflowId: `${RUN}/approval/2` }],
      [AuditKind.postureChanged, null],
      [AuditKind.runFinished, null, { status: 'revoked' }],
    ),
    history: withHistory({
      run: lifecycle({ close: 'cancelled', status: null }),
      proposals: [
        proposal(1, 'fs.list'),
        proposal(2, 'fs.write'),
        proposal(3, 'fs.read', { state: 'pending' }),
      ],
      executions: [execution(1, 'fs.list')],
      approvals: [approval(2, 'fs.write', { state: 'cancelled', outcome: 'cancelled' })],
      recorded: [],
    }),
    expected: [],
  },
  {
    name: 'calls past a completed run’s step budget need no decision',
    audit: cleanAudit(),
    history: withHistory({ proposals: [...cleanHistory().proposals, proposal(null, 'fs.list')] }),
    expected: [],
  },
  {
    name: 'a guard refusal, audited',
    audit: withEvent(
      without(without(cleanAudit(), AuditKind.executionStarted, 1), AuditKind.executionResult, 1),
      AuditKind.executionRefused,
      1,
      { code: 'GUARD_PROHIBITED' },
      'guard',
    ),
    history: withHistory({
      executions: [
        execution(1, 'fs.list', { state: 'failed', ok: null, failureCode: 'GUARD_PROHIBITED' }),
        execution(2, 'fs.write'),
      ],
    }),
    expected: [],
  },
  {
    name: 'a guard refusal without its step, matched by code',
    audit: withEvent(
      without(without(cleanAudit(), AuditKind.executionStarted, 1), AuditKind.executionResult, 1),
      AuditKind.executionRefused,
      null,
      { code: 'GUARD_MALFORMED_INPUT' },
      'guard',
    ),
    history: withHistory({
      executions: [
        execution(1, 'fs.list', { state: 'failed', ok: null, failureCode: 'GUARD_MALFORMED_INPUT' }),
        execution(2, 'fs.write'),
      ],
    }),
    expected: [],
  },
  {
    name: 'a guard refusal missing from the audit',
    audit: without(without(cleanAudit(), AuditKind.executionStarted, 1), AuditKind.executionResult, 1),
    history: withHistory({
      executions: [
        execution(1, 'fs.list', { state: 'failed', ok: null, failureCode: 'GUARD_PROHIBITED' }),
        execution(2, 'fs.write'),
      ],
    }),
    expected: [['missing_in_audit', 1, 'execution.refused']],
  },
  {
    name: 'a journal replay needs only its replayed result',
    audit: patch(without(cleanAudit(), AuditKind.executionStarted, 1), AuditKind.executionResult, 1, {
      replayed: true,
    }),
    history: withHistory({
      executions: [execution(1, 'fs.list', { replayed: true }), execution(2, 'fs.write')],
    }),
    expected: [],
  },
  {
    name: 'a run refused at start: run.refused, no run.started',
    audit: trail([AuditKind.runRefused, null, { code: 'RUN_REQUESTER_NOT_DIRECTOR' }]),
    history: {
      workflowId: RUN,
      run: lifecycle({
        close: 'failed',
        status: null,
        failureCode: 'RUN_REQUESTER_NOT_DIRECTOR',
        refusedAtStart: 'RUN_REQUESTER_NOT_DIRECTOR',
      }),
      proposals: [],
      executions: [],
      approvals: [],
      recorded: [],
    },
    expected: [],
  },
  {
    name: 'a forged run.started for a refused run',
    audit: trail(
      [AuditKind.runStarted, null],
      [AuditKind.runRefused, null, { code: 'RUN_REQUESTER_NOT_DIRECTOR' }],
    ),
    history: {
      workflowId: RUN,
      run: lifecycle({ close: 'failed', status: null, refusedAtStart: 'RUN_REQUESTER_NOT_DIRECTOR' }),
      proposals: [],
      executions: [],
      approvals: [],
      recorded: [],
    },
    expected: [['missing_in_history', null, 'run.started']],
  },
];

/** Three generations (continue-as-new after each turn): steps number on across them. */
function continuedHistory(extra: Partial<RunLifecycleFact> = {}): RunHistoryFacts {
  return {
    workflowId: RUN,
    run: lifecycle({ generations: 3, ...extra }),
    proposals: [
      proposal(1, 'fs.list', { generation: 0, turn: 0 }),
      proposal(2, 'fs.read', { generation: 1, turn: 1 }),
      proposal(3, 'fs.write', { generation: 2, turn: 2 }),
    ],
    executions: [
      execution(1, 'fs.list', { generation: 0 }),
      execution(2, 'fs.read', { generation: 1 }),
      execution(3, 'fs.write', { generation: 2 }),
    ],
    approvals: [],
    recorded: [{ step: 3, tool: 'fs.write', tier: 'preapproved', outcome: 'executed' }],
  };
}
const continuedAudit = (): AuditEventLike[] =>
  trail(
    [AuditKind.runStarted, null],
    ...[1, 2, 3].flatMap((step): [string, number, Record<string, unknown>][] => {
      const tool = ['fs.list', 'fs.read', 'fs.write'][step - 1];
      return [
        [AuditKind.decision, step, { tool, tier: step === 3 ? 'preapproved' : 'autonomous' }],
        [AuditKind.executionStarted, step, { tool }],
        [AuditKind.executionResult, step, { tool, ok: true }],
      ];
    }),
    [AuditKind.runFinished, null, { status: 'completed' }],
  );

cases.push(
  { name: 'a continue-as-new run', audit: continuedAudit(), history: continuedHistory(), expected: [] },
  {
    name: 'a continue-as-new run missing a later generation’s decision',
    audit: without(continuedAudit(), AuditKind.decision, 2),
    history: continuedHistory(),
    expected: [['missing_in_audit', 2, 'decision']],
  },
  {
    name: 'a continue-as-new run whose first generation is past retention',
    // step 1 and run.started are not compared; a forged step-1 record goes unnoticed, by design
    audit: withEvent(continuedAudit(), AuditKind.decision, 1, { tool: 'anything', tier: 'autonomous' }),
    history: {
      ...continuedHistory({ generations: 2, firstGenerationSeen: false, stepsBefore: 1 }),
      proposals: continuedHistory().proposals.slice(1),
      executions: continuedHistory().executions.slice(1),
    },
    expected: [],
  },
);

describe('reconcileRun', () => {
  it.each(cases)('$name', ({ audit, history, expected }) => {
    const report = reconcileRun({ runId: RUN, audit, history });
    expect(report.differences.map((d) => [d.kind, d.step, d.what])).toEqual(expected);
    expect(report.ok).toBe(expected.length === 0);
  });

  it('summarises each step and explains a difference', () => {
    const report = reconcileRun({
      runId: RUN,
      audit: without(cleanAudit(), AuditKind.executionStarted, 1),
      history: cleanHistory(),
    });
    expect(report.steps).toEqual([
      {
        step: 1,
        tool: 'fs.list',
        tier: 'autonomous',
        decision: 'ok',
        approval: 'none',
        execution: 'differs',
      },
      { step: 2, tool: 'fs.write', tier: 'approval', decision: 'ok', approval: 'ok', execution: 'ok' },
      { step: 3, tool: 'fs.read', tier: 'prohibited', decision: 'ok', approval: 'none', execution: 'none' },
    ]);
    expect(report.differences).toMatchInlineSnapshot(`
      [
        {
          "detail": "the history's executeTool fs.list completed; the audit has no execution.started",
          "kind": "missing_in_audit",
          "seq": null,
          "step": 1,
          "what": "execution.started",
        },
      ]
    `);
  });

  it('explains mismatches with the audit record and the history side', () => {
    const audit = patch(
      withEvent(cleanAudit(), AuditKind.decision, 9, { tool: 'fs.write' }),
      AuditKind.decision,
      1,
      {
        tool: 'fs.read',
      },
    );
    const details = reconcileRun({ runId: RUN, audit, history: cleanHistory() }).differences.map(
      (d) => d.detail,
    );
    expect(details).toMatchInlineSnapshot(`
      [
        "seq 3 decides fs.read, the history proposed fs.list",
        "seq 15 decides fs.write but the history proposes no call at step 9",
      ]
    `);
  });

  it('marks a call the history has not decided yet as pending, not missing', () => {
    const history = withHistory({
      run: lifecycle({ close: 'open', status: null }),
      proposals: [...cleanHistory().proposals, proposal(4, 'fs.list', { state: 'pending' })],
    });
    const audit = cleanAudit().filter((e) => e.kind !== AuditKind.runFinished);
    const report = reconcileRun({ runId: RUN, audit, history });
    expect(report.ok).toBe(true);
    expect(report.steps.at(-1)).toMatchObject({ step: 4, decision: 'pending', execution: 'none' });
  });

  it('ignores events of other runs and is independent of input order', () => {
    const audit = cleanAudit();
    const noise = {
      seq: 99,
      kind: AuditKind.decision,
      run: 'run-2',
      step: 5,
      attrs: { tool: 'x' },
      source: 'workflow',
    };
    const a = reconcileRun({ runId: RUN, audit: [...audit, noise], history: cleanHistory() });
    const b = reconcileRun({ runId: RUN, audit: audit.toReversed(), history: cleanHistory() });
    expect(a).toEqual(reconcileRun({ runId: RUN, audit, history: cleanHistory() }));
    expect(b).toEqual(a);
    expect(a.ok).toBe(true);
  });
});
