/**
 * Test helper: a real `node:http` server on 127.0.0.1 that speaks the Slack Web API wire format
 * (`POST /api/<method>`, form or JSON bodies, `Authorization: Bearer xoxb-…`) and records every
 * call, plus `response_url` endpoints (`POST /response/<id>`), failure injection and signers and
 * builders for the interaction payloads Slack would send. Not used in production.
 * @module
 */
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One recorded Web API call. */
export interface RecordedCall {
  /** `chat.postMessage`, `users.info`, … */
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  /** Parsed body; JSON-valued form fields (`blocks`, `view`, …) are parsed too. */
  readonly body: Readonly<Record<string, unknown>>;
  readonly raw: string;
  /** Order among every request the fake saw (calls and responses). */
  readonly seq: number;
}

/** One message posted to a `response_url`. */
export interface RecordedResponse {
  readonly id: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readonly<Record<string, unknown>>;
  readonly seq: number;
}

/** A `users.info` fixture (fields as Slack names them). */
export interface SlackUserFixture {
  readonly id: string;
  readonly team_id?: string;
  readonly name?: string;
  readonly is_bot?: boolean;
  readonly is_app_user?: boolean;
  readonly deleted?: boolean;
  readonly is_restricted?: boolean;
  readonly is_ultra_restricted?: boolean;
}

/**
 * An injected failure: an HTTP status (`500`, `429` with `retryAfter` seconds), a Slack error
 * (`{ ok: false, error }` with HTTP 200), or `'disconnect'` (the socket is destroyed).
 */
export type FakeFailure =
  | number
  | { readonly status: number; readonly retryAfter?: number }
  | { readonly error: string }
  | 'disconnect';

/** The running fake. */
export interface FakeSlackApi {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Pass as `slackApiUrl`: `http://127.0.0.1:<port>/api/` */
  readonly apiUrl: string;
  readonly calls: readonly RecordedCall[];
  readonly responses: readonly RecordedResponse[];
  /** The calls of one method, in order. */
  callsTo(method: string): RecordedCall[];
  /** A `response_url` for payloads: `http://127.0.0.1:<port>/response/<id>`. */
  responseUrl(id: string): string;
  /** Adds or replaces a `users.info` fixture (unknown users are ordinary humans). */
  setUser(user: SlackUserFixture): void;
  /** The next `times` calls of `method` fail with `failure`. */
  failNext(method: string, failure: FakeFailure, times?: number): void;
  /** Delays every answer of `method` by `ms`. */
  delay(method: string, ms: number): void;
  /** Resolves once `predicate` holds (polled), or rejects after `timeoutMs`. */
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@link startFakeSlackApi}. */
export interface FakeSlackApiOptions {
  /** The bot token calls must carry; others get `{ ok: false, error: 'invalid_auth' }`. */
  readonly token?: string;
}

const JSON_FIELDS = new Set(['blocks', 'attachments', 'view', 'metadata']);

