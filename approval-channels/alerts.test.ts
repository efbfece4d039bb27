/**
 * Observer alerts through the approvals service, on the real host: its HTTP server, a real SMTP
 * sink, the local Slack Web API stand-in, the SQLite store, an audit file and a Temporal client of
 * the shared dev server. Recipients come from the trusted governance documents only.
 */
import { createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { openAuditFile, readAuditFile } from '../activities/audit/index.ts';
import type { AuditEvent, AuditFile } from '../activities/audit/index.ts';
import { tokenSha256 } from '../audit/server.ts';
import type { ObserverAlert } from '../observer/service.ts';
import { parseGovernanceOrThrow } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import { createApprovalsAlertSink } from './alerts-client.ts';
import { ApprovalsAlertError, createAlertsEndpoint, MAX_ALERT_BODY_BYTES } from './alerts.ts';
import { trustedGovernance } from './core/directory.ts';
import type { TrustedGovernance } from './core/directory.ts';
import type { ApprovalStore } from './core/types.ts';
import { sinkConfig, startSmtpSink } from './email/test-smtp.ts';
import type { SmtpSink } from './email/test-smtp.ts';
import { startApprovalsHost } from './host.ts';
import type { ApprovalsHost, SlackHostOptions } from './host.ts';
import { alertRouteOf, loadApprovalsServiceConfig } from './service-config.ts';
import { startFakeSlackApi } from './slack/fake-slack-api.ts';
import type { FakeSlackApi } from './slack/fake-slack-api.ts';
import { openSqliteStore } from './store/index.ts';

const ROOT = join(import.meta.dirname, '..');
const OPS = join(ROOT, 'examples', 'ops-staging', 'governance.yaml');
const FINANCE = join(ROOT, 'examples', 'support-finance', 'governance.yaml');
const TOKEN = 'observer-alert-token-0123456789';
const ROTATED = 'observer-alert-token-previous-42';
const SLACK_TOKEN = 'xoxb-alerts-bot-token';

let dir: string;
let connection: Connection;
let client: Client;
let fake: FakeSlackApi;
let smtp: SmtpSink;
let governance: TrustedGovernance;
let auditFile: AuditFile;
const stores: ApprovalStore[] = [];
const hosts: ApprovalsHost[] = [];
const warnings: string[] = [];
let host: ApprovalsHost;

const slackOptions = (): SlackHostOptions => ({
  signingSecret: 'alerts-signing-secret-0123456789',
  botToken: SLACK_TOKEN,
  botId: 'B0BOT',
  botUserId: 'U0BOT',
  appId: 'A0APPROVALS',
  allowedTeams: ['T0ACME'],
  slackApiUrl: fake.apiUrl,
  retryConfig: { retries: 0 },
});

/** ops-staging as `night-ops`, with a platform lead without any contact and one on Slack only. */
async function nightOps(): Promise<LoadedGovernance> {
  const raw = parse(await readFile(OPS, 'utf8')) as {
    identity: { id: string };
    authority: { principals: Record<string, unknown>[] };
  };
  raw.identity.id = 'night-ops';
  raw.authority.principals.push(
    { id: 'pat', name: 'Pat Lee', roles: ['platform-lead'] },
    { id: 'sly', name: 'Sly Moss', roles: ['platform-lead'], slack: { team: 'T0ACME', user: 'U0SLY' } },
  );
  return parseGovernanceOrThrow(stringify(raw), 'night-ops.yaml');
}

async function start(options: Partial<Parameters<typeof startApprovalsHost>[0]>): Promise<ApprovalsHost> {
  const store = await openSqliteStore({ file: ':memory:' });
  stores.push(store);
  const started = await startApprovalsHost({
    store,
    governance,
    client,
    secretKey: new Uint8Array(32).fill(7),
    http: { port: 0 },
    audit: auditFile,
    warn: (m) => warnings.push(m),
    ...options,
  });
  hosts.push(started);
  return started;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ar-alerts-'));
  connection = await Connection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection, namespace: inject('temporalNamespace') });
  fake = await startFakeSlackApi({ token: SLACK_TOKEN });
  smtp = await startSmtpSink();
  auditFile = await openAuditFile(join(dir, 'audit.jsonl'));
  const load = async (file: string) => parseGovernanceOrThrow(await readFile(file, 'utf8'), file);
  governance = trustedGovernance([await load(OPS), await nightOps(), await load(FINANCE)]);
  host = await start({
    slack: slackOptions(),
    email: { config: sinkConfig(smtp) },
    alerts: { to: { roles: ['platform-lead'] }, tokenSha256: [tokenSha256(TOKEN), tokenSha256(ROTATED)] },
  });
});

