/**
 * The Slack channel of the approvals service: a Bolt app on the HTTP receiver that turns button
 * clicks into {@link DecisionPort.submit} calls, and a {@link NotifyChannel} that posts and
 * re-renders approval cards by DM.
 *
 * Every interaction is acknowledged first. Before a click counts, it must come from our Slack app,
 * an allowed workspace, a human (not our bot, not any bot, app user, guest or deactivated account;
 * `users.info`, cached briefly) mapped to a principal in the governance document; everything else
 * (requester, eligibility, duplicates, staleness) is the service's decision. Signed requests are
 * single-use (the signature is remembered in the store) and future-dated timestamps are refused.
 * @module
 */
import { createHash } from 'node:crypto';
import type { RequestListener } from 'node:http';
import { App, HTTPModuleFunctions, HTTPReceiver } from '@slack/bolt';
import type { BlockAction, ButtonAction, Logger, ViewSubmitAction, types, webApi } from '@slack/bolt';
import { AgentRuntimeError } from '../../policy/errors.ts';
import { ChannelName, SubmitRefusal } from '../core/types.ts';
import type {
  ApprovalStore,
  ChannelNotice,
  DecisionPort,
  NotifyChannel,
  PrincipalContact,
  RequestRecord,
  SlackMessageRef,
  SubmitResult,
} from '../core/types.ts';
import { escapeMrkdwn, parseActionsBlockId, renderCard, SlackActionId, slackDate } from './card.ts';

/** Error codes the Slack channel raises. */
export const SlackErrorCode = {
  /** Slack stayed unreachable or kept failing after the WebClient's retries. */
  unavailable: 'SLACK_UNAVAILABLE',
  /** A signed request was seen before (internal: answered with HTTP 401). */
  replayed: 'SLACK_REPLAYED',
} as const;
export type SlackErrorCode = (typeof SlackErrorCode)[keyof typeof SlackErrorCode];

/** Outcome codes of refused Slack attempts that the Slack channel decides itself (audited). */
export const SlackRefusal = {
  wrongApp: 'wrong_app',
  wrongWorkspace: 'wrong_workspace',
  /** Our own bot user, any bot or app user, or the agent's own principal. */
  bot: 'bot',
  guest: 'guest_user',
  deactivated: 'deactivated_user',
  unknownUser: 'unknown_user',
  replayed: 'replayed',
  futureTimestamp: 'future_timestamp',
  /** The card's `block_id`/`value` is not one of ours. */
  malformed: 'malformed',
  /** `users.info` failed, so the account could not be verified (fail closed). */
  slackUnavailable: 'slack_unavailable',
} as const;
export type SlackRefusal = (typeof SlackRefusal)[keyof typeof SlackRefusal];

/** Slack stayed unreachable or failing; the service falls back to email for `failedPrincipals`. */
export class SlackUnavailableError extends AgentRuntimeError {
  /** Principals whose message could not be posted or updated. */
  readonly failedPrincipals: readonly string[];
  constructor(message: string, failedPrincipals: readonly string[], cause?: unknown) {
    super(SlackErrorCode.unavailable, message, { cause });
    this.failedPrincipals = failedPrincipals;
  }
}

/** A signed request whose signature was already used. */
class SlackReplayError extends AgentRuntimeError {
  constructor() {
    super(SlackErrorCode.replayed, 'this signed Slack request was already processed');
  }
}

/** Where principals are found (the service's trusted governance directory). */
export interface SlackDirectory {
  bySlack(team: string, user: string): PrincipalContact | null;
  byId(id: string): PrincipalContact | null;
}

/** The part of the approvals store the Slack channel uses. */
export type SlackStore = Pick<ApprovalStore, 'rememberOnce' | 'recordAttempt'>;

