/**
 * The web side of human approvals, as one plain `node:http` request handler: the review page behind
 * an approval email's link, magic-link sign-in, and the web inbox (with approve-with-edits).
 *
 * Rules it keeps:
 * - GET and HEAD never consume or decide (mail scanners fetch every link, some more than once).
 * - Every form carries a per-render nonce stored server-side and bound to the token or session it
 *   was rendered for; a POST without it is refused and the token stays usable.
 * - An email review token is used by the first POST that carries a valid nonce, whatever that POST
 *   asks for. An Approve of a high-risk request by email is refused (`high_risk_channel`) and the
 *   token is still consumed: a forwarded or scanned link that tried to approve is burnt, and the real
 *   approver decides in the web inbox or Slack, where they are authenticated.
 * - Unknown, expired, used, decided and stale links all get the same neutral page with status 410.
 * - Inbox POSTs need the session cookie, its CSRF secret (constant-time compare) and a nonce.
 * - Every view and every refusal before the decision port is recorded here as an attempt; what
 *   reaches `DecisionPort.submit` is audited by the port (the channel passes IP, user agent and the
 *   token-hash prefix or session-hash prefix as `detail`), and here only when `submit` throws.
 * - No scripts; a strict CSP and no-store/no-referrer headers on every response.
 * @module
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type {
  ApprovalStore,
  AttemptRecord,
  ChannelName,
  DecisionPort,
  PrincipalContact,
  RequestRecord,
  SessionRecord,
  SubmitInput,
  SubmitResult,
  TokenLookup,
  TokenRecord,
} from '../core/types.ts';
import { TokenPurpose } from '../core/types.ts';
import { escapeHtml } from '../email/format.ts';
import type { RandomBytes } from '../email/tokens.ts';
import {
  baseUrl,
  hashToken,
  isTokenShape,
  mintSignInLink,
  mintToken,
  tokenHashPrefix,
} from '../email/tokens.ts';
import type { SignedInHeader } from './html.ts';
import {
  cannotDecideReason,
  emailReviewForm,
  inboxForms,
  inboxPage,
  messagePage,
  neutralLinkPage,
  page,
  resultPage,
  reviewDetails,
  signInConfirmPage,
  signInFormPage,
} from './html.ts';
import {
  clientDetail,
  MAX_BODY_BYTES,
  parseCookies,
  readForm,
  redirect,
  safeEqual,
  sendHtml,
} from './http.ts';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'ar_session';
/** Default lifetime of a web inbox session. */
export const SESSION_TTL_MS = 8 * 60 * 60_000;
/** How long a rendered form's nonce stays usable (never longer than its token or session). */
export const NONCE_TTL_MS = 60 * 60_000;
/** Status of the neutral "link no longer valid" page, for every reason alike. */
export const NEUTRAL_STATUS = 410;

/** The store methods the web app uses. */
export type WebStore = Pick<
  ApprovalStore,
  | 'createToken'
  | 'peekToken'
  | 'consumeToken'
  | 'createNonce'
  | 'consumeNonce'
  | 'createSession'
  | 'getSession'
  | 'deleteSession'
  | 'recordAttempt'
>;

/** Principals' contact data from the trusted governance document. */
export interface WebDirectory {
  byId(id: string): PrincipalContact | null | Promise<PrincipalContact | null>;
  /** `email` arrives trimmed and lower-cased. */
  byEmail(email: string): PrincipalContact | null | Promise<PrincipalContact | null>;
}

