import { describe, expect, it } from 'vitest';
import type { AuditEvent, AuditKind } from '../../activities/audit/types.ts';
import { ObserverErrorCode, ObserverRuleError } from '../errors.ts';
import { builtinRules } from './builtin.ts';
import { compileCondition } from './condition.ts';
import type { ConditionProblem } from './condition.ts';
import { createEngine, findingId } from './engine.ts';
import type { EngineOptions, Finding } from './engine.ts';
import { FIXTURE_EPOCH, expandFixture, runFixtures } from './fixtures.ts';
import { parseRules } from './schema.ts';
import type { Rule } from './schema.ts';

const FIXTURES = '  fixtures: { positive: [{ kind: decision }], negative: [{ kind: decision }] }';

/** One rule from its `match`/`correlate`/`intervene` lines (indented two spaces). */
function ruleFrom(body: string, id = 'r1'): Rule {
  return parseRules(
    `- id: ${id}\n  description: d\n  severity: high\n  mode: shadow\n${body}\n${FIXTURES}\n`,
  )[0]!;
}

function problemsOf(text: string): string[] {
  try {
    parseRules(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ObserverRuleError);
    expect((error as ObserverRuleError).code).toBe(ObserverErrorCode.ruleInvalid);
    return (error as ObserverRuleError).problems.map((p) => `${p.ruleId} ${p.path}: ${p.message}`);
  }
  throw new Error('expected the rules to be refused');
}

function ruleText(body: string): string {
  return `- id: r1\n  description: d\n  severity: high\n  mode: shadow\n${body}\n${FIXTURES}\n`;
}

let nextSeq = 0;
/** An event `sec` seconds after the fixture epoch. */
function ev(
  sec: number,
  kind: string,
  attrs: Record<string, unknown> = {},
  over: Partial<Pick<AuditEvent, 'seq' | 'agent' | 'run' | 'step' | 'ts'>> = {},
): AuditEvent {
  nextSeq = over.seq ?? nextSeq + 1;
  return {
    seq: nextSeq,
    ts: over.ts ?? new Date(FIXTURE_EPOCH + sec * 1000).toISOString(),
    source: 'workflow',
    agent: over.agent === undefined ? 'agent-1' : over.agent,
    run: over.run === undefined ? 'run-1' : over.run,
    step: over.step ?? null,
    kind: kind as AuditKind,
    attrs,
  };
}

function feed(
  rules: readonly Rule[],
  events: readonly AuditEvent[],
  options: Partial<EngineOptions> = {},
): Finding[] {
  const engine = createEngine(rules, { now: () => FIXTURE_EPOCH, ...options });
  return events.flatMap((e) => engine.ingest(e));
}

const seqsOf = (findings: readonly Finding[]): number[][] => findings.map((f) => [...f.events]);

