/**
 * The audit client and its local sinks: an append-only JSON Lines file, an in-memory sink for
 * tests, readers, a formatter and fan-out.
 * @module
 */
export type { AuditClient, AuditEvent, AuditEventInput, AuditSource } from './types.ts';
export { AuditKind } from './types.ts';
export { AuditError, AuditErrorCode } from './errors.ts';
export type { SinkOptions } from './event.ts';
export { DEFAULT_DEDUPE_WINDOW, MAX_ATTRS_DEPTH, MAX_REF_LENGTH } from './event.ts';
export { AuditFsync, openAuditFile } from './file-sink.ts';
export type { AuditFile, AuditFileOptions } from './file-sink.ts';
export { createMemoryAudit } from './memory-sink.ts';
export type { MemoryAudit } from './memory-sink.ts';
export { FORMAT_MAX_VALUE, followAuditFile, formatAuditEvent, readAuditFile } from './read.ts';
export type { FollowOptions } from './read.ts';
export { fanOut } from './fan-out.ts';
