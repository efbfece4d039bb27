import fc from 'fast-check';
import { z } from 'zod';
import { describe, expect, test } from 'vitest';
import { defineTool } from '../test/fixtures/tools.ts';
import { compilePolicy } from './compile.ts';
import type { CompiledPolicy } from './compile.ts';
import { decide } from './decide.ts';
import type { ActionRequest, Decision, DecisionContext } from './decide.ts';
import { validateGovernance } from './load.ts';
import { TIER_RANK, TIERS } from './tiers.ts';
import type { Posture, Tier } from './tiers.ts';
import { toolCatalog } from './tool-spec.ts';

// ---- a small world: registered tools share one loose schema; the resource is `path` ----------

const REGISTERED = ['fs.read', 'fs.write', 'db.query', 'db.admin.drop', 'http.get', 'svc'] as const;
const UNREGISTERED = ['fs.delete', 'shell.exec', 'db', 'x.y.z', 'FS.READ', 'fs.read.all'] as const;

const looseArgs = z.object({
  path: z.string().optional(),
  n: z.number().optional(),
  s: z.string().optional(),
  o: z.object({ x: z.number().optional() }).optional(),
});
const catalog = toolCatalog(
  REGISTERED.map((name) => defineTool({ name, description: name, args: looseArgs, resource: (a) => a.path })),
);

const TOOL_GLOBS = [
  'fs.read',
  'fs.write',
  'fs.*',
  'fs.{read,write}',
  'db.*',
  'db.**',
  '**',
  '*',
  '*.query',
  '?s.read',
  'http.get',
  'svc',
  'fs.delete',
];
const RESOURCE_GLOBS = [
  '/workspace/**',
  '/workspace/*',
  '/workspace/docs/**',
  '/workspace/**/*.md',
  '/etc/**',
  '/**',
  '/tmp/?',
  '/{workspace,tmp}/*',
  'https:/**/admin/**',
];
const EXCLUSIONS = ['!/workspace/secrets/**', '!/workspace/**/.env', '!/etc/**', '!/workspace/docs/*'];
const STRINGS = ['a', 'b', 'ab', 'ba', 'abc', ''];
const PATTERNS = ['^a', 'b$', '^[ab]+$', '^(?:ab|ba)$'];
const PRINCIPALS = ['alice', 'bob', 'carol'] as const;
const SEGMENTS = ['workspace', 'docs', 'secrets', 'etc', 'tmp', 'a', 'x.md', '.env', '..', '.', ''];
const FROZEN_GLOBS = ['fs.read', 'fs.*', 'db.**', 'svc', 'http.get', '**', 'email.*'];

const small = fc.integer({ min: -3, max: 3 });
/** `arb` about a third of the time, otherwise absent: each extra condition makes a rule rarer. */
const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
const smallList = <T>(arb: fc.Arbitrary<T>) => fc.uniqueArray(arb, { minLength: 1, maxLength: 3 });
const str = fc.constantFrom(...STRINGS);

const numericConstraint = fc.oneof(
  small.map((v) => ({ eq: v })),
  small.map((v) => ({ ne: v })),
  smallList(small).map((v) => ({ in: v })),
  smallList(small).map((v) => ({ notIn: v })),
  small.map((v) => ({ lt: v })),
  small.map((v) => ({ lte: v })),
  small.map((v) => ({ gt: v })),
  small.map((v) => ({ gte: v })),
  str.map((v) => ({ eq: v })), // wrongly typed for a number: never matches
);
const stringConstraint = fc.oneof(
  str.map((v) => ({ eq: v })),
  str.map((v) => ({ ne: v })),
  smallList(str).map((v) => ({ in: v })),
  smallList(str).map((v) => ({ notIn: v })),
  fc.constantFrom('a', 'b', 'ab').map((v) => ({ prefix: v })),
  fc.constantFrom(...PATTERNS).map((v) => ({ matches: v })),
  small.map((v) => ({ ne: v })), // wrongly typed for a string: never matches
);
const whenArgs = fc.record(
  { n: numericConstraint, s: stringConstraint, 'o.x': numericConstraint },
  { requiredKeys: [] },
);
const director = fc.oneof(
  fc.constantFrom('lead', 'sre', 'eng').map((r) => ({ roles: [r] })),
  fc.constantFrom(10, 50, 80).map((minLevel) => ({ minLevel })),
);
const approvalBlock = fc.record({
  approvers: fc.constantFrom({ roles: ['lead'] }, { minLevel: 50 }, { principals: ['carol'] }),
  timeout: fc.constantFrom('5m', '1h'),
});