/** Options of {@link createWebApp}. */
export interface WebAppOptions {
  readonly store: WebStore;
  readonly decisions: DecisionPort;
  readonly getRequest: (id: string) => Promise<RequestRecord | null>;
  /** Pending requests `principal` may decide now. */
  readonly listPending: (principal: string) => Promise<readonly RequestRecord[]>;
  readonly directory: WebDirectory;
  /** The external origin (and optional path prefix-free base), e.g. `https://approvals.example.com`. */
  readonly publicBaseUrl: string;
  /** Defaults to `Date.now`. */
  readonly now?: () => number;
  /** Defaults to `crypto.randomBytes`. */
  readonly randomBytes?: RandomBytes;
  /** Mails a magic link (e.g. `EmailChannel.sendSignInLink`); without it, `POST /signin` sends nothing. */
  readonly sendSignInLink?: (principal: string, email: string) => Promise<void>;
  /** Adds `Secure` to the session cookie (set it whenever `publicBaseUrl` is https). */
  readonly secureCookies?: boolean;
  /** Defaults to {@link SESSION_TTL_MS}. */
  readonly sessionTtlMs?: number;
  /** Sign-in mails per email address and window; defaults to 5 per 15 minutes. */
  readonly signInLimit?: { readonly max: number; readonly windowMs: number };
  /** Defaults to {@link MAX_BODY_BYTES}. */
  readonly maxBodyBytes?: number;
  /** Unexpected errors (the response is a generic 500 page). */
  readonly onError?: (err: unknown) => void;
}

/** The request handler, plus helpers for the lead's wiring. */
export interface WebApp {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Mints a one-time sign-in link for `principal` (printed by `agent-runtime dev`). */
  createSignInLink(principal: string): Promise<string>;
  /** Whether a request path belongs to this app (everything else gets a 404 from it). */
  owns(path: string): boolean;
}

const OWNED = new Set(['review', 'signin', 'inbox', 'signout']);

/** Whether `path` (a request URL's path) belongs to the web app. */
export function ownsPath(path: string): boolean {
  const first = path.split('?')[0]?.split('/')[1] ?? '';
  return OWNED.has(first);
}

const NonceField = z.string().regex(/^[A-Za-z0-9_-]{43}$/);
const Decision = z.enum(['approve', 'deny']);
const Reason = z
  .string()
  .max(2000)
  .optional()
  .transform((r) => (r === undefined || r.trim() === '' ? undefined : r.trim()));
const ReviewForm = z.object({ decision: Decision, reason: Reason });
const VoteForm = z.object({
  decision: Decision,
  reason: Reason,
  revision: z
    .string()
    .regex(/^[1-9][0-9]{0,8}$/)
    .transform(Number),
  editedArgs: z.string().max(60_000).optional(),
});
const SignInForm = z.object({
  email: z
    .string()
    .trim()
    .toLowerCase()
    .max(320)
    .regex(/^[^\s@]+@[^\s@]+$/),
});

type Lookup<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly code: string };

