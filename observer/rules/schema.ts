/**
 * The observer's rule format (YAML), validated with zod and compiled to closures. Every problem names the rule
 * id and the path inside the rule. See `builtin.ts` for examples.
 * @module
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseDuration } from '../../policy/duration.ts';
import { ObserverRuleError } from '../errors.ts';
import type { RuleProblem } from '../errors.ts';
import { checkFieldPath, compileAccessor, compileCondition } from './condition.ts';
import type { Accessor, ConditionProblem, Predicate } from './condition.ts';

/** Longest correlation window a rule may declare (the risk tier's 24 h). */
export const MAX_WINDOW_MS = 24 * 3_600_000;
/** Longest intervention TTL a rule may declare. */
export const MAX_TTL_MS = 7 * 24 * 3_600_000;

/** Severities, lowest first. */
export const Severity = { low: 'low', medium: 'medium', high: 'high', critical: 'critical' } as const;
export type Severity = (typeof Severity)[keyof typeof Severity];

/** `shadow` rules report only; `enforce` rules' interventions are meant to be applied. */
export const RuleMode = { shadow: 'shadow', enforce: 'enforce' } as const;
export type RuleMode = (typeof RuleMode)[keyof typeof RuleMode];

/** The intervention ladder (§4.6), lowest first. */
export const InterventionAction = {
  annotate: 'annotate',
  alert: 'alert',
  conservative: 'conservative',
  freeze: 'freeze',
  revoke: 'revoke',
} as const;
export type InterventionAction = (typeof InterventionAction)[keyof typeof InterventionAction];

/** Correlation types. `sum` and `seq_gap` extend the six of the design. */
export const CorrelationType = {
  count: 'count',
  distinct: 'distinct',
  sum: 'sum',
  sequence: 'sequence',
  absence: 'absence',
  firstSeen: 'first_seen',
  baselineDeviation: 'baseline_deviation',
  seqGap: 'seq_gap',
} as const;
export type CorrelationType = (typeof CorrelationType)[keyof typeof CorrelationType];

/** Closed set of value transforms applied to a correlated field. */
export const ValueTransform = { dirname: 'dirname', host: 'host', lower: 'lower' } as const;
export type ValueTransform = (typeof ValueTransform)[keyof typeof ValueTransform];

const id = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, 'expected lower-case letters, digits, _ . - (max 64)');
const positiveInt = z.number().int().min(1).max(100_000);
const groupBy = z.array(z.string()).max(4);
const transform = z.enum(['dirname', 'host', 'lower']).optional();
const window = z.string();
/** A condition; compiled (and checked) after the schema passes, by `compileCondition`. */
const condition = z.custom<unknown>((value) => value !== undefined, { message: 'required: a condition' });

const correlateSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('count'), groupBy, window, threshold: positiveInt }),
  z.strictObject({
    type: z.literal('distinct'),
    groupBy,
    window,
    field: z.string(),
    transform,
    threshold: positiveInt,
  }),
  z.strictObject({
    type: z.literal('sum'),
    groupBy,
    window,
    field: z.string(),
    threshold: z.number().finite(),
    minCount: positiveInt.optional(),
  }),
  z.strictObject({
    type: z.literal('sequence'),
    groupBy,
    window,
    steps: z
      .array(
        z.strictObject({
          match: condition,
          capture: z.strictObject({ as: id, field: z.string() }).optional(),
          relation: z
            .strictObject({ field: z.string(), op: z.enum(['eq', 'ne', 'in', 'notIn']), capture: id })
            .optional(),
        }),
      )
      .min(2)
      .max(8),
  }),
  z.strictObject({ type: z.literal('absence'), groupBy, window, expect: condition }),
  z.strictObject({
    type: z.literal('first_seen'),
    groupBy,
    field: z.string(),
    transform,
    threshold: positiveInt.optional(),
    window: window.optional(),
  }),
  z.strictObject({
    type: z.literal('baseline_deviation'),
    groupBy,
    window,
    metric: z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/),
    key: z.string(),
    factor: z.number().finite().gt(1),
    minSamples: positiveInt.optional(),
    minCount: positiveInt.optional(),
  }),
  z.strictObject({ type: z.literal('seq_gap'), groupBy }),
]);

