/**
 * Baselines: what "normal" is for an agent under one policy version, learned from its finished runs (§4.4).
 *
 * Each run is one sample. The learner follows a run from `run.started` (which names its policy version) to
 * `run.finished`, counting tool executions (`execution.started`), the directories and hosts they touch (see
 * `eventSubjects`), decisions and denials, and model tokens. A finished run is folded into the baseline of its
 * (agent, policy version): a plain mean for the first `minSamples` samples, then an EWMA with α = `maxAlpha`,
 * so no single run moves "normal" by more than `maxAlpha` of its distance from it.
 *
 * Anti-poisoning: a run marked with `markTainted` (it had an open finding) is never learned from. A policy change
 * applied mid-run restarts the run's window under the new version; the part before the change is not learned.
 *
 * `lookup` returns a baseline as soon as one sample exists (with its `samples`); the rules decide themselves how
 * many samples they need (`minSamples` of a `baseline_deviation` rule), so no caller has to guess the threshold.
 *
 * State is bounded: `maxKeys` tools, directories and hosts per baseline and per run (least-seen evicted from a
 * baseline, further keys ignored in a run), `maxRuns` runs in flight (oldest dropped), `maxBaselines` baselines
 * (least recently updated dropped).
 * @module
 */
import { z } from 'zod';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditEvent } from '../activities/audit/types.ts';
import { AgentRuntimeError, formatPath } from '../policy/index.ts';
import type { Baseline, BaselineLookup } from './rules/engine.ts';
import { eventSubjects } from './subjects.ts';

/** Stable codes of `ObserverStateError`. */
export const ObserverStateErrorCode = {
  /** An option of the baseline learner or the learning windows is out of range. */
  optionsInvalid: 'OBSERVER_OPTIONS_INVALID',
  /** A persisted snapshot does not parse (wrong version, shape or limits). */
  snapshotInvalid: 'OBSERVER_SNAPSHOT_INVALID',
} as const;
export type ObserverStateErrorCode = (typeof ObserverStateErrorCode)[keyof typeof ObserverStateErrorCode];

/** The baseline learner or the learning windows refused an option or a snapshot. */
export class ObserverStateError extends AgentRuntimeError {
  declare readonly code: ObserverStateErrorCode;
  constructor(code: ObserverStateErrorCode, message: string) {
    super(code, message);
  }
}