/** Options of {@link createSlackApp}. */
export interface SlackAppOptions {
  readonly signingSecret: string;
  /** `xoxb-…` bot token. */
  readonly botToken: string;
  /** The bot's `B…` id and `U…` user id (given, so Bolt skips `auth.test`). */
  readonly botId: string;
  readonly botUserId: string;
  /** Our app's `A…` id: payloads for any other `api_app_id` are refused. */
  readonly appId: string;
  /** Workspace (`T…`) or org (`E…`) ids clicks are accepted from. */
  readonly allowedTeams: readonly string[];
  readonly decisions: DecisionPort;
  readonly directory: SlackDirectory;
  readonly store: SlackStore;
  readonly getRequest: (id: string) => Promise<RequestRecord | null>;
  /** Base URL of the web inbox, for the cards' "Full details" links. */
  readonly publicBaseUrl: string;
  /** Receives the messages a `request`/`escalation` notice posted; the service appends them to `slackMessages`. */
  readonly onMessagesPosted: (requestId: string, refs: readonly SlackMessageRef[]) => Promise<void> | void;
  readonly now?: () => number;
  /** Web API base URL (default `https://slack.com/api/`); tests point it at a fake. */
  readonly slackApiUrl?: string;
  /** WebClient retry policy (default: 3 retries, 250 ms doubling, at most 2 s apart). */
  readonly retryConfig?: webApi.RetryOptions;
  /** Per-call timeout of Web API requests (default 10 s). */
  readonly requestTimeoutMs?: number;
  /** Bolt's `processBeforeResponse` (default false: the HTTP answer leaves at `ack()`). */
  readonly processBeforeResponse?: boolean;
  /** How long a `users.info` verdict is reused (default 60 s). */
  readonly userCacheMs?: number;
  readonly logger?: Logger;
}

/** What {@link createSlackApp} returns. */
export interface SlackApp {
  readonly app: App;
  readonly receiver: HTTPReceiver;
  /** Mount with `http.createServer(requestListener)`: `POST /slack/events`; anything else is 404. */
  readonly requestListener: RequestListener;
  readonly channel: SlackChannel;
}

/** The path Slack posts interactions to. */
export const SLACK_EVENTS_PATH = '/slack/events';
/** Slack's allowed clock skew for signed requests. */
const MAX_SKEW_MS = 5 * 60_000;
const DEFAULT_RETRY: webApi.RetryOptions = { retries: 3, factor: 2, minTimeout: 250, maxTimeout: 2000 };
const SLACK_USER_ID = /^[UW][A-Z0-9]{2,}$/;

/** The human sentence shown for each refusal code. */
const REFUSAL_TEXT: Readonly<Record<string, string>> = {
  [SlackRefusal.wrongApp]: 'This button belongs to another Slack app; nothing was recorded.',
  [SlackRefusal.wrongWorkspace]:
    'Approvals are not accepted from this Slack workspace; nothing was recorded.',
  [SlackRefusal.bot]: 'Bots and app users cannot vote on approval requests; nothing was recorded.',
  [SlackRefusal.guest]: 'Guest accounts cannot vote on approval requests; nothing was recorded.',
  [SlackRefusal.deactivated]: 'Deactivated accounts cannot vote on approval requests; nothing was recorded.',
  [SlackRefusal.unknownUser]:
    'Your Slack account is not mapped to an approver in the governance document; nothing was recorded.',
  [SlackRefusal.malformed]: 'This button is not a valid approval button; nothing was recorded.',
  [SlackRefusal.slackUnavailable]:
    'Your Slack account could not be verified right now; nothing was recorded. Please try again.',
  [SubmitRefusal.unknownRequest]: 'This approval request does not exist (any more); nothing was recorded.',
  [SubmitRefusal.decided]: 'This request has already been decided; your vote was not recorded.',
  [SubmitRefusal.expired]: 'This request has expired and was denied; your vote was not recorded.',
  [SubmitRefusal.staleRevision]:
    'This card is out of date: the request changed after it was posted. Use the latest card; nothing was recorded.',
  [SubmitRefusal.requester]: 'You requested this run, so you cannot approve its actions yourself.',
  [SubmitRefusal.agent]: "The agent's own identity cannot vote on its requests; nothing was recorded.",
  [SubmitRefusal.notAuthorized]: 'You are not an approver for this request; nothing was recorded.',
  [SubmitRefusal.duplicate]: 'You already voted on this request; your first vote is the one counted.',
  [SubmitRefusal.highRiskChannel]: 'This high-risk request cannot be decided here. Use the web inbox.',
  [SubmitRefusal.channelNotAllowed]: 'This request cannot be decided in Slack. Use the web inbox.',
  [SubmitRefusal.deliveryFailed]: 'Your vote could not be delivered; nothing was recorded. Please try again.',
};

/** The sentence for a refusal (the service's own message for codes this channel does not know). */
export function refusalText(code: string, fallback?: string): string {
  return REFUSAL_TEXT[code] ?? fallback ?? 'Your vote was not recorded.';
}

