/**
 * A small, dependency-free Prometheus registry: counters, gauges and histograms whose label names
 * are fixed at creation, a cap on label combinations per metric (further combinations share one
 * `__overflow__` series and are counted), gauges computed on scrape, and the text exposition
 * format 0.0.4.
 * @module
 */
import { AgentRuntimeError } from '../policy/errors.ts';

/** Every metric this registry creates is named `agent_runtime_…`. */
export const METRIC_PREFIX = 'agent_runtime_';

/** The label value every label of a metric takes once the metric is over its series cap. */
export const OVERFLOW_LABEL_VALUE = '__overflow__';

/** Default cap on label combinations per metric. */
export const DEFAULT_MAX_SERIES = 1_000;

/** Longer label values are cut to this many characters (and end in `…`). */
export const MAX_LABEL_VALUE_LENGTH = 128;

/** The content type of {@link MetricsRegistry.render}'s output. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Stable codes of {@link MetricsError}. */
export const MetricsErrorCode = {
  /** A metric or label name is not a valid Prometheus name, or lacks the `agent_runtime_` prefix. */
  invalidName: 'METRICS_INVALID_NAME',
  /** A metric of that name is already registered. */
  duplicate: 'METRICS_DUPLICATE',
  /** Labels given to an observation are not exactly the metric's label names. */
  invalidLabels: 'METRICS_INVALID_LABELS',
  /** A value is not finite, or a counter would decrease. */
  invalidValue: 'METRICS_INVALID_VALUE',
  /** Histogram buckets are empty, unsorted, repeated or not finite. */
  invalidBuckets: 'METRICS_INVALID_BUCKETS',
  /** An option (series cap, port, bind address …) is invalid. */
  invalidOption: 'METRICS_INVALID_OPTION',
  /** The metrics server could not start. */
  listenFailed: 'METRICS_LISTEN_FAILED',
  /** Extra exposition text could not be fetched. */
  fetchFailed: 'METRICS_FETCH_FAILED',
} as const;
export type MetricsErrorCode = (typeof MetricsErrorCode)[keyof typeof MetricsErrorCode];

/** A metric was misused or misconfigured; `code` is a {@link MetricsErrorCode}. */
export class MetricsError extends AgentRuntimeError {
  constructor(code: MetricsErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Label values of one series, keyed by the metric's label names. */
export type LabelValues<L extends string> = Readonly<Record<L, string>>;

/** What every metric is created with. */
export interface MetricSpec<L extends string> {
  /** Full name, starting with `agent_runtime_`. */
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

/** A gauge's spec; `collect` runs before every render to set values computed on scrape. */
export interface GaugeSpec<L extends string> extends MetricSpec<L> {
  readonly collect?: (gauge: Gauge<L>) => void;
}

/** A histogram's spec; `buckets` are upper bounds, ascending (`+Inf` is implied). */
export interface HistogramSpec<L extends string> extends MetricSpec<L> {
  readonly buckets?: readonly number[];
}

/** Default histogram buckets (seconds, for request-like latencies). */
export const DEFAULT_BUCKETS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : '\\n'));
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\\' ? '\\\\' : '\\n'));
}

/** A sample value as the exposition format writes it. */
export function formatValue(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (Number.isNaN(value)) return 'NaN';
  return String(value);
}

function cutLabel(value: string): string {
  return value.length <= MAX_LABEL_VALUE_LENGTH ? value : `${value.slice(0, MAX_LABEL_VALUE_LENGTH - 1)}…`;
}

type MetricType = 'counter' | 'gauge' | 'histogram';

/** Where a metric reports combinations beyond its cap. */
type OverflowHook = (metric: string) => void;

