/**
 * What every SQLite store of agent-runtime (approvals, token budgets, traces, audit) shares: a
 * database file created private to its owner, and write transactions that take the lock up front.
 * @module
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';

/** Creates `file` (and its directory, 0700) readable by its owner only (0600), before SQLite opens it. */
export function createPrivateFile(file: string): void {
  mkdirSync(dirname(resolve(file)), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
}

/** Runs `fn` in a `BEGIN IMMEDIATE` transaction, so concurrent writers wait instead of failing at commit. */
export function immediateTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw error;
  }
}