describe('built-in rules', () => {
  const rules = builtinRules();
  const expected: Record<string, { group: string; events: number[] }> = {
    'fs-read-burst-new-directory': {
      group: 'agent=agent-1,value=/srv/hr/payroll',
      events: Array.from({ length: 15 }, (_, i) => i + 1),
    },
    'intent-action-mismatch': { group: 'run=run-1', events: [1, 2] },
    'denial-burst': { group: 'run=run-1', events: [1, 2, 3, 4, 5] },
    'refund-walking-under-limit': { group: 'agent=agent-1', events: [1, 2, 3] },
    'refund-split-over-limit': { group: 'agent=agent-1', events: [1, 2] },
    'untrusted-output-then-egress': { group: 'run=run-1', events: [1, 2] },
    'injected-instructions-in-tool-output': { group: 'seq=1', events: [1] },
    'approval-backlog': { group: 'seq=1', events: [1] },
    'tool-rate-off-baseline': {
      group: 'agent=agent-1,attrs.tool=crm.lookup',
      events: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    },
    'governance-change-then-privileged-action': { group: 'run=run-1', events: [1, 2] },
    'audit-seq-gap': { group: '*', events: [2, 5] },
  };

  it('covers every expected rule', () => {
    expect(rules.map((r) => r.id).sort()).toEqual(Object.keys(expected).sort());
  });

  for (const rule of rules) {
    it(`${rule.id}: positive fixture gives exactly the expected finding, negative none`, () => {
      const { positive, negative } = runFixtures(rule);
      expect(positive).toHaveLength(1);
      const [finding] = positive;
      expect(finding).toMatchObject({ ruleId: rule.id, severity: rule.severity, mode: rule.mode });
      expect({ group: finding!.group, events: finding!.events }).toEqual(expected[rule.id]);
      expect(finding!.intervention).toEqual(rule.intervene);
      expect(negative).toEqual([]);
    });
  }

  it('the seed example freezes fs.read for 30 minutes', () => {
    const rule = rules.find((r) => r.id === 'fs-read-burst-new-directory')!;
    expect(runFixtures(rule).positive[0]!.intervention).toEqual({
      action: 'freeze',
      tools: ['fs.read'],
      ttlMs: 30 * 60_000,
    });
  });

  it('all rules together on all fixtures: each positive fixture triggers its own rule', () => {
    for (const rule of rules) {
      const events = expandFixture(rule.spec.fixtures.positive);
      const baselines = { 'agent-1': { v1: { samples: 120, toolRatePerMin: { 'crm.lookup': 0.5 } } } };
      const found = feed(rules, events, { baselines });
      expect(found.map((f) => f.ruleId)).toContain(rule.id);
    }
  });
});