const fixtureEventSchema = z.strictObject({
  seq: z.number().int().min(1).optional(),
  ts: z.string().optional(),
  after: z.string().optional(),
  source: z.enum(['workflow', 'guard', 'approvals', 'cli', 'model', 'observer']).optional(),
  agent: z.string().nullable().optional(),
  run: z.string().nullable().optional(),
  step: z.number().int().nullable().optional(),
  kind: z.string().min(1),
  attrs: z.record(z.string(), z.unknown()).optional(),
  repeat: z.number().int().min(1).max(1000).optional(),
});

const ruleSchema = z.strictObject({
  id,
  description: z.string().min(1),
  severity: z.enum(['low', 'medium', 'high', 'critical']),
  mode: z.enum(['shadow', 'enforce']),
  match: condition,
  correlate: correlateSchema.optional(),
  intervene: z
    .strictObject({
      action: z.enum(['annotate', 'alert', 'conservative', 'freeze', 'revoke']),
      tools: z.array(z.string().min(1)).min(1).optional(),
      ttl: z.string().optional(),
    })
    .optional(),
  fixtures: z.strictObject({
    positive: z.array(fixtureEventSchema).min(1),
    negative: z.array(fixtureEventSchema).min(1),
    /** Baselines the fixtures run with: `agent → policyVersion → { samples, <metric>: { key: rate } }`. */
    baselines: z
      .record(
        z.string(),
        z.record(
          z.string(),
          z.looseObject({ samples: z.number().int().min(0) }).catchall(z.record(z.string(), z.number())),
        ),
      )
      .optional(),
  }),
});

/** A rule as written (after schema validation). */
export type RuleSpec = z.infer<typeof ruleSchema>;
/** One fixture event as written: envelope fields default, `after` offsets from the previous event, `repeat` copies. */
export type FixtureEventSpec = z.infer<typeof fixtureEventSchema>;
type CorrelateSpec = z.infer<typeof correlateSchema>;

/** A compiled `groupBy`: the names (for labels) and their accessors. */
export interface GroupBy {
  readonly fields: readonly string[];
  readonly accessors: readonly Accessor[];
}

/** A compiled sequence step. */
export interface SequenceStep {
  readonly match: Predicate;
  readonly capture?: { readonly as: string; readonly get: Accessor };
  readonly relation?: {
    readonly get: Accessor;
    readonly op: 'eq' | 'ne' | 'in' | 'notIn';
    readonly capture: string;
  };
}

/** A compiled correlation. */
export type Correlation =
  | {
      readonly type: 'count';
      readonly groupBy: GroupBy;
      readonly windowMs: number;
      readonly threshold: number;
    }
  | {
      readonly type: 'distinct';
      readonly groupBy: GroupBy;
      readonly windowMs: number;
      readonly value: Accessor;
      readonly threshold: number;
    }
  | {
      readonly type: 'sum';
      readonly groupBy: GroupBy;
      readonly windowMs: number;
      readonly value: Accessor;
      readonly threshold: number;
      readonly minCount: number;
    }
  | {
      readonly type: 'sequence';
      readonly groupBy: GroupBy;
      readonly windowMs: number;
      readonly steps: readonly SequenceStep[];
    }
  | {
      readonly type: 'absence';
      readonly groupBy: GroupBy;
      readonly windowMs: number;
      readonly expect: Predicate;
    }
  | {
      readonly type: 'first_seen';
      readonly groupBy: GroupBy;
      readonly value: Accessor;
      readonly threshold: number;
      readonly windowMs: number;
    }
  | {
      readonly type: 'baseline_deviation';
      readonly groupBy: GroupBy;
      readonly windowMs: number;
      readonly metric: string;
      readonly key: Accessor;
      readonly factor: number;
      readonly minSamples: number;
      readonly minCount: number;
    }
  | { readonly type: 'seq_gap'; readonly groupBy: GroupBy };

/** What a finding asks the enforcement side to do. */
export interface Intervention {
  readonly action: InterventionAction;
  readonly tools?: readonly string[];
  readonly ttlMs?: number;
}

