/**
 * The email channel: one personal "Review request" link per approver per notice, sent over SMTP
 * with nodemailer. The link's token is stored only as a hash, expires with the request and is
 * used once by the review page's POST (see `../web/`). Email alone never approves a high-risk
 * request (the web page offers only Deny for those).
 * @module
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import nodemailer from 'nodemailer';
import { z } from 'zod';
import { AgentRuntimeError } from '../../policy/errors.ts';
import type { ApprovalStore, ChannelNotice, NotifyChannel, RequestRecord } from '../core/types.ts';
import { ChannelName, TokenPurpose } from '../core/types.ts';
import { truncate } from './format.ts';
import type { MailContent } from './templates.ts';
import { isLinkKind, renderApprovalMail, renderNoticeMail, renderSignInMail } from './templates.ts';
import type { RandomBytes } from './tokens.ts';
import { baseUrl, mintSignInLink, mintToken, tokenHashPrefix } from './tokens.ts';

/** Stable error codes of the email channel. */
export const EmailErrorCode = {
  configInvalid: 'EMAIL_CONFIG_INVALID',
  /** Every delivery of a notice failed (the channel is unreachable). */
  unreachable: 'EMAIL_UNREACHABLE',
  sendFailed: 'EMAIL_SEND_FAILED',
} as const;
export type EmailErrorCode = (typeof EmailErrorCode)[keyof typeof EmailErrorCode];

/** An email configuration or delivery problem; match on `code`. */
export class EmailChannelError extends AgentRuntimeError {}

const headerSafe = z
  .string()
  .trim()
  .min(1)
  .refine((s) => !/[\r\n]/.test(s), 'must be one line');

/** The email section of the service configuration. */
export const EmailConfigSchema = z.strictObject({
  /** `From:` of every mail, e.g. `Approvals <approvals@example.com>` (SPF/DKIM-aligned domain). */
  from: headerSafe,
  smtp: z.strictObject({
    host: headerSafe,
    port: z.number().int().min(1).max(65535),
    /** TLS from the start (port 465); otherwise STARTTLS when offered. */
    secure: z.boolean().optional(),
    auth: z.strictObject({ user: z.string().min(1), pass: z.string() }).optional(),
    /** Do not upgrade with STARTTLS (local test servers only). */
    ignoreTLS: z.boolean().optional(),
  }),
  /** DKIM signing at transport level (nodemailer `dkim`). */
  dkim: z
    .strictObject({
      domainName: headerSafe,
      keySelector: headerSafe,
      privateKey: z.string().min(1),
    })
    .optional(),
});
/** A validated email configuration. */
export type EmailConfig = z.output<typeof EmailConfigSchema>;

