/**
 * The governance document format (`schemaVersion: 1`) as a zod schema. Unknown keys are errors
 * everywhere. Leaf checks (durations, globs, regexes) live here; checks that span the document
 * (role and principal references, quorum, duplicate ids) live in `cross-check.ts`.
 * @module
 */
import { z } from 'zod';
import { parseDuration } from './duration.ts';
import { checkGlob } from './glob.ts';
import { checkRegexSafety } from './regex-safety.ts';
import { CHANNELS, TIERS } from './tiers.ts';

// an "at least one key" check is noise next to an unknown-key error on the same object
const onlyWhenClean = (payload: { issues: readonly unknown[] }): boolean => payload.issues.length === 0;

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ARG_PATH_PATTERN = /^[A-Za-z_$][\w$-]*(?:\.[A-Za-z_$][\w$-]*)*$/;

const id = (what: string) =>
  z.string({ error: `expected ${what} (a string)` }).regex(ID_PATTERN, {
    error: `expected ${what}: letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 characters`,
  });

const text = (max: number) => z.string().trim().min(1, { error: 'expected a non-empty string' }).max(max);

const duration = z
  .string({ error: 'expected a duration such as 90s, 15m, 4h, 1d or PT4H' })
  .refine((value) => parseDuration(value) !== undefined, {
    error: (issue) =>
      `expected a positive duration such as 90s, 15m, 4h, 1d or PT4H (at most 366d), got ${JSON.stringify(issue.input)}`,
  });

const globOf = (separator: '/' | '.', allowExclusion: boolean) =>
  z.string({ error: 'expected a glob (a string)' }).superRefine((value, ctx) => {
    const body = allowExclusion && value.startsWith('!') ? value.slice(1) : value;
    const problem = checkGlob(body, separator);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
  });

/** Selects principals: listed ids, holders of any listed role, or anyone at or above a level. */
export const PrincipalSelectorSchema = z
  .strictObject({
    roles: z.array(id('a role name')).min(1).optional(),
    minLevel: z.int().min(0).max(1000).optional(),
    principals: z.array(id('a principal id')).min(1).optional(),
  })
  .refine((s) => s.roles !== undefined || s.minLevel !== undefined || s.principals !== undefined, {
    error: 'expected at least one of roles, minLevel, principals',
    when: onlyWhenClean,
  });
export type PrincipalSelector = z.infer<typeof PrincipalSelectorSchema>;

export const ApprovalSpecSchema = z.strictObject({
  approvers: PrincipalSelectorSchema,
  quorum: z.int().min(1).max(20).default(1),
  timeout: duration,
  channels: z.array(z.enum(CHANNELS)).min(1).optional(),
  remindAfter: duration.optional(),
  escalate: z.strictObject({ after: duration, to: PrincipalSelectorSchema }).optional(),
  /** High-risk requests cannot be approved by email alone. */
  highRisk: z.boolean().optional(),
});
export type ApprovalSpec = z.infer<typeof ApprovalSpecSchema>;

const scalar = z.union([z.string(), z.number(), z.boolean()], {
  error: (issue) => `expected a string, number or boolean, got ${describeValue(issue.input)}`,
});

/** Constraint on one argument; every operator given must hold. Closed operator set. */
export const ArgConstraintSchema = z
  .strictObject({
    eq: scalar.optional(),
    ne: scalar.optional(),
    in: z.array(scalar).min(1).optional(),
    notIn: z.array(scalar).min(1).optional(),
    lt: z.number().optional(),
    lte: z.number().optional(),
    gt: z.number().optional(),
    gte: z.number().optional(),
    matches: z
      .string({ error: 'expected a regular expression (a string)' })
      .superRefine((value, ctx) => {
        const problem = checkRegexSafety(value);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem, input: value });
      })
      .optional(),
    prefix: z.string().min(1).optional(),
  })
  .refine((c) => Object.keys(c).length > 0, {
    error: 'expected at least one operator: eq, ne, in, notIn, lt, lte, gt, gte, matches, prefix',
    when: onlyWhenClean,
  });
export type ArgConstraint = z.infer<typeof ArgConstraintSchema>;
export const CONSTRAINT_OPERATORS = [
  'eq',
  'ne',
  'in',
  'notIn',
  'lt',
  'lte',
  'gt',
  'gte',
  'matches',
  'prefix',
] as const;

export const WhenSchema = z.strictObject({
  args: z
    .record(
      z.string().regex(ARG_PATH_PATTERN, {
        error: 'expected an argument name or dotted path such as amountCents or recipient.domain',
      }),
      ArgConstraintSchema,
    )
    .optional(),
  director: PrincipalSelectorSchema.optional(),
});

export const RuleSchema = z.strictObject({
  id: id('a rule id'),
  description: text(1000).optional(),
  tool: globOf('.', false),
  resources: z.array(globOf('/', true)).min(1).optional(),
  when: WhenSchema.optional(),
  tier: z.enum(TIERS),
  approval: ApprovalSpecSchema.optional(),
  limits: z.strictObject({ perRun: z.int().min(1).max(1_000_000) }).optional(),
  reason: text(500).optional(),
});
export type Rule = z.infer<typeof RuleSchema>;

export const DefaultActionSchema = z.strictObject({
  tier: z.enum(['approval', 'prohibited'], {
    error: (issue) =>
      `expected approval or prohibited (an unmatched action must ask or be denied), got ${describeValue(issue.input)}`,
  }),
  approval: ApprovalSpecSchema.optional(),
  reason: text(500).optional(),
});

export const RoleSchema = z.strictObject({
  level: z.int().min(0).max(1000),
  description: text(500).optional(),
});

export const PrincipalSchema = z.strictObject({
  id: id('a principal id'),
  name: text(200).optional(),
  roles: z.array(id('a role name')).min(1),
  email: z.email({ error: 'expected an email address' }).optional(),
  slack: z.strictObject({ team: id('a Slack team id'), user: id('a Slack user id') }).optional(),
});
export type Principal = z.infer<typeof PrincipalSchema>;

export const GovernanceDocumentSchema = z.strictObject({
  schemaVersion: z.literal(1, { error: (issue) => `expected 1, got ${describeValue(issue.input)}` }),
  identity: z.strictObject({
    id: id('an agent id'),
    name: text(200),
    purpose: text(2000),
    owner: text(200),
    values: z.array(text(500)).optional(),
  }),
  context: z
    .strictObject({
      organization: text(200).optional(),
      environment: text(200).optional(),
      situation: text(4000).optional(),
      policies: z.array(text(1000)).optional(),
    })
    .optional(),
  authority: z.strictObject({
    roles: z.record(id('a role name'), RoleSchema),
    principals: z.array(PrincipalSchema).min(1),
    directors: PrincipalSelectorSchema,
  }),
  actions: z.strictObject({
    default: DefaultActionSchema,
    rules: z.array(RuleSchema).default([]),
  }),
});

/** A validated governance document (defaults applied). */
export type GovernanceDocument = z.infer<typeof GovernanceDocumentSchema>;

/** Short description of a value for `got …` messages. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return `${typeof value} ${String(value)}`;
}
