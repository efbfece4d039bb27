/**
 * Which tools to offer the model: every registered tool except those the policy prohibits
 * outright for this run. Offering is a courtesy to the model, not a control: the gate still
 * decides every call, so a hallucinated call to a hidden tool is denied like any other.
 * @module
 */
import type { CompiledPolicy } from './compile.ts';
import { isFrozen } from './decide.ts';
import { Posture } from './tiers.ts';
import type { ToolCatalog } from './tool-spec.ts';

/**
 * True when no call to `tool` can be allowed: an unconditional `prohibited` rule names it (no
 * resources, argument or director constraints), or the default is `prohibited` and no rule that
 * could allow it exists, or the run is revoked, or the tool is frozen.
 */
export function prohibitedOutright(
  policy: CompiledPolicy,
  tool: string,
  run: { readonly posture?: Posture; readonly frozenTools?: readonly string[] } = {},
): boolean {
  if (run.posture !== undefined && run.posture !== Posture.normal && run.posture !== Posture.conservative)
    return true;
  if (isFrozen(tool, run.frozenTools)) return true;
  const rules = policy.candidates(tool);
  const unconditional = rules.some(
    (rule) =>
      rule.tier === 'prohibited' &&
      !rule.hasResources &&
      rule.args.length === 0 &&
      rule.directors === undefined,
  );
  if (unconditional) return true;
  return policy.defaultAction.tier === 'prohibited' && rules.every((rule) => rule.tier === 'prohibited');
}

/** Names of the catalog's tools that are not {@link prohibitedOutright}, in catalog order. */
export function offeredTools(
  policy: CompiledPolicy,
  tools: ToolCatalog,
  run: { readonly posture?: Posture; readonly frozenTools?: readonly string[] } = {},
): readonly string[] {
  return [...tools.keys()].filter((name) => !prohibitedOutright(policy, name, run));
}
