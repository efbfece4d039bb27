/**
 * Learning windows for approved governance changes (§4.5). A `governance.change` audit event carries a signed
 * manifest; once it verifies against a trusted key it is remembered. When a run then applies the policy change
 * it names (`policy.updated`, phase `applied`, from → to), a learning window opens for (agent, new version)
 * until `approvedAt` + `learningWindow` (counted from the receipt instead if that is earlier, so a replayed old
 * manifest cannot open a fresh window). A change no accepted manifest covers is `unapproved`: the caller
 * raises the critical detection.
 *
 * Inside an open window `classify` tells findings about *declared* behaviour (every tool, directory and host
 * the events touch is named by the manifest) from *undeclared* behaviour, which keeps full sensitivity: a
 * manifest that adds `crm.write` excuses no new egress host.
 *
 * One window per (agent, version): while it is open, a second manifest leading to the same version does not
 * widen it. State is bounded (`maxManifests`, `maxWindows`; oldest dropped).
 * @module
 */
import { z } from 'zod';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditEvent } from '../activities/audit/types.ts';
import { ObserverStateError, ObserverStateErrorCode, snapshotProblems } from './baselines.ts';
import { GovernanceChangeRefusal, learningWindowMs, verifyGovernanceChange } from './governance-change.ts';
import type { GovernanceChange, SignedGovernanceChange } from './governance-change.ts';
import { eventSubjects } from './subjects.ts';
import type { EventSubjects } from './subjects.ts';

/** An open (or closed) learning window. */
export interface LearningWindow {
  readonly agent: string;
  readonly fromVersion: string;
  /** The version the window is for: findings under it are classified against `declares`. */
  readonly toVersion: string;
  readonly declares: GovernanceChange['declares'];
  readonly approvedBy: readonly string[];
  readonly reason: string;
  /** The key that signed the manifest. */
  readonly keyId: string;
  /** When the first run applied the change (epoch ms). */
  readonly openedAtMs: number;
  /** When the window closes (epoch ms, exclusive). */
  readonly endsAtMs: number;
  /** How many `policy.updated` applications used it. */
  readonly applications: number;
}

/** How a finding relates to a learning window. */
export const Classification = {
  /** A window is open and everything the events touch is declared by its manifest. */
  declared: 'declared',
  /** A window is open, but the events touch something the manifest does not declare. */
  undeclared: 'undeclared',
  /** No open window for (agent, version). */
  noWindow: 'no-window',
} as const;
export type Classification = (typeof Classification)[keyof typeof Classification];

/** Outcome of `onGovernanceChange`. */
export type GovernanceChangeReceipt =
  | { readonly accepted: true; readonly change: GovernanceChange }
  | { readonly accepted: false; readonly code: GovernanceChangeRefusal; readonly message: string };

/** Outcome of `onPolicyApplied`. */
export type PolicyAppliedOutcome =
  | { readonly status: 'approved'; readonly window: LearningWindow }
  | {
      readonly status: 'unapproved';
      /** `no-manifest`: nothing accepted covers from → to; `expired`: its window had closed. */
      readonly reason: 'no-manifest' | 'expired';
    };

/** Memory caps. */
export interface LearningLimits {
  /** Accepted manifests remembered (oldest dropped). */
  readonly maxManifests: number;
  /** Windows remembered, open or closed (oldest dropped). */
  readonly maxWindows: number;
}

/** Defaults for `LearningLimits`. */
export const DEFAULT_LEARNING_LIMITS: LearningLimits = { maxManifests: 1_000, maxWindows: 1_000 };

/** Options of `createLearningWindows`. */
export interface LearningWindowsOptions {
  /** The injected clock (epoch ms), used for events whose `ts` does not parse. */
  readonly now: () => number;
  /** `keyId → Ed25519 public key` of the keys allowed to sign changes (see `loadPublicKeys`). */
  readonly trustedKeys: ReadonlyMap<string, Uint8Array>;
  readonly limits?: Partial<LearningLimits>;
}