/** Per-key sliding-window counter (in memory: per process). */
class RateLimiter {
  readonly #hits = new Map<string, number[]>();
  readonly #max: number;
  readonly #windowMs: number;
  constructor(max: number, windowMs: number) {
    this.#max = max;
    this.#windowMs = windowMs;
  }
  /** Counts a hit; false when the key is over its limit. */
  hit(key: string, nowMs: number): boolean {
    const recent = (this.#hits.get(key) ?? []).filter((t) => t > nowMs - this.#windowMs);
    const allowed = recent.length < this.#max;
    if (allowed) recent.push(nowMs);
    this.#hits.delete(key);
    this.#hits.set(key, recent);
    if (this.#hits.size > 10_000) {
      const oldest = this.#hits.keys().next();
      if (oldest.done !== true) this.#hits.delete(oldest.value);
    }
    return allowed;
  }
}

/**
 * Builds the handler. Paths it owns: `/review/:token`, `/signin`, `/signin/:token`, `/inbox`,
 * `/inbox/:id`, `/inbox/:id/vote`, `/signout`; anything else gets a 404 (mount it beside the Slack
 * receiver and route by {@link ownsPath}).
 */
export function createWebApp(options: WebAppOptions): WebApp {
  const { store, decisions, directory } = options;
  const base = baseUrl(options.publicBaseUrl);
  const origin = new URL(base).origin;
  const now = options.now ?? Date.now;
  const random = options.randomBytes ?? nodeRandomBytes;
  const sessionTtlMs = options.sessionTtlMs ?? SESSION_TTL_MS;
  const maxBody = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const limiter = new RateLimiter(
    options.signInLimit?.max ?? 5,
    options.signInLimit?.windowMs ?? 15 * 60_000,
  );

  const audit = (
    channel: ChannelName,
    action: string,
    outcome: string,
    fields: { requestId?: string | null; principal?: string | null; detail?: Record<string, unknown> },
    req: IncomingMessage,
  ): Promise<void> => {
    const attempt: AttemptRecord = {
      requestId: fields.requestId ?? null,
      channel,
      action,
      principal: fields.principal ?? null,
      outcome,
      detail: { ...clientDetail(req), method: req.method ?? null, ...fields.detail },
      atMs: now(),
    };
    return store.recordAttempt(attempt);
  };

  const newNonce = async (binding: string, notAfterMs: number): Promise<string> => {
    const { token } = mintToken(random);
    await store.createNonce(token, binding, Math.min(notAfterMs, now() + NONCE_TTL_MS));
    return token;
  };

  const submit = async (input: SubmitInput): Promise<SubmitResult | null> => {
    try {
      return await decisions.submit(input);
    } catch (err) {
      options.onError?.(err);
      return null;
    }
  };

  // ---- email review -------------------------------------------------------------------------

  /** A review token that may still be used, with its pending request. */
  const usableReview = async (
    token: TokenLookup,
  ): Promise<Lookup<{ token: TokenRecord; request: RequestRecord }>> => {
    if (!token.ok) return token;
    const { requestId, revision } = token.token;
    if (requestId === null) return { ok: false, code: 'wrong_purpose' };
    const request = await options.getRequest(requestId);
    if (request === null) return { ok: false, code: 'unknown_request' };
    if (request.state !== 'pending') return { ok: false, code: 'decided' };
    if (request.revision !== revision) return { ok: false, code: 'stale_revision' };
    if (now() >= request.expiresAtMs) return { ok: false, code: 'expired' };
    return { ok: true, value: { token: token.token, request } };
  };

  const peek = async (raw: string, purpose: TokenPurpose): Promise<TokenLookup> =>
    isTokenShape(raw) ? store.peekToken(hashToken(raw), purpose, now()) : { ok: false, code: 'unknown' };

  const reviewGet = async (req: IncomingMessage, res: ServerResponse, raw: string, head: boolean) => {
    const hash = hashToken(raw);
    const found = await usableReview(await peek(raw, TokenPurpose.emailReview));
    const who = found.ok ? found.value.token : null;
    await audit(
      'email',
      'view',
      found.ok ? 'ok' : found.code,
      { requestId: who?.requestId ?? null, principal: who?.principal ?? null, detail: reviewDetail(hash) },
      req,
    );
    if (!found.ok) return sendHtml(res, NEUTRAL_STATUS, neutralLinkPage());
    const { token, request } = found.value;
    const nonce = head ? '' : await newNonce(hash, token.expiresAtMs);
    sendHtml(
      res,
      200,
      page(
        `Review: ${request.tool}`,
        `${reviewDetails(request, token.principal)}\n${emailReviewForm(request, nonce)}`,
      ),
    );
  };

  const reviewPost = async (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const hash = hashToken(raw);
    const known = await peek(raw, TokenPurpose.emailReview); // for the audit record only
    const who = known.ok ? known.token : null;
    const refuse = async (
      status: number,
      outcome: string,
      html: string,
      extra: Record<string, unknown> = {},
    ) => {
      await audit(
        'email',
        'vote',
        outcome,
        {
          requestId: who?.requestId ?? null,
          principal: who?.principal ?? null,
          detail: { ...reviewDetail(hash), ...extra },
        },
        req,
      );
      sendHtml(res, status, html, status === 413 ? { Connection: 'close' } : {});
    };
    const body = await readForm(req, maxBody);
    if (!body.ok) return refuse(body.status, body.reason, badRequestPage(body.status));
    const nonce = NonceField.safeParse(body.fields.get('nonce'));
    if (!nonce.success || !(await store.consumeNonce(nonce.data, hash, now()))) {
      return refuse(
        403,
        'bad_nonce',
        formExpiredPage('Open the link from your email again and use its buttons.'),
      );
    }
    const form = ReviewForm.safeParse({
      decision: body.fields.get('decision'),
      reason: body.fields.get('reason'),
    });
    if (!form.success) return refuse(400, 'bad_form', badRequestPage(400));
    const { decision, reason } = form.data;
    const used = await store.consumeToken(hash, TokenPurpose.emailReview, now());
    if (!used.ok || used.token.requestId === null || used.token.revision === null) {
      return refuse(NEUTRAL_STATUS, used.ok ? 'wrong_purpose' : used.code, neutralLinkPage(), { decision });
    }
    const { principal, requestId, revision } = used.token;
    const request = await options.getRequest(requestId);
    const signInLink = '<p><a href="/signin">Sign in to the web inbox</a></p>';
    if (request?.highRisk === true && decision === 'approve') {
      await audit(
        'email',
        'vote',
        'high_risk_channel',
        { requestId, principal, detail: { ...reviewDetail(hash), decision } },
        req,
      );
      return sendHtml(
        res,
        403,
        resultPage(
          {
            ok: false,
            code: 'high_risk_channel',
            message: '',
            request,
          },
          decision,
          signInLink,
        ),
      );
    }
    const result = await submit({
      channel: 'email',
      principal,
      requestId,
      revision,
      decision,
      ...(reason === undefined ? {} : { reason }),
      detail: { ...clientDetail(req), tokenHashPrefix: tokenHashPrefix(hash) },
    });
    // The decision port audits every submission (outcome `ok` or its refusal code); only a throw is ours.
    if (result === null) {
      await audit(
        'email',
        'vote',
        'error',
        { requestId, principal, detail: { ...reviewDetail(hash), decision } },
        req,
      );
      return sendHtml(res, 503, unavailablePage());
    }
    sendHtml(res, resultStatus(result), resultPage(result, decision, signInLink));
  };

  // ---- sign-in ------------------------------------------------------------------------------

  const signInForm = async (req: IncomingMessage, res: ServerResponse) => {
    if ((await currentSession(req)) !== null) return redirect(res, '/inbox');
    sendHtml(res, 200, signInFormPage());
  };

  const signInRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readForm(req, maxBody);
    if (!body.ok) return sendHtml(res, body.status, badRequestPage(body.status), closeIf413(body.status));
    const form = SignInForm.safeParse({ email: body.fields.get('email') });
    if (!form.success) {
      return sendHtml(
        res,
        400,
        messagePage(
          'Sign in',
          ['Enter the email address you approve with.'],
          '<p><a href="/signin">Back</a></p>',
        ),
      );
    }
    const email = form.data.email;
    const allowed = limiter.hit(email, now());
    const contact = allowed ? await directory.byEmail(email) : null;
    const address = contact?.email ?? null;
    const outcome = !allowed
      ? 'rate_limited'
      : contact === null || address === null
        ? 'unknown_email'
        : options.sendSignInLink === undefined
          ? 'no_mailer'
          : 'sent';
    await audit('web', 'sign_in_request', outcome, { principal: contact?.id ?? null }, req);
    if (outcome === 'sent' && contact !== null && address !== null && options.sendSignInLink !== undefined) {
      // Not awaited: the answer takes the same time whether or not the address is known.
      const send = options.sendSignInLink;
      void Promise.resolve()
        .then(() => send(contact.id, address))
        .catch((err: unknown) => options.onError?.(err));
    }
    sendHtml(
      res,
      200,
      messagePage('Check your email', [
        'If you are an approver, a sign-in link is on its way to that address.',
        'It works once, for 15 minutes. Open it in this browser.',
      ]),
    );
  };

