/**
 * Errors of the model step: one class, a stable code per cause, and whether retrying can help.
 * Across the activity boundary a {@link ModelError} becomes an `ApplicationFailure` whose `type`
 * is the code, so the workflow's retry policy skips the non-retryable ones.
 * @module
 */
import { ApplicationFailure } from '@temporalio/common';
import { AgentRuntimeError } from '../../policy/errors.ts';

/** Stable codes of the errors a model provider throws. */
export const ModelErrorCode = {
  /** The provider did not answer within the time limit. */
  timeout: 'MODEL_TIMEOUT',
  /** Too many requests; `retryAfterMs` says when to try again, when the provider said. */
  rateLimit: 'MODEL_RATE_LIMIT',
  overloaded: 'MODEL_OVERLOADED',
  /** A 5xx answer or no answer at all (connection refused, reset). */
  serverError: 'MODEL_SERVER_ERROR',
  /** The conversation does not fit the model's context window. */
  contextLength: 'MODEL_CONTEXT_LENGTH',
  /** The provider refused the request under its content policy. */
  contentPolicy: 'MODEL_CONTENT_POLICY',
  /** Missing, wrong or insufficient credentials. */
  auth: 'MODEL_AUTH',
  /** The provider rejected the request as malformed, or the configuration cannot be sent. */
  badRequest: 'MODEL_BAD_REQUEST',
  /** The provider answered with something that is not a valid completion. */
  badResponse: 'MODEL_BAD_RESPONSE',
  /** The `scripted` provider's script is invalid. */
  scriptInvalid: 'MODEL_SCRIPT_INVALID',
  /** A token budget (the run's, or the agent's for the day) cannot cover the call: the run ends. */
  budgetExhausted: 'MODEL_BUDGET_EXHAUSTED',
} as const;
export type ModelErrorCode = (typeof ModelErrorCode)[keyof typeof ModelErrorCode];

const NON_RETRYABLE: ReadonlySet<ModelErrorCode> = new Set([
  ModelErrorCode.contentPolicy,
  ModelErrorCode.auth,
  ModelErrorCode.badRequest,
  ModelErrorCode.contextLength,
  ModelErrorCode.scriptInvalid,
  ModelErrorCode.budgetExhausted,
]);

/** Whether the same request can succeed when retried unchanged. */
export function isRetryableModelError(code: ModelErrorCode): boolean {
  return !NON_RETRYABLE.has(code);
}

/** A model call that failed, with a typed {@link ModelErrorCode}. Messages never contain credentials. */
export class ModelError extends AgentRuntimeError {
  declare readonly code: ModelErrorCode;
  /** Whether retrying the same request can help (see {@link isRetryableModelError}). */
  readonly retryable: boolean;
  /** How long the provider asked us to wait before retrying, when it said. */
  readonly retryAfterMs: number | undefined;
  /** The HTTP status the provider answered with, when there was one. */
  readonly status: number | undefined;

  constructor(
    code: ModelErrorCode,
    message: string,
    options: { retryAfterMs?: number; status?: number; cause?: unknown } = {},
  ) {
    super(code, message, 'cause' in options ? { cause: options.cause } : undefined);
    this.retryable = isRetryableModelError(code);
    this.retryAfterMs = options.retryAfterMs;
    this.status = options.status;
  }
}

/**
 * Converts a {@link ModelError} into the `ApplicationFailure` an activity throws: `type` is the
 * code, non-retryable codes are marked so, and a provider's retry-after becomes `nextRetryDelay`.
 */
export function toApplicationFailure(error: ModelError): ApplicationFailure {
  const details = [
    { code: error.code, status: error.status ?? null, retryAfterMs: error.retryAfterMs ?? null },
  ];
  return ApplicationFailure.create({
    type: error.code,
    message: error.message,
    nonRetryable: !error.retryable,
    details,
    ...(error.retryAfterMs === undefined ? {} : { nextRetryDelay: error.retryAfterMs }),
  });
}