interface RuleShape {
  readonly tier: Tier;
  readonly tool: string;
  readonly resources: readonly string[] | undefined;
  readonly args: Record<string, unknown> | undefined;
  readonly director: Record<string, unknown> | undefined;
  readonly approval: Record<string, unknown> | undefined;
  readonly perRun: number | undefined;
}

const ruleShape: fc.Arbitrary<RuleShape> = fc.record({
  tier: fc.constantFrom(...TIERS),
  tool: fc.constantFrom(...TOOL_GLOBS),
  resources: sometimes(
    fc
      .tuple(smallList(fc.constantFrom(...RESOURCE_GLOBS)), fc.subarray(EXCLUSIONS, { maxLength: 1 }))
      .map(([p, x]) => [...p, ...x]),
  ),
  args: sometimes(whenArgs.filter((a) => Object.keys(a).length > 0)),
  director: sometimes(director),
  approval: sometimes(approvalBlock),
  perRun: sometimes(fc.integer({ min: 1, max: 3 })),
});

/** Turns a shape into a rule the loader accepts (approval only on approval, limits only where allowed). */
function ruleOf(shape: RuleShape, id: string, defaultHasApproval: boolean): Record<string, unknown> {
  const when = {
    ...(shape.args === undefined ? {} : { args: shape.args }),
    ...(shape.director === undefined ? {} : { director: shape.director }),
  };
  const approval =
    shape.tier === 'approval'
      ? (shape.approval ??
        (defaultHasApproval ? undefined : { approvers: { roles: ['sre'] }, timeout: '10m' }))
      : undefined;
  return {
    id,
    tool: shape.tool,
    tier: shape.tier,
    ...(shape.resources === undefined ? {} : { resources: shape.resources }),
    ...(Object.keys(when).length === 0 ? {} : { when }),
    ...(approval === undefined ? {} : { approval }),
    ...(shape.perRun !== undefined && (shape.tier === 'autonomous' || shape.tier === 'preapproved')
      ? { limits: { perRun: shape.perRun } }
      : {}),
  };
}

interface World {
  readonly defaultApproval: boolean;
  readonly rules: readonly Record<string, unknown>[];
}

const world: fc.Arbitrary<World> = fc.boolean().chain((defaultApproval) =>
  fc.array(ruleShape, { maxLength: 8 }).map((shapes) => ({
    defaultApproval,
    rules: shapes.map((s, i) => ruleOf(s, `r${i}`, defaultApproval)),
  })),
);

function documentOf(w: World): unknown {
  return {
    schemaVersion: 1,
    identity: { id: 'prop-agent', name: 'Property Agent', purpose: 'Generated.', owner: 'tests' },
    authority: {
      roles: { lead: { level: 80 }, sre: { level: 50 }, eng: { level: 20 } },
      principals: [
        { id: 'alice', roles: ['lead'] },
        { id: 'bob', roles: ['sre'] },
        { id: 'carol', roles: ['eng'] },
      ],
      directors: { minLevel: 20 },
    },
    actions: {
      default: w.defaultApproval
        ? { tier: 'approval', approval: { approvers: { roles: ['sre'] }, timeout: '15m' } }
        : { tier: 'prohibited' },
      rules: w.rules,
    },
  };
}

function compile(w: World): CompiledPolicy {
  const loaded = validateGovernance(documentOf(w), 'generated');
  if (!loaded.ok)
    throw new Error(`generator produced an invalid document: ${JSON.stringify(loaded.problems)}`);
  return compilePolicy(loaded.document);
}

// ---- calls and run state ------------------------------------------------------------------------

const pathArb = fc.oneof(
  fc.constantFrom(
    '/workspace/a',
    '/workspace/docs/x.md',
    '/workspace/secrets/k',
    '/etc/passwd',
    '/tmp/a',
    '/workspace/a/.env',
  ),
  fc.array(fc.constantFrom(...SEGMENTS), { minLength: 0, maxLength: 5 }).map((s) => `/${s.join('/')}`),
);
const argsArb = fc.record(
  {
    path: fc.oneof(
      { weight: 5, arbitrary: pathArb },
      { weight: 1, arbitrary: fc.constant('https://h.test/a/%2e%2e/admin/x') },
    ),
    n: fc.oneof(
      { weight: 15, arbitrary: small },
      { weight: 1, arbitrary: fc.constant('1' as unknown as number) },
    ),
    s: str,
    o: fc.record({ x: small }, { requiredKeys: [] }),
  },
  { requiredKeys: ['path', 'n', 's'] },
);
const registeredCall: fc.Arbitrary<ActionRequest> = fc.record(
  {
    tool: fc.constantFrom(...REGISTERED),
    args: argsArb,
    director: fc.constantFrom(...PRINCIPALS, 'mallory'),
  },
  { requiredKeys: ['tool', 'args'] },
);
const anyCall: fc.Arbitrary<ActionRequest> = fc.oneof(
  { weight: 4, arbitrary: registeredCall },
  { weight: 1, arbitrary: registeredCall.map((c) => ({ ...c, tool: 'fs.delete' })) },
);