/** Renders principals as Slack mentions (`<@U01>`) when they have a Slack id, else their escaped id. */
export function slackPrincipalNames(directory: Pick<SlackDirectory, 'byId'>): (id: string) => string {
  return (id) => {
    const user = directory.byId(id)?.slack?.user;
    return user !== undefined && SLACK_USER_ID.test(user) ? `<@${user}>` : escapeMrkdwn(id);
  };
}

/** Fields of a payload's sender that every interaction type has. */
interface Sender {
  readonly api_app_id: string;
  readonly team: { readonly id: string } | null;
  readonly user: { readonly id: string; readonly team_id?: string };
}

type Refusal = { readonly code: string; readonly message: string };
type SenderCheck =
  { readonly ok: true; readonly principal: PrincipalContact } | ({ readonly ok: false } & Refusal);

/** A vote as it arrives from a button or the deny-reason modal. */
interface VoteAttempt {
  readonly body: Sender;
  readonly requestId: string;
  readonly revision: number | null;
  readonly decision: 'approve' | 'deny';
  readonly reason?: string;
  readonly client: webApi.WebClient;
  /** Tells the clicker (ephemeral). */
  readonly answer: (text: string) => Promise<void>;
  readonly detail: Readonly<Record<string, unknown>>;
}

const teamOf = (body: Sender): string => body.team?.id ?? body.user.team_id ?? '';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

const codeOf = (error: unknown): unknown =>
  typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;

/** `private_metadata` of the deny-reason modal. */
interface DenyMetadata {
  readonly requestId: string;
  readonly revision: number;
  readonly channel?: string;
}

function parseDenyMetadata(raw: string): DenyMetadata | null {
  try {
    const value = JSON.parse(raw) as Record<string, unknown>;
    if (typeof value['requestId'] !== 'string' || !Number.isSafeInteger(value['revision'])) return null;
    const channel = value['channel'];
    return {
      requestId: value['requestId'],
      revision: value['revision'] as number,
      ...(typeof channel === 'string' ? { channel } : {}),
    };
  } catch {
    return null;
  }
}

/** The modal the "Deny with reason…" button opens. */
function denyReasonView(metadata: DenyMetadata): types.ModalView {
  return {
    type: 'modal',
    callback_id: 'deny_reason',
    private_metadata: JSON.stringify(metadata),
    title: { type: 'plain_text', text: 'Deny request' },
    submit: { type: 'plain_text', text: 'Deny' },
    close: { type: 'plain_text', text: 'Cancel' },
    blocks: [
      {
        type: 'input',
        block_id: 'reason',
        label: { type: 'plain_text', text: 'Reason (shown on the card and recorded)' },
        element: {
          type: 'plain_text_input',
          action_id: 'reason_input',
          multiline: true,
          max_length: 2000,
        },
      },
    ],
  };
}

/**
 * Builds the Slack channel: the Bolt app, its HTTP receiver, the request listener to mount (with
 * the future-timestamp check in front of Bolt) and the {@link SlackChannel} the service notifies.
 */