afterAll(async () => {
  for (const h of hosts) await h.close();
  for (const s of stores) await s.close();
  await auditFile?.close();
  await fake?.close();
  await smtp?.close();
  await connection?.close();
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
/** A fresh alert (a new finding id each time). */
function alert(patch: Partial<ObserverAlert> = {}): ObserverAlert {
  counter += 1;
  return {
    findingId: `obs_${String(counter).padStart(4, '0')}_${Math.random().toString(16).slice(2, 10)}`,
    ruleId: 'denial-burst',
    severity: 'high',
    agent: 'ops-assistant',
    runs: ['run-ops-1'],
    summary: 'denial-burst (high) on agent=ops-assistant',
    at: '2030-01-01T09:00:00.000Z',
    ...patch,
  };
}

/** POSTs to the alerts endpoint of `target`; `body` is sent as is when a string. */
async function post(
  body: unknown,
  options: {
    token?: string | null;
    headers?: Record<string, string>;
    method?: string;
    target?: ApprovalsHost;
  } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const token = options.token === undefined ? TOKEN : options.token;
  const response = await fetch(`${(options.target ?? host).http.url}/v1/alerts`, {
    method: options.method ?? 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...options.headers,
    },
    ...(options.method === 'GET' ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

const alertEvents = async (findingId?: string): Promise<AuditEvent[]> =>
  (await readAuditFile(join(dir, 'audit.jsonl'))).filter(
    (e) =>
      e.kind === 'approval.delivery' &&
      e.attrs['alert'] === true &&
      (findingId === undefined || e.attrs['findingId'] === findingId),
  );

const dmsTo = (user: string) => fake.callsTo('chat.postMessage').filter((c) => c.body['channel'] === user);
const mailsTo = (address: string) =>
  smtp.inbox.filter((m) => m.envelope.rcptTo.some((r) => r.address === address));

describe('POST /v1/alerts', () => {
  it('delivers to the role’s principals by Slack DM and by email, escaped, and audits each delivery', async () => {
    const hostile = alert({
      summary:
        'burst <!channel> see <https://evil.test|click here> \u202egnp.exe\u202c & www.evil.test\nline 2',
      runs: ['run-a', 'run-b'],
    });
    const dmsBefore = dmsTo('U0ALICE').length;
    const answer = await post(hostile);
    expect(answer).toEqual({
      status: 202,
      json: {
        delivered: [
          { principal: 'alice', channel: 'slack', ok: true },
          { principal: 'alice', channel: 'email', ok: true },
        ],
        unreachable: [],
      },
    });
    const dm = dmsTo('U0ALICE')[dmsBefore];
    expect(dm?.body).toMatchObject({ mrkdwn: 'false', unfurl_links: 'false', unfurl_media: 'false' });
    const text = String(dm?.body['text']);
    expect(text).toContain('&lt;!channel&gt; see &lt;https://evil.test|click here&gt;');
    expect(text).not.toMatch(/<!channel>|<https:|\u202e/);
    expect(text).toContain('Rule:     denial-burst');
    expect(text).toContain('Runs:     run-a, run-b');
    const [mail] = await smtp.waitFor(1, 'alice@acme.test');
    expect(mail?.mail.subject).toBe('[Observer alert: HIGH] denial-burst on ops-assistant');
    expect(mail?.mail.html).toBe(false);
    expect(mail?.mail.text).toContain(
      'see <https[://]evil.test|click here> gnp.exe & www[.]evil.test\nline 2',
    );
    expect(mail?.mail.text).not.toContain('\u202e');
    expect(mail?.mail.headers.get('x-agent-runtime-alert')).toBe(hostile.findingId);
    // nobody else holds platform-lead in ops-staging
    expect(mailsTo('bob@acme.test')).toEqual([]);
    expect(dmsTo('U0BOB')).toEqual([]);

    const events = await alertEvents(hostile.findingId);
    expect(
      events.map((e) => [e.attrs['outcome'], e.attrs['channel'] ?? null, e.attrs['principal'] ?? null]),
    ).toEqual([
      ['received', null, null],
      ['sent', 'slack', 'alice'],
      ['sent', 'email', 'alice'],
    ]);
    expect(events[0]).toMatchObject({
      source: 'approvals',
      agent: 'ops-assistant',
      run: null,
      attrs: { recipients: ['alice'], ruleId: 'denial-burst', severity: 'high', runs: ['run-a', 'run-b'] },
    });
  });

  it('delivers a finding once: a repeat, even a concurrent one, is answered {deduplicated: true}', async () => {
    const once = alert();
    const calls = fake.callsTo('chat.postMessage').length;
    const mails = smtp.inbox.length;
    const answers = await Promise.all([post(once), post(once), post(once)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 202]);
    expect(answers.filter((a) => a.status === 200).map((a) => a.json)).toEqual([
      { deduplicated: true },
      { deduplicated: true },
    ]);
    expect(await post(once)).toEqual({ status: 200, json: { deduplicated: true } });
    await smtp.waitFor(mails + 1);
    expect(fake.callsTo('chat.postMessage').length).toBe(calls + 1);
    expect(smtp.inbox.length).toBe(mails + 1);
    const outcomes = (await alertEvents(once.findingId)).map((e) => e.attrs['outcome']);
    expect(outcomes.filter((o) => o === 'deduplicated')).toHaveLength(3);
    expect(outcomes.filter((o) => o === 'sent')).toHaveLength(2);
  });

  it('remembers a bounded number of findings (the oldest are forgotten)', async () => {
    const endpoint = createAlertsEndpoint({
      route: { to: { roles: ['platform-lead'] }, tokenSha256: [tokenSha256(TOKEN)] },
      governance,
      dedupeLimit: 2,
    });
    const server = createServer(endpoint.requestListener);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/alerts`;
    const send = async (a: ObserverAlert) =>
      (
        await fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify(a),
        })
      ).status;
    try {
      const [a, b, c] = [alert(), alert(), alert()];
      // no channel configured: accepted, nobody reached
      expect([await send(a), await send(b), await send(a), await send(c), await send(a)]).toEqual([
        202, 202, 200, 202, 202,
      ]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses a missing, wrong or malformed token with 401 and audits the refusal', async () => {
    const a = alert();
    expect(await post(a, { token: null })).toEqual({
      status: 401,
      json: { error: { code: 'ALERT_UNAUTHORIZED', message: 'a bearer token is required' } },
    });
    expect(await post(a, { token: `${TOKEN}x` })).toEqual({
      status: 401,
      json: { error: { code: 'ALERT_UNAUTHORIZED', message: 'not an alert token' } },
    });
    expect((await post(a, { headers: { authorization: `Basic ${TOKEN}` } })).status).toBe(401);
    expect((await post(a, { headers: { authorization: 'Bearer tab\there' } })).status).toBe(401);
    // the refused alert was not remembered: the right token still delivers it (a rotated one too)
    expect((await post(a, { token: ROTATED })).status).toBe(202);
    const refused = (await alertEvents()).filter(
      (e) => e.attrs['outcome'] === 'refused' && e.attrs['code'] === 'ALERT_UNAUTHORIZED',
    );
    expect(refused.length).toBeGreaterThanOrEqual(4);
    expect(refused[0]).toMatchObject({ agent: null, attrs: { status: 401, ip: '127.0.0.1' } });
  });

  it('refuses forged, invalid and oversized bodies, and other methods and media types', async () => {
    const mails = smtp.inbox.length;
    const calls = fake.callsTo('chat.postMessage').length;
    const refusal = async (body: unknown, options: Parameters<typeof post>[1] = {}) => {
      const { status, json } = await post(body, options);
      const error = json['error'] as { code: string; message: string };
      return `${status} ${error.code}: ${error.message}`;
    };
    // the alert cannot choose its recipients or addresses
    expect(await refusal({ ...alert(), to: ['mallory@evil.test'] })).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: (root): Unrecognized key: "to""`,
    );
    expect(
      await refusal(`{"__proto__":{"admin":true},${JSON.stringify(alert()).slice(1)}`),
    ).toMatchInlineSnapshot(`"400 ALERT_INVALID: (root): Unrecognized key: "__proto__""`);
    expect(await refusal({ ...alert(), severity: 'apocalyptic' })).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: severity: Invalid option: expected one of "low"|"medium"|"high"|"critical""`,
    );
    expect(await refusal({ ...alert(), agent: '../etc' })).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: agent: expected an agent id"`,
    );
    expect(await refusal({ ...alert(), ruleId: 'rule\r\nBcc: x@evil.test' })).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: ruleId: expected one line of text without control characters"`,
    );
    expect(
      await refusal({ ...alert(), runs: Array.from({ length: 51 }, (_, i) => `run-${i}`) }),
    ).toMatchInlineSnapshot(`"400 ALERT_INVALID: runs: Too big: expected array to have <=50 items"`);
    expect(await refusal({ ...alert(), summary: 'x'.repeat(4001) })).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: summary: Too big: expected string to have <=4000 characters"`,
    );
    expect(await refusal({ ...alert(), at: 'yesterday' })).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: at: Invalid ISO datetime"`,
    );
    const { findingId: _omitted, ...noId } = alert();
    expect(await refusal(noId)).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: findingId: Invalid input: expected string, received undefined"`,
    );
    expect(await refusal('{"findingId":')).toMatchInlineSnapshot(`"400 ALERT_INVALID: body: not valid JSON"`);
    expect(await refusal([alert()])).toMatchInlineSnapshot(
      `"400 ALERT_INVALID: (root): Invalid input: expected object, received array"`,
    );
    expect(await refusal({ ...alert(), summary: 'y'.repeat(MAX_ALERT_BODY_BYTES) })).toMatchInlineSnapshot(
      `"413 ALERT_BODY_TOO_LARGE: the body is larger than 32768 bytes"`,
    );
    expect(
      await refusal(JSON.stringify(alert()), { headers: { 'content-type': 'text/plain' } }),
    ).toMatchInlineSnapshot(`"415 ALERT_UNSUPPORTED_MEDIA_TYPE: expected content-type application/json"`);
    expect(await refusal(undefined, { method: 'GET' })).toMatchInlineSnapshot(
      `"405 ALERT_METHOD_NOT_ALLOWED: only POST is served here"`,
    );
    // a body is only read once the token is known
    expect(
      await refusal({ ...alert(), summary: 'z'.repeat(MAX_ALERT_BODY_BYTES) }, { token: 'nope' }),
    ).toMatch(/^401 /);
    expect(smtp.inbox.length).toBe(mails);
    expect(fake.callsTo('chat.postMessage').length).toBe(calls);
    const codes = (await alertEvents())
      .filter((e) => e.attrs['outcome'] === 'refused')
      .map((e) => e.attrs['code']);
    expect(codes).toEqual(expect.arrayContaining(['ALERT_INVALID', 'ALERT_BODY_TOO_LARGE']));
  });

  it('answers 404 for an agent without a trusted governance document', async () => {
    const a = alert({ agent: 'rogue-agent' });
    expect(await post(a)).toEqual({
      status: 404,
      json: {
        error: {
          code: 'ALERT_UNKNOWN_AGENT',
          message: 'agent "rogue-agent" has no trusted governance document',
        },
      },
    });
    expect(await alertEvents(a.findingId)).toEqual([]);
  });

  it('reports a principal without email or Slack as unreachable; Slack-only principals get a DM only', async () => {
    const a = alert({ agent: 'night-ops', runs: ['run-night-1'] });
    const answer = await post(a);
    expect(answer).toEqual({
      status: 202,
      json: {
        delivered: [
          { principal: 'alice', channel: 'slack', ok: true },
          { principal: 'alice', channel: 'email', ok: true },
          { principal: 'sly', channel: 'slack', ok: true },
        ],
        unreachable: ['pat'],
      },
    });
    expect(dmsTo('U0SLY')).toHaveLength(1);
    const events = await alertEvents(a.findingId);
    expect(events[0]).toMatchObject({ run: 'run-night-1', attrs: { recipients: ['alice', 'pat', 'sly'] } });
    expect(events.at(-1)).toMatchObject({ attrs: { principal: 'pat', outcome: 'no_channel' } });
    // support-finance defines no platform-lead: accepted, nobody to reach
    expect(await post(alert({ agent: 'support-finance-agent' }))).toEqual({
      status: 202,
      json: { delivered: [], unreachable: [] },
    });
  });

  it('reports a failed channel per delivery; an alert of no agent goes to the role across documents', async () => {
    fake.failNext('chat.postMessage', { error: 'channel_not_found' }, 2);
    const a = alert({ agent: null, runs: [] });
    const answer = await post(a);
    expect(answer.status).toBe(202);
    expect(answer.json['delivered']).toEqual([
      { principal: 'alice', channel: 'slack', ok: false },
      { principal: 'alice', channel: 'email', ok: true },
      { principal: 'sly', channel: 'slack', ok: false },
    ]);
    expect(answer.json['unreachable']).toEqual(['pat']);
    const [mail] = (await smtp.waitFor(1, 'alice@acme.test')).filter((m) =>
      m.mail.text?.includes(a.findingId),
    );
    expect(mail?.mail.subject).toBe('[Observer alert: HIGH] denial-burst on several agents');
    expect((await alertEvents(a.findingId)).map((e) => e.attrs['outcome'])).toEqual([
      'received',
      'failed',
      'sent',
      'failed',
      'no_channel',
    ]);
  });
});

