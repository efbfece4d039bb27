/**
 * The local audit sink: an append-only JSON Lines file, one event per line, written by exactly one
 * sink at a time (lock file `<path>.lock`). Seq is recovered from the file on open, so it stays
 * 1-based and gap-free across restarts.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuditError, AuditErrorCode } from './errors.ts';
import {
  DedupeWindow,
  encodeEvent,
  parseStoredLine,
  prepareEvent,
  resolveSinkOptions,
  timestamp,
} from './event.ts';
import type { SinkOptions } from './event.ts';
import { decodeLine, readLines, truncatedTailError } from './lines.ts';
import type { AuditClient, AuditEvent, AuditEventInput } from './types.ts';

/** When appended lines are flushed to stable storage. */
export const AuditFsync = { always: 'always', never: 'never' } as const;
export type AuditFsync = (typeof AuditFsync)[keyof typeof AuditFsync];

/** Options of {@link openAuditFile}. */
export interface AuditFileOptions extends SinkOptions {
  /** `always`: fsync after every append (durable, slower). Default `never` (the OS flushes). */
  readonly fsync?: AuditFsync;
  /**
   * A crash mid-write can leave an incomplete last line. By default such a file is refused. With
   * `true` the incomplete line, and only it, is truncated away (its event was never acknowledged
   * to the writer, so nothing acknowledged is lost); `repairedTail` then reports what was cut.
   */
  readonly repairTruncatedTail?: boolean;
}

