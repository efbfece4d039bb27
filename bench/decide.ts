/**
 * Decision latency on a generated governance document with N rules: realistic mix of literal
 * and glob tool patterns, resource globs with exclusions, argument constraints, director
 * constraints and limits; calls drawn from the same tools with schema validation on.
 * @module
 */
import { z } from 'zod';
import { compilePolicy, decide, toolCatalog, validateGovernance } from '../policy/index.ts';
import type { ActionRequest, DecisionContext, ToolSpec } from '../policy/index.ts';
import { percentile, seededRandom } from './stats.ts';

export interface DecideBenchResult {
  readonly name: 'decide';
  readonly rules: number;
  readonly iterations: number;
  readonly p50_us: number;
  readonly p90_us: number;
  readonly p99_us: number;
  readonly per_second: number;
  /** Baseline in the same run: validating the same calls' arguments with zod alone. */
  readonly baseline_validate_p50_us: number;
  /** decide p50 / baseline p50: what matching rules costs on top of argument validation. */
  readonly ratio_vs_validate: number;
}

const TIERS = ['autonomous', 'autonomous', 'preapproved', 'approval', 'prohibited'] as const;
const OPS = ['read', 'write', 'list', 'delete'] as const;

/** Builds the generated document; exported so tests can check it validates. */
export function generateBenchDocument(rules: number, seed = 42): unknown {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const services = Math.max(5, Math.ceil(rules / 20));
  const generated = Array.from({ length: rules }, (_, i) => {
    const service = Math.floor(random() * services);
    const tier = pick(TIERS);
    const rule: Record<string, unknown> = {
      id: `rule-${i}`,
      tool: i % 25 === 0 ? `svc${service}.*` : `svc${service}.${pick(OPS)}`,
      tier,
    };
    if (random() < 0.8) {
      rule.resources = [
        `/data/svc${service}/${Math.floor(random() * 10)}/**`,
        ...(random() < 0.3 ? ['!/data/**/secret/**'] : []),
      ];
    }
    const constraints: Record<string, unknown> = {};
    if (random() < 0.5)
      constraints.amount = random() < 0.5 ? { lte: Math.floor(random() * 1000) } : { gt: 100, lt: 5000 };
    if (random() < 0.2) constraints.mode = { in: ['fast', 'safe'] };
    if (random() < 0.1) constraints.label = { matches: '^[a-z]+-[0-9]+$' };
    const when: Record<string, unknown> = {};
    if (Object.keys(constraints).length > 0) when.args = constraints;
    if (random() < 0.1) when.director = { minLevel: 50 };
    if (Object.keys(when).length > 0) rule.when = when;
    if (tier === 'preapproved' && random() < 0.5) rule.limits = { perRun: 10 };
    return rule;
  });
  return {
    schemaVersion: 1,
    identity: { id: 'bench-agent', name: 'Bench Agent', purpose: 'Benchmark workload.', owner: 'bench' },
    authority: {
      roles: { admin: { level: 80 }, operator: { level: 50 }, user: { level: 20 } },
      principals: [
        { id: 'ada', roles: ['admin'] },
        { id: 'otto', roles: ['operator'] },
        { id: 'uma', roles: ['user'] },
      ],
      directors: { minLevel: 20 },
    },
    actions: {
      default: { tier: 'approval', approval: { approvers: { minLevel: 50 }, quorum: 1, timeout: '15m' } },
      rules: generated,
    },
  };
}

/** Runs the benchmark; every call is timed on its own. */
export function runDecideBench(
  options: { rules?: number; iterations?: number; warmup?: number } = {},
): DecideBenchResult {
  const rules = options.rules ?? 1000;
  const iterations = options.iterations ?? 200_000;
  const loaded = validateGovernance(generateBenchDocument(rules), '(generated)');
  if (!loaded.ok)
    throw new Error(
      `generated document is invalid: ${loaded.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
    );
  const policy = compilePolicy(loaded.document, loaded.policyVersion);

  const services = Math.max(5, Math.ceil(rules / 20));
  const argsSchema = z.strictObject({
    path: z.string().min(1).max(4096),
    amount: z.number().int().nonnegative(),
    mode: z.enum(['fast', 'safe', 'slow']).optional(),
    label: z.string().max(64).optional(),
  });
  const specs: ToolSpec<z.infer<typeof argsSchema>>[] = [];
  for (let s = 0; s < services; s++) {
    for (const op of OPS)
      specs.push({ name: `svc${s}.${op}`, description: '', args: argsSchema, resource: (a) => a.path });
  }
  const context: DecisionContext = { tools: toolCatalog(specs), used: { 'rule-3': 4 }, posture: 'normal' };

  const random = seededRandom(7);
  const requests: ActionRequest[] = Array.from({ length: 4096 }, () => {
    const service = Math.floor(random() * services);
    return {
      tool: `svc${service}.${OPS[Math.floor(random() * OPS.length)]}`,
      args: {
        path: `/data/svc${service}/${Math.floor(random() * 10)}/${random() < 0.1 ? 'secret/' : ''}f${Math.floor(random() * 100)}.txt`,
        amount: Math.floor(random() * 6000),
        ...(random() < 0.5 ? { mode: random() < 0.5 ? 'fast' : 'slow' } : {}),
        ...(random() < 0.2 ? { label: `job-${Math.floor(random() * 100)}` } : {}),
      },
      director: random() < 0.5 ? 'uma' : 'otto',
    };
  });

  const warmup = options.warmup ?? Math.min(50_000, iterations);
  let sink = 0;
  const decideOnce = (i: number): void => {
    sink += decide(policy, requests[i & 4095]!, context).tier.length;
  };
  const validateOnce = (i: number): void => {
    sink += argsSchema.safeParse(requests[i & 4095]!.args).success ? 1 : 2;
  };
  for (let i = 0; i < warmup; i++) {
    decideOnce(i);
    validateOnce(i);
  }
  const samples = new Float64Array(iterations);
  const baseline = new Float64Array(iterations);
  let decideNanos = 0n;
  // interleaved so both see the same machine state
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint();
    decideOnce(i);
    const t1 = process.hrtime.bigint();
    validateOnce(i);
    const t2 = process.hrtime.bigint();
    decideNanos += t1 - t0;
    samples[i] = Number(t1 - t0) / 1000;
    baseline[i] = Number(t2 - t1) / 1000;
  }
  if (sink === 0) throw new Error('unreachable: decisions were optimised away');
  samples.sort();
  baseline.sort();
  const round = (n: number): number => Math.round(n * 1000) / 1000;
  const p50 = percentile(samples, 50);
  const baselineP50 = percentile(baseline, 50);
  return {
    name: 'decide',
    rules,
    iterations,
    p50_us: round(p50),
    p90_us: round(percentile(samples, 90)),
    p99_us: round(percentile(samples, 99)),
    per_second: Math.round(iterations / (Number(decideNanos) / 1e9)),
    baseline_validate_p50_us: round(baselineP50),
    ratio_vs_validate: Math.round((p50 / baselineP50) * 100) / 100,
  };
}
