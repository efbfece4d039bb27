/**
 * The approvals service's data model and the ports its channels (Slack, email, web inbox) and
 * stores (SQLite, PostgreSQL) implement. The service alone holds the vote-signing key, channel
 * credentials and this store; the agent's workers never reach any of them.
 * @module
 */

/** Channels a human decides through (plus `operator`, the CLI on the service's machine). */
export const ChannelName = {
  slack: 'slack',
  email: 'email',
  web: 'web',
  operator: 'operator',
} as const;
export type ChannelName = (typeof ChannelName)[keyof typeof ChannelName];

export const RequestState = {
  pending: 'pending',
  approved: 'approved',
  denied: 'denied',
  timedOut: 'timed_out',
  cancelled: 'cancelled',
} as const;
export type RequestState = (typeof RequestState)[keyof typeof RequestState];

/** A message posted to Slack for a request (re-rendered on every change). */
export interface SlackMessageRef {
  readonly principal: string;
  readonly channel: string;
  readonly ts: string;
}

/**
 * One approval request as the service stores it. Built from the approval workflow's notice, but
 * eligibility, quorum, high-risk and contact data come from the service's own trusted copy of the
 * governance document (never from the notice).
 */
export interface RequestRecord {
  /** The approval workflow id (`<runId>/approval/<step>`). */
  readonly id: string;
  /** 1 when created; +1 for each approve-with-edits revision (a new action digest). */
  readonly revision: number;
  readonly runWorkflowId: string;
  readonly agentId: string;
  readonly requester: string;
  readonly step: number;
  readonly tool: string;
  readonly args: unknown;
  readonly resource: string | null;
  /** The model's stated reason: shown labelled unverified, always escaped. */
  readonly rationale: string | null;
  readonly ruleId: string | null;
  readonly policyVersion: string;
  readonly actionDigest: string;
  readonly eligible: readonly string[];
  readonly escalationEligible: readonly string[];
  readonly escalated: boolean;
  readonly quorum: number;
  /** High-risk requests cannot be approved by email alone. */
  readonly highRisk: boolean;
  /** Channels the rule allows (empty = every configured channel). */
  readonly channels: readonly ChannelName[];
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
  readonly state: RequestState;
  readonly approvedBy: readonly string[];
  readonly deniedBy: string | null;
  readonly reason: string | null;
  readonly decidedAtMs: number | null;
  readonly slackMessages: readonly SlackMessageRef[];
}

/** Fields {@link ApprovalStore.updateRequest} may change. */
export type RequestPatch = Partial<
  Pick<
    RequestRecord,
    | 'revision'
    | 'args'
    | 'resource'
    | 'actionDigest'
    | 'escalated'
    | 'state'
    | 'approvedBy'
    | 'deniedBy'
    | 'reason'
    | 'decidedAtMs'
    | 'slackMessages'
  >
>;

/** What {@link ApprovalStore.recordVote} answers. */
export type VoteClaim =
  /** This principal's vote is now the one counted for this request. */
  | 'recorded'
  /** This principal already voted on this request (any channel). */
  | 'duplicate'
  /** The request is no longer pending. */
  | 'decided'
  /** The revision voted on is not the current one. */
  | 'stale_revision'
  | 'unknown_request';

export interface VoteRecordRow {
  readonly requestId: string;
  readonly revision: number;
  readonly principal: string;
  readonly decision: 'approve' | 'deny';
  readonly channel: ChannelName;
  readonly reason: string | null;
  readonly atMs: number;
}

/** Purposes of single-use tokens. */
export const TokenPurpose = {
  /** The "Review request" link of an approval email: one per approver per revision. */
  emailReview: 'email-review',
  /** A web inbox sign-in link (magic link by email, or printed by `agent-runtime dev`). */
  signIn: 'sign-in',
} as const;
export type TokenPurpose = (typeof TokenPurpose)[keyof typeof TokenPurpose];