interface RunState {
  readonly posture: Posture;
  readonly frozenTools: readonly string[];
  readonly used: Readonly<Record<string, number>>;
  readonly explain: boolean;
}
const runState: fc.Arbitrary<RunState> = fc.record({
  posture: fc.oneof(
    { weight: 3, arbitrary: fc.constant<Posture>('normal') },
    { weight: 2, arbitrary: fc.constant<Posture>('conservative') },
    { weight: 1, arbitrary: fc.constant<Posture>('revoked') },
  ),
  frozenTools: fc.oneof(
    { weight: 3, arbitrary: fc.constant([]) },
    { weight: 1, arbitrary: fc.subarray(FROZEN_GLOBS, { maxLength: 2 }) },
  ),
  used: fc.dictionary(
    fc.constantFrom('r0', 'r1', 'r2', 'r3', 'guard', 'added'),
    fc.integer({ min: 0, max: 4 }),
    { maxKeys: 3 },
  ),
  explain: fc.boolean(),
});
const contextOf = (s: RunState, posture: Posture = s.posture): DecisionContext => ({
  tools: catalog,
  posture,
  frozenTools: s.frozenTools,
  used: s.used,
  unregisteredTools: s.explain ? 'decide-from-rules' : 'prohibit',
});

const rank = (d: Decision): number => TIER_RANK[d.tier];
const insertAt = <T>(items: readonly T[], index: number, item: T): T[] => [
  ...items.slice(0, index),
  item,
  ...items.slice(index),
];

/** A prohibited rule that matches `request` by construction (tool literal or glob, resource, an eq on n). */
function guardFor(request: ActionRequest, variant: number): Record<string, unknown> {
  const args = (request.args ?? {}) as { path?: unknown; n?: unknown };
  const rule: Record<string, unknown> = {
    id: 'guard',
    tool: variant % 2 === 0 ? request.tool : '**',
    tier: 'prohibited',
  };
  // only registered tools derive a resource from their arguments
  if (
    variant % 3 === 1 &&
    catalog.has(request.tool) &&
    typeof args.path === 'string' &&
    args.path.startsWith('/')
  )
    rule.resources = ['/**'];
  if (variant % 5 === 2 && typeof args.n === 'number') rule.when = { args: { n: { eq: args.n } } };
  return rule;
}

// ---- properties ----------------------------------------------------------------------------------