describe('schema errors', () => {
  it('names the rule id and the path', () => {
    expect(
      problemsOf(
        ruleText('  match: { field: kind, eq: decision }') +
          '- id: r2\n  description: d\n  severity: urgent\n  mode: shadow\n  match: { field: labels.trust, eq: x }\n' +
          FIXTURES +
          '\n- { description: no id }\n',
      ),
    ).toMatchInlineSnapshot(`
      [
        "r2 severity: Invalid option: expected one of "low"|"medium"|"high"|"critical"",
        "r2 match.field: unknown field "labels.trust" (expected one of seq, ts, source, agent, run, step, kind or attrs.<path>)",
        "rules[2] id: Invalid input: expected string, received undefined",
        "rules[2] severity: Invalid option: expected one of "low"|"medium"|"high"|"critical"",
        "rules[2] mode: Invalid option: expected one of "shadow"|"enforce"",
        "rules[2] match: required: a condition",
        "rules[2] fixtures: Invalid input: expected object, received undefined",
      ]
    `);
  });

  it('refuses an unknown operator', () => {
    expect(problemsOf(ruleText('  match: { field: kind, regex: decision }'))).toMatchInlineSnapshot(`
      [
        "r1 match.regex: unknown operator "regex" (expected one of eq, ne, in, notIn, lt, lte, gt, gte, prefix, matches, exists)",
      ]
    `);
    expect(problemsOf(ruleText('  match: { cel: "kind == 1" }'))).toMatchInlineSnapshot(`
      [
        "r1 match: unknown operator "cel" (expected field + one of eq, ne, in, notIn, lt, lte, gt, gte, prefix, matches, exists, or and/or/not)",
      ]
    `);
  });

  it('refuses an unsafe regex, and an invalid one', () => {
    expect(problemsOf(ruleText("  match: { field: attrs.tool, matches: '(a+)+$' }"))).toMatchInlineSnapshot(`
      [
        "r1 match.matches: pattern prone to catastrophic backtracking: a repeated group contains another unbounded repeat",
      ]
    `);
    expect(problemsOf(ruleText("  match: { field: attrs.tool, matches: '(?<=a)b' }"))).toMatchInlineSnapshot(`
      [
        "r1 match.matches: lookbehind is not supported in policy patterns",
      ]
    `);
    expect(problemsOf(ruleText("  match: { field: attrs.tool, matches: '[' }"))).toMatchInlineSnapshot(`
      [
        "r1 match.matches: invalid regular expression: /[/u: Unterminated character class",
      ]
    `);
  });

  it('refuses a window that is too large or not a duration', () => {
    expect(
      problemsOf(
        ruleText(
          '  match: { field: kind, eq: decision }\n  correlate: { type: count, groupBy: [run], window: 2d, threshold: 2 }',
        ),
      ),
    ).toMatchInlineSnapshot(`
      [
        "r1 correlate.window: duration 2d exceeds the maximum of 24h",
      ]
    `);
    expect(
      problemsOf(
        ruleText(
          '  match: { field: kind, eq: decision }\n  correlate: { type: count, groupBy: [run], window: soon, threshold: 2 }',
        ),
      ),
    ).toMatchInlineSnapshot(`
      [
        "r1 correlate.window: expected a duration such as 90s, 5m, 1h (got "soon")",
      ]
    `);
  });

  it('refuses unknown correlation types, keys and dangling captures', () => {
    expect(
      problemsOf(
        ruleText('  match: { field: kind, eq: decision }\n  correlate: { type: risk, groupBy: [run] }'),
      ),
    ).toMatchInlineSnapshot(`
      [
        "r1 correlate.type: Invalid discriminator value. Expected 'count' | 'distinct' | 'sum' | 'sequence' | 'absence' | 'first_seen' | 'baseline_deviation' | 'seq_gap'",
      ]
    `);
    expect(
      problemsOf(
        ruleText(
          '  match: { field: kind, eq: decision }\n  correlate: { type: sequence, groupBy: [run], window: 5m, steps: [{ match: { field: kind, eq: a } }, { match: { field: kind, eq: b }, relation: { field: attrs.tool, op: in, capture: nope } }] }',
        ),
      ),
    ).toMatchInlineSnapshot(`
      [
        "r1 correlate.steps[1].relation.capture: "nope" is not captured by an earlier step",
      ]
    `);
    expect(problemsOf(ruleText('  match: { field: kind, eq: decision }\n  priority: 3')))
      .toMatchInlineSnapshot(`
      [
        "r1 (rule): Unrecognized key: "priority"",
      ]
    `);
    expect(
      problemsOf(
        ruleText(
          '  match: { field: kind, eq: decision }\n  correlate: { type: first_seen, groupBy: [agent], field: attrs.x, threshold: 3 }',
        ),
      ),
    ).toMatchInlineSnapshot(`
      [
        "r1 correlate.window: a first_seen threshold above 1 needs a window",
      ]
    `);
  });

  it('refuses freeze without tools, two operators, bad documents and duplicate ids', () => {
    expect(problemsOf(ruleText('  match: { field: kind, eq: decision }\n  intervene: { action: freeze }')))
      .toMatchInlineSnapshot(`
      [
        "r1 intervene.tools: freeze needs the tools to freeze",
      ]
    `);
    expect(problemsOf(ruleText('  match: { field: kind, eq: a, ne: b }'))).toMatchInlineSnapshot(`
      [
        "r1 match: expected exactly one operator beside field, got 2",
      ]
    `);
    expect(problemsOf('- id: a\n  id: b\n')).toMatchInlineSnapshot(`
      [
        "(document) (root): invalid YAML: Map keys must be unique at line 2, column 3:",
      ]
    `);
    expect(problemsOf('id: a')).toMatchInlineSnapshot(`
      [
        "(document) (root): expected a list of rules",
      ]
    `);
    const one = ruleText('  match: { field: kind, eq: decision }');
    expect(problemsOf(one + one)).toMatchInlineSnapshot(`
      [
        "r1 id: duplicate rule id",
      ]
    `);
  });

  it('refuses hostile shapes: deep nesting, deep paths, bad operands', () => {
    let deep: unknown = { field: 'kind', eq: 'x' };
    for (let i = 0; i < 20; i++) deep = { not: deep };
    const problems: ConditionProblem[] = [];
    expect(compileCondition(deep, 'match', problems)).toBeUndefined();
    expect(problems[0]!.message).toBe('conditions nested deeper than 16');
    expect(problemsOf(ruleText('  match: { field: attrs.a.b.c.d.e.f.g.h.i, exists: true }'))).toEqual([
      'r1 match.field: attribute path deeper than 8 segments',
    ]);
    expect(problemsOf(ruleText('  match: { field: attrs.__proto__x, lt: "5" }'))).toEqual([
      'r1 match.lt: expected a finite number',
    ]);
    expect(problemsOf(ruleText('  match: { field: kind, in: [] }'))).toEqual([
      'r1 match.in: expected a non-empty list of strings, numbers, booleans or null',
    ]);
  });
});

