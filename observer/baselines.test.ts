/**
 * The baseline learner: what one run teaches, the plain mean then the capped EWMA, tainted runs never learned,
 * policy changes mid-run, seeding, bounds, the persisted snapshot, and the learned baseline driving the real
 * built-in `tool-rate-off-baseline` rule.
 */
import { describe, expect, test } from 'vitest';
import type { AuditEvent, AuditKind } from '../activities/audit/types.ts';
import { createBaselineLearner, ObserverStateErrorCode } from './baselines.ts';
import type { BaselineLearner } from './baselines.ts';
import { builtinRules } from './rules/builtin.ts';
import { createEngine } from './rules/engine.ts';

const T0 = Date.parse('2026-03-01T12:00:00.000Z');
const MIN = 60_000;

let seq = 0;
function event(
  kind: string,
  attrs: Record<string, unknown>,
  atMs: number,
  run = 'run-1',
  agent = 'agent-1',
): AuditEvent {
  return {
    seq: ++seq,
    ts: new Date(atMs).toISOString(),
    source: 'workflow',
    agent,
    run,
    step: null,
    kind: kind as AuditKind,
    attrs,
  };
}

/** The events of one run, shaped as the workflow, the guard and the model turn write them. */
function runEvents(
  run: string,
  startMs: number,
  options: {
    version?: string;
    agent?: string;
    /** `[tool, resource]` executions, one a minute. */
    executions?: readonly (readonly [string, string | null])[];
    denied?: number;
    refused?: number;
    tokens?: readonly [number, number];
    finish?: boolean;
  } = {},
): AuditEvent[] {
  const agent = options.agent ?? 'agent-1';
  const out: AuditEvent[] = [
    event('run.started', { policyVersion: options.version ?? 'v1' }, startMs, run, agent),
  ];
  const [input, output] = options.tokens ?? [100, 20];
  out.push(
    event(
      'model.call',
      { turn: 1, usage: { inputTokens: input, outputTokens: output } },
      startMs + 1,
      run,
      agent,
    ),
  );
  let t = startMs + 1000;
  for (const [tool, resource] of options.executions ?? []) {
    out.push(event('decision', { tool, tier: 'autonomous', resource }, t, run, agent));
    out.push(event('execution.started', { tool, resource }, t + 10, run, agent));
    t += MIN;
  }
  for (let i = 0; i < (options.denied ?? 0); i++)
    out.push(event('decision', { tool: 'fs.write', tier: 'prohibited' }, t, run, agent));
  for (let i = 0; i < (options.refused ?? 0); i++)
    out.push(event('execution.refused', { code: 'GUARD_PROHIBITED' }, t, run, agent));
  if (options.finish !== false) out.push(event('run.finished', { status: 'completed' }, t + MIN, run, agent));
  return out;
}

const feed = (learner: BaselineLearner, events: readonly AuditEvent[]): void => {
  for (const e of events) learner.observe(e);
};

