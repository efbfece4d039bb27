/**
 * The append-only {@link AuditStore} contract and the front both database backends sit behind:
 * input validation, hashing, in-process subscriptions, automatic checkpoints, a closed guard and
 * driver errors turned into {@link AuditStoreError}s. The backends only lock, insert and select.
 * @module
 */
import { z } from 'zod';
import { prepareEvent, timestamp } from '../activities/audit/event.ts';
import type { AuditEventInput, AuditKind } from '../activities/audit/types.ts';
import { AgentRuntimeError } from '../policy/errors.ts';
import { chainRecords, signCheckpoint } from './chain.ts';
import type { AuditRecord, ChainHead, Checkpoint, CheckpointSigner } from './chain.ts';
import { AuditStoreError, AuditStoreErrorCode, messageOf } from './errors.ts';

/** What a writer supplies; the store assigns `seq`, `ts`, `prevHash` and `hash`. */
export type AuditAppendInput = Omit<AuditEventInput, 'id'>;

/** A page of one stream, in seq order. */
export interface AuditReadQuery {
  readonly stream: string;
  /** First seq returned; default 1. */
  readonly fromSeq?: number;
  /** At most this many records; default all. */
  readonly limit?: number;
}

/** A search across streams; every given filter must match. Results in (ts, stream, seq) order. */
export interface AuditSearchQuery {
  readonly stream?: string;
  readonly kind?: AuditKind;
  readonly agent?: string;
  readonly run?: string;
  /** ISO-8601 UTC: records with `ts` at or after it. */
  readonly since?: string;
  /** Case-insensitive substring of the record's canonical attrs JSON. */
  readonly text?: string;
  /** Default {@link DEFAULT_SEARCH_LIMIT}. */
  readonly limit?: number;
}

/** Called once per record, in seq order; the next call waits for a returned promise. */
export type AuditRecordListener = (record: AuditRecord) => void | Promise<void>;

/** The tamper-evident audit store. Append only: there is no update and no delete. */
export interface AuditStore {
  /** Appends one event to `stream`, chained onto its head atomically. */
  append(stream: string, input: AuditAppendInput): Promise<AuditRecord>;
  /** Appends events to `stream` in one transaction, consecutive seqs, one `ts`. */
  appendMany(stream: string, inputs: readonly AuditAppendInput[]): Promise<AuditRecord[]>;
  /** Records of one stream in seq order. */
  read(query: AuditReadQuery): Promise<AuditRecord[]>;
  /** Records matching every given filter. */
  search(query: AuditSearchQuery): Promise<AuditRecord[]>;
  /** Signs and stores a checkpoint of the stream's head; throws `AUDIT_STORE_EMPTY_STREAM`. */
  checkpoint(stream: string, signer: CheckpointSigner): Promise<Checkpoint>;
  /** The stream's checkpoints in seq order. */
  checkpoints(stream: string): Promise<Checkpoint[]>;
  /**
   * Delivers the stream's records from `fromSeq` on: the stored backlog, then each record
   * appended through this store after it commits. Returns the unsubscribe function.
   */
  subscribe(stream: string, fromSeq: number, onRecord: AuditRecordListener): () => void;
  /** Stops subscriptions and timers and releases the database. */
  close(): Promise<void>;
}

/** Normalised search filters handed to a backend. */
export interface SearchFilter {
  readonly stream: string | undefined;
  readonly kind: string | undefined;
  readonly agent: string | undefined;
  readonly run: string | undefined;
  readonly since: string | undefined;
  readonly text: string | undefined;
  readonly limit: number;
}

/** What a database backend provides. */
export interface AuditBackend {
  /**
   * Locks the stream's head (creating it at seq 0), calls `build` with it, inserts the records
   * it returns and moves the head to the last one, all in one transaction.
   */
  append(stream: string, build: (head: ChainHead) => AuditRecord[]): Promise<AuditRecord[]>;
  head(stream: string): Promise<ChainHead>;
  read(stream: string, fromSeq: number, limit: number | null): Promise<AuditRecord[]>;
  search(filter: SearchFilter): Promise<AuditRecord[]>;
  /** Stores the checkpoint; when one for the same stream, seq and key exists, returns that one. */
  putCheckpoint(checkpoint: Checkpoint): Promise<Checkpoint>;
  listCheckpoints(stream: string): Promise<Checkpoint[]>;
  close(): Promise<void> | void;
}

/** Automatic checkpoints: after every N appends and/or once T seconds have passed. */
export interface AutoCheckpointOptions {
  readonly signer: CheckpointSigner;
  /** Checkpoint once this many records were appended to a stream since its last one. */
  readonly everyAppends?: number;
  /** Checkpoint a stream with new records once this many seconds (by the clock) have passed. */
  readonly everySeconds?: number;
}