/** The learning windows. */
export interface LearningWindows {
  /** Verifies the signed manifest in a `governance.change` event (at the event's time) and remembers it. */
  onGovernanceChange(event: AuditEvent): GovernanceChangeReceipt;
  /** A run applied a policy change: opens or re-uses the window when an accepted manifest covers it. */
  onPolicyApplied(agent: string, run: string, from: string, to: string, atMs: number): PolicyAppliedOutcome;
  /** Classifies the events of a finding about `agent` under `policyVersion` at `atMs`. */
  classify(agent: string, policyVersion: string, events: readonly AuditEvent[], atMs: number): Classification;
  /** Windows open at `atMs`, soonest-closing first. */
  active(atMs: number): LearningWindow[];
  /** JSON-serialisable state (see `LearningSnapshot`). */
  snapshot(): LearningSnapshot;
  /**
   * Replaces the state with a snapshot. Manifests are verified again; those that no longer verify (a trusted
   * key was removed) are dropped, with their windows. Throws `ObserverStateError` on a malformed snapshot.
   */
  restore(snapshot: unknown): { readonly manifests: number; readonly dropped: number };
}

/** Version of `LearningSnapshot`. */
export const LEARNING_SNAPSHOT_VERSION = 1;

const ms = z.number().finite();
const LearningSnapshotSchema = z.strictObject({
  version: z.literal(LEARNING_SNAPSHOT_VERSION),
  manifests: z.array(z.strictObject({ signed: z.unknown(), receivedAtMs: ms })),
  windows: z.array(
    z.strictObject({
      agent: z.string(),
      fromVersion: z.string(),
      toVersion: z.string(),
      openedAtMs: ms,
      applications: z.int().min(0),
    }),
  ),
});
/** The persisted form. */
export type LearningSnapshot = z.infer<typeof LearningSnapshotSchema>;

