/**
 * Compiles a validated governance document once into matchers (globs → RegExp, `in` lists →
 * Sets, selectors → principal id sets), indexed by tool name, and freezes the result.
 * Deterministic and pure: workflow code compiles the pinned document the same way on replay.
 * @module
 */
import { parseDuration } from './duration.ts';
import { selectPrincipals } from './selector.ts';
import { compileGlob, isLiteralGlob } from './glob.ts';
import type { Glob } from './glob.ts';
import { policyVersionOf } from './load.ts';
import type { ApprovalSpec, ArgConstraint, GovernanceDocument, PrincipalSelector } from './schema.ts';
import { TIER_RANK } from './tiers.ts';
import type { Channel, Tier } from './tiers.ts';

/** Who must approve, resolved against the document's principals. JSON-serialisable. */
export interface ApprovalRequirement {
  readonly approvers: PrincipalSelector;
  /** Principal ids eligible to approve (the run's requester is excluded later, at vote time). */
  readonly eligible: readonly string[];
  readonly quorum: number;
  readonly timeoutMs: number;
  readonly channels: readonly Channel[];
  readonly remindAfterMs: number | null;
  readonly escalate: {
    readonly afterMs: number;
    readonly to: PrincipalSelector;
    readonly eligible: readonly string[];
  } | null;
  readonly highRisk: boolean;
}

/** One rule, compiled. */
export interface CompiledRule {
  readonly index: number;
  readonly id: string;
  readonly tier: Tier;
  readonly rank: number;
  readonly tool: Glob;
  readonly positives: readonly Glob[];
  readonly exclusions: readonly Glob[];
  readonly hasResources: boolean;
  readonly args: readonly CompiledArgCheck[];
  /** Principal ids that satisfy `when.director`; `undefined` when the rule has no director constraint. */
  readonly directors: ReadonlySet<string> | undefined;
  readonly perRun: number | undefined;
  readonly approval: ApprovalRequirement | null;
  readonly reason: string | undefined;
}

/** A predicate over one (possibly nested) argument. */
export interface CompiledArgCheck {
  readonly path: readonly string[];
  readonly test: (value: unknown) => boolean;
}

/** A compiled, frozen policy. */
export interface CompiledPolicy {
  readonly document: GovernanceDocument;
  readonly policyVersion: string;
  readonly agentId: string;
  readonly rules: readonly CompiledRule[];
  readonly defaultAction: {
    readonly tier: 'approval' | 'prohibited';
    readonly approval: ApprovalRequirement | null;
    readonly reason: string | undefined;
  };
  /** Principal ids allowed to start runs and direct the agent. */
  readonly directors: ReadonlySet<string>;
  /** Rules whose tool glob matches `tool`, in file order. */
  candidates(tool: string): readonly CompiledRule[];
  /** Principal ids a selector picks, in document order. */
  select(selector: PrincipalSelector): readonly string[];
}

/**
 * Longest string a `matches` pattern is run on. Longer arguments are read the restrictive way:
 * they satisfy the constraint of an approval or prohibited rule and fail that of an autonomous or
 * preapproved one, so length can neither loosen a decision nor stall it.
 */
export const MAX_MATCH_INPUT = 1024;

// bounds memory when a model invents many tool names
const CANDIDATE_CACHE_LIMIT = 4096;

