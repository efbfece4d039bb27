/**
 * The approvals service core: turns the approval workflow's notices into stored requests and
 * channel deliveries, and a human's input from any channel into one signed vote. Authority is
 * checked here against the service's own governance documents before anything is signed, and
 * again by the approval workflow and the execution guard on the signed vote.
 * @module
 */
import type { Client } from '@temporalio/client';
import { AuditKind } from '../../activities/audit/types.ts';
import type { AuditClient } from '../../activities/audit/types.ts';
import { AgentRuntimeError, decide, Posture, VoteRefusal } from '../../policy/index.ts';
import type { ToolCatalog } from '../../policy/index.ts';
import type { ApprovalNotice } from '../../workflows/approval-types.ts';
import { castRevision, castVote, VoteError } from '../operator.ts';
import { approvalStatusQuery } from '../../workflows/approval.ts';
import type { VoteReceipt } from '../../workflows/approval.ts';
import type { TrustedGovernance } from './directory.ts';
import { ChannelName, RequestState, SubmitRefusal } from './types.ts';
import type {
  ApprovalStore,
  AttemptRecord,
  RequestPatch,
  ChannelNotice,
  DecisionPort,
  NotifyChannel,
  PrincipalContact,
  RequestRecord,
  SubmitInput,
  SubmitResult,
} from './types.ts';

/** Options of {@link ApprovalService}. */
export interface ApprovalServiceOptions {
  readonly store: ApprovalStore;
  readonly governance: TrustedGovernance;
  /** Temporal client the signed votes are sent with (`vote` Update on the approval workflow). */
  readonly client: Client;
  /** The vote-signing secret key: only this service holds it. */
  readonly secretKey: Uint8Array;
  /** Push channels in preference order (Slack, then email); the web inbox reads the store. */
  readonly channels: readonly NotifyChannel[];
  /** Tool specs (argument schemas) for approve-with-edits; without them edits are refused. */
  readonly tools?: ToolCatalog;
  readonly audit?: AuditClient;
  readonly now?: () => number;
  /** Called for each notice after it is stored and delivered (`agent-runtime dev` prints it). */
  readonly onNotice?: (notice: ApprovalNotice, request: RequestRecord | null) => void;
  /** Problems that do not fail the caller (a channel that could not re-render a card). */
  readonly warn?: (message: string) => void;
}

/** A notice the service refuses to act on (unknown policy version, a request that names no one). */
export class ApprovalServiceError extends AgentRuntimeError {}

const FINAL: Readonly<Record<string, RequestState>> = {
  approved: RequestState.approved,
  denied: RequestState.denied,
  timed_out: RequestState.timedOut,
};

const REFUSAL_TEXT: Readonly<Record<SubmitRefusal, string>> = {
  unknown_request: 'This approval request does not exist.',
  decided: 'This request has already been decided.',
  expired: 'This request has expired; it was denied.',
  stale_revision: 'This request has changed since you saw it; open the current version.',
  self_approval: 'You requested this run, so you cannot approve its actions.',
  agent: 'The agent cannot decide its own requests.',
  not_authorized: 'You are not an approver for this request.',
  duplicate: 'Your vote on this request was already counted.',
  high_risk_channel:
    'This is a high-risk request: it cannot be approved by email. Approve it in Slack or the web inbox, or deny it here.',
  invalid_edit: 'The edited arguments are not valid for this tool.',
  edit_raised_tier: 'The edit changes what the request is; it needs a new decision.',
  edit_prohibited: 'The edited action is prohibited by policy; the request is denied.',
  delivery_failed: 'Your vote could not be delivered to the workflow; please try again.',
  channel_not_allowed: 'This request cannot be decided through this channel.',
};

/** Maps the workflow's (or the operator channel's) refusal codes onto the channel codes. */
function refusalOf(code: string): SubmitRefusal {
  switch (code) {
    case VoteRefusal.requester:
      return SubmitRefusal.requester;
    case VoteRefusal.agent:
      return SubmitRefusal.agent;
    case VoteRefusal.ineligible:
      return SubmitRefusal.notAuthorized;
    case VoteRefusal.duplicate:
      return SubmitRefusal.duplicate;
    case VoteRefusal.decided:
      return SubmitRefusal.decided;
    case VoteRefusal.expired:
      return SubmitRefusal.expired;
    case VoteRefusal.wrongAction:
      return SubmitRefusal.staleRevision;
    case 'APPROVAL_NOT_FOUND':
      return SubmitRefusal.unknownRequest;
    default:
      return SubmitRefusal.deliveryFailed;
  }
}

