/**
 * Helpers of `approvals-e2e.test.ts`: derived governance documents, polling with deadlines, the
 * Slack wire (signed interaction posts, the recorded cards) and the email review pages.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from '@slack/bolt';
import { LogLevel } from '@slack/bolt';
import { parse, stringify } from 'yaml';
import {
  blockActionsPayload,
  interactionBody,
  signSlackRequest,
} from '../approval-channels/slack/fake-slack-api.ts';
import type { FakeSlackApi, RecordedCall } from '../approval-channels/slack/fake-slack-api.ts';
import { parseGovernanceOrThrow } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import { OPS_GOVERNANCE } from './agent-stack.ts';

export const SLACK_SECRET = 'e2e-signing-secret-0123456789abcdef';
export const SLACK_TOKEN = 'xoxb-e2e-bot-token';
export const SLACK_APP_ID = 'A0APPROVALS';
export const SLACK_BOT_ID = 'B0BOT';
export const SLACK_BOT_USER = 'U0BOT';
export const SLACK_TEAM = 'T0ACME';

/**
 * The ops-staging document with its `write-config` approval block changed by `patch` (a new
 * document, so a new policyVersion the service must be told to trust).
 */
export async function deriveOpsGovernance(
  label: string,
  patch: (approval: Record<string, unknown>) => void,
): Promise<LoadedGovernance> {
  const raw = parse(await readFile(OPS_GOVERNANCE, 'utf8')) as {
    actions: { rules: { id: string; approval?: Record<string, unknown> }[] };
  };
  const approval = raw.actions.rules.find((r) => r.id === 'write-config')?.approval;
  if (approval === undefined) throw new Error('write-config has no approval block');
  patch(approval);
  return parseGovernanceOrThrow(stringify(raw), `${label}.yaml`);
}

/** Polls `check` every 25 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A Bolt logger that keeps its lines (and keeps the test output quiet). */
export function recordingLogger(): Logger & { readonly lines: string[] } {
  const lines: string[] = [];
  const log =
    (level: string) =>
    (...msg: unknown[]): void => {
      lines.push(`${level}: ${msg.map((m) => (m instanceof Error ? m.message : String(m))).join(' ')}`);
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

/** One signed interaction, exactly as it goes over the wire (replayable). */
export interface SignedPost {
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The id of the `response_url` the payload carries (where the ephemeral answer lands). */
  readonly responseId: string;
}

let clicks = 0;

/** A `block_actions` click on a card button, signed with `secret` at `ts` (seconds, default now). */
export function signedClick(
  fake: FakeSlackApi,
  input: {
    readonly user: string;
    readonly actionId: string;
    readonly value: string;
    readonly blockId: string;
    readonly secret?: string;
    readonly ts?: number;
  },
): SignedPost {
  clicks += 1;
  const responseId = `e2e-click-${clicks}`;
  const body = interactionBody(
    blockActionsPayload({
      apiAppId: SLACK_APP_ID,
      team: SLACK_TEAM,
      user: input.user,
      actionId: input.actionId,
      value: input.value,
      blockId: input.blockId,
      responseUrl: fake.responseUrl(responseId),
      triggerId: `${clicks}.e2e.trigger`,
    }),
  );
  const ts = input.ts ?? Math.floor(Date.now() / 1000);
  return { body, headers: { ...signSlackRequest(body, input.secret ?? SLACK_SECRET, ts) }, responseId };
}

/** POSTs a signed interaction to the host's Slack endpoint; returns the HTTP status. */
export async function postToSlack(baseUrl: string, post: SignedPost): Promise<number> {
  const res = await fetch(`${baseUrl}/slack/events`, {
    method: 'POST',
    body: post.body,
    headers: post.headers,
  });
  await res.text();
  return res.status;
}

/** The ephemeral answers posted to one click's `response_url`. */
export function ephemeralAnswers(fake: FakeSlackApi, responseId: string): string[] {
  return fake.responses.filter((r) => r.id === responseId).map((r) => String(r.body['text']));
}

interface CardBlock {
  readonly type: string;
  readonly block_id?: string;
  readonly elements?: readonly { readonly action_id?: string; readonly value?: string }[];
}

const blocksOf = (call: RecordedCall): readonly CardBlock[] =>
  Array.isArray(call.body['blocks']) ? (call.body['blocks'] as CardBlock[]) : [];

/** Whether a recorded `chat.postMessage`/`chat.update` carries the card of `requestId`. */
export const isCardOf = (call: RecordedCall, requestId: string): boolean =>
  JSON.stringify(call.body['blocks'] ?? null).includes(`Request ${requestId} · revision`);

/** The approval cards posted (not thread replies) for `requestId`. */
export function postedCards(fake: FakeSlackApi, requestId: string): RecordedCall[] {
  return fake
    .callsTo('chat.postMessage')
    .filter((c) => c.body['thread_ts'] === undefined && isCardOf(c, requestId));
}

/** The actions block and buttons of a recorded card. */
export function buttonsOf(call: RecordedCall): {
  readonly blockId: string;
  readonly approve: string;
  readonly deny: string;
} {
  const actions = blocksOf(call).find((b) => b.type === 'actions');
  const value = (actionId: string): string => {
    const v = actions?.elements?.find((e) => e.action_id === actionId)?.value;
    if (v === undefined) throw new Error(`card has no ${actionId} button`);
    return v;
  };
  if (actions?.block_id === undefined) throw new Error('card has no actions block');
  return { blockId: actions.block_id, approve: value('approval_approve'), deny: value('approval_deny') };
}

/** Whether a recorded card still shows buttons. */
export const hasButtons = (call: RecordedCall): boolean => blocksOf(call).some((b) => b.type === 'actions');

/** A fetched page: status and HTML. */
export interface Fetched {
  readonly status: number;
  readonly html: string;
}

export async function getPage(url: string, method: 'GET' | 'HEAD' = 'GET'): Promise<Fetched> {
  const res = await fetch(url, { method });
  return { status: res.status, html: await res.text() };
}

/** POSTs a web form (urlencoded), as the review page's buttons do. */
export async function postForm(url: string, fields: Readonly<Record<string, string>>): Promise<Fetched> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
  });
  return { status: res.status, html: await res.text() };
}

/** The per-render nonce of a review page's form. */
export function nonceOf(html: string): string {
  const nonce = /<input type="hidden" name="nonce" value="([A-Za-z0-9_-]{43})">/.exec(html)?.[1];
  if (nonce === undefined) throw new Error(`no nonce in the page: ${html.slice(0, 300)}`);
  return nonce;
}

/** The heading of the neutral "link no longer valid" page. */
export const NEUTRAL_HEADING = '<h1>This link is no longer valid</h1>';
