/**
 * `npm run bench`: runs every benchmark and prints one JSON line per result, then a summary.
 * @module
 */
import { runDecideBench } from './decide.ts';

const results = [
  runDecideBench({ rules: 1000 }),
  runDecideBench({ rules: 100 }),
  runDecideBench({ rules: 10 }),
];
for (const result of results) process.stdout.write(`${JSON.stringify(result)}\n`);
process.stdout.write(
  '\ndecision point (goal at 1,000 rules: p50 ≤ 2 µs, p99 ≤ 10 µs; anchors: Cedar wasm 105–2,000 µs, AGT 11–30 µs p50)\n',
);
for (const r of results) {
  process.stdout.write(
    `  ${String(r.rules).padStart(5)} rules: p50 ${r.p50_us} µs, p90 ${r.p90_us} µs, p99 ${r.p99_us} µs, ${r.per_second.toLocaleString('en-US')}/s; ${r.ratio_vs_validate}× zod validation alone (${r.baseline_validate_p50_us} µs)\n`,
  );
}
