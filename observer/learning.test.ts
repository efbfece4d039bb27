/**
 * Learning windows: accepting signed `governance.change` events, opening windows when a run applies the change,
 * expiry by the injected clock, declared vs undeclared classification of tools, directories and hosts, and
 * the persisted snapshot.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, test } from 'vitest';
import type { AuditEvent, AuditKind } from '../activities/audit/types.ts';
import { keyIdOf } from '../policy/index.ts';
import { ObserverStateErrorCode } from './baselines.ts';
import { GovernanceChangeRefusal, governanceChangeEvent, signGovernanceChange } from './governance-change.ts';
import type { GovernanceChange, SignedGovernanceChange } from './governance-change.ts';
import { Classification, createLearningWindows, isDeclared } from './learning.ts';
import { eventSubjects } from './subjects.ts';

const T0 = Date.parse('2026-03-01T12:00:00.000Z');
const HOUR = 3_600_000;
const secretKey = new Uint8Array(32).fill(7);
const publicKey = ed25519.getPublicKey(secretKey);
const keyId = keyIdOf(publicKey);
const trustedKeys = new Map([[keyId, publicKey]]);

function change(over: Partial<GovernanceChange> = {}): GovernanceChange {
  return {
    agent: 'agent-1',
    fromVersion: 'v1',
    toVersion: 'v2',
    declares: { tools: ['crm.write'], directories: ['/srv/reports'], hosts: ['api.example.com'] },
    reason: 'CHG-42',
    approvedBy: ['alice'],
    approvedAt: new Date(T0).toISOString(),
    learningWindow: '72h',
    ...over,
  };
}

let seq = 0;
function event(
  kind: string,
  attrs: Record<string, unknown>,
  atMs = T0,
  over: Partial<Pick<AuditEvent, 'agent' | 'run'>> = {},
): AuditEvent {
  return {
    seq: ++seq,
    ts: new Date(atMs).toISOString(),
    source: 'workflow',
    agent: over.agent === undefined ? 'agent-1' : over.agent,
    run: over.run === undefined ? 'run-1' : over.run,
    step: null,
    kind: kind as AuditKind,
    attrs,
  };
}

function changeEvent(signed: SignedGovernanceChange, atMs = T0 + 60_000): AuditEvent {
  const input = governanceChangeEvent(signed);
  return { ...input, seq: ++seq, ts: new Date(atMs).toISOString() };
}

const exec = (tool: string, attrs: Record<string, unknown> = {}): AuditEvent =>
  event('execution.started', { tool, ...attrs });

function opened(over: Partial<GovernanceChange> = {}) {
  let clock = T0;
  const windows = createLearningWindows({ now: () => clock, trustedKeys });
  const signed = signGovernanceChange(change(over), secretKey, keyId);
  expect(windows.onGovernanceChange(changeEvent(signed))).toEqual({ accepted: true, change: signed.change });
  const applied = windows.onPolicyApplied('agent-1', 'run-1', 'v1', 'v2', T0 + HOUR);
  expect(applied.status).toBe('approved');
  return { windows, signed, setClock: (t: number) => (clock = t) };
}

describe('onGovernanceChange', () => {
  test('refuses forged, unknown-key, tampered and expired manifests with their codes', () => {
    const windows = createLearningWindows({ now: () => T0, trustedKeys });
    const signed = signGovernanceChange(change(), secretKey, keyId);
    const other = new Uint8Array(32).fill(9);
    const byOther = signGovernanceChange(change(), other, keyIdOf(ed25519.getPublicKey(other)));
    const cases: [SignedGovernanceChange, string][] = [
      [{ ...signed, signature: byOther.signature }, GovernanceChangeRefusal.badSignature],
      [byOther, GovernanceChangeRefusal.unknownKey],
      [
        { ...signed, change: { ...signed.change, declares: { hosts: ['evil.example'] } } },
        GovernanceChangeRefusal.badSignature,
      ],
    ];
    for (const [bad, code] of cases)
      expect(windows.onGovernanceChange(changeEvent(bad))).toMatchObject({ accepted: false, code });
    // a genuine manifest replayed into the log after its window closed opens nothing
    expect(windows.onGovernanceChange(changeEvent(signed, T0 + 72 * HOUR))).toMatchObject({
      accepted: false,
      code: GovernanceChangeRefusal.expired,
    });
    // none of them was remembered
    expect(windows.onPolicyApplied('agent-1', 'run-1', 'v1', 'v2', T0 + HOUR)).toEqual({
      status: 'unapproved',
      reason: 'no-manifest',
    });
  });

  test("refuses an event of another kind, or one whose agent is not the manifest's", () => {
    const windows = createLearningWindows({ now: () => T0, trustedKeys });
    const signed = signGovernanceChange(change(), secretKey, keyId);
    expect(windows.onGovernanceChange({ ...changeEvent(signed), agent: 'agent-2' })).toEqual({
      accepted: false,
      code: GovernanceChangeRefusal.wrongEvent,
      message: 'the event is about agent "agent-2", the change about "agent-1"',
    });
    expect(windows.onGovernanceChange({ ...changeEvent(signed), kind: 'policy.updated' })).toMatchObject({
      accepted: false,
      code: GovernanceChangeRefusal.wrongEvent,
    });
  });
});

describe('onPolicyApplied', () => {
  test('an applied change no accepted manifest covers is unapproved', () => {
    const { windows } = opened();
    expect(windows.onPolicyApplied('agent-1', 'run-2', 'v1', 'v3', T0 + HOUR)).toEqual({
      status: 'unapproved',
      reason: 'no-manifest',
    });
    // the manifest is for v1 → v2 only, and for agent-1 only
    expect(windows.onPolicyApplied('agent-1', 'run-2', 'v0', 'v2', T0 + HOUR).status).toBe('unapproved');
    expect(windows.onPolicyApplied('agent-2', 'run-2', 'v1', 'v2', T0 + HOUR).status).toBe('unapproved');
  });

  test('opens one window per (agent, version) until approvedAt + learningWindow, re-used by later runs', () => {
    const { windows } = opened();
    const again = windows.onPolicyApplied('agent-1', 'run-2', 'v1', 'v2', T0 + 2 * HOUR);
    expect(again).toEqual({
      status: 'approved',
      window: {
        agent: 'agent-1',
        fromVersion: 'v1',
        toVersion: 'v2',
        declares: change().declares,
        approvedBy: ['alice'],
        reason: 'CHG-42',
        keyId,
        openedAtMs: T0 + HOUR,
        endsAtMs: T0 + 72 * HOUR,
        applications: 2,
      },
    });
    expect(windows.active(T0 + 71 * HOUR).map((w) => w.toVersion)).toEqual(['v2']);
  });

  test('the window expires by the injected clock; a change applied after that is unapproved', () => {
    const { windows } = opened();
    const edit = [exec('crm.write')];
    expect(windows.classify('agent-1', 'v2', edit, T0 + 72 * HOUR - 1)).toBe(Classification.declared);
    expect(windows.classify('agent-1', 'v2', edit, T0 + 72 * HOUR)).toBe(Classification.noWindow);
    expect(windows.active(T0 + 72 * HOUR)).toEqual([]);
    expect(windows.onPolicyApplied('agent-1', 'run-3', 'v1', 'v2', T0 + 72 * HOUR)).toEqual({
      status: 'unapproved',
      reason: 'expired',
    });
  });

  test('a manifest received before its approvedAt (within skew) still ends at receipt + window', () => {
    const windows = createLearningWindows({ now: () => T0, trustedKeys });
    const signed = signGovernanceChange(
      change({ approvedAt: new Date(T0 + 60_000).toISOString() }),
      secretKey,
      keyId,
    );
    expect(windows.onGovernanceChange(changeEvent(signed, T0)).accepted).toBe(true);
    const applied = windows.onPolicyApplied('agent-1', 'run-1', 'v1', 'v2', T0 + 1);
    expect(applied.status === 'approved' && applied.window.endsAtMs).toBe(T0 + 72 * HOUR);
  });
});

describe('classify', () => {
  test('declared tools, directories (and below) and hosts are declared; anything else is not', () => {
    const { windows } = opened();
    const is = (...events: AuditEvent[]) => windows.classify('agent-1', 'v2', events, T0 + 2 * HOUR);
    // tools
    expect(is(exec('crm.write'), event('decision', { tool: 'crm.write', tier: 'preapproved' }))).toBe(
      'declared',
    );
    expect(is(exec('crm.write'), exec('crm.delete'))).toBe('undeclared');
    // directories: the directory itself, below it, but not a sibling with the same prefix or a climb out
    expect(is(exec('fs.read', { resource: '/srv/reports/q1.csv' }))).toBe('declared');
    expect(is(exec('fs.read', { resource: '/srv/reports/2026/q1.csv' }))).toBe('declared');
    expect(is(exec('fs.list', { resource: '/srv/reports' }))).toBe('declared');
    expect(is(event('decision', { tool: 'fs.read', args: { path: '/srv/reports//q2.csv' } }))).toBe(
      'declared',
    );
    expect(is(exec('fs.read', { resource: '/srv/reports-old/q1.csv' }))).toBe('undeclared');
    expect(is(event('decision', { tool: 'fs.read', args: { path: '/srv/reports/../hr/pay.csv' } }))).toBe(
      'undeclared',
    );
    expect(is(exec('fs.read', { resource: '/srv/hr/pay.csv' }))).toBe('undeclared');
    expect(is(exec('fs.read', { resource: 'reports/q1.csv' }))).toBe('undeclared');
    // hosts: exact host and port
    expect(
      is(event('decision', { tool: 'http.request', args: { url: 'https://api.example.com/v1/x' } })),
    ).toBe('declared');
    expect(is(exec('http.request', { resource: 'https://API.example.com/v1' }))).toBe('declared');
    expect(is(exec('http.request', { resource: 'https://api.example.com:8443/v1' }))).toBe('undeclared');
    expect(is(exec('http.request', { resource: 'https://evil.example/?h=api.example.com' }))).toBe(
      'undeclared',
    );
    expect(is(exec('http.request', { resource: 'not a url' }))).toBe('undeclared');
    // one undeclared event makes the whole finding undeclared
    expect(is(exec('crm.write'), exec('fs.read', { resource: '/srv/hr/pay.csv' }))).toBe('undeclared');
    // events that touch nothing are not explained by a manifest
    expect(
      is(event('run.started', { policyVersion: 'v2' }), event('policy.updated', { phase: 'applied' })),
    ).toBe('undeclared');
    expect(is(event('run.started', { policyVersion: 'v2' }), exec('crm.write'))).toBe('declared');
  });

  test('a declared tool excuses no new directory or host', () => {
    const { windows } = opened({ declares: { tools: ['http.request', 'fs.write'] } });
    const is = (...events: AuditEvent[]) => windows.classify('agent-1', 'v2', events, T0 + 2 * HOUR);
    expect(is(exec('http.request', { resource: 'https://api.example.com/' }))).toBe('undeclared');
    expect(is(exec('fs.write', { resource: '/srv/reports/a' }))).toBe('undeclared');
    expect(is(exec('http.request'))).toBe('declared');
  });

  test('no window for another version, another agent, or before any change was applied', () => {
    const { windows } = opened();
    const edit = [exec('crm.write')];
    expect(windows.classify('agent-1', 'v1', edit, T0 + 2 * HOUR)).toBe('no-window');
    expect(windows.classify('agent-2', 'v2', edit, T0 + 2 * HOUR)).toBe('no-window');
    const fresh = createLearningWindows({ now: () => T0, trustedKeys });
    fresh.onGovernanceChange(changeEvent(signGovernanceChange(change(), secretKey, keyId)));
    expect(fresh.classify('agent-1', 'v2', edit, T0 + 2 * HOUR)).toBe('no-window');
  });

  test('isDeclared and eventSubjects agree on what an event touches', () => {
    expect(eventSubjects(exec('fs.read', { resource: '/srv/reports/../hr/x' }))).toEqual({
      tool: 'fs.read',
      path: '/srv/hr/x',
      directory: '/srv/hr',
    });
    expect(eventSubjects(exec('http.request', { resource: 'https://Api.Example.com:443/x' }))).toEqual({
      tool: 'http.request',
      host: 'api.example.com',
    });
    expect(eventSubjects(exec('fs.read', { resource: '../../etc/passwd' }))).toEqual({
      tool: 'fs.read',
      opaque: true,
    });
    expect(eventSubjects(event('run.finished', {}))).toEqual({});
    expect(isDeclared({ tools: ['fs.read'] }, { tool: 'fs.read', opaque: true })).toBe(false);
  });
});

describe('snapshot / restore', () => {
  test('round-trips through JSON; manifests are verified again and dropped when their key is no longer trusted', () => {
    const { windows } = opened();
    const snapshot = JSON.parse(JSON.stringify(windows.snapshot())) as unknown;
    const restored = createLearningWindows({ now: () => T0, trustedKeys });
    expect(restored.restore(snapshot)).toEqual({ manifests: 1, dropped: 0 });
    expect(restored.active(T0 + 2 * HOUR)).toEqual(windows.active(T0 + 2 * HOUR));
    expect(restored.classify('agent-1', 'v2', [exec('crm.write')], T0 + 2 * HOUR)).toBe('declared');

    const rotated = createLearningWindows({ now: () => T0, trustedKeys: new Map() });
    expect(rotated.restore(snapshot)).toEqual({ manifests: 0, dropped: 1 });
    expect(rotated.active(T0 + 2 * HOUR)).toEqual([]);

    // a manifest tampered with in the store does not come back
    const tampered = JSON.parse(JSON.stringify(snapshot)) as {
      manifests: { signed: { change: GovernanceChange } }[];
    };
    tampered.manifests[0]!.signed.change.declares = { directories: ['/srv'] };
    expect(restored.restore(tampered)).toEqual({ manifests: 0, dropped: 1 });
  });

  test('a malformed snapshot is refused with the path of the problem', () => {
    const windows = createLearningWindows({ now: () => T0, trustedKeys });
    expect(() => windows.restore({ version: 2, manifests: [], windows: [] })).toThrow(
      expect.objectContaining({
        code: ObserverStateErrorCode.snapshotInvalid,
        message: 'invalid learning window snapshot: version: Invalid input: expected 1',
      }),
    );
  });

  test('accepted manifests are bounded: the oldest is forgotten', () => {
    const windows = createLearningWindows({ now: () => T0, trustedKeys, limits: { maxManifests: 2 } });
    for (const to of ['v2', 'v3', 'v4'])
      windows.onGovernanceChange(
        changeEvent(signGovernanceChange(change({ toVersion: to }), secretKey, keyId)),
      );
    expect(windows.snapshot().manifests).toHaveLength(2);
    expect(windows.onPolicyApplied('agent-1', 'r', 'v1', 'v2', T0 + HOUR).status).toBe('unapproved');
    expect(windows.onPolicyApplied('agent-1', 'r', 'v1', 'v4', T0 + HOUR).status).toBe('approved');
  });
});
