/**
 * Single-use link tokens shared by the email channel and the web inbox: 256-bit random, sent once,
 * stored only as a sha256 hex hash.
 * @module
 */
import { createHash } from 'node:crypto';
import type { ApprovalStore } from '../core/types.ts';
import { TokenPurpose } from '../core/types.ts';

/** Injected randomness (`crypto.randomBytes` in production). */
export type RandomBytes = (size: number) => Uint8Array;

/** How long a sign-in (magic) link stays valid. */
export const SIGN_IN_TTL_MS = 15 * 60_000;

/** A token is base64url of 32 bytes: 43 characters. Anything else is unknown without a lookup. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** A fresh token and the hash to store. */
export interface MintedToken {
  /** The secret sent to the human (in a link or a cookie); never stored. */
  readonly token: string;
  /** sha256 hex of `token`: the only form the store keeps. */
  readonly hash: string;
}

/** Mints `base64url(32 random bytes)` and its hash. */
export function mintToken(randomBytes: RandomBytes): MintedToken {
  const bytes = randomBytes(32);
  if (bytes.length !== 32) throw new RangeError('randomBytes(32) returned a wrong length');
  const token = Buffer.from(bytes).toString('base64url');
  return { token, hash: hashToken(token) };
}

/** sha256 hex of a token (or of a session id, a nonce). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Whether `value` has the shape of a minted token (cheap pre-check before a store lookup). */
export function isTokenShape(value: string): boolean {
  return TOKEN_SHAPE.test(value);
}

/** The first 12 hex characters of a token hash, for audit records. */
export function tokenHashPrefix(hash: string): string {
  return hash.slice(0, 12);
}

/** `publicBaseUrl` without trailing slashes. */
export function baseUrl(publicBaseUrl: string): string {
  return publicBaseUrl.replace(/\/+$/, '');
}

/** What {@link mintSignInLink} needs. */
export interface SignInLinkDeps {
  readonly store: Pick<ApprovalStore, 'createToken'>;
  readonly publicBaseUrl: string;
  readonly now: () => number;
  readonly randomBytes: RandomBytes;
  /** Defaults to {@link SIGN_IN_TTL_MS}. */
  readonly ttlMs?: number;
}

/**
 * Mints and stores a sign-in token for `principal` and returns the one-time link
 * `<publicBaseUrl>/signin/<token>` (the GET renders a confirm page; only its POST signs in).
 */
export async function mintSignInLink(
  deps: SignInLinkDeps,
  principal: string,
): Promise<{ readonly url: string; readonly hash: string; readonly expiresAtMs: number }> {
  const { token, hash } = mintToken(deps.randomBytes);
  const createdAtMs = deps.now();
  const expiresAtMs = createdAtMs + (deps.ttlMs ?? SIGN_IN_TTL_MS);
  await deps.store.createToken({
    hash,
    purpose: TokenPurpose.signIn,
    principal,
    requestId: null,
    revision: null,
    createdAtMs,
    expiresAtMs,
  });
  return { url: `${baseUrl(deps.publicBaseUrl)}/signin/${token}`, hash, expiresAtMs };
}
