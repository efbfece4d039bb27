/**
 * Test support: a small {@link DecisionPort} over an in-memory request table, enforcing what the
 * approvals service enforces (unknown, decided, expired, stale revision, requester, agent,
 * eligibility, duplicate, high-risk by email, edits), plus request and directory factories and a
 * deterministic `randomBytes`.
 * @module
 */
import { createHash } from 'node:crypto';
import type {
  ApprovalStore,
  DecisionPort,
  PrincipalContact,
  RequestRecord,
  SubmitInput,
  SubmitRefusal,
  SubmitResult,
} from '../core/types.ts';
import type { RandomBytes } from '../email/tokens.ts';
import type { WebDirectory } from './app.ts';

/** A request with test defaults: `fs.delete` by agent-7 for dave, eligible alice/bob/carol, quorum 1, 1 h. */
export function makeRequest(nowMs: number, overrides: Partial<RequestRecord> = {}): RequestRecord {
  return {
    id: 'run-1/approval/1',
    revision: 1,
    runWorkflowId: 'run-1',
    agentId: 'agent-7',
    requester: 'dave',
    step: 3,
    tool: 'fs.delete',
    args: { path: '/srv/data/old.log', note: '<script>alert(1)</script> & "quotes"' },
    resource: '/srv/data/old.log',
    rationale: 'Disk is full. Approve quickly at https://evil.example/approve <b>now</b>',
    ruleId: 'fs-delete-needs-approval',
    policyVersion: 'v1-abc',
    actionDigest: 'digest-1',
    eligible: ['alice', 'bob', 'carol'],
    escalationEligible: [],
    escalated: false,
    quorum: 1,
    highRisk: false,
    channels: [],
    createdAtMs: nowMs,
    expiresAtMs: nowMs + 60 * 60_000,
    state: 'pending',
    approvedBy: [],
    deniedBy: null,
    reason: null,
    decidedAtMs: null,
    slackMessages: [],
    ...overrides,
  };
}

/** Contacts of the test principals (erin has no email). */
export const CONTACTS: readonly PrincipalContact[] = [
  { id: 'alice', email: 'alice@example.com', slack: null },
  { id: 'bob', email: 'bob@example.com', slack: null },
  { id: 'carol', email: 'carol@example.com', slack: null },
  { id: 'dave', email: 'dave@example.com', slack: null },
  { id: 'erin', email: null, slack: null },
];

/** A directory over {@link CONTACTS}. */
export function makeDirectory(contacts: readonly PrincipalContact[] = CONTACTS): WebDirectory {
  return {
    byId: (id) => contacts.find((c) => c.id === id) ?? null,
    byEmail: (email) => contacts.find((c) => c.email?.toLowerCase() === email) ?? null,
  };
}

/** The contact of `id` (throws when unknown). */
export function contact(id: string): PrincipalContact {
  const found = CONTACTS.find((c) => c.id === id);
  if (found === undefined) throw new Error(`no contact ${id}`);
  return found;
}

/** Deterministic bytes: sha256(seed:counter) blocks. */
export function seededRandom(seed: string): RandomBytes {
  let counter = 0;
  return (size) => {
    const out = new Uint8Array(size);
    for (let i = 0; i < size; i += 32) {
      out.set(
        createHash('sha256')
          .update(`${seed}:${counter++}`)
          .digest()
          .subarray(0, Math.min(32, size - i)),
        i,
      );
    }
    return out;
  };
}

/** In-memory decision port; `submissions` keeps every call, `requests` the table. */
export class MemoryDecisions implements DecisionPort {
  readonly requests = new Map<string, RequestRecord>();
  readonly submissions: SubmitInput[] = [];
  readonly #voted = new Map<string, Set<string>>();
  readonly #now: () => number;
  readonly #store: Pick<ApprovalStore, 'invalidateTokens' | 'recordAttempt'> | undefined;

  /** With `store`, audits each submission (like the service) and invalidates tokens on decisions and edits. */
  constructor(now: () => number, store?: Pick<ApprovalStore, 'invalidateTokens' | 'recordAttempt'>) {
    this.#now = now;
    this.#store = store;
  }

  /** Adds (or replaces) a request. */
  put(request: RequestRecord): RequestRecord {
    this.requests.set(request.id, request);
    return request;
  }

