/**
 * Errors of the tamper-evident audit store: one class, stable `AUDIT_*` codes.
 * @module
 */
import { AgentRuntimeError } from '../policy/errors.ts';

/** Stable codes of {@link AuditStoreError}. */
export const AuditStoreErrorCode = {
  /** The store configuration or an option is invalid. */
  configInvalid: 'AUDIT_STORE_CONFIG_INVALID',
  /** The database could not be opened, connected to or migrated. */
  openFailed: 'AUDIT_STORE_OPEN_FAILED',
  /** The database was written by a newer version of agent-runtime. */
  schemaTooNew: 'AUDIT_STORE_SCHEMA_TOO_NEW',
  /** A stream name, read or search filter is malformed. */
  invalidInput: 'AUDIT_STORE_INVALID_INPUT',
  /** A stored row does not parse back into a record. */
  rowInvalid: 'AUDIT_STORE_ROW_INVALID',
  /** A statement failed (connection lost, lock timeout, …). */
  queryFailed: 'AUDIT_STORE_QUERY_FAILED',
  /** A checkpoint was asked for a stream with no records. */
  emptyStream: 'AUDIT_STORE_EMPTY_STREAM',
  /** The store was closed. */
  closed: 'AUDIT_STORE_CLOSED',
} as const;
export type AuditStoreErrorCode = (typeof AuditStoreErrorCode)[keyof typeof AuditStoreErrorCode];

/** The audit store refused or failed an operation; `code` is an {@link AuditStoreErrorCode}. */
export class AuditStoreError extends AgentRuntimeError {
  declare readonly code: AuditStoreErrorCode;
  constructor(code: AuditStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
