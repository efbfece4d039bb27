/**
 * Audit events from workflow code. Workflows cannot do I/O, so they emit through a Temporal sink:
 * the worker appends each event to the audit client after the activation and before it reports the
 * workflow task complete, so an event is never lost to a crash (a retried task emits it again with
 * the same id, which the sink drops). Sinks are not called while history is replayed.
 * @module
 */
import { proxySinks, workflowInfo } from '@temporalio/workflow';
import type { Sinks } from '@temporalio/workflow';
import type { AuditEventInput, AuditKind } from '../activities/audit/types.ts';

/** The sink interface the agents worker injects (`worker/sinks.ts`). */
export interface AuditSinks extends Sinks {
  audit: { emit(event: AuditEventInput): void };
}

const { audit } = proxySinks<AuditSinks>();

/** Emits audit events for one workflow execution, with ids stable across retries of a task. */
export function workflowAuditor(agentId: string, runWorkflowId?: string) {
  let counter = 0;
  return (kind: AuditKind, step: number | null, attrs: Readonly<Record<string, unknown>>): void => {
    const info = workflowInfo();
    counter += 1;
    audit.emit({
      id: `${info.workflowId}/${info.runId}/${counter}`,
      source: 'workflow',
      agent: agentId,
      run: runWorkflowId ?? info.workflowId,
      step,
      kind,
      attrs,
    });
  };
}

/** Emits from a place that must not count (update validators run outside history). */
export function emitUncounted(
  agentId: string,
  runWorkflowId: string,
  kind: AuditKind,
  step: number | null,
  attrs: Readonly<Record<string, unknown>>,
): void {
  audit.emit({ source: 'workflow', agent: agentId, run: runWorkflowId, step, kind, attrs });
}
