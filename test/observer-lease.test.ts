/**
 * The observer heartbeat lease inside the AgentRun workflow, on the real dev server: an agents
 * worker of its own answers `observerLease` from a lease source the tests flip; a pending approval
 * is the pause point between flips. Then the recorded histories replay with the current bundle,
 * and a history of a run started before the check existed (the option in its input, no patch
 * marker) replays too.
 */
import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LoadedGovernance } from '../policy/index.ts';
import { AuditKind } from '../activities/audit/types.ts';
import { createModelActivities } from '../activities/model/index.ts';
import type { ScriptedTurn } from '../activities/model/types.ts';
import { OBSERVER_LEASE_PATCH, setPostureUpdate, statusQuery } from '../workflows/agent-run.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import type { AgentRunInput, ObserverLeaseStatus } from '../workflows/run-types.ts';
import type { LeaseSource } from '../worker/lease.ts';
import { startAgentRun } from '../worker/runs.ts';
import { auditSinks } from '../worker/sinks.ts';
import { createAgentsWorker } from '../worker/workers.ts';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from './agent-stack.ts';

const stack = useAgentStack({ name: 'observer-lease' });
const LEASE_QUEUE = 'agents-observer-lease-watched';
const EXPIRED_AT = '2026-03-01T12:00:03.000Z';
const VALID_UNTIL = '2099-01-01T00:00:00.000Z';

type Run = WorkflowHandle<typeof agentRunWorkflow>;
type History = temporal.api.history.v1.IHistory;

/** The lease source the tests flip: what the agents worker's `observerLease` answers. */
let mode: 'valid' | 'expired' | 'throws' = 'valid';
let leaseCalls = 0;
const flippable: LeaseSource = {
  status(): ObserverLeaseStatus {
    leaseCalls += 1;
    if (mode === 'throws') throw new Error('watcher broke');
    return mode === 'valid'
      ? { valid: true, expiresAt: VALID_UNTIL, holder: 'observer-test', checkedAt: VALID_UNTIL }
      : { valid: false, expiresAt: EXPIRED_AT, holder: 'observer-test', checkedAt: EXPIRED_AT };
  },
};

let governance: LoadedGovernance;
let leaseWorker: Worker;
let leaseWorkerRun: Promise<void>;
const histories: { workflowId: string; history: History }[] = [];
let optionOffHistory: { workflowId: string; history: History } | undefined;

beforeAll(async () => {
  governance = await loadGovernance(OPS_GOVERNANCE);
  leaseWorker = await createAgentsWorker({
    connection: stack.env.nativeConnection,
    namespace: stack.env.namespace ?? 'default',
    taskQueue: LEASE_QUEUE,
    bundle: stack.bundle,
    activities: createModelActivities(),
    audit: stack.audit,
    lease: flippable,
  });
  leaseWorkerRun = leaseWorker.run();
});
afterAll(async () => {
  if (leaseWorker?.getState() === 'RUNNING') leaseWorker.shutdown();
  await leaseWorkerRun;
});
beforeEach(() => {
  mode = 'valid';
  leaseCalls = 0;
});

/** Starts a run on the lease worker (or, with `onStackWorker`, on the stack's worker without a lease source). */
const start = (
  turns: readonly ScriptedTurn[],
  options: AgentRunInput['options'] = { requireObserverLease: true },
  onStackWorker = false,
): Promise<Run> =>
  startAgentRun(stack.client, {
    governance,
    task: 'observer lease test',
    requestedBy: 'carol',
    model: { provider: 'scripted', turns },
    trustedKeys: stack.trustedKeys,
    taskQueue: onStackWorker ? stack.queues.agents : LEASE_QUEUE,
    taskQueues: { tools: stack.queues.tools, approvals: stack.queues.approvals },
    options,
  });

const read = { tool: 'fs.read', args: { path: '/workspace/docs/index.md' } };
const writeDoc = (n: number) => ({
  tool: 'fs.write',
  args: { path: `/workspace/docs/lease-${n}.md`, content: `${n}\n` },
});
const writeConfig = (n: number) => ({
  tool: 'fs.write',
  args: { path: `/workspace/config/lease-${n}.yaml`, content: `n: ${n}\n` },
});

async function pendingAt(run: Run, step: number): Promise<string> {
  const view = await stack.waitFor(run, (v) => v.pendingApproval?.step === step);
  return view.pendingApproval?.approvalWorkflowId ?? '';
}

async function finished(run: Run) {
  const result = await run.result();
  histories.push({ workflowId: run.workflowId, history: await run.fetchHistory() });
  return result;
}

const events = (run: Run, kind: string) =>
  stack.audit.events().filter((e) => e.run === run.workflowId && e.kind === kind);
const postureChanges = (run: Run) => events(run, AuditKind.postureChanged).map((e) => e.attrs);

/** The replay worker gets the audit sink too (not called during replay), so the SDK does not log it as missing. */
const replayOptions = () => ({ workflowBundle: stack.bundle, sinks: auditSinks(stack.audit) });

