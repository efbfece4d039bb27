/**
 * How the approvals benchmark casts its votes: through the operator channel (`castVote`), or
 * through the approvals service's real HTTP paths — a signed Slack `block_actions` POST to Bolt's
 * receiver (against a local Slack Web API stand-in), the email review page's POST, or the web
 * inbox's vote POST with a signed-in session. Everything a vote needs that a human would have
 * before clicking (the card, the mail link, the page's nonce) is fetched in `prepare`, untimed.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { castVote } from '../approval-channels/operator.ts';
import { loadTrustedGovernance } from '../approval-channels/core/directory.ts';
import { startApprovalsHost } from '../approval-channels/host.ts';
import type { ApprovalsHost } from '../approval-channels/host.ts';
import { startMailCapture } from '../approval-channels/mail-capture.ts';
import type { MailCapture } from '../approval-channels/mail-capture.ts';
import {
  blockActionsPayload,
  interactionBody,
  signSlackRequest,
  startFakeSlackApi,
} from '../approval-channels/slack/fake-slack-api.ts';
import type { FakeSlackApi } from '../approval-channels/slack/fake-slack-api.ts';
import { openSqliteStore } from '../approval-channels/store/index.ts';
import type { ApprovalNotice } from '../workflows/approval-types.ts';
import type { BenchEnv } from './harness.ts';
import { benchFixture } from './harness.ts';

export const BenchChannel = { operator: 'operator', slack: 'slack', email: 'email', web: 'web' } as const;
export type BenchChannel = (typeof BenchChannel)[keyof typeof BenchChannel];

/** Votes through one channel. */
export interface ChannelVoter {
  /** The `approvals` worker's notice sink. */
  sink(notice: ApprovalNotice): Promise<void>;
  /** Everything before the click, untimed; resolves with the click itself. */
  prepare(approvalWorkflowId: string): Promise<() => Promise<void>>;
  /** Slack only: when each click's HTTP answer (Bolt's ack) arrived, ms after the click. */
  readonly ackMs: number[];
  close(): Promise<void>;
}

