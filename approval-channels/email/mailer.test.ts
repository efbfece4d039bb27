import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from 'vitest';
import { contact, makeRequest, seededRandom } from '../web/test-decisions.ts';
import type { TokenRecord } from '../core/types.ts';
import { openSqliteStore } from '../store/index.ts';
import { EmailChannel, EmailChannelError, parseEmailConfig } from './mailer.ts';
import type { SentMail } from './mailer.ts';
import { startSmtpSink, sinkConfig } from './test-smtp.ts';
import type { SmtpSink } from './test-smtp.ts';

const T0 = Date.UTC(2030, 0, 1, 9, 0, 0);
const BASE = 'https://approvals.example.com';
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

let sink: SmtpSink;
beforeAll(async () => {
  sink = await startSmtpSink();
});
afterAll(async () => {
  await sink.close();
});

/** The SQLite store on `:memory:`, recording what the channel hands to `createToken`. */
async function setup(config: unknown = sinkConfig(sink)) {
  const sqlite = await openSqliteStore({ file: ':memory:' });
  onTestFinished(() => sqlite.close());
  const created: Omit<TokenRecord, 'usedAtMs'>[] = [];
  const store = {
    ...sqlite,
    createToken: (token: Omit<TokenRecord, 'usedAtMs'>) => {
      created.push(token);
      return sqlite.createToken(token);
    },
  };
  const sent: SentMail[] = [];
  const channel = new EmailChannel({
    config,
    store,
    publicBaseUrl: `${BASE}/`,
    now: () => T0,
    randomBytes: seededRandom(`mail-${Math.random()}`),
    onSent: (m) => sent.push(m),
  });
  return { store, channel, sent, created };
}

function uniqueId(tag: string): string {
  return `run-${tag}-${Math.random().toString(36).slice(2)}/approval/1`;
}

describe('email config', () => {
  test('is validated with a stable code', () => {
    expect(() => parseEmailConfig({ smtp: { host: 'h', port: 70_000 } })).toThrowError(EmailChannelError);
    try {
      parseEmailConfig({ from: 'a\r\nBcc: x@y', smtp: { host: 'h', port: 70_000, extra: 1 } });
    } catch (err) {
      expect((err as EmailChannelError).code).toBe('EMAIL_CONFIG_INVALID');
      expect((err as Error).message).toMatchInlineSnapshot(
        `"invalid email config: from: must be one line; smtp.port: Too big: expected number to be <=65535; smtp: Unrecognized key: "extra""`,
      );
    }
    expect(parseEmailConfig(sinkConfig(sink)).smtp.ignoreTLS).toBe(true);
  });
});

