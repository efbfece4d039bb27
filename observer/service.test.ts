import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { openSqliteAuditStore } from '../audit/index.ts';
import type { AuditStore } from '../audit/index.ts';
import type { AuditClient, AuditEvent, AuditEventInput } from '../activities/audit/types.ts';
import { builtinRules } from './rules/builtin.ts';
import { parseRules } from './rules/schema.ts';
import { createObserverService, ServiceRule } from './service.ts';
import type { ObserverService, ObserverServiceOptions } from './service.ts';
import { openObserverStore } from './store.ts';
import { sampleEvents } from './scrape.ts';
import type { ObserverStore } from './store.ts';
import type { RunControl } from './interventions.ts';

interface Call {
  readonly op: string;
  readonly run: string;
  readonly detail: unknown;
}

/** Our own RunControl interface, recording (the Temporal-backed one runs in test/observer-e2e.test.ts). */
function recordingControl(openRuns: Record<string, string[]> = {}): RunControl & { calls: Call[] } {
  const calls: Call[] = [];
  const posture = new Map<string, string>();
  return {
    calls,
    setPosture: async (run, p, _by, reason) => {
      calls.push({ op: 'setPosture', run, detail: { posture: p, reason } });
      posture.set(run, p);
      return 'applied';
    },
    freeze: async (run, tools) => (calls.push({ op: 'freeze', run, detail: tools }), 'applied'),
    unfreeze: async (run, tools) => (calls.push({ op: 'unfreeze', run, detail: tools }), 'applied'),
    state: async (run) => ({ posture: posture.get(run) ?? 'normal', frozenTools: [] }),
    revoke: async (run) => (calls.push({ op: 'revoke', run, detail: null }), 'cancelled'),
    openRuns: async (agent) => openRuns[agent] ?? [],
  };
}

let dir: string;
let audit: AuditStore;
let store: ObserverStore;
let clock: number;
const services: ObserverService[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'observer-'));
  clock = Date.parse('2026-12-01T10:00:00.000Z');
  audit = await openSqliteAuditStore({ file: join(dir, 'chain.db'), clock: () => new Date(clock) });
  store = openObserverStore(join(dir, 'observer.db'));
});
afterEach(async () => {
  for (const s of services.splice(0)) await s.stop();
  store.close();
  await audit.close();
  rmSync(dir, { recursive: true, force: true });
});

const writer = (): AuditClient => ({
  append: async (event: AuditEventInput): Promise<AuditEvent> => {
    const { id: _id, ...input } = event;
    return audit.append('default', input);
  },
});

function observer(control: RunControl, extra: Partial<ObserverServiceOptions> = {}): ObserverService {
  const service = createObserverService({
    rules: builtinRules(),
    store,
    source: audit,
    audit: writer(),
    control,
    now: () => clock,
    sweepEveryMs: 60_000,
    ...extra,
  });
  services.push(service);
  return service;
}

const read = (run: string, i: number, dirName = '/workspace/hr'): AuditEventInput => ({
  source: 'guard',
  agent: 'ops-agent',
  run,
  step: i + 1,
  kind: 'execution.started',
  attrs: { tool: 'fs.read', resource: `${dirName}/${i}.csv` },
});

async function burst(run: string, n: number, dirName?: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    clock += 1_000;
    await audit.append('default', read(run, i, dirName));
  }
}

