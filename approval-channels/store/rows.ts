/**
 * Row ↔ record mapping shared by the SQLite and PostgreSQL stores: input validation, column
 * encoding (JSON as canonical text, booleans as booleans, milliseconds as integers), parsing rows
 * back into frozen records, and the decision rules both stores apply to what they read.
 * @module
 */
import { z } from 'zod';
import { canonicalJson } from '../../policy/index.ts';
import { ChannelName, RequestState, TokenPurpose } from '../core/types.ts';
import type {
  AttemptRecord,
  DeliveryRecord,
  RequestPatch,
  RequestRecord,
  SessionRecord,
  TokenLookup,
  TokenRecord,
  VoteClaim,
  VoteRecordRow,
} from '../core/types.ts';
import { ApprovalStoreError, ApprovalStoreErrorCode, messageOf } from './errors.ts';

/** A value either driver binds: JSON columns are already text. */
export type SqlValue = string | number | boolean | null;
/** A row as a driver returns it (column name → value). */
export type Row = Readonly<Record<string, unknown>>;

/** Deepest JSON nesting stored (PostgreSQL's jsonb parser has a stack limit; keep both stores alike). */
export const MAX_JSON_DEPTH = 200;

/** True when `value` can be stored in and looked up by both stores (no NUL, no lone surrogate). */
export function usableText(value: unknown): value is string {
  return typeof value === 'string' && !value.includes('\0') && value.isWellFormed();
}

const Text = z.string().refine(usableText, 'must not contain NUL characters or lone surrogates');
const Key = Text.min(1);
const Ms = z.int().min(0);
const Channel = z.enum(ChannelName);
const State = z.enum(RequestState);
const Purpose = z.enum(TokenPurpose);

const SlackMessageSchema = z.strictObject({ principal: Key, channel: Key, ts: Key });

const RequestRecordSchema = z.strictObject({
  id: Key,
  revision: z.int().min(1),
  runWorkflowId: Key,
  agentId: Key,
  requester: Key,
  step: z.int().min(0),
  tool: Key,
  args: z.unknown(),
  resource: Text.nullable(),
  rationale: Text.nullable(),
  ruleId: Text.nullable(),
  policyVersion: Key,
  actionDigest: Key,
  eligible: z.array(Key),
  escalationEligible: z.array(Key),
  escalated: z.boolean(),
  quorum: z.int().min(1),
  highRisk: z.boolean(),
  channels: z.array(Channel),
  createdAtMs: Ms,
  expiresAtMs: Ms,
  state: State,
  approvedBy: z.array(Key),
  deniedBy: Key.nullable(),
  reason: Text.nullable(),
  decidedAtMs: Ms.nullable(),
  slackMessages: z.array(SlackMessageSchema),
});

const RequestPatchSchema = RequestRecordSchema.pick({
  revision: true,
  args: true,
  resource: true,
  actionDigest: true,
  escalated: true,
  state: true,
  approvedBy: true,
  deniedBy: true,
  reason: true,
  decidedAtMs: true,
  slackMessages: true,
})
  .partial()
  .strict();

const VoteSchema = z.strictObject({
  requestId: Key,
  revision: z.int().min(1),
  principal: Key,
  decision: z.enum(['approve', 'deny']),
  channel: Channel,
  reason: Text.nullable(),
  atMs: Ms,
});

const NewTokenSchema = z.strictObject({
  hash: Key,
  purpose: Purpose,
  principal: Key,
  requestId: Key.nullable(),
  revision: z.int().min(1).nullable(),
  createdAtMs: Ms,
  expiresAtMs: Ms,
});
const TokenSchema = NewTokenSchema.extend({ usedAtMs: Ms.nullable() });

const SessionSchema = z.strictObject({
  hash: Key,
  principal: Key,
  csrf: Key,
  createdAtMs: Ms,
  expiresAtMs: Ms,
});

const AttemptSchema = z.strictObject({
  requestId: Key.nullable(),
  channel: Channel,
  action: Key,
  principal: Key.nullable(),
  outcome: Key,
  detail: z.record(z.string(), z.unknown()),
  atMs: Ms,
});

const DeliverySchema = z.strictObject({
  requestId: Key,
  channel: Channel,
  kind: Key,
  principal: Key,
  address: Key,
  status: z.enum(['sent', 'failed']),
  error: Text.nullable(),
  atMs: Ms,
});

const NonceSchema = z.strictObject({ nonce: Key, binding: Key, expiresAtMs: Ms });
const OnceSchema = z.strictObject({ key: Key, expiresAtMs: Ms, nowMs: Ms });

