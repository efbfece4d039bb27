/**
 * A minimal workflow that runs the decision point inside the Temporal sandbox: proof that policy/
 * is deterministic, bundles with the worker's webpack/swc, and replays.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import {
  compilePolicy,
  decide,
  digestOf,
  keyIdOf,
  toolCatalog,
  validateGovernance,
  verifyVote,
} from '../../policy/index.ts';
import type { ActionRequest, Decision, ExpectedAction, Posture, VoteCheck } from '../../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../../tools/builtin-specs.ts';

export interface DecisionWorkflowInput {
  readonly document: unknown;
  readonly policyVersion: string;
  readonly calls: readonly ActionRequest[];
  readonly posture: Posture;
  /** A signed vote checked inside the sandbox (pure Ed25519), with the trusted public key as hex. */
  readonly vote?: {
    readonly signed: unknown;
    readonly publicKeyHex: string;
    readonly expect: ExpectedAction;
    readonly nowMs: number;
  };
}

export interface DecisionWorkflowOutput {
  readonly decisions: readonly Decision[];
  readonly recomputedVersion: string;
  readonly runId: string;
  readonly voteCheck: VoteCheck | null;
}

const PolicyVersionKey = defineSearchAttributeKey('PolicyVersion', SearchAttributeType.KEYWORD);
const LastDecisionKey = defineSearchAttributeKey('LastDecision', SearchAttributeType.KEYWORD);

export async function decisionWorkflow(input: DecisionWorkflowInput): Promise<DecisionWorkflowOutput> {
  const loaded = validateGovernance(input.document, 'workflow input');
  if (!loaded.ok) throw new Error(`invalid policy: ${loaded.problems.map((p) => p.message).join('; ')}`);
  const policy = compilePolicy(loaded.document, input.policyVersion);
  const tools = toolCatalog(BUILTIN_TOOL_SPECS);
  upsertSearchAttributes([{ key: PolicyVersionKey, value: input.policyVersion }]);
  const decisions = input.calls.map((call) => decide(policy, call, { tools, posture: input.posture }));
  const last = decisions[decisions.length - 1];
  if (last)
    upsertSearchAttributes([{ key: LastDecisionKey, value: `${last.tier}:${last.ruleId ?? 'default'}` }]);
  let voteCheck: VoteCheck | null = null;
  if (input.vote) {
    const publicKey = Uint8Array.from(input.vote.publicKeyHex.match(/../g) ?? [], (h) => parseInt(h, 16));
    const publicKeys = new Map([[keyIdOf(publicKey), publicKey]]);
    voteCheck = verifyVote(input.vote.signed, {
      publicKeys,
      nowMs: input.vote.nowMs,
      expect: input.vote.expect,
    });
  }
  return { decisions, recomputedVersion: digestOf(loaded.document), runId: workflowInfo().runId, voteCheck };
}
