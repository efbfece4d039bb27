/**
 * The decision point: a pure, deterministic function from (compiled policy, proposed call,
 * run context) to a tier. Semantics (DESIGN.md, "Decision semantics"):
 *
 * 1. arguments are validated against the tool's schema first; invalid → prohibited;
 * 2. every rule whose tool glob, resources and `when` constraints match is collected;
 * 3. the most restrictive tier wins, ties to the first rule in file order; no match → default;
 *    a preapproved/autonomous rule whose per-run limit is spent stops matching;
 * 4. the posture overlay applies last (conservative raises to approval, frozen tools and a
 *    revoked run are prohibited);
 * 5. any internal error → prohibited.
 * @module
 */
import type { ApprovalRequirement, CompiledPolicy, CompiledRule } from './compile.ts';
import { isLiteralGlob, toolGlob } from './glob.ts';
import { normaliseResource } from './resource.ts';
import { DecisionCode, Posture, POSTURES, TIER_RANK } from './tiers.ts';
import type { Tier } from './tiers.ts';
import type { ToolCatalog } from './tool-spec.ts';

/** A proposed tool call. */
export interface ActionRequest {
  readonly tool: string;
  readonly args?: unknown;
  /**
   * For tools without a registered spec (explain only). For registered tools the resource is
   * derived from the arguments; a supplied resource that disagrees is refused.
   */
  readonly resource?: string;
  /** Principal id directing the run (authenticated by the runtime, never taken from text). */
  readonly director?: string;
}

/** Run state the decision depends on. */
export interface DecisionContext {
  readonly tools: ToolCatalog;
  /** @default 'normal' */
  readonly posture?: Posture;
  /** Tool names or tool globs frozen for this run. */
  readonly frozenTools?: readonly string[];
  /** Times each rule has been used in this run (for `limits.perRun`). */
  readonly used?: Readonly<Record<string, number>>;
  /**
   * What to do with a tool that has no registered spec: `prohibit` (the gateway: `unknown_tool`)
   * or `decide-from-rules` (`explain`: decide without argument validation, and say so).
   * @default 'prohibit'
   */
  readonly unregisteredTools?: 'prohibit' | 'decide-from-rules';
}

/** Structured denial for the model: a code and a hint, never the policy text. */
export interface Denial {
  readonly code: string;
  readonly hint: string;
}

/** The decision, as recorded in the audit log and shown in the Temporal UI. JSON-serialisable. */
export interface Decision {
  readonly tier: Tier;
  /** The deciding rule; `null` when the default applied or the call was refused before rules. */
  readonly ruleId: string | null;
  readonly code: DecisionCode;
  readonly reason: string;
  readonly approval: ApprovalRequirement | null;
  readonly posture: Posture;
  readonly policyVersion: string;
  /** The tier the rules gave before the posture overlay. */
  readonly baseTier: Tier;
  /** The normalised resource the rules saw. */
  readonly resource: string | null;
  readonly denial: Denial | null;
}

const HINTS = {
  prohibited:
    'This action is not permitted for this agent and cannot be escalated. Do not retry it; choose another approach or report that it cannot be done.',
  unknownTool: (tool: string) =>
    `There is no tool named ${JSON.stringify(tool)}. Use only the tools you were given.`,
  frozen: (tool: string) =>
    `The tool ${JSON.stringify(tool)} is temporarily unavailable for this run. Continue without it or finish.`,
  revoked: 'This run has been revoked; no further actions are permitted. Stop and report.',
  internal: 'The action could not be evaluated and was denied. Do not retry it.',
  invalidResource: 'The resource named by the arguments is not acceptable. Check the arguments.',
  noApprover: 'This action needs a human approval that is not available right now. Do not retry it.',
} as const;

/** Decides one proposed call. Never throws: internal errors give `prohibited`. */
export function decide(policy: CompiledPolicy, request: ActionRequest, context: DecisionContext): Decision {
  // an unknown posture (a typo, a newer observer) fails closed as revoked
  const given: unknown = context?.posture ?? Posture.normal;
  const posture: Posture = (POSTURES as readonly unknown[]).includes(given)
    ? (given as Posture)
    : Posture.revoked;
  try {
    if (posture !== given) throw new Error(`unknown posture ${String(given)}`);
    return decideUnsafe(policy, request, context, posture);
  } catch {
    return refusal(policy, posture, DecisionCode.internalError, 'internal_error', HINTS.internal, null);
  }
}

