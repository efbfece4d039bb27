/**
 * An in-memory audit sink for tests: the file sink's validation, dedupe and seq semantics,
 * without the file.
 * @module
 */
import { DedupeWindow, encodeEvent, prepareEvent, resolveSinkOptions, timestamp } from './event.ts';
import type { SinkOptions } from './event.ts';
import type { AuditClient, AuditEvent, AuditEventInput } from './types.ts';

/** An in-memory audit sink. */
export interface MemoryAudit extends AuditClient {
  /** A snapshot of every stored event, in seq order (events are frozen). */
  events(): readonly AuditEvent[];
}

/** Creates an empty in-memory sink; seq starts at 1. */
export function createMemoryAudit(options: SinkOptions = {}): MemoryAudit {
  const { clock, dedupeWindow } = resolveSinkOptions(options);
  const dedupe = new DedupeWindow(dedupeWindow);
  const stored: AuditEvent[] = [];
  return {
    // async: validation failures reject rather than throw
    async append(input: AuditEventInput): Promise<AuditEvent> {
      const prepared = prepareEvent(input);
      const seen = dedupe.get(prepared.id);
      if (seen !== undefined) return seen;
      const { event } = encodeEvent(prepared, stored.length + 1, timestamp(clock));
      stored.push(event);
      dedupe.remember(event);
      return event;
    },
    events: () => Object.freeze(stored.slice()),
  };
}