export function createSlackApp(options: SlackAppOptions): SlackApp {
  const now = options.now ?? Date.now;
  const userCacheMs = options.userCacheMs ?? 60_000;
  const allowedTeams = new Set(options.allowedTeams);

  const receiver = new HTTPReceiver({
    signingSecret: options.signingSecret,
    endpoints: SLACK_EVENTS_PATH,
    processBeforeResponse: options.processBeforeResponse ?? false,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    customPropertiesExtractor: (req) => {
      const signature = req.headers['x-slack-signature'];
      const timestamp = req.headers['x-slack-request-timestamp'];
      return {
        slackSignature: typeof signature === 'string' ? signature : '',
        slackRequestTimestamp: typeof timestamp === 'string' ? Number(timestamp) : Number.NaN,
      };
    },
    processEventErrorHandler: async (args) => {
      if (codeOf(args.error) === SlackErrorCode.replayed) {
        if (!args.response.headersSent) {
          args.response.writeHead(401);
          args.response.end();
        }
        return true;
      }
      return HTTPModuleFunctions.defaultProcessEventErrorHandler(args);
    },
  });

  const app = new App({
    receiver,
    token: options.botToken,
    botId: options.botId,
    botUserId: options.botUserId,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    clientOptions: {
      ...(options.slackApiUrl === undefined ? {} : { slackApiUrl: options.slackApiUrl }),
      retryConfig: options.retryConfig ?? DEFAULT_RETRY,
      timeout: options.requestTimeoutMs ?? 10_000,
    },
  });
  const logger = app.logger;

  const audit = async (
    requestId: string | null,
    principal: string | null,
    outcome: string,
    detail: Readonly<Record<string, unknown>>,
  ): Promise<void> => {
    try {
      await options.store.recordAttempt({
        requestId,
        channel: ChannelName.slack,
        action: 'vote',
        principal,
        outcome,
        detail,
        atMs: now(),
      });
    } catch (error) {
      logger.error(`slack: could not record an attempt (${outcome}): ${(error as Error).message}`);
    }
  };

  const requestIdOf = (body: unknown): string | null => {
    const b = body as { actions?: { value?: unknown }[]; view?: { private_metadata?: unknown } };
    const value = b.actions?.[0]?.value;
    if (typeof value === 'string') return value;
    const meta = b.view?.private_metadata;
    return typeof meta === 'string' ? (parseDenyMetadata(meta)?.requestId ?? null) : null;
  };

  // Replay guard: Bolt has verified the signature by now; each signature is accepted once.
  app.use(async ({ context, body, next }) => {
    const signature = context['slackSignature'];
    const timestamp = context['slackRequestTimestamp'];
    const fresh =
      typeof signature === 'string' &&
      signature !== '' &&
      typeof timestamp === 'number' &&
      Number.isFinite(timestamp) &&
      (await options.store.rememberOnce(`slack:${sha256(signature)}`, (timestamp + 600) * 1000, now()));
    if (!fresh) {
      const sender = body as Partial<Sender>;
      await audit(requestIdOf(body), null, SlackRefusal.replayed, {
        team: sender.team?.id ?? sender.user?.team_id ?? null,
        user: sender.user?.id ?? null,
        timestamp: typeof timestamp === 'number' ? timestamp : null,
      });
      throw new SlackReplayError();
    }
    await next();
  });

  app.error(async (error) => {
    if (codeOf(error) === SlackErrorCode.replayed) logger.warn('slack: refused a replayed signed request');
    else logger.error(error);
    throw error;
  });

  /** Identity checks that need no network or store (safe before `views.open`). */
  const checkSender = (body: Sender): SenderCheck => {
    const team = teamOf(body);
    const refuse = (code: string): SenderCheck => ({ ok: false, code, message: refusalText(code) });
    if (body.api_app_id !== options.appId) return refuse(SlackRefusal.wrongApp);
    if (!allowedTeams.has(team)) return refuse(SlackRefusal.wrongWorkspace);
    if (body.user.id === options.botUserId) return refuse(SlackRefusal.bot);
    const principal = options.directory.bySlack(team, body.user.id);
    if (principal === null) return refuse(SlackRefusal.unknownUser);
    return { ok: true, principal };
  };

  const accountCache = new Map<
    string,
    { readonly atMs: number; readonly verdict: Promise<Refusal | null> }
  >();
  /** `users.info` verdict on a human account (null = fine), cached for `userCacheMs`. */
  const checkAccount = (client: webApi.WebClient, team: string, user: string): Promise<Refusal | null> => {
    const key = `${team}/${user}`;
    const hit = accountCache.get(key);
    if (hit !== undefined && now() - hit.atMs < userCacheMs) return hit.verdict;
    const verdict = client.users.info({ user }).then(({ user: info }): Refusal | null => {
      const code =
        info === undefined || info.id !== user
          ? SlackRefusal.unknownUser
          : info.is_bot === true || info.is_app_user === true
            ? SlackRefusal.bot
            : info.deleted === true
              ? SlackRefusal.deactivated
              : info.is_restricted === true || info.is_ultra_restricted === true
                ? SlackRefusal.guest
                : null;
      return code === null ? null : { code, message: refusalText(code) };
    });
    const entry = { atMs: now(), verdict };
    accountCache.set(key, entry);
    // a failed lookup is not cached
    verdict.catch(() => {
      if (accountCache.get(key) === entry) accountCache.delete(key);
    });
    return verdict;
  };

  /** Runs the identity checks and, when they pass, submits the vote; always answers the human. */
  const vote = async (attempt: VoteAttempt): Promise<void> => {
    const { body } = attempt;
    const team = teamOf(body);
    const detail = { team, user: body.user.id, apiAppId: body.api_app_id, ...attempt.detail };
    const refuse = async (principal: string | null, code: string, message: string): Promise<void> => {
      await audit(attempt.requestId === '' ? null : attempt.requestId, principal, code, detail);
      await attempt.answer(message);
    };
    const sender = checkSender(body);
    if (!sender.ok) return refuse(null, sender.code, sender.message);
    const principal = sender.principal.id;
    if (attempt.requestId === '' || attempt.revision === null)
      return refuse(principal, SlackRefusal.malformed, refusalText(SlackRefusal.malformed));

    const request = await options.getRequest(attempt.requestId);
    if (request === null)
      return refuse(principal, SubmitRefusal.unknownRequest, refusalText(SubmitRefusal.unknownRequest));
    if (principal === request.agentId)
      return refuse(principal, SlackRefusal.bot, refusalText(SlackRefusal.bot));
    let account: Refusal | null;
    try {
      account = await checkAccount(attempt.client, team, body.user.id);
    } catch (error) {
      logger.warn(`slack: users.info failed: ${(error as Error).message}`);
      account = { code: SlackRefusal.slackUnavailable, message: refusalText(SlackRefusal.slackUnavailable) };
    }
    if (account !== null) return refuse(principal, account.code, account.message);

    // The service audits every submit (refusals included) and re-renders the cards itself.
    const result = await options.decisions.submit({
      requestId: attempt.requestId,
      revision: attempt.revision,
      channel: ChannelName.slack,
      principal,
      decision: attempt.decision,
      ...(attempt.reason === undefined ? {} : { reason: attempt.reason }),
      detail,
    });
    await attempt.answer(resultText(result, attempt.decision));
  };

  /** Never lets a handler's failure escape after `ack()` (it could only be logged there). */
  const guarded = async (what: string, task: () => Promise<void>): Promise<void> => {
    try {
      await task();
    } catch (error) {
      logger.error(`slack: ${what} failed: ${(error as Error).message}`);
    }
  };

  const onVoteButton =
    (decision: 'approve' | 'deny') =>
    async ({
      ack,
      body,
      action,
      client,
      respond,
    }: {
      ack: () => Promise<void>;
      body: BlockAction;
      action: ButtonAction;
      client: webApi.WebClient;
      respond: (message: {
        response_type: 'ephemeral';
        replace_original: false;
        text: string;
      }) => Promise<unknown>;
    }): Promise<void> => {
      await ack();
      await guarded(`${decision} click`, () =>
        vote({
          body,
          requestId: action.value ?? '',
          revision: parseActionsBlockId(action.block_id),
          decision,
          client,
          answer: async (text) => {
            await respond({ response_type: 'ephemeral', replace_original: false, text });
          },
          detail: { decision, revision: parseActionsBlockId(action.block_id), actionId: action.action_id },
        }),
      );
    };

  app.action<BlockAction<ButtonAction>>({ type: 'block_actions', action_id: SlackActionId.approve }, (args) =>
    onVoteButton('approve')(args),
  );
  app.action<BlockAction<ButtonAction>>({ type: 'block_actions', action_id: SlackActionId.deny }, (args) =>
    onVoteButton('deny')(args),
  );

  app.action<BlockAction<ButtonAction>>(
    { type: 'block_actions', action_id: SlackActionId.denyReason },
    async ({ ack, body, action, client, respond }) => {
      await ack();
      const answer = async (text: string): Promise<void> => {
        await respond({ response_type: 'ephemeral', replace_original: false, text });
      };
      // trigger_id lives 3 s: only in-memory checks before views.open, no store or network work
      const sender = checkSender(body);
      const revision = parseActionsBlockId(action.block_id);
      const requestId = action.value ?? '';
      if (sender.ok && revision !== null && requestId !== '') {
        try {
          await client.views.open({
            trigger_id: body.trigger_id,
            view: denyReasonView({
              requestId,
              revision,
              ...(body.channel === undefined ? {} : { channel: body.channel.id }),
            }),
          });
        } catch (error) {
          logger.warn(`slack: views.open failed: ${(error as Error).message}`);
          await guarded('deny-reason answer', () =>
            answer('The reason dialog could not be opened; nothing was recorded. Please try again.'),
          );
        }
        return;
      }
      const code = sender.ok ? SlackRefusal.malformed : sender.code;
      await guarded('deny-reason refusal', async () => {
        await audit(requestId === '' ? null : requestId, sender.ok ? sender.principal.id : null, code, {
          team: teamOf(body),
          user: body.user.id,
          apiAppId: body.api_app_id,
          decision: 'deny',
          revision,
          actionId: action.action_id,
        });
        await answer(refusalText(code));
      });
    },
  );

  app.view<ViewSubmitAction>('deny_reason', async ({ ack, body, view, client }) => {
    const reason = view.state.values['reason']?.['reason_input']?.value?.trim() ?? '';
    if (reason === '') {
      await ack({ response_action: 'errors', errors: { reason: 'Please say why you deny this request.' } });
      return;
    }
    await ack();
    const metadata = parseDenyMetadata(view.private_metadata);
    const answer = async (text: string): Promise<void> => {
      if (metadata?.channel === undefined) await client.chat.postMessage({ channel: body.user.id, text });
      else await client.chat.postEphemeral({ channel: metadata.channel, user: body.user.id, text });
    };
    await guarded('deny-reason submission', () =>
      vote({
        body,
        requestId: metadata?.requestId ?? '',
        revision: metadata?.revision ?? null,
        decision: 'deny',
        reason,
        client,
        answer,
        detail: { decision: 'deny', revision: metadata?.revision ?? null, viaModal: true },
      }),
    );
  });

  const requestListener: RequestListener = (req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method === 'POST' && path === SLACK_EVENTS_PATH) {
      // Bolt refuses stale timestamps but accepts future ones; refuse those here, unread.
      const header = req.headers['x-slack-request-timestamp'];
      const timestamp = typeof header === 'string' ? Number(header) : Number.NaN;
      if (Number.isFinite(timestamp) && timestamp * 1000 - now() > MAX_SKEW_MS) {
        logger.warn('slack: refused a request with a future timestamp');
        res.writeHead(401);
        res.end();
        audit(null, null, SlackRefusal.futureTimestamp, { timestamp }).catch(() => {});
        return;
      }
    }
    try {
      receiver.requestListener(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(404);
      res.end();
    }
  };

  const channel = new SlackChannel({
    client: app.client,
    publicBaseUrl: options.publicBaseUrl,
    directory: options.directory,
    onMessagesPosted: options.onMessagesPosted,
    now,
  });
  return { app, receiver, requestListener, channel };
}