/** The approvals service core; channels call {@link ApprovalService.submit}. */
export class ApprovalService implements DecisionPort {
  readonly #o: ApprovalServiceOptions;
  readonly #now: () => number;

  constructor(options: ApprovalServiceOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  readonly #pending = new Set<Promise<void>>();

  #background(work: Promise<void>): void {
    const tracked = work.finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  /** Resolves once the background re-renders started so far have finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** The store's record of a request. */
  getRequest(id: string): Promise<RequestRecord | null> {
    return this.#o.store.getRequest(id);
  }

  /** Requests `principal` may decide now. */
  listPending(principal: string): Promise<RequestRecord[]> {
    return this.#o.store.listPending(principal);
  }

  /** The principals who may decide `request` now, minus the requester and the agent. */
  recipients(request: RequestRecord, which: 'eligible' | 'escalation' = 'eligible'): PrincipalContact[] {
    const ids =
      which === 'escalation'
        ? request.escalationEligible
        : [...request.eligible, ...(request.escalated ? request.escalationEligible : [])];
    return [...new Set(ids)]
      .filter((id) => id !== request.requester && id !== request.agentId)
      .map((id) => this.#o.governance.byId(id))
      .filter((c): c is PrincipalContact => c !== null);
  }

  /**
   * The approval workflow's notification activity: stores the request (idempotently: the activity
   * may be retried), delivers it, and re-renders on reminders, escalation and the outcome.
   */
  async handleNotice(notice: ApprovalNotice): Promise<void> {
    let record: RequestRecord | null;
    if (notice.kind === 'request') record = await this.#store(notice);
    else record = await this.#o.store.getRequest(notice.approvalWorkflowId);
    if (record === null) {
      this.#o.onNotice?.(notice, null);
      return; // refused at 'request' (audited there); later notices of it have nothing to update
    }
    switch (notice.kind) {
      case 'request':
        await this.#deliver('request', record, this.recipients(record));
        break;
      case 'reminder':
        if (record.state === RequestState.pending)
          await this.#deliver('reminder', record, this.recipients(record));
        break;
      case 'escalation': {
        if (record.state !== RequestState.pending || record.escalated) break;
        const trusted = this.#o.governance.requirement(record.policyVersion, record.ruleId);
        if (!trusted?.escalate || this.#now() < record.createdAtMs + trusted.escalate.afterMs) {
          await this.#attempt(record, ChannelName.operator, 'escalate', null, 'too_early', {});
          break;
        }
        const escalated = await this.#o.store.updateRequest(
          record.id,
          { escalated: true },
          { state: RequestState.pending },
        );
        if (escalated) await this.#deliver('escalation', escalated, this.recipients(escalated, 'escalation'));
        break;
      }
      case 'outcome': {
        const state = FINAL[notice.outcome ?? ''];
        if (state === undefined) break;
        const decided = notice.decided;
        const final = await this.#finalize(
          record,
          state,
          decided
            ? { approvedBy: decided.approvedBy, deniedBy: decided.deniedBy, reason: decided.reason }
            : {},
        );
        // a vote through this service re-rendered already; re-render only what changed here (timeouts,
        // votes from elsewhere). The approval workflow waits for this activity, so it runs in the background.
        if (final.changed) this.#background(this.#rerender('outcome', final.record));
        break;
      }
    }
    this.#o.onNotice?.(notice, await this.#o.store.getRequest(notice.approvalWorkflowId));
  }