/** Formats the first zod issues of a refused snapshot as `path: message; …`. */
export function snapshotProblems(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${formatPath(issue.path)}: ${issue.message}`)
    .join('; ');
}

/** The metric names `lookup` fills in (rules name them in `baseline_deviation.metric`). */
export const BaselineMetric = {
  /** Executions per minute of each tool, over the runs that used it. */
  toolRatePerMin: 'toolRatePerMin',
  /** Share of each tool among a run's executions (sums to about 1). */
  toolMix: 'toolMix',
  /** Directory → number of learned runs that touched it. */
  directories: 'directories',
  /** Host → number of learned runs that called it. */
  hosts: 'hosts',
  /** Denied decisions (tier `prohibited`, or refused by the guard) per decision, 0–1. */
  denialRate: 'denialRate',
  /** Model tokens (input + output) per run. */
  tokensPerRun: 'tokensPerRun',
} as const;
export type BaselineMetric = (typeof BaselineMetric)[keyof typeof BaselineMetric];

/** Memory caps of the learner. */
export interface BaselineLimits {
  /** Tools, directories and hosts kept per baseline (least-seen evicted) and per run in flight. */
  readonly maxKeys: number;
  /** Runs followed at once (oldest dropped, never learned). */
  readonly maxRuns: number;
  /** (agent, policy version) baselines kept (least recently updated dropped). */
  readonly maxBaselines: number;
}

/** Defaults for `BaselineLimits`. */
export const DEFAULT_BASELINE_LIMITS: BaselineLimits = {
  maxKeys: 1_000,
  maxRuns: 10_000,
  maxBaselines: 10_000,
};

/** Options of `createBaselineLearner`. */
export interface BaselineLearnerOptions {
  /** Samples learned as a plain mean before the EWMA takes over (default 30). */
  readonly minSamples?: number;
  /** The EWMA weight once `minSamples` samples exist, 0 < α ≤ 1 (default 0.1). */
  readonly maxAlpha?: number;
  /**
   * Shortest span a tool's rate is measured over (default 5 minutes, the window of `tool-rate-off-baseline`):
   * a run that calls a tool 10 times in 30 s learns 2/min, which is what that rule would observe.
   */
  readonly rateFloorMs?: number;
  readonly limits?: Partial<BaselineLimits>;
  /** The injected clock (epoch ms), used for events whose `ts` does not parse. */
  readonly now: () => number;
}

/** Counters for `observer status`. */
export interface BaselineStats {
  readonly runsInFlight: number;
  readonly baselines: number;
  /** Runs folded into a baseline. */
  readonly learned: number;
  /** Finished runs not learned because they were tainted. */
  readonly skippedTainted: number;
  /** Runs, baselines and keys dropped to stay within the limits. */
  readonly evictions: number;
}

/** The learner. */
export interface BaselineLearner {
  /** Follows one audit event (any kind; irrelevant ones are ignored). */
  observe(event: AuditEvent): void;
  /** The run had an open finding: its window is never learned from. Unknown runs are ignored. */
  markTainted(run: string): void;
  /** The baseline of (agent, policy version), or undefined before its first sample or seed. */
  readonly lookup: BaselineLookup;
  /**
   * Copies the baseline of `fromVersion` to `toVersion` (an approved change opened a learning window, so
   * undeclared behaviour is still compared with the old normal). Returns false, changing nothing, when
   * `fromVersion` has no baseline or `toVersion` already has one (a rollback keeps the version's own).
   */
  seed(agent: string, fromVersion: string, toVersion: string): boolean;
  /** JSON-serialisable state (see `BaselineSnapshot`). */
  snapshot(): BaselineSnapshot;
  /** Replaces the state with a snapshot; throws `ObserverStateError` (`OBSERVER_SNAPSHOT_INVALID`). */
  restore(snapshot: unknown): void;
  stats(): BaselineStats;
}

/** Version of `BaselineSnapshot`. */
export const BASELINE_SNAPSHOT_VERSION = 1;

const name = z.string().min(1).max(4096);
const count = z.int().min(0);
const real = z.number().finite().min(0);
const SnapshotBaselineSchema = z.strictObject({
  agent: name,
  policyVersion: name,
  samples: count,
  mixSamples: count,
  denialRate: real.max(1),
  tokensPerRun: real,
  /** `[tool, runsSeen, lastSample, ratePerMin, share]` */
  tools: z.array(z.tuple([name, count, count, real, real.max(1)])),
  /** `[directory, runsSeen, lastSample]` */
  directories: z.array(z.tuple([name, count, count])),
  /** `[host, runsSeen, lastSample]` */
  hosts: z.array(z.tuple([name, count, count])),
});
const SnapshotRunSchema = z.strictObject({
  run: name,
  agent: name,
  policyVersion: name,
  tainted: z.boolean(),
  decisions: count,
  denials: count,
  tokens: real,
  /** `[tool, executions, firstMs, lastMs]` */
  tools: z.array(z.tuple([name, count, z.number().finite(), z.number().finite()])),
  directories: z.array(name),
  hosts: z.array(name),
});
const BaselineSnapshotSchema = z.strictObject({
  version: z.literal(BASELINE_SNAPSHOT_VERSION),
  baselines: z.array(SnapshotBaselineSchema),
  runs: z.array(SnapshotRunSchema),
});
/** The persisted form: plain arrays (no object keys taken from events), so any tool or path name is safe. */
export type BaselineSnapshot = z.infer<typeof BaselineSnapshotSchema>;

interface KeyStat {
  runs: number;
  /** The baseline's `samples` when the key was last seen (eviction tie-break: older goes first). */
  last: number;
}
interface ToolStat extends KeyStat {
  rate: number;
  share: number;
}
interface Learned {
  samples: number;
  /** Samples with at least one execution (the ones `toolMix` is averaged over). */
  mixSamples: number;
  denialRate: number;
  tokensPerRun: number;
  tools: Map<string, ToolStat>;
  directories: Map<string, KeyStat>;
  hosts: Map<string, KeyStat>;
  view: Baseline | undefined;
}
interface RunWindow {
  agent: string;
  policyVersion: string;
  tainted: boolean;
  decisions: number;
  denials: number;
  tokens: number;
  tools: Map<string, { count: number; firstMs: number; lastMs: number }>;
  directories: Set<string>;
  hosts: Set<string>;
}

function checkOptions(options: BaselineLearnerOptions): {
  minSamples: number;
  maxAlpha: number;
  rateFloorMs: number;
  limits: BaselineLimits;
} {
  const minSamples = options.minSamples ?? 30;
  const maxAlpha = options.maxAlpha ?? 0.1;
  const rateFloorMs = options.rateFloorMs ?? 5 * 60_000;
  const limits = { ...DEFAULT_BASELINE_LIMITS, ...options.limits };
  const problems: string[] = [];
  if (!Number.isInteger(minSamples) || minSamples < 1)
    problems.push(`minSamples ${minSamples} (expected ≥ 1)`);
  if (!(maxAlpha > 0 && maxAlpha <= 1)) problems.push(`maxAlpha ${maxAlpha} (expected 0 < α ≤ 1)`);
  if (!(Number.isFinite(rateFloorMs) && rateFloorMs >= 1000))
    problems.push(`rateFloorMs ${rateFloorMs} (expected ≥ 1000)`);
  for (const [key, value] of Object.entries(limits))
    if (!Number.isInteger(value) || value < 1) problems.push(`limits.${key} ${value} (expected ≥ 1)`);
  if (problems.length > 0)
    throw new ObserverStateError(
      ObserverStateErrorCode.optionsInvalid,
      `invalid baseline learner options: ${problems.join(', ')}`,
    );
  return { minSamples, maxAlpha, rateFloorMs, limits };
}

/** Keeps the `cap` most-seen keys (ties: most recently seen); returns how many were dropped. */
function evictLeastSeen<V extends KeyStat>(map: Map<string, V>, cap: number): number {
  if (map.size <= cap) return 0;
  const order = [...map.entries()].sort(([, a], [, b]) => a.runs - b.runs || a.last - b.last);
  const drop = order.length - cap;
  for (let i = 0; i < drop; i++) map.delete(order[i]![0]);
  return drop;
}

function nonNegative(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

/** Creates a baseline learner (see the module doc). */
export function createBaselineLearner(options: BaselineLearnerOptions): BaselineLearner {
  const { minSamples, maxAlpha, rateFloorMs, limits } = checkOptions(options);
  // Map keys are strings from events: Maps, never object keys, so "__proto__" is just a name
  let baselines = new Map<string, Learned & { agent: string; policyVersion: string }>();
  let runs = new Map<string, RunWindow>();
  let learned = 0;
  let skippedTainted = 0;
  let evictions = 0;

  const keyOf = (agent: string, policyVersion: string): string => JSON.stringify([agent, policyVersion]);
  /** EWMA weight of the n-th sample: a plain mean up to `minSamples`, then `maxAlpha`. */
  const alphaFor = (n: number): number => (n <= minSamples ? 1 / n : maxAlpha);
  const timeOf = (event: AuditEvent): number => {
    const parsed = Date.parse(event.ts);
    return Number.isFinite(parsed) ? parsed : options.now();
  };

  const emptyWindow = (agent: string, policyVersion: string, tainted: boolean): RunWindow => ({
    agent,
    policyVersion,
    tainted,
    decisions: 0,
    denials: 0,
    tokens: 0,
    tools: new Map(),
    directories: new Set(),
    hosts: new Set(),
  });

  const follow = (run: string, window: RunWindow): void => {
    runs.delete(run);
    runs.set(run, window);
    while (runs.size > limits.maxRuns) {
      const oldest = runs.keys().next();
      if (oldest.done) break;
      runs.delete(oldest.value);
      evictions++;
    }
  };

  const baselineFor = (agent: string, policyVersion: string): Learned => {
    const key = keyOf(agent, policyVersion);
    let baseline = baselines.get(key);
    if (baseline) {
      baselines.delete(key);
    } else {
      baseline = {
        agent,
        policyVersion,
        samples: 0,
        mixSamples: 0,
        denialRate: 0,
        tokensPerRun: 0,
        tools: new Map(),
        directories: new Map(),
        hosts: new Map(),
        view: undefined,
      };
    }
    baselines.set(key, baseline);
    while (baselines.size > limits.maxBaselines) {
      const oldest = baselines.keys().next();
      if (oldest.done) break;
      baselines.delete(oldest.value);
      evictions++;
    }
    return baseline;
  };

  const fold = (window: RunWindow): void => {
    const b = baselineFor(window.agent, window.policyVersion);
    b.samples += 1;
    b.view = undefined;
    const alpha = alphaFor(b.samples);
    const rate = window.decisions === 0 ? 0 : Math.min(1, window.denials / window.decisions);
    b.denialRate += alpha * (rate - b.denialRate);
    b.tokensPerRun += alpha * (window.tokens - b.tokensPerRun);

    let executions = 0;
    for (const t of window.tools.values()) executions += t.count;
    for (const [tool, t] of window.tools) {
      let stat = b.tools.get(tool);
      if (!stat) {
        stat = { runs: 0, last: 0, rate: 0, share: 0 };
        b.tools.set(tool, stat);
      }
      stat.runs += 1;
      stat.last = b.samples;
      const perMin = t.count / (Math.max(t.lastMs - t.firstMs, rateFloorMs) / 60_000);
      stat.rate += alphaFor(stat.runs) * (perMin - stat.rate);
    }
    if (executions > 0) {
      b.mixSamples += 1;
      const mixAlpha = alphaFor(b.mixSamples);
      for (const [tool, stat] of b.tools) {
        const share = (window.tools.get(tool)?.count ?? 0) / executions;
        stat.share += mixAlpha * (share - stat.share);
      }
    }
    const seen = (map: Map<string, KeyStat>, keys: Iterable<string>): void => {
      for (const key of keys) {
        const stat = map.get(key);
        if (stat) {
          stat.runs += 1;
          stat.last = b.samples;
        } else {
          map.set(key, { runs: 1, last: b.samples });
        }
      }
    };
    seen(b.directories, window.directories);
    seen(b.hosts, window.hosts);
    evictions += evictLeastSeen(b.tools, limits.maxKeys);
    evictions += evictLeastSeen(b.directories, limits.maxKeys);
    evictions += evictLeastSeen(b.hosts, limits.maxKeys);
    learned++;
  };

  const addKey = (set: Set<string>, key: string | undefined): void => {
    if (key === undefined || set.has(key)) return;
    if (set.size >= limits.maxKeys) {
      evictions++;
      return;
    }
    set.add(key);
  };

  const view = (b: Learned): Baseline => {
    const record = <V>(map: Map<string, V>, pick: (v: V) => number): Readonly<Record<string, number>> =>
      Object.freeze(Object.fromEntries([...map].map(([k, v]) => [k, pick(v)])));
    return Object.freeze({
      samples: b.samples,
      toolRatePerMin: record(b.tools, (t) => t.rate),
      toolMix: record(b.tools, (t) => t.share),
      directories: record(b.directories, (d) => d.runs),
      hosts: record(b.hosts, (h) => h.runs),
      denialRate: b.denialRate,
      tokensPerRun: b.tokensPerRun,
    });
  };

  return {
    observe(event) {
      if (event.run === null) return;
      const run = event.run;
      if (event.kind === AuditKind.runStarted) {
        const version = event.attrs.policyVersion;
        if (event.agent !== null && typeof version === 'string' && !runs.has(run))
          follow(run, emptyWindow(event.agent, version, false));
        return;
      }
      const window = runs.get(run);
      if (!window) return;
      switch (event.kind) {
        case AuditKind.policyUpdated: {
          const to = event.attrs.to;
          if (event.attrs.phase === 'applied' && typeof to === 'string' && to !== window.policyVersion)
            runs.set(run, emptyWindow(window.agent, to, window.tainted));
          return;
        }
        case AuditKind.executionStarted: {
          const subjects = eventSubjects(event);
          if (subjects.tool === undefined) return;
          const t = timeOf(event);
          const tool = window.tools.get(subjects.tool);
          if (tool) {
            tool.count += 1;
            tool.firstMs = Math.min(tool.firstMs, t);
            tool.lastMs = Math.max(tool.lastMs, t);
          } else if (window.tools.size < limits.maxKeys) {
            window.tools.set(subjects.tool, { count: 1, firstMs: t, lastMs: t });
          } else {
            evictions++;
          }
          addKey(window.directories, subjects.directory);
          addKey(window.hosts, subjects.host);
          return;
        }
        case AuditKind.decision:
          window.decisions += 1;
          if (event.attrs.tier === 'prohibited') window.denials += 1;
          return;
        case AuditKind.executionRefused:
          window.denials += 1;
          return;
        case AuditKind.modelCall: {
          const usage = event.attrs.usage as Record<string, unknown> | null | undefined;
          if (typeof usage === 'object' && usage !== null)
            window.tokens += nonNegative(usage.inputTokens) + nonNegative(usage.outputTokens);
          return;
        }
        case AuditKind.runFinished:
          runs.delete(run);
          if (window.tainted) skippedTainted++;
          else fold(window);
          return;
        default:
          return;
      }
    },

    markTainted(run) {
      const window = runs.get(run);
      if (window) window.tainted = true;
    },

    lookup(agent, policyVersion) {
      const b = baselines.get(keyOf(agent, policyVersion));
      if (!b) return undefined;
      b.view ??= view(b);
      return b.view;
    },

    seed(agent, fromVersion, toVersion) {
      const source = baselines.get(keyOf(agent, fromVersion));
      if (!source || baselines.has(keyOf(agent, toVersion))) return false;
      const target = baselineFor(agent, toVersion);
      target.samples = source.samples;
      target.mixSamples = source.mixSamples;
      target.denialRate = source.denialRate;
      target.tokensPerRun = source.tokensPerRun;
      target.tools = new Map([...source.tools].map(([k, v]) => [k, { ...v }]));
      target.directories = new Map([...source.directories].map(([k, v]) => [k, { ...v }]));
      target.hosts = new Map([...source.hosts].map(([k, v]) => [k, { ...v }]));
      return true;
    },

    snapshot() {
      return {
        version: BASELINE_SNAPSHOT_VERSION,
        baselines: [...baselines.values()].map((b) => ({
          agent: b.agent,
          policyVersion: b.policyVersion,
          samples: b.samples,
          mixSamples: b.mixSamples,
          denialRate: b.denialRate,
          tokensPerRun: b.tokensPerRun,
          tools: [...b.tools].map(([k, v]) => [k, v.runs, v.last, v.rate, v.share] as const),
          directories: [...b.directories].map(([k, v]) => [k, v.runs, v.last] as const),
          hosts: [...b.hosts].map(([k, v]) => [k, v.runs, v.last] as const),
        })),
        runs: [...runs].map(([run, w]) => ({
          run,
          agent: w.agent,
          policyVersion: w.policyVersion,
          tainted: w.tainted,
          decisions: w.decisions,
          denials: w.denials,
          tokens: w.tokens,
          tools: [...w.tools].map(([k, v]) => [k, v.count, v.firstMs, v.lastMs] as const),
          directories: [...w.directories],
          hosts: [...w.hosts],
        })),
      } as BaselineSnapshot;
    },

    restore(snapshot) {
      const parsed = BaselineSnapshotSchema.safeParse(snapshot);
      if (!parsed.success)
        throw new ObserverStateError(
          ObserverStateErrorCode.snapshotInvalid,
          `invalid baseline snapshot: ${snapshotProblems(parsed.error)}`,
        );
      const data = parsed.data;
      const tooMany = (what: string, n: number, cap: number): void => {
        if (n > cap)
          throw new ObserverStateError(
            ObserverStateErrorCode.snapshotInvalid,
            `invalid baseline snapshot: ${n} ${what} (limit ${cap})`,
          );
      };
      tooMany('baselines', data.baselines.length, limits.maxBaselines);
      tooMany('runs', data.runs.length, limits.maxRuns);
      for (const b of [...data.baselines, ...data.runs])
        for (const keys of [b.tools, b.directories, b.hosts]) tooMany('keys', keys.length, limits.maxKeys);
      baselines = new Map(
        data.baselines.map((b) => [
          keyOf(b.agent, b.policyVersion),
          {
            agent: b.agent,
            policyVersion: b.policyVersion,
            samples: b.samples,
            mixSamples: b.mixSamples,
            denialRate: b.denialRate,
            tokensPerRun: b.tokensPerRun,
            tools: new Map(b.tools.map(([k, runs, last, rate, share]) => [k, { runs, last, rate, share }])),
            directories: new Map(b.directories.map(([k, runs, last]) => [k, { runs, last }])),
            hosts: new Map(b.hosts.map(([k, runs, last]) => [k, { runs, last }])),
            view: undefined,
          },
        ]),
      );
      runs = new Map(
        data.runs.map((r) => [
          r.run,
          {
            agent: r.agent,
            policyVersion: r.policyVersion,
            tainted: r.tainted,
            decisions: r.decisions,
            denials: r.denials,
            tokens: r.tokens,
            tools: new Map(r.tools.map(([k, n, firstMs, lastMs]) => [k, { count: n, firstMs, lastMs }])),
            directories: new Set(r.directories),
            hosts: new Set(r.hosts),
          },
        ]),
      );
    },

    stats() {
      return { runsInFlight: runs.size, baselines: baselines.size, learned, skippedTainted, evictions };
    },
  };
}
