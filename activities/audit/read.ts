/**
 * Reading audit files: the whole file, a live follow (`tail -f`), and a one-line human format.
 * Readers take no lock; they may run beside the writer.
 * @module
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import { AuditError, AuditErrorCode } from './errors.ts';
import { parseStoredLine } from './event.ts';
import { decodeLine, readLines, truncatedTailError } from './lines.ts';
import type { AuditEvent } from './types.ts';

/**
 * Reads and validates every event of an audit file. Throws AUDIT_FILE_CORRUPT naming `file:line`
 * for a bad line or a seq gap, and AUDIT_TRUNCATED_TAIL for an incomplete last line.
 */
export async function readAuditFile(path: string): Promise<AuditEvent[]> {
  const file = resolve(path);
  const fh = await open(file, 'r');
  const events: AuditEvent[] = [];
  try {
    for await (const raw of readLines(fh)) {
      const line = events.length + 1;
      if (!raw.complete) throw truncatedTailError(file, line, raw.end - raw.start, '');
      events.push(parseStoredLine(decodeLine(raw, file, line), file, line));
    }
  } finally {
    await fh.close();
  }
  return events;
}

/** Options of {@link followAuditFile}. */
export interface FollowOptions {
  /** Aborting ends the iteration (no error). */
  readonly signal: AbortSignal;
  /** First seq to yield; default 1 (the whole file, then new events). */
  readonly fromSeq?: number;
  /** Fallback poll interval in ms besides fs.watch; default 200. */
  readonly pollIntervalMs?: number;
}

/**
 * Yields the file's events from `fromSeq` on, then each event as it is appended, until `signal`
 * aborts or the consumer stops iterating. Waits for a file that does not exist yet and for the
 * rest of a half-written last line. Follows the file it first opened (not a replacement at the
 * same path). Throws AUDIT_FILE_CORRUPT naming `file:line` for a bad line.
 */
export async function* followAuditFile(
  path: string,
  options: FollowOptions,
): AsyncGenerator<AuditEvent, void> {
  const { signal, fromSeq = 1, pollIntervalMs = 200 } = options;
  if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) {
    throw new AuditError(AuditErrorCode.invalidOptions, 'fromSeq must be a positive integer');
  }
  if (!Number.isFinite(pollIntervalMs) || pollIntervalMs <= 0) {
    throw new AuditError(AuditErrorCode.invalidOptions, 'pollIntervalMs must be a positive number');
  }
  const file = resolve(path);
  let fh: FileHandle | undefined;
  let watcher: FSWatcher | undefined;
  let committed = 0; // byte offset past the last complete line
  let line = 0;
  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  const timer = setInterval(poke, pollIntervalMs);
  const onAbort = (): void => {
    // stop what keeps the process alive even if the consumer never resumes us
    clearInterval(timer);
    watcher?.close();
    poke();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    while (!signal.aborted) {
      if (!dirty) await new Promise<void>((resolveWake) => (wake = resolveWake));
      dirty = false;
      if (signal.aborted) break;
      if (fh === undefined) {
        fh = await openIfExists(file);
        if (fh === undefined) continue;
        watcher = startWatch(file, poke);
      }
      const { size } = await fh.stat();
      if (size < committed) {
        throw new AuditError(
          AuditErrorCode.fileCorrupt,
          `${file}: shrank to ${size} bytes below the ${committed} already read (audit files are append-only)`,
        );
      }
      for await (const raw of readLines(fh, committed)) {
        if (!raw.complete) break; // the writer has not finished it yet
        const event = parseStoredLine(decodeLine(raw, file, line + 1), file, line + 1);
        line += 1;
        committed = raw.end;
        if (event.seq < fromSeq) continue;
        if (signal.aborted) return;
        yield event;
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    clearInterval(timer);
    watcher?.close();
    await fh?.close();
  }
}

async function openIfExists(file: string): Promise<FileHandle | undefined> {
  try {
    return await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

// fs.watch is a hint only; the interval covers platforms and filesystems where it fails.
function startWatch(file: string, onChange: () => void): FSWatcher | undefined {
  try {
    const watcher = watch(file, { persistent: false }, onChange);
    watcher.on('error', () => watcher.close());
    return watcher;
  } catch {
    return undefined;
  }
}

/** Longest attr value shown by {@link formatAuditEvent}, in code points. */
export const FORMAT_MAX_VALUE = 80;

/**
 * One human-readable line, e.g.
 * `#12 2026-11-25T10:00:00.000Z workflow ops-assistant run=abc step=3 decision rule=write-docs tier=preapproved`:
 * seq, ts, source, agent (`-` for none), run and step when set, kind, then attrs as `k=v`.
 * Values are cut to 80 code points; control, line-separator and bidi characters are escaped, so
 * the result never contains a line break.
 */
export function formatAuditEvent(e: AuditEvent): string {
  const parts = [`#${e.seq}`, escapeText(String(e.ts)), escapeText(String(e.source))];
  parts.push(e.agent === null ? '-' : formatString(e.agent));
  if (e.run !== null) parts.push(`run=${formatString(e.run)}`);
  if (e.step !== null) parts.push(`step=${e.step}`);
  parts.push(escapeText(String(e.kind)));
  for (const [key, value] of Object.entries(e.attrs)) {
    if (value === undefined) continue;
    parts.push(`${formatKey(key)}=${formatValue(value)}`);
  }
  return parts.join(' ');
}

function formatKey(key: string): string {
  return /[\s"=]/.test(key) || key === '' ? quote(key) : escapeText(key);
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return formatString(value);
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    json = undefined;
  }
  return escapeUnsafe(truncate(json ?? String(value)));
}

function formatString(value: string): string {
  const cut = truncate(value);
  return /[\s"]/.test(cut) || cut === '' ? quote(cut) : escapeText(cut);
}

function truncate(text: string): string {
  if (text.length <= FORMAT_MAX_VALUE) return text;
  let points = 0;
  let units = 0;
  for (const ch of text) {
    if (points === FORMAT_MAX_VALUE) return `${text.slice(0, units)}…`;
    points += 1;
    units += ch.length;
  }
  return text;
}

// JSON quoting escapes C0 controls, quotes and backslashes; escapeUnsafe covers the rest.
function quote(text: string): string {
  return escapeUnsafe(JSON.stringify(text));
}

function escapeText(text: string): string {
  return escapeUnsafe(text.replaceAll('\\', '\\\\'));
}

// C0/C1 controls, DEL, line/paragraph separators, bidi overrides and isolates
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeUnsafe(text: string): string {
  return text.replace(
    UNSAFE,
    (ch) => SHORT_ESCAPES[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