/** A validated, compiled rule. */
export interface Rule {
  readonly id: string;
  readonly description: string;
  readonly severity: Severity;
  readonly mode: RuleMode;
  readonly match: Predicate;
  readonly correlate?: Correlation;
  readonly intervene?: Intervention;
  readonly spec: RuleSpec;
}

/** Parses a YAML document holding a list of rules; throws `ObserverRuleError` with every problem. */
export function parseRules(text: string): Rule[] {
  let data: unknown;
  try {
    data = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (error) {
    throw new ObserverRuleError([
      {
        ruleId: '(document)',
        path: '(root)',
        message: `invalid YAML: ${(error as Error).message.split('\n')[0]}`,
      },
    ]);
  }
  return compileRules(data);
}

/** Validates and compiles already-parsed rules (a list); throws `ObserverRuleError` with every problem. */
export function compileRules(data: unknown): Rule[] {
  if (!Array.isArray(data)) {
    throw new ObserverRuleError([
      { ruleId: '(document)', path: '(root)', message: 'expected a list of rules' },
    ]);
  }
  const problems: RuleProblem[] = [];
  const rules: Rule[] = [];
  const seen = new Set<string>();
  data.forEach((raw: unknown, index) => {
    const rawId = (raw as { id?: unknown } | null)?.id;
    const ruleId = typeof rawId === 'string' && rawId.length > 0 ? rawId : `rules[${index}]`;
    if (seen.has(ruleId)) problems.push({ ruleId, path: 'id', message: 'duplicate rule id' });
    seen.add(ruleId);
    const parsed = ruleSchema.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        problems.push({ ruleId, path: formatPath(issue.path) || '(rule)', message: issue.message });
      }
      // report the condition's own problems too, so one pass shows everything
      const match = (raw as { match?: unknown } | null)?.match;
      if (match !== undefined) {
        const local: ConditionProblem[] = [];
        compileCondition(match, 'match', local);
        for (const p of local) problems.push({ ruleId, path: p.path, message: p.message });
      }
      return;
    }
    const local: ConditionProblem[] = [];
    const rule = compileRule(parsed.data, local);
    for (const p of local) problems.push({ ruleId, path: p.path, message: p.message });
    if (rule && local.length === 0) rules.push(rule);
  });
  if (problems.length > 0) throw new ObserverRuleError(problems);
  return rules;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

function compileRule(spec: RuleSpec, problems: ConditionProblem[]): Rule | undefined {
  const match = compileCondition(spec.match, 'match', problems);
  const correlate = spec.correlate ? compileCorrelation(spec.correlate, problems) : undefined;
  let intervene: Intervention | undefined;
  if (spec.intervene) {
    const { action, tools, ttl } = spec.intervene;
    if (action === 'freeze' && tools === undefined)
      problems.push({ path: 'intervene.tools', message: 'freeze needs the tools to freeze' });
    const ttlMs = ttl === undefined ? undefined : duration(ttl, 'intervene.ttl', MAX_TTL_MS, problems);
    intervene = {
      action,
      ...(tools === undefined ? {} : { tools }),
      ...(ttlMs === undefined ? {} : { ttlMs }),
    };
  }
  if (!match || problems.length > 0) return undefined;
  return {
    id: spec.id,
    description: spec.description,
    severity: spec.severity,
    mode: spec.mode,
    match,
    ...(correlate ? { correlate } : {}),
    ...(intervene ? { intervene } : {}),
    spec,
  };
}

function duration(text: string, path: string, max: number, problems: ConditionProblem[]): number | undefined {
  const ms = parseDuration(text);
  if (ms === undefined) {
    problems.push({ path, message: `expected a duration such as 90s, 5m, 1h (got "${text}")` });
    return undefined;
  }
  if (ms > max) {
    problems.push({ path, message: `duration ${text} exceeds the maximum of ${max / 3_600_000}h` });
    return undefined;
  }
  return ms;
}

function field(raw: string, path: string, problems: ConditionProblem[]): Accessor {
  const problem = checkFieldPath(raw);
  if (problem) problems.push({ path, message: problem });
  return compileAccessor(problem ? 'kind' : raw);
}

