/**
 * Errors of model tracing: redaction configuration, the trace stores and the writer. Two classes
 * by cause (a configuration refused at start-up, a store operation that failed), one table of
 * stable `TRACE_*` codes.
 * @module
 */
import { AgentRuntimeError } from '../../../policy/errors.ts';

/** Stable codes of {@link TraceConfigError} and {@link TraceStoreError}. */
export const TraceErrorCode = {
  /** A redaction or store configuration is invalid (unknown kind, unsafe pattern, bad schema name, …). */
  configInvalid: 'TRACE_CONFIG_INVALID',
  /** A trace handed to a store is malformed (it is not stored). */
  invalidTrace: 'TRACE_INVALID',
  /** A search filter is malformed (non-integer limit, query too long, …). */
  invalidQuery: 'TRACE_QUERY_INVALID',
  /** The database could not be opened, connected to or migrated. */
  openFailed: 'TRACE_STORE_OPEN_FAILED',
  /** The database was written by a newer version of agent-runtime. */
  schemaTooNew: 'TRACE_STORE_SCHEMA_TOO_NEW',
  /** A stored row does not parse back into a trace. */
  rowInvalid: 'TRACE_STORE_ROW_INVALID',
  /** A statement failed (connection lost, lock timeout, …). */
  queryFailed: 'TRACE_STORE_QUERY_FAILED',
  /** The store was closed. */
  closed: 'TRACE_STORE_CLOSED',
  /** The writer's queue was full: the oldest traces were dropped. */
  queueOverflow: 'TRACE_QUEUE_OVERFLOW',
  /** A trace was written after the writer was closed (it is dropped). */
  writerClosed: 'TRACE_WRITER_CLOSED',
} as const;
export type TraceErrorCode = (typeof TraceErrorCode)[keyof typeof TraceErrorCode];

/** A redaction or trace store configuration was refused; raised at start-up, never per trace. */
export class TraceConfigError extends AgentRuntimeError {
  declare readonly code: typeof TraceErrorCode.configInvalid;
  constructor(message: string, options?: { cause?: unknown }) {
    super(TraceErrorCode.configInvalid, message, options);
  }
}

/** A trace store or writer refused or failed an operation; `code` is a {@link TraceErrorCode}. */
export class TraceStoreError extends AgentRuntimeError {
  declare readonly code: Exclude<TraceErrorCode, typeof TraceErrorCode.configInvalid>;
  constructor(
    code: Exclude<TraceErrorCode, typeof TraceErrorCode.configInvalid>,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