describe('a principals route', () => {
  let slackOnly: ApprovalsHost;
  beforeAll(async () => {
    slackOnly = await start({
      slack: slackOptions(),
      alerts: {
        to: { principals: ['alice', 'sam'] },
        agents: ['ops-assistant', 'support-finance-agent'],
        tokenSha256: [tokenSha256(TOKEN)],
      },
    });
  });

  it('delivers only to listed principals of the alert’s own documents; other agents are not routed', async () => {
    const a = alert();
    expect(await post(a, { target: slackOnly })).toEqual({
      status: 202,
      json: { delivered: [{ principal: 'alice', channel: 'slack', ok: true }], unreachable: [] },
    });
    // sam is a principal of support-finance, not of ops-staging
    expect((await alertEvents(a.findingId))[0]?.attrs).toMatchObject({
      recipients: ['alice'],
      notInGovernance: ['sam'],
    });
    expect(await post(alert({ agent: 'night-ops' }), { target: slackOnly })).toEqual({
      status: 404,
      json: {
        error: { code: 'ALERT_AGENT_NOT_ROUTED', message: 'alerts of agent "night-ops" are not routed here' },
      },
    });
  });

  it('answers 503 when every delivery failed, forgets the finding, and the client’s retry delivers it', async () => {
    fake.failNext('chat.postMessage', { error: 'channel_not_found' }, 1);
    const tries: number[] = [];
    const sink = createApprovalsAlertSink({
      url: `${slackOnly.http.url}/`,
      token: TOKEN,
      baseDelayMs: 1,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        tries.push(response.status);
        return response;
      },
    });
    const a = alert({ agent: 'support-finance-agent' });
    await sink(a);
    expect(tries).toEqual([503, 202]);
    expect(dmsTo('U0SAM').filter((c) => String(c.body['text']).includes(a.findingId))).toHaveLength(2);
    expect((await alertEvents(a.findingId)).map((e) => e.attrs['outcome'])).toEqual([
      'received',
      'failed',
      'received',
      'sent',
    ]);
  });

  it('is checked against the trusted documents when the host starts', async () => {
    await expect(
      startApprovalsHost({
        store: stores[0]!,
        governance,
        client,
        secretKey: new Uint8Array(32),
        http: { port: 0 },
        alerts: {
          to: { principals: ['alice', 'zed'] },
          agents: ['ops-assistant', 'ghost'],
          tokenSha256: ['abc'],
        },
      }),
    ).rejects.toThrowErrorMatchingInlineSnapshot(`
      [ApprovalsAlertError: invalid alert route:
        alerts.tokenSha256[0]: expected 64 lowercase hex digits
        alerts.agents[1]: "ghost" has no trusted governance document
        alerts.to.principals[1]: "zed" is not a principal of any trusted governance document]
    `);
    await expect(
      startApprovalsHost({
        store: stores[0]!,
        governance,
        client,
        secretKey: new Uint8Array(32),
        http: { port: 0 },
        alerts: { to: { roles: ['janitor'] }, tokenSha256: [tokenSha256(TOKEN)] },
      }),
    ).rejects.toThrow('alerts.to.roles[0]: "janitor" is not a role of any trusted governance document');
  });
});