describe('conditions', () => {
  const check = (condition: unknown, event: AuditEvent): boolean => {
    const problems: ConditionProblem[] = [];
    const predicate = compileCondition(condition, 'match', problems);
    expect(problems).toEqual([]);
    return predicate!(event);
  };
  const e = ev(0, 'decision', {
    tool: 'fs.read',
    n: 5,
    nested: { path: '/srv/a' },
    list: [{ t: 'x' }, { t: 'y' }],
  });

  it('evaluates every operator', () => {
    expect(check({ field: 'kind', eq: 'decision' }, e)).toBe(true);
    expect(check({ field: 'kind', ne: 'decision' }, e)).toBe(false);
    expect(check({ field: 'attrs.tool', in: ['fs.read', 'fs.write'] }, e)).toBe(true);
    expect(check({ field: 'attrs.tool', notIn: ['fs.read'] }, e)).toBe(false);
    expect(check({ field: 'attrs.n', lt: 6 }, e)).toBe(true);
    expect(check({ field: 'attrs.n', lte: 5 }, e)).toBe(true);
    expect(check({ field: 'attrs.n', gt: 5 }, e)).toBe(false);
    expect(check({ field: 'attrs.n', gte: 5 }, e)).toBe(true);
    expect(check({ field: 'attrs.tool', gte: 0 }, e)).toBe(false);
    expect(check({ field: 'attrs.nested.path', prefix: '/srv/' }, e)).toBe(true);
    expect(check({ field: 'attrs.nested.path', matches: '^/srv/[a-z]+$' }, e)).toBe(true);
    expect(check({ field: 'attrs.missing', exists: false }, e)).toBe(true);
    expect(check({ field: 'run', exists: true }, e)).toBe(true);
    expect(
      check(
        {
          and: [
            { field: 'attrs.n', eq: 5 },
            { or: [{ field: 'kind', eq: 'x' }, { not: { field: 'kind', eq: 'y' } }] },
          ],
        },
        e,
      ),
    ).toBe(true);
  });

  it('does not run patterns over overlong values', () => {
    expect(check({ field: 'attrs.s', matches: 'a' }, ev(0, 'decision', { s: 'a'.repeat(5000) }))).toBe(false);
  });

  it('does not read inherited properties', () => {
    expect(check({ field: 'attrs.constructor', exists: true }, e)).toBe(false);
  });
});