/** A stored token: only its sha256 hash is kept. */
export interface TokenRecord {
  readonly hash: string;
  readonly purpose: TokenPurpose;
  readonly principal: string;
  /** The request an email-review token is for (null for sign-in tokens). */
  readonly requestId: string | null;
  readonly revision: number | null;
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
  readonly usedAtMs: number | null;
}

/** Why a token cannot be used; callers show one neutral page whatever the reason. */
export type TokenRefusal = 'unknown' | 'expired' | 'used' | 'wrong_purpose';

export type TokenLookup =
  { readonly ok: true; readonly token: TokenRecord } | { readonly ok: false; readonly code: TokenRefusal };

/** A web inbox session (cookie value stored hashed). */
export interface SessionRecord {
  readonly hash: string;
  readonly principal: string;
  /** Anti-CSRF secret bound to the session, sent in every form. */
  readonly csrf: string;
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
}

/** Every attempt at a channel: views, votes, refusals. `outcome` is a stable code (`ok`, `expired`, …). */
export interface AttemptRecord {
  readonly requestId: string | null;
  readonly channel: ChannelName;
  /** What was tried: `view`, `vote`, `sign_in`, `edit`, `deliver`, … */
  readonly action: string;
  readonly principal: string | null;
  readonly outcome: string;
  readonly detail: Readonly<Record<string, unknown>>;
  readonly atMs: number;
}

export interface DeliveryRecord {
  readonly requestId: string;
  readonly channel: ChannelName;
  /** `request`, `reminder`, `escalation`, `outcome`, `fallback`. */
  readonly kind: string;
  readonly principal: string;
  /** Where it went: an email address, a Slack channel/user id. */
  readonly address: string;
  readonly status: 'sent' | 'failed';
  readonly error: string | null;
  readonly atMs: number;
}

/**
 * Storage of the approvals service. Every method that decides something is atomic (one
 * transaction or one conditional statement), so concurrent clicks, racing channels and several
 * service processes on one PostgreSQL database agree on a single outcome.
 */
export interface ApprovalStore {
  /** Inserts the request unless one with the same id exists; returns the stored record either way. */
  putRequest(record: RequestRecord): Promise<RequestRecord>;
  getRequest(id: string): Promise<RequestRecord | null>;
  /**
   * Pending requests, oldest expiry first; with `principal`, only those it may decide now: named in
   * `eligible`, or in `escalationEligible` once `escalated` (escalation adds approvers), and never
   * the requester or the agent.
   */
  listPending(principal?: string): Promise<RequestRecord[]>;
  /**
   * Applies `patch`; with `expectState`/`expectRevision`, only if the stored record still has them
   * (compare-and-set). Returns the updated record, or null when the condition failed or it is unknown.
   */
  updateRequest(
    id: string,
    patch: RequestPatch,
    expect?: { readonly state?: RequestState; readonly revision?: number },
  ): Promise<RequestRecord | null>;

  /** Claims the one vote of `principal` on this request, atomically with the pending/revision check. */
  recordVote(vote: VoteRecordRow): Promise<VoteClaim>;
  listVotes(requestId: string): Promise<VoteRecordRow[]>;
  /** Removes a claimed vote that could not be delivered (so the principal may try again). */
  releaseVote(requestId: string, principal: string): Promise<void>;

  createToken(token: Omit<TokenRecord, 'usedAtMs'>): Promise<void>;
  /** Looks a token up without using it (GET and HEAD of review pages). */
  peekToken(hash: string, purpose: TokenPurpose, nowMs: number): Promise<TokenLookup>;
  /** Uses a token once: atomically sets `usedAtMs` if unused and unexpired. */
  consumeToken(hash: string, purpose: TokenPurpose, nowMs: number): Promise<TokenLookup>;
  /** Expires every unused token of a request (any final state, or a new revision). */
  invalidateTokens(requestId: string, nowMs: number): Promise<number>;

  /** Stores a per-render form nonce bound to `binding` (a token or session hash). */
  createNonce(nonce: string, binding: string, expiresAtMs: number): Promise<void>;
  /** Uses a nonce once; false when unknown, used, expired or bound to something else. */
  consumeNonce(nonce: string, binding: string, nowMs: number): Promise<boolean>;