/** An open audit file. Appends are serialised; `close()` waits for them and releases the lock. */
export interface AuditFile extends AuditClient {
  /** Absolute path of the file. */
  readonly path: string;
  /** The incomplete last line dropped on open (`repairTruncatedTail`), or null. */
  readonly repairedTail: { readonly line: number; readonly bytes: number } | null;
  /** Waits for pending appends, closes the file and removes the lock. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens (creating it, mode 0600, parent directory 0700) the audit file at `path` for appending.
 * Refuses a file another sink holds open (AUDIT_LOCKED), a corrupted line (AUDIT_FILE_CORRUPT,
 * naming `file:line`) and an incomplete last line (AUDIT_TRUNCATED_TAIL) unless
 * `repairTruncatedTail` is set.
 */
export async function openAuditFile(path: string, options: AuditFileOptions = {}): Promise<AuditFile> {
  const { clock, dedupeWindow } = resolveSinkOptions(options);
  const { fsync = AuditFsync.never, repairTruncatedTail = false } = options;
  if (fsync !== AuditFsync.always && fsync !== AuditFsync.never) {
    throw new AuditError(
      AuditErrorCode.invalidOptions,
      `fsync must be 'always' or 'never', not ${String(fsync)}`,
    );
  }
  const file = resolve(path);
  const lockPath = `${file}.lock`;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const existed = await checkRegularFile(file);
  const lock = await acquireLock(file, lockPath);
  let fh: FileHandle | undefined;
  try {
    fh = await open(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    if (!existed && fsync === AuditFsync.always) await syncDirectory(dirname(file));
    const recovered = await recover(file, fh, dedupeWindow, repairTruncatedTail);
    if (recovered.repairedTail !== null && fsync === AuditFsync.always) await fh.sync();
    return new FileSink(file, lockPath, lock, fh, clock, fsync, recovered);
  } catch (error) {
    await fh?.close().catch(() => {});
    await releaseLock(lockPath, lock);
    throw error;
  }
}

interface Recovered {
  readonly nextSeq: number;
  readonly dedupe: DedupeWindow;
  readonly repairedTail: { readonly line: number; readonly bytes: number } | null;
}

class FileSink implements AuditFile {
  readonly path: string;
  readonly repairedTail: { readonly line: number; readonly bytes: number } | null;
  readonly #lockPath: string;
  readonly #lock: string;
  readonly #fh: FileHandle;
  readonly #clock: () => Date;
  readonly #fsync: AuditFsync;
  readonly #dedupe: DedupeWindow;
  #nextSeq: number;
  #queue: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;
  #broken: AuditError | undefined;

  constructor(
    path: string,
    lockPath: string,
    lock: string,
    fh: FileHandle,
    clock: () => Date,
    fsync: AuditFsync,
    recovered: Recovered,
  ) {
    this.path = path;
    this.repairedTail = recovered.repairedTail;
    this.#lockPath = lockPath;
    this.#lock = lock;
    this.#fh = fh;
    this.#clock = clock;
    this.#fsync = fsync;
    this.#dedupe = recovered.dedupe;
    this.#nextSeq = recovered.nextSeq;
  }

  async append(input: AuditEventInput): Promise<AuditEvent> {
    if (this.#closing !== undefined)
      throw new AuditError(AuditErrorCode.closed, `${this.path}: audit file is closed`);
    const prepared = prepareEvent(input);
    // enqueued synchronously, so appends land in call order
    const run = this.#queue.then(() => this.#write(prepared));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #write(prepared: ReturnType<typeof prepareEvent>): Promise<AuditEvent> {
    if (this.#broken !== undefined) throw this.#broken;
    const seen = this.#dedupe.get(prepared.id);
    if (seen !== undefined) return seen;
    const { line, event } = encodeEvent(prepared, this.#nextSeq, timestamp(this.#clock));
    const bytes = Buffer.from(line, 'utf8');
    try {
      // one write; the loop only runs again on a short write
      let offset = 0;
      while (offset < bytes.length) {
        const { bytesWritten } = await this.#fh.write(bytes, offset, bytes.length - offset);
        offset += bytesWritten;
      }
      if (this.#fsync === AuditFsync.always) await this.#fh.sync();
    } catch (error) {
      this.#broken = new AuditError(
        AuditErrorCode.writeFailed,
        `${this.path}: append of seq ${event.seq} failed (${(error as Error).message}); ` +
          'the sink refuses further appends: close it and reopen to check the tail',
        { cause: error },
      );
      throw this.#broken;
    }
    this.#nextSeq += 1;
    this.#dedupe.remember(event);
    return event;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#queue;
      try {
        await this.#fh.close();
      } finally {
        await releaseLock(this.#lockPath, this.#lock);
      }
    })();
    return this.#closing;
  }
}

// Reads the existing lines: next seq, recent ids, and the incomplete tail (refused or cut).
async function recover(
  file: string,
  fh: FileHandle,
  dedupeWindow: number,
  repair: boolean,
): Promise<Recovered> {
  const dedupe = new DedupeWindow(dedupeWindow);
  let count = 0;
  let repairedTail: Recovered['repairedTail'] = null;
  const reader = await open(file, 'r');
  try {
    for await (const raw of readLines(reader)) {
      const line = count + 1;
      if (!raw.complete) {
        const bytes = raw.end - raw.start;
        if (!repair)
          throw truncatedTailError(file, line, bytes, '; open with repairTruncatedTail: true to drop it');
        await fh.truncate(raw.start);
        repairedTail = { line, bytes };
        break;
      }
      dedupe.remember(parseStoredLine(decodeLine(raw, file, line), file, line));
      count = line;
    }
  } finally {
    await reader.close();
  }
  return { nextSeq: count + 1, dedupe, repairedTail };
}

// True when the file exists; refuses anything but a regular file (a FIFO would block the open).
async function checkRegularFile(file: string): Promise<boolean> {
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new AuditError(AuditErrorCode.invalidOptions, `${file} is not a regular file`);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const LOCK_ATTEMPTS = 50;
const LOCK_RETRY_MS = 10;

// Creates `<file>.lock` with O_EXCL (content: pid, host, nonce); takes over a dead process's lock.
async function acquireLock(file: string, lockPath: string): Promise<string> {
  const host = hostname();
  const token = `${process.pid}\n${host}\n${randomUUID()}\n`;
  for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
    let handle: FileHandle;
    try {
      handle = await open(lockPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const held = await readLock(lockPath);
      if (held === undefined) continue; // released meanwhile
      const [pidText = '', holderHost = ''] = held.split('\n');
      if (!/^[1-9]\d*$/.test(pidText)) {
        await sleep(LOCK_RETRY_MS); // the holder may be between create and write
        continue;
      }
      const pid = Number(pidText);
      if (holderHost !== '' && holderHost !== host) {
        throw lockedError(file, lockPath, `process ${pid} on host ${holderHost}`);
      }
      if (isAlive(pid)) {
        throw lockedError(file, lockPath, pid === process.pid ? 'this process' : `process ${pid}`);
      }
      // stale: remove it only if it is still the same lock
      if ((await readLock(lockPath)) === held) await unlink(lockPath).catch(ignoreMissing);
      continue;
    }
    try {
      await handle.writeFile(token);
    } catch (error) {
      await handle.close().catch(() => {});
      await unlink(lockPath).catch(ignoreMissing);
      throw error;
    }
    await handle.close();
    // a racing stale-lock takeover could have replaced ours; make sure we still hold it
    if ((await readLock(lockPath)) === token) return token;
  }
  throw new AuditError(
    AuditErrorCode.locked,
    `${file}: could not acquire the lock ${lockPath} (unreadable or contended); remove it if no writer is running`,
  );
}

async function releaseLock(lockPath: string, token: string): Promise<void> {
  if ((await readLock(lockPath)) === token) await unlink(lockPath).catch(ignoreMissing);
}

async function readLock(lockPath: string): Promise<string | undefined> {
  try {
    return await readFile(lockPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, owned by someone else
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function lockedError(file: string, lockPath: string, holder: string): AuditError {
  return new AuditError(
    AuditErrorCode.locked,
    `${file} is already open for writing by ${holder} (lock file ${lockPath}); ` +
      'close that writer first, or remove the lock file if it is not running',
  );
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
}
