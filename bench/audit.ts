/**
 * The tamper-evident audit store's write and verify throughput, in one run on one machine:
 *
 * 1. appends with the hash chain on SQLite through the store: batched `appendMany` and single
 *    `append`s (checkpoints signed every 1,000 records, as the aggregator's default);
 * 2. the same events through the HTTP aggregator running as its own process (`audit serve`),
 *    from concurrent writers using the batching client (each keeping many appends in flight, as
 *    a busy worker does);
 * 3. a baseline: the same rows inserted into a plain SQLite table in the same batches, without
 *    canonical JSON, hashing or checkpoints;
 *
 * and `verify_seconds`: reading and verifying the whole batched stream. Goal: ≥ 5,000 events/s
 * appended with the chain.
 * @module
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { ed25519 } from '@noble/curves/ed25519.js';
import type { AuditEventInput } from '../activities/audit/types.ts';
import { initSigningKey } from '../approval-channels/keys.ts';
import {
  createAuditAggregatorClient,
  ed25519Signer,
  openSqliteAuditStore,
  verifyStream,
} from '../audit/index.ts';
import { immediateTransaction } from '../db/sqlite.ts';
import { keyIdOf } from '../policy/votes.ts';
import type { BenchOutput } from './harness.ts';
import { EXT, mapLimit, report } from './harness.ts';
import { seededRandom } from './stats.ts';

/** Options of {@link benchAudit}. */
export interface AuditBenchOptions extends BenchOutput {
  /** Events per measurement (default 20,000). */
  readonly n?: number;
  /** Events per `appendMany` and per plain transaction (default 500). */
  readonly batch?: number;
  /** Concurrent HTTP writers (default 8). */
  readonly writers?: number;
}

/** What {@link benchAudit} reports. */
export interface AuditBenchResult {
  readonly name: 'audit';
  readonly n: number;
  readonly batch: number;
  /** Batched appends with the chain through the store (the headline figure). */
  readonly events_per_second: number;
  readonly single_events_per_second: number;
  readonly http_events_per_second: number;
  readonly http_writers: number;
  readonly plain_events_per_second: number;
  /** plain ÷ chained (batched): what the chain costs. */
  readonly chain_cost_ratio: number;
  readonly verify_seconds: number;
  readonly checkpoints: number;
}

const TOOLS = ['shell.exec', 'http.get', 'fs.write', 'crm.update', 'send_email', 'db.query'] as const;
const TIERS = ['autonomous', 'notify', 'approval', 'prohibited'] as const;

/** `count` realistic events (decisions, model calls, results), the same for the same seed. */
export function auditBenchEvents(count: number, seed = 7): AuditEventInput[] {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const hex = (length: number): string =>
    Array.from({ length }, () => Math.floor(random() * 16).toString(16)).join('');
  const policyVersion = hex(64);
  return Array.from({ length: count }, (_, i): AuditEventInput => {
    const run = `agent-run-${Math.floor(i / 40)}`;
    const step = i % 40;
    const tool = pick(TOOLS);
    switch (i % 3) {
      case 0:
        return {
          source: 'guard',
          agent: 'ops-assistant',
          run,
          step,
          kind: 'decision',
          attrs: {
            tool,
            tier: pick(TIERS),
            rule: `actions.rules[${Math.floor(random() * 12)}]`,
            policyVersion,
            args: { path: `/srv/app/${hex(8)}.log`, command: `tail -n ${Math.floor(random() * 500)}` },
            reason: 'matched rule by tool and resource glob',
          },
        };
      case 1:
        return {
          source: 'model',
          agent: 'ops-assistant',
          run,
          step,
          kind: 'model.call',
          attrs: {
            'gen_ai.provider.name': 'openai',
            'gen_ai.request.model': 'gpt-standin',
            'gen_ai.usage.input_tokens': Math.floor(random() * 4000),
            'gen_ai.usage.output_tokens': Math.floor(random() * 400),
            'govern.gateway.overhead_ms': Math.round(random() * 100) / 100,
            traceId: hex(32),
          },
        };
      default:
        return {
          source: 'workflow',
          agent: 'ops-assistant',
          run,
          step,
          kind: 'execution.result',
          attrs: { tool, ok: random() > 0.05, durationMs: Math.floor(random() * 900), outputDigest: hex(64) },
        };
    }
  });
}

