/**
 * The `LastDecision` search attribute (`tier:rule:tool`) of a run, upserted only when it changes:
 * an unchanged value is a no-op for visibility, while each upsert is a history event and a
 * visibility write (about 3 ms per action on the dev server's SQLite store, `docs/performance.md`).
 * @module
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';

export const LastDecisionKey = defineSearchAttributeKey('LastDecision', SearchAttributeType.KEYWORD);

/** Sets `LastDecision` to `value` (cut to 256 characters) unless it holds that value already. */
export function setLastDecision(value: string): void {
  const next = value.slice(0, 256);
  // reflects earlier upserts in this run and the attributes carried over by continue-as-new
  if (workflowInfo().typedSearchAttributes.get(LastDecisionKey) === next) return;
  upsertSearchAttributes([{ key: LastDecisionKey, value: next }]);
}