  const signInConfirm = async (req: IncomingMessage, res: ServerResponse, raw: string, head: boolean) => {
    const hash = hashToken(raw);
    const found = await peek(raw, TokenPurpose.signIn);
    await audit(
      'web',
      'sign_in_view',
      found.ok ? 'ok' : found.code,
      { principal: found.ok ? found.token.principal : null, detail: reviewDetail(hash) },
      req,
    );
    if (!found.ok) return sendHtml(res, NEUTRAL_STATUS, neutralLinkPage());
    const nonce = head ? '' : await newNonce(hash, found.token.expiresAtMs);
    sendHtml(res, 200, signInConfirmPage(found.token.principal, nonce));
  };

  const signInConsume = async (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const hash = hashToken(raw);
    const body = await readForm(req, maxBody);
    const refuse = async (status: number, outcome: string, html: string, principal: string | null = null) => {
      await audit('web', 'sign_in', outcome, { principal, detail: reviewDetail(hash) }, req);
      sendHtml(res, status, html, closeIf413(status));
    };
    if (!body.ok) return refuse(body.status, body.reason, badRequestPage(body.status));
    const nonce = NonceField.safeParse(body.fields.get('nonce'));
    if (!nonce.success || !(await store.consumeNonce(nonce.data, hash, now()))) {
      return refuse(403, 'bad_nonce', formExpiredPage('Open the sign-in link again and press its button.'));
    }
    const used = await store.consumeToken(hash, TokenPurpose.signIn, now());
    if (!used.ok) return refuse(NEUTRAL_STATUS, used.code, neutralLinkPage());
    const principal = used.token.principal;
    if ((await directory.byId(principal)) === null) {
      return refuse(NEUTRAL_STATUS, 'not_authorized', neutralLinkPage(), principal);
    }
    const { token: sessionId, hash: sessionHash } = mintToken(random);
    const createdAtMs = now();
    await store.createSession({
      hash: sessionHash,
      principal,
      csrf: mintToken(random).token,
      createdAtMs,
      expiresAtMs: createdAtMs + sessionTtlMs,
    });
    await audit(
      'web',
      'sign_in',
      'ok',
      { principal, detail: { ...reviewDetail(hash), session: tokenHashPrefix(sessionHash) } },
      req,
    );
    redirect(res, '/inbox', { 'Set-Cookie': sessionCookie(sessionId, Math.floor(sessionTtlMs / 1000)) });
  };

