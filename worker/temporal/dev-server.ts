/**
 * Starts and stops a local Temporal dev server (`temporal server start-dev`) with our own readiness check, so tests,
 * the `dev` command and benchmarks are not bound by `@temporalio/testing`'s 5 s start deadline.
 */
import { AgentRuntimeError } from '../../policy/errors.ts';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { resolveTemporalCli } from './binary.ts';
import type { ResolveTemporalCliOptions, TemporalCliResolution, TemporalToolsLogger } from './binary.ts';

/** Search attribute types as spelled by `temporal server start-dev --search-attribute Name=Type`. */
export type SearchAttributeTypeName =
  'Keyword' | 'Text' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

/** `temporal.api.enums.v1.IndexedValueType` numbers, used by the operator service. */
const INDEXED_VALUE_TYPE: Readonly<Record<SearchAttributeTypeName, number>> = {
  Text: 1,
  Keyword: 2,
  Int: 3,
  Double: 4,
  Bool: 5,
  Datetime: 6,
  KeywordList: 7,
};

/** Same types as `@temporalio/common`'s `SearchAttributeType` (used for the SDK fallback). */
const SDK_SEARCH_ATTRIBUTE_TYPE = {
  Text: 'TEXT',
  Keyword: 'KEYWORD',
  Int: 'INT',
  Double: 'DOUBLE',
  Bool: 'BOOL',
  Datetime: 'DATETIME',
  KeywordList: 'KEYWORD_LIST',
} as const satisfies Record<SearchAttributeTypeName, string>;

const HOST = '127.0.0.1';
const READY_POLL_MS = 150;

/**
 * Always passed. The first two match what `@temporalio/testing` passes. The dev server has ONE history shard,
 * and each shard's queue processors poll at most `*MaxPollRPS` times a second (default 20): with one shard every
 * workflow task and activity task handed to matching waits up to 50 ms for its turn, which put a 100 ms floor
 * under each action (workflow task + activity task) and ~45 ms under every hop of an approval. A cluster spreads
 * the same load over hundreds of shards; here the limits are raised instead (measured: a bare activity cycle
 * went from 100 ms to 12 ms p50, `docs/performance.md`).
 */
const DYNAMIC_CONFIG = [
  'frontend.enableUpdateWorkflowExecution=true',
  'frontend.enableUpdateWorkflowExecutionAsyncAccepted=true',
  'history.transferProcessorMaxPollRPS=2000',
  'history.timerProcessorMaxPollRPS=2000',
  'history.visibilityProcessorMaxPollRPS=2000',
  'history.outboundProcessorMaxPollRPS=2000',
] as const;
/**
 * Passed when accepted. CLI 1.9.1 accepts it (it also silently accepts unknown keys), so the retry without it in
 * {@link startDevServer} only matters for other CLI versions that reject it.
 */
const OPTIONAL_DYNAMIC_CONFIG = ['frontend.workerVersioningWorkflowAPIs=true'] as const;

/** Options for {@link startDevServer}. */
export interface DevServerOptions {
  /** gRPC frontend port. Default: a free port (bind 127.0.0.1:0). */
  readonly port?: number;
  /** Serve the Web UI. Default: true when `uiPort` is set, else false (`--headless`). */
  readonly ui?: boolean;
  /** Web UI port. Default (with `ui`): a free port. */
  readonly uiPort?: number;
  /** SQLite file to persist to (parent directories are created). Default: in-memory. */
  readonly dbFilename?: string;
  /** Namespace created at launch and checked for readiness. Default: `'default'`. */
  readonly namespace?: string;
  /** Custom search attributes to register, also on an existing `dbFilename` (see {@link ensureSearchAttributes}). */
  readonly searchAttributes?: Readonly<Record<string, SearchAttributeTypeName>>;
  /** Extra `start-dev` arguments, appended last. */
  readonly extraArgs?: readonly string[];
  /** How long to wait for the namespace to be describable. Default: 60 000 ms. */
  readonly startTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before SIGKILL. Default: 10 000 ms. */
  readonly stopTimeoutMs?: number;
  /** Progress and warnings; server log lines (JSON, level warn+) go to `logger.debug`. */
  readonly logger?: TemporalToolsLogger;
  /** Use this binary instead of calling {@link resolveTemporalCli}. */
  readonly cli?: TemporalCliResolution;
  /** Options for {@link resolveTemporalCli} (ignored when `cli` is given). */
  readonly resolve?: ResolveTemporalCliOptions;
}