/** Options shared by both stores. */
export interface AuditStoreOptions {
  /** Source of `ts` and of checkpoint timing; default the system clock. */
  readonly clock?: () => Date;
  readonly autoCheckpoint?: AutoCheckpointOptions;
  /** Failures of automatic checkpoints and of subscribers (which are then unsubscribed). */
  readonly onError?: (error: unknown) => void;
}

/** Stream names accepted. */
export const STREAM_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** Default and largest `limit` of a search. */
export const DEFAULT_SEARCH_LIMIT = 1_000;
export const MAX_SEARCH_LIMIT = 10_000;
/** Largest batch of `appendMany`. */
export const MAX_APPEND_BATCH = 10_000;

const SUBSCRIBE_PAGE = 500;
const usable = z
  .string()
  .max(512)
  .refine((s) => s.isWellFormed() && !s.includes('\0'), 'contains NUL or a lone surrogate');
const positive = z.int().min(1);
const ReadSchema = z.strictObject({
  stream: z.string().regex(STREAM_PATTERN),
  fromSeq: positive.optional(),
  limit: positive.optional(),
});
const SearchSchema = z.strictObject({
  stream: z.string().regex(STREAM_PATTERN).optional(),
  kind: usable.optional(),
  agent: usable.optional(),
  run: usable.optional(),
  since: z.iso.datetime().optional(),
  text: usable.min(1).optional(),
  limit: positive.max(MAX_SEARCH_LIMIT).optional(),
});
const AutoSchema = z.object({
  signer: z.object({ keyId: z.string().min(1), sign: z.function() }),
  everyAppends: positive.optional(),
  everySeconds: z.number().positive().max(86_400).optional(),
});

function invalid(message: string): AuditStoreError {
  return new AuditStoreError(AuditStoreErrorCode.invalidInput, `audit store: ${message}`);
}

function issues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

function checkStream(stream: unknown): string {
  if (typeof stream !== 'string' || !STREAM_PATTERN.test(stream)) {
    throw invalid(`invalid stream name ${JSON.stringify(String(stream)).slice(0, 80)}`);
  }
  return stream;
}

interface Subscription {
  readonly stream: string;
  readonly onRecord: AuditRecordListener;
  nextSeq: number;
  pumping: boolean;
  again: boolean;
  closed: boolean;
}

interface StreamState {
  appendsSince: number;
  lastCheckpointMs: number;
}