describe('correlations', () => {
  it('single-event rules fire on every match', () => {
    const rule = ruleFrom('  match: { field: attrs.tool, eq: fs.write }');
    const found = feed(
      [rule],
      [ev(0, 'decision', { tool: 'fs.write' }, { seq: 1 }), ev(1, 'decision', { tool: 'x' })],
    );
    expect(found.map((f) => f.group)).toEqual(['seq=1']);
  });

  it('count: N events in a sliding window, then starts over', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: decision }\n  correlate: { type: count, groupBy: [run], window: 1m, threshold: 3 }',
    );
    const found = feed(
      [rule],
      [
        ev(0, 'decision', {}, { seq: 1 }),
        ev(30, 'decision'),
        ev(70, 'decision'), // seq 1 left the window
        ev(80, 'decision'), // 2, 3, 4
        ev(81, 'decision', {}, { run: 'run-2' }),
        ev(82, 'decision'),
      ],
    );
    expect(seqsOf(found)).toEqual([[2, 3, 4]]);
  });

  it('distinct: N distinct directories in a window', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: execution.started }\n  correlate: { type: distinct, groupBy: [agent], window: 5m, field: attrs.resource, transform: dirname, threshold: 3 }',
    );
    const found = feed(
      [rule],
      [
        ev(0, 'execution.started', { resource: '/a/1' }, { seq: 1 }),
        ev(1, 'execution.started', { resource: '/a/2' }),
        ev(2, 'execution.started', { resource: '/b/1' }),
        ev(3, 'execution.started', { resource: 'https://x.test/c/d?q=1' }),
      ],
    );
    expect(seqsOf(found)).toEqual([[1, 3, 4]]);
  });

  it('sum: amounts within the window reaching the threshold', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: decision }\n  correlate: { type: sum, groupBy: [agent], window: 10m, field: attrs.amount, threshold: 100, minCount: 2 }',
    );
    expect(seqsOf(feed([rule], [ev(0, 'decision', { amount: 150 }, { seq: 1 })]))).toEqual([]);
    expect(
      seqsOf(
        feed(
          [rule],
          [
            ev(0, 'decision', { amount: 60 }, { seq: 1 }),
            ev(700, 'decision', { amount: 50 }),
            ev(701, 'decision', { amount: 'x' }),
            ev(702, 'decision', { amount: 50 }),
          ],
        ),
      ),
    ).toEqual([[2, 4]]);
  });

  const sequenceRule = ruleFrom(
    [
      '  match: { field: kind, in: [a, b, c] }',
      '  correlate:',
      '    type: sequence',
      '    groupBy: [run]',
      '    window: 5m',
      '    steps:',
      '      - { match: { field: kind, eq: a }, capture: { as: who, field: attrs.who } }',
      '      - { match: { field: kind, eq: b }, relation: { field: attrs.who, op: eq, capture: who } }',
      '      - { match: { field: kind, eq: c } }',
    ].join('\n'),
  );

  it('sequence: steps in order within the window, with captured values', () => {
    const found = feed(
      [sequenceRule],
      [
        ev(0, 'b', { who: 'x' }, { seq: 1 }),
        ev(1, 'a', { who: 'x' }),
        ev(2, 'b', { who: 'y' }), // relation fails
        ev(3, 'c'), // b not yet matched
        ev(4, 'b', { who: 'x' }),
        ev(5, 'c'),
      ],
    );
    expect(seqsOf(found)).toEqual([[2, 5, 6]]);
  });

  it('sequence: expires after the window and restarts on a new first step', () => {
    const found = feed(
      [sequenceRule],
      [
        ev(0, 'a', { who: 'x' }, { seq: 1 }),
        ev(400, 'b', { who: 'x' }),
        ev(401, 'c'),
        ev(402, 'a', { who: 'z' }),
        ev(403, 'a', { who: 'x' }),
        ev(404, 'b', { who: 'x' }),
        ev(405, 'c', {}, { run: 'run-2' }),
        ev(406, 'c'),
      ],
    );
    expect(seqsOf(found)).toEqual([[5, 6, 8]]);
  });

  const absenceRule = ruleFrom(
    [
      '  match: { field: kind, eq: approval.requested }',
      '  correlate:',
      '    type: absence',
      '    groupBy: [run, step]',
      '    window: 10m',
      '    expect: { field: kind, eq: approval.decided }',
    ].join('\n'),
  );

  it('absence: fires on tick when the expected event never came', () => {
    const engine = createEngine([absenceRule], { now: () => FIXTURE_EPOCH + 601_000 });
    expect(engine.ingest(ev(0, 'approval.requested', {}, { seq: 1, step: 1 }))).toEqual([]);
    expect(engine.ingest(ev(1, 'approval.requested', {}, { step: 2 }))).toEqual([]);
    expect(engine.ingest(ev(2, 'approval.decided', {}, { step: 2 }))).toEqual([]);
    expect(engine.tick(FIXTURE_EPOCH + 599_000)).toEqual([]);
    const found = engine.tick();
    expect(found.map((f) => [f.group, f.events, f.at])).toEqual([
      ['run=run-1,step=1', [1], '2026-01-01T00:10:00.000Z'],
    ]);
    expect(engine.tick()).toEqual([]);
    expect(engine.stats().groups.r1).toBe(0);
  });

  it('absence: fires on ingest of a later event', () => {
    const found = feed(
      [absenceRule],
      [ev(0, 'approval.requested', {}, { seq: 1, step: 1 }), ev(700, 'run.finished')],
    );
    expect(seqsOf(found)).toEqual([[1]]);
  });

  it('first_seen: a value never seen before for the group', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: execution.started }\n  correlate: { type: first_seen, groupBy: [agent], field: attrs.url, transform: host }',
    );
    const found = feed(
      [rule],
      [
        ev(0, 'execution.started', { url: 'https://a.test/x' }, { seq: 1 }),
        ev(1, 'execution.started', { url: 'https://A.test/y' }),
        ev(2, 'execution.started', { url: 'https://b.test/' }),
        ev(3, 'execution.started', { url: 'https://a.test/' }, { agent: 'agent-2' }),
        ev(4, 'execution.started', { url: 'not a url' }),
      ],
    );
    expect(found.map((f) => [f.group, f.events])).toEqual([
      ['agent=agent-1,value=a.test', [1]],
      ['agent=agent-1,value=b.test', [3]],
      ['agent=agent-2,value=a.test', [4]],
    ]);
  });

  it('baseline_deviation: needs a baseline with enough samples, keyed by agent and policy version', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: execution.started }\n  correlate: { type: baseline_deviation, groupBy: [agent, attrs.tool], window: 1m, metric: toolRatePerMin, key: attrs.tool, factor: 2, minSamples: 10 }',
    );
    const burst = (policyVersion: string): AuditEvent[] => [
      ev(0, 'execution.started', { tool: 't', policyVersion }, { seq: 1 }),
      ev(1, 'execution.started', { tool: 't', policyVersion }),
      ev(2, 'execution.started', { tool: 't', policyVersion }),
    ];
    const baselines = {
      'agent-1': {
        v1: { samples: 50, toolRatePerMin: { t: 1 } },
        v2: { samples: 5, toolRatePerMin: { t: 1 } },
      },
    };
    expect(seqsOf(feed([rule], burst('v1'), { baselines }))).toEqual([[1, 2, 3]]);
    expect(seqsOf(feed([rule], burst('v2'), { baselines }))).toEqual([]);
    expect(seqsOf(feed([rule], burst('v3'), { baselines }))).toEqual([]);
    expect(seqsOf(feed([rule], burst('v1')))).toEqual([]);
    const lookup = (agent: string, version: string) =>
      agent === 'agent-1' && version === 'v1' ? { samples: 50, toolRatePerMin: { t: 5 } } : undefined;
    expect(seqsOf(feed([rule], burst('v1'), { baselines: lookup }))).toEqual([]);
  });

  it('baseline_deviation: learns the policy version from run.started and applied policy updates', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: execution.started }\n  correlate: { type: baseline_deviation, groupBy: [agent, attrs.tool], window: 1m, metric: toolRatePerMin, key: attrs.tool, factor: 2, minSamples: 10, minCount: 2 }',
    );
    const baselines = { 'agent-1': { v2: { samples: 50, toolRatePerMin: { t: 0.5 } } } };
    const found = feed(
      [rule],
      [
        ev(0, 'run.started', { policyVersion: 'v1' }, { seq: 1 }),
        ev(1, 'execution.started', { tool: 't' }),
        ev(2, 'policy.updated', { phase: 'applied', from: 'v1', to: 'v2' }),
        ev(3, 'execution.started', { tool: 't' }),
      ],
      { baselines },
    );
    expect(seqsOf(found)).toEqual([[2, 4]]);
  });

  it('seq_gap: skipped seqs per stream; repeats and reordering are not gaps', () => {
    const rule = ruleFrom('  match: { field: seq, gte: 1 }\n  correlate: { type: seq_gap, groupBy: [] }');
    const found = feed(
      [rule],
      [
        ev(0, 'a', {}, { seq: 1 }),
        ev(0, 'a', {}, { seq: 2 }),
        ev(0, 'a', {}, { seq: 2 }),
        ev(0, 'a', {}, { seq: 4 }),
      ],
    );
    expect(found.map((f) => [f.group, f.events])).toEqual([['*', [2, 4]]]);
  });

  it('skips events whose groupBy fields are missing', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: decision }\n  correlate: { type: count, groupBy: [run], window: 1m, threshold: 1 }',
    );
    expect(feed([rule], [ev(0, 'decision', {}, { run: null })])).toEqual([]);
  });
});