function withTransform(get: Accessor, transform: ValueTransform | undefined): Accessor {
  if (transform === undefined) return get;
  const apply = TRANSFORMS[transform];
  return (event) => {
    const v = get(event);
    return typeof v === 'string' ? apply(v) : undefined;
  };
}

/** Lower-case `host[:port]` of a URL, or `undefined` when it does not parse or has no host. */
export function hostOf(url: string): string | undefined {
  try {
    return new URL(url).host.toLowerCase() || undefined;
  } catch {
    return undefined;
  }
}

const TRANSFORMS: Record<ValueTransform, (value: string) => string | undefined> = {
  dirname: (value) => {
    const path = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value.replace(/[?#].*$/, '') : value;
    const cut = path.replace(/\/+$/, '').lastIndexOf('/');
    if (cut < 0) return undefined;
    return cut === 0 ? '/' : path.slice(0, cut);
  },
  host: (value) => hostOf(value),
  lower: (value) => value.toLowerCase(),
};

function compileGroupBy(fields: readonly string[], problems: ConditionProblem[]): GroupBy {
  return {
    fields,
    accessors: fields.map((f, i) => field(f, `correlate.groupBy[${i}]`, problems)),
  };
}

function compileCorrelation(spec: CorrelateSpec, problems: ConditionProblem[]): Correlation | undefined {
  const group = compileGroupBy(spec.groupBy, problems);
  const win = (text: string): number => duration(text, 'correlate.window', MAX_WINDOW_MS, problems) ?? 0;
  switch (spec.type) {
    case 'count':
      return { type: spec.type, groupBy: group, windowMs: win(spec.window), threshold: spec.threshold };
    case 'distinct':
      return {
        type: spec.type,
        groupBy: group,
        windowMs: win(spec.window),
        value: withTransform(field(spec.field, 'correlate.field', problems), spec.transform),
        threshold: spec.threshold,
      };
    case 'sum':
      return {
        type: spec.type,
        groupBy: group,
        windowMs: win(spec.window),
        value: field(spec.field, 'correlate.field', problems),
        threshold: spec.threshold,
        minCount: spec.minCount ?? 1,
      };
    case 'sequence': {
      const captured = new Set<string>();
      const steps: SequenceStep[] = spec.steps.map((step, i) => {
        const at = `correlate.steps[${i}]`;
        const match = compileCondition(step.match, `${at}.match`, problems) ?? (() => false);
        let relation: SequenceStep['relation'];
        if (step.relation) {
          if (!captured.has(step.relation.capture))
            problems.push({
              path: `${at}.relation.capture`,
              message: `"${step.relation.capture}" is not captured by an earlier step`,
            });
          relation = {
            get: field(step.relation.field, `${at}.relation.field`, problems),
            op: step.relation.op,
            capture: step.relation.capture,
          };
        }
        let capture: SequenceStep['capture'];
        if (step.capture) {
          capture = { as: step.capture.as, get: field(step.capture.field, `${at}.capture.field`, problems) };
          captured.add(step.capture.as);
        }
        return { match, ...(capture ? { capture } : {}), ...(relation ? { relation } : {}) };
      });
      return { type: spec.type, groupBy: group, windowMs: win(spec.window), steps };
    }
    case 'absence': {
      const expect = compileCondition(spec.expect, 'correlate.expect', problems) ?? (() => false);
      return { type: spec.type, groupBy: group, windowMs: win(spec.window), expect };
    }
    case 'first_seen': {
      const threshold = spec.threshold ?? 1;
      if (threshold > 1 && spec.window === undefined)
        problems.push({ path: 'correlate.window', message: 'a first_seen threshold above 1 needs a window' });
      return {
        type: spec.type,
        groupBy: group,
        value: withTransform(field(spec.field, 'correlate.field', problems), spec.transform),
        threshold,
        windowMs: spec.window === undefined ? 0 : win(spec.window),
      };
    }
    case 'baseline_deviation':
      return {
        type: spec.type,
        groupBy: group,
        windowMs: win(spec.window),
        metric: spec.metric,
        key: field(spec.key, 'correlate.key', problems),
        factor: spec.factor,
        minSamples: spec.minSamples ?? 30,
        minCount: spec.minCount ?? 1,
      };
    case 'seq_gap':
      return { type: spec.type, groupBy: group };
  }
}