/** True when `path` is `dir` or lies below it. */
function within(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/**
 * Whether one event's subjects are covered by a manifest's declarations: every directory (the event's path lies
 * in or below a declared directory) and host it touches must be declared, and an event that touches neither
 * must use a declared tool. A declared tool excuses no directory or host; an opaque resource is never covered.
 */
export function isDeclared(declares: GovernanceChange['declares'], subjects: EventSubjects): boolean {
  if (subjects.opaque) return false;
  if (subjects.path !== undefined)
    return (declares.directories ?? []).some((dir) => within(subjects.path!, dir));
  if (subjects.host !== undefined) return (declares.hosts ?? []).includes(subjects.host);
  return subjects.tool !== undefined && (declares.tools ?? []).includes(subjects.tool);
}

interface Accepted {
  readonly signed: SignedGovernanceChange;
  readonly receivedAtMs: number;
  readonly endsAtMs: number;
}

/** Creates the learning windows (see the module doc). */
export function createLearningWindows(options: LearningWindowsOptions): LearningWindows {
  const limits = { ...DEFAULT_LEARNING_LIMITS, ...options.limits };
  for (const [key, value] of Object.entries(limits))
    if (!Number.isInteger(value) || value < 1)
      throw new ObserverStateError(
        ObserverStateErrorCode.optionsInvalid,
        `invalid learning window options: limits.${key} ${value} (expected ≥ 1)`,
      );
  let manifests = new Map<string, Accepted>();
  let windows = new Map<string, LearningWindow>();

  const changeKey = (agent: string, from: string, to: string): string => JSON.stringify([agent, from, to]);
  const windowKey = (agent: string, version: string): string => JSON.stringify([agent, version]);
  const put = <V>(map: Map<string, V>, key: string, value: V, cap: number): void => {
    map.delete(key);
    map.set(key, value);
    while (map.size > cap) {
      const oldest = map.keys().next();
      if (oldest.done) break;
      map.delete(oldest.value);
    }
  };
  const remember = (signed: SignedGovernanceChange, receivedAtMs: number): void => {
    const { change } = signed;
    const start = Math.min(Date.parse(change.approvedAt), receivedAtMs);
    put(
      manifests,
      changeKey(change.agent, change.fromVersion, change.toVersion),
      { signed, receivedAtMs, endsAtMs: start + learningWindowMs(change) },
      limits.maxManifests,
    );
  };
  const windowOf = (accepted: Accepted, openedAtMs: number, applications: number): LearningWindow => {
    const { change, keyId } = accepted.signed;
    return {
      agent: change.agent,
      fromVersion: change.fromVersion,
      toVersion: change.toVersion,
      declares: change.declares,
      approvedBy: change.approvedBy,
      reason: change.reason,
      keyId,
      openedAtMs,
      endsAtMs: accepted.endsAtMs,
      applications,
    };
  };

  return {
    onGovernanceChange(event) {
      if (event.kind !== AuditKind.governanceChange)
        return {
          accepted: false,
          code: GovernanceChangeRefusal.wrongEvent,
          message: `expected a ${AuditKind.governanceChange} event, got ${event.kind}`,
        };
      const parsed = Date.parse(event.ts);
      const at = Number.isFinite(parsed) ? parsed : options.now();
      const check = verifyGovernanceChange(event.attrs, options.trustedKeys, { nowMs: at });
      if (!check.ok) return { accepted: false, code: check.code, message: check.message };
      if (event.agent !== check.change.agent)
        return {
          accepted: false,
          code: GovernanceChangeRefusal.wrongEvent,
          message: `the event is about agent ${JSON.stringify(event.agent)}, the change about ${JSON.stringify(check.change.agent)}`,
        };
      remember({ change: check.change, keyId: check.keyId, signature: String(event.attrs.signature) }, at);
      return { accepted: true, change: check.change };
    },

    onPolicyApplied(agent, _run, from, to, atMs) {
      const accepted = manifests.get(changeKey(agent, from, to));
      if (!accepted) return { status: 'unapproved', reason: 'no-manifest' };
      if (accepted.endsAtMs <= atMs) return { status: 'unapproved', reason: 'expired' };
      const key = windowKey(agent, to);
      const open = windows.get(key);
      const window =
        open && open.endsAtMs > atMs
          ? { ...open, applications: open.applications + 1 }
          : windowOf(accepted, atMs, 1);
      put(windows, key, window, limits.maxWindows);
      return { status: 'approved', window };
    },

    classify(agent, policyVersion, events, atMs) {
      const window = windows.get(windowKey(agent, policyVersion));
      if (!window || window.endsAtMs <= atMs) return Classification.noWindow;
      let touched = false;
      for (const event of events) {
        const subjects = eventSubjects(event);
        if (subjects.tool === undefined) continue;
        touched = true;
        if (!isDeclared(window.declares, subjects)) return Classification.undeclared;
      }
      // a finding about events that touch nothing (an audit gap, a policy update) is not explained by a manifest
      return touched ? Classification.declared : Classification.undeclared;
    },

    active(atMs) {
      return [...windows.values()].filter((w) => w.endsAtMs > atMs).sort((a, b) => a.endsAtMs - b.endsAtMs);
    },

    snapshot() {
      return {
        version: LEARNING_SNAPSHOT_VERSION,
        manifests: [...manifests.values()].map((m) => ({ signed: m.signed, receivedAtMs: m.receivedAtMs })),
        windows: [...windows.values()].map((w) => ({
          agent: w.agent,
          fromVersion: w.fromVersion,
          toVersion: w.toVersion,
          openedAtMs: w.openedAtMs,
          applications: w.applications,
        })),
      };
    },

    restore(snapshot) {
      const parsed = LearningSnapshotSchema.safeParse(snapshot);
      if (!parsed.success)
        throw new ObserverStateError(
          ObserverStateErrorCode.snapshotInvalid,
          `invalid learning window snapshot: ${snapshotProblems(parsed.error)}`,
        );
      manifests = new Map();
      windows = new Map();
      let dropped = 0;
      for (const { signed, receivedAtMs } of parsed.data.manifests) {
        const check = verifyGovernanceChange(signed, options.trustedKeys);
        if (!check.ok) {
          dropped++;
          continue;
        }
        const { signature } = signed as { signature: string };
        remember({ change: check.change, keyId: check.keyId, signature }, receivedAtMs);
      }
      for (const w of parsed.data.windows) {
        const accepted = manifests.get(changeKey(w.agent, w.fromVersion, w.toVersion));
        if (accepted)
          put(
            windows,
            windowKey(w.agent, w.toVersion),
            windowOf(accepted, w.openedAtMs, w.applications),
            limits.maxWindows,
          );
      }
      return { manifests: manifests.size, dropped };
    },
  };
}