const perSecond = (events: number, ms: number): number => Math.round((events / ms) * 1000);

/** Starts `agent-runtime audit serve --config` as a child process; resolves with its URL. */
async function spawnAggregator(
  config: string,
  env: NodeJS.ProcessEnv,
): Promise<{ readonly url: string; stop(): Promise<void> }> {
  const bin = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'cli', `bin${EXT}`);
  const child = spawn(process.execPath, [bin, 'audit', 'serve', '--config', config], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  let stdout = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const match = /listening on (\S+)/.exec(stdout);
      if (match?.[1] !== undefined) resolve(match[1]);
    });
    void exited.then((code) => reject(new Error(`audit serve exited with ${code}: ${stderr}`)));
  });
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`audit serve exited with ${code}: ${stderr}`);
    },
  };
}

/** Runs the benchmark; prints the result (text or one JSON line) and returns it. */
export async function benchAudit(options: AuditBenchOptions = {}): Promise<AuditBenchResult> {
  const n = options.n ?? 20_000;
  const batch = options.batch ?? 500;
  const writers = options.writers ?? 8;
  for (const [name, value] of Object.entries({ n, batch, writers })) {
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`);
  }
  const progress = options.progress ?? (() => {});
  const dir = await mkdtemp(join(tmpdir(), 'agent-runtime-bench-audit-'));
  const secretKey = ed25519.utils.randomSecretKey();
  const publicKeys = new Map([[keyIdOf(ed25519.getPublicKey(secretKey)), ed25519.getPublicKey(secretKey)]]);
  const autoCheckpoint = { signer: ed25519Signer(secretKey), everyAppends: 1_000 };
  const events = auditBenchEvents(n);
  const batches: AuditEventInput[][] = [];
  for (let i = 0; i < n; i += batch) batches.push(events.slice(i, i + batch));
  try {
    // (1) the chain through the store
    const store = await openSqliteAuditStore({ file: join(dir, 'chain.db'), autoCheckpoint });
    let batchedMs: number;
    let singleMs: number;
    const singles = Math.min(n, 5_000);
    let verifyMs: number;
    let checkpoints: number;
    try {
      progress(`audit: ${n} chained appends in batches of ${batch}`);
      let t0 = performance.now();
      for (const b of batches) await store.appendMany('batched', b);
      batchedMs = performance.now() - t0;
      progress(`audit: ${singles} single chained appends`);
      t0 = performance.now();
      for (const e of events.slice(0, singles)) await store.append('single', e);
      singleMs = performance.now() - t0;
      progress('audit: verifying the batched stream');
      t0 = performance.now();
      const verified = await verifyStream(store, 'batched', publicKeys);
      verifyMs = performance.now() - t0;
      if (!verified.ok) throw new Error(`the written stream does not verify: ${JSON.stringify(verified)}`);
      checkpoints = (await store.checkpoints('batched')).length;
    } finally {
      await store.close();
    }

    // (2) through the HTTP aggregator, its own process (`audit serve`), as deployed
    progress(`audit: ${n} appends through the HTTP aggregator (own process) from ${writers} writers`);
    const token = 'bench-writer-token-0123456789';
    const keys = await initSigningKey(join(dir, 'keys'));
    const config = join(dir, 'aggregator.yaml');
    await writeFile(
      config,
      stringify({
        listen: { host: '127.0.0.1', port: 0 },
        store: { kind: 'sqlite', file: 'aggregator.db', checkpoints: { everyAppends: 1_000 } },
        checkpointKey: keys.secretKeyFile,
        tokens: [{ name: 'bench', tokenEnv: 'BENCH_AUDIT_TOKEN', sources: ['guard', 'model', 'workflow'] }],
      }),
    );
    const server = await spawnAggregator(config, { ...process.env, BENCH_AUDIT_TOKEN: token });
    let httpMs: number;
    try {
      const clients = Array.from({ length: writers }, (_, w) =>
        createAuditAggregatorClient({
          url: server.url,
          token,
          writer: `bench-${w}`,
          batch: { maxEvents: batch },
        }),
      );
      const t0 = performance.now();
      await Promise.all(
        clients.map((client, w) =>
          mapLimit(
            events.filter((_, i) => i % writers === w),
            256,
            (e) => client.append(e),
          ),
        ),
      );
      await Promise.all(clients.map((c) => c.close()));
      httpMs = performance.now() - t0;
      const last = await clients[0]?.read({ stream: 'default', fromSeq: n });
      if (last?.length !== 1) throw new Error(`the aggregator did not store all ${n} events`);
    } finally {
      await server.stop();
    }

    // (3) plain SQLite rows, no chain
    progress(`audit: ${n} plain SQLite inserts in batches of ${batch}`);
    const db = new DatabaseSync(join(dir, 'plain.db'));
    let plainMs: number;
    try {
      db.exec('PRAGMA journal_mode = WAL');
      db.exec(`CREATE TABLE rows (stream TEXT NOT NULL, seq INTEGER NOT NULL, ts TEXT NOT NULL, source TEXT NOT NULL,
        agent TEXT, run TEXT, step INTEGER, kind TEXT NOT NULL, attrs TEXT NOT NULL, PRIMARY KEY (stream, seq)) STRICT`);
      for (const column of ['ts', 'kind, ts', 'agent, ts', 'run, ts'])
        db.exec(`CREATE INDEX rows_${column.replace(', ts', '')} ON rows (${column})`);
      const insert = db.prepare('INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
      let seq = 0;
      const t0 = performance.now();
      for (const b of batches) {
        const ts = new Date().toISOString();
        immediateTransaction(db, () => {
          for (const e of b) {
            insert.run('plain', ++seq, ts, e.source, e.agent, e.run, e.step, e.kind, JSON.stringify(e.attrs));
          }
        });
        await Promise.resolve();
      }
      plainMs = performance.now() - t0;
    } finally {
      db.close();
    }

    const chained = perSecond(n, batchedMs);
    const plain = perSecond(n, plainMs);
    const result: AuditBenchResult = {
      name: 'audit',
      n,
      batch,
      events_per_second: chained,
      single_events_per_second: perSecond(singles, singleMs),
      http_events_per_second: perSecond(n, httpMs),
      http_writers: writers,
      plain_events_per_second: plain,
      chain_cost_ratio: Math.round((plain / chained) * 100) / 100,
      verify_seconds: Math.round(verifyMs) / 1000,
      checkpoints,
    };
    const row = (label: string, value: number, note = ''): string =>
      `  ${label.padEnd(52)}${value.toLocaleString('en-US').padStart(9)} events/s${note}`;
    report(options, result, () =>
      [
        `audit: ${n} realistic events (decisions, model calls, results), SQLite file, WAL`,
        row(`chained, store appendMany (batches of ${batch})`, result.events_per_second, '   goal ≥ 5,000'),
        row(`chained, store append (one at a time, ${singles})`, result.single_events_per_second),
        row(`chained, HTTP aggregator process, ${writers} writers`, result.http_events_per_second),
        row('plain SQLite inserts, no chain (same batches)', result.plain_events_per_second),
        `  chain cost: plain ÷ chained = ${result.chain_cost_ratio}×`,
        `  verify the whole batched stream (${n} records, ${checkpoints} checkpoints): ${result.verify_seconds} s`,
      ].join('\n'),
    );
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