/** What the three metric classes share: label handling, the series map and the cap. */
abstract class Metric<L extends string, S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: MetricType;
  protected readonly series = new Map<string, { labels: readonly string[]; state: S }>();
  readonly #maxSeries: number;
  readonly #onOverflow: OverflowHook;

  constructor(spec: MetricSpec<L>, maxSeries: number, onOverflow: OverflowHook, reserved: readonly string[]) {
    checkName(spec.name);
    const labelNames = [...(spec.labelNames ?? [])];
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith('__') || reserved.includes(label))
        throw new MetricsError(
          MetricsErrorCode.invalidName,
          `${spec.name}: label name ${JSON.stringify(label)} is not allowed`,
        );
    }
    if (new Set(labelNames).size !== labelNames.length)
      throw new MetricsError(MetricsErrorCode.invalidName, `${spec.name}: label names repeat`);
    this.name = spec.name;
    this.help = spec.help;
    this.labelNames = Object.freeze(labelNames);
    this.#maxSeries = maxSeries;
    this.#onOverflow = onOverflow;
  }

  /** Creates the one series of an unlabelled metric; subclasses call it once their fields are set. */
  protected seed(): void {
    if (this.labelNames.length === 0) this.series.set('', { labels: [], state: this.initial() });
  }

  protected abstract initial(): S;

  /** The series of `labels`, created on first use; beyond the cap, the shared overflow series. */
  protected state(labels: LabelValues<L> | undefined): S {
    const values = this.values(labels);
    const key = values.length === 0 ? '' : JSON.stringify(values);
    const found = this.series.get(key);
    if (found) return found.state;
    const overflowing = values.length > 0 && this.series.size >= this.#maxSeries;
    if (overflowing) {
      this.#onOverflow(this.name);
      const overflow = this.labelNames.map(() => OVERFLOW_LABEL_VALUE);
      const overflowKey = JSON.stringify(overflow);
      const shared = this.series.get(overflowKey);
      if (shared) return shared.state;
      const entry = { labels: overflow, state: this.initial() };
      this.series.set(overflowKey, entry);
      return entry.state;
    }
    const entry = { labels: values, state: this.initial() };
    this.series.set(key, entry);
    return entry.state;
  }

  /** The current state of a series, or undefined when it was never observed. */
  protected peek(labels: LabelValues<L> | undefined): S | undefined {
    const values = this.values(labels);
    return this.series.get(values.length === 0 ? '' : JSON.stringify(values))?.state;
  }

  private values(labels: LabelValues<L> | undefined): string[] {
    const given = labels ?? ({} as LabelValues<L>);
    const keys = Object.keys(given);
    const bad =
      keys.length !== this.labelNames.length || this.labelNames.some((l) => !Object.hasOwn(given, l));
    if (bad)
      throw new MetricsError(
        MetricsErrorCode.invalidLabels,
        `${this.name}: expected labels {${this.labelNames.join(', ')}}, got {${keys.join(', ')}}`,
      );
    return this.labelNames.map((l) => {
      const value: unknown = given[l];
      if (typeof value !== 'string')
        throw new MetricsError(MetricsErrorCode.invalidLabels, `${this.name}: label ${l} must be a string`);
      return cutLabel(value);
    });
  }

  /** Drops every series (an unlabelled metric then renders no sample until it is set again). */
  reset(): void {
    this.series.clear();
  }

  /** Number of series currently held (the overflow series included). */
  get size(): number {
    return this.series.size;
  }

  /** The `{a="x",b="y"}` part of a sample line, with extra labels appended (`le`). */
  protected labelText(values: readonly string[], extra: readonly (readonly [string, string])[] = []): string {
    const pairs: (readonly [string, string])[] = this.labelNames.map((l, i) => [l, values[i] ?? ''] as const);
    pairs.push(...extra);
    if (pairs.length === 0) return '';
    return `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
  }

  /** The metric's lines, HELP and TYPE first. */
  render(): string[] {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, state } of this.series.values()) lines.push(...this.sampleLines(labels, state));
    return lines;
  }

  protected abstract sampleLines(labels: readonly string[], state: S): string[];
}

function checkName(name: string): void {
  if (!METRIC_NAME.test(name) || !name.startsWith(METRIC_PREFIX) || name.length === METRIC_PREFIX.length)
    throw new MetricsError(
      MetricsErrorCode.invalidName,
      `metric name ${JSON.stringify(name)} must match ${METRIC_NAME.source} and start with ${METRIC_PREFIX}`,
    );
}

function checkFinite(metric: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new MetricsError(MetricsErrorCode.invalidValue, `${metric}: value ${String(value)} is not finite`);
}

/** Gauges may be ±Inf (an age that never started); NaN is still refused. */
function checkNumber(metric: string, value: number): void {
  if (typeof value !== 'number' || Number.isNaN(value))
    throw new MetricsError(
      MetricsErrorCode.invalidValue,
      `${metric}: value ${String(value)} is not a number`,
    );
}

/** A monotonically increasing count. */
export class Counter<L extends string = never> extends Metric<L, { value: number }> {
  readonly type = 'counter';
  constructor(spec: MetricSpec<L>, maxSeries: number, onOverflow: OverflowHook) {
    super(spec, maxSeries, onOverflow, []);
    this.seed();
  }
  protected initial() {
    return { value: 0 };
  }
  /** Adds `value` (default 1, never negative) to the series of `labels`. */
  inc(labels?: LabelValues<L>, value = 1): void {
    checkFinite(this.name, value);
    if (value < 0)
      throw new MetricsError(
        MetricsErrorCode.invalidValue,
        `${this.name}: a counter cannot decrease (${value})`,
      );
    this.state(labels).value += value;
  }
  /** The series' value, or undefined when it was never observed. */
  get(labels?: LabelValues<L>): number | undefined {
    return this.peek(labels)?.value;
  }
  protected sampleLines(labels: readonly string[], state: { value: number }): string[] {
    return [`${this.name}${this.labelText(labels)} ${formatValue(state.value)}`];
  }
}

/** A value that goes up and down. */
export class Gauge<L extends string = never> extends Metric<L, { value: number }> {
  readonly type = 'gauge';
  /** Runs before each render (see {@link GaugeSpec.collect}). */
  readonly collect: ((gauge: Gauge<L>) => void) | undefined;
  constructor(spec: GaugeSpec<L>, maxSeries: number, onOverflow: OverflowHook) {
    super(spec, maxSeries, onOverflow, []);
    this.collect = spec.collect;
    this.seed();
  }
  protected initial() {
    return { value: 0 };
  }
  /** Sets the series of `labels` to `value` (±Infinity allowed, NaN not). */
  set(labels: LabelValues<L> | undefined, value: number): void {
    checkNumber(this.name, value);
    this.state(labels).value = value;
  }
  /** Adds `value` (default 1). */
  inc(labels?: LabelValues<L>, value = 1): void {
    checkNumber(this.name, value);
    this.state(labels).value += value;
  }
  /** Subtracts `value` (default 1). */
  dec(labels?: LabelValues<L>, value = 1): void {
    this.inc(labels, -value);
  }
  /** The series' value, or undefined when it was never set. */
  get(labels?: LabelValues<L>): number | undefined {
    return this.peek(labels)?.value;
  }
  protected sampleLines(labels: readonly string[], state: { value: number }): string[] {
    return [`${this.name}${this.labelText(labels)} ${formatValue(state.value)}`];
  }
}

interface HistogramState {
  readonly counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into cumulative buckets, with their sum and count. */
export class Histogram<L extends string = never> extends Metric<L, HistogramState> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  constructor(spec: HistogramSpec<L>, maxSeries: number, onOverflow: OverflowHook) {
    const buckets = [...(spec.buckets ?? DEFAULT_BUCKETS)];
    const bad =
      buckets.length === 0 ||
      buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= (buckets[i - 1] as number)));
    if (bad)
      throw new MetricsError(
        MetricsErrorCode.invalidBuckets,
        `${spec.name}: buckets must be finite, ascending and distinct, got [${buckets.join(', ')}]`,
      );
    super(spec, maxSeries, onOverflow, ['le']);
    this.buckets = Object.freeze(buckets);
    this.seed();
  }
  protected initial(): HistogramState {
    return { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
  }
  /** Records one observation of `value`. */
  observe(labels: LabelValues<L> | undefined, value: number): void {
    checkFinite(this.name, value);
    const state = this.state(labels);
    for (let i = 0; i < this.buckets.length; i++)
      if (value <= (this.buckets[i] as number)) state.counts[i]! += 1;
    state.sum += value;
    state.count += 1;
  }
  /** Count and sum of a series, or undefined when it was never observed. */
  get(labels?: LabelValues<L>): { readonly count: number; readonly sum: number } | undefined {
    const state = this.peek(labels);
    return state ? { count: state.count, sum: state.sum } : undefined;
  }
  protected sampleLines(labels: readonly string[], state: HistogramState): string[] {
    const lines = this.buckets.map(
      (b, i) =>
        `${this.name}_bucket${this.labelText(labels, [['le', formatValue(b)]])} ${state.counts[i] ?? 0}`,
    );
    lines.push(`${this.name}_bucket${this.labelText(labels, [['le', '+Inf']])} ${state.count}`);
    lines.push(`${this.name}_sum${this.labelText(labels)} ${formatValue(state.sum)}`);
    lines.push(`${this.name}_count${this.labelText(labels)} ${state.count}`);
    return lines;
  }
}

/** Options of {@link MetricsRegistry}. */
export interface RegistryOptions {
  /** Label combinations kept per metric before new ones go to `__overflow__` (default 1,000). */
  readonly maxSeriesPerMetric?: number;
}

const OVERFLOW_METRIC = 'agent_runtime_metrics_series_overflow_total';

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/** Holds the metrics of one process and renders them. */
export class MetricsRegistry {
  readonly #metrics = new Map<string, AnyMetric>();
  readonly #maxSeries: number;
  /** Observations that found their metric over its series cap, by metric. */
  readonly overflows: Counter<'metric'>;
  /** `collect` callbacks (and extra exposition sources) that threw, by metric or source. */
  readonly collectFailures: Counter<'metric'>;

  constructor(options: RegistryOptions = {}) {
    const max = options.maxSeriesPerMetric ?? DEFAULT_MAX_SERIES;
    if (!Number.isInteger(max) || max < 1)
      throw new MetricsError(
        MetricsErrorCode.invalidOption,
        `maxSeriesPerMetric must be a positive integer, got ${String(max)}`,
      );
    this.#maxSeries = max;
    this.overflows = this.counter({
      name: OVERFLOW_METRIC,
      help: 'Observations recorded under __overflow__ because their metric reached its label-combination cap.',
      labelNames: ['metric'],
    });
    this.collectFailures = this.counter({
      name: 'agent_runtime_metrics_collect_failures_total',
      help: 'Scrape-time collect callbacks or extra exposition sources that failed.',
      labelNames: ['metric'],
    });
  }

  readonly #overflow: OverflowHook = (metric) => {
    // the overflow counter has one series per metric; it never reports on itself
    if (metric !== OVERFLOW_METRIC) this.overflows.inc({ metric });
  };

  #add<M extends { readonly name: string }>(metric: M): M {
    if (this.#metrics.has(metric.name))
      throw new MetricsError(MetricsErrorCode.duplicate, `metric ${metric.name} is already registered`);
    this.#metrics.set(metric.name, metric as unknown as AnyMetric);
    return metric;
  }

  /** Registers a counter (name conventionally ending in `_total`). */
  counter<L extends string = never>(spec: MetricSpec<L>): Counter<L> {
    return this.#add(new Counter<L>(spec, this.#maxSeries, this.#overflow));
  }

  /** Registers a gauge, optionally computed on scrape by `collect`. */
  gauge<L extends string = never>(spec: GaugeSpec<L>): Gauge<L> {
    return this.#add(new Gauge<L>(spec, this.#maxSeries, this.#overflow));
  }

  /** Registers a histogram. */
  histogram<L extends string = never>(spec: HistogramSpec<L>): Histogram<L> {
    return this.#add(new Histogram<L>(spec, this.#maxSeries, this.#overflow));
  }

  /** Names of the registered metric families, in registration order. */
  names(): string[] {
    return [...this.#metrics.keys()];
  }

  /** The registered metric of that name, if any. */
  get(name: string): Counter<string> | Gauge<string> | Histogram<string> | undefined {
    return this.#metrics.get(name);
  }

  /** Runs the `collect` callbacks, then renders every metric in the text exposition format 0.0.4. */
  render(): string {
    for (const metric of this.#metrics.values()) {
      if (!(metric instanceof Gauge) || metric.collect === undefined) continue;
      try {
        metric.collect(metric);
      } catch {
        // one broken callback must not take the whole scrape down; its last values stay
        this.collectFailures.inc({ metric: metric.name });
      }
    }
    const lines: string[] = [];
    for (const metric of this.#metrics.values()) lines.push(...metric.render());
    return `${lines.join('\n')}\n`;
  }
}
