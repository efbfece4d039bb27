/**
 * Governance documents and the decision point. Pure: no I/O, no Node built-ins, safe to import
 * from Temporal workflow code.
 * @module
 */
export * from './tiers.ts';
export * from './errors.ts';
export { parseDuration } from './duration.ts';
export { canonicalJson, digestOf } from './canonical.ts';
export { compileGlob, checkGlob } from './glob.ts';
export type { Glob, GlobSeparator } from './glob.ts';
export { normaliseResource } from './resource.ts';
export { checkRegexSafety } from './regex-safety.ts';
export * from './schema.ts';
export {
  parseGovernance,
  parseGovernanceOrThrow,
  validateGovernance,
  policyVersionOf,
  formatPath,
} from './load.ts';
export type { LoadResult, LoadedGovernance } from './load.ts';
export { compilePolicy } from './compile.ts';
export type { ApprovalRequirement, CompiledPolicy, CompiledRule } from './compile.ts';
export { decide, isFrozen } from './decide.ts';
export { offeredTools, prohibitedOutright } from './offer.ts';
export type { ActionRequest, Decision, DecisionContext, Denial } from './decide.ts';
export { toolCatalog } from './tool-spec.ts';
export type { AnyToolSpec, ToolCatalog, ToolEffect, ToolSpec } from './tool-spec.ts';
export {
  actionDigest,
  keyIdOf,
  signVote,
  SignedVoteSchema,
  tallyVotes,
  verifyVote,
  VOTE_DOMAIN,
  VotePayloadSchema,
  VoteRefusal,
  voteSigningBytes,
} from './votes.ts';
export type { ActionIdentity, ExpectedAction, SignedVote, Tally, VoteCheck, VotePayload } from './votes.ts';
