/**
 * The execution journal: one durable record per idempotency key (`workflowId/step`), written
 * before a tool with side effects runs and completed after. It lets the execution guard answer a
 * retried activity from the record instead of acting again, and refuse a retry whose first attempt
 * died with its outcome unknown (for tools that cannot deduplicate themselves).
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ToolCallResult } from '../workflows/run-types.ts';

/** One key's record. */
export type JournalEntry =
  | {
      readonly key: string;
      readonly state: 'started';
      readonly tool: string;
      readonly startedAt: string;
      readonly attempt: number;
    }
  | {
      readonly key: string;
      readonly state: 'completed';
      readonly tool: string;
      readonly startedAt: string;
      readonly attempt: number;
      readonly completedAt: string;
      readonly result: ToolCallResult;
    };

export interface ExecutionJournal {
  get(key: string): Promise<JournalEntry | undefined>;
  /** Durably records that `tool` is about to run for `key`. */
  begin(key: string, tool: string, attempt: number): Promise<void>;
  /** Durably records the result; later attempts get it without running the tool. */
  complete(key: string, result: ToolCallResult): Promise<void>;
  /** Forgets a started record whose tool provably did nothing (refused before running). */
  abandon(key: string): Promise<void>;
}

/**
 * A journal of one JSON file per key under `dir` (created 0700), each written to a temporary file,
 * fsynced and renamed into place, so a record is either whole or absent.
 */
export function fileJournal(dir: string, clock: () => Date = () => new Date()): ExecutionJournal {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const fileOf = (key: string) => join(dir, `${createHash('sha256').update(key).digest('hex')}.json`);
  const write = async (key: string, entry: JournalEntry): Promise<void> => {
    const target = fileOf(key);
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(JSON.stringify(entry));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  };
  const get = async (key: string): Promise<JournalEntry | undefined> => {
    let text: string;
    try {
      text = await readFile(fileOf(key), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const entry = JSON.parse(text) as JournalEntry;
    // a hash collision or a tampered file must not hand one call another call's result
    if (entry.key !== key) throw new Error(`journal record for ${key} holds another key`);
    return entry;
  };
  return {
    get,
    async begin(key, tool, attempt) {
      await write(key, { key, state: 'started', tool, startedAt: clock().toISOString(), attempt });
    },
    async complete(key, result) {
      const started = await get(key);
      const startedAt = started?.startedAt ?? clock().toISOString();
      await write(key, {
        key,
        state: 'completed',
        tool: started?.tool ?? '?',
        startedAt,
        attempt: started?.attempt ?? 0,
        completedAt: clock().toISOString(),
        result,
      });
    },
    async abandon(key) {
      await unlink(fileOf(key)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    },
  };
}
