/**
 * Errors: one base class, subclasses by cause, a stable string `code`. Across the workflow
 * boundary these become `ApplicationFailure`s whose `type` is the code; match on the code,
 * never on `instanceof`.
 * @module
 */

/** Stable error codes for the governance layer. */
export const GovernanceErrorCode = {
  documentInvalid: 'POLICY_DOC_INVALID',
  internal: 'POLICY_INTERNAL',
} as const;
export type GovernanceErrorCode = (typeof GovernanceErrorCode)[keyof typeof GovernanceErrorCode];

/** Base class for every error agent-runtime raises on purpose. */
export class AgentRuntimeError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem found in a governance document. */
export interface DocumentProblem {
  readonly file: string;
  /** 1-based line, when the parser knows it. */
  readonly line: number | undefined;
  /** YAML path such as `actions.rules[2].tier`; `(root)` for the whole document. */
  readonly path: string;
  readonly message: string;
}

/** Formats one problem as `file:line: path: message`. */
export function formatProblem(problem: DocumentProblem): string {
  const where = problem.line === undefined ? problem.file : `${problem.file}:${problem.line}`;
  return `${where}: ${problem.path}: ${problem.message}`;
}

/** A governance document failed to parse or validate; carries every problem at once. */
export class GovernanceDocumentError extends AgentRuntimeError {
  readonly problems: readonly DocumentProblem[];
  constructor(problems: readonly DocumentProblem[]) {
    super(
      GovernanceErrorCode.documentInvalid,
      `invalid governance document (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map(formatProblem).join('\n'),
    );
    this.problems = problems;
  }
}
