/**
 * The observer's rule engine: pure, synchronous, no I/O. `ingest(event)` evaluates every rule against one audit
 * event and returns the findings it completes; `tick(now)` fires `absence` rules whose window ran out without the
 * expected event. Windows run on event time (`ts`), so replaying a recorded log gives the same findings; the
 * injected clock is used for `tick()` without an argument and for events whose `ts` does not parse.
 *
 * State is bounded: at most `maxGroups` groups per rule (least recently used evicted), `maxEventsPerGroup`
 * events and `maxValuesPerGroup` remembered values per group (oldest evicted). Evictions are counted in `stats()`.
 * @module
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import type { AuditEvent } from '../../activities/audit/types.ts';
import type { Correlation, GroupBy, Intervention, Rule, RuleMode, SequenceStep, Severity } from './schema.ts';

/** One detection. */
export interface Finding {
  /** Deterministic: a hash of the rule id, the group and the event seqs. */
  readonly id: string;
  readonly ruleId: string;
  readonly severity: Severity;
  readonly mode: RuleMode;
  /** The correlation group, such as `agent=a1,run=r7` (`*` for an empty `groupBy`, `seq=N` for single-event rules). */
  readonly group: string;
  /** The `seq`s of the events that make up the finding, in arrival order. */
  readonly events: readonly number[];
  /** ISO-8601 time the finding completed (event time; the deadline for `absence`). */
  readonly at: string;
  /** The rule's intervention; apply it only when `mode` is `enforce` (shadow findings are reported only). */
  readonly intervention?: Intervention;
}

/** A per-(agent, policy version) baseline: `samples` observations, plus metric maps such as `toolRatePerMin`. */
export interface Baseline {
  readonly samples: number;
  readonly [metric: string]: number | Readonly<Record<string, number>>;
}

/** Looks up the baseline of an agent under a policy version. */
export type BaselineLookup = (agent: string, policyVersion: string) => Baseline | undefined;

/** Baselines as a nested record: `agent → policyVersion → baseline`. */
export type BaselineTable = Readonly<Record<string, Readonly<Record<string, Baseline>>>>;

/** Memory caps. */
export interface EngineLimits {
  /** Groups kept per rule. */
  readonly maxGroups: number;
  /** Events kept per group (windowed correlations). */
  readonly maxEventsPerGroup: number;
  /** Distinct values remembered per group (`first_seen`). */
  readonly maxValuesPerGroup: number;
  /** Runs whose policy version is remembered (for baselines). */
  readonly maxRuns: number;
}

/** Defaults for `EngineLimits`. */
export const DEFAULT_LIMITS: EngineLimits = {
  maxGroups: 10_000,
  maxEventsPerGroup: 1_000,
  maxValuesPerGroup: 1_000,
  maxRuns: 10_000,
};

/** Options of `createEngine`. */
export interface EngineOptions {
  /** The injected clock, in epoch milliseconds. */
  readonly now: () => number;
  readonly baselines?: BaselineLookup | BaselineTable;
  readonly limits?: Partial<EngineLimits>;
}

/** Counters for monitoring the engine's memory. */
export interface EngineStats {
  /** Live groups per rule id. */
  readonly groups: Readonly<Record<string, number>>;
  /** Groups, events and values dropped to stay within the limits. */
  readonly evictions: number;
}

/** A running engine over a fixed rule set. */
export interface Engine {
  /** Evaluates every rule against one event (after expiring due `absence` windows); returns completed findings. */
  ingest(event: AuditEvent): Finding[];
  /** Expires `absence` windows due at `now` (default: the injected clock). */
  tick(now?: number): Finding[];
  stats(): EngineStats;
}

interface Timed {
  readonly seq: number;
  readonly t: number;
}
interface Valued<V> extends Timed {
  readonly value: V;
}
interface NoveltyEntry {
  readonly firstAt: number;
  seqs: number[];
  done: boolean;
}
type GroupState =
  | { kind: 'items'; items: Timed[] }
  | { kind: 'values'; items: Valued<string>[] }
  | { kind: 'sums'; items: Valued<number>[] }
  | { kind: 'sequence'; progress: Timed[]; captures: Map<string, unknown> }
  | { kind: 'absence'; pending: { seq: number; deadline: number }[] }
  | { kind: 'novelty'; values: Map<string, NoveltyEntry> }
  | { kind: 'gap'; last: number };
