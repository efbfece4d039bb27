/**
 * The execution guard: an activity inbound interceptor on the `tools` worker. Before any tool runs
 * it trusts nothing the agent worker decided: it re-validates the input, checks the call comes from
 * the workflow it names, recompiles the pinned policy from the document (checking its hash),
 * re-decides the exact arguments, and for approval-tier calls verifies the signed votes against
 * its own trusted keys. It then applies the idempotency rule per `workflowId/step`. Every refusal
 * is a non-retryable `ApplicationFailure` whose `type` is a stable code, and is audited.
 * @module
 */
import { summarizeContent } from '../activities/tools/content-signals.ts';
import { ApplicationFailure } from '@temporalio/common';
import type { Context } from '@temporalio/activity';
import type { ActivityInboundCallsInterceptor, ActivityInterceptorsFactory } from '@temporalio/worker';
import { hexToBytes } from '@noble/hashes/utils.js';
import { z } from 'zod';
import {
  actionDigest,
  compilePolicy,
  decide,
  policyVersionOf,
  POSTURES,
  tallyVotes,
  TIERS,
  validateGovernance,
  verifyVote,
} from '../policy/index.ts';
import type {
  CompiledPolicy,
  Decision,
  Posture,
  ToolCatalog,
  ToolEffect,
  VotePayload,
} from '../policy/index.ts';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditClient } from '../activities/audit/types.ts';
import type { ToolResult } from '../activities/tools/define.ts';
import { approvalWorkflowIdFor, idempotencyKeyFor } from '../workflows/run-types.ts';
import type { ToolCallInput, ToolCallResult } from '../workflows/run-types.ts';
import type { ExecutionJournal } from './journal.ts';

/** Stable codes of the guard's refusals (the `type` of the `ApplicationFailure`). */
export const GuardCode = {
  unexpectedActivity: 'GUARD_UNEXPECTED_ACTIVITY',
  malformedInput: 'GUARD_MALFORMED_INPUT',
  wrongWorkflow: 'GUARD_WRONG_WORKFLOW',
  invalidPolicy: 'GUARD_INVALID_POLICY',
  untrustedPolicy: 'GUARD_UNTRUSTED_POLICY',
  prohibited: 'GUARD_PROHIBITED',
  approvalMissing: 'GUARD_APPROVAL_MISSING',
  approvalInvalid: 'GUARD_APPROVAL_INVALID',
  outcomeUnknown: 'GUARD_OUTCOME_UNKNOWN',
} as const;
export type GuardCode = (typeof GuardCode)[keyof typeof GuardCode];

/** The name of the one activity the tools worker runs. */
export const EXECUTE_TOOL = 'executeTool';

export interface ExecutionGuardOptions {
  /** Specs of the tools this worker implements. */
  readonly tools: ToolCatalog;
  /** Vote-signing public keys by key id: the worker's own configuration, never the activity input. */
  readonly trustedKeys: ReadonlyMap<string, Uint8Array>;
  readonly audit: AuditClient;
  readonly journal: ExecutionJournal;
  /** When set, only these policy versions are accepted (recommended in production). */
  readonly trustedPolicyVersions?: ReadonlySet<string>;
  /** Epoch ms; injected by tests. */
  readonly now?: () => number;
}

const name = z.string().min(1).max(512);
const ToolCallInputSchema = z.strictObject({
  runWorkflowId: name,
  step: z.int().min(1),
  agentId: name,
  requester: name,
  tool: z.string().min(1).max(256),
  args: z.unknown(),
  rationale: z.string().max(20_000).nullable(),
  policy: z.strictObject({ document: z.unknown(), policyVersion: z.string().regex(/^[0-9a-f]{64}$/) }),
  posture: z.enum(POSTURES as [Posture, ...Posture[]]),
  frozenTools: z.array(z.string().max(256)).max(1000),
  used: z.record(z.string().max(256), z.int().min(0)),
  claimed: z.strictObject({ tier: z.enum(TIERS as [string, ...string[]]), ruleId: z.string().nullable() }),
  approval: z
    .strictObject({
      approvalWorkflowId: name,
      escalated: z.boolean(),
      votes: z.array(z.unknown()).max(100),
    })
    .nullable(),
});

/** A refusal: audited, then thrown as a non-retryable failure. */
class Refusal extends Error {
  readonly code: GuardCode;
  readonly attrs: Readonly<Record<string, unknown>>;
  constructor(code: GuardCode, message: string, attrs: Readonly<Record<string, unknown>> = {}) {
    super(message);
    this.code = code;
    this.attrs = attrs;
  }
}

