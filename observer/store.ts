/**
 * The observer's own store (SQLite, a file only the observer's process opens): the stream cursor,
 * findings, interventions and their lifecycle, the baseline and learning-window snapshots, and a
 * status row the CLI reads. Findings and interventions are keyed by deterministic ids, so
 * re-ingesting events after a restart never records or applies anything twice.
 * @module
 */
import { DatabaseSync } from 'node:sqlite';
import { createPrivateFile, immediateTransaction } from '../db/sqlite.ts';
import type { InterventionAction, RuleMode, Severity } from './rules/schema.ts';

/** How a finding was handled. */
export const FindingStatus = {
  /** Recorded; its intervention (if any) applied. */
  open: 'open',
  /** The rule is in shadow mode: reported only. */
  shadow: 'shadow',
  /** Inside a learning window for declared behaviour: recorded, not acted on. */
  learning: 'learning',
} as const;
export type FindingStatus = (typeof FindingStatus)[keyof typeof FindingStatus];

/** Lifecycle of an intervention. */
export const InterventionStatus = {
  active: 'active',
  /** Done once, nothing to lift (annotate, alert, revoke). */
  done: 'done',
  expired: 'expired',
  lifted: 'lifted',
  failed: 'failed',
} as const;
export type InterventionStatus = (typeof InterventionStatus)[keyof typeof InterventionStatus];

/** A stored finding. */
export interface FindingRow {
  readonly id: string;
  readonly ruleId: string;
  readonly severity: Severity;
  readonly mode: RuleMode;
  readonly group: string;
  readonly agent: string | null;
  readonly run: string | null;
  readonly events: readonly number[];
  readonly at: string;
  readonly status: FindingStatus;
  readonly detail: string | null;
}

/** A stored intervention. */
export interface InterventionRow {
  /** `<findingId>:<action>:<run or agent>`. */
  readonly id: string;
  readonly findingId: string;
  readonly action: InterventionAction;
  readonly run: string | null;
  readonly agent: string | null;
  readonly tools: readonly string[];
  readonly status: InterventionStatus;
  readonly appliedAt: string;
  readonly expiresAt: string | null;
  readonly endedAt: string | null;
  readonly detail: string | null;
}

/** The observer store. Synchronous: one process, one file. */
export interface ObserverStore {
  cursor(stream: string): number;
  setCursor(stream: string, seq: number): void;
  /** Inserts the finding; false when one with its id exists (nothing changes). */
  addFinding(finding: FindingRow): boolean;
  finding(id: string): FindingRow | undefined;
  findings(query?: { readonly limit?: number; readonly run?: string; readonly since?: string }): FindingRow[];
  /** Inserts the intervention; false when one with its id exists. */
  addIntervention(row: InterventionRow): boolean;
  intervention(id: string): InterventionRow | undefined;
  interventions(query?: { readonly status?: InterventionStatus; readonly limit?: number }): InterventionRow[];
  /** How many interventions have `status`. */
  countInterventions(status: InterventionStatus): number;
  /** Ends an active intervention; false when it is not active. */
  endIntervention(id: string, status: InterventionStatus, at: string, detail: string | null): boolean;
  /** Active interventions whose `expiresAt` is at or before `at`. */
  dueInterventions(at: string): InterventionRow[];
  /** An operator asks for an intervention to be lifted (`observer lift`); the running observer carries it out. */
  requestLift(interventionId: string, by: string, reason: string, at: string): number;
  /** Lift requests not carried out yet, oldest first. */
  pendingLifts(): {
    readonly n: number;
    readonly interventionId: string;
    readonly by: string;
    readonly reason: string;
  }[];
  finishLift(n: number, outcome: string, at: string): void;
  /** A lift request's outcome, or null while it is pending. */
  liftOutcome(n: number): string | null;
  getState(key: string): unknown;
  putState(key: string, value: unknown): void;
  close(): void;
}