describe('observer service', () => {
  test('a 15-read burst in a new directory freezes fs.read on the run, once; the TTL lifts it', async () => {
    const control = recordingControl();
    const service = observer(control);
    await service.start();
    await burst('run-1', 14);
    await service.idle();
    expect(control.calls).toEqual([]);
    await burst('run-1', 1, '/workspace/hr');
    await service.idle();
    expect(control.calls).toEqual([{ op: 'freeze', run: 'run-1', detail: ['fs.read'] }]);

    const [finding] = store.findings();
    expect(finding).toMatchObject({ ruleId: 'fs-read-burst-new-directory', status: 'open', run: 'run-1' });
    const [intervention] = store.interventions();
    expect(intervention).toMatchObject({
      action: 'freeze',
      status: 'active',
      run: 'run-1',
      tools: ['fs.read'],
    });
    expect(Date.parse(intervention!.expiresAt!) - Date.parse(intervention!.appliedAt)).toBe(30 * 60_000);

    const kinds = (await audit.search({ kind: 'observer.intervention' })).map((r) => r.attrs);
    expect(kinds).toMatchObject([{ action: 'freeze', outcome: 'applied', findingId: finding!.id }]);

    clock += 31 * 60_000;
    await service.sweep();
    expect(control.calls.at(-1)).toEqual({ op: 'unfreeze', run: 'run-1', detail: ['fs.read'] });
    expect(store.intervention(intervention!.id)?.status).toBe('expired');
    expect((await audit.search({ kind: 'observer.intervention_lifted' }))[0]?.attrs).toMatchObject({
      status: 'expired',
      outcome: 'applied',
    });
  });

  test('a lift an operator recorded in the store (observer lift) is carried out at the next sweep', async () => {
    const control = recordingControl();
    const service = observer(control);
    await service.start();
    await burst('run-1', 15);
    await service.idle();
    const [active] = store.interventions({ status: 'active' });
    const n = store.requestLift(active!.id, 'alice', 'false positive', new Date(clock).toISOString());
    expect(store.liftOutcome(n)).toBeNull();
    await service.sweep();
    expect(store.liftOutcome(n)).toBe('lifted');
    expect(control.calls.at(-1)).toEqual({ op: 'unfreeze', run: 'run-1', detail: ['fs.read'] });
    expect(store.intervention(active!.id)?.status).toBe('lifted');
    const again = store.requestLift(active!.id, 'alice', 'twice', new Date(clock).toISOString());
    await service.sweep();
    expect(store.liftOutcome(again)).toBe('not-active');
  });

  test('scraped metric samples reach the rules without touching the stream cursor', async () => {
    const control = recordingControl();
    const service = observer(control);
    await service.start();
    await burst('run-1', 2);
    await service.idle();
    let seq = 0;
    await service.ingestMetrics(
      sampleEvents(
        'workers',
        [{ name: 'agent_runtime_approvals_pending', labels: { agent: 'ops-agent' }, value: 40 }],
        new Date(clock),
        () => --seq,
      ),
    );
    expect(store.findings()[0]).toMatchObject({
      ruleId: 'approval-backlog',
      status: 'shadow',
      agent: 'ops-agent',
    });
    expect(store.cursor('default')).toBe(2);
    expect(service.stats.metricSamples).toBe(1);
  });

  test('restarting re-reads the warm-up window without recording or applying anything twice', async () => {
    const control = recordingControl();
    const first = observer(control);
    await first.start();
    await burst('run-1', 15);
    await first.idle();
    await first.stop();
    const second = observer(control);
    await second.start();
    await new Promise((r) => setTimeout(r, 50));
    await second.idle();
    expect(control.calls).toHaveLength(1);
    expect(store.findings()).toHaveLength(1);
    expect(store.interventions()).toHaveLength(1);
  });

  test('an agent-wide finding covers every open run of the agent (Temporal visibility)', async () => {
    const control = recordingControl({ 'ops-agent': ['run-1', 'run-2'] });
    const service = observer(control);
    await service.start();
    await burst('run-1', 15);
    await service.idle();
    expect(control.calls.map((c) => `${c.op}:${c.run}`).sort()).toEqual(['freeze:run-1', 'freeze:run-2']);
  });

  test('shadow rules and enforce:false only report', async () => {
    const control = recordingControl();
    const service = observer(control, { enforce: false });
    await service.start();
    await burst('run-1', 15);
    await service.idle();
    expect(control.calls).toEqual([]);
    expect(store.findings()[0]?.status).toBe('shadow');
  });

  test('an explicit lift undoes a freeze only for tools no other active intervention covers', async () => {
    const rules = parseRules(`
- id: freeze-a
  description: d
  severity: high
  mode: enforce
  match: { field: attrs.tool, eq: x.a }
  intervene: { action: freeze, tools: [x.a, x.b] }
  fixtures: { positive: [{ kind: execution.started, attrs: { tool: x.a } }], negative: [{ kind: execution.started, attrs: { tool: x.c } }] }
- id: freeze-b
  description: d
  severity: high
  mode: enforce
  match: { field: attrs.tool, eq: x.b }
  intervene: { action: freeze, tools: [x.b] }
  fixtures: { positive: [{ kind: execution.started, attrs: { tool: x.b } }], negative: [{ kind: execution.started, attrs: { tool: x.c } }] }
`);
    const control = recordingControl();
    const service = observer(control, { rules });
    await service.start();
    const ev = (tool: string): AuditEventInput => ({
      source: 'guard',
      agent: 'a',
      run: 'r',
      step: 1,
      kind: 'execution.started',
      attrs: { tool },
    });
    await audit.append('default', ev('x.a'));
    await audit.append('default', ev('x.b'));
    await service.idle();
    const a = store
      .interventions()
      .find((i) => i.findingId === store.findings().find((f) => f.ruleId === 'freeze-a')?.id);
    expect(a?.expiresAt).toBeNull();
    expect(await service.lift(a!.id, 'alice', 'false positive')).toBe(true);
    expect(await service.lift(a!.id, 'alice', 'again')).toBe(false);
    expect(control.calls.at(-1)).toEqual({ op: 'unfreeze', run: 'r', detail: ['x.a'] });
  });

  test('an applied policy change without an approved governance change is a critical finding → conservative', async () => {
    const control = recordingControl();
    const service = observer(control, {
      learning: {
        onGovernanceChange: () => ({ accepted: true }),
        onPolicyApplied: () => ({ status: 'unapproved' }),
        classify: () => 'no-window',
      },
    });
    await service.start();
    await audit.append('default', {
      source: 'workflow',
      agent: 'ops-agent',
      run: 'run-9',
      step: null,
      kind: 'policy.updated',
      attrs: { phase: 'applied', from: 'v1', to: 'v2', by: 'mallory' },
    });
    await service.idle();
    expect(store.findings()[0]).toMatchObject({ ruleId: ServiceRule.unapprovedChange, severity: 'critical' });
    expect(control.calls).toMatchObject([
      { op: 'setPosture', run: 'run-9', detail: { posture: 'conservative' } },
    ]);
  });

  test('renews the heartbeat lease on start and reports failures in status', async () => {
    const leases: unknown[] = [];
    let fail = false;
    const service = observer(recordingControl(), {
      lease: {
        putLease: async (...args) => {
          if (fail) throw new Error('connection refused');
          leases.push(args);
        },
      },
      heartbeat: { holder: 'observer-1', ttlMs: 5_000, everyMs: 20 },
    });
    await service.start();
    expect(leases[0]).toEqual(['observer', 'observer-1', 5_000]);
    fail = true;
    await new Promise((r) => setTimeout(r, 60));
    expect(service.status().stats.heartbeatError).toBe('connection refused');
  });
});