// compile-time checks: each schema parses to exactly the record type of core/types.ts
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Mutable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer U)[] ? U[] : T[K] };
const _sameShapes: [
  Same<z.output<typeof RequestRecordSchema>, Mutable<RequestRecord>>,
  Same<z.output<typeof VoteSchema>, Mutable<VoteRecordRow>>,
  Same<z.output<typeof TokenSchema>, Mutable<TokenRecord>>,
  Same<z.output<typeof SessionSchema>, Mutable<SessionRecord>>,
  Same<z.output<typeof AttemptSchema>, Mutable<AttemptRecord>>,
  Same<z.output<typeof DeliverySchema>, Mutable<DeliveryRecord>>,
] = [true, true, true, true, true, true];
void _sameShapes;

function summarize(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length === 0 ? '(root)' : issue.path.join('.')}: ${issue.message}`)
    .join('; ');
}

function validate<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.invalidInput,
      `invalid ${what}: ${summarize(parsed.error)}`,
    );
  }
  return parsed.data;
}

/**
 * Canonical JSON text of `value`, refusing what would not round-trip through both stores:
 * non-JSON values (undefined, NaN, Dates, Maps, sparse arrays), NUL characters, lone surrogates,
 * nesting deeper than {@link MAX_JSON_DEPTH}.
 */
export function jsonText(value: unknown, what: string): string {
  const stack: [unknown, number][] = [[value, 0]];
  // shared references are checked once (a cycle then fails in canonicalJson)
  const seen = new WeakSet<object>();
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (typeof item === 'string' && !usableText(item)) {
      throw new ApprovalStoreError(
        ApprovalStoreErrorCode.invalidInput,
        `invalid ${what}: strings must not contain NUL characters or lone surrogates`,
      );
    }
    if (typeof item !== 'object' || item === null || seen.has(item)) continue;
    seen.add(item);
    if (depth >= MAX_JSON_DEPTH) {
      throw new ApprovalStoreError(
        ApprovalStoreErrorCode.invalidInput,
        `invalid ${what}: JSON nested deeper than ${MAX_JSON_DEPTH}`,
      );
    }
    for (const [key, child] of Object.entries(item)) stack.push([key, depth + 1], [child, depth + 1]);
  }
  try {
    return canonicalJson(value);
  } catch (error) {
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.invalidInput,
      `invalid ${what}: ${messageOf(error)}`,
      {
        cause: error,
      },
    );
  }
}

/** Columns of the requests table, in the order {@link requestValues} returns them. */
export const REQUEST_COLUMNS = [
  'id',
  'revision',
  'run_workflow_id',
  'agent_id',
  'requester',
  'step',
  'tool',
  'args',
  'resource',
  'rationale',
  'rule_id',
  'policy_version',
  'action_digest',
  'eligible',
  'escalation_eligible',
  'escalated',
  'quorum',
  'high_risk',
  'channels',
  'created_at_ms',
  'expires_at_ms',
  'state',
  'approved_by',
  'denied_by',
  'reason',
  'decided_at_ms',
  'slack_messages',
] as const;

/** Validates a request and encodes it as values for {@link REQUEST_COLUMNS}. */
export function requestValues(record: RequestRecord): SqlValue[] {
  const r = validate(RequestRecordSchema, record, 'request');
  return [
    r.id,
    r.revision,
    r.runWorkflowId,
    r.agentId,
    r.requester,
    r.step,
    r.tool,
    jsonText(r.args, 'request args'),
    r.resource,
    r.rationale,
    r.ruleId,
    r.policyVersion,
    r.actionDigest,
    jsonText(r.eligible, 'request eligible'),
    jsonText(r.escalationEligible, 'request escalationEligible'),
    r.escalated,
    r.quorum,
    r.highRisk,
    jsonText(r.channels, 'request channels'),
    r.createdAtMs,
    r.expiresAtMs,
    r.state,
    jsonText(r.approvedBy, 'request approvedBy'),
    r.deniedBy,
    r.reason,
    r.decidedAtMs,
    jsonText(r.slackMessages, 'request slackMessages'),
  ];
}

const PATCH_COLUMNS: { readonly [K in keyof Required<RequestPatch>]: string } = {
  revision: 'revision',
  args: 'args',
  resource: 'resource',
  actionDigest: 'action_digest',
  escalated: 'escalated',
  state: 'state',
  approvedBy: 'approved_by',
  deniedBy: 'denied_by',
  reason: 'reason',
  decidedAtMs: 'decided_at_ms',
  slackMessages: 'slack_messages',
};

/**
 * Validates a patch (unknown fields are refused, not ignored) and returns `[column, value]` pairs
 * for the fields present, in a fixed order.
 */
export function patchAssignments(patch: RequestPatch): [string, SqlValue][] {
  const p = validate(RequestPatchSchema, patch, 'request patch');
  const out: [string, SqlValue][] = [];
  for (const field of Object.keys(PATCH_COLUMNS) as (keyof RequestPatch)[]) {
    const value = p[field];
    if (value === undefined) continue;
    const isJson = field === 'args' || field === 'approvedBy' || field === 'slackMessages';
    out.push([PATCH_COLUMNS[field], isJson ? jsonText(value, `request ${field}`) : (value as SqlValue)]);
  }
  return out;
}

/** Columns of the votes table (besides its sequence), in {@link voteValues} order. */
export const VOTE_COLUMNS = [
  'request_id',
  'revision',
  'principal',
  'decision',
  'channel',
  'reason',
  'at_ms',
] as const;

/** Validates a vote and encodes it for {@link VOTE_COLUMNS}. */
export function voteValues(vote: VoteRecordRow): SqlValue[] {
  const v = validate(VoteSchema, vote, 'vote');
  return [v.requestId, v.revision, v.principal, v.decision, v.channel, v.reason, v.atMs];
}

/** Columns of the tokens table, in {@link tokenValues} order (`used_at_ms` starts null). */
export const TOKEN_COLUMNS = [
  'hash',
  'purpose',
  'principal',
  'request_id',
  'revision',
  'created_at_ms',
  'expires_at_ms',
] as const;

/** Validates a new token and encodes it for {@link TOKEN_COLUMNS}. */
export function tokenValues(token: Omit<TokenRecord, 'usedAtMs'>): SqlValue[] {
  const t = validate(NewTokenSchema, token, 'token');
  return [t.hash, t.purpose, t.principal, t.requestId, t.revision, t.createdAtMs, t.expiresAtMs];
}

/** Columns of the sessions table, in {@link sessionValues} order. */
export const SESSION_COLUMNS = ['hash', 'principal', 'csrf', 'created_at_ms', 'expires_at_ms'] as const;

/** Validates a session and encodes it for {@link SESSION_COLUMNS}. */
export function sessionValues(session: SessionRecord): SqlValue[] {
  const s = validate(SessionSchema, session, 'session');
  return [s.hash, s.principal, s.csrf, s.createdAtMs, s.expiresAtMs];
}

/** Validates a nonce to store: `[nonce, binding, expires_at_ms]`. */
export function nonceValues(nonce: string, binding: string, expiresAtMs: number): [string, string, number] {
  const n = validate(NonceSchema, { nonce, binding, expiresAtMs }, 'nonce');
  return [n.nonce, n.binding, n.expiresAtMs];
}

/** Validates a `rememberOnce` call: `[key, expires_at_ms, now_ms]`. */
export function onceValues(key: string, expiresAtMs: number, nowMs: number): [string, number, number] {
  const o = validate(OnceSchema, { key, expiresAtMs, nowMs }, 'remembered key');
  return [o.key, o.expiresAtMs, o.nowMs];
}

/** Columns of the attempts table (besides its sequence), in {@link attemptValues} order. */
export const ATTEMPT_COLUMNS = [
  'request_id',
  'channel',
  'action',
  'principal',
  'outcome',
  'detail',
  'at_ms',
] as const;

/** Validates an attempt and encodes it for {@link ATTEMPT_COLUMNS}. */
export function attemptValues(attempt: AttemptRecord): SqlValue[] {
  const a = validate(AttemptSchema, attempt, 'attempt');
  return [
    a.requestId,
    a.channel,
    a.action,
    a.principal,
    a.outcome,
    jsonText(a.detail, 'attempt detail'),
    a.atMs,
  ];
}

/** Columns of the deliveries table (besides its sequence), in {@link deliveryValues} order. */
export const DELIVERY_COLUMNS = [
  'request_id',
  'channel',
  'kind',
  'principal',
  'address',
  'status',
  'error',
  'at_ms',
] as const;

/** Validates a delivery and encodes it for {@link DELIVERY_COLUMNS}. */
export function deliveryValues(delivery: DeliveryRecord): SqlValue[] {
  const d = validate(DeliverySchema, delivery, 'delivery');
  return [d.requestId, d.channel, d.kind, d.principal, d.address, d.status, d.error, d.atMs];
}

// --- statements both dialects share (only their placeholders differ) ----------------------------

/** Formats the 1-based `position`th parameter (`?1` for SQLite, `$1` for PostgreSQL). */
export type Placeholder = (position: number) => string;

/** `INSERT INTO table (columns) VALUES (placeholders)`, followed by `tail`. */
export function insertSql(table: string, columns: readonly string[], ph: Placeholder, tail = ''): string {
  const params = columns.map((_, i) => ph(i + 1)).join(', ');
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${params})${tail === '' ? '' : ` ${tail}`}`;
}