const MIGRATIONS = [
  `CREATE TABLE cursor (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
   CREATE TABLE finding (
     id TEXT PRIMARY KEY, rule TEXT NOT NULL, severity TEXT NOT NULL, mode TEXT NOT NULL, grp TEXT NOT NULL,
     agent TEXT, run TEXT, events TEXT NOT NULL, at TEXT NOT NULL, status TEXT NOT NULL, detail TEXT);
   CREATE INDEX finding_at ON finding (at);
   CREATE INDEX finding_run ON finding (run);
   CREATE TABLE intervention (
     id TEXT PRIMARY KEY, finding TEXT NOT NULL, action TEXT NOT NULL, run TEXT, agent TEXT, tools TEXT NOT NULL,
     status TEXT NOT NULL, applied_at TEXT NOT NULL, expires_at TEXT, ended_at TEXT, detail TEXT);
   CREATE INDEX intervention_status ON intervention (status, expires_at);
   CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  `CREATE TABLE lift_request (
     n INTEGER PRIMARY KEY AUTOINCREMENT, intervention TEXT NOT NULL, by TEXT NOT NULL, reason TEXT NOT NULL,
     requested_at TEXT NOT NULL, done_at TEXT, outcome TEXT);`,
];

type Row = Record<string, unknown>;

const str = (v: unknown): string => String(v);
const optStr = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

function findingOf(r: Row): FindingRow {
  return Object.freeze({
    id: str(r['id']),
    ruleId: str(r['rule']),
    severity: str(r['severity']) as Severity,
    mode: str(r['mode']) as RuleMode,
    group: str(r['grp']),
    agent: optStr(r['agent']),
    run: optStr(r['run']),
    events: Object.freeze(JSON.parse(str(r['events'])) as number[]),
    at: str(r['at']),
    status: str(r['status']) as FindingStatus,
    detail: optStr(r['detail']),
  });
}

function interventionOf(r: Row): InterventionRow {
  return Object.freeze({
    id: str(r['id']),
    findingId: str(r['finding']),
    action: str(r['action']) as InterventionAction,
    run: optStr(r['run']),
    agent: optStr(r['agent']),
    tools: Object.freeze(JSON.parse(str(r['tools'])) as string[]),
    status: str(r['status']) as InterventionStatus,
    appliedAt: str(r['applied_at']),
    expiresAt: optStr(r['expires_at']),
    endedAt: optStr(r['ended_at']),
    detail: optStr(r['detail']),
  });
}

/** Opens (creating and migrating) the observer store at `file`, or `:memory:`. */
export function openObserverStore(
  file: string,
  options: { readonly readOnly?: boolean } = {},
): ObserverStore {
  if (file !== ':memory:' && !options.readOnly) createPrivateFile(file);
  const db = new DatabaseSync(file, options.readOnly ? { readOnly: true } : {});
  db.exec('PRAGMA busy_timeout = 5000');
  if (!options.readOnly) {
    if (file !== ':memory:') db.exec('PRAGMA journal_mode = WAL');
    const version = Number(db.prepare('PRAGMA user_version').get()?.['user_version'] ?? 0);
    immediateTransaction(db, () => {
      for (const migration of MIGRATIONS.slice(version)) db.exec(migration);
      db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
    });
  }
  const q = {
    cursor: db.prepare('SELECT seq FROM cursor WHERE stream = ?'),
    setCursor: db.prepare(
      'INSERT INTO cursor (stream, seq) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq',
    ),
    addFinding: db.prepare(
      `INSERT INTO finding (id, rule, severity, mode, grp, agent, run, events, at, status, detail)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    ),
    finding: db.prepare('SELECT * FROM finding WHERE id = ?'),
    addIntervention: db.prepare(
      `INSERT INTO intervention (id, finding, action, run, agent, tools, status, applied_at, expires_at, ended_at, detail)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    ),
    intervention: db.prepare('SELECT * FROM intervention WHERE id = ?'),
    count: db.prepare('SELECT count(*) AS n FROM intervention WHERE status = ?'),
    end: db.prepare(
      `UPDATE intervention SET status = ?, ended_at = ?, detail = coalesce(?, detail) WHERE id = ? AND status = 'active'`,
    ),
    due: db.prepare(
      `SELECT * FROM intervention WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at`,
    ),
    requestLift: db.prepare(
      'INSERT INTO lift_request (intervention, by, reason, requested_at) VALUES (?, ?, ?, ?) RETURNING n',
    ),
    pendingLifts: db.prepare(
      'SELECT n, intervention, by, reason FROM lift_request WHERE done_at IS NULL ORDER BY n',
    ),
    finishLift: db.prepare('UPDATE lift_request SET done_at = ?, outcome = ? WHERE n = ?'),
    liftOutcome: db.prepare('SELECT outcome FROM lift_request WHERE n = ?'),
    getState: db.prepare('SELECT value FROM state WHERE key = ?'),
    putState: db.prepare(
      'INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
  };
  return {
    cursor: (stream) => Number(q.cursor.get(stream)?.['seq'] ?? 0),
    setCursor: (stream, seq) => void q.setCursor.run(stream, seq),
    addFinding: (f) =>
      Number(
        q.addFinding.run(
          f.id,
          f.ruleId,
          f.severity,
          f.mode,
          f.group,
          f.agent,
          f.run,
          JSON.stringify(f.events),
          f.at,
          f.status,
          f.detail,
        ).changes,
      ) === 1,
    finding: (id) => {
      const row = q.finding.get(id);
      return row ? findingOf(row) : undefined;
    },
    findings: (query = {}) => {
      const where: string[] = [];
      const params: string[] = [];
      if (query.run !== undefined) {
        where.push('run = ?');
        params.push(query.run);
      }
      if (query.since !== undefined) {
        where.push('at >= ?');
        params.push(query.since);
      }
      const sql = `SELECT * FROM finding ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at DESC, id LIMIT ${Math.max(1, Math.min(query.limit ?? 100, 10_000))}`;
      return db
        .prepare(sql)
        .all(...params)
        .map(findingOf);
    },
    addIntervention: (r) =>
      Number(
        q.addIntervention.run(
          r.id,
          r.findingId,
          r.action,
          r.run,
          r.agent,
          JSON.stringify(r.tools),
          r.status,
          r.appliedAt,
          r.expiresAt,
          r.endedAt,
          r.detail,
        ).changes,
      ) === 1,
    intervention: (id) => {
      const row = q.intervention.get(id);
      return row ? interventionOf(row) : undefined;
    },
    interventions: (query = {}) => {
      const limit = Math.max(1, Math.min(query.limit ?? 100, 10_000));
      const rows =
        query.status === undefined
          ? db.prepare(`SELECT * FROM intervention ORDER BY applied_at DESC, id LIMIT ${limit}`).all()
          : db
              .prepare(
                `SELECT * FROM intervention WHERE status = ? ORDER BY applied_at DESC, id LIMIT ${limit}`,
              )
              .all(query.status);
      return rows.map(interventionOf);
    },
    countInterventions: (status) => Number(q.count.get(status)?.['n'] ?? 0),
    endIntervention: (id, status, at, detail) => Number(q.end.run(status, at, detail, id).changes) === 1,
    dueInterventions: (at) => q.due.all(at).map(interventionOf),
    requestLift: (id, by, reason, at) => Number(q.requestLift.get(id, by, reason, at)?.['n']),
    pendingLifts: () =>
      q.pendingLifts.all().map((r) => ({
        n: Number(r['n']),
        interventionId: str(r['intervention']),
        by: str(r['by']),
        reason: str(r['reason']),
      })),
    finishLift: (n, outcome, at) => void q.finishLift.run(at, outcome, n),
    liftOutcome: (n) => optStr(q.liftOutcome.get(n)?.['outcome']),
    getState: (key) => {
      const value = q.getState.get(key)?.['value'];
      return value === undefined ? undefined : (JSON.parse(String(value)) as unknown);
    },
    putState: (key, value) => void q.putState.run(key, JSON.stringify(value)),
    close: () => db.close(),
  };
}
