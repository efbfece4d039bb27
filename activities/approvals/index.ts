/**
 * Activities of the approval workflow, run on task queue `approvals` by the approvals service.
 * This issue ships the `log` channel only (a line per notification to a sink); Slack, email and
 * the web inbox replace the sink in the channels issue.
 * @module
 */
import type { ApprovalNotice } from '../../workflows/approval-types.ts';

/** Where notices go: stdout in `dev`, a collecting array in tests. */
export type NoticeSink = (notice: ApprovalNotice) => void | Promise<void>;

/** Builds the approval activities around a sink. */
export function createApprovalActivities(sink: NoticeSink) {
  return {
    /** Tells the eligible approvers (or, on escalation, the escalation approvers) what waits for them. */
    async notifyApprovers(notice: ApprovalNotice): Promise<void> {
      await sink(notice);
    },
  };
}

export type ApprovalActivities = ReturnType<typeof createApprovalActivities>;
