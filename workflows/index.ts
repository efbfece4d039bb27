/**
 * The workflow bundle's entry: every workflow the `agents` worker runs.
 * @module
 */
export { agentRunWorkflow } from './agent-run.ts';
export { approvalWorkflow } from './approval.ts';
