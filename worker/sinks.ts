/**
 * The worker side of the workflows' audit sink (`workflows/audit.ts`).
 * @module
 */
import type { InjectedSinks } from '@temporalio/worker';
import type { AuditClient } from '../activities/audit/types.ts';
import type { AuditSinks } from '../workflows/audit.ts';

/**
 * Appends workflow audit events to `audit`. The worker awaits sinks before it reports a workflow
 * task complete; a failing append is logged by the SDK and reported to `onError`.
 */
export function auditSinks(
  audit: AuditClient,
  onError?: (error: unknown) => void,
): InjectedSinks<AuditSinks> {
  return {
    audit: {
      emit: {
        fn: async (_info, event) => {
          try {
            await audit.append(event);
          } catch (error) {
            onError?.(error);
            throw error;
          }
        },
        callDuringReplay: false,
      },
    },
  };
}
