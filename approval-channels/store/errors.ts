/**
 * Errors of the approval stores: one class, a stable `APPROVAL_STORE_*` code.
 * @module
 */
import { AgentRuntimeError } from '../../policy/index.ts';

/** Stable codes of {@link ApprovalStoreError}. */
export const ApprovalStoreErrorCode = {
  /** The store configuration (kind, file, connection string, schema name) is invalid. */
  configInvalid: 'APPROVAL_STORE_CONFIG_INVALID',
  /** The database could not be opened, connected to or migrated. */
  openFailed: 'APPROVAL_STORE_OPEN_FAILED',
  /** The database was written by a newer version of agent-runtime. */
  schemaTooNew: 'APPROVAL_STORE_SCHEMA_TOO_NEW',
  /** A record or patch handed to the store is malformed (it is not stored). */
  invalidInput: 'APPROVAL_STORE_INVALID_INPUT',
  /** A token, nonce or session with this key already exists (it is left unchanged). */
  duplicate: 'APPROVAL_STORE_DUPLICATE',
  /** A stored row does not parse back into a record. */
  rowInvalid: 'APPROVAL_STORE_ROW_INVALID',
  /** A statement failed (connection lost, lock timeout, …). */
  queryFailed: 'APPROVAL_STORE_QUERY_FAILED',
  /** The store was closed. */
  closed: 'APPROVAL_STORE_CLOSED',
} as const;
export type ApprovalStoreErrorCode = (typeof ApprovalStoreErrorCode)[keyof typeof ApprovalStoreErrorCode];

/** An approval store refused or failed an operation; `code` is an {@link ApprovalStoreErrorCode}. */
export class ApprovalStoreError extends AgentRuntimeError {
  declare readonly code: ApprovalStoreErrorCode;
  constructor(code: ApprovalStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
