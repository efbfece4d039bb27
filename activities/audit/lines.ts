/**
 * Line scanning over a file handle with byte offsets (for tail repair and following).
 * Internal to `activities/audit`.
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import { AuditError, AuditErrorCode } from './errors.ts';

/** One line as stored. */
export interface RawLine {
  /** The bytes without the newline. */
  readonly bytes: Buffer;
  /** Byte offset of the line's first byte. */
  readonly start: number;
  /** Byte offset just past the newline (or EOF for an incomplete line). */
  readonly end: number;
  /** False for a last line without its newline. */
  readonly complete: boolean;
}

const CHUNK = 64 * 1024;
const NEWLINE = 0x0a;

/** Yields the lines from byte `from` to the current end of file; the last may be incomplete. */
export async function* readLines(fh: FileHandle, from = 0): AsyncGenerator<RawLine> {
  const buf = Buffer.allocUnsafe(CHUNK);
  let position = from;
  let lineStart = from;
  let pending: Buffer[] = [];
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, position);
    if (bytesRead === 0) break;
    const chunk = buf.subarray(0, bytesRead);
    let i = 0;
    while (i < bytesRead) {
      const nl = chunk.indexOf(NEWLINE, i);
      if (nl === -1) {
        pending.push(Buffer.from(chunk.subarray(i)));
        break;
      }
      pending.push(Buffer.from(chunk.subarray(i, nl)));
      const end = position + nl + 1;
      yield { bytes: Buffer.concat(pending), start: lineStart, end, complete: true };
      pending = [];
      lineStart = end;
      i = nl + 1;
    }
    position += bytesRead;
  }
  if (pending.length > 0)
    yield { bytes: Buffer.concat(pending), start: lineStart, end: position, complete: false };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes a line as strict UTF-8; throws AUDIT_FILE_CORRUPT naming `file:line`. */
export function decodeLine(raw: RawLine, file: string, line: number): string {
  try {
    return utf8.decode(raw.bytes);
  } catch (error) {
    throw new AuditError(AuditErrorCode.fileCorrupt, `${file}:${line}: not valid UTF-8`, { cause: error });
  }
}

/** The error for an incomplete last line. */
export function truncatedTailError(file: string, line: number, bytes: number, hint: string): AuditError {
  return new AuditError(
    AuditErrorCode.truncatedTail,
    `${file}:${line}: incomplete last line (${bytes} byte${bytes === 1 ? '' : 's'} without a newline; ` +
      `a writer stopped mid-write)${hint}`,
  );
}