/** A running dev server. */
export interface DevServerHandle {
  /** `host:port` of the gRPC frontend, for `Connection.connect({ address })`. */
  readonly address: string;
  readonly namespace: string;
  /** Web UI URL when the UI is enabled. */
  readonly uiUrl?: string;
  /** Server process id (absent for the `sdk-download` fallback, which the SDK spawns). */
  readonly pid?: number;
  /** The binary that runs the server. */
  readonly cli: TemporalCliResolution;
  /** Milliseconds from the call until the namespace was describable and search attributes were ensured. */
  readonly startupMs: number;
  /** Stops the server: SIGTERM, then SIGKILL after `stopTimeoutMs`. Idempotent. */
  stop(): Promise<void>;
}

/** Why {@link startDevServer} failed. */
export type DevServerStartFailure = 'spawn-failed' | 'exited' | 'timeout';

/** Thrown by {@link startDevServer} when the server cannot be started or does not become ready. */
export class DevServerStartError extends AgentRuntimeError {
  readonly reason: DevServerStartFailure;
  /** Last lines of the server's stderr (stdout when stderr was empty). */
  readonly outputTail: string;

  constructor(reason: DevServerStartFailure, message: string, outputTail: string, options?: ErrorOptions) {
    super(
      'TEMPORAL_DEV_SERVER_START_FAILED',
      outputTail === '' ? message : `${message}\n--- server output (tail) ---\n${outputTail}`,
      options,
    );
    this.reason = reason;
    this.outputTail = outputTail;
  }
}

/** Arguments of {@link buildDevServerArgs}. */
export interface DevServerArgsConfig {
  readonly port: number;
  readonly namespace: string;
  readonly dbFilename?: string;
  /** UI port, or undefined for `--headless`. */
  readonly uiPort?: number;
  readonly searchAttributes?: Readonly<Record<string, SearchAttributeTypeName>>;
  readonly extraArgs?: readonly string[];
  /** Include {@link OPTIONAL_DYNAMIC_CONFIG}. Default: true. */
  readonly optionalDynamicConfig?: boolean;
}

/** The exact argv (after the binary) that {@link startDevServer} passes to `temporal`. */
export function buildDevServerArgs(config: DevServerArgsConfig): string[] {
  const args = [
    'server',
    'start-dev',
    '--ip',
    HOST,
    '--port',
    String(config.port),
    '--namespace',
    config.namespace,
  ];
  if (config.dbFilename !== undefined) args.push('--db-filename', config.dbFilename);
  if (config.uiPort !== undefined) args.push('--ui-port', String(config.uiPort));
  else args.push('--headless');
  args.push('--log-format', 'json', '--log-level', 'warn');
  const dynamicConfig =
    config.optionalDynamicConfig === false ? DYNAMIC_CONFIG : [...DYNAMIC_CONFIG, ...OPTIONAL_DYNAMIC_CONFIG];
  for (const value of dynamicConfig) args.push('--dynamic-config-value', value);
  for (const [name, type] of Object.entries(config.searchAttributes ?? {}))
    args.push('--search-attribute', `${name}=${type}`);
  if (config.uiPort !== undefined) args.push('--ui-disable-news-fetch');
  args.push(...(config.extraArgs ?? []));
  return args;
}

