/**
 * `agent-runtime bench decide|actions|approvals|proxy|parked|audit [...] [--json]`: the benchmarks of `bench/`.
 * The runtime benchmarks (actions, approvals, parked) start a Temporal dev server of their own.
 * @module
 */
import { parseArgs } from 'node:util';
import { runDecideBench } from '../../bench/decide.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';

const USAGE = `usage:
  agent-runtime bench decide [--rules N] [--iterations M] [--json]
      decision latency with N rules (goal at 1,000: p50 ≤ 2 µs, p99 ≤ 10 µs)
  agent-runtime bench actions [--n N] [--batch B] [--json]
      N governed vs N bare Temporal activities running the same no-op, interleaved (goal ratio ≤ 1.15)
  agent-runtime bench approvals [--n N] [--channel operator|slack|email|web] [--json]
      vote → approved tool activity started (goal p50 ≤ 100 ms, p99 ≤ 250 ms); with --channel, through the
      approvals service's real HTTP path (Slack: signed click to Bolt against a local Web API stand-in)
  agent-runtime bench proxy [--n N] [--json]
      the model proxy's overhead vs direct calls to the same local stand-in (goal p50 ≤ 1 ms, p99 ≤ 5 ms)
  agent-runtime bench parked [--runs N] [--heap-mb M] [--max-cached N] [--json]
      N runs parked on approval against one agents worker: its RSS, then all approved (goal ≤ 1 GB, 0 lost)
      --heap-mb: the worker's --max-old-space-size (default 640; 0 = Node's default), which also sizes
      the SDK's default workflow cache
  agent-runtime bench audit [--n N] [--writers W] [--json]
      hash-chained appends on SQLite (batched, single, through the HTTP aggregator with W batching
      writers) against plain SQLite inserts, and verifying the written stream (goal ≥ 5,000 events/s)
  agent-runtime bench observer [--n N] [--json]
      event appended → observer finding → freezeTools acknowledged by the workflow, on the real stack
      (goal p99 ≤ 1 s); rule evaluation per event with 50 rules (goal p99 ≤ 1 ms)`;

function positiveInt(option: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw new UsageError(`${option}: expected a positive integer, got ${JSON.stringify(value)}`, USAGE);
  return n;
}

function optionalPositiveInt(option: string, value: string | undefined): number | undefined {
  return value === undefined ? undefined : positiveInt(option, value, 1);
}

/** Runs one benchmark; resolves with the exit code. */
type Bench = (args: string[], io: CliIo) => Promise<number>;

/** Progress notes go to stderr, so `--json` output stays one line. */
const progressTo =
  (io: CliIo) =>
  (message: string): void =>
    println(io.stderr, message);

const BENCHES: Readonly<Record<string, Bench>> = {
  observer: async (args, io) => {
    const { values } = parseArgs({
      args,
      strict: true,
      options: { n: { type: 'string' }, json: { type: 'boolean', default: false } },
    });
    const { benchObserver } = await import('../../bench/observer.ts');
    await benchObserver({
      n: positiveInt('--n', values.n, 100),
      json: values.json,
      out: io.stdout,
      progress: progressTo(io),
    });
    return ExitCode.ok;
  },
  decide: async (args, io) => {
    const { values } = parseArgs({
      args,
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
      return ExitCode.ok;
    }
    println(io.stdout, `decide: ${result.rules} rules, ${result.iterations} decisions`);
    println(
      io.stdout,
      `  p50 ${result.p50_us} µs   p90 ${result.p90_us} µs   p99 ${result.p99_us} µs   ${result.per_second.toLocaleString('en-US')} decisions/s`,
    );
    println(
      io.stdout,
      '  anchors: Cedar wasm 105–2,000 µs/decision; Microsoft AGT 11–30 µs p50; goal p50 ≤ 2 µs, p99 ≤ 10 µs',
    );
    return ExitCode.ok;
  },
  actions: async (args, io) => {
    const { values } = parseArgs({
      args,
      strict: true,
      options: {
        n: { type: 'string' },
        batch: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    const { benchActions } = await import('../../bench/actions.ts');
    await benchActions({
      n: positiveInt('--n', values.n, 200),
      batch: positiveInt('--batch', values.batch, 20),
      json: values.json,
      out: io.stdout,
      progress: progressTo(io),
    });
    return ExitCode.ok;
  },
  approvals: async (args, io) => {
    const { values } = parseArgs({
      args,
      strict: true,
      options: {
        n: { type: 'string' },
        channel: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    const channels = ['operator', 'slack', 'email', 'web'] as const;
    const channel = channels.find((c) => c === (values.channel ?? 'operator'));
    if (!channel)
      throw new UsageError(
        `--channel: expected one of ${channels.join(', ')}, got ${JSON.stringify(values.channel)}`,
        USAGE,
      );
    const { benchApprovals } = await import('../../bench/approvals.ts');
    await benchApprovals({
      channel,
      n: positiveInt('--n', values.n, 50),
      json: values.json,
      out: io.stdout,
      progress: progressTo(io),
    });
    return ExitCode.ok;
  },
  proxy: async (args, io) => {
    const { values } = parseArgs({
      args,
      strict: true,
      options: { n: { type: 'string' }, json: { type: 'boolean', default: false } },
    });
    const { benchProxy } = await import('../../bench/proxy.ts');
    await benchProxy({
      n: positiveInt('--n', values.n, 500),
      json: values.json,
      out: io.stdout,
      progress: progressTo(io),
    });
    return ExitCode.ok;
  },
  audit: async (args, io) => {
    const { values } = parseArgs({
      args,
      strict: true,
      options: {
        n: { type: 'string' },
        writers: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    const { benchAudit } = await import('../../bench/audit.ts');
    await benchAudit({
      n: positiveInt('--n', values.n, 20_000),
      writers: positiveInt('--writers', values.writers, 8),
      json: values.json,
      out: io.stdout,
      progress: progressTo(io),
    });
    return ExitCode.ok;
  },
  parked: async (args, io) => {
    const { values } = parseArgs({
      args,
      strict: true,
      options: {
        runs: { type: 'string' },
        'max-cached': { type: 'string' },
        'heap-mb': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    const { benchParked } = await import('../../bench/parked.ts');
    const maxCachedWorkflows = optionalPositiveInt('--max-cached', values['max-cached']);
    const result = await benchParked({
      runs: positiveInt('--runs', values.runs, 1000),
      ...(maxCachedWorkflows === undefined ? {} : { maxCachedWorkflows }),
      heapMb: values['heap-mb'] === '0' ? 0 : positiveInt('--heap-mb', values['heap-mb'], 640),
      json: values.json,
      out: io.stdout,
      progress: progressTo(io),
    });
    return result.lost === 0 ? ExitCode.ok : ExitCode.failed;
  },
};

export const benchCommand: Command = async (argv, io) => {
  const [name, ...rest] = argv;
  const bench = name !== undefined && Object.hasOwn(BENCHES, name) ? BENCHES[name] : undefined;
  if (!bench)
    throw new UsageError(
      name === undefined ? 'missing benchmark name' : `unknown benchmark "${name}"`,
      USAGE,
    );
  return bench(rest, io);
};
