/**
 * `agent-runtime audit verify|tail|search|export|serve`: the hash-chained audit store of
 * `agent-runtime dev` (`.agent-runtime/audit/chain.db`, checkpoints signed with `keys/audit/`), or
 * of an aggregator (`--config`). `verify` names the first broken record (edited, deleted,
 * reordered, inserted, truncated) and exits 1, of a store or of an export file (`--file`).
 * `serve` runs the audit aggregator until SIGINT/SIGTERM.
 * @module
 */
import { createWriteStream, existsSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadPublicKeys, loadSecretKey, PUBLIC_KEY_FILE } from '../../approval-channels/keys.ts';
import {
  ed25519Signer,
  exportAuditStream,
  openAuditStore,
  openSqliteAuditStore,
  startAuditAggregator,
  verifyAuditExport,
  verifyStream,
} from '../../audit/index.ts';
import type { AuditStore, ChainVerification } from '../../audit/index.ts';
import { createOtlpLogExporter, feedAuditLogExport } from '../../audit/otlp-logs.ts';
import type { AuditLogFeed } from '../../audit/otlp-logs.ts';
import { loadAggregatorConfig } from '../../audit/service-config.ts';
import type { AuditKind } from '../../activities/audit/types.ts';
import { AgentRuntimeError } from '../../policy/errors.ts';
import { ExitCode, println, readTextFile, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';
import { defaultStateDir } from '../local.ts';

const USAGE = `usage:
  agent-runtime audit verify [--stream S] [--key PUB] [--json]
                                       check the hash chain and the signed checkpoints of the store
  agent-runtime audit verify --file EXPORT [--key PUB] [--json]
                                       the same, offline, of an export file
  agent-runtime audit tail [-n N] [--stream S] [--json]
  agent-runtime audit search [--kind K] [--run R] [--agent A] [--text T] [--json]
  agent-runtime audit export [--stream S] [--out F]
                                       NDJSON: a header line, then records and signed checkpoints
  agent-runtime audit reconcile <runId> [--state-dir D] [--address A] [--json]
                                       a run's audit trail against its Temporal history
  agent-runtime audit serve --config F the audit aggregator (HTTP, append-only) until SIGINT/SIGTERM
      --state-dir D   the state directory of \`agent-runtime dev\` (default .agent-runtime)
      --config F      verify|tail|search|export the store of an aggregator configuration instead
      --key PUB       trusted checkpoint public key file(s) (default <state-dir>/keys/audit/${PUBLIC_KEY_FILE})`;

const COMMON = {
  'state-dir': { type: 'string' },
  config: { type: 'string' },
  stream: { type: 'string', default: 'default' },
  json: { type: 'boolean', default: false },
} as const;

interface StoreChoice {
  readonly 'state-dir'?: string | undefined;
  readonly config?: string | undefined;
}

/** The aggregator's store (`--config`) or the chain of `agent-runtime dev` (`--state-dir`). */
async function open(values: StoreChoice): Promise<AuditStore> {
  if (values.config !== undefined) {
    const config = await loadAggregatorConfig(values.config, process.env, { withoutTokens: true });
    // no signer: reading needs none, and this process must not checkpoint behind the aggregator's back
    const { checkpoints: _checkpoints, ...store } = config.store;
    return openAuditStore(store);
  }
  const file = join(values['state-dir'] ?? defaultStateDir(), 'audit', 'chain.db');
  if (!existsSync(file))
    throw new UsageError(`no audit chain at ${file} (start \`agent-runtime dev\` first)`, USAGE);
  return openSqliteAuditStore({ file });
}

function printVerification(
  io: CliIo,
  json: boolean,
  stream: string,
  checkpoints: number,
  result: ChainVerification,
): number {
  if (json) println(io.stdout, JSON.stringify({ stream, checkpoints, ...result }));
  else if (result.ok)
    println(
      io.stdout,
      `ok: ${result.count} records (last seq ${result.lastSeq}), ${checkpoints} signed checkpoints`,
    );
  else println(io.stdout, `BROKEN at seq ${result.firstBroken.seq}: ${result.firstBroken.reason}`);
  return result.ok ? ExitCode.ok : ExitCode.failed;
}

async function verify(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: { ...COMMON, file: { type: 'string' }, key: { type: 'string', multiple: true } },
  });
  const stateDir = values['state-dir'] ?? defaultStateDir();
  const keys = await loadPublicKeys(values.key ?? [join(stateDir, 'keys', 'audit', PUBLIC_KEY_FILE)]);
  if (values.file !== undefined) {
    const { header, checkpoints, result } = verifyAuditExport(
      await readTextFile(values.file),
      values.file,
      keys,
    );
    return printVerification(io, values.json, header.stream, checkpoints.length, result);
  }
  const store = await open(values);
  try {
    const result = await verifyStream(store, values.stream, keys);
    const checkpoints = (await store.checkpoints(values.stream)).length;
    return printVerification(io, values.json, values.stream, checkpoints, result);
  } finally {
    await store.close();
  }
}

