/**
 * The front both stores sit behind: driver errors become {@link ApprovalStoreError}s with a stable
 * code, a closed store refuses every call, and lookups by a key no store can hold (NUL, lone
 * surrogate: e.g. a request id from a URL) answer "not found" the same way in both stores
 * instead of reaching the driver.
 * @module
 */
import { AgentRuntimeError } from '../../policy/index.ts';
import type { ApprovalStore, TokenLookup } from '../core/types.ts';
import { ApprovalStoreError, ApprovalStoreErrorCode, messageOf } from './errors.ts';
import { usableText } from './rows.ts';

type Method = (...args: unknown[]) => unknown;

const unknownToken: TokenLookup = Object.freeze({ ok: false, code: 'unknown' });

function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

/** Per method: the key arguments looked up, and the answer when one of them cannot match anything. */
const NOT_FOUND: {
  readonly [K in keyof ApprovalStore]?: readonly [(args: unknown[]) => unknown[], unknown];
} = {
  getRequest: [(a) => [a[0]], null],
  listPending: [(a) => [a[0]], []],
  updateRequest: [(a) => [a[0]], null],
  recordVote: [(a) => [field(a[0], 'requestId')], 'unknown_request'],
  listVotes: [(a) => [a[0]], []],
  releaseVote: [(a) => [a[0], a[1]], undefined],
  peekToken: [(a) => [a[0]], unknownToken],
  consumeToken: [(a) => [a[0]], unknownToken],
  invalidateTokens: [(a) => [a[0]], 0],
  consumeNonce: [(a) => [a[0], a[1]], false],
  getSession: [(a) => [a[0]], null],
  deleteSession: [(a) => [a[0]], undefined],
  listAttempts: [(a) => [field(a[0], 'requestId'), field(a[0], 'channel')], []],
  listDeliveries: [(a) => [a[0]], []],
};

/**
 * Wraps every method of `store` (see the module comment). `release` runs once, on the first
 * `close()`; later calls of `close()` resolve when it is done.
 */
export function guardStore(
  label: string,
  store: Omit<ApprovalStore, 'close'>,
  release: () => Promise<void> | void,
): ApprovalStore {
  let closing: Promise<void> | null = null;
  const guarded: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(store) as [keyof ApprovalStore, Method][]) {
    const notFound = NOT_FOUND[name];
    guarded[name] = async (...args: unknown[]): Promise<unknown> => {
      if (closing !== null) {
        throw new ApprovalStoreError(ApprovalStoreErrorCode.closed, `${label}: the store is closed`);
      }
      if (notFound !== undefined) {
        const [keys, answer] = notFound;
        if (keys(args).some((k) => typeof k === 'string' && !usableText(k))) {
          return Array.isArray(answer) ? [] : answer;
        }
      }
      try {
        return await method(...args);
      } catch (error) {
        if (error instanceof AgentRuntimeError) throw error;
        throw new ApprovalStoreError(
          ApprovalStoreErrorCode.queryFailed,
          `${label}: ${name} failed: ${messageOf(error)}`,
          { cause: error },
        );
      }
    };
  }
  guarded['close'] = (): Promise<void> => {
    closing ??= Promise.resolve().then(release);
    return closing;
  };
  return Object.freeze(guarded) as unknown as ApprovalStore;
}