describe('one run', () => {
  test('teaches rates, mix, directories, hosts, denial rate and tokens', () => {
    const learner = createBaselineLearner({ now: () => T0 });
    feed(
      learner,
      runEvents('run-1', T0, {
        executions: [
          ['fs.read', '/srv/docs/a.md'],
          ['fs.read', '/srv/docs/b.md'],
          ['fs.read', '/srv/docs/sub/c.md'],
          ['http.request', 'https://api.example.com/v1/x'],
        ],
        denied: 1,
        refused: 1,
        tokens: [300, 45],
      }),
    );
    expect(learner.lookup('agent-1', 'v1')).toEqual({
      samples: 1,
      // 3 reads over 2 minutes, measured over at least 5 minutes
      toolRatePerMin: { 'fs.read': 3 / 5, 'http.request': 1 / 5 },
      toolMix: { 'fs.read': 0.75, 'http.request': 0.25 },
      directories: { '/srv/docs': 1, '/srv/docs/sub': 1 },
      hosts: { 'api.example.com': 1 },
      // 2 denials (one prohibited decision, one guard refusal) among 5 decisions
      denialRate: 2 / 5,
      tokensPerRun: 345,
    });
    expect(learner.lookup('agent-1', 'v2')).toBeUndefined();
    expect(learner.lookup('agent-2', 'v1')).toBeUndefined();
  });

  test('a run still in flight, or whose start was not seen, teaches nothing', () => {
    const learner = createBaselineLearner({ now: () => T0 });
    feed(learner, runEvents('run-1', T0, { executions: [['crm.lookup', null]], finish: false }));
    feed(learner, runEvents('run-2', T0).slice(1));
    expect(learner.lookup('agent-1', 'v1')).toBeUndefined();
    expect(learner.stats()).toMatchObject({ runsInFlight: 1, learned: 0 });
  });

  test('tool names are data: "__proto__" and "constructor" are ordinary keys', () => {
    const learner = createBaselineLearner({ now: () => T0 });
    feed(
      learner,
      runEvents('run-1', T0, {
        executions: [
          ['__proto__', null],
          ['constructor', null],
        ],
      }),
    );
    const baseline = learner.lookup('agent-1', 'v1')!;
    expect(Object.keys(baseline.toolMix!)).toEqual(['__proto__', 'constructor']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const restored = createBaselineLearner({ now: () => T0 });
    restored.restore(JSON.parse(JSON.stringify(learner.snapshot())));
    expect(restored.lookup('agent-1', 'v1')).toEqual(baseline);
  });
});

describe('learning over runs', () => {
  const lookups = (n: number): BaselineLearner => {
    const learner = createBaselineLearner({ now: () => T0 });
    for (let i = 0; i < n; i++)
      feed(
        learner,
        runEvents(`run-${i}`, T0 + i * 60 * MIN, { executions: [['crm.lookup', null]], tokens: [90, 10] }),
      );
    return learner;
  };

  test('a plain mean for the first minSamples samples', () => {
    const learner = createBaselineLearner({ now: () => T0, minSamples: 4 });
    const tokens = [100, 200, 300, 400];
    tokens.forEach((n, i) => feed(learner, runEvents(`run-${i}`, T0 + i * MIN, { tokens: [n, 0] })));
    expect(learner.lookup('agent-1', 'v1')).toMatchObject({ samples: 4, tokensPerRun: 250 });
  });

  test('after minSamples, one run moves the baseline by at most maxAlpha of its distance (poisoning)', () => {
    const learner = lookups(30);
    expect(learner.lookup('agent-1', 'v1')).toMatchObject({ samples: 30, tokensPerRun: 100 });
    expect(learner.lookup('agent-1', 'v1')!.toolRatePerMin).toEqual({ 'crm.lookup': 0.2 });
    // one run with 100x the tokens and 60 lookups a minute
    feed(
      learner,
      runEvents('run-huge', T0 + 100 * 60 * MIN, {
        executions: Array.from({ length: 60 }, () => ['crm.lookup', null] as const),
        tokens: [9_990, 10],
      }),
    );
    const after = learner.lookup('agent-1', 'v1')!;
    expect(after.samples).toBe(31);
    expect(after.tokensPerRun).toBeCloseTo(100 + 0.1 * (10_000 - 100), 6);
    const rate = (after.toolRatePerMin as Record<string, number>)['crm.lookup']!;
    // 60 lookups a minute apart span 59 minutes: ~1.02/min, so the rate moves by a tenth of that step only
    expect(rate).toBeCloseTo(0.2 + 0.1 * (60 / 59 - 0.2), 6);
  });

  test('tainted runs are never learned, however many there are', () => {
    const learner = lookups(30);
    const before = learner.lookup('agent-1', 'v1');
    for (let i = 0; i < 50; i++) {
      const run = `bad-${i}`;
      const events = runEvents(run, T0 + (200 + i) * 60 * MIN, {
        executions: [
          ['fs.read', '/srv/hr/pay.csv'],
          ['http.request', 'https://evil.example/x'],
        ],
        tokens: [50_000, 0],
      });
      feed(learner, events.slice(0, 3));
      learner.markTainted(run);
      feed(learner, events.slice(3));
    }
    expect(learner.lookup('agent-1', 'v1')).toBe(before);
    expect(learner.lookup('agent-1', 'v1')!.hosts).toEqual({});
    expect(learner.stats()).toMatchObject({ learned: 30, skippedTainted: 50, runsInFlight: 0 });
    // marking an unknown run is harmless
    learner.markTainted('never-seen');
  });

  test('a policy change applied mid-run restarts the window under the new version', () => {
    const learner = createBaselineLearner({ now: () => T0 });
    const events = runEvents('run-1', T0, { executions: [['fs.read', '/srv/old/a']] });
    const finished = events.pop()!;
    feed(learner, events);
    learner.observe(event('policy.updated', { phase: 'received', from: 'v1', to: 'v2' }, T0 + 2 * MIN));
    learner.observe(event('policy.updated', { phase: 'applied', from: 'v1', to: 'v2' }, T0 + 3 * MIN));
    learner.observe(event('execution.started', { tool: 'fs.read', resource: '/srv/new/b' }, T0 + 4 * MIN));
    learner.observe(finished);
    expect(learner.lookup('agent-1', 'v1')).toBeUndefined();
    expect(learner.lookup('agent-1', 'v2')).toMatchObject({ samples: 1, directories: { '/srv/new': 1 } });
  });

  test('a taint survives a policy change', () => {
    const learner = createBaselineLearner({ now: () => T0 });
    const events = runEvents('run-1', T0, { executions: [['fs.read', '/srv/a/b']] });
    const finished = events.pop()!;
    feed(learner, events);
    learner.markTainted('run-1');
    learner.observe(event('policy.updated', { phase: 'applied', from: 'v1', to: 'v2' }, T0 + 3 * MIN));
    learner.observe(finished);
    expect(learner.lookup('agent-1', 'v2')).toBeUndefined();
  });
});

describe('seed', () => {
  test('copies a baseline to a new version, independently; never overwrites or invents one', () => {
    const learner = createBaselineLearner({ now: () => T0 });
    feed(learner, runEvents('run-1', T0, { executions: [['fs.read', '/srv/docs/a']] }));
    expect(learner.seed('agent-1', 'v1', 'v2')).toBe(true);
    expect(learner.lookup('agent-1', 'v2')).toEqual(learner.lookup('agent-1', 'v1'));
    feed(
      learner,
      runEvents('run-2', T0 + 60 * MIN, { version: 'v2', executions: [['fs.read', '/srv/new/a']] }),
    );
    expect(learner.lookup('agent-1', 'v2')!.directories).toEqual({ '/srv/docs': 1, '/srv/new': 1 });
    expect(learner.lookup('agent-1', 'v1')!.directories).toEqual({ '/srv/docs': 1 });
    // a rollback to v1 keeps v1's own baseline
    expect(learner.seed('agent-1', 'v2', 'v1')).toBe(false);
    expect(learner.lookup('agent-1', 'v1')!.samples).toBe(1);
    expect(learner.seed('agent-1', 'v9', 'v10')).toBe(false);
    expect(learner.lookup('agent-1', 'v10')).toBeUndefined();
  });
});

describe('bounds', () => {
  test('runs in flight: the oldest is dropped and never learned', () => {
    const learner = createBaselineLearner({ now: () => T0, limits: { maxRuns: 2 } });
    const runs = ['a', 'b', 'c'].map((run) => runEvents(run, T0, { executions: [['crm.lookup', null]] }));
    for (const events of runs) feed(learner, events.slice(0, -1));
    expect(learner.stats()).toMatchObject({ runsInFlight: 2, evictions: 1 });
    for (const events of runs) learner.observe(events.at(-1)!);
    expect(learner.lookup('agent-1', 'v1')!.samples).toBe(2);
  });

  test('keys per baseline: the least-seen directory is evicted; keys per run are capped', () => {
    const learner = createBaselineLearner({ now: () => T0, limits: { maxKeys: 3 } });
    feed(
      learner,
      runEvents('r1', T0, {
        executions: [
          ['fs.read', '/a/x'],
          ['fs.read', '/b/x'],
        ],
      }),
    );
    feed(
      learner,
      runEvents('r2', T0, {
        executions: [
          ['fs.read', '/a/x'],
          ['fs.read', '/c/x'],
        ],
      }),
    );
    feed(learner, runEvents('r3', T0, { executions: [['fs.read', '/d/x']] }));
    // /a seen twice stays; of the once-seen, /b is the oldest
    expect(learner.lookup('agent-1', 'v1')!.directories).toEqual({ '/a': 2, '/c': 1, '/d': 1 });
    const many = Array.from({ length: 10 }, (_, i) => ['fs.read', `/many/${i}/x`] as const);
    feed(learner, runEvents('r4', T0, { executions: many }));
    expect(Object.keys(learner.lookup('agent-1', 'v1')!.directories!)).toHaveLength(3);
    expect(learner.snapshot().baselines[0]!.directories.length).toBe(3);
  });
});

describe('snapshot / restore', () => {
  test('round-trips through JSON, including runs in flight and their taint', () => {
    const learner = createBaselineLearner({ now: () => T0 });
    feed(
      learner,
      runEvents('done', T0, {
        executions: [
          ['fs.read', '/srv/a/b'],
          ['http.request', 'https://h.example/'],
        ],
      }),
    );
    const open = runEvents('open', T0, { executions: [['crm.lookup', null]] });
    const tainted = runEvents('tainted', T0, { executions: [['crm.lookup', null]] });
    feed(learner, open.slice(0, -1));
    feed(learner, tainted.slice(0, -1));
    learner.markTainted('tainted');
    const snapshot = JSON.parse(JSON.stringify(learner.snapshot())) as unknown;
    expect(snapshot).toMatchObject({ version: 1 });

    const restored = createBaselineLearner({ now: () => T0 });
    restored.restore(snapshot);
    expect(restored.lookup('agent-1', 'v1')).toEqual(learner.lookup('agent-1', 'v1'));
    for (const l of [learner, restored]) {
      l.observe(open.at(-1)!);
      l.observe(tainted.at(-1)!);
    }
    expect(restored.lookup('agent-1', 'v1')).toEqual(learner.lookup('agent-1', 'v1'));
    expect(restored.lookup('agent-1', 'v1')!.samples).toBe(2);
  });

  test('a malformed or oversized snapshot is refused and the state is kept', () => {
    const learner = createBaselineLearner({ now: () => T0, limits: { maxRuns: 1 } });
    feed(learner, runEvents('r', T0));
    const good = learner.snapshot();
    expect(() => learner.restore({ ...good, version: 2 })).toThrow(
      expect.objectContaining({
        code: ObserverStateErrorCode.snapshotInvalid,
        message: 'invalid baseline snapshot: version: Invalid input: expected 1',
      }),
    );
    const bad = { ...good, baselines: [{ ...good.baselines[0]!, denialRate: 2 }] };
    expect(() => learner.restore(bad)).toThrow(
      'invalid baseline snapshot: baselines[0].denialRate: Too big: expected number to be <=1',
    );
    const run = {
      run: 'x',
      agent: 'a',
      policyVersion: 'v',
      tainted: false,
      decisions: 0,
      denials: 0,
      tokens: 0,
    };
    const twoRuns = {
      ...good,
      runs: [
        { ...run, tools: [], directories: [], hosts: [] },
        { ...run, run: 'y', tools: [], directories: [], hosts: [] },
      ],
    };
    expect(() => learner.restore(twoRuns)).toThrow('invalid baseline snapshot: 2 runs (limit 1)');
    expect(learner.lookup('agent-1', 'v1')!.samples).toBe(1);
  });

  test('options out of range are refused', () => {
    expect(() =>
      createBaselineLearner({ now: () => T0, maxAlpha: 0, minSamples: 0, limits: { maxKeys: 0 } }),
    ).toThrow(
      expect.objectContaining({
        code: ObserverStateErrorCode.optionsInvalid,
        message:
          'invalid baseline learner options: minSamples 0 (expected ≥ 1), maxAlpha 0 (expected 0 < α ≤ 1), limits.maxKeys 0 (expected ≥ 1)',
      }),
    );
  });
});

describe('with the rule engine', () => {
  test('the learned toolRatePerMin drives tool-rate-off-baseline only once 30 samples exist', () => {
    const rule = builtinRules().find((r) => r.id === 'tool-rate-off-baseline')!;
    const learner = createBaselineLearner({ now: () => T0 });
    const engine = createEngine([rule], { now: () => T0, baselines: learner.lookup });
    const findings: string[] = [];
    const ingest = (events: readonly AuditEvent[]): void => {
      for (const e of events) {
        findings.push(...engine.ingest(e).map((f) => f.group));
        learner.observe(e);
      }
    };
    // normal: 10 lookups a minute apart → 1/min
    const normal = Array.from({ length: 10 }, () => ['crm.lookup', null] as const);
    const burst = (run: string, atMs: number): AuditEvent[] => [
      event('run.started', { policyVersion: 'v1' }, atMs, run),
      ...Array.from({ length: 12 }, (_, i) =>
        event('execution.started', { tool: 'crm.lookup' }, atMs + i * 5000, run),
      ),
      event('run.finished', { status: 'completed' }, atMs + MIN, run),
    ];
    for (let i = 0; i < 29; i++) ingest(runEvents(`n-${i}`, T0 + i * 60 * MIN, { executions: normal }));
    // 29 samples: not judged yet, whatever the rate
    const learnedRate = (learner.lookup('agent-1', 'v1')!.toolRatePerMin as Record<string, number>)[
      'crm.lookup'
    ]!;
    expect(learnedRate).toBeCloseTo(10 / 9, 6);
    ingest(burst('early', T0 + 100 * 60 * MIN));
    expect(findings).toEqual([]);
    // the burst run itself was learned (nothing tainted it); bring the count to 30 with a normal run
    ingest(runEvents('n-29', T0 + 200 * 60 * MIN, { executions: normal }));
    expect(learner.lookup('agent-1', 'v1')!.samples).toBe(31);
    // now 20 lookups in a minute: the 18th makes 3.6/min over the 5-minute window, > 3 × the learned ~1.15/min
    const big = [
      event('run.started', { policyVersion: 'v1' }, T0 + 300 * 60 * MIN, 'big'),
      ...Array.from({ length: 20 }, (_, i) =>
        event('execution.started', { tool: 'crm.lookup' }, T0 + 300 * 60 * MIN + i * 3000, 'big'),
      ),
    ];
    ingest(big.slice(0, 18));
    expect(findings).toEqual([]);
    ingest(big.slice(18, 19));
    expect(findings).toEqual(['agent=agent-1,attrs.tool=crm.lookup']);
  });
});
