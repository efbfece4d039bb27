/**
 * Approval votes: the action digest they cover, the exact bytes that are signed, and pure
 * verification and tallying. Pure JS (Ed25519 from `@noble/curves`), so the approval workflow's
 * Update validator and the tools worker's execution guard run the very same checks.
 *
 * Only the approval service holds the private key; everything else holds public keys by key id.
 * @module
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { z } from 'zod';
import { canonicalJson, digestOf } from './canonical.ts';
import type { ApprovalRequirement } from './compile.ts';

/** Domain separation: a signature over a vote can never be replayed as anything else. */
export const VOTE_DOMAIN = 'agent-runtime/vote/v1';

/** What one call is: the digest an approval covers. Approve-with-edits means a new digest. */
export interface ActionIdentity {
  readonly tool: string;
  readonly args: unknown;
  readonly resource: string | null;
  readonly policyVersion: string;
}

/** sha256 (hex) of the canonical JSON of `{tool, args, resource, policyVersion}`. */
export function actionDigest(action: ActionIdentity): string {
  return digestOf({
    tool: action.tool,
    args: action.args,
    resource: action.resource,
    policyVersion: action.policyVersion,
  });
}

const HEX64 = /^[0-9a-f]{64}$/;

export const VotePayloadSchema = z.strictObject({
  workflowId: z.string().min(1).max(512),
  step: z.int().min(0),
  actionDigest: z.string().regex(HEX64),
  decision: z.enum(['approve', 'deny']),
  approver: z.string().min(1).max(128),
  /** Epoch milliseconds after which the vote is void. */
  expiresAt: z.int().min(0),
  reason: z.string().max(2000).optional(),
});
/** The signed statement: who decided what about which exact call, until when. */
export type VotePayload = z.infer<typeof VotePayloadSchema>;

export const SignedVoteSchema = z.strictObject({
  payload: VotePayloadSchema,
  keyId: z.string().regex(/^ed25519:[0-9a-f]{16}$/),
  signature: z.string().regex(/^[0-9a-f]{128}$/),
});
export type SignedVote = z.infer<typeof SignedVoteSchema>;

/** The bytes a vote signature covers. */
export function voteSigningBytes(payload: VotePayload): Uint8Array {
  return utf8ToBytes(`${VOTE_DOMAIN}\n${canonicalJson(payload)}`);
}

/** Stable id of a public key: `ed25519:` + the first 16 hex digits of its sha256. */
export function keyIdOf(publicKey: Uint8Array): string {
  return `ed25519:${bytesToHex(sha256(publicKey)).slice(0, 16)}`;
}

/** Signs a vote (approval service only). */
export function signVote(payload: VotePayload, secretKey: Uint8Array): SignedVote {
  const publicKey = ed25519.getPublicKey(secretKey);
  return {
    payload,
    keyId: keyIdOf(publicKey),
    signature: bytesToHex(ed25519.sign(voteSigningBytes(payload), secretKey)),
  };
}

/** Why a vote was refused; stable codes for audit records. */
export const VoteRefusal = {
  malformed: 'VOTE_MALFORMED',
  unknownKey: 'VOTE_UNKNOWN_KEY',
  badSignature: 'VOTE_BAD_SIGNATURE',
  wrongAction: 'VOTE_WRONG_ACTION',
  expired: 'VOTE_EXPIRED',
  ineligible: 'VOTE_INELIGIBLE',
  requester: 'VOTE_BY_REQUESTER',
  agent: 'VOTE_BY_AGENT',
  duplicate: 'VOTE_DUPLICATE_PRINCIPAL',
  decided: 'VOTE_AFTER_DECISION',
} as const;
export type VoteRefusal = (typeof VoteRefusal)[keyof typeof VoteRefusal];

export type VoteCheck =
  | { readonly ok: true; readonly vote: VotePayload }
  | { readonly ok: false; readonly code: VoteRefusal; readonly message: string };

/** What a vote must be about. */
export interface ExpectedAction {
  readonly workflowId: string;
  readonly step: number;
  readonly actionDigest: string;
}

/**
 * Checks one vote's form, key, signature, target and expiry. Who may vote is `tallyVotes`'
 * business. Never throws.
 */
export function verifyVote(
  vote: unknown,
  options: {
    readonly publicKeys: ReadonlyMap<string, Uint8Array>;
    readonly nowMs: number;
    readonly expect: ExpectedAction;
  },
): VoteCheck {
  const parsed = SignedVoteSchema.safeParse(vote);
  if (!parsed.success) return refuse(VoteRefusal.malformed, 'the vote is not a well-formed signed vote');
  const { payload, keyId, signature } = parsed.data;
  const publicKey = options.publicKeys.get(keyId);
  if (!publicKey) return refuse(VoteRefusal.unknownKey, `no trusted key ${keyId}`);
  let valid: boolean;
  try {
    valid = ed25519.verify(hexToBytes(signature), voteSigningBytes(payload), publicKey);
  } catch {
    valid = false;
  }
  if (!valid) return refuse(VoteRefusal.badSignature, 'the signature does not verify');
  const { expect } = options;
  if (
    payload.workflowId !== expect.workflowId ||
    payload.step !== expect.step ||
    payload.actionDigest !== expect.actionDigest
  ) {
    return refuse(VoteRefusal.wrongAction, 'the vote is about a different action');
  }
  if (options.nowMs > payload.expiresAt) return refuse(VoteRefusal.expired, 'the vote has expired');
  return { ok: true, vote: payload };
}

function refuse(code: VoteRefusal, message: string): VoteCheck {
  return { ok: false, code, message };
}

/** Outcome of counting verified votes against an approval requirement. */
export interface Tally {
  readonly state: 'pending' | 'approved' | 'denied';
  /** Distinct eligible principals who approved, in vote order. */
  readonly approvedBy: readonly string[];
  readonly deniedBy: string | null;
  readonly refused: readonly { readonly approver: string; readonly code: VoteRefusal }[];
}

/**
 * Counts verified votes: only eligible principals (escalation approvers once escalated), never
 * the run's requester or the agent itself, each principal once; any single deny ends the request.
 */
export function tallyVotes(
  votes: readonly VotePayload[],
  context: {
    readonly approval: ApprovalRequirement;
    readonly requester: string;
    readonly agentId: string;
    readonly escalated?: boolean;
  },
): Tally {
  const eligible = new Set(context.approval.eligible);
  if (context.escalated && context.approval.escalate)
    for (const id of context.approval.escalate.eligible) eligible.add(id);
  const seen = new Set<string>();
  const approvedBy: string[] = [];
  const refused: { approver: string; code: VoteRefusal }[] = [];
  for (const vote of votes) {
    const code =
      vote.approver === context.requester
        ? VoteRefusal.requester
        : vote.approver === context.agentId
          ? VoteRefusal.agent
          : !eligible.has(vote.approver)
            ? VoteRefusal.ineligible
            : seen.has(vote.approver)
              ? VoteRefusal.duplicate
              : undefined;
    if (code !== undefined) {
      refused.push({ approver: vote.approver, code });
      continue;
    }
    seen.add(vote.approver);
    if (vote.decision === 'deny') return { state: 'denied', approvedBy, deniedBy: vote.approver, refused };
    approvedBy.push(vote.approver);
  }
  const state = approvedBy.length >= context.approval.quorum ? 'approved' : 'pending';
  return { state, approvedBy, deniedBy: null, refused };
}