function decideUnsafe(
  policy: CompiledPolicy,
  request: ActionRequest,
  context: DecisionContext,
  posture: Posture,
): Decision {
  if (typeof request.tool !== 'string') throw new TypeError('tool must be a string');
  const spec = context.tools.get(request.tool);
  let args: unknown = request.args;
  let rawResource: string | undefined = request.resource;
  let note = '';

  if (spec) {
    const parsed = spec.args.safeParse(request.args ?? {});
    if (!parsed.success) {
      const issues = parsed.error.issues.map(
        (i) => `${i.path.length ? i.path.join('.') : '(arguments)'}: ${i.message}`,
      );
      return refusal(
        policy,
        posture,
        DecisionCode.invalidArguments,
        'invalid_arguments',
        `The arguments do not match the schema of ${request.tool}: ${issues.join('; ')}. Fix them and call again.`,
        null,
      );
    }
    args = parsed.data;
    const derived = spec.resource?.(parsed.data as never);
    // the resource comes from validated arguments, never from the caller's word
    if (
      request.resource !== undefined &&
      (derived === undefined || normaliseResource(request.resource) !== normaliseResource(derived))
    ) {
      return refusal(
        policy,
        posture,
        DecisionCode.invalidResource,
        'invalid_resource: the stated resource differs from the one the arguments name',
        HINTS.invalidResource,
        null,
      );
    }
    rawResource = derived;
  } else if (context.unregisteredTools === 'decide-from-rules') {
    note = `no schema registered for ${JSON.stringify(request.tool)}: decided from the rules alone, arguments not validated; `;
  } else {
    return refusal(
      policy,
      posture,
      DecisionCode.unknownTool,
      'unknown_tool',
      HINTS.unknownTool(request.tool),
      null,
    );
  }

  let resource: string | undefined;
  if (rawResource !== undefined) {
    resource = normaliseResource(rawResource);
    if (resource === undefined) {
      return refusal(
        policy,
        posture,
        DecisionCode.invalidResource,
        'invalid_resource',
        HINTS.invalidResource,
        null,
      );
    }
  }

  const used = context.used ?? {};
  let best: CompiledRule | undefined;
  for (const rule of policy.candidates(request.tool)) {
    if (best !== undefined && rule.rank <= best.rank) continue;
    if (!ruleMatches(rule, args, resource, request.director, used)) continue;
    best = rule;
    if (rule.tier === 'prohibited') break;
  }

  const baseTier: Tier = best?.tier ?? policy.defaultAction.tier;
  const base = {
    ruleId: best?.id ?? null,
    code: best ? DecisionCode.ruleMatched : DecisionCode.default,
    reason:
      note +
      (best
        ? (best.reason ?? `matched rule ${JSON.stringify(best.id)} (${best.tier})`)
        : (policy.defaultAction.reason ?? 'no rule matched: the default applies')),
    approval: best ? best.approval : policy.defaultAction.approval,
    policyVersion: policy.policyVersion,
    baseTier,
    resource: resource ?? null,
    posture,
  };

  if (posture === Posture.revoked) {
    return freeze({
      ...base,
      tier: 'prohibited',
      code: DecisionCode.postureRevoked,
      reason: 'posture_revoked: the run is revoked',
      approval: null,
      denial: { code: 'run_revoked', hint: HINTS.revoked },
    });
  }
  if (isFrozen(request.tool, context.frozenTools)) {
    return freeze({
      ...base,
      tier: 'prohibited',
      code: DecisionCode.toolFrozen,
      reason: `tool_frozen: ${request.tool} is frozen for this run`,
      approval: null,
      denial: { code: 'tool_frozen', hint: HINTS.frozen(request.tool) },
    });
  }
  if (baseTier === 'prohibited') {
    return freeze({
      ...base,
      tier: 'prohibited',
      approval: null,
      denial: { code: 'prohibited', hint: HINTS.prohibited },
    });
  }
  if (posture === Posture.conservative && TIER_RANK[baseTier] < TIER_RANK.approval) {
    const approval = policy.defaultAction.approval;
    if (approval === null) {
      return freeze({
        ...base,
        tier: 'prohibited',
        code: DecisionCode.postureConservative,
        reason: 'posture_conservative: approval required but the policy names no default approvers',
        approval: null,
        denial: { code: 'approval_unavailable', hint: HINTS.noApprover },
      });
    }
    return freeze({
      ...base,
      tier: 'approval',
      code: DecisionCode.postureConservative,
      reason: `posture_conservative: ${baseTier} raised to approval (${base.reason})`,
      approval,
      denial: null,
    });
  }
  return freeze({ ...base, tier: baseTier, denial: null });
}

function ruleMatches(
  rule: CompiledRule,
  args: unknown,
  resource: string | undefined,
  director: string | undefined,
  used: Readonly<Record<string, number>>,
): boolean {
  if (rule.perRun !== undefined && usedCount(used, rule.id) >= rule.perRun) return false;
  if (rule.hasResources) {
    if (resource === undefined) return false;
    if (!rule.positives.some((g) => g.test(resource))) return false;
    if (rule.exclusions.some((g) => g.test(resource))) return false;
  }
  if (rule.directors !== undefined && (director === undefined || !rule.directors.has(director))) return false;
  for (const check of rule.args) {
    if (!check.test(argAt(args, check.path))) return false;
  }
  return true;
}

// a count that is not a non-negative integer cannot be trusted: the limit counts as spent
function usedCount(used: Readonly<Record<string, number>>, ruleId: string): number {
  if (!Object.hasOwn(used, ruleId)) return 0;
  const count = used[ruleId];
  return Number.isInteger(count) && (count as number) >= 0 ? (count as number) : Infinity;
}

const MISSING = Symbol('missing');

function argAt(args: unknown, path: readonly string[]): unknown {
  let value: unknown = args;
  for (const key of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, key))
      return MISSING;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** Whether `tool` is named (literally or by glob) in a run's frozen-tool list. */
export function isFrozen(tool: string, frozen: readonly string[] | undefined): boolean {
  if (frozen === undefined || frozen.length === 0) return false;
  return frozen.some((pattern) => (isLiteralGlob(pattern) ? pattern === tool : toolGlob(pattern).test(tool)));
}

function refusal(
  policy: CompiledPolicy,
  posture: Posture,
  code: DecisionCode,
  reason: string,
  hint: string,
  resource: string | null,
): Decision {
  return freeze({
    tier: 'prohibited',
    ruleId: null,
    code,
    reason,
    approval: null,
    posture,
    policyVersion: policy.policyVersion,
    baseTier: 'prohibited',
    resource,
    denial: { code, hint },
  });
}

function freeze(decision: Decision): Decision {
  if (decision.denial) Object.freeze(decision.denial);
  return Object.freeze(decision);
}