/** Compiles a validated document. `policyVersion` is computed when not supplied. */
export function compilePolicy(document: GovernanceDocument, policyVersion?: string): CompiledPolicy {
  const { authority, actions } = document;
  const select = (selector: PrincipalSelector): readonly string[] =>
    Object.freeze(selectPrincipals(authority.principals, (role) => authority.roles[role]?.level, selector));
  const requirement = (spec: ApprovalSpec | undefined): ApprovalRequirement | null => {
    if (spec === undefined) return null;
    return Object.freeze({
      approvers: spec.approvers,
      eligible: select(spec.approvers),
      quorum: spec.quorum,
      timeoutMs: durationMs(spec.timeout),
      channels: Object.freeze([...(spec.channels ?? ['slack', 'email', 'web'])]),
      remindAfterMs: spec.remindAfter === undefined ? null : durationMs(spec.remindAfter),
      escalate:
        spec.escalate === undefined
          ? null
          : Object.freeze({
              afterMs: durationMs(spec.escalate.after),
              to: spec.escalate.to,
              eligible: select(spec.escalate.to),
            }),
      highRisk: spec.highRisk ?? false,
    });
  };
  const defaultApproval = requirement(actions.default.approval);

  const rules: CompiledRule[] = actions.rules.map((rule, index) => {
    const resources = rule.resources ?? [];
    return Object.freeze({
      index,
      id: rule.id,
      tier: rule.tier,
      rank: TIER_RANK[rule.tier],
      tool: compileGlob(rule.tool, '.'),
      positives: Object.freeze(resources.filter((r) => !r.startsWith('!')).map((r) => compileGlob(r, '/'))),
      exclusions: Object.freeze(
        resources.filter((r) => r.startsWith('!')).map((r) => compileGlob(r.slice(1), '/')),
      ),
      hasResources: rule.resources !== undefined,
      args: Object.freeze(
        Object.entries(rule.when?.args ?? {}).map(([path, c]) =>
          compileArgCheck(path, c, TIER_RANK[rule.tier] >= TIER_RANK.approval),
        ),
      ),
      directors: rule.when?.director === undefined ? undefined : new Set(select(rule.when.director)),
      perRun: rule.limits?.perRun,
      approval: rule.tier === 'approval' ? (requirement(rule.approval) ?? defaultApproval) : null,
      reason: rule.reason,
    });
  });

  const literalIndex = new Map<string, CompiledRule[]>();
  const globRules: CompiledRule[] = [];
  for (const rule of rules) {
    if (isLiteralGlob(rule.tool.source)) {
      const bucket = literalIndex.get(rule.tool.source) ?? [];
      bucket.push(rule);
      literalIndex.set(rule.tool.source, bucket);
    } else {
      globRules.push(rule);
    }
  }
  const cache = new Map<string, readonly CompiledRule[]>();
  const candidates = (tool: string): readonly CompiledRule[] => {
    const hit = cache.get(tool);
    if (hit) return hit;
    const literal = literalIndex.get(tool) ?? [];
    const matchedGlobs = globRules.filter((r) => r.tool.test(tool));
    const merged = Object.freeze(
      matchedGlobs.length === 0 ? literal : [...literal, ...matchedGlobs].sort((a, b) => a.index - b.index),
    );
    if (cache.size >= CANDIDATE_CACHE_LIMIT) cache.clear();
    cache.set(tool, merged);
    return merged;
  };

  return Object.freeze({
    document,
    policyVersion: policyVersion ?? policyVersionOf(document),
    agentId: document.identity.id,
    rules: Object.freeze(rules),
    defaultAction: Object.freeze({
      tier: actions.default.tier,
      approval: defaultApproval,
      reason: actions.default.reason,
    }),
    directors: new Set(select(authority.directors)),
    candidates,
    select,
  });
}

function durationMs(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new Error(`unparsable duration "${text}" in a validated document`);
  return ms;
}

type Scalar = string | number | boolean;
const isScalar = (v: unknown): v is Scalar =>
  typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function compileArgCheck(path: string, constraint: ArgConstraint, restrictive: boolean): CompiledArgCheck {
  const tests: ((value: unknown) => boolean)[] = [];
  const { eq, ne, in: inList, notIn, lt, lte, gt, gte, matches, prefix } = constraint;
  // a wrongly typed argument never satisfies a constraint, including ne and notIn
  if (eq !== undefined) tests.push((v) => isScalar(v) && typeof v === typeof eq && v === eq);
  if (ne !== undefined) tests.push((v) => isScalar(v) && typeof v === typeof ne && v !== ne);
  if (inList !== undefined) {
    const set = new Set<Scalar>(inList);
    tests.push((v) => isScalar(v) && set.has(v));
  }
  if (notIn !== undefined) {
    const set = new Set<Scalar>(notIn);
    const types = new Set(notIn.map((x) => typeof x));
    tests.push((v) => isScalar(v) && types.has(typeof v) && !set.has(v));
  }
  if (lt !== undefined) tests.push((v) => isNumber(v) && v < lt);
  if (lte !== undefined) tests.push((v) => isNumber(v) && v <= lte);
  if (gt !== undefined) tests.push((v) => isNumber(v) && v > gt);
  if (gte !== undefined) tests.push((v) => isNumber(v) && v >= gte);
  if (matches !== undefined) {
    const regex = new RegExp(matches, 'u');
    tests.push((v) => typeof v === 'string' && (v.length > MAX_MATCH_INPUT ? restrictive : regex.test(v)));
  }
  if (prefix !== undefined) tests.push((v) => typeof v === 'string' && v.startsWith(prefix));
  return Object.freeze({
    path: Object.freeze(path.split('.')),
    test: tests.length === 1 ? tests[0]! : (value: unknown) => tests.every((t) => t(value)),
  });
}
