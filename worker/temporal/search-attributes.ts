/**
 * The custom search attributes agent-runtime registers on every Temporal namespace it uses, so
 * auditors can filter runs and approvals in the Web UI. All Keyword: plaintext, never secrets.
 * @module
 */
import type { SearchAttributeTypeName } from './dev-server.ts';

export const SEARCH_ATTRIBUTES: Readonly<Record<string, SearchAttributeTypeName>> = Object.freeze({
  AgentId: 'Keyword',
  RequestedBy: 'Keyword',
  PolicyVersion: 'Keyword',
  RunState: 'Keyword',
  LastDecision: 'Keyword',
  ApprovalState: 'Keyword',
});
