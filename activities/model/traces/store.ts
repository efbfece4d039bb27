/**
 * The trace store contract both stores implement (pinned by `cases.ts`), and the front they sit
 * behind: driver errors become `TRACE_STORE_QUERY_FAILED`, a closed store refuses every call.
 * @module
 */
import { AgentRuntimeError } from '../../../policy/errors.ts';
import { TraceErrorCode, TraceStoreError, messageOf } from './errors.ts';
import type { TraceQuery } from './query.ts';
import type { ModelTrace } from './types.ts';

/** One search result. */
export interface TraceSearchHit {
  readonly trace: ModelTrace;
  /**
   * A short excerpt of the searchable text with matched words between `«` and `»`
   * (see `HIGHLIGHT`); null when the search had no text.
   */
  readonly snippet: string | null;
}

/** Where model traces are kept and searched. Every method rejects with a {@link TraceStoreError}. */
export interface TraceStore {
  /**
   * Stores one trace (validated; redact it first). Idempotent by id: a second append of the same
   * id keeps the first record and resolves false.
   */
  append(trace: ModelTrace): Promise<boolean>;
  /** Stores several traces in one transaction (all or none); resolves how many were new. */
  appendMany(traces: readonly ModelTrace[]): Promise<number>;
  /** Traces matching every filter, newest first (`ts`, then `id`, descending). */
  search(query: TraceQuery): Promise<readonly TraceSearchHit[]>;
  /** A run's traces in model-turn order (`step`, then `ts`, then `id`). */
  byRun(runId: string): Promise<readonly ModelTrace[]>;
  /** Releases the database; later calls reject with `TRACE_STORE_CLOSED`. Idempotent. */
  close(): Promise<void>;
}

type Methods = Omit<TraceStore, 'close'>;

/** Wraps `methods` (see the module comment); `release` runs once, on the first `close()`. */
export function guardTraceStore(
  label: string,
  methods: Methods,
  release: () => Promise<void> | void,
): TraceStore {
  let closing: Promise<void> | null = null;
  const guard =
    <A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      if (closing !== null) throw new TraceStoreError(TraceErrorCode.closed, `${label}: the store is closed`);
      try {
        return await fn(...args);
      } catch (error) {
        if (error instanceof AgentRuntimeError) throw error;
        throw new TraceStoreError(
          TraceErrorCode.queryFailed,
          `${label}: ${name} failed: ${messageOf(error)}`,
          {
            cause: error,
          },
        );
      }
    };
  return Object.freeze({
    append: guard('append', methods.append),
    appendMany: guard('appendMany', methods.appendMany),
    search: guard('search', methods.search),
    byRun: guard('byRun', methods.byRun),
    close: (): Promise<void> => {
      closing ??= Promise.resolve().then(release);
      return closing;
    },
  });
}
