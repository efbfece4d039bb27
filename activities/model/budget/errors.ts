/**
 * Errors of the token budget stores: one class, a stable `BUDGET_*` code.
 * @module
 */
import { AgentRuntimeError } from '../../../policy/errors.ts';

/** Stable codes of {@link BudgetError}. */
export const BudgetErrorCode = {
  /** The store configuration (kind, file, connection string, schema, TTL) is invalid. */
  configInvalid: 'BUDGET_CONFIG_INVALID',
  /** The database could not be opened, connected to or migrated. */
  openFailed: 'BUDGET_OPEN_FAILED',
  /** The database was written by a newer version of agent-runtime. */
  schemaTooNew: 'BUDGET_SCHEMA_TOO_NEW',
  /** An argument is malformed (ids, day key, token counts, limits); nothing is stored. */
  invalidInput: 'BUDGET_INVALID_INPUT',
  /** No reservation has this id. */
  reservationUnknown: 'BUDGET_RESERVATION_UNKNOWN',
  /** The reservation was released; it cannot be reconciled. */
  reservationReleased: 'BUDGET_RESERVATION_RELEASED',
  /** A statement failed (connection lost, lock timeout, …). */
  queryFailed: 'BUDGET_QUERY_FAILED',
  /** The store was closed. */
  closed: 'BUDGET_CLOSED',
} as const;
export type BudgetErrorCode = (typeof BudgetErrorCode)[keyof typeof BudgetErrorCode];

/** A budget store refused or failed an operation; `code` is a {@link BudgetErrorCode}. */
export class BudgetError extends AgentRuntimeError {
  declare readonly code: BudgetErrorCode;
  constructor(code: BudgetErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
