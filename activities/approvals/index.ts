/**
 * Activities of the approval workflow, run on task queue `approvals` by the approvals service.
 * This issue ships the `log` channel only (a line per notification to a sink); Slack, email and
 * the web inbox replace the sink in the channels issue.
 * @module
 */
import type { ApprovalNotice } from '../../workflows/approval-types.ts';
import { AuditKind } from '../audit/types.ts';
import type { AuditClient } from '../audit/types.ts';

/** Where notices go: stdout in `dev`, a collecting array in tests. */
export type NoticeSink = (notice: ApprovalNotice) => void | Promise<void>;

/** Builds the approval activities around a sink; each delivered notice is audited when `audit` is given. */
export function createApprovalActivities(sink: NoticeSink, audit?: AuditClient) {
  return {
    /** Tells the eligible approvers (or, on escalation, the escalation approvers) what waits for them. */
    async notifyApprovers(notice: ApprovalNotice): Promise<void> {
      await sink(notice);
      await audit?.append({
        source: 'approvals',
        agent: notice.request.agentId,
        run: notice.request.runWorkflowId,
        step: notice.request.step,
        kind: AuditKind.approvalNotified,
        attrs: {
          approvalWorkflowId: notice.approvalWorkflowId,
          notice: notice.kind,
          channel: 'log',
          recipients: notice.recipients,
          outcome: notice.outcome,
        },
      });
    },
  };
}

export type ApprovalActivities = ReturnType<typeof createApprovalActivities>;