/** Text of every marker in a history (local activity results, patches). */
function markers(history: History): string[] {
  return (history.events ?? [])
    .filter((e) => e.markerRecordedEventAttributes)
    .map((e) => {
      const attrs = e.markerRecordedEventAttributes;
      const details = Object.values(attrs?.details ?? {})
        .flatMap((p) => p.payloads ?? [])
        .map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8'));
      return `${attrs?.markerName ?? ''} ${details.join(' ')}`;
    });
}

/** A copy of `history` whose start input has `options` replaced (what a run of other code would have recorded). */
function withOptions(history: History, options: AgentRunInput['options']): History {
  const copy = structuredClone(history);
  const payload = copy.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload?.data) throw new Error('no start input');
  const input = JSON.parse(Buffer.from(payload.data).toString('utf8')) as AgentRunInput;
  payload.data = Buffer.from(JSON.stringify({ ...input, options }), 'utf8');
  return copy;
}

describe('observer lease', () => {
  it('valid → runs unasked; missing → conservative at the next action; valid again → normal', async () => {
    const run = await start([
      { calls: [read] },
      { calls: [writeDoc(1)] },
      { calls: [writeConfig(1)] }, // the pause point
      { calls: [writeDoc(2)] },
      { calls: [read] },
      { final: 'done' },
    ]);
    const pause = await pendingAt(run, 3);
    expect(await run.query(statusQuery)).toMatchObject({
      posture: 'normal',
      postureCause: null,
      observerLease: { valid: true, expiresAt: VALID_UNTIL, holder: 'observer-test' },
    });
    mode = 'expired';
    await stack.vote(pause, 'bob', 'approve');

    const raised = await pendingAt(run, 4);
    expect(await run.query(statusQuery)).toMatchObject({
      posture: 'conservative',
      postureCause: 'observer-lease',
      observerLease: { valid: false, expiresAt: EXPIRED_AT },
    });
    mode = 'valid';
    await stack.vote(raised, 'bob', 'approve');

    const result = await finished(run);
    expect(result.status).toBe('completed');
    expect(result.decisions.map((d) => [d.step, d.tool, d.tier, d.code, d.outcome])).toEqual([
      [1, 'fs.read', 'autonomous', 'rule_matched', 'executed'],
      [2, 'fs.write', 'preapproved', 'rule_matched', 'executed'],
      [3, 'fs.write', 'approval', 'rule_matched', 'executed'],
      [4, 'fs.write', 'approval', 'posture_conservative', 'executed'],
      [5, 'fs.read', 'autonomous', 'rule_matched', 'executed'],
    ]);
    expect(events(run, AuditKind.approvalRequested).map((e) => e.step)).toEqual([3, 4]);
    expect(
      events(run, AuditKind.decision).map((e) => [
        e.step,
        e.attrs['tier'],
        e.attrs['baseTier'],
        e.attrs['posture'],
      ]),
    ).toEqual([
      [1, 'autonomous', 'autonomous', 'normal'],
      [2, 'preapproved', 'preapproved', 'normal'],
      [3, 'approval', 'approval', 'normal'],
      [4, 'approval', 'preapproved', 'conservative'],
      [5, 'autonomous', 'autonomous', 'normal'],
    ]);
    expect(postureChanges(run)).toEqual([
      {
        from: 'normal',
        to: 'conservative',
        by: 'observer-lease',
        reason: `observer heartbeat missing (lease expired at ${EXPIRED_AT})`,
      },
      {
        from: 'conservative',
        to: 'normal',
        by: 'observer-lease',
        reason: `observer heartbeat back (lease valid until ${VALID_UNTIL})`,
      },
    ]);
    expect(leaseCalls).toBe(5); // one check per action boundary
    const history = histories.at(-1)?.history ?? {};
    expect(markers(history).filter((m) => m.startsWith('core_patch'))).toHaveLength(1);
    expect(markers(history).filter((m) => m.includes('observerLease'))).toHaveLength(5);
    expect((await run.query(statusQuery)).postureCause).toBe('observer-lease');
  });

  it('a posture set by setPosture stays when the lease comes back', async () => {
    const run = await start([
      { calls: [writeConfig(2)] },
      { calls: [read] },
      { calls: [read] },
      { final: 'done' },
    ]);
    const pause = await pendingAt(run, 1);
    await run.executeUpdate(setPostureUpdate, {
      args: [{ posture: 'conservative', by: 'alice', reason: 'incident 42' }],
    });
    mode = 'expired';
    await stack.vote(pause, 'bob', 'approve');
    const second = await pendingAt(run, 2);
    mode = 'valid';
    await stack.vote(second, 'bob', 'approve');
    const third = await pendingAt(run, 3);
    expect(await run.query(statusQuery)).toMatchObject({
      posture: 'conservative',
      postureCause: 'control',
      observerLease: { valid: true },
    });
    await stack.vote(third, 'bob', 'deny', 'still in the incident');
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.step, d.tier, d.code, d.outcome])).toEqual([
      [1, 'approval', 'rule_matched', 'executed'],
      [2, 'approval', 'posture_conservative', 'executed'],
      [3, 'approval', 'posture_conservative', 'approval_denied'],
    ]);
    expect(postureChanges(run)).toEqual([
      { from: 'normal', to: 'conservative', by: 'alice', reason: 'incident 42' },
    ]);
  });

  it('an operator who confirms a lease-caused conservative posture keeps it', async () => {
    mode = 'expired';
    const run = await start([{ calls: [read] }, { calls: [read] }, { final: 'done' }]);
    const first = await pendingAt(run, 1);
    await expect(
      run.executeUpdate(setPostureUpdate, { args: [{ posture: 'conservative', by: 'alice' }] }),
    ).resolves.toBe('conservative');
    expect((await run.query(statusQuery)).postureCause).toBe('control');
    mode = 'valid';
    await stack.vote(first, 'bob', 'approve');
    await stack.vote(await pendingAt(run, 2), 'bob', 'deny');
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.step, d.code, d.outcome])).toEqual([
      [1, 'posture_conservative', 'executed'],
      [2, 'posture_conservative', 'approval_denied'],
    ]);
    expect(postureChanges(run).map((c) => [c['from'], c['to'], c['by']])).toEqual([
      ['normal', 'conservative', 'observer-lease'],
    ]);
  });

  it('a failing lease check counts as no lease (after two attempts)', async () => {
    mode = 'throws';
    const run = await start([{ calls: [read] }, { final: 'done' }]);
    await stack.vote(await pendingAt(run, 1), 'bob', 'deny');
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.code, d.outcome])).toEqual([
      ['posture_conservative', 'approval_denied'],
    ]);
    expect(postureChanges(run)).toEqual([
      {
        from: 'normal',
        to: 'conservative',
        by: 'observer-lease',
        reason: 'observer heartbeat missing (lease check failed: watcher broke)',
      },
    ]);
    expect(leaseCalls).toBe(2);
    expect((await run.query(statusQuery)).observerLease).toEqual({
      valid: false,
      expiresAt: null,
      holder: null,
      checkedAt: null,
    });
  });

  it('on a worker without a lease source, a run that requires the lease fails safe', async () => {
    const run = await start([{ calls: [read] }, { final: 'done' }], { requireObserverLease: true }, true);
    await stack.vote(await pendingAt(run, 1), 'bob', 'deny');
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.code, d.outcome])).toEqual([
      ['posture_conservative', 'approval_denied'],
    ]);
    expect(postureChanges(run).map((c) => c['reason'])).toEqual(['observer heartbeat missing (no lease)']);
  });

  it('continue-as-new carries the lease as the posture cause', async () => {
    mode = 'expired';
    const run = await start([{ calls: [read] }, { calls: [read] }, { final: 'done' }], {
      requireObserverLease: true,
      continueAsNewAfterTurns: 1,
    });
    const first = await pendingAt(run, 1);
    mode = 'valid';
    await stack.vote(first, 'bob', 'approve');
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.step, d.tier, d.outcome])).toEqual([
      [1, 'approval', 'executed'],
      [2, 'autonomous', 'executed'],
    ]);
    expect((await run.query(statusQuery)).generation).toBeGreaterThanOrEqual(1);
    expect(postureChanges(run).map((c) => [c['from'], c['to'], c['by']])).toEqual([
      ['normal', 'conservative', 'observer-lease'],
      ['conservative', 'normal', 'observer-lease'],
    ]);
  });

  it('a run without the option never calls observerLease and records no marker', async () => {
    mode = 'expired';
    const run = await start([{ calls: [read, writeDoc(3)] }, { final: 'done' }], {});
    const result = await finished(run);
    expect(result.decisions.map((d) => [d.tier, d.outcome])).toEqual([
      ['autonomous', 'executed'],
      ['preapproved', 'executed'],
    ]);
    expect(leaseCalls).toBe(0);
    const history = histories.at(-1)?.history ?? {};
    expect(markers(history)).toEqual([]);
    expect(await run.query(statusQuery)).toMatchObject({ postureCause: null, observerLease: null });
    optionOffHistory = histories.at(-1);
  });

  it('replays every recorded history; a pre-check history with the option replays; a flipped one does not', async () => {
    expect(histories.length).toBeGreaterThanOrEqual(7);
    const replayed: string[] = [];
    for await (const result of Worker.runReplayHistories(replayOptions(), histories)) {
      expect(result.error, result.workflowId).toBeUndefined();
      replayed.push(result.workflowId);
    }
    expect(replayed).toHaveLength(histories.length);

    // a run started by code without the check, with the option set: no patch marker, no local activity
    const off = optionOffHistory;
    if (!off) throw new Error('no option-off history');
    await Worker.runReplayHistory(
      replayOptions(),
      withOptions(off.history, { requireObserverLease: true }),
      off.workflowId,
    );
    await Worker.runReplayHistory(replayOptions(), off.history, off.workflowId);

    // the check is a real command: a history that has it does not replay with the option off
    const on = histories[0];
    if (!on) throw new Error('no history');
    expect(markers(on.history).some((m) => m.includes(OBSERVER_LEASE_PATCH))).toBe(true);
    await expect(
      Worker.runReplayHistory(replayOptions(), withOptions(on.history, {}), on.workflowId),
    ).rejects.toThrow(/nondetermin/i);
  });
});
