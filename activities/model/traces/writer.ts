/**
 * The trace writer: `write` only enqueues, so recording a trace never waits for a database on the
 * model call's critical path. A background drain (started on the next turn of the event loop)
 * redacts, validates and appends traces in batches; a failing store, an invalid trace or an
 * overflowing queue is reported through `onError`, never thrown into the caller. The queue is
 * bounded: beyond `maxQueue` the oldest traces are dropped and counted.
 *
 * SQLite statements are synchronous, so with the SQLite store a batch still runs on the caller's
 * thread, only later; keep `batchSize` modest where event-loop latency matters.
 * @module
 */
import { AgentRuntimeError } from '../../../policy/errors.ts';
import { TraceErrorCode, TraceStoreError, messageOf } from './errors.ts';
import { validateTrace } from './record.ts';
import { createRedactor } from './redact.ts';
import type { Redactor } from './redact.ts';
import type { TraceStore } from './store.ts';
import type { ModelTrace } from './types.ts';

/** Traces held before the oldest are dropped, unless configured otherwise. */
export const DEFAULT_MAX_QUEUE = 10_000;
/** Traces appended per store call, unless configured otherwise. */
export const DEFAULT_BATCH_SIZE = 100;

/** Options of {@link createTraceWriter}. */
export interface TraceWriterOptions {
  /**
   * Told about every loss: a store failure (`lost` = the batch size), an invalid trace (1), the
   * first overflow since the queue last drained (1), a write after close (1). Must not throw
   * (what it throws is ignored).
   */
  readonly onError: (error: AgentRuntimeError, lost: number) => void;
  /** Applied to every trace before it is stored; default `createRedactor()`; null: already redacted. */
  readonly redactor?: Redactor | null;
  /** @default DEFAULT_MAX_QUEUE */
  readonly maxQueue?: number;
  /** @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
  /** Runs the background drain later; default `setImmediate`. */
  readonly schedule?: (run: () => void) => void;
}

/** What a writer has done so far. */
export interface TraceWriterStats {
  /** Queued or being appended. */
  readonly pending: number;
  /** Stored as new traces. */
  readonly written: number;
  /** Appended but already stored (same id). */
  readonly duplicates: number;
  /** Dropped unwritten: queue overflow, or written after close. */
  readonly dropped: number;
  /** Lost to a store failure or refused as invalid. */
  readonly failed: number;
}

/** A background trace writer. */
export interface TraceWriter {
  /** Enqueues `trace` and returns at once; never throws. */
  write(trace: ModelTrace): void;
  /** Resolves when every trace written so far has been appended (or reported lost). */
  flush(): Promise<void>;
  /** Stops accepting traces and drains the queue. Does not close the store. Idempotent. */
  close(): Promise<void>;
  readonly stats: TraceWriterStats;
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`createTraceWriter: ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

function asRuntimeError(error: unknown): AgentRuntimeError {
  if (error instanceof AgentRuntimeError) return error;
  return new TraceStoreError(TraceErrorCode.queryFailed, `trace writer: ${messageOf(error)}`, {
    cause: error,
  });
}

/** Creates a writer appending to `store` in the background (see the module comment). */
export function createTraceWriter(store: TraceStore, options: TraceWriterOptions): TraceWriter {
  const maxQueue = positiveInt(options.maxQueue, DEFAULT_MAX_QUEUE, 'maxQueue');
  const batchSize = positiveInt(options.batchSize, DEFAULT_BATCH_SIZE, 'batchSize');
  const redactor = options.redactor === undefined ? createRedactor() : options.redactor;
  const schedule = options.schedule ?? ((run: () => void) => void setImmediate(run));

  const queue: ModelTrace[] = [];
  let inFlight = 0;
  let written = 0;
  let duplicates = 0;
  let dropped = 0;
  let failed = 0;
  let overflowing = false;
  let closed = false;
  let scheduled = false;
  let active: Promise<void> | null = null;

  const report = (error: unknown, lost: number): void => {
    try {
      options.onError(asRuntimeError(error), lost);
    } catch {
      // a broken error handler must not stop the writer
    }
  };

  const prepare = (trace: ModelTrace): ModelTrace | null => {
    try {
      const redacted = redactor === null ? trace : redactor.redactTrace(trace).trace;
      validateTrace(redacted);
      return redacted;
    } catch (error) {
      failed++;
      report(
        error instanceof AgentRuntimeError
          ? error
          : new TraceStoreError(TraceErrorCode.invalidTrace, `invalid trace: ${messageOf(error)}`, {
              cause: error,
            }),
        1,
      );
      return null;
    }
  };

  const drain = async (): Promise<void> => {
    while (queue.length > 0) {
      const ready = queue.splice(0, batchSize).flatMap((t) => prepare(t) ?? []);
      if (ready.length === 0) continue;
      inFlight = ready.length;
      try {
        const added = await store.appendMany(ready);
        written += added;
        duplicates += ready.length - added;
      } catch (error) {
        failed += ready.length;
        report(error, ready.length);
      } finally {
        inFlight = 0;
      }
    }
    overflowing = false;
  };

  const start = (): Promise<void> => {
    active ??= drain().finally(() => {
      active = null;
      if (queue.length > 0) kick();
    });
    return active;
  };

  const kick = (): void => {
    if (active !== null || scheduled) return;
    scheduled = true;
    schedule(() => {
      scheduled = false;
      void start();
    });
  };

  const flush = async (): Promise<void> => {
    while (queue.length > 0 || active !== null) await (active ?? start());
  };

  return {
    write(trace) {
      if (closed) {
        dropped++;
        report(new TraceStoreError(TraceErrorCode.writerClosed, 'trace writer: written after close'), 1);
        return;
      }
      queue.push(trace);
      if (queue.length > maxQueue) {
        queue.shift();
        dropped++;
        if (!overflowing) {
          overflowing = true;
          report(
            new TraceStoreError(
              TraceErrorCode.queueOverflow,
              `trace writer: more than ${maxQueue} traces queued; dropping the oldest`,
            ),
            1,
          );
        }
      }
      kick();
    },
    flush,
    async close() {
      closed = true;
      await flush();
    },
    get stats(): TraceWriterStats {
      return { pending: queue.length + inFlight, written, duplicates, dropped, failed };
    },
  };
}