async function exportStream(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: { ...COMMON, out: { type: 'string' } },
  });
  const store = await open(values);
  try {
    if (values.out === undefined) {
      const { records, checkpoints } = await exportAuditStream(store, values.stream, (line) => {
        return io.stdout.write(line) ? undefined : once(io.stdout, 'drain').then(() => undefined);
      });
      println(io.stderr, `exported ${records} records and ${checkpoints} checkpoints of ${values.stream}`);
      return ExitCode.ok;
    }
    const out = createWriteStream(values.out, { flags: 'wx', mode: 0o600 });
    await once(out, 'open').catch((error: unknown) => {
      throw new AgentRuntimeError(
        'CLI_FILE_UNWRITABLE',
        `${values.out}: cannot create (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      );
    });
    const { records, checkpoints } = await exportAuditStream(store, values.stream, (line) => {
      return out.write(line) ? undefined : once(out, 'drain').then(() => undefined);
    });
    out.end();
    await once(out, 'finish');
    println(
      values.json ? io.stderr : io.stdout,
      `exported ${records} records and ${checkpoints} checkpoints of ${values.stream} to ${values.out}`,
    );
    return ExitCode.ok;
  } finally {
    await store.close();
  }
}

/**
 * `audit serve`: loads the configuration, opens the store with automatic checkpoints signed by
 * the configured key, starts the OTLP log export when configured (before serving, so it sees
 * every record appended), serves until `until` settles (default SIGINT/SIGTERM), then stops
 * accepting, ends subscriptions, checkpoints what it wrote, exports and flushes what is left and
 * closes the store.
 */
export async function serveAuditAggregator(
  configFile: string,
  io: CliIo,
  env: Readonly<Record<string, string | undefined>> = process.env,
  until: Promise<unknown> = new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  }),
): Promise<number> {
  const config = await loadAggregatorConfig(configFile, env);
  const signer = ed25519Signer((await loadSecretKey(config.checkpointKey)).secretKey);
  const store = await openAuditStore(config.store, {
    signer,
    onError: (error) => println(io.stderr, `warning: audit store: ${(error as Error).message}`),
  });
  let feed: AuditLogFeed | undefined;
  const closeFeed = (): Promise<void> | undefined =>
    feed
      ?.close()
      .catch((error: unknown) => println(io.stderr, `warning: OTLP log export: ${(error as Error).message}`));
  try {
    const otlp = config.export?.otlp;
    if (otlp !== undefined) {
      const exporter = createOtlpLogExporter({
        endpoint: otlp.endpoint,
        headers: otlp.headers,
        ...(otlp.serviceName === undefined ? {} : { serviceName: otlp.serviceName }),
        onError: (error, lost) =>
          println(io.stderr, `warning: OTLP log export: ${error.message} (${lost} lost)`),
      });
      feed = await feedAuditLogExport(store, exporter, { streams: otlp.streams, fromSeq: otlp.fromSeq });
      const from = Object.entries(feed.startedAt).map(([stream, seq]) => `${stream} from seq ${seq}`);
      println(io.stdout, `exporting audit records to ${otlp.endpoint} (OTLP logs): ${from.join(', ')}`);
    }
    const aggregator = await startAuditAggregator({
      store,
      tokens: config.tokens,
      host: config.listen.host,
      port: config.listen.port,
      checkpointSigner: signer,
      onError: (error) => println(io.stderr, `error: ${(error as Error).stack ?? String(error)}`),
    });
    println(io.stdout, `audit aggregator listening on ${aggregator.url}`);
    await until;
    await aggregator.close();
    await closeFeed();
    println(io.stdout, 'audit aggregator stopped');
    return ExitCode.ok;
  } finally {
    await closeFeed();
    await store.close();
  }
}

async function serve(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: [...argv], strict: true, options: { config: { type: 'string' } } });
  if (values.config === undefined) throw new UsageError('audit serve: --config is required', USAGE);
  return serveAuditAggregator(values.config, io);
}

async function tail(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: { ...COMMON, n: { type: 'string', short: 'n' } },
  });
  const store = await open(values);
  try {
    const all = await store.read({ stream: values.stream });
    const n = values.n === undefined ? 20 : Number(values.n);
    for (const r of all.slice(-n))
      println(
        io.stdout,
        values.json
          ? JSON.stringify(r)
          : `${r.seq}  ${r.ts}  ${r.source}  ${r.kind}  ${r.run ?? ''}${r.step === null ? '' : ` step ${r.step}`}`,
      );
    return ExitCode.ok;
  } finally {
    await store.close();
  }
}

async function search(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      ...COMMON,
      kind: { type: 'string' },
      run: { type: 'string' },
      agent: { type: 'string' },
      text: { type: 'string' },
    },
  });
  const store = await open(values);
  try {
    const found = await store.search({
      stream: values.stream,
      ...(values.kind === undefined ? {} : { kind: values.kind as AuditKind }),
      ...(values.run === undefined ? {} : { run: values.run }),
      ...(values.agent === undefined ? {} : { agent: values.agent }),
      ...(values.text === undefined ? {} : { text: values.text }),
    });
    for (const r of found)
      println(
        io.stdout,
        values.json
          ? JSON.stringify(r)
          : `${r.seq}  ${r.ts}  ${r.kind}  ${JSON.stringify(r.attrs).slice(0, 160)}`,
      );
    return ExitCode.ok;
  } finally {
    await store.close();
  }
}

export const auditCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === 'verify') return verify(rest, io);
  if (sub === 'tail') return tail(rest, io);
  if (sub === 'search') return search(rest, io);
  if (sub === 'export') return exportStream(rest, io);
  if (sub === 'reconcile') return (await import('./audit-reconcile.ts')).reconcileCommand(rest, io);
  if (sub === 'serve') return serve(rest, io);
  throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
};
