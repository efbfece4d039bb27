/**
 * Fan-out: one append to several audit clients (e.g. the file sink and a console printer).
 * @module
 */
import { AuditError, AuditErrorCode } from './errors.ts';
import type { AuditClient, AuditEvent, AuditEventInput } from './types.ts';

/**
 * A client that appends to `first`, then hands the event `first` stored (with its seq and ts) to
 * every other client, and resolves to `first`'s stored event. If `first` refuses, nobody else sees
 * the event; if another client fails, the promise rejects with AUDIT_FANOUT_FAILED (the event is
 * nevertheless recorded by `first`; a retry with the same `id` is deduplicated there).
 */
export function fanOut(first: AuditClient, ...rest: AuditClient[]): AuditClient {
  return {
    async append(input: AuditEventInput): Promise<AuditEvent> {
      const stored = await first.append(input);
      const results = await Promise.allSettled(rest.map((client) => client.append(stored)));
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      if (failures.length > 0) {
        const reasons = failures.map((f) => (f instanceof Error ? f.message : String(f))).join('; ');
        throw new AuditError(
          AuditErrorCode.fanOutFailed,
          `audit event #${stored.seq} was stored, but ${failures.length} of ${rest.length} further client(s) failed: ${reasons}`,
          { cause: failures.length === 1 ? failures[0] : new AggregateError(failures) },
        );
      }
      return stored;
    },
  };
}
