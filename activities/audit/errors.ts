/**
 * Audit errors: one class, stable string codes.
 * @module
 */
import { AgentRuntimeError } from '../../policy/errors.ts';

/** Stable codes for audit failures. */
export const AuditErrorCode = {
  /** The event is malformed or its attrs are not JSON-serialisable. */
  invalidEvent: 'AUDIT_INVALID_EVENT',
  /** Invalid sink or reader options. */
  invalidOptions: 'AUDIT_INVALID_OPTIONS',
  /** A stored line is not a valid event, or seq is not gap-free. */
  fileCorrupt: 'AUDIT_FILE_CORRUPT',
  /** The last line is incomplete (the writer stopped mid-write). */
  truncatedTail: 'AUDIT_TRUNCATED_TAIL',
  /** Another writer holds the file's lock. */
  locked: 'AUDIT_LOCKED',
  /** The sink was closed. */
  closed: 'AUDIT_CLOSED',
  /** A write failed; the sink refuses further appends until reopened. */
  writeFailed: 'AUDIT_WRITE_FAILED',
  /** The first client stored the event but a further fan-out client failed. */
  fanOutFailed: 'AUDIT_FANOUT_FAILED',
} as const;
export type AuditErrorCode = (typeof AuditErrorCode)[keyof typeof AuditErrorCode];

/** Any failure of an audit sink or reader; match on `code`. */
export class AuditError extends AgentRuntimeError {
  declare readonly code: AuditErrorCode;
  constructor(code: AuditErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