/** Builds the guard as an activity interceptor factory for `WorkerOptions.interceptors.activity`. */
export function executionGuard(options: ExecutionGuardOptions): ActivityInterceptorsFactory {
  const now = options.now ?? Date.now;
  const policies = new Map<string, CompiledPolicy>();

  const compiled = (document: unknown, claimedVersion: string, agentId: string): CompiledPolicy => {
    const cached = policies.get(claimedVersion);
    if (cached) {
      if (cached.agentId !== agentId)
        throw new Refusal(GuardCode.invalidPolicy, 'the policy governs another agent');
      return cached;
    }
    if (options.trustedPolicyVersions && !options.trustedPolicyVersions.has(claimedVersion))
      throw new Refusal(GuardCode.untrustedPolicy, `policy ${claimedVersion} is not trusted by this worker`);
    const loaded = validateGovernance(document, 'activity input');
    if (!loaded.ok) throw new Refusal(GuardCode.invalidPolicy, 'the pinned governance document is invalid');
    if (policyVersionOf(loaded.document) !== claimedVersion)
      throw new Refusal(GuardCode.invalidPolicy, 'the pinned document does not hash to its policyVersion');
    if (loaded.document.identity.id !== agentId)
      throw new Refusal(GuardCode.invalidPolicy, 'the policy governs another agent');
    const policy = compilePolicy(loaded.document, claimedVersion);
    if (policies.size >= 64) policies.delete(policies.keys().next().value as string);
    policies.set(claimedVersion, policy);
    return policy;
  };

  const checkVotes = (call: ToolCallInput, decision: Decision): readonly VotePayload[] => {
    const approval = call.approval;
    if (approval === null)
      throw new Refusal(GuardCode.approvalMissing, 'an approval-tier call arrived without votes');
    const expectedId = approvalWorkflowIdFor(call.runWorkflowId, call.step);
    if (approval.approvalWorkflowId !== expectedId)
      throw new Refusal(GuardCode.approvalInvalid, 'the votes belong to another approval request');
    if (decision.approval === null) throw new Refusal(GuardCode.approvalInvalid, 'no approval requirement');
    const digest = actionDigest({
      tool: call.tool,
      args: call.args,
      resource: decision.resource,
      policyVersion: decision.policyVersion,
    });
    const payloads: VotePayload[] = [];
    for (const vote of approval.votes) {
      const check = verifyVote(vote, {
        publicKeys: options.trustedKeys,
        nowMs: now(),
        expect: { workflowId: expectedId, step: call.step, actionDigest: digest },
      });
      if (!check.ok)
        throw new Refusal(GuardCode.approvalInvalid, `a vote was refused: ${check.message}`, {
          voteCode: check.code,
        });
      payloads.push(check.vote);
    }
    const tally = tallyVotes(payloads, {
      approval: decision.approval,
      requester: call.requester,
      agentId: call.agentId,
      escalated: approval.escalated,
    });
    if (tally.refused.length > 0)
      throw new Refusal(GuardCode.approvalInvalid, 'a vote came from a principal who may not approve', {
        voteCode: tally.refused[0]?.code,
      });
    if (tally.state !== 'approved')
      throw new Refusal(GuardCode.approvalInvalid, `the votes do not approve (${tally.state})`, {
        approvedBy: tally.approvedBy,
      });
    return payloads;
  };

  return (ctx: Context) => {
    const inbound: ActivityInboundCallsInterceptor = {
      async execute(input, next) {
        const info = ctx.info;
        const base = {
          source: 'guard' as const,
          agent: null as string | null,
          run: info.workflowExecution?.workflowId ?? null,
          step: null as number | null,
        };
        const refuse = async (refusal: Refusal): Promise<never> => {
          await options.audit.append({
            ...base,
            kind: AuditKind.executionRefused,
            attrs: { ...refusal.attrs, message: refusal.message, attempt: info.attempt, code: refusal.code },
          });
          throw ApplicationFailure.create({
            type: refusal.code,
            message: refusal.message,
            nonRetryable: true,
          });
        };
        try {
          if (info.activityType !== EXECUTE_TOOL)
            throw new Refusal(GuardCode.unexpectedActivity, `the tools worker runs only ${EXECUTE_TOOL}`);
          const parsed = ToolCallInputSchema.safeParse(input.args[0]);
          if (!parsed.success)
            throw new Refusal(GuardCode.malformedInput, 'the tool call input is malformed');
          const call = parsed.data as ToolCallInput;
          base.agent = call.agentId;
          base.step = call.step;
          if (info.workflowExecution?.workflowId !== call.runWorkflowId)
            throw new Refusal(
              GuardCode.wrongWorkflow,
              'the call names a run other than the workflow that scheduled it',
            );
          const policy = compiled(call.policy.document, call.policy.policyVersion, call.agentId);
          const decision = decide(
            policy,
            { tool: call.tool, args: call.args, director: call.requester },
            { tools: options.tools, posture: call.posture, frozenTools: call.frozenTools, used: call.used },
          );
          const decided = {
            tier: decision.tier,
            ruleId: decision.ruleId,
            decisionCode: decision.code,
            claimed: call.claimed,
          };
          if (decision.tier === 'prohibited')
            throw new Refusal(
              GuardCode.prohibited,
              `the guard's decision is prohibited (${decision.code})`,
              decided,
            );
          let approvers: readonly string[] = [];
          if (decision.tier === 'approval')
            approvers = checkVotes(call, decision)
              .filter((v) => v.decision === 'approve')
              .map((v) => v.approver);

          const key = idempotencyKeyFor(call.runWorkflowId, call.step);
          const effect = effectOf(options.tools, call.tool, call.args);
          if (effect !== 'none') {
            const entry = await options.journal.get(key);
            if (entry?.state === 'completed') {
              await options.audit.append({
                ...base,
                kind: AuditKind.executionResult,
                attrs: { tool: call.tool, ok: entry.result.ok, replayed: true, attempt: info.attempt },
              });
              return { ...entry.result, replayed: true };
            }
            if (entry?.state === 'started' && effect === 'unsafe')
              throw new Refusal(
                GuardCode.outcomeUnknown,
                'an earlier attempt of this call may have acted; it is not repeated',
                { firstAttempt: entry.attempt },
              );
            await options.journal.begin(key, call.tool, info.attempt);
          }
          await options.audit.append({
            ...base,
            kind: AuditKind.executionStarted,
            attrs: {
              tool: call.tool,
              resource: decision.resource,
              ...decided,
              approvers,
              effect,
              attempt: info.attempt,
            },
          });

          let raw: ToolResult;
          try {
            raw = (await next({ ...input, args: [call] })) as ToolResult;
          } catch (error) {
            const code = (error as { code?: unknown }).code;
            const message = error instanceof Error ? error.message : String(error);
            await options.audit.append({
              ...base,
              kind: AuditKind.executionResult,
              attrs: {
                tool: call.tool,
                ok: false,
                error: typeof code === 'string' ? code : 'TOOL_ERROR',
                message,
                attempt: info.attempt,
              },
            });
            if (typeof code === 'string' && code.startsWith('TOOL_')) {
              // refused by the registry before running: nothing happened, nothing to remember
              if (effect !== 'none') await options.journal.abandon(key);
              throw ApplicationFailure.create({ type: code, message, nonRetryable: true });
            }
            throw error;
          }
          const result: ToolCallResult = raw.ok
            ? { ok: true, output: raw.output, replayed: false }
            : { ok: false, code: raw.code, message: raw.message, replayed: false };
          if (effect !== 'none') await options.journal.complete(key, result);
          await options.audit.append({
            ...base,
            kind: AuditKind.executionResult,
            attrs: {
              tool: call.tool,
              ok: result.ok,
              replayed: false,
              attempt: info.attempt,
              ...(raw.ok
                ? { content: summarizeContent(raw.output) }
                : { code: raw.code, detail: (raw as { detail?: string }).detail ?? null }),
            },
          });
          return result;
        } catch (error) {
          if (error instanceof Refusal) return refuse(error);
          throw error;
        }
      },
    };
    return { inbound };
  };
}

function effectOf(tools: ToolCatalog, tool: string, args: unknown): ToolEffect {
  const spec = tools.get(tool);
  const effect = spec?.effect;
  if (effect === undefined) return 'unsafe';
  if (typeof effect === 'string') return effect;
  const parsed = spec?.args.safeParse(args);
  return parsed?.success ? (effect as (a: unknown) => ToolEffect)(parsed.data) : 'unsafe';
}

/** Parses `keyId → hex` public keys into the map the guard takes. */
export function publicKeyMap(keys: Readonly<Record<string, string>>): ReadonlyMap<string, Uint8Array> {
  return new Map(Object.entries(keys).map(([keyId, hex]) => [keyId, hexToBytes(hex)]));
}