  const sessionCookie = (value: string, maxAgeSeconds: number): string =>
    `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeSeconds}${options.secureCookies === true ? '; Secure' : ''}`;

  // ---- inbox --------------------------------------------------------------------------------

  const currentSession = async (req: IncomingMessage): Promise<SessionRecord | null> => {
    const id = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    if (id === undefined || !isTokenShape(id)) return null;
    return store.getSession(hashToken(id), now());
  };

  const headerOf = (session: SessionRecord): SignedInHeader => ({
    principal: session.principal,
    csrf: session.csrf,
  });

  const inboxList = async (req: IncomingMessage, res: ServerResponse) => {
    const session = await currentSession(req);
    if (session === null) return redirect(res, '/signin');
    const pending = await options.listPending(session.principal);
    sendHtml(res, 200, inboxPage(pending, headerOf(session)));
  };

  const visible = (request: RequestRecord, principal: string): boolean =>
    request.requester === principal ||
    request.eligible.includes(principal) ||
    request.escalationEligible.includes(principal);

  const inboxItem = async (req: IncomingMessage, res: ServerResponse, id: string, head: boolean) => {
    const session = await currentSession(req);
    if (session === null) return redirect(res, '/signin');
    const request = await options.getRequest(id);
    const shown = request !== null && visible(request, session.principal) ? request : null;
    await audit(
      'web',
      'view',
      shown === null ? 'unknown_request' : 'ok',
      { requestId: id, principal: session.principal },
      req,
    );
    if (shown === null) {
      return sendHtml(
        res,
        404,
        messagePage(
          'No such request',
          ['There is no request with this id that you may see.'],
          '',
          headerOf(session),
        ),
      );
    }
    const blocked = cannotDecideReason(shown, session.principal);
    let forms: string;
    if (blocked !== null) forms = `<p class="warn">${escapeHtml(blocked)}</p>`;
    else if (head) forms = '';
    else
      forms = inboxForms(shown, session.csrf, await newNonce(inboxBinding(session, id), session.expiresAtMs));
    sendHtml(
      res,
      200,
      page(
        `Review: ${shown.tool}`,
        `${reviewDetails(shown, session.principal)}\n${forms}`,
        headerOf(session),
      ),
    );
  };

