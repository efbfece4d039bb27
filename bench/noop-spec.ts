/**
 * The benchmark's tools as the policy sees them. PURE (zod and pure code only): the workflow
 * bundles import this module to decide on calls. Both tools do nothing and read nothing
 * (`effect: 'none'`), so the execution guard does not journal them; they differ only in the tier
 * the benchmark governance document gives them (`bench.noop` autonomous, `bench.gated` approval).
 * @module
 */
import { z } from 'zod';
import { defineToolSpec } from '../activities/tools/define.ts';
import type { AnyToolSpec } from '../policy/index.ts';

/** Arguments of both benchmark tools. */
export const BenchToolArgs = z.strictObject({ i: z.int().nonnegative() });
export type BenchToolArgs = z.infer<typeof BenchToolArgs>;

/** `bench.noop`: autonomous in `bench/fixtures/governance.yaml`. */
export const benchNoop = defineToolSpec({
  name: 'bench.noop',
  description: 'Does nothing (benchmark).',
  args: BenchToolArgs,
  resource: (args) => `bench://noop/${args.i}`,
  effect: 'none',
});

/** `bench.gated`: needs one approval in `bench/fixtures/governance.yaml`. */
export const benchGated = defineToolSpec({
  name: 'bench.gated',
  description: 'Does nothing, after a human approves (benchmark).',
  args: BenchToolArgs,
  resource: (args) => `bench://gated/${args.i}`,
  effect: 'none',
});

/** Activity name of the action benchmark's bare side (the same no-op without the guard). */
export const BARE_ACTIVITY = 'benchNoop';

/** The name the workflow bundle looks for in a spec module (`worker/bundle.ts`). */
export const toolSpecs: readonly AnyToolSpec[] = Object.freeze([benchNoop, benchGated]);