/** The ephemeral answer to an accepted or refused vote. */
function resultText(result: SubmitResult, decision: 'approve' | 'deny'): string {
  if (!result.ok) {
    if (result.code === SubmitRefusal.decided && result.request !== null) {
      const state = result.request.state === 'timed_out' ? 'expired' : result.request.state;
      return `This request was already ${state}; your vote was not recorded.`;
    }
    return refusalText(result.code, result.message);
  }
  const { request } = result;
  if (decision === 'deny') return 'Your denial was recorded: the request is denied.';
  const progress = `(${request.approvedBy.length} of ${request.quorum})`;
  return result.effect === 'approved'
    ? `Your approval was recorded ${progress}: the request is approved.`
    : `Your approval was recorded ${progress}.`;
}

/** What {@link SlackChannel} needs. */
export interface SlackChannelOptions {
  readonly client: webApi.WebClient;
  readonly publicBaseUrl: string;
  readonly directory: Pick<SlackDirectory, 'byId'>;
  readonly onMessagesPosted: (requestId: string, refs: readonly SlackMessageRef[]) => Promise<void> | void;
  readonly now: () => number;
}

/**
 * Delivers approval cards by DM and keeps them current: `request`/`escalation` post cards (and
 * report the messages through `onMessagesPosted`), `reminder` replies in each card's thread,
 * `outcome`/`revised` update every posted card. Throws {@link SlackUnavailableError} when any
 * post or update still fails after the WebClient's retries (after doing all the others).
 */