  createSession(session: SessionRecord): Promise<void>;
  getSession(hash: string, nowMs: number): Promise<SessionRecord | null>;
  deleteSession(hash: string): Promise<void>;

  /** Remembers a signed inbound request (e.g. a Slack signature) until `expiresAtMs`; false if seen before. */
  rememberOnce(key: string, expiresAtMs: number, nowMs: number): Promise<boolean>;

  recordAttempt(attempt: AttemptRecord): Promise<void>;
  listAttempts(filter?: {
    readonly requestId?: string;
    readonly channel?: ChannelName;
  }): Promise<AttemptRecord[]>;
  recordDelivery(delivery: DeliveryRecord): Promise<void>;
  listDeliveries(requestId: string): Promise<DeliveryRecord[]>;

  close(): Promise<void>;
}

/** A principal's contact data, from the service's trusted governance document. */
export interface PrincipalContact {
  readonly id: string;
  readonly email: string | null;
  readonly slack: { readonly team: string; readonly user: string } | null;
}

/** Input of {@link DecisionPort.submit}: a human's decision arriving through a channel. */
export interface SubmitInput {
  readonly requestId: string;
  /** The revision the human saw (Slack `block_id`, email token, web form); a stale one is refused. */
  readonly revision: number;
  readonly channel: ChannelName;
  /** The principal the channel authenticated (Slack user mapped, token holder, session). */
  readonly principal: string;
  readonly decision: 'approve' | 'deny';
  readonly reason?: string;
  /** Approve with edits (web inbox): the edited arguments, re-validated and re-decided by the service. */
  readonly editedArgs?: unknown;
  /** Extra audit detail from the channel (IP, user agent, Slack team/user, token-hash prefix). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** Stable refusal codes a channel shows (each also an audited attempt outcome). */
export const SubmitRefusal = {
  unknownRequest: 'unknown_request',
  decided: 'decided',
  expired: 'expired',
  staleRevision: 'stale_revision',
  requester: 'self_approval',
  agent: 'agent',
  notAuthorized: 'not_authorized',
  duplicate: 'duplicate',
  highRiskChannel: 'high_risk_channel',
  invalidEdit: 'invalid_edit',
  editRaisedTier: 'edit_raised_tier',
  editProhibited: 'edit_prohibited',
  deliveryFailed: 'delivery_failed',
  /** The rule names the channels its approvals may come through, and this is not one. */
  channelNotAllowed: 'channel_not_allowed',
} as const;
export type SubmitRefusal = (typeof SubmitRefusal)[keyof typeof SubmitRefusal];

export type SubmitResult =
  | {
      readonly ok: true;
      /** The request after this vote (state, approvedBy, quorum progress). */
      readonly request: RequestRecord;
      /** `counted` = quorum not yet met; `approved`/`denied` = this vote decided it. */
      readonly effect: 'counted' | 'approved' | 'denied';
    }
  | {
      readonly ok: false;
      readonly code: SubmitRefusal;
      /** Safe to show the human (no secrets, no other principals' data beyond names). */
      readonly message: string;
      readonly request: RequestRecord | null;
    };

/** What channels call: the one place a human's input becomes a signed vote. */
export interface DecisionPort {
  submit(input: SubmitInput): Promise<SubmitResult>;
}

/** What the service tells a channel to do when a request appears or changes. */
export interface ChannelNotice {
  readonly kind: 'request' | 'reminder' | 'escalation' | 'outcome' | 'revised';
  readonly request: RequestRecord;
  /** The principals this notice is for (eligible, minus requester and agent). */
  readonly recipients: readonly PrincipalContact[];
}

/** A delivery channel (Slack, email). The web inbox needs no push: it reads the store. */
export interface NotifyChannel {
  readonly name: ChannelName;
  /** The channel stores a delivery record per message itself (email: one per mail, partial failures included). */
  readonly recordsOwnDeliveries?: boolean;
  /** Delivers or re-renders; throws when the channel is unreachable after its own retries. */
  notify(notice: ChannelNotice): Promise<void>;
}
