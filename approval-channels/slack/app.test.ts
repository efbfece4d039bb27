/**
 * The Slack channel end to end over real HTTP: Bolt's HTTPReceiver on 127.0.0.1, correctly signed
 * interaction payloads, and the fake Slack Web API. The DecisionPort is a small in-memory service
 * that enforces requester/eligibility/decided/duplicate/stale-revision like the real one.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogLevel } from '@slack/bolt';
import type { Logger } from '@slack/bolt';
import type {
  ApprovalStore,
  AttemptRecord,
  DecisionPort,
  PrincipalContact,
  RequestRecord,
  SlackMessageRef,
  SubmitInput,
  SubmitResult,
} from '../core/types.ts';
import { createSlackApp, SlackErrorCode } from './app.ts';
import type { SlackApp } from './app.ts';
import { encodeActionsBlockId, SlackActionId } from './card.ts';
import {
  blockActionsPayload,
  interactionBody,
  signSlackRequest,
  startFakeSlackApi,
  viewSubmissionPayload,
} from './fake-slack-api.ts';
import type { FakeSlackApi, RecordedCall } from './fake-slack-api.ts';

const SECRET = 'test-signing-secret-0123456789abcdef';
const TOKEN = 'xoxb-test-bot-token';
const APP_ID = 'A0APPROVALS';
const TEAM = 'T_ALLOWED';
const BOT_USER = 'UBOT';
const BOT_ID = 'BBOT';
const REQUEST_ID = 'run-1/approval/3';
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

const contact = (id: string, user: string | null, email: string | null = null): PrincipalContact => ({
  id,
  email,
  slack: user === null ? null : { team: TEAM, user },
});
const PRINCIPALS: readonly PrincipalContact[] = [
  contact('alice', 'UALICE'),
  contact('bob', 'UBOB'),
  contact('carol', 'UCAROL'),
  contact('dave', null, 'dave@example.com'),
  contact('rita', 'URITA'),
  contact('mallory', 'UMALLORY'),
  contact('build-bot', 'UAGENT'),
  contact('erin', 'UERIN'),
];
const directory = {
  bySlack: (team: string, user: string) =>
    PRINCIPALS.find((p) => p.slack?.team === team && p.slack.user === user) ?? null,
  byId: (id: string) => PRINCIPALS.find((p) => p.id === id) ?? null,
};

function request(overrides: Partial<RequestRecord> = {}): RequestRecord {
  return {
    id: REQUEST_ID,
    revision: 1,
    runWorkflowId: 'run-1',
    agentId: 'build-bot',
    requester: 'rita',
    step: 3,
    tool: 'deploy_service',
    args: { service: 'api', version: '1.4.0', env: 'prod' },
    resource: 'service:api',
    rationale: 'Release 1.4 fixes the login bug.',
    ruleId: 'prod-deploys',
    policyVersion: 'sha256:abc',
    actionDigest: 'digest-1',
    eligible: ['alice', 'bob', 'carol'],
    escalationEligible: ['erin'],
    escalated: false,
    quorum: 1,
    highRisk: false,
    channels: [],
    createdAtMs: Date.now(),
    expiresAtMs: Date.now() + 3_600_000,
    state: 'pending',
    approvedBy: [],
    deniedBy: null,
    reason: null,
    decidedAtMs: null,
    slackMessages: [],
    ...overrides,
  };
}

/** A tiny approvals service: enforces what the real one does, atomically per call. */
class TestDecisions implements DecisionPort {
  readonly requests = new Map<string, RequestRecord>();
  readonly calls: SubmitInput[] = [];
  readonly results: SubmitResult[] = [];
  readonly #votes = new Set<string>();
  readonly #now: () => number;
  delayMs = 0;

  constructor(now: () => number) {
    this.#now = now;
  }

  async submit(input: SubmitInput): Promise<SubmitResult> {
    this.calls.push(input);
    const result = this.#decide(input);
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    this.results.push(result);
    return result;
  }