function parseBody(raw: string, contentType: string | undefined): Record<string, unknown> {
  if (contentType?.startsWith('application/json')) {
    try {
      const value = JSON.parse(raw) as unknown;
      return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    if (JSON_FIELDS.has(key)) {
      try {
        out[key] = JSON.parse(value) as unknown;
        continue;
      } catch {
        // keep the string
      }
    }
    out[key] = value;
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the fake on 127.0.0.1 on a free port. */
export async function startFakeSlackApi(options: FakeSlackApiOptions = {}): Promise<FakeSlackApi> {
  const calls: RecordedCall[] = [];
  const responses: RecordedResponse[] = [];
  const users = new Map<string, SlackUserFixture>();
  const failures = new Map<string, FakeFailure[]>();
  const delays = new Map<string, number>();
  let seq = 0;
  let tsCounter = 0;
  let viewCounter = 0;

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };

  const answer = (method: string, body: Readonly<Record<string, unknown>>): Record<string, unknown> => {
    switch (method) {
      case 'chat.postMessage': {
        tsCounter += 1;
        const target = String(body['channel'] ?? '');
        // posting to a user id opens the app's DM with them
        const channel = /^[UW]/.test(target) ? `D${target.slice(1)}` : target;
        const ts = `${1_700_000_000 + tsCounter}.${String(tsCounter).padStart(6, '0')}`;
        return { ok: true, channel, ts, message: { text: body['text'], ts } };
      }
      case 'chat.update':
        return { ok: true, channel: body['channel'], ts: body['ts'], text: body['text'] };
      case 'chat.postEphemeral':
        tsCounter += 1;
        return { ok: true, message_ts: `${1_700_000_000 + tsCounter}.000000` };
      case 'views.open': {
        viewCounter += 1;
        const view = typeof body['view'] === 'object' && body['view'] !== null ? body['view'] : {};
        return { ok: true, view: { id: `V${String(viewCounter).padStart(8, '0')}`, ...view } };
      }
      case 'users.info': {
        const id = String(body['user'] ?? '');
        const user = users.get(id) ?? { id };
        return {
          ok: true,
          user: {
            team_id: 'T_ALLOWED',
            name: id.toLowerCase(),
            is_bot: false,
            is_app_user: false,
            deleted: false,
            is_restricted: false,
            is_ultra_restricted: false,
            ...user,
          },
        };
      }
      case 'auth.test':
        return { ok: true, user_id: 'UBOT', bot_id: 'BBOT', team_id: 'T_ALLOWED' };
      default:
        return { ok: false, error: 'unknown_method' };
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const raw = await readBody(req);
    const body = parseBody(raw, req.headers['content-type']);
    seq += 1;
    if (req.method === 'POST' && path.startsWith('/response/')) {
      responses.push({
        id: decodeURIComponent(path.slice('/response/'.length)),
        headers: req.headers,
        body,
        seq,
      });
      send(res, 200, { ok: true });
      return;
    }
    if (req.method !== 'POST' || !path.startsWith('/api/')) {
      send(res, 404, { ok: false, error: 'not_found' });
      return;
    }
    const method = path.slice('/api/'.length);
    calls.push({ method, headers: req.headers, body, raw, seq });
    const wait = delays.get(method);
    if (wait !== undefined) await sleep(wait);
    const failure = failures.get(method)?.shift();
    if (failure !== undefined) {
      if (failure === 'disconnect') {
        req.socket.destroy();
        return;
      }
      if (typeof failure === 'number') {
        send(res, failure, { ok: false, error: 'fake_failure' });
        return;
      }
      if ('status' in failure) {
        const headers: Record<string, string> =
          failure.retryAfter === undefined ? {} : { 'retry-after': String(failure.retryAfter) };
        send(res, failure.status, { ok: false, error: 'ratelimited' }, headers);
        return;
      }
      send(res, 200, { ok: false, error: failure.error });
      return;
    }
    if (options.token !== undefined && req.headers.authorization !== `Bearer ${options.token}`) {
      send(res, 200, { ok: false, error: 'invalid_auth' });
      return;
    }
    send(res, 200, answer(method, body));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, { ok: false, error: String(error) });
      else res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    apiUrl: `${url}/api/`,
    calls,
    responses,
    callsTo: (method) => calls.filter((c) => c.method === method),
    responseUrl: (id) => `${url}/response/${encodeURIComponent(id)}`,
    setUser: (user) => {
      users.set(user.id, user);
    },
    failNext: (method, failure, times = 1) => {
      const queue = failures.get(method) ?? [];
      for (let i = 0; i < times; i += 1) queue.push(failure);
      failures.set(method, queue);
    },
    delay: (method, ms) => {
      delays.set(method, ms);
    },
    waitFor: async (predicate, timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`fake Slack: condition not met within ${timeoutMs} ms`);
        await sleep(10);
      }
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

/** Headers Slack sends with a signed request. */
export interface SlackSignedHeaders {
  readonly 'content-type': 'application/x-www-form-urlencoded';
  readonly 'x-slack-request-timestamp': string;
  readonly 'x-slack-signature': string;
}

/**
 * Signs `body` as Slack does: `v0=` + hex HMAC-SHA256 of `v0:<ts>:<body>` with the signing
 * secret; `ts` in seconds. The content type is exactly what Bolt accepts (no charset).
 */
export function signSlackRequest(body: string, secret: string, ts: number): SlackSignedHeaders {
  const signature = `v0=${createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`;
  return {
    'content-type': 'application/x-www-form-urlencoded',
    'x-slack-request-timestamp': String(ts),
    'x-slack-signature': signature,
  };
}

/** The form body of an interaction: `payload=<JSON>`. */
export function interactionBody(payload: unknown): string {
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** Who clicks, and where. */
export interface InteractionActor {
  readonly apiAppId: string;
  /** Workspace id (`team.id`); null sends `team: null` with `user.team_id` only. */
  readonly team: string | null;
  readonly user: string;
  readonly userTeamId?: string;
}

/** Inputs of {@link blockActionsPayload}. */
export interface BlockActionInput extends InteractionActor {
  readonly actionId: string;
  /** The button's `value` (the request id). */
  readonly value: string;
  readonly blockId: string;
  readonly responseUrl: string;
  readonly triggerId?: string;
  /** The DM channel and message the card is in. */
  readonly channel?: string;
  readonly messageTs?: string;
}

function actorFields(a: InteractionActor): Record<string, unknown> {
  return {
    api_app_id: a.apiAppId,
    token: 'legacy-verification-token',
    team: a.team === null ? null : { id: a.team, domain: 'example' },
    user: {
      id: a.user,
      username: a.user.toLowerCase(),
      name: a.user.toLowerCase(),
      team_id: a.userTeamId ?? a.team,
    },
  };
}

/** A `block_actions` payload for one button click, shaped like Slack's. */
export function blockActionsPayload(input: BlockActionInput): Record<string, unknown> {
  const channel = input.channel ?? 'D0000000001';
  return {
    type: 'block_actions',
    ...actorFields(input),
    container: { type: 'message', message_ts: input.messageTs ?? '1700000001.000001', channel_id: channel },
    trigger_id: input.triggerId ?? '1111.2222.trigger',
    channel: { id: channel, name: 'directmessage' },
    message: { type: 'message', ts: input.messageTs ?? '1700000001.000001', text: 'Approval needed' },
    response_url: input.responseUrl,
    actions: [
      {
        type: 'button',
        action_id: input.actionId,
        block_id: input.blockId,
        value: input.value,
        text: { type: 'plain_text', text: 'button' },
        action_ts: '1700000002.000002',
      },
    ],
  };
}

/** Inputs of {@link viewSubmissionPayload}. */
export interface ViewSubmissionInput extends InteractionActor {
  readonly callbackId: string;
  readonly privateMetadata: string;
  /** `state.values[blockId][actionId].value` of each input. */
  readonly values: Readonly<Record<string, Readonly<Record<string, string | null>>>>;
}

/** A `view_submission` payload for a modal, shaped like Slack's. */
export function viewSubmissionPayload(input: ViewSubmissionInput): Record<string, unknown> {
  const values: Record<string, Record<string, unknown>> = {};
  for (const [blockId, actions] of Object.entries(input.values)) {
    values[blockId] = Object.fromEntries(
      Object.entries(actions).map(([actionId, value]) => [actionId, { type: 'plain_text_input', value }]),
    );
  }
  return {
    type: 'view_submission',
    ...actorFields(input),
    trigger_id: '3333.4444.trigger',
    view: {
      id: 'V00000001',
      type: 'modal',
      callback_id: input.callbackId,
      private_metadata: input.privateMetadata,
      team_id: input.team,
      app_id: input.apiAppId,
      bot_id: 'BBOT',
      hash: '1700000000.abcdef',
      title: { type: 'plain_text', text: 'Deny request' },
      blocks: [],
      state: { values },
    },
    response_urls: [],
  };
}
