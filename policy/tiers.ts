/**
 * Tiers, postures and decision codes: const objects plus union types (no `enum`), so the same
 * values feed zod schemas, switch exhaustiveness checks and audit records.
 * @module
 */

/** Action tiers, least to most restrictive. */
export const Tier = {
  autonomous: 'autonomous',
  preapproved: 'preapproved',
  approval: 'approval',
  prohibited: 'prohibited',
} as const;
export type Tier = (typeof Tier)[keyof typeof Tier];
export const TIERS: readonly Tier[] = Object.freeze(Object.values(Tier));

/** Higher rank = more restrictive. The most restrictive matching rule wins. */
export const TIER_RANK: Readonly<Record<Tier, number>> = Object.freeze({
  autonomous: 0,
  preapproved: 1,
  approval: 2,
  prohibited: 3,
});

/** Run posture set by operators or the observer; applied after rule evaluation. */
export const Posture = {
  normal: 'normal',
  conservative: 'conservative',
  revoked: 'revoked',
} as const;
export type Posture = (typeof Posture)[keyof typeof Posture];
export const POSTURES: readonly Posture[] = Object.freeze(Object.values(Posture));

/** Stable machine-readable cause of a decision; `reason` carries the human-readable text. */
export const DecisionCode = {
  ruleMatched: 'rule_matched',
  default: 'default',
  invalidArguments: 'invalid_arguments',
  invalidResource: 'invalid_resource',
  unknownTool: 'unknown_tool',
  postureConservative: 'posture_conservative',
  toolFrozen: 'tool_frozen',
  postureRevoked: 'posture_revoked',
  internalError: 'internal_error',
} as const;
export type DecisionCode = (typeof DecisionCode)[keyof typeof DecisionCode];

/** Approval channels a rule may name. */
export const Channel = {
  slack: 'slack',
  email: 'email',
  web: 'web',
  cli: 'cli',
  log: 'log',
} as const;
export type Channel = (typeof Channel)[keyof typeof Channel];
export const CHANNELS: readonly Channel[] = Object.freeze(Object.values(Channel));