  const inboxVote = async (req: IncomingMessage, res: ServerResponse, id: string) => {
    const session = await currentSession(req);
    const principal = session?.principal ?? null;
    const links = `<p><a href="/inbox/${escapeHtml(encodeURIComponent(id))}">Back to the request</a> · <a href="/inbox">Inbox</a></p>`;
    const refuse = async (status: number, action: string, outcome: string, html: string) => {
      await audit('web', action, outcome, { requestId: id, principal }, req);
      sendHtml(res, status, html, closeIf413(status));
    };
    if (session === null) {
      return refuse(
        403,
        'vote',
        'no_session',
        messagePage(
          'Signed out',
          ['Your session has ended. Nothing was recorded.'],
          '<p><a href="/signin">Sign in again</a></p>',
        ),
      );
    }
    const header = headerOf(session);
    const body = await readForm(req, maxBody);
    if (!body.ok) return refuse(body.status, 'vote', body.reason, badRequestPage(body.status));
    const csrf = body.fields.get('csrf');
    if (csrf === undefined || !safeEqual(csrf, session.csrf)) {
      return refuse(
        403,
        'vote',
        'bad_csrf',
        formExpiredPage('Reload the request in the inbox and decide again.', header),
      );
    }
    const nonce = NonceField.safeParse(body.fields.get('nonce'));
    if (!nonce.success || !(await store.consumeNonce(nonce.data, inboxBinding(session, id), now()))) {
      return refuse(
        403,
        'vote',
        'bad_nonce',
        formExpiredPage('Reload the request in the inbox and decide again.', header),
      );
    }
    const form = VoteForm.safeParse({
      decision: body.fields.get('decision'),
      reason: body.fields.get('reason'),
      revision: body.fields.get('revision'),
      editedArgs: body.fields.get('editedArgs'),
    });
    if (!form.success || (form.data.editedArgs !== undefined && form.data.decision !== 'approve')) {
      return refuse(400, 'vote', 'bad_form', badRequestPage(400, header));
    }
    const { decision, reason, revision, editedArgs: editedText } = form.data;
    let editedArgs: unknown;
    if (editedText !== undefined) {
      try {
        editedArgs = JSON.parse(editedText);
      } catch (err) {
        const why = err instanceof Error ? err.message : 'parse error';
        return refuse(
          422,
          'edit',
          'invalid_json',
          messagePage(
            'Not recorded',
            ['The edited arguments are not valid JSON. Nothing was submitted.', why],
            links,
            header,
          ),
        );
      }
    }
    const result = await submit({
      channel: 'web',
      principal: session.principal,
      requestId: id,
      revision,
      decision,
      ...(reason === undefined ? {} : { reason }),
      ...(editedText === undefined ? {} : { editedArgs }),
      detail: { ...clientDetail(req), session: tokenHashPrefix(session.hash) },
    });
    if (result === null) {
      await audit(
        'web',
        editedText === undefined ? 'vote' : 'edit',
        'error',
        { requestId: id, principal: session.principal, detail: { decision, revision } },
        req,
      );
      return sendHtml(res, 503, unavailablePage(header));
    }
    sendHtml(res, resultStatus(result), resultPage(result, decision, links, header));
  };

  const signOut = async (req: IncomingMessage, res: ServerResponse) => {
    const session = await currentSession(req);
    const body = await readForm(req, maxBody);
    if (session !== null) {
      const csrf = body.ok ? body.fields.get('csrf') : undefined;
      if (csrf === undefined || !safeEqual(csrf, session.csrf)) {
        await audit('web', 'sign_out', 'bad_csrf', { principal: session.principal }, req);
        return sendHtml(res, 403, formExpiredPage('Reload the page and sign out again.', headerOf(session)));
      }
      await store.deleteSession(session.hash);
      await audit('web', 'sign_out', 'ok', { principal: session.principal }, req);
    }
    redirect(res, '/signin', { 'Set-Cookie': sessionCookie('', 0) });
  };

