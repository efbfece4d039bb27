/**
 * The observer: a pure rule engine over audit events (see `rules/`).
 * @module
 */
export { ObserverErrorCode, ObserverRuleError, ObserverFixtureError, formatRuleProblem } from './errors.ts';
export type { RuleProblem } from './errors.ts';
export {
  ConditionOperator,
  ENVELOPE_FIELDS,
  MAX_CONDITION_DEPTH,
  MAX_MATCH_INPUT,
  MAX_PATH_SEGMENTS,
  compileCondition,
} from './rules/condition.ts';
export type { Predicate } from './rules/condition.ts';
export {
  CorrelationType,
  InterventionAction,
  MAX_TTL_MS,
  MAX_WINDOW_MS,
  RuleMode,
  Severity,
  ValueTransform,
  compileRules,
  parseRules,
} from './rules/schema.ts';
export type { Correlation, Intervention, Rule, RuleSpec } from './rules/schema.ts';
export { DEFAULT_LIMITS, baselineTable, createEngine, findingId } from './rules/engine.ts';
export type {
  Baseline,
  BaselineLookup,
  BaselineTable,
  Engine,
  EngineLimits,
  EngineOptions,
  EngineStats,
  Finding,
} from './rules/engine.ts';
export { BUILTIN_RULES_YAML, builtinRules } from './rules/builtin.ts';
export { FIXTURE_EPOCH, expandFixture, runEvents, runFixtures } from './rules/fixtures.ts';
export {
  BASELINE_SNAPSHOT_VERSION,
  BaselineMetric,
  DEFAULT_BASELINE_LIMITS,
  ObserverStateError,
  ObserverStateErrorCode,
  createBaselineLearner,
} from './baselines.ts';
export type {
  BaselineLearner,
  BaselineLearnerOptions,
  BaselineLimits,
  BaselineSnapshot,
  BaselineStats,
} from './baselines.ts';
export { FS_TOOL_PREFIX, HTTP_TOOL_PREFIX, directoryOf, eventSubjects, hostOf } from './subjects.ts';
export type { EventSubjects } from './subjects.ts';
export {
  GOVERNANCE_CHANGE_DOMAIN,
  GovernanceChangeError,
  GovernanceChangeRefusal,
  GovernanceChangeSchema,
  MAX_CLOCK_SKEW_MS,
  MAX_LEARNING_WINDOW_MS,
  governanceChangeEvent,
  governanceChangeSigningBytes,
  learningWindowMs,
  parseGovernanceChange,
  signGovernanceChange,
  verifyGovernanceChange,
} from './governance-change.ts';
export type { GovernanceChange, GovernanceChangeCheck, SignedGovernanceChange } from './governance-change.ts';
export {
  Classification,
  DEFAULT_LEARNING_LIMITS,
  LEARNING_SNAPSHOT_VERSION,
  createLearningWindows,
  isDeclared,
} from './learning.ts';
export type {
  GovernanceChangeReceipt,
  LearningLimits,
  LearningSnapshot,
  LearningWindow,
  LearningWindows,
  LearningWindowsOptions,
  PolicyAppliedOutcome,
} from './learning.ts';