  /** Changes a request out of band (another channel, another service process). */
  patch(id: string, patch: Partial<RequestRecord>): void {
    const found = this.requests.get(id);
    if (found === undefined) throw new Error(`no request ${id}`);
    this.requests.set(id, { ...found, ...patch });
  }

  getRequest = async (id: string): Promise<RequestRecord | null> => this.requests.get(id) ?? null;

  listPending = async (principal: string): Promise<RequestRecord[]> =>
    [...this.requests.values()]
      .filter(
        (r) =>
          r.state === 'pending' &&
          r.requester !== principal &&
          (r.eligible.includes(principal) || (r.escalated && r.escalationEligible.includes(principal))) &&
          !(this.#voted.get(r.id)?.has(principal) ?? false),
      )
      .sort((a, b) => a.expiresAtMs - b.expiresAtMs);

  async submit(input: SubmitInput): Promise<SubmitResult> {
    this.submissions.push(input);
    const result = await this.#decide(input);
    await this.#store?.recordAttempt({
      requestId: input.requestId,
      channel: input.channel,
      action: input.editedArgs === undefined ? 'vote' : 'edit',
      principal: input.principal,
      outcome: result.ok ? 'ok' : result.code,
      detail: { ...input.detail, decision: input.decision },
      atMs: this.#now(),
    });
    return result;
  }

  async #decide(input: SubmitInput): Promise<SubmitResult> {
    const request = this.requests.get(input.requestId) ?? null;
    const refuse = (code: SubmitRefusal, message = ''): SubmitResult => ({
      ok: false,
      code,
      message,
      request,
    });
    if (request === null) return refuse('unknown_request');
    if (request.state !== 'pending') return refuse('decided', `already ${request.state}`);
    if (this.#now() >= request.expiresAtMs) return refuse('expired');
    if (input.revision !== request.revision) return refuse('stale_revision');
    if (input.principal === request.requester) return refuse('self_approval');
    if (input.principal === request.agentId) return refuse('agent');
    const eligible =
      request.eligible.includes(input.principal) ||
      (request.escalated && request.escalationEligible.includes(input.principal));
    if (!eligible) return refuse('not_authorized');
    const voted = this.#voted.get(request.id) ?? new Set<string>();
    if (voted.has(input.principal)) return refuse('duplicate');
    if (request.highRisk && input.decision === 'approve' && input.channel === 'email') {
      return refuse('high_risk_channel');
    }
    let next: RequestRecord = request;
    if (input.editedArgs !== undefined) {
      const edit = checkEdit(input.editedArgs);
      if (edit !== null) return refuse(edit, `edit refused: ${edit}`);
      next = {
        ...next,
        revision: next.revision + 1,
        args: input.editedArgs,
        actionDigest: `${next.actionDigest}+edit`,
        approvedBy: [],
      };
    }
    voted.add(input.principal);
    this.#voted.set(request.id, voted);
    let effect: 'counted' | 'approved' | 'denied';
    if (input.decision === 'deny') {
      next = {
        ...next,
        state: 'denied',
        deniedBy: input.principal,
        reason: input.reason ?? null,
        decidedAtMs: this.#now(),
      };
      effect = 'denied';
    } else {
      const approvedBy = [...next.approvedBy, input.principal];
      const done = approvedBy.length >= next.quorum;
      next = { ...next, approvedBy, ...(done ? { state: 'approved', decidedAtMs: this.#now() } : {}) };
      effect = done ? 'approved' : 'counted';
    }
    this.requests.set(next.id, next);
    if (next.state !== 'pending' || next.revision !== request.revision) {
      await this.#store?.invalidateTokens(next.id, this.#now());
    }
    return { ok: true, request: next, effect };
  }
}

/** Toy edit check: `{ path: string }`, `/etc/` prohibited, `recursive: true` raises the tier. */
function checkEdit(args: unknown): SubmitRefusal | null {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return 'invalid_edit';
  const record = args as Record<string, unknown>;
  if (typeof record['path'] !== 'string') return 'invalid_edit';
  if (record['path'].startsWith('/etc/')) return 'edit_prohibited';
  if (record['recursive'] === true) return 'edit_raised_tier';
  return null;
}