describe('decide: properties over generated policies', () => {
  test('(a) a call matching a prohibited rule is prohibited under any posture, frozen set and used counts', () => {
    fc.assert(
      fc.property(world, anyCall, runState, fc.nat(), fc.nat(20), (w, request, state, position, variant) => {
        const rules = insertAt(w.rules, position % (w.rules.length + 1), guardFor(request, variant));
        const d = decide(compile({ ...w, rules }), request, contextOf(state));
        expect(d.tier).toBe('prohibited');
        expect(d.approval).toBeNull();
        expect(d.denial).not.toBeNull();
      }),
      { numRuns: 1000 },
    );
  });

  test('(b) conservative never lowers the tier versus normal; revoked is always prohibited', () => {
    fc.assert(
      fc.property(world, anyCall, runState, (w, request, state) => {
        const policy = compile(w);
        const normal = decide(policy, request, contextOf(state, 'normal'));
        const conservative = decide(policy, request, contextOf(state, 'conservative'));
        expect(rank(conservative)).toBeGreaterThanOrEqual(rank(normal));
        expect(conservative.tier === 'autonomous' || conservative.tier === 'preapproved').toBe(false);
        expect(decide(policy, request, contextOf(state, 'revoked')).tier).toBe('prohibited');
      }),
      { numRuns: 1000 },
    );
  });

  test('(c) unregistered tools are never autonomous: prohibited (unknown_tool) unless explaining', () => {
    const unknownName = fc.oneof(
      fc.constantFrom(...UNREGISTERED),
      fc.string({ maxLength: 12 }).filter((s) => !catalog.has(s)),
    );
    fc.assert(
      fc.property(world, unknownName, argsArb, runState, fc.boolean(), (w, tool, args, state, explicit) => {
        const { unregisteredTools: _mode, ...implicit } = contextOf(state);
        const context: DecisionContext = explicit ? { ...implicit, unregisteredTools: 'prohibit' } : implicit;
        const d = decide(compile(w), { tool, args }, context);
        expect(d.tier).toBe('prohibited');
        expect(d.code).toBe('unknown_tool');
        expect(d.ruleId).toBeNull();
      }),
      { numRuns: 500 },
    );
  });

  test('(d) shuffling the rules never changes the tier; the rule id changes only within one tier', () => {
    const shuffled = world.chain((w) =>
      fc.tuple(
        fc.constant(w),
        fc.shuffledSubarray([...w.rules], { minLength: w.rules.length, maxLength: w.rules.length }),
      ),
    );
    fc.assert(
      fc.property(shuffled, anyCall, runState, ([w, rules], request, state) => {
        const a = decide(compile(w), request, contextOf(state));
        const b = decide(compile({ ...w, rules }), request, contextOf(state));
        expect(b.tier).toBe(a.tier);
        expect(b.baseTier).toBe(a.baseTier);
        expect(b.code).toBe(a.code);
        expect(b.ruleId === null).toBe(a.ruleId === null);
        if (a.ruleId !== b.ruleId) {
          const tierOf = (id: string | null) => w.rules.find((r) => r.id === id)?.tier;
          expect(tierOf(a.ruleId)).toBe(a.baseTier);
          expect(tierOf(b.ruleId)).toBe(a.baseTier);
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('(e) adding a rule never lowers the tier of a call a rule or a refusal decided', () => {
    fc.assert(
      fc.property(world, ruleShape, fc.nat(), anyCall, runState, (w, shape, position, request, state) => {
        const before = decide(compile(w), request, contextOf(state));
        const rules = insertAt(
          w.rules,
          position % (w.rules.length + 1),
          ruleOf(shape, 'added', w.defaultApproval),
        );
        const after = decide(compile({ ...w, rules }), request, contextOf(state));
        // the default is not a rule: a new rule may legitimately answer a call nothing answered
        if (before.code === 'default') return;
        if (before.ruleId !== null)
          expect(TIER_RANK[after.baseTier]).toBeGreaterThanOrEqual(TIER_RANK[before.baseTier]);
        if (state.posture === 'conservative' && !w.defaultApproval) {
          // documented inversion: with no default approvers, conservative prohibits a call it would
          // raise, while a call an approval rule decides can still be approved by that rule's approvers
          expect(rank(after)).toBeGreaterThanOrEqual(TIER_RANK.approval);
        } else {
          expect(rank(after)).toBeGreaterThanOrEqual(rank(before));
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('(f) deciding twice, or with a second compilation, gives deep-equal results', () => {
    fc.assert(
      fc.property(world, anyCall, runState, (w, request, state) => {
        const policy = compile(w);
        const first = decide(policy, request, contextOf(state));
        expect(decide(policy, request, contextOf(state))).toStrictEqual(first);
        expect(decide(compile(w), request, contextOf(state))).toStrictEqual(first);
        expect(JSON.parse(JSON.stringify(first))).toStrictEqual(first);
      }),
      { numRuns: 500 },
    );
  });

  test('(g) a path under /workspace/ whose .. segments climb out never matches /workspace/**', () => {
    const inner = fc.array(fc.constantFrom('a', 'docs', 'x.md', '.', ''), { maxLength: 4 });
    const rest = fc.array(fc.constantFrom('etc', 'tmp', 'a', 'secrets', 'workspacex', '.', ''), {
      maxLength: 4,
    });
    const dots = fc.constantFrom('..', '%2e%2e', '%2E%2e', '.%2e', '%2e.');
    const climbing = fc.record({ inner, extra: fc.nat(3), rest, url: fc.boolean(), dots });
    const policy = compile({
      defaultApproval: true,
      rules: [
        { id: 'ws', tool: 'fs.read', resources: ['/workspace/**'], tier: 'autonomous' },
        { id: 'ws-url', tool: 'http.get', resources: ['https:/**/workspace/**'], tier: 'autonomous' },
      ],
    });
    fc.assert(
      fc.property(climbing, ({ inner, extra, rest, url, dots }) => {
        const depth = inner.filter((s) => s !== '.' && s !== '').length + 1;
        const up = Array.from({ length: depth + extra }, () => (url ? dots : '..'));
        const path = ['/workspace', ...inner, ...up, ...rest].join('/');
        const request = url
          ? { tool: 'http.get', args: { path: `https://h.test${path}` } }
          : { tool: 'fs.read', args: { path } };
        const d = decide(policy, request, { tools: catalog });
        expect(d.ruleId).toBeNull();
        expect(d.tier).toBe('approval');
        expect(d.resource).not.toMatch(/^(https:\/\/h\.test)?\/workspace(\/|$)/);
      }),
      { numRuns: 1000 },
    );
  });
});