  #decide(input: SubmitInput): SubmitResult {
    const r = this.requests.get(input.requestId);
    const refuse = (code: Extract<SubmitResult, { ok: false }>['code']): SubmitResult => ({
      ok: false,
      code,
      message: `service refused: ${code}`,
      request: r ?? null,
    });
    if (r === undefined) return refuse('unknown_request');
    if (r.state !== 'pending') return refuse('decided');
    if (this.#now() >= r.expiresAtMs) return refuse('expired');
    if (input.revision !== r.revision) return refuse('stale_revision');
    if (input.principal === r.requester) return refuse('self_approval');
    if (input.principal === r.agentId) return refuse('agent');
    const eligible =
      r.eligible.includes(input.principal) || (r.escalated && r.escalationEligible.includes(input.principal));
    if (!eligible) return refuse('not_authorized');
    const key = `${r.id}\u0000${input.principal}`;
    if (this.#votes.has(key)) return refuse('duplicate');
    this.#votes.add(key);
    let next: RequestRecord;
    let effect: 'counted' | 'approved' | 'denied';
    if (input.decision === 'deny') {
      next = {
        ...r,
        state: 'denied',
        deniedBy: input.principal,
        reason: input.reason ?? null,
        decidedAtMs: this.#now(),
      };
      effect = 'denied';
    } else {
      const approvedBy = [...r.approvedBy, input.principal];
      const done = approvedBy.length >= r.quorum;
      next = { ...r, approvedBy, ...(done ? { state: 'approved' as const, decidedAtMs: this.#now() } : {}) };
      effect = done ? 'approved' : 'counted';
    }
    this.requests.set(r.id, next);
    return { ok: true, request: next, effect };
  }
}

/** The part of the store the Slack channel uses, in memory. */
function memoryStore(): Pick<ApprovalStore, 'rememberOnce' | 'recordAttempt' | 'listAttempts'> & {
  readonly attempts: AttemptRecord[];
} {
  const seen = new Map<string, number>();
  const attempts: AttemptRecord[] = [];
  return {
    attempts,
    rememberOnce: async (key, expiresAtMs, nowMs) => {
      const until = seen.get(key);
      if (until !== undefined && until > nowMs) return false;
      seen.set(key, expiresAtMs);
      return true;
    },
    recordAttempt: async (attempt) => {
      attempts.push(attempt);
    },
    listAttempts: async (filter) =>
      attempts.filter(
        (a) =>
          (filter?.requestId === undefined || a.requestId === filter.requestId) &&
          (filter?.channel === undefined || a.channel === filter.channel),
      ),
  };
}

function quietLogger(): Logger & { readonly lines: string[] } {
  const lines: string[] = [];
  const log =
    (level: string) =>
    (...msg: unknown[]) => {
      lines.push(`${level}: ${msg.map(String).join(' ')}`);
    };
  return {
    lines,
    debug: () => {},
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    setLevel: () => {},
    getLevel: () => LogLevel.INFO,
    setName: () => {},
  };
}

interface Harness {
  readonly fake: FakeSlackApi;
  readonly slack: SlackApp;
  readonly url: string;
  readonly decisions: TestDecisions;
  readonly store: ReturnType<typeof memoryStore>;
  readonly posted: { requestId: string; refs: readonly SlackMessageRef[] }[];
  readonly logger: ReturnType<typeof quietLogger>;
  /** Milliseconds added to the service clock. */
  clockOffsetMs: number;
}

let h: Harness;
let server: Server;
let clicks = 0;

beforeEach(async () => {
  const fake = await startFakeSlackApi({ token: TOKEN });
  const store = memoryStore();
  const posted: Harness['posted'] = [];
  const logger = quietLogger();
  const state = { clockOffsetMs: 0 };
  const now = () => Date.now() + state.clockOffsetMs;
  const decisions = new TestDecisions(now);
  decisions.requests.set(REQUEST_ID, request());
  const slack = createSlackApp({
    signingSecret: SECRET,
    botToken: TOKEN,
    botId: BOT_ID,
    botUserId: BOT_USER,
    appId: APP_ID,
    allowedTeams: [TEAM],
    decisions,
    directory,
    store,
    getRequest: async (id) => decisions.requests.get(id) ?? null,
    publicBaseUrl: 'https://approvals.example.com',
    onMessagesPosted: (requestId, refs) => {
      posted.push({ requestId, refs });
    },
    now,
    slackApiUrl: fake.apiUrl,
    retryConfig: { retries: 2, factor: 1, minTimeout: 5, maxTimeout: 5 },
    logger,
  });
  server = createServer(slack.requestListener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  h = {
    fake,
    slack,
    url,
    decisions,
    store,
    posted,
    logger,
    get clockOffsetMs() {
      return state.clockOffsetMs;
    },
    set clockOffsetMs(v: number) {
      state.clockOffsetMs = v;
    },
  };
});

afterEach(async () => {
  // every request to the Slack API carried the bot token
  for (const call of h.fake.calls) expect(call.headers.authorization, call.method).toBe(`Bearer ${TOKEN}`);
  expect(h.fake.callsTo('auth.test')).toHaveLength(0);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await h.fake.close();
});

interface PostOptions {
  readonly ts?: number;
  readonly secret?: string;
  readonly signature?: string;
}

/** POSTs a signed interaction to the receiver. */
async function post(payload: unknown, options: PostOptions = {}): Promise<{ status: number; text: string }> {
  const body = interactionBody(payload);
  const ts = options.ts ?? Math.floor(Date.now() / 1000);
  const headers = { ...signSlackRequest(body, options.secret ?? SECRET, ts) };
  if (options.signature !== undefined) headers['x-slack-signature'] = options.signature;
  return postRaw(body, headers);
}

async function postRaw(
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${h.url}/slack/events`, { method: 'POST', body, headers });
  return { status: res.status, text: await res.text() };
}

interface ClickInput {
  readonly user?: string;
  readonly team?: string | null;
  readonly userTeamId?: string;
  readonly apiAppId?: string;
  readonly actionId?: string;
  readonly revision?: number;
  readonly blockId?: string;
  readonly value?: string;
}

/** A `block_actions` payload for a click on the card (each click distinct, like Slack's). */
function click(input: ClickInput = {}): Record<string, unknown> {
  clicks += 1;
  return blockActionsPayload({
    apiAppId: input.apiAppId ?? APP_ID,
    team: input.team === undefined ? TEAM : input.team,
    user: input.user ?? 'UALICE',
    ...(input.userTeamId === undefined ? {} : { userTeamId: input.userTeamId }),
    actionId: input.actionId ?? SlackActionId.approve,
    value: input.value ?? REQUEST_ID,
    blockId: input.blockId ?? encodeActionsBlockId(input.revision ?? 1),
    responseUrl: h.fake.responseUrl(`click-${clicks}`),
    triggerId: `${clicks}.trigger`,
    channel: 'DALICE',
    messageTs: '1700000001.000001',
  });
}

/** Waits for `n` `response_url` answers and returns their texts. */
async function ephemeralTexts(n = 1): Promise<string[]> {
  await h.fake.waitFor(() => h.fake.responses.length >= n);
  for (const r of h.fake.responses) {
    expect(r.body['response_type']).toBe('ephemeral');
    expect(r.body['replace_original']).toBe(false);
  }
  return h.fake.responses.map((r) => String(r.body['text']));
}

const outcomes = () => h.store.attempts.map((a) => a.outcome);

describe('approve and deny buttons', () => {
  it('an approve click acks with 200 before the work, submits exactly once and answers ephemerally', async () => {
    h.decisions.delayMs = 300;
    const res = await post(click());
    expect(res).toEqual({ status: 200, text: '' });
    expect(h.decisions.results).toHaveLength(0); // the answer left at ack(), before the vote finished
    expect(await ephemeralTexts()).toEqual(['Your approval was recorded (1 of 1): the request is approved.']);
    expect(h.decisions.calls).toHaveLength(1);
    expect(h.decisions.calls[0]).toEqual({
      requestId: REQUEST_ID,
      revision: 1,
      channel: 'slack',
      principal: 'alice',
      decision: 'approve',
      detail: {
        team: TEAM,
        user: 'UALICE',
        apiAppId: APP_ID,
        decision: 'approve',
        revision: 1,
        actionId: 'approval_approve',
      },
    });
    expect(h.fake.calls.map((c) => c.method)).toEqual(['users.info']);
    expect(h.fake.callsTo('users.info')[0]?.body['user']).toBe('UALICE');
    // successful votes are not re-rendered here: the service does that through channel.notify
    expect(h.fake.callsTo('chat.update')).toHaveLength(0);
  });

  it('a vote that takes longer than Slack waits (a slow Temporal) is still acked at once', async () => {
    h.decisions.delayMs = 3_500; // Slack shows the user an error after 3 s without an answer
    const started = performance.now();
    const res = await post(click());
    const answeredMs = performance.now() - started;
    expect(res.status).toBe(200);
    expect(answeredMs).toBeLessThan(1_000);
    expect(h.decisions.results).toHaveLength(0);
    // the ephemeral answer follows once the vote is in
    expect(await ephemeralTexts()).toEqual(['Your approval was recorded (1 of 1): the request is approved.']);
  }, 10_000);

  it('a deny click submits a deny', async () => {
    expect((await post(click({ actionId: SlackActionId.deny, user: 'UBOB' }))).status).toBe(200);
    expect(await ephemeralTexts()).toEqual(['Your denial was recorded: the request is denied.']);
    expect(h.decisions.calls.map((c) => [c.principal, c.decision])).toEqual([['bob', 'deny']]);
  });

  it('quorum 2: a first approval is counted (1 of 2)', async () => {
    h.decisions.requests.set(REQUEST_ID, request({ quorum: 2 }));
    await post(click());
    expect(await ephemeralTexts()).toEqual(['Your approval was recorded (1 of 2).']);
  });

  it('two distinct signed clicks by the same user count one vote; the second is a duplicate', async () => {
    h.decisions.requests.set(REQUEST_ID, request({ quorum: 2 }));
    expect((await post(click())).status).toBe(200);
    await ephemeralTexts(1);
    expect((await post(click())).status).toBe(200);
    const texts = await ephemeralTexts(2);
    expect(texts[1]).toBe('You already voted on this request; your first vote is the one counted.');
    expect(h.decisions.requests.get(REQUEST_ID)?.approvedBy).toEqual(['alice']);
    expect(h.decisions.results.map((r) => (r.ok ? r.effect : r.code))).toEqual(['counted', 'duplicate']);
  });

  it('two concurrent clicks by the same user: exactly one vote counted, the other is a duplicate', async () => {
    h.decisions.requests.set(REQUEST_ID, request({ quorum: 2 }));
    const [a, b] = await Promise.all([post(click()), post(click())]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const texts = await ephemeralTexts(2);
    expect(texts.sort()).toEqual([
      'You already voted on this request; your first vote is the one counted.',
      'Your approval was recorded (1 of 2).',
    ]);
    expect(h.decisions.requests.get(REQUEST_ID)?.approvedBy).toEqual(['alice']);
  });

  it('the requester is refused with self_approval', async () => {
    await post(click({ user: 'URITA' }));
    expect(await ephemeralTexts()).toEqual([
      'You requested this run, so you cannot approve its actions yourself.',
    ]);
    expect(h.decisions.results.map((r) => (r.ok ? 'ok' : r.code))).toEqual(['self_approval']);
  });

  it('an ineligible principal is refused with not_authorized', async () => {
    await post(click({ user: 'UMALLORY' }));
    expect(await ephemeralTexts()).toEqual([
      'You are not an approver for this request; nothing was recorded.',
    ]);
    expect(h.decisions.results.map((r) => (r.ok ? 'ok' : r.code))).toEqual(['not_authorized']);
  });

  it('a stale revision in block_id is refused', async () => {
    h.decisions.requests.set(REQUEST_ID, request({ revision: 2 }));
    await post(click({ revision: 1 }));
    expect(await ephemeralTexts()).toEqual([
      'This card is out of date: the request changed after it was posted. Use the latest card; nothing was recorded.',
    ]);
    expect(h.decisions.calls[0]?.revision).toBe(1);
    expect(h.decisions.requests.get(REQUEST_ID)?.state).toBe('pending');
  });

  it('a click on an already decided request says who decided', async () => {
    h.decisions.requests.set(
      REQUEST_ID,
      request({ state: 'denied', deniedBy: 'bob', decidedAtMs: Date.now() }),
    );
    await post(click());
    expect(await ephemeralTexts()).toEqual(['This request was already denied; your vote was not recorded.']);
  });

  it('a block_id that is not ours is refused as malformed, without a submit', async () => {
    await post(click({ blockId: 'appr|x' }));
    expect(await ephemeralTexts()).toEqual([
      'This button is not a valid approval button; nothing was recorded.',
    ]);
    expect(h.decisions.calls).toHaveLength(0);
    expect(outcomes()).toEqual(['malformed']);
  });
});

describe('identity checks (ephemeral refusal, audited, no submit)', () => {
  const cases: readonly (readonly [string, ClickInput, string, string])[] = [
    [
      'wrong api_app_id',
      { apiAppId: 'A0OTHERAPP' },
      'wrong_app',
      'This button belongs to another Slack app; nothing was recorded.',
    ],
    [
      'unknown team',
      { team: 'T_OTHER' },
      'wrong_workspace',
      'Approvals are not accepted from this Slack workspace; nothing was recorded.',
    ],
    [
      'unknown user',
      { user: 'UNOBODY' },
      'unknown_user',
      'Your Slack account is not mapped to an approver in the governance document; nothing was recorded.',
    ],
    [
      'our own bot user',
      { user: BOT_USER },
      'bot',
      'Bots and app users cannot vote on approval requests; nothing was recorded.',
    ],
    [
      "the agent's own principal",
      { user: 'UAGENT' },
      'bot',
      'Bots and app users cannot vote on approval requests; nothing was recorded.',
    ],
  ];
  it.each(cases)('%s', async (_name, input, code, text) => {
    expect((await post(click(input))).status).toBe(200);
    expect(await ephemeralTexts()).toEqual([text]);
    expect(h.decisions.calls).toHaveLength(0);
    await h.fake.waitFor(() => h.store.attempts.length > 0);
    expect(h.store.attempts).toEqual([
      expect.objectContaining({ requestId: REQUEST_ID, channel: 'slack', action: 'vote', outcome: code }),
    ]);
  });

  it('team from user.team_id when team is null', async () => {
    await post(click({ team: null, userTeamId: TEAM }));
    expect(await ephemeralTexts()).toEqual(['Your approval was recorded (1 of 1): the request is approved.']);
  });

  const accounts: readonly (readonly [string, Record<string, boolean>, string])[] = [
    ['a bot (users.info is_bot)', { is_bot: true }, 'bot'],
    ['an app user', { is_app_user: true }, 'bot'],
    ['a deactivated user', { deleted: true }, 'deactivated_user'],
    ['a guest', { is_restricted: true }, 'guest_user'],
    ['a single-channel guest', { is_ultra_restricted: true }, 'guest_user'],
  ];
  it.each(accounts)('%s is refused', async (_name, flags, code) => {
    h.fake.setUser({ id: 'UALICE', ...flags });
    await post(click());
    await ephemeralTexts();
    expect(h.decisions.calls).toHaveLength(0);
    expect(outcomes()).toEqual([code]);
    expect(h.store.attempts[0]?.principal).toBe('alice');
  });

  it('our own bot user is refused without asking users.info', async () => {
    await post(click({ user: BOT_USER }));
    await ephemeralTexts();
    expect(h.fake.callsTo('users.info')).toHaveLength(0);
  });

  it('users.info verdicts are cached for 60 s', async () => {
    h.decisions.requests.set(REQUEST_ID, request({ quorum: 3 }));
    await post(click({ user: 'UALICE' }));
    await ephemeralTexts(1);
    await post(click({ user: 'UALICE' }));
    await ephemeralTexts(2);
    expect(h.fake.callsTo('users.info')).toHaveLength(1);
    h.clockOffsetMs = 61_000;
    await post(click({ user: 'UALICE' }));
    await ephemeralTexts(3);
    expect(h.fake.callsTo('users.info')).toHaveLength(2);
  });

  it('users.info failing fails closed', async () => {
    h.fake.failNext('users.info', 500, 3);
    await post(click());
    expect(await ephemeralTexts()).toEqual([
      'Your Slack account could not be verified right now; nothing was recorded. Please try again.',
    ]);
    expect(h.decisions.calls).toHaveLength(0);
    expect(outcomes()).toEqual(['slack_unavailable']);
  });
});

describe('signatures, timestamps and replays', () => {
  it('a bad signature is 401 and submits nothing', async () => {
    const res = await post(click(), { secret: 'wrong-secret' });
    expect(res.status).toBe(401);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(h.decisions.calls).toHaveLength(0);
    expect(h.fake.calls).toHaveLength(0);
    expect(h.fake.responses).toHaveLength(0);
  });

  it('a timestamp 6 minutes old is 401', async () => {
    const res = await post(click(), { ts: Math.floor(Date.now() / 1000) - 360 });
    expect(res.status).toBe(401);
    expect(h.decisions.calls).toHaveLength(0);
  });

  it('a timestamp 6 minutes in the future is refused before Bolt, and audited', async () => {
    const ts = Math.floor(Date.now() / 1000) + 360;
    const res = await post(click(), { ts });
    expect(res.status).toBe(401);
    await h.fake.waitFor(() => h.store.attempts.length > 0);
    expect(h.store.attempts).toEqual([
      expect.objectContaining({ outcome: 'future_timestamp', requestId: null, detail: { timestamp: ts } }),
    ]);
    expect(h.decisions.calls).toHaveLength(0);
    expect(h.fake.calls).toHaveLength(0);
  });

  it('a timestamp 4 minutes in the future is accepted', async () => {
    const res = await post(click(), { ts: Math.floor(Date.now() / 1000) + 240 });
    expect(res.status).toBe(200);
    await ephemeralTexts();
  });

  it('the same signed request replayed is refused (401) and audited; one vote counted', async () => {
    const body = interactionBody(click());
    const headers = { ...signSlackRequest(body, SECRET, Math.floor(Date.now() / 1000)) };
    expect((await postRaw(body, headers)).status).toBe(200);
    await ephemeralTexts(1);
    const replay = await postRaw(body, headers);
    expect(replay.status).toBe(401);
    expect(h.decisions.calls).toHaveLength(1);
    expect(h.store.attempts).toEqual([
      expect.objectContaining({
        requestId: REQUEST_ID,
        channel: 'slack',
        action: 'vote',
        principal: null,
        outcome: 'replayed',
        detail: expect.objectContaining({ team: TEAM, user: 'UALICE' }) as unknown,
      }),
    ]);
    expect(h.fake.responses).toHaveLength(1);
  });

  it('a content type with a charset is 400 (Bolt compares it exactly)', async () => {
    const body = interactionBody(click());
    const headers = {
      ...signSlackRequest(body, SECRET, Math.floor(Date.now() / 1000)),
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
    };
    expect((await postRaw(body, headers)).status).toBe(400);
  });

  it('other paths are 404', async () => {
    const res = await fetch(`${h.url}/elsewhere`);
    expect(res.status).toBe(404);
  });
});

describe('deny with reason', () => {
  it('opens the modal with the trigger id before any submit, then denies with the reason', async () => {
    const payload = click({ actionId: SlackActionId.denyReason, user: 'UBOB' });
    expect((await post(payload)).status).toBe(200);
    await h.fake.waitFor(() => h.fake.callsTo('views.open').length === 1);
    expect(h.fake.calls.map((c) => c.method)).toEqual(['views.open']); // no users.info before it
    expect(h.decisions.calls).toHaveLength(0);
    const open = h.fake.callsTo('views.open')[0] as RecordedCall;
    expect(open.body['trigger_id']).toBe(`${clicks}.trigger`);
    const view = open.body['view'] as Record<string, unknown>;
    expect(view['callback_id']).toBe('deny_reason');
    expect(JSON.parse(String(view['private_metadata']))).toEqual({
      requestId: REQUEST_ID,
      revision: 1,
      channel: 'DALICE',
    });
    expect(view['blocks']).toMatchInlineSnapshot(`
      [
        {
          "block_id": "reason",
          "element": {
            "action_id": "reason_input",
            "max_length": 2000,
            "multiline": true,
            "type": "plain_text_input",
          },
          "label": {
            "text": "Reason (shown on the card and recorded)",
            "type": "plain_text",
          },
          "type": "input",
        },
      ]
    `);

    const submission = viewSubmissionPayload({
      apiAppId: APP_ID,
      team: TEAM,
      user: 'UBOB',
      callbackId: 'deny_reason',
      privateMetadata: String(view['private_metadata']),
      values: { reason: { reason_input: '  Not during the freeze.  ' } },
    });
    expect(await post(submission)).toEqual({ status: 200, text: '' });
    await h.fake.waitFor(() => h.fake.callsTo('chat.postEphemeral').length === 1);
    expect(h.decisions.calls).toEqual([
      expect.objectContaining({
        requestId: REQUEST_ID,
        revision: 1,
        principal: 'bob',
        decision: 'deny',
        reason: 'Not during the freeze.',
      }),
    ]);
    expect(h.fake.callsTo('chat.postEphemeral')[0]?.body).toMatchObject({
      channel: 'DALICE',
      user: 'UBOB',
      text: 'Your denial was recorded: the request is denied.',
    });
    expect(h.decisions.requests.get(REQUEST_ID)).toMatchObject({
      state: 'denied',
      reason: 'Not during the freeze.',
    });
  });

  it('an empty reason keeps the modal open with response_action errors', async () => {
    const submission = viewSubmissionPayload({
      apiAppId: APP_ID,
      team: TEAM,
      user: 'UBOB',
      callbackId: 'deny_reason',
      privateMetadata: JSON.stringify({ requestId: REQUEST_ID, revision: 1 }),
      values: { reason: { reason_input: '   ' } },
    });
    const res = await post(submission);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchInlineSnapshot(`
      {
        "errors": {
          "reason": "Please say why you deny this request.",
        },
        "response_action": "errors",
      }
    `);
    expect(h.decisions.calls).toHaveLength(0);
  });

  it('a refused modal submission is answered by DM when the card channel is unknown', async () => {
    const submission = viewSubmissionPayload({
      apiAppId: APP_ID,
      team: TEAM,
      user: 'UMALLORY',
      callbackId: 'deny_reason',
      privateMetadata: JSON.stringify({ requestId: REQUEST_ID, revision: 1 }),
      values: { reason: { reason_input: 'no' } },
    });
    await post(submission);
    await h.fake.waitFor(() => h.fake.callsTo('chat.postMessage').length === 1);
    expect(h.fake.callsTo('chat.postMessage')[0]?.body).toMatchObject({
      channel: 'UMALLORY',
      text: 'You are not an approver for this request; nothing was recorded.',
    });
  });

  it('the deny-reason button refuses a foreign workspace without opening the modal', async () => {
    await post(click({ actionId: SlackActionId.denyReason, team: 'T_OTHER' }));
    expect(await ephemeralTexts()).toEqual([
      'Approvals are not accepted from this Slack workspace; nothing was recorded.',
    ]);
    expect(h.fake.callsTo('views.open')).toHaveLength(0);
    expect(outcomes()).toEqual(['wrong_workspace']);
  });
});

describe('SlackChannel.notify', () => {
  const recipients = () => ['alice', 'bob', 'dave'].map((id) => directory.byId(id) as PrincipalContact);

  it('request: one DM per Slack recipient, refs reported', async () => {
    await h.slack.channel.notify({ kind: 'request', request: request(), recipients: recipients() });
    const posts = h.fake.callsTo('chat.postMessage');
    expect(posts.map((c) => c.body['channel'])).toEqual(['UALICE', 'UBOB']);
    const blocks = posts[0]?.body['blocks'] as { type: string; block_id?: string }[];
    expect(blocks.find((b) => b.type === 'actions')?.block_id).toBe('appr|1');
    expect(String(posts[0]?.body['text'])).toContain('Approval needed: deploy_service');
    expect(h.posted).toHaveLength(1);
    expect(h.posted[0]?.requestId).toBe(REQUEST_ID);
    expect(h.posted[0]?.refs.map((r) => [r.principal, r.channel])).toEqual([
      ['alice', 'DALICE'],
      ['bob', 'DBOB'],
    ]);
    expect(new Set(h.posted[0]?.refs.map((r) => r.ts)).size).toBe(2);
  });

  const messages: readonly SlackMessageRef[] = [
    { principal: 'alice', channel: 'DALICE', ts: '1700000001.000001' },
    { principal: 'bob', channel: 'DBOB', ts: '1700000002.000002' },
  ];

  it('outcome: chat.update of every posted card, saying who approved, without buttons', async () => {
    const approved = request({
      state: 'approved',
      approvedBy: ['alice'],
      decidedAtMs: T0,
      slackMessages: messages,
    });
    await h.slack.channel.notify({ kind: 'outcome', request: approved, recipients: [] });
    const updates = h.fake.callsTo('chat.update');
    expect(updates.map((c) => [c.body['channel'], c.body['ts']])).toEqual([
      ['DALICE', '1700000001.000001'],
      ['DBOB', '1700000002.000002'],
    ]);
    for (const u of updates) {
      expect(String(u.body['text'])).toContain('Approved by <@UALICE>');
      expect(JSON.stringify(u.body['blocks'])).toContain('Approved by <@UALICE>');
      expect((u.body['blocks'] as { type: string }[]).some((b) => b.type === 'actions')).toBe(false);
    }
  });

  it('revised: chat.update with the new revision in block_id', async () => {
    await h.slack.channel.notify({
      kind: 'revised',
      request: request({ revision: 2, slackMessages: messages }),
      recipients: [],
    });
    const blocks = h.fake.callsTo('chat.update')[0]?.body['blocks'] as { type: string; block_id?: string }[];
    expect(blocks.find((b) => b.type === 'actions')?.block_id).toBe('appr|2');
  });

  it('reminder: a reply in the thread of each card', async () => {
    const expiresAtMs = T0 + 3_600_000;
    await h.slack.channel.notify({
      kind: 'reminder',
      request: request({ expiresAtMs, slackMessages: messages }),
      recipients: recipients(),
    });
    expect(
      h.fake.callsTo('chat.postMessage').map((c) => [c.body['channel'], c.body['thread_ts'], c.body['text']]),
    ).toMatchInlineSnapshot(`
      [
        [
          "DALICE",
          "1700000001.000001",
          ":alarm_clock: Reminder: this request expires <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>.",
        ],
        [
          "DBOB",
          "1700000002.000002",
          ":alarm_clock: Reminder: this request expires <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>.",
        ],
      ]
    `);
  });

  it('escalation: cards to the escalation approvers and a note in the original threads', async () => {
    await h.slack.channel.notify({
      kind: 'escalation',
      request: request({ escalated: true, slackMessages: messages }),
      recipients: [directory.byId('erin') as PrincipalContact],
    });
    const posts = h.fake.callsTo('chat.postMessage');
    const card = posts.find((c) => c.body['channel'] === 'UERIN');
    expect(JSON.stringify(card?.body['blocks'])).toContain('Escalated to <@UERIN>');
    expect(
      posts.filter((c) => c.body['thread_ts'] !== undefined).map((c) => [c.body['channel'], c.body['text']]),
    ).toEqual([
      ['DALICE', ':arrow_double_up: No decision yet: escalated to <@UERIN>.'],
      ['DBOB', ':arrow_double_up: No decision yet: escalated to <@UERIN>.'],
    ]);
    expect(h.posted[0]?.refs.map((r) => r.principal)).toEqual(['erin']);
  });

  it('a 429 with Retry-After is retried', async () => {
    h.fake.failNext('chat.postMessage', { status: 429, retryAfter: 0 });
    await h.slack.channel.notify({
      kind: 'request',
      request: request(),
      recipients: recipients().slice(0, 1),
    });
    expect(h.fake.callsTo('chat.postMessage')).toHaveLength(2);
    expect(h.posted[0]?.refs).toHaveLength(1);
  });

  it('Slack returning 500s past the retries is SLACK_UNAVAILABLE', async () => {
    h.fake.failNext('chat.postMessage', 500, 3); // 1 try + 2 retries
    const error = await h.slack.channel
      .notify({ kind: 'request', request: request(), recipients: recipients().slice(0, 1) })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({
      code: SlackErrorCode.unavailable,
      name: 'SlackUnavailableError',
      failedPrincipals: ['alice'],
    });
    expect((error as Error).message).toMatchInlineSnapshot(
      `"Slack: could not post the approval card run-1/approval/3 for alice: An HTTP protocol error occurred: statusCode = 500"`,
    );
    expect(h.fake.callsTo('chat.postMessage')).toHaveLength(3);
    expect(h.posted).toHaveLength(0);
  });

  it('an unreachable Slack is SLACK_UNAVAILABLE', async () => {
    h.fake.failNext('chat.update', 'disconnect', 3);
    await expect(
      h.slack.channel.notify({
        kind: 'outcome',
        request: request({ state: 'cancelled', slackMessages: messages.slice(0, 1) }),
        recipients: [],
      }),
    ).rejects.toMatchObject({ code: 'SLACK_UNAVAILABLE', failedPrincipals: ['alice'] });
  });

  it('a Slack platform error is SLACK_UNAVAILABLE too', async () => {
    h.fake.failNext('chat.postMessage', { error: 'channel_not_found' });
    await expect(
      h.slack.channel.notify({ kind: 'request', request: request(), recipients: recipients().slice(0, 1) }),
    ).rejects.toMatchObject({
      code: 'SLACK_UNAVAILABLE',
      message: expect.stringContaining('channel_not_found') as unknown,
    });
  });
});