export class SlackChannel implements NotifyChannel {
  readonly name = ChannelName.slack;
  readonly #o: SlackChannelOptions;
  readonly #names: (id: string) => string;

  constructor(options: SlackChannelOptions) {
    this.#o = options;
    this.#names = slackPrincipalNames(options.directory);
  }

  /** Delivers or re-renders one notice. */
  async notify(notice: ChannelNotice): Promise<void> {
    const { request } = notice;
    switch (notice.kind) {
      case 'request':
        return this.#postCards(request, notice.recipients);
      case 'escalation': {
        const to = notice.recipients.map((r) => this.#names(r.id));
        const note = `:arrow_double_up: No decision yet: escalated to ${to.join(', ') || 'the escalation approvers'}.`;
        const [posted, noted] = await Promise.allSettled([
          this.#postCards(request, notice.recipients),
          this.#threadReplies(request, request.slackMessages, note),
        ]);
        if (posted.status === 'rejected') throw posted.reason;
        if (noted.status === 'rejected') throw noted.reason;
        return;
      }
      case 'reminder': {
        const ids = new Set(notice.recipients.map((r) => r.id));
        const refs =
          ids.size === 0 ? request.slackMessages : request.slackMessages.filter((m) => ids.has(m.principal));
        return this.#threadReplies(
          request,
          refs,
          `:alarm_clock: Reminder: this request expires ${slackDate(request.expiresAtMs)}.`,
        );
      }
      case 'outcome':
      case 'revised':
        return this.#updateCards(request);
    }
  }