/** Wraps a backend into an {@link AuditStore}; `label` prefixes error messages. */
export function createAuditStore(
  label: string,
  backend: AuditBackend,
  options: AuditStoreOptions = {},
): AuditStore {
  const clock = options.clock ?? (() => new Date());
  if (typeof clock !== 'function') throw configError(label, 'clock must be a function');
  const auto = options.autoCheckpoint;
  if (auto !== undefined) {
    const parsed = AutoSchema.safeParse(auto);
    if (!parsed.success) throw configError(label, `autoCheckpoint: ${issues(parsed.error)}`);
    if (auto.everyAppends === undefined && auto.everySeconds === undefined) {
      throw configError(label, 'autoCheckpoint needs everyAppends or everySeconds');
    }
  }
  const onError = options.onError ?? (() => {});
  const subscriptions = new Set<Subscription>();
  const streams = new Map<string, StreamState>();
  let closing: Promise<void> | null = null;

  const guard = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    if (closing !== null) {
      throw new AuditStoreError(AuditStoreErrorCode.closed, `${label}: the store is closed`);
    }
    try {
      return await fn();
    } catch (error) {
      if (error instanceof AgentRuntimeError) throw error;
      throw new AuditStoreError(
        AuditStoreErrorCode.queryFailed,
        `${label}: ${name} failed: ${messageOf(error)}`,
        {
          cause: error,
        },
      );
    }
  };

  const nowMs = (): number => {
    const ms = clock().getTime();
    if (!Number.isFinite(ms)) throw configError(label, 'the clock returned an invalid date');
    return ms;
  };
  const stateOf = (stream: string): StreamState => {
    let state = streams.get(stream);
    if (state === undefined) {
      state = { appendsSince: 0, lastCheckpointMs: nowMs() };
      streams.set(stream, state);
    }
    return state;
  };

  const checkpoint = async (stream: string, signer: CheckpointSigner): Promise<Checkpoint> => {
    const head = await backend.head(stream);
    if (head.seq === 0) {
      throw new AuditStoreError(AuditStoreErrorCode.emptyStream, `${label}: stream ${stream} has no records`);
    }
    const signed = signCheckpoint({ stream, seq: head.seq, hash: head.hash, ts: timestamp(clock) }, signer);
    return backend.putCheckpoint(signed);
  };

  const autoCheckpoint = async (stream: string, force: boolean): Promise<void> => {
    if (auto === undefined) return;
    const state = stateOf(stream);
    const now = nowMs();
    const due =
      state.appendsSince > 0 &&
      (force ||
        (auto.everyAppends !== undefined && state.appendsSince >= auto.everyAppends) ||
        (auto.everySeconds !== undefined && now - state.lastCheckpointMs >= auto.everySeconds * 1000));
    if (!due) return;
    state.appendsSince = 0;
    state.lastCheckpointMs = now;
    try {
      await checkpoint(stream, auto.signer);
    } catch (error) {
      if (closing === null) onError(error);
    }
  };

  const timer =
    auto?.everySeconds === undefined
      ? undefined
      : setInterval(
          () => {
            for (const stream of streams.keys()) void autoCheckpoint(stream, false);
          },
          Math.max(100, auto.everySeconds * 1000),
        );
  timer?.unref();

  const pump = async (sub: Subscription): Promise<void> => {
    if (sub.pumping) {
      sub.again = true;
      return;
    }
    sub.pumping = true;
    try {
      do {
        sub.again = false;
        for (;;) {
          const page = await backend.read(sub.stream, sub.nextSeq, SUBSCRIBE_PAGE);
          for (const record of page) {
            if (sub.closed) return;
            await sub.onRecord(record);
            sub.nextSeq = record.seq + 1;
          }
          if (page.length < SUBSCRIBE_PAGE || sub.closed) break;
        }
      } while (sub.again && !sub.closed);
    } catch (error) {
      if (!sub.closed && closing === null) onError(error);
      sub.closed = true;
      subscriptions.delete(sub);
    } finally {
      sub.pumping = false;
    }
  };

  const appendMany = (stream: string, inputs: readonly AuditAppendInput[]): Promise<AuditRecord[]> =>
    guard('append', async () => {
      checkStream(stream);
      if (!Array.isArray(inputs) || inputs.length === 0 || inputs.length > MAX_APPEND_BATCH) {
        throw invalid(`appendMany takes 1 to ${MAX_APPEND_BATCH} events`);
      }
      const prepared = inputs.map((input) => prepareEvent(input));
      const ts = timestamp(clock);
      const records = await backend.append(stream, (head) => chainRecords(stream, head, prepared, ts));
      stateOf(stream).appendsSince += records.length;
      for (const sub of subscriptions) if (sub.stream === stream) void pump(sub);
      await autoCheckpoint(stream, false);
      return records;
    });

  const store: AuditStore = {
    async append(stream, input) {
      const [record] = await appendMany(stream, [input]);
      if (record === undefined) throw new Error('append stored nothing');
      return record;
    },
    appendMany,
    read(query) {
      return guard('read', async () => {
        const parsed = ReadSchema.safeParse(query);
        if (!parsed.success) throw invalid(`invalid read query: ${issues(parsed.error)}`);
        const { stream, fromSeq = 1, limit } = parsed.data;
        return backend.read(stream, fromSeq, limit ?? null);
      });
    },
    search(query) {
      return guard('search', async () => {
        const parsed = SearchSchema.safeParse(query);
        if (!parsed.success) throw invalid(`invalid search: ${issues(parsed.error)}`);
        const q = parsed.data;
        return backend.search({
          stream: q.stream,
          kind: q.kind,
          agent: q.agent,
          run: q.run,
          since: q.since === undefined ? undefined : new Date(q.since).toISOString(),
          text: q.text,
          limit: q.limit ?? DEFAULT_SEARCH_LIMIT,
        });
      });
    },
    checkpoint(stream, signer) {
      return guard('checkpoint', async () => {
        checkStream(stream);
        if (typeof signer?.sign !== 'function' || typeof signer.keyId !== 'string') {
          throw invalid('checkpoint needs a signer {keyId, sign}');
        }
        const state = stateOf(stream);
        const signed = await checkpoint(stream, signer);
        state.appendsSince = 0;
        state.lastCheckpointMs = nowMs();
        return signed;
      });
    },
    checkpoints(stream) {
      return guard('checkpoints', async () => backend.listCheckpoints(checkStream(stream)));
    },
    subscribe(stream, fromSeq, onRecord) {
      if (closing !== null)
        throw new AuditStoreError(AuditStoreErrorCode.closed, `${label}: the store is closed`);
      checkStream(stream);
      if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw invalid('fromSeq must be a positive integer');
      if (typeof onRecord !== 'function') throw invalid('onRecord must be a function');
      const sub: Subscription = {
        stream,
        onRecord,
        nextSeq: fromSeq,
        pumping: false,
        again: false,
        closed: false,
      };
      subscriptions.add(sub);
      void pump(sub);
      return () => {
        sub.closed = true;
        subscriptions.delete(sub);
      };
    },
    close() {
      closing ??= (async () => {
        if (timer !== undefined) clearInterval(timer);
        for (const sub of subscriptions) sub.closed = true;
        subscriptions.clear();
        await backend.close();
      })();
      return closing;
    },
  };
  return Object.freeze(store);
}

function configError(label: string, message: string): AuditStoreError {
  return new AuditStoreError(AuditStoreErrorCode.configInvalid, `${label}: ${message}`);
}