/** `col = param AND …` for the pairs whose value is defined (`TRUE` when none), numbered from `start`. */
export function whereSql(
  pairs: readonly (readonly [string, SqlValue | undefined])[],
  ph: Placeholder,
  start = 1,
): { readonly sql: string; readonly values: SqlValue[] } {
  const present = pairs.filter((pair): pair is readonly [string, SqlValue] => pair[1] !== undefined);
  return {
    sql: present.length === 0 ? 'TRUE' : present.map(([c], i) => `${c} = ${ph(start + i)}`).join(' AND '),
    values: present.map(([, v]) => v),
  };
}

const ExpectSchema = z
  .strictObject({ state: State.optional(), revision: z.int().min(1).optional() })
  .optional();

/** The compare-and-set `UPDATE … RETURNING *` of `ApprovalStore.updateRequest`. */
export function requestUpdateSql(
  table: string,
  id: string,
  patch: RequestPatch,
  expect: { readonly state?: RequestState; readonly revision?: number } | undefined,
  ph: Placeholder,
): { readonly text: string; readonly values: SqlValue[] } {
  const assignments = patchAssignments(patch);
  const e = validate(ExpectSchema, expect, 'update condition');
  // an empty patch still answers the record when the condition holds
  const set =
    assignments.length === 0
      ? 'id = id'
      : assignments.map(([column], i) => `${column} = ${ph(i + 1)}`).join(', ');
  const where = whereSql(
    [
      ['id', id],
      ['state', e?.state],
      ['revision', e?.revision],
    ],
    ph,
    assignments.length + 1,
  );
  return {
    text: `UPDATE ${table} SET ${set} WHERE ${where.sql} RETURNING *`,
    values: [...assignments.map(([, value]) => value), ...where.values],
  };
}

