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
