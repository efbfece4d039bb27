import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CONTENT_SECURITY_POLICY } from './html.ts';
import { call, field, harness, startServers, T0, visibleText } from './harness.ts';
import type { Harness, Servers } from './harness.ts';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const tokenOf = (link: string) => link.split('/').pop() ?? '';

let servers: Servers;
beforeAll(async () => {
  servers = await startServers();
});
afterAll(async () => {
  await servers.close();
});

const get = (path: string, cookie?: string) =>
  call(servers.base, 'GET', path, cookie === undefined ? {} : { cookie });
const head = (path: string) => call(servers.base, 'HEAD', path);
const post = (
  path: string,
  form: Record<string, string>,
  extra: { cookie?: string; headers?: Record<string, string> } = {},
) => call(servers.base, 'POST', path, { form, ...extra });
const pathOf = (link: string) => new URL(link).pathname;

describe('email review link (real SMTP, real HTTP)', () => {
  test('a link scanner (GET, GET, HEAD) decides nothing; the human POST decides once', async () => {
    const h = await harness(servers);
    const request = h.request();
    const { alice = '', bob = '' } = await h.mailLinks(request, ['alice', 'bob']);
    const first = await get(alice);
    const second = await get(alice);
    const probe = await head(alice);
    expect([first.status, second.status, probe.status]).toEqual([200, 200, 200]);
    expect(probe.text).toBe('');
    expect(h.decisions.submissions).toEqual([]);
    expect([await h.tokenState(alice), await h.tokenState(bob)]).toEqual(['usable', 'usable']);

    const reply = await post(pathOf(alice), {
      nonce: field(second.text, 'nonce'),
      decision: 'deny',
      reason: 'not during the freeze',
    });
    expect(reply.status).toBe(200);
    expect(visibleText(reply.text)).toMatchInlineSnapshot(`
      "Denied. The agent will not perform the action.
      Request
      run-1/approval/1
      (fs.delete): 0 of 1 approval; denied.
      Sign in to the web inbox"
    `);
    expect(h.decisions.submissions).toMatchObject([
      {
        channel: 'email',
        principal: 'alice',
        requestId: request.id,
        revision: 1,
        decision: 'deny',
        reason: 'not during the freeze',
        detail: { tokenHashPrefix: sha256(tokenOf(alice)).slice(0, 12), ip: '127.0.0.1' },
      },
    ]);
    expect(h.decisions.requests.get(request.id)?.state).toBe('denied');
    const attempts = await h.store.listAttempts({ requestId: request.id });
    const prefix = sha256(tokenOf(alice)).slice(0, 12);
    expect(
      attempts.map((a) => [
        a.action,
        a.principal,
        a.outcome,
        a.detail['method'],
        a.detail['tokenHashPrefix'],
      ]),
    ).toEqual([
      ['view', 'alice', 'ok', 'GET', prefix],
      ['view', 'alice', 'ok', 'GET', prefix],
      ['view', 'alice', 'ok', 'HEAD', prefix],
      ['vote', 'alice', 'ok', undefined, prefix], // recorded by the decision port from `detail`
    ]);
    // bob's link died with the decision (the service invalidates the request's tokens)
    expect(await h.tokenState(bob)).toBe('expired');
    expect((await get(bob)).status).toBe(410);
  });

  test('the review page shows the whole request, escaped, under strict headers, without scripts', async () => {
    const h = await harness(servers);
    const request = h.request({ quorum: 2, approvedBy: ['carol'] });
    const { alice = '' } = await h.mailLinks(request, ['alice']);
    const page = await get(alice);
    expect(
      Object.fromEntries(
        [...page.headers].filter(
          ([k]) => !['date', 'content-length', 'connection', 'keep-alive'].includes(k),
        ),
      ),
    ).toEqual({
      'cache-control': 'no-store',
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'content-type': 'text/html; charset=utf-8',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      'referrer-policy': 'no-referrer',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'x-robots-tag': 'noindex, nofollow',
    });
    expect(CONTENT_SECURITY_POLICY).toMatch(
      /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'$/,
    );
    expect(page.text).not.toMatch(/<script|<b>now|javascript:|http-equiv/i);
    expect(page.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; \\&quot;quotes\\&quot;');
    expect(page.text).toContain('<form method="post">');
    expect(field(page.text, 'nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(visibleText(page.text)).toMatchInlineSnapshot(`
      "Approval requested:
      fs.delete
      Acting as
      alice
      Action
      fs.delete
      Resource
      /srv/data/old.log
      Risk
      Elevated — rule
      fs-delete-needs-approval
      (policy
      v1-abc
      )
      Agent
      agent-7
      (run
      run-1
      , step 3)
      Requested by
      dave
      Approvals
      1 of 2 approvals (approved by carol)
      Expires
      2030-01-01T10:00:00.000Z
      (denied automatically after this time)
      Request
      run-1/approval/1
      (revision 1)
      State
      pending
      Arguments
      {
      "path": "/srv/data/old.log",
      "note": "<script>alert(1)</script> & \\"quotes\\""
      }
      Reason
      Stated by the agent, unverified:
      Disk is full. Approve quickly at https://evil.example/approve <b>now</b>
      Your decision
      Reason (sent to the agent and kept in the audit log)
      [textarea]
      [Approve][Deny]"
    `);
  });

  test('a POST without a nonce, or with the nonce of another request’s token, is refused; the token stays usable', async () => {
    const h = await harness(servers);
    const a = h.request();
    const b = h.request({ tool: 'db.drop' });
    const { alice: linkA = '' } = await h.mailLinks(a, ['alice']);
    const { alice: linkB = '' } = await h.mailLinks(b, ['alice']);
    const nonceB = field((await get(linkB)).text, 'nonce');
    const refused = [
      await post(pathOf(linkA), { decision: 'approve' }),
      await post(pathOf(linkA), { decision: 'approve', nonce: nonceB }),
      await post(pathOf(linkA), { decision: 'approve', nonce: 'x'.repeat(43) }),
      await post(pathOf(linkA), { decision: 'approve', nonce: '' }),
    ];
    expect(refused.map((r) => r.status)).toEqual([403, 403, 403, 403]);
    expect(visibleText(refused[1]?.text ?? '')).toMatchInlineSnapshot(`
      "This form has expired
      Nothing was recorded.
      Open the link from your email again and use its buttons."
    `);
    expect(h.decisions.submissions).toEqual([]);
    expect([await h.tokenState(linkA), await h.tokenState(linkB)]).toEqual(['usable', 'usable']);
    expect(
      (await h.store.listAttempts({ requestId: a.id }))
        .filter((x) => x.action === 'vote')
        .map((x) => x.outcome),
    ).toEqual(['bad_nonce', 'bad_nonce', 'bad_nonce', 'bad_nonce']);
    // the real click still works
    const ok = await post(pathOf(linkA), {
      decision: 'approve',
      nonce: field((await get(linkA)).text, 'nonce'),
    });
    expect(ok.status).toBe(200);
    expect(h.decisions.submissions).toMatchObject([
      { requestId: a.id, principal: 'alice', decision: 'approve' },
    ]);
  });

  test('a token is used once: a second rendered form gets the neutral page', async () => {
    const h = await harness(servers);
    const request = h.request({ quorum: 2 });
    const { alice = '' } = await h.mailLinks(request, ['alice']);
    const n1 = field((await get(alice)).text, 'nonce');
    const n2 = field((await get(alice)).text, 'nonce');
    expect((await post(pathOf(alice), { nonce: n1, decision: 'approve' })).status).toBe(200);
    const again = await post(pathOf(alice), { nonce: n2, decision: 'deny' });
    expect(again.status).toBe(410);
    expect(h.decisions.submissions).toHaveLength(1);
    expect(h.decisions.requests.get(request.id)).toMatchObject({ state: 'pending', approvedBy: ['alice'] });
    // the refusal carries the token-hash prefix (a used token no longer names its request or principal)
    expect((await h.store.listAttempts({ channel: 'email' })).at(-1)).toMatchObject({
      action: 'vote',
      outcome: 'used',
      requestId: null,
      detail: { tokenHashPrefix: sha256(tokenOf(alice)).slice(0, 12), decision: 'deny' },
    });
  });

  test('used, expired, unknown, decided, stale and malformed links all get the identical neutral page', async () => {
    const h = await harness(servers);
    const used = h.request();
    const decided = h.request();
    const stale = h.request();
    const short = h.request({ expiresAtMs: T0 + 60_000 });
    const { alice: usedLink = '' } = await h.mailLinks(used, ['alice']);
    const { alice: decidedLink = '' } = await h.mailLinks(decided, ['alice']);
    const { alice: staleLink = '' } = await h.mailLinks(stale, ['alice']);
    const { alice: expiredLink = '' } = await h.mailLinks(short, ['alice']);
    await post(pathOf(usedLink), { nonce: field((await get(usedLink)).text, 'nonce'), decision: 'approve' });
    // decided or revised elsewhere, tokens not (yet) invalidated: the page still refuses
    h.decisions.patch(decided.id, { state: 'approved', approvedBy: ['bob'] });
    h.decisions.patch(stale.id, { revision: 2 });
    const staleNonce = field((await get(expiredLink)).text, 'nonce');
    h.clock.ms = T0 + 60_000;
    const pages = [
      await get(usedLink),
      await get(decidedLink),
      await get(staleLink),
      await get(expiredLink),
      await get(`/review/${'A'.repeat(43)}`),
      await get('/review/short'),
      await get('/review/'),
      await post(pathOf(usedLink), { nonce: 'x'.repeat(43), decision: 'approve' }).then(() => get(usedLink)),
    ];
    expect(pages.map((p) => p.status)).toEqual(Array(pages.length).fill(410));
    expect(new Set(pages.map((p) => p.text)).size).toBe(1);
    expect(visibleText(pages[0]?.text ?? '')).toMatchInlineSnapshot(`
      "This link is no longer valid
      It may have expired or been used already, or the request may have been decided. Nothing was changed.
      Approvers can
      sign in to the web inbox
      to see what is waiting for them."
    `);
    // the form rendered before expiry cannot be used after it
    expect((await post(pathOf(expiredLink), { nonce: staleNonce, decision: 'approve' })).status).toBe(403);
    expect(h.decisions.submissions).toHaveLength(1);
    const outcomes = (await h.store.listAttempts({ channel: 'email' }))
      .filter((a) => a.action === 'view')
      .map((a) => a.outcome);
    expect(outcomes.slice(-8)).toEqual([
      'used',
      'decided',
      'stale_revision',
      'expired',
      'unknown',
      'unknown',
      'unknown',
      'used',
    ]);
  });

  test('high risk: email cannot approve (the token is burnt), deny works', async () => {
    const h = await harness(servers);
    const request = h.request({ highRisk: true });
    const { alice = '', bob = '' } = await h.mailLinks(request, ['alice', 'bob']);
    const page = await get(alice);
    expect(page.text).not.toContain('value="approve"');
    expect(page.text).toContain('value="deny"');
    expect(visibleText(page.text)).toContain(
      'This is a high-risk request: email can only deny it. To approve,\nsign in to the web inbox\nor use Slack.',
    );
    expect(page.text).toContain('<a href="/signin">sign in to the web inbox</a>');
    // a crafted approve is refused and uses the token
    const crafted = await post(pathOf(alice), { nonce: field(page.text, 'nonce'), decision: 'approve' });
    expect(crafted.status).toBe(403);
    expect(visibleText(crafted.text)).toMatchInlineSnapshot(`
      "Not recorded
      This is a high-risk request: email can only deny it. To approve it, sign in to the web inbox or use Slack.
      Sign in to the web inbox"
    `);
    expect(h.decisions.submissions).toEqual([]);
    expect(h.decisions.requests.get(request.id)?.state).toBe('pending');
    expect((await get(alice)).status).toBe(410);
    // deny by email works
    const deny = await post(pathOf(bob), { nonce: field((await get(bob)).text, 'nonce'), decision: 'deny' });
    expect(deny.status).toBe(200);
    expect(h.decisions.requests.get(request.id)).toMatchObject({ state: 'denied', deniedBy: 'bob' });
  });

  test('a forwarded high-risk link used by someone else cannot approve', async () => {
    const h = await harness(servers);
    const request = h.request({ highRisk: true });
    const { alice = '' } = await h.mailLinks(request, ['alice']);
    // mallory got alice's mail forwarded: the page acts as alice and offers no Approve
    const page = await call(servers.base, 'GET', alice, { headers: { 'user-agent': 'mallory-browser' } });
    expect(visibleText(page.text)).toContain('Acting as\nalice');
    expect(page.text).not.toContain('value="approve"');
    const forged = await call(servers.base, 'POST', pathOf(alice), {
      form: { nonce: field(page.text, 'nonce'), decision: 'approve', reason: 'lgtm' },
      headers: { 'user-agent': 'mallory-browser' },
    });
    expect(forged.status).toBe(403);
    expect(h.decisions.submissions).toEqual([]);
    expect(h.decisions.requests.get(request.id)?.state).toBe('pending');
    expect((await h.store.listAttempts({ requestId: request.id })).at(-1)).toMatchObject({
      action: 'vote',
      principal: 'alice',
      outcome: 'high_risk_channel',
      detail: { userAgent: 'mallory-browser', decision: 'approve' },
    });
    // the link is no way into the inbox
    expect((await get('/inbox')).headers.get('location')).toBe('/signin');
  });

  test('only form bodies of at most 64 KB; other methods and paths are refused with the same headers', async () => {
    const h = await harness(servers);
    const { alice = '' } = await h.mailLinks(h.request(), ['alice']);
    const path = pathOf(alice);
    const json = await call(servers.base, 'POST', path, {
      body: '{"decision":"approve"}',
      headers: { 'content-type': 'application/json' },
    });
    expect(json.status).toBe(415);
    const big = await post(path, { nonce: 'n', decision: 'approve', reason: 'x'.repeat(70_000) });
    expect(big.status).toBe(413);
    const dup = await call(servers.base, 'POST', path, {
      body: 'decision=deny&decision=approve&nonce=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(dup.status).toBe(400);
    const put = await call(servers.base, 'PUT', path);
    expect([put.status, put.headers.get('allow')]).toEqual([405, 'GET, HEAD, POST']);
    const getVote = await get('/inbox/x/vote');
    expect([getVote.status, getVote.headers.get('allow')]).toEqual([405, 'POST']);
    const other = await get('/slack/events');
    expect(other.status).toBe(404);
    expect(other.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    expect(other.headers.get('cache-control')).toBe('no-store');
    expect(h.app.owns('/slack/events')).toBe(false);
    expect(h.app.owns('/review/abc?x=1')).toBe(true);
    expect(h.decisions.submissions).toEqual([]);
    expect(await h.tokenState(alice)).toBe('usable');
  });
});

/** Signs `principal` in through a printed link; returns the cookie header value. */
async function signIn(h: Harness, principal: string): Promise<string> {
  const link = await h.app.createSignInLink(principal);
  const page = await get(link);
  const done = await post(pathOf(link), { nonce: field(page.text, 'nonce') });
  expect(done.status).toBe(303);
  return (done.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
}

describe('sign-in', () => {
  test('the same neutral answer for everyone; a link only to known approvers; rate-limited per address', async () => {
    const h = await harness(servers);
    const unknown = await post('/signin', { email: 'nobody@example.com' });
    const known = await post('/signin', { email: '  ALICE@Example.com ' });
    expect([unknown.status, known.status]).toEqual([200, 200]);
    expect(unknown.text).toBe(known.text);
    expect(visibleText(known.text)).toMatchInlineSnapshot(`
      "Check your email
      If you are an approver, a sign-in link is on its way to that address.
      It works once, for 15 minutes. Open it in this browser."
    `);
    const [mail] = await h.signInMails('alice@example.com', 1);
    expect(mail?.textLinks[0]).toMatch(new RegExp(`^${servers.base}/signin/[A-Za-z0-9_-]{43}$`));
    expect(h.mails((m) => m.envelope.rcptTo.some((r) => r.address === 'nobody@example.com'))).toEqual([]);
    for (let i = 0; i < 5; i++)
      expect((await post('/signin', { email: 'alice@example.com' })).text).toBe(known.text);
    await h.signInMails('alice@example.com', 5);
    await new Promise((r) => setTimeout(r, 150));
    expect(await h.signInMails('alice@example.com', 5)).toHaveLength(5);
    expect(
      (await h.store.listAttempts({ channel: 'web' }))
        .filter((a) => a.action === 'sign_in_request')
        .map((a) => [a.principal, a.outcome]),
    ).toEqual([
      [null, 'unknown_email'],
      ['alice', 'sent'],
      ['alice', 'sent'],
      ['alice', 'sent'],
      ['alice', 'sent'],
      ['alice', 'sent'],
      [null, 'rate_limited'],
    ]);
    expect(h.errors).toEqual([]);
  });

  test('GET and HEAD of a sign-in link consume nothing; its button makes a strict session cookie', async () => {
    const h = await harness(servers);
    const link = await h.app.createSignInLink('alice');
    const pages = [await get(link), await get(link), await head(link)];
    expect(pages.map((p) => p.status)).toEqual([200, 200, 200]);
    expect(visibleText(pages[0]?.text ?? '')).toMatchInlineSnapshot(`
      "Sign in to the approvals inbox
      Sign in as
      alice
      ?
      [Sign in]"
    `);
    expect(pages.map((p) => p.headers.get('set-cookie'))).toEqual([null, null, null]);
    expect(await h.tokenState(link)).toBe('usable');

    expect((await post(pathOf(link), {})).status).toBe(403);
    expect(await h.tokenState(link)).toBe('usable');
    const done = await post(pathOf(link), { nonce: field(pages[1]?.text ?? '', 'nonce') });
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe('/inbox');
    const cookie = done.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(
      /^ar_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=28800$/,
    );
    const id = cookie.slice('ar_session='.length, cookie.indexOf(';'));
    const session = await h.store.getSession(sha256(id), T0);
    expect(session).toMatchObject({
      hash: sha256(id),
      principal: 'alice',
      createdAtMs: T0,
      expiresAtMs: T0 + 8 * 3600_000,
    });
    expect(JSON.stringify(session)).not.toContain(id);
    expect(await h.tokenState(link)).toBe('used');
    // once only
    expect((await post(pathOf(link), { nonce: field(pages[0]?.text ?? '', 'nonce') })).status).toBe(410);
    expect((await get(link)).status).toBe(410);
    // expiry: 15 minutes
    const late = await h.app.createSignInLink('bob');
    h.clock.ms += 15 * 60_000;
    expect((await get(late)).status).toBe(410);
    // sessions end after 8 hours
    expect((await get('/inbox', `ar_session=${id}`)).status).toBe(200);
    h.clock.ms = T0 + 8 * 3600_000;
    expect((await get('/inbox', `ar_session=${id}`)).headers.get('location')).toBe('/signin');
  });

  test('with secureCookies the cookie is Secure; cross-site posts are refused', async () => {
    const h = await harness(servers, { secureCookies: true });
    const link = await h.app.createSignInLink('bob');
    const nonce = field((await get(link)).text, 'nonce');
    const cross = await post(pathOf(link), { nonce }, { headers: { 'sec-fetch-site': 'cross-site' } });
    const foreign = await post(pathOf(link), { nonce }, { headers: { origin: 'https://evil.example' } });
    expect([cross.status, foreign.status]).toEqual([403, 403]);
    expect(await h.tokenState(link)).toBe('usable');
    const done = await post(
      pathOf(link),
      { nonce },
      { headers: { origin: 'null', 'sec-fetch-site': 'same-origin' } },
    );
    expect(done.headers.get('set-cookie')).toMatch(
      /; HttpOnly; SameSite=Strict; Path=\/; Max-Age=28800; Secure$/,
    );
  });
});

describe('web inbox', () => {
  test('without a session it redirects to sign-in; with one it lists what the principal may decide', async () => {
    const h = await harness(servers);
    const mine = h.request({ tool: 'fs.delete' });
    h.request({ tool: 'not.for.alice', eligible: ['bob'] });
    h.request({ tool: 'own.request', requester: 'alice' });
    for (const cookie of [undefined, 'ar_session=nope', `ar_session=${'A'.repeat(43)}`]) {
      const r = await get('/inbox', cookie);
      expect([r.status, r.headers.get('location')]).toEqual([303, '/signin']);
    }
    const cookie = await signIn(h, 'alice');
    const inbox = await get('/inbox', cookie);
    expect(inbox.status).toBe(200);
    expect(inbox.text).toContain(`<a href="/inbox/${encodeURIComponent(mine.id)}">fs.delete</a>`);
    expect(visibleText(inbox.text)).toMatchInlineSnapshot(`
      "Signed in as
      alice
      ·
      Inbox
      [Sign out]
      Waiting for your decision
      fs.delete
      for agent-7 — requested by dave — 0 of 1 approval — expires 2030-01-01T10:00:00.000Z"
    `);
    // signed in, /signin goes to the inbox
    expect((await get('/signin', cookie)).headers.get('location')).toBe('/inbox');
  });

  test('a vote needs the session, its csrf and a fresh nonce; then it is submitted once', async () => {
    const h = await harness(servers);
    const request = h.request({ quorum: 2 });
    const other = h.request();
    const cookie = await signIn(h, 'alice');
    const path = `/inbox/${encodeURIComponent(request.id)}`;
    const page = await get(path, cookie);
    expect(page.status).toBe(200);
    const csrf = field(page.text, 'csrf');
    const nonce = field(page.text, 'nonce');
    const otherNonce = field((await get(`/inbox/${encodeURIComponent(other.id)}`, cookie)).text, 'nonce');
    const form = { csrf, nonce, revision: '1', decision: 'approve' };
    const refused = [
      await post(`${path}/vote`, form),
      await post(`${path}/vote`, { nonce, revision: '1', decision: 'approve' }, { cookie }),
      await post(`${path}/vote`, { ...form, csrf: `${csrf.slice(0, -1)}x` }, { cookie }),
      await post(`${path}/vote`, { ...form, nonce: otherNonce }, { cookie }),
      await post(`${path}/vote`, form, { cookie, headers: { 'sec-fetch-site': 'cross-site' } }),
    ];
    expect(refused.map((r) => r.status)).toEqual([403, 403, 403, 403, 403]);
    expect(h.decisions.submissions).toEqual([]);
    expect(
      (await h.store.listAttempts({ requestId: request.id }))
        .filter((a) => a.action === 'vote')
        .map((a) => a.outcome),
    ).toEqual(['no_session', 'bad_csrf', 'bad_csrf', 'bad_nonce']);
    const ok = await post(`${path}/vote`, form, { cookie });
    expect(ok.status).toBe(200);
    expect(visibleText(ok.text)).toMatchInlineSnapshot(`
      "Signed in as
      alice
      ·
      Inbox
      [Sign out]
      Your approval was recorded. More approvals are needed before the agent may act.
      Request
      run-1/approval/1
      (fs.delete): 1 of 2 approvals (approved by alice); pending.
      Back to the request
      ·
      Inbox"
    `);
    expect(h.decisions.submissions).toMatchObject([
      { channel: 'web', principal: 'alice', requestId: request.id, revision: 1, decision: 'approve' },
    ]);
    expect(h.decisions.submissions[0]).not.toHaveProperty('editedArgs');
    // the nonce was single use
    expect((await post(`${path}/vote`, form, { cookie })).status).toBe(403);
    // already approved: the page shows no buttons now
    const after = await get(path, cookie);
    expect(after.text).not.toContain('name="decision"');
    expect(visibleText(after.text)).toContain('You already approved this request; it needs more approvals.');
  });

  test('approve with edits: non-JSON is refused before submitting; the service’s refusals are shown', async () => {
    const h = await harness(servers);
    const request = h.request();
    const cookie = await signIn(h, 'bob');
    const path = `/inbox/${encodeURIComponent(request.id)}`;
    const vote = async (editedArgs: string) => {
      const page = await get(path, cookie);
      expect(page.text).toContain('Approve with edits');
      return post(
        `${path}/vote`,
        {
          csrf: field(page.text, 'csrf'),
          nonce: field(page.text, 'nonce'),
          revision: '1',
          decision: 'approve',
          editedArgs,
        },
        { cookie },
      );
    };
    const notJson = await vote('{"path": "/srv/data/old.log",');
    expect(notJson.status).toBe(422);
    expect(visibleText(notJson.text)).toMatchInlineSnapshot(`
      "Signed in as
      bob
      ·
      Inbox
      [Sign out]
      Not recorded
      The edited arguments are not valid JSON. Nothing was submitted.
      Expected double-quoted property name in JSON at position 29 (line 1 column 30)
      Back to the request
      ·
      Inbox"
    `);
    expect(h.decisions.submissions).toEqual([]);
    const raised = await vote('{"path": "/srv/data", "recursive": true}');
    expect(raised.status).toBe(422);
    expect(visibleText(raised.text)).toContain(
      'Your edit would need a higher approval tier than this request has. Nothing was approved; the agent must ask for that action separately.',
    );
    const prohibited = await vote('{"path": "/etc/passwd"}');
    expect(visibleText(prohibited.text)).toContain(
      'Your edit turns this into an action the policy prohibits.',
    );
    const invalid = await vote('[1, 2]');
    expect(visibleText(invalid.text)).toContain('The edited arguments are not valid for this tool.');
    expect(h.decisions.requests.get(request.id)?.state).toBe('pending');
    const edited = await vote('{"path": "/srv/data/old.log.1"}');
    expect(edited.status).toBe(200);
    expect(h.decisions.submissions.map((s) => s.editedArgs)).toEqual([
      { path: '/srv/data', recursive: true },
      { path: '/etc/passwd' },
      [1, 2],
      { path: '/srv/data/old.log.1' },
    ]);
    expect(h.decisions.requests.get(request.id)).toMatchObject({
      state: 'approved',
      revision: 2,
      args: { path: '/srv/data/old.log.1' },
    });
    expect(
      (await h.store.listAttempts({ requestId: request.id }))
        .filter((a) => a.action === 'edit')
        .map((a) => a.outcome),
    ).toEqual(['invalid_json', 'edit_raised_tier', 'edit_prohibited', 'invalid_edit', 'ok']);
  });

  test('high-risk requests can be approved in the inbox; the requester sees no buttons; sign-out ends the session', async () => {
    const h = await harness(servers);
    const request = h.request({ highRisk: true, requester: 'carol' });
    const carol = await signIn(h, 'carol');
    const own = await get(`/inbox/${encodeURIComponent(request.id)}`, carol);
    expect(own.text).not.toContain('name="decision"');
    expect(visibleText(own.text)).toContain('You requested this action, so another approver must decide it.');
    expect((await get(`/inbox/${encodeURIComponent('no/such/request')}`, carol)).status).toBe(404);

    const alice = await signIn(h, 'alice');
    const page = await get(`/inbox/${encodeURIComponent(request.id)}`, alice);
    expect(page.text).toContain('value="approve"');
    const ok = await post(
      `/inbox/${encodeURIComponent(request.id)}/vote`,
      {
        csrf: field(page.text, 'csrf'),
        nonce: field(page.text, 'nonce'),
        revision: '1',
        decision: 'approve',
      },
      { cookie: alice },
    );
    expect(ok.status).toBe(200);
    expect(h.decisions.requests.get(request.id)).toMatchObject({ state: 'approved', approvedBy: ['alice'] });

    const inbox = await get('/inbox', alice);
    const noCsrf = await post('/signout', {}, { cookie: alice });
    expect(noCsrf.status).toBe(403);
    const out = await post('/signout', { csrf: field(inbox.text, 'csrf') }, { cookie: alice });
    expect([out.status, out.headers.get('location')]).toEqual([303, '/signin']);
    expect(out.headers.get('set-cookie')).toMatch(
      /^ar_session=; HttpOnly; SameSite=Strict; Path=\/; Max-Age=0$/,
    );
    expect((await get('/inbox', alice)).headers.get('location')).toBe('/signin');
    expect(await h.session(alice)).toBeNull();
    expect(await h.session(carol)).toMatchObject({ principal: 'carol' });
  });
});
