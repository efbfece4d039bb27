/**
 * `agent-runtime bench decide [--rules N] [--iterations M] [--json]`.
 * @module
 */
import { parseArgs } from 'node:util';
import { runDecideBench } from '../../bench/decide.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { Command } from '../io.ts';

const USAGE = `usage:
  agent-runtime bench decide [--rules N] [--iterations M] [--json]`;

function positiveInt(option: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`${option}: expected a positive integer, got ${JSON.stringify(value)}`, USAGE);
  return n;
}

export const benchCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub !== 'decide')
    throw new UsageError(sub === undefined ? 'missing benchmark name' : `unknown benchmark "${sub}"`, USAGE);
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      rules: { type: 'string' },
      iterations: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const result = runDecideBench({
    rules: positiveInt('--rules', values.rules, 1000),
    iterations: positiveInt('--iterations', values.iterations, 200_000),
  });
  if (values.json) {
    const { name, rules, p50_us, p90_us, p99_us, per_second } = result;
    println(io.stdout, JSON.stringify({ name, rules, p50_us, p90_us, p99_us, per_second }));
  } else {
    println(io.stdout, `decide: ${result.rules} rules, ${result.iterations} decisions`);
    println(
      io.stdout,
      `  p50 ${result.p50_us} µs   p90 ${result.p90_us} µs   p99 ${result.p99_us} µs   ${result.per_second.toLocaleString('en-US')} decisions/s`,
    );
    println(
      io.stdout,
      '  anchors: Cedar wasm 105–2,000 µs/decision; Microsoft AGT 11–30 µs p50; goal p50 ≤ 2 µs, p99 ≤ 10 µs',
    );
  }
  return ExitCode.ok;
};
