/**
 * The email approval channel: SMTP transport, approval mails with one review link, sign-in links.
 * @module
 */
export {
  createMailTransport,
  EmailChannel,
  EmailChannelError,
  EmailConfigSchema,
  EmailErrorCode,
  parseEmailConfig,
} from './mailer.ts';
export type {
  EmailChannelOptions,
  EmailConfig,
  EmailStore,
  MailSender,
  OutgoingMail,
  SentMail,
} from './mailer.ts';
export {
  defang,
  MAIL_ARGS_MAX_CHARS,
  renderApprovalMail,
  renderNoticeMail,
  renderSignInMail,
} from './templates.ts';
export type { MailContent } from './templates.ts';
export {
  hashToken,
  isTokenShape,
  mintSignInLink,
  mintToken,
  SIGN_IN_TTL_MS,
  tokenHashPrefix,
} from './tokens.ts';
export type { MintedToken, RandomBytes, SignInLinkDeps } from './tokens.ts';
