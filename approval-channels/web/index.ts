/**
 * The web side of approvals: the email review page, magic-link sign-in and the web inbox, as one
 * `node:http` request handler.
 * @module
 */
export {
  createWebApp,
  NEUTRAL_STATUS,
  NONCE_TTL_MS,
  ownsPath,
  SESSION_COOKIE,
  SESSION_TTL_MS,
} from './app.ts';
export type { WebApp, WebAppOptions, WebDirectory, WebStore } from './app.ts';
export { CONTENT_SECURITY_POLICY } from './html.ts';
export { MAX_BODY_BYTES, SECURITY_HEADERS } from './http.ts';