interface Group {
  readonly label: string;
  state: GroupState;
}

/** Map with least-recently-used eviction. */
class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  private readonly cap: number;
  private readonly onEvict: () => void;
  constructor(cap: number, onEvict: () => void) {
    this.cap = cap;
    this.onEvict = onEvict;
  }
  get size(): number {
    return this.map.size;
  }
  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.cap) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.map.delete(oldest.value);
      this.onEvict();
    }
  }
  delete(key: K): void {
    this.map.delete(key);
  }
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}

/** Builds a `BaselineLookup` from a nested record. */
export function baselineTable(table: BaselineTable): BaselineLookup {
  return (agent, policyVersion) =>
    Object.prototype.hasOwnProperty.call(table, agent) &&
    Object.prototype.hasOwnProperty.call(table[agent], policyVersion)
      ? table[agent]![policyVersion]
      : undefined;
}

/** Deterministic finding id. */
export function findingId(ruleId: string, group: string, events: readonly number[]): string {
  return `obs_${bytesToHex(sha256(utf8ToBytes(`${ruleId}\n${group}\n${events.join(',')}`))).slice(0, 32)}`;
}

function valueKey(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function groupOf(groupBy: GroupBy, event: AuditEvent): { key: string; label: string } | undefined {
  if (groupBy.fields.length === 0) return { key: '', label: '*' };
  const values: string[] = [];
  for (const get of groupBy.accessors) {
    const v = valueKey(get(event));
    if (v === undefined) return undefined;
    values.push(v);
  }
  return {
    key: JSON.stringify(values),
    label: groupBy.fields.map((f, i) => `${f}=${values[i]!}`).join(','),
  };
}

function relationHolds(
  relation: NonNullable<SequenceStep['relation']>,
  event: AuditEvent,
  captures: Map<string, unknown>,
): boolean {
  const value = relation.get(event);
  if (value === undefined || !captures.has(relation.capture)) return false;
  const captured = captures.get(relation.capture);
  const list: readonly unknown[] = Array.isArray(captured) ? captured : [captured];
  switch (relation.op) {
    case 'eq':
      return value === captured;
    case 'ne':
      return value !== captured;
    case 'in':
      return list.includes(value);
    case 'notIn':
      return !list.includes(value);
  }
}

function prune<T extends Timed>(items: T[], cutoff: number): void {
  while (items.length > 0 && items[0]!.t < cutoff) items.shift();
}

/** Creates an engine over compiled rules (see `parseRules`). */
export function createEngine(rules: readonly Rule[], options: EngineOptions): Engine {
  const limits: EngineLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const lookup: BaselineLookup | undefined =
    typeof options.baselines === 'function'
      ? options.baselines
      : options.baselines
        ? baselineTable(options.baselines)
        : undefined;
  let evictions = 0;
  const evicted = (): void => {
    evictions++;
  };
  const groups = new Map<string, BoundedMap<string, Group>>();
  for (const rule of rules) groups.set(rule.id, new BoundedMap(limits.maxGroups, evicted));
  const runPolicy = new BoundedMap<string, string>(limits.maxRuns, evicted);

  const finding = (rule: Rule, label: string, events: readonly number[], t: number): Finding => ({
    id: findingId(rule.id, label, events),
    ruleId: rule.id,
    severity: rule.severity,
    mode: rule.mode,
    group: label,
    events: [...events],
    at: new Date(t).toISOString(),
    ...(rule.intervene ? { intervention: rule.intervene } : {}),
  });

  const capped = <T>(items: T[]): void => {
    while (items.length > limits.maxEventsPerGroup) {
      items.shift();
      evicted();
    }
  };

  // earliest pending absence deadline per rule, so most events skip the scan
  const nextDeadline = new Map<string, number>();
  const expire = (t: number): Finding[] => {
    const out: Finding[] = [];
    for (const rule of rules) {
      if (rule.correlate?.type !== 'absence') continue;
      if ((nextDeadline.get(rule.id) ?? Infinity) > t) continue;
      const table = groups.get(rule.id)!;
      const empty: string[] = [];
      let earliest = Infinity;
      for (const [key, group] of table.entries()) {
        if (group.state.kind !== 'absence') continue;
        const due = group.state.pending.filter((p) => p.deadline <= t);
        if (due.length > 0) {
          group.state.pending = group.state.pending.filter((p) => p.deadline > t);
          for (const p of due) out.push(finding(rule, group.label, [p.seq], p.deadline));
        }
        if (group.state.pending.length === 0) empty.push(key);
        for (const p of group.state.pending) earliest = Math.min(earliest, p.deadline);
      }
      for (const key of empty) table.delete(key);
      nextDeadline.set(rule.id, earliest);
    }
    return out;
  };

  const policyVersionOf = (event: AuditEvent): string | undefined => {
    const own = event.attrs.policyVersion;
    if (typeof own === 'string') return own;
    return event.run === null ? undefined : runPolicy.get(event.run);
  };

  const track = (event: AuditEvent): void => {
    if (event.run === null) return;
    if (event.kind === 'run.started' && typeof event.attrs.policyVersion === 'string')
      runPolicy.set(event.run, event.attrs.policyVersion);
    if (
      event.kind === 'policy.updated' &&
      event.attrs.phase === 'applied' &&
      typeof event.attrs.to === 'string'
    )
      runPolicy.set(event.run, event.attrs.to);
  };

  const evaluate = (
    rule: Rule,
    correlate: Correlation,
    event: AuditEvent,
    t: number,
  ): Finding | undefined => {
    const where = groupOf(correlate.groupBy, event);
    if (!where) return undefined;
    const table = groups.get(rule.id)!;
    const get = (init: () => GroupState): Group => {
      let group = table.get(where.key);
      if (!group) {
        group = { label: where.label, state: init() };
        table.set(where.key, group);
      }
      return group;
    };
    switch (correlate.type) {
      case 'count':
      case 'baseline_deviation': {
        const group = get(() => ({ kind: 'items', items: [] }));
        if (group.state.kind !== 'items') return undefined;
        const items = group.state.items;
        prune(items, t - correlate.windowMs);
        items.push({ seq: event.seq, t });
        capped(items);
        if (correlate.type === 'count') {
          if (items.length < correlate.threshold) return undefined;
        } else {
          if (items.length < correlate.minCount || event.agent === null || !lookup) return undefined;
          const version = policyVersionOf(event);
          const key = valueKey(correlate.key(event));
          if (version === undefined || key === undefined) return undefined;
          const baseline = lookup(event.agent, version);
          if (!baseline || baseline.samples < correlate.minSamples) return undefined;
          const metric = baseline[correlate.metric];
          if (metric === undefined || typeof metric === 'number') return undefined;
          const expected = Object.prototype.hasOwnProperty.call(metric, key) ? metric[key] : undefined;
          if (typeof expected !== 'number') return undefined;
          const observed = items.length / (correlate.windowMs / 60_000);
          if (observed <= correlate.factor * expected) return undefined;
        }
        const seqs = items.map((i) => i.seq);
        group.state.items = [];
        return finding(rule, group.label, seqs, t);
      }
      case 'distinct': {
        const value = valueKey(correlate.value(event));
        if (value === undefined) return undefined;
        const group = get(() => ({ kind: 'values', items: [] }));
        if (group.state.kind !== 'values') return undefined;
        const items = group.state.items;
        prune(items, t - correlate.windowMs);
        items.push({ seq: event.seq, t, value });
        capped(items);
        const firsts = new Map<string, number>();
        for (const item of items) if (!firsts.has(item.value)) firsts.set(item.value, item.seq);
        if (firsts.size < correlate.threshold) return undefined;
        group.state.items = [];
        return finding(rule, group.label, [...firsts.values()], t);
      }
      case 'sum': {
        const value = correlate.value(event);
        if (typeof value !== 'number' || !Number.isFinite(value)) return undefined;
        const group = get(() => ({ kind: 'sums', items: [] }));
        if (group.state.kind !== 'sums') return undefined;
        const items = group.state.items;
        prune(items, t - correlate.windowMs);
        items.push({ seq: event.seq, t, value });
        capped(items);
        const total = items.reduce((s, i) => s + i.value, 0);
        if (items.length < correlate.minCount || total < correlate.threshold) return undefined;
        const seqs = items.map((i) => i.seq);
        group.state.items = [];
        return finding(rule, group.label, seqs, t);
      }
      case 'sequence': {
        const group = get(() => ({ kind: 'sequence', progress: [], captures: new Map() }));
        const state = group.state;
        if (state.kind !== 'sequence') return undefined;
        const first = state.progress[0];
        if (first && t - first.t > correlate.windowMs) {
          state.progress = [];
          state.captures = new Map();
        }
        const capture = (step: SequenceStep): void => {
          if (step.capture) state.captures.set(step.capture.as, step.capture.get(event));
        };
        const next = correlate.steps[state.progress.length];
        if (
          state.progress.length > 0 &&
          next &&
          next.match(event) &&
          (!next.relation || relationHolds(next.relation, event, state.captures))
        ) {
          state.progress.push({ seq: event.seq, t });
          capture(next);
          if (state.progress.length === correlate.steps.length) {
            const seqs = state.progress.map((p) => p.seq);
            state.progress = [];
            state.captures = new Map();
            return finding(rule, group.label, seqs, t);
          }
          return undefined;
        }
        const head = correlate.steps[0]!;
        if (head.match(event)) {
          state.progress = [{ seq: event.seq, t }];
          state.captures = new Map();
          capture(head);
        }
        return undefined;
      }
      case 'absence': {
        const group = get(() => ({ kind: 'absence', pending: [] }));
        if (group.state.kind !== 'absence') return undefined;
        const deadline = t + correlate.windowMs;
        group.state.pending.push({ seq: event.seq, deadline });
        nextDeadline.set(rule.id, Math.min(nextDeadline.get(rule.id) ?? Infinity, deadline));
        capped(group.state.pending);
        return undefined;
      }
      case 'first_seen': {
        const value = valueKey(correlate.value(event));
        if (value === undefined) return undefined;
        const group = get(() => ({ kind: 'novelty', values: new Map() }));
        if (group.state.kind !== 'novelty') return undefined;
        const values = group.state.values;
        let entry = values.get(value);
        if (!entry) {
          entry = { firstAt: t, seqs: [], done: false };
          values.set(value, entry);
          while (values.size > limits.maxValuesPerGroup) {
            const oldest = values.keys().next();
            if (oldest.done) break;
            values.delete(oldest.value);
            evicted();
          }
        }
        if (entry.done) return undefined;
        if (correlate.threshold > 1 && t - entry.firstAt > correlate.windowMs) {
          entry.done = true;
          entry.seqs = [];
          return undefined;
        }
        entry.seqs.push(event.seq);
        if (entry.seqs.length < correlate.threshold) return undefined;
        const seqs = entry.seqs;
        entry.done = true;
        entry.seqs = [];
        return finding(rule, `${group.label},value=${value}`, seqs, t);
      }
      case 'seq_gap': {
        const group = get(() => ({ kind: 'gap', last: event.seq }));
        if (group.state.kind !== 'gap') return undefined;
        const last = group.state.last;
        if (event.seq <= last) return undefined;
        group.state.last = event.seq;
        return event.seq > last + 1 ? finding(rule, group.label, [last, event.seq], t) : undefined;
      }
    }
  };

  /** Cancels pending absence windows that this event satisfies. */
  const satisfy = (rule: Rule, correlate: Correlation & { type: 'absence' }, event: AuditEvent): void => {
    if (!correlate.expect(event)) return;
    const where = groupOf(correlate.groupBy, event);
    if (where) groups.get(rule.id)!.delete(where.key);
  };

  const timeOf = (event: AuditEvent): number => {
    const parsed = Date.parse(event.ts);
    return Number.isFinite(parsed) ? parsed : options.now();
  };

  return {
    ingest(event) {
      const t = timeOf(event);
      const out = expire(t);
      track(event);
      for (const rule of rules) {
        const correlate = rule.correlate;
        if (correlate?.type === 'absence') satisfy(rule, correlate, event);
        if (!rule.match(event)) continue;
        if (!correlate) {
          out.push(finding(rule, `seq=${event.seq}`, [event.seq], t));
          continue;
        }
        const found = evaluate(rule, correlate, event, t);
        if (found) out.push(found);
      }
      return out;
    },
    tick(now) {
      return expire(now ?? options.now());
    },
    stats() {
      const counts: Record<string, number> = {};
      for (const [ruleId, table] of groups) counts[ruleId] = table.size;
      return { groups: counts, evictions };
    },
  };
}