describe('createApprovalsAlertSink', () => {
  /** A real server answering the given statuses in turn (the last one repeats). */
  async function scripted(statuses: readonly number[]) {
    const seen: { authorization: string | undefined; body: unknown }[] = [];
    const server = createServer((req: IncomingMessage, res) => {
      let raw = '';
      req.setEncoding('utf8').on('data', (c: string) => (raw += c));
      req.on('end', () => {
        seen.push({ authorization: req.headers.authorization, body: JSON.parse(raw) as unknown });
        const status = statuses[Math.min(seen.length, statuses.length) - 1] ?? 500;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify(
            status >= 400
              ? { error: { code: `CODE_${status}`, message: `status ${status}` } }
              : { delivered: [] },
          ),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return {
      url,
      seen,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }

  it('retries a 503 and resolves on the 202; sends exactly the alert with the bearer token', async () => {
    const server = await scripted([503, 202]);
    try {
      const a = alert();
      await createApprovalsAlertSink({ url: server.url, token: TOKEN, baseDelayMs: 1 })(a);
      expect(server.seen).toEqual([
        { authorization: `Bearer ${TOKEN}`, body: a },
        { authorization: `Bearer ${TOKEN}`, body: a },
      ]);
    } finally {
      await server.close();
    }
  });

  it('gives up after 3 retries with the server’s code; never retries a 4xx', async () => {
    const failing = await scripted([503]);
    const refusing = await scripted([404]);
    try {
      const sink = createApprovalsAlertSink({ url: failing.url, token: TOKEN, baseDelayMs: 1 });
      const error = await sink(alert()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ApprovalsAlertError);
      expect(error).toMatchObject({ code: 'CODE_503', status: 503, message: 'approvals alerts: status 503' });
      expect(failing.seen).toHaveLength(4);
      await expect(
        createApprovalsAlertSink({ url: refusing.url, token: TOKEN, baseDelayMs: 1 })(alert()),
      ).rejects.toMatchObject({ code: 'CODE_404', status: 404 });
      expect(refusing.seen).toHaveLength(1);
    } finally {
      await failing.close();
      await refusing.close();
    }
  });

  it('throws the service’s code on a refusal and retries an unreachable service', async () => {
    await expect(
      createApprovalsAlertSink({ url: host.http.url, token: 'wrong-token' })(alert()),
    ).rejects.toMatchObject({
      code: 'ALERT_UNAUTHORIZED',
      status: 401,
    });
    await expect(
      createApprovalsAlertSink({ url: host.http.url, token: TOKEN })(alert({ agent: 'rogue' })),
    ).rejects.toMatchObject({ code: 'ALERT_UNKNOWN_AGENT', status: 404 });
    // a closed port: network errors are retried, then reported as unavailable
    const gone = await scripted([202]);
    await gone.close();
    let tries = 0;
    const error = await createApprovalsAlertSink({
      url: gone.url,
      token: TOKEN,
      baseDelayMs: 1,
      fetch: (input, init) => {
        tries += 1;
        return fetch(input, init);
      },
    })(alert()).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ALERT_UNAVAILABLE' });
    expect(tries).toBe(4);
    // and the delivered case end to end
    await expect(
      createApprovalsAlertSink({ url: host.http.url, token: TOKEN })(alert()),
    ).resolves.toBeUndefined();
  });
});

describe('the alerts section of the service configuration', () => {
  const base = {
    governance: ['g.yaml'],
    signingKey: 'k',
    store: { kind: 'sqlite', file: 'a.db' },
  };
  const load = async (alerts: unknown) => {
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(file, stringify({ ...base, alerts }));
    return { file, config: await loadApprovalsServiceConfig(file).catch((e: unknown) => e) };
  };

  it('names the path of each problem', async () => {
    const { file, config } = await load({
      to: { principals: ['alice'], roles: ['platform-lead'] },
      agents: [],
      tokenSha256: 'ABC',
      tokenEnv: 'lower',
    });
    expect((config as Error).message.replace(file, '<file>')).toMatchInlineSnapshot(`
      "<file>: invalid approvals service configuration
        alerts.to: expected exactly one of principals or roles
        alerts.agents: expected a non-empty list
        alerts.tokenSha256.0: expected 64 lowercase hex digits
        alerts.tokenEnv: expected an environment variable name
        alerts: expected exactly one of tokenSha256 or tokenEnv"
    `);
    const both = await load({
      to: { roles: ['x'] },
      tokenSha256: tokenSha256(TOKEN),
      tokenEnv: 'ALERT_TOKEN',
    });
    expect((both.config as Error).message).toContain(
      '  alerts: expected exactly one of tokenSha256 or tokenEnv',
    );
  });

  it('hashes the token from the environment, and names the variable when it is missing or short', async () => {
    const { file, config } = await load({
      to: { roles: ['platform-lead'] },
      agents: ['ops-assistant'],
      tokenEnv: 'ALERT_TOKEN',
    });
    const loaded = config as Awaited<ReturnType<typeof loadApprovalsServiceConfig>>;
    expect(alertRouteOf(loaded, { ALERT_TOKEN: TOKEN }, file)).toEqual({
      to: { roles: ['platform-lead'] },
      agents: ['ops-assistant'],
      tokenSha256: [tokenSha256(TOKEN)],
    });
    expect(() => alertRouteOf(loaded, {}, 'svc.yaml')).toThrow(
      'svc.yaml: alerts.tokenEnv: $ALERT_TOKEN is not set',
    );
    expect(() => alertRouteOf(loaded, { ALERT_TOKEN: 'short' }, 'svc.yaml')).toThrow(
      'svc.yaml: alerts.tokenEnv: $ALERT_TOKEN is 5 characters; expected at least 16',
    );
    const hashed = await load({
      to: { principals: ['alice'] },
      tokenSha256: [tokenSha256(TOKEN), tokenSha256(ROTATED)],
    });
    expect(alertRouteOf(hashed.config as typeof loaded, {}, hashed.file)).toEqual({
      to: { principals: ['alice'] },
      tokenSha256: [tokenSha256(TOKEN), tokenSha256(ROTATED)],
    });
    expect(alertRouteOf({ ...loaded, alerts: undefined } as typeof loaded, {}, file)).toBeNull();
  });
});