  #card(request: RequestRecord): { text: string; blocks: types.KnownBlock[] } {
    return renderCard(request, {
      publicBaseUrl: this.#o.publicBaseUrl,
      nowMs: this.#o.now(),
      principalNames: this.#names,
    });
  }

  async #postCards(request: RequestRecord, recipients: readonly PrincipalContact[]): Promise<void> {
    const card = this.#card(request);
    const targets = recipients.filter(
      (r): r is PrincipalContact & { slack: NonNullable<PrincipalContact['slack']> } => r.slack !== null,
    );
    const results = await Promise.allSettled(
      targets.map(async (r): Promise<SlackMessageRef> => {
        const res = await this.#o.client.chat.postMessage({
          channel: r.slack.user,
          text: card.text,
          blocks: card.blocks,
          unfurl_links: false,
          unfurl_media: false,
        });
        if (res.ts === undefined) throw new Error('chat.postMessage returned no ts');
        return { principal: r.id, channel: res.channel ?? r.slack.user, ts: res.ts };
      }),
    );
    const refs = results.flatMap((x) => (x.status === 'fulfilled' ? [x.value] : []));
    if (refs.length > 0) await this.#o.onMessagesPosted(request.id, refs);
    this.#throwFailures(
      'post the approval card',
      request,
      results.map((x, i) => [targets[i]?.id ?? '', x]),
    );
  }

  async #threadReplies(
    request: RequestRecord,
    refs: readonly SlackMessageRef[],
    text: string,
  ): Promise<void> {
    const results = await Promise.allSettled(
      refs.map((ref) =>
        this.#o.client.chat.postMessage({
          channel: ref.channel,
          thread_ts: ref.ts,
          text,
          unfurl_links: false,
        }),
      ),
    );
    this.#throwFailures(
      'reply in the thread of',
      request,
      results.map((x, i) => [refs[i]?.principal ?? '', x]),
    );
  }

  async #updateCards(request: RequestRecord): Promise<void> {
    const card = this.#card(request);
    const refs = request.slackMessages;
    const results = await Promise.allSettled(
      refs.map((ref) =>
        this.#o.client.chat.update({
          channel: ref.channel,
          ts: ref.ts,
          text: card.text,
          blocks: card.blocks,
        }),
      ),
    );
    this.#throwFailures(
      'update the card of',
      request,
      results.map((x, i) => [refs[i]?.principal ?? '', x]),
    );
  }

  #throwFailures(
    what: string,
    request: RequestRecord,
    results: readonly (readonly [string, PromiseSettledResult<unknown>])[],
  ): void {
    const failed = results.flatMap(([principal, x]) =>
      x.status === 'rejected' ? [{ principal, reason: x.reason as unknown }] : [],
    );
    const first = failed[0];
    if (first === undefined) return;
    const why = first.reason instanceof Error ? first.reason.message : String(first.reason);
    throw new SlackUnavailableError(
      `Slack: could not ${what} ${request.id} for ${failed.map((f) => f.principal).join(', ')}: ${why}`,
      failed.map((f) => f.principal),
      first.reason,
    );
  }
}