describe('memory bounds', () => {
  const countRule = ruleFrom(
    '  match: { field: kind, eq: decision }\n  correlate: { type: count, groupBy: [run], window: 1h, threshold: 100000 }',
  );

  it('caps groups per rule, evicting the least recently used', () => {
    const engine = createEngine([countRule], { now: () => 0, limits: { maxGroups: 10 } });
    for (let i = 0; i < 100; i++) engine.ingest(ev(i, 'decision', {}, { run: `run-${i}` }));
    expect(engine.stats()).toEqual({ groups: { r1: 10 }, evictions: 90 });
  });

  it('caps events per group, evicting the oldest', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: decision }\n  correlate: { type: count, groupBy: [run], window: 1h, threshold: 6 }',
    );
    const engine = createEngine([rule], { now: () => 0, limits: { maxEventsPerGroup: 5 } });
    const found = Array.from({ length: 20 }, (_, i) => engine.ingest(ev(i, 'decision'))).flat();
    expect(found).toEqual([]);
    expect(engine.stats().evictions).toBe(15);
  });

  it('caps remembered values per group for first_seen', () => {
    const rule = ruleFrom(
      '  match: { field: kind, eq: decision }\n  correlate: { type: first_seen, groupBy: [agent], field: attrs.v }',
    );
    const engine = createEngine([rule], { now: () => 0, limits: { maxValuesPerGroup: 3 } });
    for (const v of ['a', 'b', 'c', 'd']) engine.ingest(ev(0, 'decision', { v }));
    expect(engine.stats().evictions).toBe(1);
    // 'a' was evicted, so it is unknown again
    expect(engine.ingest(ev(0, 'decision', { v: 'a' }))).toHaveLength(1);
    expect(engine.ingest(ev(0, 'decision', { v: 'd' }))).toHaveLength(0);
  });
});