  // ---- routing ------------------------------------------------------------------------------

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const seg = url.pathname.split('/').slice(1);
    const method = req.method ?? 'GET';
    const read = method === 'GET' || method === 'HEAD';
    const head = method === 'HEAD';
    const post = method === 'POST';
    const dispatch = (handlers: {
      readonly read?: () => Promise<void>;
      readonly post?: () => Promise<void>;
    }): Promise<void> => {
      if (read && handlers.read) return handlers.read();
      if (post && handlers.post) return crossSite(req) ? crossSiteRefusal(req, res) : handlers.post();
      const allow = [...(handlers.read ? ['GET', 'HEAD'] : []), ...(handlers.post ? ['POST'] : [])];
      sendHtml(res, 405, messagePage('Method not allowed', []), { Allow: allow.join(', ') });
      return Promise.resolve();
    };
    const [first, second, third] = seg;
    if (first === 'review' && second !== undefined && seg.length === 2) {
      return dispatch({
        read: () => reviewGet(req, res, second, head),
        post: () => reviewPost(req, res, second),
      });
    }
    if (first === 'signin' && seg.length === 1) {
      return dispatch({ read: () => signInForm(req, res), post: () => signInRequest(req, res) });
    }
    if (first === 'signin' && second !== undefined && seg.length === 2) {
      return dispatch({
        read: () => signInConfirm(req, res, second, head),
        post: () => signInConsume(req, res, second),
      });
    }
    if (first === 'inbox' && seg.length === 1) return dispatch({ read: () => inboxList(req, res) });
    if (
      first === 'inbox' &&
      second !== undefined &&
      (seg.length === 2 || (seg.length === 3 && third === 'vote'))
    ) {
      const id = decodeSegment(second);
      if (id !== null && id !== '') {
        return seg.length === 2
          ? dispatch({ read: () => inboxItem(req, res, id, head) })
          : dispatch({ post: () => inboxVote(req, res, id) });
      }
    }
    if (first === 'signout' && seg.length === 1) return dispatch({ post: () => signOut(req, res) });
    sendHtml(res, 404, messagePage('Not found', []));
  };

  const crossSite = (req: IncomingMessage): boolean => {
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') return true;
    const from = req.headers.origin;
    return from !== undefined && from !== 'null' && from !== origin;
  };

  const crossSiteRefusal = async (req: IncomingMessage, res: ServerResponse) => {
    await audit(
      'web',
      'post',
      'cross_site',
      { detail: { path: (req.url ?? '').split('?')[0]?.slice(0, 40) ?? '' } },
      req,
    );
    sendHtml(
      res,
      403,
      messagePage('Refused', ['Forms of this site can only be sent from this site. Nothing was changed.']),
    );
  };

  const app = ((req: IncomingMessage, res: ServerResponse): void => {
    route(req, res).catch((err: unknown) => {
      options.onError?.(err);
      if (!res.headersSent)
        sendHtml(res, 500, messagePage('Something went wrong', ['Nothing was changed. Try again later.']));
      else res.destroy();
    });
  }) as WebApp;
  app.createSignInLink = async (principal) =>
    (await mintSignInLink({ store, publicBaseUrl: base, now, randomBytes: random }, principal)).url;
  app.owns = ownsPath;
  return app;
}

function reviewDetail(hash: string): Record<string, unknown> {
  return { tokenHashPrefix: tokenHashPrefix(hash) };
}

function inboxBinding(session: SessionRecord, requestId: string): string {
  return `${session.hash}:${hashToken(requestId)}`;
}

function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

function closeIf413(status: number): Record<string, string> {
  return status === 413 ? { Connection: 'close' } : {};
}

function resultStatus(result: SubmitResult): number {
  if (result.ok) return 200;
  switch (result.code) {
    case 'self_approval':
    case 'agent':
    case 'not_authorized':
    case 'high_risk_channel':
      return 403;
    case 'invalid_edit':
    case 'edit_raised_tier':
    case 'edit_prohibited':
      return 422;
    case 'delivery_failed':
      return 503;
    default:
      return 409;
  }
}

function formExpiredPage(next: string, header?: SignedInHeader): string {
  return messagePage('This form has expired', ['Nothing was recorded.', next], '', header);
}

function badRequestPage(status: number, header?: SignedInHeader): string {
  const why =
    status === 413
      ? 'The form was too large.'
      : status === 415
        ? 'The form was not sent as a web form.'
        : 'The form was incomplete: choose Approve or Deny.';
  return messagePage('Not recorded', [why, 'Nothing was recorded.'], '', header);
}

function unavailablePage(header?: SignedInHeader): string {
  return messagePage(
    'Not recorded',
    [
      'Your decision could not be recorded right now. Nothing was decided; please try again from the web inbox.',
    ],
    '<p><a href="/signin">Web inbox</a></p>',
    header,
  );
}