const NowSchema = Ms;

/** Validates a `nowMs` argument before it is bound. */
export function nowValue(nowMs: number): number {
  return validate(NowSchema, nowMs, 'nowMs');
}

// --- rows → records -----------------------------------------------------------------------------

/** A driver integer (number, bigint, or PostgreSQL's int8 text) as a JS number; other values pass through to fail validation. */
function num(value: unknown): unknown {
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value;
  }
  return value;
}

/** A boolean column: SQLite answers 0/1, PostgreSQL a boolean. */
function bool(value: unknown): unknown {
  if (value === 0 || value === 1) return value === 1;
  return value;
}

const BAD_JSON = Symbol('bad json');

/** A JSON column: both drivers answer its text (PostgreSQL's jsonb parser is switched off). */
function json(value: unknown): unknown {
  if (typeof value !== 'string') return BAD_JSON;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    return BAD_JSON;
  }
}

const StoredRequestSchema = RequestRecordSchema.extend({
  args: z.unknown().refine((v) => v !== BAD_JSON, 'is not JSON'),
});

function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item !== 'object' || item === null || Object.isFrozen(item)) continue;
    Object.freeze(item);
    stack.push(...Object.values(item));
  }
  return value;
}

function fromRow<T>(schema: z.ZodType<T>, candidate: Record<string, unknown>, what: string): T {
  const parsed = schema.safeParse(candidate);
  if (!parsed.success) {
    throw new ApprovalStoreError(
      ApprovalStoreErrorCode.rowInvalid,
      `stored ${what} is malformed: ${summarize(parsed.error)}`,
    );
  }
  return deepFreeze(parsed.data);
}

