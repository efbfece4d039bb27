/**
 * Observer errors: `AgentRuntimeError` subclasses with stable `OBSERVER_*` codes.
 * @module
 */
import { AgentRuntimeError } from '../policy/errors.ts';

/** Stable error codes raised by the observer. */
export const ObserverErrorCode = {
  ruleInvalid: 'OBSERVER_RULE_INVALID',
  fixtureInvalid: 'OBSERVER_FIXTURE_INVALID',
} as const;
export type ObserverErrorCode = (typeof ObserverErrorCode)[keyof typeof ObserverErrorCode];

/** One problem found in a rule document. */
export interface RuleProblem {
  /** The rule's `id`, or `rules[3]` when the rule has no usable id, or `(document)`. */
  readonly ruleId: string;
  /** Path inside the rule, such as `correlate.window` or `match.and[1].matches`; `(rule)` for the whole rule. */
  readonly path: string;
  readonly message: string;
}

/** Formats one problem as `rule "id": path: message`. */
export function formatRuleProblem(problem: RuleProblem): string {
  return `rule "${problem.ruleId}": ${problem.path}: ${problem.message}`;
}

/** A rule document failed to parse or validate; carries every problem at once. */
export class ObserverRuleError extends AgentRuntimeError {
  readonly problems: readonly RuleProblem[];
  constructor(problems: readonly RuleProblem[]) {
    super(
      ObserverErrorCode.ruleInvalid,
      `invalid observer rules (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map(formatRuleProblem).join('\n'),
    );
    this.problems = problems;
  }
}

/** A rule fixture could not be expanded into audit events. */
export class ObserverFixtureError extends AgentRuntimeError {
  constructor(message: string) {
    super(ObserverErrorCode.fixtureInvalid, message);
  }
}