const SIGNING_SECRET = 'bench-signing-secret';
const BOT_TOKEN = 'xoxb-bench';
const APPROVER = { id: 'approver', team: 'TBENCH', user: 'UAPPROVER' } as const;

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`bench: no ${what} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function field(html: string, name: string): string {
  const match = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!match?.[1]) throw new Error(`bench: no ${name} field in the page`);
  return match[1];
}

async function post(url: string, form: Record<string, string>, cookie?: string): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
    body: new URLSearchParams(form).toString(),
  });
}

/** Builds the voter; the channels need the approvals service with its store, mail capture and Slack stand-in. */
export async function channelVoter(env: BenchEnv, channel: BenchChannel): Promise<ChannelVoter> {
  if (channel === BenchChannel.operator)
    return {
      sink: async () => undefined,
      prepare: async (approvalWorkflowId) => async () => {
        await castVote(env.client, {
          approvalWorkflowId,
          principal: APPROVER.id,
          decision: 'approve',
          secretKey: env.secretKey,
        });
      },
      ackMs: [],
      close: async () => undefined,
    };

  const store = await openSqliteStore({ file: ':memory:' });
  let mail: MailCapture | undefined;
  let slack: FakeSlackApi | undefined;
  let host: ApprovalsHost | undefined;
  const close = async (): Promise<void> => {
    await host?.close();
    await slack?.close();
    await mail?.close();
    await store.close();
  };
  try {
    const governance = await loadTrustedGovernance([benchFixture('governance.yaml')]);
    if (channel === BenchChannel.email) mail = await startMailCapture();
    if (channel === BenchChannel.slack) slack = await startFakeSlackApi({ token: BOT_TOKEN });
    host = await startApprovalsHost({
      store,
      governance,
      client: env.client,
      secretKey: env.secretKey,
      ...(mail
        ? {
            email: {
              config: {
                from: 'bench@localhost',
                smtp: { host: mail.host, port: mail.port, ignoreTLS: true },
              },
            },
          }
        : {}),
      ...(slack
        ? {
            slack: {
              signingSecret: SIGNING_SECRET,
              botToken: BOT_TOKEN,
              botId: 'BBENCH',
              botUserId: 'UBOT',
              appId: 'ABENCH',
              allowedTeams: [APPROVER.team],
              slackApiUrl: slack.apiUrl,
              retryConfig: { retries: 0 },
            },
          }
        : {}),
    });
  } catch (error) {
    await close();
    throw error;
  }
  const ready = host;
  const base = ready.http.url;
  const ackMs: number[] = [];

  let cookie: string | undefined;
  const session = async (): Promise<string> => {
    if (cookie) return cookie;
    const link = await ready.createSignInLink(APPROVER.id);
    const confirm = await (await fetch(link)).text();
    const signedIn = await post(link, { nonce: field(confirm, 'nonce') });
    const set = signedIn.headers.get('set-cookie');
    if (!set) throw new Error(`bench: sign-in answered ${signedIn.status} without a session cookie`);
    cookie = set.split(';')[0] ?? '';
    return cookie;
  };

  const prepare = async (id: string): Promise<() => Promise<void>> => {
    const request = await until('stored request', async () => (await store.getRequest(id)) ?? undefined);
    switch (channel) {
      case BenchChannel.slack: {
        const fake = slack as FakeSlackApi;
        const card = await until('Slack card', () =>
          fake
            .callsTo('chat.postMessage')
            .find((call) => JSON.stringify(call.body.blocks ?? '').includes(id)),
        );
        const blocks = card.body.blocks as {
          type: string;
          block_id?: string;
          elements?: { action_id?: string; value?: string }[];
        }[];
        const actions = blocks.find((b) => b.type === 'actions');
        const approve = actions?.elements?.find((e) => e.action_id === 'approval_approve');
        if (!actions?.block_id || !approve?.value) throw new Error('bench: the card has no Approve button');
        const body = interactionBody(
          blockActionsPayload({
            apiAppId: 'ABENCH',
            team: APPROVER.team,
            user: APPROVER.user,
            actionId: 'approval_approve',
            value: approve.value,
            blockId: actions.block_id,
            responseUrl: fake.responseUrl(`bench-${request.step}-${id.length}`),
          }),
        );
        return async () => {
          const t0 = performance.now();
          const response = await fetch(`${base}/slack/events`, {
            method: 'POST',
            headers: { ...signSlackRequest(body, SIGNING_SECRET, Math.floor(Date.now() / 1000)) },
            body,
          });
          ackMs.push(performance.now() - t0);
          if (response.status !== 200) throw new Error(`bench: Slack click answered ${response.status}`);
        };
      }
      case BenchChannel.email: {
        const message = await until('approval mail', () =>
          (mail as MailCapture).messages.find((m) => m.headers['x-agent-runtime-approval'] === id),
        );
        const link = message.links.find((l) => l.includes('/review/'));
        if (!link) throw new Error('bench: the mail has no review link');
        const page = await (await fetch(link)).text();
        const nonce = field(page, 'nonce');
        return async () => {
          const response = await post(link, { nonce, decision: 'approve' });
          if (response.status !== 200) throw new Error(`bench: email POST answered ${response.status}`);
        };
      }
      default: {
        const jar = await session();
        const url = `${base}/inbox/${encodeURIComponent(id)}`;
        const page = await (await fetch(url, { headers: { cookie: jar } })).text();
        const form = {
          csrf: field(page, 'csrf'),
          nonce: field(page, 'nonce'),
          revision: String(request.revision),
          decision: 'approve',
        };
        return async () => {
          const response = await post(`${url}/vote`, form, jar);
          if (response.status >= 400) throw new Error(`bench: inbox vote answered ${response.status}`);
        };
      }
    }
  };

  return { sink: (notice) => ready.handleNotice(notice), prepare, ackMs, close };
}
