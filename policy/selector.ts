/**
 * Principal selectors, one meaning everywhere (directors, approvers, escalation, `when.director`):
 * a principal is selected when it is listed, holds any listed role, or its highest role level
 * reaches `minLevel`. Shared by the loader's checks and the compiler so the two cannot drift.
 * @module
 */

/** The fields of a selector that choose principals. */
export interface SelectorFields {
  readonly roles?: readonly string[] | undefined;
  readonly minLevel?: number | undefined;
  readonly principals?: readonly string[] | undefined;
}

/** Ids of the principals a selector picks, in document order. */
export function selectPrincipals(
  principals: readonly { readonly id: string; readonly roles: readonly string[] }[],
  levelOfRole: (role: string) => number | undefined,
  selector: SelectorFields,
): string[] {
  const roles = new Set(selector.roles ?? []);
  const ids = new Set(selector.principals ?? []);
  const { minLevel } = selector;
  const levelOf = (held: readonly string[]): number => Math.max(-1, ...held.map((r) => levelOfRole(r) ?? -1));
  return principals
    .filter(
      (p) =>
        ids.has(p.id) ||
        p.roles.some((r) => roles.has(r)) ||
        (minLevel !== undefined && levelOf(p.roles) >= minLevel),
    )
    .map((p) => p.id);
}