  async submit(input: SubmitInput): Promise<SubmitResult> {
    const request = await this.#o.store.getRequest(input.requestId);
    const refuse = async (
      code: SubmitRefusal,
      current: RequestRecord | null = request,
    ): Promise<SubmitResult> => {
      await this.#attempt(current, input.channel, 'vote', input.principal, code, {
        ...input.detail,
        decision: input.decision,
        revision: input.revision,
      });
      return { ok: false, code, message: REFUSAL_TEXT[code], request: current };
    };
    if (request === null) return refuse(SubmitRefusal.unknownRequest);
    if (request.state !== RequestState.pending) return refuse(SubmitRefusal.decided);
    if (this.#now() >= request.expiresAtMs) return refuse(SubmitRefusal.expired);
    if (input.revision !== request.revision) return refuse(SubmitRefusal.staleRevision);
    if (input.principal === request.requester) return refuse(SubmitRefusal.requester);
    if (input.principal === request.agentId) return refuse(SubmitRefusal.agent);
    const eligible = this.recipients(request).some((c) => c.id === input.principal);
    if (!eligible) return refuse(SubmitRefusal.notAuthorized);
    if (request.channels.length > 0 && !request.channels.includes(input.channel))
      return refuse(SubmitRefusal.channelNotAllowed);
    if (input.channel === ChannelName.email && input.decision === 'approve' && request.highRisk)
      return refuse(SubmitRefusal.highRiskChannel);
    let edit: { readonly args: unknown; readonly resource: string | null } | null = null;
    if (input.editedArgs !== undefined) {
      const checked = this.#checkEdit(request, input);
      if (!checked.ok) {
        if (checked.code === SubmitRefusal.editProhibited)
          return this.#denyProhibitedEdit(request, input, checked.detail);
        const refused = await refuse(checked.code);
        return refused.ok ? refused : { ...refused, message: `${refused.message} ${checked.detail}` };
      }
      edit = checked.edit;
    }

    const claim = await this.#o.store.recordVote({
      requestId: request.id,
      revision: request.revision,
      principal: input.principal,
      decision: input.decision,
      channel: input.channel,
      reason: input.reason ?? null,
      atMs: this.#now(),
    });
    if (claim !== 'recorded')
      return refuse(
        claim === 'duplicate'
          ? SubmitRefusal.duplicate
          : claim === 'stale_revision'
            ? SubmitRefusal.staleRevision
            : claim === 'unknown_request'
              ? SubmitRefusal.unknownRequest
              : SubmitRefusal.decided,
      );

    let receipt: VoteReceipt;
    try {
      const common = {
        approvalWorkflowId: request.id,
        principal: input.principal,
        secretKey: this.#o.secretKey,
        now: this.#now(),
        ...(input.reason === undefined ? {} : { reason: input.reason }),
      };
      receipt =
        edit === null
          ? await castVote(this.#o.client, { ...common, decision: input.decision })
          : await castRevision(this.#o.client, { ...common, args: edit.args, resource: edit.resource });
    } catch (error) {
      const code = error instanceof VoteError ? refusalOf(error.code) : SubmitRefusal.deliveryFailed;
      // a vote the workflow never counted must not block this principal from trying again
      if (code === SubmitRefusal.deliveryFailed) await this.#o.store.releaseVote(request.id, input.principal);
      return refuse(code);
    }

    if (edit !== null) await this.#storeRevision(request, edit, input);
    const effect =
      receipt.state === 'APPROVED' ? 'approved' : receipt.state === 'DENIED' ? 'denied' : 'counted';
    let updated =
      effect === 'counted'
        ? ((await this.#o.store.updateRequest(
            request.id,
            { approvedBy: receipt.approvedBy },
            { state: RequestState.pending },
          )) ?? request)
        : (
            await this.#finalize(
              request,
              effect === 'approved' ? RequestState.approved : RequestState.denied,
              {
                approvedBy: receipt.approvedBy,
                ...(effect === 'denied' ? { deniedBy: input.principal, reason: input.reason ?? null } : {}),
              },
            )
          ).record;
    await this.#attempt(updated, input.channel, 'vote', input.principal, 'ok', {
      ...input.detail,
      decision: input.decision,
      revision: input.revision,
      effect,
    });
    await this.#rerender(effect === 'counted' ? 'revised' : 'outcome', updated);
    updated = (await this.#o.store.getRequest(request.id)) ?? updated;
    return { ok: true, request: updated, effect };
  }

  /**
   * Approve with edits: the edited arguments must pass the tool's schema and, re-decided under the
   * trusted policy, fall under the same rule. An edit can never lower the tier (the request stays
   * an approval); one that lands under another rule needs a new request; a prohibited one ends it.
   */
  #checkEdit(
    request: RequestRecord,
    input: SubmitInput,
  ):
    | { readonly ok: true; readonly edit: { readonly args: unknown; readonly resource: string | null } }
    | { readonly ok: false; readonly code: SubmitRefusal; readonly detail: string } {
    const spec = this.#o.tools?.get(request.tool);
    const policy = this.#o.governance.policy(request.policyVersion);
    if (input.decision !== 'approve')
      return { ok: false, code: SubmitRefusal.invalidEdit, detail: 'Edits come with an approval.' };
    if (!spec || !policy || !this.#o.tools)
      return { ok: false, code: SubmitRefusal.invalidEdit, detail: 'This tool cannot be edited here.' };
    const parsed = spec.args.safeParse(input.editedArgs);
    if (!parsed.success) {
      const issues = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || '(arguments)'}: ${i.message}`)
        .join('; ');
      return { ok: false, code: SubmitRefusal.invalidEdit, detail: issues };
    }
    const decision = decide(
      policy,
      { tool: request.tool, args: parsed.data, director: request.requester },
      { tools: this.#o.tools, posture: Posture.normal, frozenTools: [], used: {} },
    );
    if (decision.tier === 'prohibited')
      return { ok: false, code: SubmitRefusal.editProhibited, detail: decision.code };
    if (decision.ruleId !== request.ruleId)
      return {
        ok: false,
        code: SubmitRefusal.editRaisedTier,
        detail: `The edited call falls under ${decision.ruleId === null ? 'the default' : `rule ${decision.ruleId}`}, not ${request.ruleId === null ? 'the default' : `rule ${request.ruleId}`}.`,
      };
    return { ok: true, edit: { args: parsed.data, resource: decision.resource } };
  }

  /** An edit the policy prohibits ends the request: a signed deny, with the reason. */
  async #denyProhibitedEdit(request: RequestRecord, input: SubmitInput, code: string): Promise<SubmitResult> {
    const denial = await this.submit({
      requestId: request.id,
      revision: request.revision,
      channel: input.channel,
      principal: input.principal,
      decision: 'deny',
      reason: `the edited action is prohibited by policy (${code})`,
      ...(input.detail === undefined ? {} : { detail: { ...input.detail, edit: 'prohibited' } }),
    });
    return {
      ok: false,
      code: SubmitRefusal.editProhibited,
      message: REFUSAL_TEXT.edit_prohibited,
      request: denial.request,
    };
  }

  /** The store follows the workflow: a new revision with the edited action; earlier links stop working. */
  async #storeRevision(
    request: RequestRecord,
    edit: { readonly args: unknown; readonly resource: string | null },
    input: SubmitInput,
  ): Promise<void> {
    const view = await this.#o.client.workflow
      .getHandle(request.id)
      .query(approvalStatusQuery)
      .catch(() => null);
    await this.#o.store.updateRequest(request.id, {
      revision: request.revision + 1,
      args: edit.args,
      resource: edit.resource,
      ...(view ? { actionDigest: view.request.actionDigest } : {}),
    });
    await this.#o.store.invalidateTokens(request.id, this.#now());
    await this.#attempt(request, input.channel, 'edit', input.principal, 'ok', {
      revision: request.revision + 1,
    });
  }

  /** Builds the record from the notice and the trusted document; null (audited) when it cannot be trusted. */
  async #store(notice: ApprovalNotice): Promise<RequestRecord | null> {
    const { request } = notice;
    const existing = await this.#o.store.getRequest(notice.approvalWorkflowId);
    if (existing) return existing;
    const trusted = this.#o.governance.requirement(request.policyVersion, request.ruleId);
    const refuse = async (outcome: string, detail: Record<string, unknown>): Promise<null> => {
      await this.#audit(AuditKind.approvalDelivery, request.agentId, request.runWorkflowId, request.step, {
        approvalWorkflowId: notice.approvalWorkflowId,
        outcome,
        ...detail,
      });
      this.#o.warn?.(`approval ${notice.approvalWorkflowId} not delivered: ${outcome}`);
      return null;
    };
    if (trusted === null)
      return refuse('unknown_policy', { policyVersion: request.policyVersion, ruleId: request.ruleId });
    const mismatch =
      request.approval.quorum < trusted.quorum ||
      request.approval.eligible.some((id) => !trusted.eligible.includes(id)) ||
      (trusted.highRisk && !request.approval.highRisk);
    if (mismatch)
      await this.#audit(AuditKind.approvalDelivery, request.agentId, request.runWorkflowId, request.step, {
        approvalWorkflowId: notice.approvalWorkflowId,
        outcome: 'requirement_mismatch',
        note: 'the notice asked for less than the trusted document; the trusted requirement applies',
      });
    const record: RequestRecord = {
      id: notice.approvalWorkflowId,
      revision: 1,
      runWorkflowId: request.runWorkflowId,
      agentId: request.agentId,
      requester: request.requester,
      step: request.step,
      tool: request.action.tool,
      args: request.action.args,
      resource: request.action.resource,
      rationale: request.action.rationale,
      ruleId: request.ruleId,
      policyVersion: request.policyVersion,
      actionDigest: request.actionDigest,
      eligible: trusted.eligible,
      escalationEligible: trusted.escalate?.eligible ?? [],
      escalated: false,
      quorum: trusted.quorum,
      highRisk: trusted.highRisk,
      channels: trusted.channels.flatMap((c) =>
        c === 'slack' || c === 'email' || c === 'web' ? [c] : c === 'cli' ? [ChannelName.operator] : [],
      ),
      createdAtMs: this.#now(),
      expiresAtMs: notice.expiresAtMs,
      state: RequestState.pending,
      approvedBy: [],
      deniedBy: null,
      reason: null,
      decidedAtMs: null,
      slackMessages: [],
    };
    return this.#o.store.putRequest(record);
  }

  /** Moves a pending request to a final state (first writer wins) and expires its tokens. */
  async #finalize(
    request: RequestRecord,
    state: RequestState,
    patch: { approvedBy?: readonly string[]; deniedBy?: string | null; reason?: string | null },
  ): Promise<{ readonly record: RequestRecord; readonly changed: boolean }> {
    const now = this.#now();
    const final = await this.#o.store.updateRequest(
      request.id,
      { state, decidedAtMs: now, ...patch },
      { state: RequestState.pending },
    );
    await this.#o.store.invalidateTokens(request.id, now);
    if (final) return { record: final, changed: true };
    // the vote and the workflow's outcome notice race: the loser still adds who decided, never the state
    const current = await this.#o.store.getRequest(request.id);
    if (current?.state === state && Object.keys(patch).length > 0) {
      const completed: RequestPatch = {
        ...(patch.approvedBy && patch.approvedBy.length > current.approvedBy.length
          ? { approvedBy: patch.approvedBy }
          : {}),
        ...(patch.deniedBy && current.deniedBy === null ? { deniedBy: patch.deniedBy } : {}),
        ...(patch.reason && current.reason === null ? { reason: patch.reason } : {}),
      };
      if (Object.keys(completed).length > 0) {
        const merged = await this.#o.store.updateRequest(request.id, completed, { state });
        return { record: merged ?? current, changed: false };
      }
    }
    return { record: current ?? request, changed: false };
  }

  /** Sends a notice through the channels the rule allows; a channel that fails hands its recipients on. */
  async #deliver(
    kind: 'request' | 'reminder' | 'escalation',
    request: RequestRecord,
    recipients: readonly PrincipalContact[],
  ): Promise<void> {
    const allowed = this.#o.channels.filter(
      (c) => request.channels.length === 0 || request.channels.includes(c.name),
    );
    const done = new Set(
      (await this.#o.store.listDeliveries(request.id))
        .filter((d) => d.kind === kind && d.status === 'sent')
        .map((d) => d.principal),
    );
    let waiting = recipients.filter((r) => !done.has(r.id));
    let failedChannel: string | null = null;
    for (const channel of allowed) {
      const reachable = waiting.filter(
        (r) => (channel.name === ChannelName.slack ? r.slack : r.email) !== null,
      );
      if (reachable.length === 0) continue;
      const fallbackFrom = failedChannel;
      let failed: readonly PrincipalContact[] = [];
      try {
        await channel.notify({ kind, request, recipients: reachable });
      } catch (error) {
        // a channel may name who it could not reach; without that, nobody was reached
        const named = (error as { failedPrincipals?: unknown }).failedPrincipals;
        failed = Array.isArray(named) ? reachable.filter((r) => named.includes(r.id)) : reachable;
        failedChannel = channel.name;
        await this.#recordDeliveries(kind, request, channel.name, failed, (error as Error).message);
      }
      const delivered = reachable.filter((r) => !failed.includes(r));
      await this.#recordDeliveries(kind, request, channel.name, delivered, null, fallbackFrom);
      const reached = new Set(delivered.map((r) => r.id));
      waiting = waiting.filter((r) => !reached.has(r.id));
    }
    for (const r of waiting)
      await this.#audit(AuditKind.approvalDelivery, request.agentId, request.runWorkflowId, request.step, {
        approvalWorkflowId: request.id,
        notice: kind,
        principal: r.id,
        outcome: 'no_channel',
        note: 'reachable through the web inbox only',
      });
  }

  async #recordDeliveries(
    kind: string,
    request: RequestRecord,
    channel: ChannelName,
    recipients: readonly PrincipalContact[],
    error: string | null,
    fallbackFrom: string | null = null,
  ): Promise<void> {
    const stored = this.#o.channels.find((c) => c.name === channel)?.recordsOwnDeliveries === true;
    for (const r of recipients) {
      const address = channel === ChannelName.slack ? (r.slack?.user ?? '') : (r.email ?? '');
      if (!stored)
        await this.#o.store.recordDelivery({
          requestId: request.id,
          channel,
          kind,
          principal: r.id,
          address,
          status: error === null ? 'sent' : 'failed',
          error,
          atMs: this.#now(),
        });
      await this.#audit(AuditKind.approvalDelivery, request.agentId, request.runWorkflowId, request.step, {
        approvalWorkflowId: request.id,
        notice: kind,
        channel,
        principal: r.id,
        outcome: error === null ? 'sent' : 'failed',
        ...(error === null ? {} : { error }),
        ...(fallbackFrom === null ? {} : { fallbackFrom }),
      });
    }
  }

  /** Re-renders the request on every channel that shows it; failures are warnings, not refusals. */
  async #rerender(kind: ChannelNotice['kind'], request: RequestRecord): Promise<void> {
    const deliveries = await this.#o.store.listDeliveries(request.id);
    for (const channel of this.#o.channels) {
      // a channel re-renders for those it reached (an approver reached on Slack gets no "decided" mail)
      const reached = new Set(
        deliveries.filter((d) => d.channel === channel.name && d.status === 'sent').map((d) => d.principal),
      );
      const recipients = this.recipients(request).filter((r) => reached.has(r.id));
      if (recipients.length === 0 && channel.name !== ChannelName.slack) continue;
      try {
        await channel.notify({ kind, request, recipients });
      } catch (error) {
        this.#o.warn?.(
          `${channel.name}: could not show ${kind} of ${request.id}: ${(error as Error).message}`,
        );
      }
    }
  }

  async #attempt(
    request: RequestRecord | null,
    channel: ChannelName,
    action: string,
    principal: string | null,
    outcome: string,
    detail: Readonly<Record<string, unknown>>,
  ): Promise<void> {
    const attempt: AttemptRecord = {
      requestId: request?.id ?? null,
      channel,
      action,
      principal,
      outcome,
      detail,
      atMs: this.#now(),
    };
    await this.#o.store.recordAttempt(attempt);
    await this.#audit(
      AuditKind.approvalAttempt,
      request?.agentId ?? null,
      request?.runWorkflowId ?? null,
      request?.step ?? null,
      { approvalWorkflowId: attempt.requestId, channel, action, principal, outcome, ...detail },
    );
  }

  async #audit(
    kind: AuditKind,
    agent: string | null,
    run: string | null,
    step: number | null,
    attrs: Record<string, unknown>,
  ): Promise<void> {
    await this.#o.audit?.append({ source: 'approvals', agent, run, step, kind, attrs });
  }
}
