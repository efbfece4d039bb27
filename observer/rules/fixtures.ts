/**
 * Expands a rule's fixture events into audit events, and runs fixtures through an engine. Fixture events leave
 * out what they do not care about: `seq` defaults to the previous + 1, `ts` to the previous + `after` (default
 * 1s) from 2026-01-01T00:00:00Z, `source` to `workflow`, `agent` to `agent-1`, `run` to `run-1`, `step` to
 * null, `attrs` to `{}`. `repeat: n` emits n copies; `{{i}}` in attribute strings becomes the copy's index.
 * @module
 */
import type { AuditEvent, AuditKind, AuditSource } from '../../activities/audit/types.ts';
import { parseDuration } from '../../policy/duration.ts';
import { ObserverFixtureError } from '../errors.ts';
import { createEngine } from './engine.ts';
import type { BaselineTable, EngineOptions, Finding } from './engine.ts';
import type { FixtureEventSpec, Rule } from './schema.ts';

/** Time of the first fixture event unless it states `ts`. */
export const FIXTURE_EPOCH = Date.parse('2026-01-01T00:00:00.000Z');

function substitute(value: unknown, index: number): unknown {
  if (typeof value === 'string') return value.replaceAll('{{i}}', String(index));
  if (Array.isArray(value)) return value.map((v: unknown) => substitute(v, index));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, index);
    return out;
  }
  return value;
}

/** Expands fixture events (see the module doc) into audit events. */
export function expandFixture(specs: readonly FixtureEventSpec[]): AuditEvent[] {
  const out: AuditEvent[] = [];
  let seq = 0;
  let t = FIXTURE_EPOCH - 1000;
  for (const spec of specs) {
    const repeat = spec.repeat ?? 1;
    for (let i = 0; i < repeat; i++) {
      seq = spec.seq !== undefined && i === 0 ? spec.seq : seq + 1;
      if (spec.ts !== undefined && i === 0) {
        const parsed = Date.parse(spec.ts);
        if (!Number.isFinite(parsed)) throw new ObserverFixtureError(`fixture ts "${spec.ts}" is not a date`);
        t = parsed;
      } else {
        const step = spec.after === undefined ? 1000 : parseDuration(spec.after);
        if (step === undefined)
          throw new ObserverFixtureError(`fixture after "${spec.after}" is not a duration`);
        t += step;
      }
      out.push({
        seq,
        ts: new Date(t).toISOString(),
        source: (spec.source ?? 'workflow') as AuditSource,
        agent: spec.agent === undefined ? 'agent-1' : spec.agent,
        run: spec.run === undefined ? 'run-1' : spec.run,
        step: spec.step ?? null,
        kind: spec.kind as AuditKind,
        attrs: substitute(spec.attrs ?? {}, i) as Record<string, unknown>,
      });
    }
  }
  return out;
}

/** Feeds events to a fresh engine holding only `rule`, then ticks at `tickAt` (if given); returns all findings. */
export function runEvents(
  rule: Rule,
  events: readonly AuditEvent[],
  options: Partial<EngineOptions> & { tickAt?: number } = {},
): Finding[] {
  const last = events.at(-1);
  const clock = last ? Date.parse(last.ts) : FIXTURE_EPOCH;
  const engine = createEngine([rule], { now: () => clock, ...options });
  const findings = events.flatMap((e) => engine.ingest(e));
  if (options.tickAt !== undefined) findings.push(...engine.tick(options.tickAt));
  return findings;
}

/**
 * Runs a rule's positive and negative fixtures. After the events, the engine ticks one window past the last
 * event so `absence` rules resolve. Returns the findings of each side.
 */
export function runFixtures(
  rule: Rule,
  options: Partial<EngineOptions> = {},
): { positive: Finding[]; negative: Finding[] } {
  const run = (specs: readonly FixtureEventSpec[]): Finding[] => {
    const events = expandFixture(specs);
    const last = events.at(-1);
    const windowMs = rule.correlate && 'windowMs' in rule.correlate ? rule.correlate.windowMs : 0;
    const tickAt = (last ? Date.parse(last.ts) : FIXTURE_EPOCH) + windowMs + 1;
    const baselines = options.baselines ?? (rule.spec.fixtures.baselines as BaselineTable | undefined);
    return runEvents(rule, events, { ...options, ...(baselines ? { baselines } : {}), tickAt });
  };
  return { positive: run(rule.spec.fixtures.positive), negative: run(rule.spec.fixtures.negative) };
}