/** Returns a port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, close). */
export function findFreePort(host: string = HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

/** Whether something accepts TCP connections on `host:port` (within `timeoutMs`). */
export function isPortOpen(port: number, host: string = HOST, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function validateSearchAttributes(searchAttributes: Readonly<Record<string, SearchAttributeTypeName>>): void {
  for (const [name, type] of Object.entries(searchAttributes)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new TypeError(`Invalid search attribute name ${JSON.stringify(name)}`);
    if (!Object.hasOwn(INDEXED_VALUE_TYPE, type)) {
      throw new TypeError(
        `Invalid type ${JSON.stringify(type)} for search attribute ${name}; expected one of ${Object.keys(INDEXED_VALUE_TYPE).join(', ')}`,
      );
    }
  }
}

/**
 * Makes sure the custom search attributes exist in `namespace` (lists them, adds the missing ones; a concurrent
 * AlreadyExists is ignored). Returns the names it added. An existing attribute of another type is left alone and
 * reported with `logger.warn`, since the server cannot change a type.
 *
 * Needed for a persisted dev server: verified with CLI 1.9.1 (Server 1.32.0) that `--search-attribute` is ignored when
 * `--db-filename` names an existing file (the attribute is silently missing, and a different type for an existing
 * name is silently kept), while `--namespace` does create new namespaces there.
 */
export async function ensureSearchAttributes(
  connection: Connection,
  namespace: string,
  wanted: Readonly<Record<string, SearchAttributeTypeName>>,
  logger?: TemporalToolsLogger,
): Promise<string[]> {
  if (Object.keys(wanted).length === 0) return [];
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const existing: Record<string, unknown> = customAttributes ?? {};
  const missing: Record<string, number> = {};
  for (const [name, type] of Object.entries(wanted)) {
    const have = existing[name];
    if (have === undefined) missing[name] = INDEXED_VALUE_TYPE[type];
    else if (have !== INDEXED_VALUE_TYPE[type]) {
      logger?.warn(
        `Search attribute ${name} exists in namespace ${namespace} with another type (IndexedValueType ${String(have)}, wanted ${type}); ` +
          'it cannot be changed in place (delete the dev server database to recreate it).',
      );
    }
  }
  const names = Object.keys(missing);
  if (names.length === 0) return [];
  try {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  } catch (error) {
    if ((error as { code?: unknown }).code !== 6 /* grpc ALREADY_EXISTS */) throw error;
  }
  logger?.debug?.(`Added search attributes to namespace ${namespace}: ${names.join(', ')}`);
  return names;
}

/* ---------- child process bookkeeping ---------- */

/** Live servers and the signal to send them if this process exits without stopping them. */
const liveChildren = new Map<ChildProcess, NodeJS.Signals>();
let exitHookInstalled = false;

function killLiveChildrenOnExit(): void {
  for (const [child, signal] of liveChildren) {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
}

function trackChild(child: ChildProcess, signal: NodeJS.Signals): void {
  liveChildren.set(child, signal);
  if (!exitHookInstalled) {
    // One listener for all servers ('exit' handlers run synchronously, so we can only signal, not wait).
    process.on('exit', killLiveChildrenOnExit);
    exitHookInstalled = true;
  }
}

/** Keeps the last `max` lines of a stream and forwards each line to `onLine`. */
class LineTail {
  readonly lines: string[] = [];
  #pending = '';
  readonly #max: number;
  readonly #onLine: (line: string) => void;

  constructor(max: number, onLine: (line: string) => void) {
    this.#max = max;
    this.#onLine = onLine;
  }

  push(chunk: string): void {
    this.#pending += chunk;
    const parts = this.#pending.split(/\r?\n/);
    this.#pending = parts.pop() ?? '';
    for (const line of parts) this.#add(line);
  }

  end(): void {
    if (this.#pending !== '') this.#add(this.#pending);
    this.#pending = '';
  }

  text(): string {
    return [...this.lines, ...(this.#pending === '' ? [] : [this.#pending])].join('\n');
  }

  #add(line: string): void {
    if (line === '') return;
    this.lines.push(line);
    if (this.lines.length > this.#max) this.lines.shift();
    this.#onLine(line);
  }
}

interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

interface SpawnedServer {
  readonly child: ChildProcess;
  /** Settles when the process has exited (or failed to spawn). */
  readonly exited: Promise<ExitInfo>;
  /** Set once the process has exited. */
  exitInfo: ExitInfo | undefined;
  /** Set when the process could not be spawned (ENOENT, EACCES, ...). */
  spawnError: Error | undefined;
  readonly outputTail: () => string;
}

function spawnServer(
  cliPath: string,
  args: readonly string[],
  logger: TemporalToolsLogger | undefined,
): SpawnedServer {
  // Not detached: a terminal Ctrl-C reaches the server too (same process group).
  const child = spawn(cliPath, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const debug = (line: string): void => logger?.debug?.(`[temporal] ${line}`);
  const stdout = new LineTail(40, debug);
  const stderr = new LineTail(40, debug);
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => stdout.push(chunk));
  child.stdout?.on('end', () => stdout.end());
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  child.stderr?.on('end', () => stderr.end());
  const server: SpawnedServer = {
    child,
    exited: new Promise<ExitInfo>((resolve) => {
      // 'close' comes after stdout/stderr have ended, so the last error line is in the tail
      child.once('close', (code, signal) => {
        server.exitInfo = { code, signal };
        resolve(server.exitInfo);
      });
      // spawn failure: no 'exit' follows
      child.once('error', (error) => {
        if (child.pid === undefined) {
          server.spawnError = error;
          resolve({ code: null, signal: null });
        }
      });
    }),
    exitInfo: undefined,
    spawnError: undefined,
    outputTail: () => {
      const err = stderr.text();
      return err !== '' ? err : stdout.text();
    },
  };
  return server;
}

/** Resolves `true` when `promise` settles within `ms`, else `false`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const controller = new AbortController();
  try {
    return await Promise.race([promise.then(() => true), sleep(ms, false, { signal: controller.signal })]);
  } finally {
    controller.abort();
  }
}

/**
 * Polls until the frontend answers `DescribeNamespace(namespace)` (TCP probe first, so gRPC's reconnect backoff does
 * not delay us), and the UI port accepts connections when `uiPort` is set. Returns the open connection.
 */
async function waitUntilReady(
  server: SpawnedServer,
  port: number,
  namespace: string,
  uiPort: number | undefined,
  deadline: number,
): Promise<Connection> {
  const address = `${HOST}:${port}`;
  let lastError: unknown;
  let connection: Connection | undefined;
  const failure = (reason: DevServerStartFailure, message: string): DevServerStartError =>
    new DevServerStartError(
      reason,
      message,
      server.outputTail(),
      lastError === undefined ? undefined : { cause: lastError },
    );
  for (;;) {
    if (server.spawnError !== undefined) {
      throw failure('spawn-failed', `Could not start the Temporal dev server: ${server.spawnError.message}`);
    }
    if (server.exitInfo !== undefined) {
      const { code, signal } = server.exitInfo;
      await connection?.close();
      throw failure(
        'exited',
        `The Temporal dev server ${signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`} before it became ready`,
      );
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      await connection?.close();
      throw failure(
        'timeout',
        `The Temporal dev server at ${address} did not become ready (namespace ${namespace}) in time`,
      );
    }
    try {
      if (connection === undefined) {
        if (!(await isPortOpen(port, HOST, Math.min(1000, remaining))))
          throw new Error(`${address} not accepting connections yet`);
        connection = await Connection.connect({
          address,
          connectTimeout: Math.max(500, Math.min(5000, remaining)),
        });
      }
      await connection.workflowService.describeNamespace({ namespace });
      if (uiPort !== undefined && !(await isPortOpen(uiPort, HOST, Math.min(1000, remaining)))) {
        throw new Error(`Web UI port ${uiPort} not accepting connections yet`);
      }
      return connection;
    } catch (error) {
      lastError = error;
      if (connection !== undefined && !(await isPortOpen(port))) {
        await connection.close();
        connection = undefined;
      }
    }
    await Promise.race([sleep(READY_POLL_MS), server.exited]);
  }
}

/** Stops a child: SIGTERM, wait up to `timeoutMs`, then SIGKILL. */
async function stopChild(
  server: SpawnedServer,
  timeoutMs: number,
  logger: TemporalToolsLogger | undefined,
): Promise<void> {
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    child.kill('SIGTERM');
    if (!(await within(server.exited, timeoutMs))) {
      logger?.warn(
        `Temporal dev server (pid ${child.pid}) did not exit ${timeoutMs} ms after SIGTERM; sending SIGKILL`,
      );
      child.kill('SIGKILL');
      await within(server.exited, 5000);
    }
  }
  liveChildren.delete(child);
}

/**
 * Starts `temporal server start-dev` on 127.0.0.1 and resolves once the namespace can be described (and the custom
 * search attributes exist). Rejects with {@link DevServerStartError} (including the server's stderr tail) when the
 * process exits early or is not ready within `startTimeoutMs`. The server is killed when this process exits.
 *
 * With the `sdk-download` source it delegates to `TestWorkflowEnvironment.createLocal` (subject to the SDK's 5 s
 * start deadline) and maps the result into the same handle.
 */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServerHandle> {
  // a port found free can be taken by another process before the server binds it
  const portsChosenHere = options.port === undefined && options.uiPort === undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDevServerOnce(options);
    } catch (error) {
      const portClash =
        error instanceof DevServerStartError &&
        error.reason === 'exited' &&
        /address already in use/i.test(error.outputTail);
      if (!portsChosenHere || !portClash || attempt >= PORT_CLASH_ATTEMPTS) throw error;
      options.logger?.warn(
        `a port was taken while the dev server started (attempt ${attempt}); retrying on fresh ports`,
      );
    }
  }
}

const PORT_CLASH_ATTEMPTS = 3;

async function startDevServerOnce(options: DevServerOptions): Promise<DevServerHandle> {
  const startedAt = performance.now();
  const logger = options.logger;
  const searchAttributes = options.searchAttributes ?? {};
  validateSearchAttributes(searchAttributes);
  const namespace = options.namespace ?? 'default';
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 10_000;

  const cli =
    options.cli ??
    (await resolveTemporalCli({
      ...options.resolve,
      ...(options.resolve?.logger === undefined && logger !== undefined && { logger }),
    }));
  const port = options.port ?? (await findFreePort());
  const ui = options.ui ?? options.uiPort !== undefined;
  const uiPort = ui ? (options.uiPort ?? (await findFreePort())) : undefined;
  const dbFilename = options.dbFilename === undefined ? undefined : path.resolve(options.dbFilename);
  if (dbFilename !== undefined) mkdirSync(path.dirname(dbFilename), { recursive: true });
  const dbExisted = dbFilename !== undefined && existsSync(dbFilename);
  const uiUrl = uiPort === undefined ? undefined : `http://${HOST}:${uiPort}`;

  if (cli.source === 'sdk-download') {
    return startViaSdk({
      cli,
      port,
      namespace,
      dbFilename,
      uiPort,
      uiUrl,
      searchAttributes,
      options,
      startedAt,
    });
  }

  const argsConfig = {
    port,
    namespace,
    searchAttributes,
    ...(dbFilename !== undefined && { dbFilename }),
    ...(uiPort !== undefined && { uiPort }),
    ...(options.extraArgs !== undefined && { extraArgs: options.extraArgs }),
  } satisfies DevServerArgsConfig;
  const deadline = Date.now() + startTimeoutMs;

  const launch = async (
    optionalDynamicConfig: boolean,
  ): Promise<{ server: SpawnedServer; connection: Connection }> => {
    const args = buildDevServerArgs({ ...argsConfig, optionalDynamicConfig });
    logger?.debug?.(`Starting ${cli.path} ${args.join(' ')}`);
    const server = spawnServer(cli.path, args, logger);
    trackChild(server.child, dbFilename === undefined ? 'SIGKILL' : 'SIGTERM');
    try {
      return { server, connection: await waitUntilReady(server, port, namespace, uiPort, deadline) };
    } catch (error) {
      await stopChild(server, 2000, logger);
      throw error;
    }
  };

  let started: { server: SpawnedServer; connection: Connection };
  try {
    started = await launch(true);
  } catch (error) {
    const optionalKeys = OPTIONAL_DYNAMIC_CONFIG.map((kv) => kv.split('=')[0] ?? kv);
    const rejected =
      error instanceof DevServerStartError &&
      error.reason === 'exited' &&
      optionalKeys.some((key) => error.outputTail.includes(key));
    if (!rejected) throw error;
    logger?.warn(`This Temporal CLI rejects ${OPTIONAL_DYNAMIC_CONFIG.join(', ')}; starting without it`);
    started = await launch(false);
  }

  const { server, connection } = started;
  const stop = memoize(() => stopChild(server, stopTimeoutMs, logger));
  try {
    const added = await ensureSearchAttributes(connection, namespace, searchAttributes, logger);
    if (added.length > 0 && !dbExisted) {
      logger?.warn(
        `--search-attribute did not register ${added.join(', ')}; added them through the operator service`,
      );
    }
  } catch (error) {
    await stop();
    throw error;
  } finally {
    await connection.close();
  }

  let stopping = false;
  void server.exited.then((info) => {
    liveChildren.delete(server.child);
    if (!stopping)
      logger?.warn(
        `Temporal dev server (pid ${String(server.child.pid)}) exited unexpectedly (code ${String(info.code)}, signal ${String(info.signal)})`,
      );
  });
  const startupMs = Math.round(performance.now() - startedAt);
  logger?.info(
    `Temporal dev server ready at ${HOST}:${port} (namespace ${namespace}) in ${startupMs} ms${uiUrl === undefined ? '' : `, UI ${uiUrl}`}`,
  );
  return {
    address: `${HOST}:${port}`,
    namespace,
    ...(uiUrl !== undefined && { uiUrl }),
    ...(server.child.pid !== undefined && { pid: server.child.pid }),
    cli,
    startupMs,
    stop: () => {
      stopping = true;
      return stop();
    },
  };
}

function memoize(fn: () => Promise<void>): () => Promise<void> {
  let promise: Promise<void> | undefined;
  return () => (promise ??= fn());
}

interface SdkStartConfig {
  readonly cli: TemporalCliResolution;
  readonly port: number;
  readonly namespace: string;
  readonly dbFilename: string | undefined;
  readonly uiPort: number | undefined;
  readonly uiUrl: string | undefined;
  readonly searchAttributes: Readonly<Record<string, SearchAttributeTypeName>>;
  readonly options: DevServerOptions;
  readonly startedAt: number;
}

/** The `sdk-download` fallback: `TestWorkflowEnvironment.createLocal` with `cached-download`. */
async function startViaSdk(config: SdkStartConfig): Promise<DevServerHandle> {
  const { cli, port, namespace, dbFilename, uiPort, uiUrl, searchAttributes, options, startedAt } = config;
  const logger = options.logger;
  logger?.warn(
    'Using @temporalio/testing to download and start the Temporal CLI; it gives the server only 5 s to start. ' +
      'Install the pinned binary (npm run provision) for a reliable start.',
  );
  // Loaded lazily: @temporalio/testing pulls in the worker and its native core bridge.
  const [{ TestWorkflowEnvironment }, { defineSearchAttributeKey }] = await Promise.all([
    import('@temporalio/testing'),
    import('@temporalio/common'),
  ]);
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'cached-download' },
      ip: HOST,
      port,
      namespace,
      log: { format: 'json', level: 'warn' },
      ...(dbFilename !== undefined && { dbFilename }),
      ...(uiPort !== undefined ? { ui: true, uiPort } : { ui: false }),
      // the SDK already passes the two enableUpdateWorkflowExecution* values
      extraArgs: [
        ...OPTIONAL_DYNAMIC_CONFIG.flatMap((value) => ['--dynamic-config-value', value]),
        ...(uiPort !== undefined ? ['--ui-disable-news-fetch'] : []),
        ...(options.extraArgs ?? []),
      ],
      searchAttributes: Object.entries(searchAttributes).map(([name, type]) =>
        defineSearchAttributeKey(name, SDK_SEARCH_ATTRIBUTE_TYPE[type]),
      ),
    },
  });
  const stop = memoize(() => env.teardown());
  try {
    await ensureSearchAttributes(env.connection, namespace, searchAttributes, logger);
  } catch (error) {
    await stop();
    throw error;
  }
  const startupMs = Math.round(performance.now() - startedAt);
  logger?.info(
    `Temporal dev server (SDK download) ready at ${env.address} (namespace ${namespace}) in ${startupMs} ms`,
  );
  return { address: env.address, namespace, ...(uiUrl !== undefined && { uiUrl }), cli, startupMs, stop };
}