/** Validates an email configuration; throws {@link EmailChannelError} `EMAIL_CONFIG_INVALID`. */
export function parseEmailConfig(input: unknown): EmailConfig {
  const parsed = EmailConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new EmailChannelError(EmailErrorCode.configInvalid, `invalid email config: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/** One outgoing mail. */
export interface OutgoingMail {
  readonly from: string;
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** What the channel needs of a transport (a nodemailer `Transporter` fits). */
export interface MailSender {
  sendMail(mail: OutgoingMail): Promise<{ readonly messageId?: string }>;
  close?(): void;
}

/** A nodemailer SMTP transport from a validated (or raw, then validated) config. */
export function createMailTransport(config: unknown): MailSender {
  const cfg = parseEmailConfig(config);
  return nodemailer.createTransport({
    host: cfg.smtp.host,
    port: cfg.smtp.port,
    secure: cfg.smtp.secure ?? cfg.smtp.port === 465,
    ...(cfg.smtp.auth === undefined ? {} : { auth: { user: cfg.smtp.auth.user, pass: cfg.smtp.auth.pass } }),
    ...(cfg.smtp.ignoreTLS === undefined ? {} : { ignoreTLS: cfg.smtp.ignoreTLS }),
    ...(cfg.dkim === undefined
      ? {}
      : {
          dkim: {
            domainName: cfg.dkim.domainName,
            keySelector: cfg.dkim.keySelector,
            privateKey: cfg.dkim.privateKey,
          },
        }),
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  });
}

/** The store methods the email channel uses. */
export type EmailStore = Pick<ApprovalStore, 'createToken' | 'recordDelivery' | 'recordAttempt'>;

/** A mail handed to the transport (for logs; carries no token). */
export interface SentMail {
  readonly kind: ChannelNotice['kind'] | 'sign-in';
  readonly requestId: string | null;
  readonly principal: string;
  readonly address: string;
  readonly messageId: string | null;
}

/** Options of {@link EmailChannel}: either `config` (an SMTP transport is built) or `transport` + `from`. */
export type EmailChannelOptions = {
  readonly store: EmailStore;
  /** Base of the review and sign-in links, e.g. `https://approvals.example.com`. */
  readonly publicBaseUrl: string;
  /** Defaults to `Date.now`. */
  readonly now?: () => number;
  /** Defaults to `crypto.randomBytes`. */
  readonly randomBytes?: RandomBytes;
  /** Called after each mail the transport accepted. */
  readonly onSent?: (sent: SentMail) => void;
  /** Send link-free "decided"/"changed" notices for `outcome`/`revised` (default true). */
  readonly sendNotices?: boolean;
} & (
  | { readonly config: unknown; readonly transport?: MailSender }
  | { readonly transport: MailSender; readonly from: string }
);

/**
 * Sends approval mails. `notify` with `request`/`reminder`/`escalation` mints one review token per
 * recipient (stored hashed, `email-review`, expiring with the request) and sends one mail with one
 * link; `outcome`/`revised` mint nothing (the service invalidates the earlier tokens) and send a
 * short notice without links. Each mail is recorded as a delivery (`sent`/`failed`); `notify`
 * throws `EMAIL_UNREACHABLE` only when every mail of the notice failed.
 */
export class EmailChannel implements NotifyChannel {
  readonly name = ChannelName.email;
  readonly recordsOwnDeliveries = true;
  readonly #store: EmailStore;
  readonly #transport: MailSender;
  readonly #from: string;
  readonly #base: string;
  readonly #now: () => number;
  readonly #randomBytes: RandomBytes;
  readonly #onSent: ((sent: SentMail) => void) | undefined;
  readonly #sendNotices: boolean;

  constructor(options: EmailChannelOptions) {
    this.#store = options.store;
    this.#base = baseUrl(options.publicBaseUrl);
    this.#now = options.now ?? Date.now;
    this.#randomBytes = options.randomBytes ?? nodeRandomBytes;
    this.#onSent = options.onSent;
    this.#sendNotices = options.sendNotices ?? true;
    if ('config' in options) {
      const cfg = parseEmailConfig(options.config);
      this.#from = cfg.from;
      this.#transport = options.transport ?? createMailTransport(cfg);
    } else {
      this.#from = headerSafe.parse(options.from);
      this.#transport = options.transport;
    }
  }

  /** Delivers one notice to every recipient that has an email address. */
  async notify(notice: ChannelNotice): Promise<void> {
    const { kind, request } = notice;
    if (!isLinkKind(kind) && !this.#sendNotices) return;
    let attempted = 0;
    let failed = 0;
    let lastError = '';
    for (const contact of notice.recipients) {
      if (contact.email === null || contact.email.trim() === '') {
        await this.#store.recordAttempt({
          requestId: request.id,
          channel: ChannelName.email,
          action: 'deliver',
          principal: contact.id,
          outcome: 'no_address',
          detail: { kind },
          atMs: this.#now(),
        });
        continue;
      }
      attempted += 1;
      const address = contact.email.trim();
      try {
        const content = isLinkKind(kind)
          ? await this.#reviewMail(kind, request, contact.id)
          : renderNoticeMail(kind, request);
        const info = await this.#send(address, content, request.id);
        await this.#delivered(request.id, kind, contact.id, address, 'sent', null);
        this.#onSent?.({ kind, requestId: request.id, principal: contact.id, address, messageId: info });
      } catch (err) {
        failed += 1;
        lastError = errorText(err);
        await this.#delivered(request.id, kind, contact.id, address, 'failed', lastError);
      }
    }
    if (attempted > 0 && failed === attempted) {
      throw new EmailChannelError(
        EmailErrorCode.unreachable,
        `every ${kind} mail for ${request.id} failed (${failed}): ${lastError}`,
      );
    }
  }

  /**
   * Mails a one-time sign-in link for the web inbox (`sign-in` token, 15 minutes). Audited as a
   * `deliver` attempt; throws `EMAIL_SEND_FAILED` when the transport refuses.
   */
  async sendSignInLink(principal: string, email: string): Promise<void> {
    const link = await mintSignInLink(
      { store: this.#store, publicBaseUrl: this.#base, now: this.#now, randomBytes: this.#randomBytes },
      principal,
    );
    const attempt = (outcome: string, extra: Record<string, unknown>) =>
      this.#store.recordAttempt({
        requestId: null,
        channel: ChannelName.web,
        action: 'deliver',
        principal,
        outcome,
        detail: { kind: 'sign-in', tokenHashPrefix: tokenHashPrefix(link.hash), ...extra },
        atMs: this.#now(),
      });
    try {
      const messageId = await this.#send(
        email,
        renderSignInMail(principal, link.url, link.expiresAtMs),
        null,
      );
      await attempt('sent', {});
      this.#onSent?.({ kind: 'sign-in', requestId: null, principal, address: email, messageId });
    } catch (err) {
      await attempt('failed', { error: errorText(err) });
      throw new EmailChannelError(EmailErrorCode.sendFailed, `sign-in mail failed: ${errorText(err)}`, {
        cause: err,
      });
    }
  }

  /** Closes the transport's connections (SMTP pool). */
  close(): void {
    this.#transport.close?.();
  }

  async #reviewMail(
    kind: 'request' | 'reminder' | 'escalation',
    request: RequestRecord,
    principal: string,
  ): Promise<MailContent> {
    const { token, hash } = mintToken(this.#randomBytes);
    await this.#store.createToken({
      hash,
      purpose: TokenPurpose.emailReview,
      principal,
      requestId: request.id,
      revision: request.revision,
      createdAtMs: this.#now(),
      expiresAtMs: request.expiresAtMs,
    });
    return renderApprovalMail(kind, request, principal, `${this.#base}/review/${token}`);
  }

  async #send(to: string, content: MailContent, requestId: string | null): Promise<string | null> {
    const info = await this.#transport.sendMail({
      from: this.#from,
      to,
      subject: content.subject,
      text: content.text,
      html: content.html,
      headers: {
        ...(requestId === null ? {} : { 'X-Agent-Runtime-Approval': requestId }),
        'Auto-Submitted': 'auto-generated',
      },
    });
    return info.messageId ?? null;
  }

  #delivered(
    requestId: string,
    kind: string,
    principal: string,
    address: string,
    status: 'sent' | 'failed',
    error: string | null,
  ): Promise<void> {
    return this.#store.recordDelivery({
      requestId,
      channel: ChannelName.email,
      kind,
      principal,
      address,
      status,
      error,
      atMs: this.#now(),
    });
  }
}

function errorText(err: unknown): string {
  return truncate(err instanceof Error ? err.message : String(err), 300);
}