/** Parses a requests row into a frozen {@link RequestRecord}. */
export function requestFromRow(row: Row): RequestRecord {
  return fromRow(
    StoredRequestSchema,
    {
      id: row['id'],
      revision: num(row['revision']),
      runWorkflowId: row['run_workflow_id'],
      agentId: row['agent_id'],
      requester: row['requester'],
      step: num(row['step']),
      tool: row['tool'],
      args: json(row['args']),
      resource: row['resource'],
      rationale: row['rationale'],
      ruleId: row['rule_id'],
      policyVersion: row['policy_version'],
      actionDigest: row['action_digest'],
      eligible: json(row['eligible']),
      escalationEligible: json(row['escalation_eligible']),
      escalated: bool(row['escalated']),
      quorum: num(row['quorum']),
      highRisk: bool(row['high_risk']),
      channels: json(row['channels']),
      createdAtMs: num(row['created_at_ms']),
      expiresAtMs: num(row['expires_at_ms']),
      state: row['state'],
      approvedBy: json(row['approved_by']),
      deniedBy: row['denied_by'],
      reason: row['reason'],
      decidedAtMs: num(row['decided_at_ms']),
      slackMessages: json(row['slack_messages']),
    },
    'request',
  );
}

/** Parses a votes row into a frozen {@link VoteRecordRow}. */
export function voteFromRow(row: Row): VoteRecordRow {
  return fromRow(
    VoteSchema,
    {
      requestId: row['request_id'],
      revision: num(row['revision']),
      principal: row['principal'],
      decision: row['decision'],
      channel: row['channel'],
      reason: row['reason'],
      atMs: num(row['at_ms']),
    },
    'vote',
  );
}

/** Parses a tokens row into a frozen {@link TokenRecord}. */
export function tokenFromRow(row: Row): TokenRecord {
  return fromRow(
    TokenSchema,
    {
      hash: row['hash'],
      purpose: row['purpose'],
      principal: row['principal'],
      requestId: row['request_id'],
      revision: num(row['revision']),
      createdAtMs: num(row['created_at_ms']),
      expiresAtMs: num(row['expires_at_ms']),
      usedAtMs: num(row['used_at_ms']),
    },
    'token',
  );
}

/** Parses a sessions row into a frozen {@link SessionRecord}. */
export function sessionFromRow(row: Row): SessionRecord {
  return fromRow(
    SessionSchema,
    {
      hash: row['hash'],
      principal: row['principal'],
      csrf: row['csrf'],
      createdAtMs: num(row['created_at_ms']),
      expiresAtMs: num(row['expires_at_ms']),
    },
    'session',
  );
}

/** Parses an attempts row into a frozen {@link AttemptRecord}. */
export function attemptFromRow(row: Row): AttemptRecord {
  return fromRow(
    AttemptSchema,
    {
      requestId: row['request_id'],
      channel: row['channel'],
      action: row['action'],
      principal: row['principal'],
      outcome: row['outcome'],
      detail: json(row['detail']),
      atMs: num(row['at_ms']),
    },
    'attempt',
  );
}

/** Parses a deliveries row into a frozen {@link DeliveryRecord}. */
export function deliveryFromRow(row: Row): DeliveryRecord {
  return fromRow(
    DeliverySchema,
    {
      requestId: row['request_id'],
      channel: row['channel'],
      kind: row['kind'],
      principal: row['principal'],
      address: row['address'],
      status: row['status'],
      error: row['error'],
      atMs: num(row['at_ms']),
    },
    'delivery',
  );
}

// --- decision rules both stores apply -----------------------------------------------------------

/**
 * Why a vote cannot be claimed, checked in this order, or null when it may be inserted (a unique
 * key then tells `recorded` from `duplicate`). `current` is the request's state and revision.
 */
export function voteBlocked(current: Row | undefined, vote: VoteRecordRow): VoteClaim | null {
  if (current === undefined) return 'unknown_request';
  if (current['state'] !== RequestState.pending) return 'decided';
  if (num(current['revision']) !== vote.revision) return 'stale_revision';
  return null;
}

/** What looking `token` up for `purpose` at `nowMs` answers (a token is valid while `nowMs < expiresAtMs`). */
export function tokenLookup(token: TokenRecord | undefined, purpose: string, nowMs: number): TokenLookup {
  if (token === undefined) return { ok: false, code: 'unknown' };
  if (token.purpose !== purpose) return { ok: false, code: 'wrong_purpose' };
  if (token.usedAtMs !== null) return { ok: false, code: 'used' };
  if (nowMs >= token.expiresAtMs) return { ok: false, code: 'expired' };
  return Object.freeze({ ok: true, token });
}

/**
 * Why a conditional consume did not take `token`. A token that looks usable now did not exist
 * when the consume ran, so it is reported unknown (never ok without being used).
 */
export function consumeRefusal(token: TokenRecord | undefined, purpose: string, nowMs: number): TokenLookup {
  const lookup = tokenLookup(token, purpose, nowMs);
  return lookup.ok ? { ok: false, code: 'unknown' } : lookup;
}
