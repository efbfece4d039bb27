/**
 * The observer's metrics input: it scrapes Prometheus endpoints (the workers', the approvals
 * service's, the aggregator's) and hands each sample to the rule engine as a `metric.sample` event,
 * so rules can match system metrics beside the audit stream (an approval backlog, audit lag, a
 * denial rate). Samples are evaluated only; they are never appended to the audit trail.
 * @module
 */
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditEvent } from '../activities/audit/types.ts';

/** One sample of the text exposition format. */
export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Most samples taken from one scrape (the rest are ignored and counted). */
export const MAX_SAMPLES_PER_SCRAPE = 5_000;

const LINE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g;

function unescape(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** Parses Prometheus text exposition (0.0.4); comments, histograms' `_bucket` lines and junk are skipped. */
export function parseExposition(text: string, limit = MAX_SAMPLES_PER_SCRAPE): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const raw of text.split('\n')) {
    if (samples.length >= limit) break;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const [, name, labelText, valueText] = match;
    if (name!.endsWith('_bucket')) continue;
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (Number.isNaN(value)) continue;
    const labels: Record<string, string> = {};
    for (const [, key, v] of (labelText ?? '').matchAll(LABEL)) labels[key!] = unescape(v!);
    samples.push({ name: name!, labels, value });
  }
  return samples;
}

/** A scrape target. */
export interface ScrapeTarget {
  /** Names the target in the events (`attrs.job`). */
  readonly job: string;
  /** The `/metrics` URL. */
  readonly url: string;
  readonly everyMs: number;
}

/** Turns samples into engine events: negative seqs, so they never touch the stream's seq bookkeeping. */
export function sampleEvents(
  job: string,
  samples: readonly MetricSample[],
  at: Date,
  nextSeq: () => number,
): AuditEvent[] {
  return samples.map((sample) => ({
    seq: nextSeq(),
    ts: at.toISOString(),
    source: 'observer',
    agent: sample.labels['agent'] ?? null,
    run: null,
    step: null,
    kind: AuditKind.metricSample,
    attrs: { job, name: sample.name, labels: sample.labels, value: sample.value },
  }));
}

/** A running scraper. */
export interface MetricsScraper {
  /** Scrapes every target once now. */
  scrapeOnce(): Promise<void>;
  close(): void;
}

/** Scrapes each target on its interval and hands the events to `onEvents`; failures go to `onError`. */
export function startMetricsScraper(options: {
  readonly targets: readonly ScrapeTarget[];
  readonly onEvents: (events: AuditEvent[]) => Promise<void>;
  readonly now?: () => Date;
  readonly fetch?: typeof fetch;
  readonly onError?: (error: unknown) => void;
}): MetricsScraper {
  const now = options.now ?? (() => new Date());
  const get = options.fetch ?? fetch;
  let seq = 0;
  const nextSeq = (): number => --seq;
  const scrape = async (target: ScrapeTarget): Promise<void> => {
    try {
      const res = await get(target.url, { signal: AbortSignal.timeout(Math.min(10_000, target.everyMs)) });
      if (!res.ok) throw new Error(`${target.url} answered ${res.status}`);
      const events = sampleEvents(target.job, parseExposition(await res.text()), now(), nextSeq);
      await options.onEvents(events);
    } catch (error) {
      options.onError?.(error);
    }
  };
  const timers = options.targets.map((target) => setInterval(() => void scrape(target), target.everyMs));
  return {
    scrapeOnce: async () => {
      await Promise.all(options.targets.map(scrape));
    },
    close: () => {
      for (const timer of timers) clearInterval(timer);
    },
  };
}
