/**
 * What the runtime benchmarks share: an in-memory Temporal dev server of their own, a worker
 * connection and a client, an audit file in a scratch directory, the benchmark governance
 * document and a vote-signing key; `stop()` undoes everything in reverse order.
 * @module
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { Worker } from '@temporalio/worker';
import { keyIdOf, parseGovernanceOrThrow } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import { openAuditFile } from '../activities/audit/index.ts';
import type { AuditFile } from '../activities/audit/index.ts';
import { startDevServer } from '../worker/temporal/dev-server.ts';
import { SEARCH_ATTRIBUTES } from '../worker/temporal/search-attributes.ts';
import { percentile } from './stats.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
/** `.ts` from source, `.js` from `dist/`. */
export const EXT = extname(fileURLToPath(import.meta.url));

/** A module of `bench/` by base name, as it exists next to this one (source or `dist/`). */
export function benchModule(name: string): string {
  return join(here, `${name}${EXT}`);
}

/** `bench/fixtures/<name>`: next to this module from source; from `dist/bench`, in the source tree. */
export function benchFixture(name: string): string {
  const local = join(here, 'fixtures', name);
  return existsSync(local) ? local : join(here, '..', '..', 'bench', 'fixtures', name);
}

/** Where a benchmark writes: the result line or text, and progress notes. */
export interface BenchOutput {
  /** Print one JSON line instead of text. */
  readonly json?: boolean;
  /** Result output (default `process.stdout`). */
  readonly out?: NodeJS.WritableStream;
  /** Progress notes (default: none). */
  readonly progress?: (message: string) => void;
}

export interface BenchEnv {
  readonly address: string;
  readonly namespace: string;
  readonly connection: NativeConnection;
  readonly client: Client;
  /** Scratch directory (removed by `stop()`). */
  readonly dir: string;
  /** The audit file the workers append to (`<dir>/audit.jsonl`, fsync `never` as in `dev`). */
  readonly audit: AuditFile;
  readonly governance: LoadedGovernance;
  readonly secretKey: Uint8Array;
  readonly publicKeys: ReadonlyMap<string, Uint8Array>;
  /** keyId → public key hex, for run inputs. */
  readonly trustedKeys: Readonly<Record<string, string>>;
  /** Runs `worker` until `stop()`. */
  run(worker: Worker): void;
  /** Registers a cleanup (run last-in first-out by `stop()`). */
  onStop(cleanup: () => Promise<void>): void;
  stop(): Promise<void>;
}

let runtimeInstalled = false;

/** Keeps the SDK's worker chatter out of the output (warnings and errors still show). */
export function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // installed already (CLI, tests)
  }
}

/** Starts a fresh in-memory dev server and everything around it. */
export async function startBenchEnv(): Promise<BenchEnv> {
  installQuietRuntime();
  const cleanups: (() => Promise<void>)[] = [];
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const stop = async (): Promise<void> => {
    for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    await Promise.allSettled(running);
    workers.length = 0;
    while (cleanups.length > 0)
      await cleanups
        .pop()?.()
        .catch(() => undefined);
  };
  try {
    const dir = await mkdtemp(join(tmpdir(), 'agent-runtime-bench-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const governance = parseGovernanceOrThrow(
      await readFile(benchFixture('governance.yaml'), 'utf8'),
      'bench/fixtures/governance.yaml',
    );
    const server = await startDevServer({ searchAttributes: SEARCH_ATTRIBUTES });
    cleanups.push(() => server.stop());
    const connection = await NativeConnection.connect({ address: server.address });
    cleanups.push(() => connection.close());
    const clientConnection = await Connection.connect({ address: server.address });
    cleanups.push(() => clientConnection.close());
    const client = new Client({ connection: clientConnection, namespace: server.namespace });
    const audit = await openAuditFile(join(dir, 'audit.jsonl'));
    cleanups.push(() => audit.close());
    const secretKey = ed25519.utils.randomSecretKey();
    const publicKey = ed25519.getPublicKey(secretKey);
    const keyId = keyIdOf(publicKey);
    return {
      address: server.address,
      namespace: server.namespace,
      connection,
      client,
      dir,
      audit,
      governance,
      secretKey,
      publicKeys: new Map([[keyId, publicKey]]),
      trustedKeys: { [keyId]: bytesToHex(publicKey) },
      run: (worker) => {
        workers.push(worker);
        running.push(worker.run());
      },
      onStop: (cleanup) => void cleanups.push(cleanup),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Milliseconds, rounded to 0.01. */
export function ms(value: number): number {
  return Math.round(value * 100) / 100;
}

/** p50 and p99 of `samples` (ms), rounded. */
export function latencySummary(samples: readonly number[]): { p50: number; p99: number } {
  const sorted = Float64Array.from(samples).sort();
  return { p50: ms(percentile(sorted, 50)), p99: ms(percentile(sorted, 99)) };
}

/** Runs `task` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** Writes the result: one JSON line, or `text`. */
export function report(output: BenchOutput, result: object, text: () => string): void {
  const out = output.out ?? process.stdout;
  out.write(output.json ? `${JSON.stringify(result)}\n` : `${text()}\n`);
}