describe('approval mail over real SMTP', () => {
  test('one mail per approver, one "Review request" link each; only the token hash is stored', async () => {
    const { store, channel, sent, created } = await setup();
    const id = uniqueId('one');
    const request = makeRequest(T0, { id });
    await channel.notify({
      kind: 'request',
      request,
      recipients: [contact('alice'), contact('bob'), contact('erin')],
    });
    const mails = sink.inbox.filter((m) => m.mail.headers.get('x-agent-runtime-approval') === id);
    expect(mails.map((m) => m.envelope.rcptTo.map((r) => r.address))).toEqual([
      ['alice@example.com'],
      ['bob@example.com'],
    ]);
    const alice = mails[0];
    if (alice === undefined) throw new Error('no mail');
    expect(alice.mail.subject).toMatchInlineSnapshot(
      `"[Approval needed] fs.delete for agent-7 — expires 2030-01-01T10:00:00.000Z"`,
    );
    expect(alice.mail.headers.get('auto-submitted')).toBe('auto-generated');
    // exactly one link, in both parts, the same one
    expect(alice.textLinks).toHaveLength(1);
    expect(alice.htmlLinks).toEqual(alice.textLinks);
    const link = alice.textLinks[0] ?? '';
    expect(link).toMatch(/^https:\/\/approvals\.example\.com\/review\/[A-Za-z0-9_-]{43}$/);
    const token = link.split('/').pop() ?? '';
    expect(mails[1]?.textLinks[0]).not.toBe(link);
    expect(alice.mail.text?.replace(token, '<token>').replace(id, '<id>')).toMatchInlineSnapshot(`
      "An agent asks for your approval.

      Action:       fs.delete
      Resource:     /srv/data/old.log
      Agent:        agent-7 (run run-1, step 3)
      Requested by: dave
      Rule:         fs-delete-needs-approval
      Risk:         elevated
      Approvals:    0 of 1 approval
      Expires:      2030-01-01T10:00:00.000Z (denied automatically after this time)
      Request:      <id> (revision 1)
      Sent to:      alice

      Arguments:
      {
        "path": "/srv/data/old.log",
        "note": "<script>alert(1)</script> & \\"quotes\\""
      }

      Reason stated by the agent (unverified):
      Disk is full. Approve quickly at https[://]evil.example/approve <b>now</b>

      Review request: https://approvals.example.com/review/<token>

      The link is personal: do not forward it. It opens a review page; nothing is decided until you press a button there.
      "
    `);
    const html = typeof alice.mail.html === 'string' ? alice.mail.html : '';
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; \\&quot;quotes\\&quot;');
    expect(html).toContain('&lt;b&gt;now&lt;/b&gt;');
    expect(html).not.toMatch(/<script|<b>now/);
    expect(html).toContain('Reason stated by the agent (unverified)');
    expect(html.match(/<a /g)).toHaveLength(1);
    // the store holds the hash, never the token
    expect(created).toHaveLength(2);
    expect(JSON.stringify(created)).not.toContain(token);
    expect(await store.peekToken(sha256(token), 'email-review', T0)).toEqual({
      ok: true,
      token: {
        hash: sha256(token),
        purpose: 'email-review',
        principal: 'alice',
        requestId: id,
        revision: 1,
        createdAtMs: T0,
        expiresAtMs: request.expiresAtMs,
        usedAtMs: null,
      },
    });
    expect(await store.peekToken(token, 'email-review', T0)).toEqual({ ok: false, code: 'unknown' });
    expect((await store.listDeliveries(id)).map((d) => [d.principal, d.address, d.kind, d.status])).toEqual([
      ['alice', 'alice@example.com', 'request', 'sent'],
      ['bob', 'bob@example.com', 'request', 'sent'],
    ]);
    expect(
      (await store.listAttempts({ requestId: id })).map((a) => [a.principal, a.action, a.outcome]),
    ).toEqual([['erin', 'deliver', 'no_address']]);
    expect(sent.map((s) => s.principal)).toEqual(['alice', 'bob']);
    expect(JSON.stringify(sent)).not.toContain(token);
  });

  test('long arguments are cut; a high-risk mail says email can only deny', async () => {
    const { channel } = await setup();
    const id = uniqueId('long');
    await channel.notify({
      kind: 'reminder',
      request: makeRequest(T0, { id, highRisk: true, args: { blob: 'x'.repeat(5000) }, quorum: 2 }),
      recipients: [contact('carol')],
    });
    const [mail] = (await sink.waitFor(1, 'carol@example.com')).filter(
      (m) => m.mail.headers.get('x-agent-runtime-approval') === id,
    );
    const text = mail?.mail.text ?? '';
    expect(mail?.mail.subject).toMatch(/^\[Reminder: approval needed\] fs\.delete for agent-7/);
    expect(text).toContain('Risk:         HIGH');
    expect(text).toContain('Approvals:    0 of 2 approvals');
    expect(text).toContain(
      'This is a high-risk request: email can only deny it. To approve it, sign in to the web inbox or use Slack.',
    );
    expect(text).toMatch(/x{100}…\n/);
    expect(text.length).toBeLessThan(3500);
    expect(mail?.textLinks).toHaveLength(1);
  });

  test('failed deliveries are recorded; notify throws only when every mail failed', async () => {
    const { store, channel } = await setup();
    const id = uniqueId('bounce');
    await channel.notify({
      kind: 'request',
      request: makeRequest(T0, { id }),
      recipients: [{ id: 'bob', email: 'bounce@example.com', slack: null }, contact('alice')],
    });
    expect((await store.listDeliveries(id)).map((d) => [d.principal, d.status, d.error !== null])).toEqual([
      ['bob', 'failed', true],
      ['alice', 'sent', false],
    ]);

    // nothing listens on this port
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((r) => closed.close(() => r()));
    const down = await setup({ ...sinkConfig(sink), smtp: { ...sinkConfig(sink).smtp, port } });
    const id2 = uniqueId('down');
    await expect(
      down.channel.notify({
        kind: 'request',
        request: makeRequest(T0, { id: id2 }),
        recipients: [contact('alice')],
      }),
    ).rejects.toMatchObject({ code: 'EMAIL_UNREACHABLE' });
    expect((await down.store.listDeliveries(id2)).map((d) => d.status)).toEqual(['failed']);
  });

  test('outcome and revised notices carry no link and mint no token', async () => {
    const { store, channel, created } = await setup();
    const id = uniqueId('outcome');
    const decided = makeRequest(T0, {
      id,
      state: 'denied',
      deniedBy: 'bob',
      reason: 'see https://x.example',
    });
    await channel.notify({ kind: 'outcome', request: decided, recipients: [contact('alice')] });
    await channel.notify({
      kind: 'revised',
      request: { ...decided, state: 'pending', revision: 2 },
      recipients: [contact('alice')],
    });
    const mails = sink.inbox.filter((m) => m.mail.headers.get('x-agent-runtime-approval') === id);
    expect(mails.map((m) => m.mail.subject)).toMatchInlineSnapshot(`
      [
        "[Approval decided] fs.delete for agent-7: denied",
        "[Approval changed] fs.delete for agent-7 (revision 2)",
      ]
    `);
    for (const m of mails) {
      expect(m.textLinks).toEqual([]);
      expect(m.htmlLinks).toEqual([]);
    }
    expect(mails[0]?.mail.text).toContain('Denied by: bob');
    expect(created).toEqual([]);
    expect(await store.invalidateTokens(id, T0)).toBe(0);
    expect((await store.listDeliveries(id)).map((d) => d.kind)).toEqual(['outcome', 'revised']);
  });

  test('sendSignInLink mails a 15-minute sign-in link', async () => {
    const { store, channel, created } = await setup();
    await channel.sendSignInLink('dave', 'dave@example.com');
    const [mail] = await sink.waitFor(1, 'dave@example.com');
    expect(mail?.mail.subject).toBe('Sign in to the approvals inbox');
    expect(mail?.textLinks).toHaveLength(1);
    const token = mail?.textLinks[0]?.match(
      /^https:\/\/approvals\.example\.com\/signin\/([A-Za-z0-9_-]{43})$/,
    )?.[1];
    expect(token).toBeDefined();
    expect(created).toHaveLength(1);
    expect(await store.peekToken(sha256(token ?? ''), 'sign-in', T0)).toEqual({
      ok: true,
      token: {
        hash: sha256(token ?? ''),
        purpose: 'sign-in',
        principal: 'dave',
        requestId: null,
        revision: null,
        createdAtMs: T0,
        expiresAtMs: T0 + 15 * 60_000,
        usedAtMs: null,
      },
    });
    expect((await store.listAttempts()).map((a) => [a.action, a.outcome, a.detail['kind']])).toEqual([
      ['deliver', 'sent', 'sign-in'],
    ]);
  });

  test('DKIM-signs with the configured key', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const { channel } = await setup({
      ...sinkConfig(sink),
      dkim: {
        domainName: 'example.com',
        keySelector: 'approvals',
        privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      },
    });
    await channel.sendSignInLink('carol', 'carol+dkim@example.com');
    const [mail] = await sink.waitFor(1, 'carol+dkim@example.com');
    const signature = mail?.mail.headers.get('dkim-signature');
    expect(signature).toMatchObject({
      value: 'v=1',
      params: { d: 'example.com', s: 'approvals', a: 'rsa-sha256' },
    });
  });
});