describe('determinism', () => {
  it('the same events give the same findings and ids, whatever the clock says', () => {
    const rules = builtinRules();
    const events = rules.flatMap((r) => expandFixture(r.spec.fixtures.positive));
    const a = feed(rules, events, { now: () => 1 });
    const b = feed(rules, events, { now: () => 999_999_999 });
    expect(a.length).toBeGreaterThan(0);
    expect(b).toEqual(a);
  });

  it('finding ids hash rule, group and events', () => {
    expect(findingId('r1', 'run=a', [1, 2])).toMatch(/^obs_[0-9a-f]{32}$/);
    expect(findingId('r1', 'run=a', [1, 2])).toBe(findingId('r1', 'run=a', [1, 2]));
    expect(findingId('r1', 'run=a', [1, 2])).not.toBe(findingId('r1', 'run=a', [1, 3]));
    expect(findingId('r1', 'run=a', [1, 2])).not.toBe(findingId('r2', 'run=a', [1, 2]));
  });

  it('events with an unparsable ts fall back to the injected clock', () => {
    const rule = ruleFrom('  match: { field: kind, eq: decision }');
    const [finding] = feed([rule], [ev(0, 'decision', {}, { ts: 'garbage' })], {
      now: () => FIXTURE_EPOCH + 5000,
    });
    expect(finding!.at).toBe('2026-01-01T00:00:05.000Z');
  });
});
