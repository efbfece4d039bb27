/**
 * The embedded stack of `agent-runtime dev`: a Temporal dev server (SQLite file, Web UI), the
 * `agents`, `tools` and `approvals` workers in this process, the vote-signing key and the
 * append-only audit file, all under one state directory.
 * @module
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { Worker } from '@temporalio/worker';
import { bytesToHex } from '@noble/hashes/utils.js';
import { openAuditFile } from '../activities/audit/index.ts';
import type { AuditClient, AuditEvent, AuditFile } from '../activities/audit/index.ts';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  builtinProviders,
  createModelActivities,
  createModelProxy,
  createProviderRouter,
  toModelTrace,
} from '../activities/model/index.ts';
import type { ProxyTrace } from '../activities/model/index.ts';
import { createProxyCaller } from '../activities/model/gateway/caller.ts';
import { createModelGateway } from '../activities/model/gateway/server.ts';
import type { RouterConfigInput } from '../activities/model/routing/index.ts';
import { openSqliteBudget } from '../activities/model/budget/index.ts';
import {
  createOtlpTraceExporter,
  createRedactor,
  createTraceWriter,
  openSqliteTraceStore,
} from '../activities/model/traces/index.ts';
import type { RedactionConfig, TraceWriter } from '../activities/model/traces/index.ts';
import type { NoticeSink } from '../activities/approvals/index.ts';
import type { AnyToolImplementation } from '../activities/tools/define.ts';
import type { HttpRequestToolConfig } from '../activities/tools/http.ts';
import { createAuditAggregatorClient } from '../audit/client.ts';
import type { AuditAggregatorClient } from '../audit/client.ts';
import { createAuditMetrics, meteredAudit, MetricsRegistry } from '../metrics/index.ts';
import {
  initSigningKey,
  loadPublicKeys,
  PUBLIC_KEY_FILE,
  SECRET_KEY_FILE,
} from '../approval-channels/keys.ts';
import { bundleAgentWorkflows } from './bundle.ts';
import { startChild } from './child.ts';
import type { ChildHandle } from './child.ts';
import {
  installWorkerRuntime,
  runWorkers,
  serveWorkerMetrics,
  toolsStateDirs,
  watchObserverLease,
  workspaceTools,
} from './parts.ts';
import { startDevServer } from './temporal/dev-server.ts';
import type { DevServerHandle } from './temporal/dev-server.ts';
import type { TemporalToolsLogger } from './temporal/binary.ts';
import { SEARCH_ATTRIBUTES } from './temporal/search-attributes.ts';
import { createAgentsWorker, createApprovalsWorker, createToolsWorker } from './workers.ts';

export interface DevStackOptions {
  /** Holds `temporal.db`, `keys/`, `audit/`, `state/` and (by default) `workspace/`. */
  readonly stateDir: string;
  /** gRPC port (default 7233) and Web UI port (default 8233); `0` picks free ports. */
  readonly port?: number;
  readonly uiPort?: number;
  /** Keep Temporal's state in memory instead of `temporal.db` (tests). */
  readonly inMemory?: boolean;
  /** The directory the agent sees as `/workspace` (default `<stateDir>/workspace`). */
  readonly workspace?: string;
  /** Pure modules exporting `toolSpecs` (custom tools the workflow decides on). */
  readonly toolSpecModules?: readonly string[];
  /** Implementations of custom tools for the tools worker. */
  readonly tools?: readonly AnyToolImplementation[];
  /** `http.request` configuration (default: no host allowed, every call refused). */
  readonly http?: HttpRequestToolConfig;
  /** Approval notices (the `log` channel); default: nothing. */
  readonly onNotice?: NoticeSink;
  /** Every audit event after it is stored. */
  readonly onAudit?: (event: AuditEvent) => void;
  /** The model proxy: routes for runs whose model is `{ provider: 'routed' }`, daily token limits, redaction. */
  readonly model?: {
    readonly routes?: RouterConfigInput;
    readonly agentDailyTokens?: Readonly<Record<string, number>>;
    readonly redaction?: RedactionConfig;
    /** Environment the providers read API keys from (default `process.env`). */
    readonly env?: NodeJS.ProcessEnv;
    /** Also export every trace as an OTLP/HTTP span (default `$OTEL_EXPORTER_OTLP_ENDPOINT` when set). */
    readonly otlpEndpoint?: string;
    /** Serve the OpenAI-compatible endpoint (`/v1/chat/completions`) on 127.0.0.1 for these agents' keys. */
    readonly gateway?: {
      readonly port?: number;
      readonly keys: readonly { readonly agentId: string; readonly key: string }[];
    };
  };
  /**
   * The independent observer, as its own process (default on). It subscribes to the aggregator,
   * intervenes on runs and renews the heartbeat lease that runs started with
   * `requireObserverLease` depend on.
   */
  readonly observer?:
    | false
    | {
        /** Lease TTL: runs go conservative this long after the observer's last heartbeat (default 5 s). */
        readonly heartbeatTtlMs?: number;
        /** Rule files besides the built-in rules. */
        readonly rules?: readonly string[];
        /** `false` reports findings only (default true). */
        readonly enforce?: boolean;
        /** Prometheus endpoint of the observer (default none). */
        readonly metricsPort?: number;
      };
  /** Prometheus `/metrics` of this process's workers (default none; 0 picks a free port). */
  readonly metricsPort?: number;
  /** Temporal Core SDK metrics bind address (`127.0.0.1:9464`); only the first stack of a process can set it. */
  readonly temporalMetricsAddress?: string;
  readonly logger?: TemporalToolsLogger;
}

/** The observer child of a stack. */
export interface DevObserver {
  readonly pid: number;
  /** Its own store (`agent-runtime observer status --store …`). */
  readonly storeFile: string;
  readonly heartbeatTtlMs: number;
  /** Its Prometheus endpoint (`…/metrics`), when one was asked for. */
  readonly metricsUrl: string | undefined;
  /** Kills it (tests of the fail-safe lease). */
  kill(signal?: NodeJS.Signals): void;
  /** Starts it again after a kill or stop. */
  restart(): Promise<void>;
  /** Sends its alerts to the approvals service's `POST /v1/alerts` from now on (restarts it). */
  alertThroughApprovals(url: string, token: string): Promise<void>;
  stop(): Promise<void>;
}

export interface DevStack {
  readonly address: string;
  readonly namespace: string;
  readonly uiUrl: string | undefined;
  readonly client: Client;
  readonly stateDir: string;
  readonly workspace: string;
  readonly auditFile: string;
  /** The model proxy's trace store (SQLite with FTS5): `agent-runtime traces` reads it. */
  readonly tracesFile: string;
  /** The OpenAI-compatible endpoint's base URL (`…/v1`), when it was asked for. */
  readonly gatewayUrl: string | undefined;
  /** The audit client every worker of the stack writes through. */
  readonly audit: AuditClient;
  /** The audit aggregator (its own process): base URL and a reader/writer token of the workers. */
  readonly aggregator: { readonly url: string; readonly token: string; readonly pid: number };
  /** The observer process, unless turned off. */
  readonly observer: DevObserver | undefined;
  /** Whether runs should be started with `requireObserverLease` (an observer runs). */
  readonly observerLease: boolean;
  /** The workers' Prometheus endpoint, when asked for. */
  readonly metricsUrl: string | undefined;
  readonly keys: { readonly secretKeyFile: string; readonly publicKeyFile: string };
  /** keyId → public key hex, for run inputs. */
  readonly trustedKeys: Readonly<Record<string, string>>;
  /** Stops workers, connections and the server. Idempotent. */
  stop(): Promise<void>;
}

/** Starts the embedded stack; `stop()` undoes everything. */
export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  installWorkerRuntime(options.temporalMetricsAddress);
  const stateDir = options.stateDir;
  const workspace = options.workspace ?? join(stateDir, 'workspace');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await mkdir(workspace, { recursive: true });
  const keyDir = join(stateDir, 'keys');
  const keys = { secretKeyFile: join(keyDir, SECRET_KEY_FILE), publicKeyFile: join(keyDir, PUBLIC_KEY_FILE) };
  if (!existsSync(keys.secretKeyFile)) await initSigningKey(keyDir);
  const publicKeys = await loadPublicKeys([keys.publicKeyFile]);
  const trustedKeys = Object.fromEntries([...publicKeys].map(([id, key]) => [id, bytesToHex(key)]));

  const cleanups: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    while (cleanups.length > 0)
      await cleanups
        .pop()?.()
        .catch(() => undefined);
  };
  try {
    const server: DevServerHandle = await startDevServer({
      port: options.port ?? 7233,
      ui: true,
      uiPort: options.uiPort ?? 8233,
      ...(options.inMemory ? {} : { dbFilename: join(stateDir, 'temporal.db') }),
      searchAttributes: SEARCH_ATTRIBUTES,
      ...(options.logger ? { logger: options.logger } : {}),
    });
    cleanups.push(() => server.stop());

    const auditFile = join(stateDir, 'audit', 'audit.jsonl');
    const file: AuditFile = await openAuditFile(auditFile, { repairTruncatedTail: true });
    cleanups.push(() => file.close());
    const log = (line: string): void => options.logger?.info?.(line);

    // the audit aggregator, its own process: the hash-chained store with checkpoints signed by its own key
    const auditKeyDir = join(stateDir, 'keys', 'audit');
    if (!existsSync(join(auditKeyDir, SECRET_KEY_FILE))) await initSigningKey(auditKeyDir);
    const tokens = {
      workers: randomBytes(24).toString('base64url'),
      observer: randomBytes(24).toString('base64url'),
    };
    const aggregatorConfig = join(stateDir, 'audit', 'aggregator.yaml');
    await writeFile(
      aggregatorConfig,
      [
        '# written by agent-runtime dev on every start (tokens are random per start)',
        'listen: { host: 127.0.0.1, port: 0 }',
        'store: { kind: sqlite, file: chain.db, checkpoints: { everyAppends: 100, everySeconds: 10 } }',
        `checkpointKey: ${JSON.stringify(join(auditKeyDir, SECRET_KEY_FILE))}`,
        'tokens:',
        '  - { name: workers, tokenEnv: AGENT_RUNTIME_AUDIT_WORKERS_TOKEN, sources: [workflow, guard, approvals, cli, model] }',
        '  - { name: observer, tokenEnv: AGENT_RUNTIME_AUDIT_OBSERVER_TOKEN, sources: [observer] }',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const childEnv = {
      AGENT_RUNTIME_AUDIT_WORKERS_TOKEN: tokens.workers,
      AGENT_RUNTIME_AUDIT_OBSERVER_TOKEN: tokens.observer,
    };
    const aggregatorChild: ChildHandle = await startChild({
      name: 'audit aggregator',
      args: ['audit', 'serve', '--config', aggregatorConfig],
      env: childEnv,
      ready: /audit aggregator listening on (http:\/\/\S+)/,
      onLine: (line) => log(`aggregator: ${line}`),
    });
    cleanups.push(() => aggregatorChild.stop());
    const aggregatorUrl = aggregatorChild.ready[1]!;
    const auditWriter: AuditAggregatorClient = createAuditAggregatorClient({
      url: aggregatorUrl,
      token: tokens.workers,
      writer: 'workers',
      batch: { maxDelayMs: 0 },
    });
    cleanups.push(() => auditWriter.close());

    const registry = options.metricsPort === undefined ? undefined : new MetricsRegistry();
    const auditMetrics = registry ? createAuditMetrics(registry) : undefined;
    const fileAndAggregator: AuditClient = {
      append: async (event) => {
        const stored = await file.append(event);
        // a retried workflow task repeats its event id: the aggregator answers it with the record it has
        await auditWriter.append({ ...event, id: event.id ?? `dev-file:${stored.seq}` });
        options.onAudit?.(stored);
        return stored;
      },
    };
    const audit: AuditClient = auditMetrics
      ? meteredAudit(fileAndAggregator, auditMetrics)
      : fileAndAggregator;

    const connection = await NativeConnection.connect({ address: server.address });
    cleanups.push(() => connection.close());
    const clientConnection = await Connection.connect({ address: server.address });
    cleanups.push(() => clientConnection.close());
    const client = new Client({ connection: clientConnection, namespace: server.namespace });

    const tracesFile = join(stateDir, 'traces', 'traces.db');
    const traceStore = await openSqliteTraceStore({ file: tracesFile });
    cleanups.push(() => traceStore.close());
    const writer: TraceWriter = createTraceWriter(traceStore, {
      redactor: createRedactor(options.model?.redaction),
      onError: (error, lost) =>
        options.logger?.warn(`model traces: ${lost} lost: ${(error as Error).message}`),
    });
    cleanups.push(() => writer.close());
    const otlpEndpoint = options.model?.otlpEndpoint ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    const otlp: TraceWriter | null = otlpEndpoint
      ? createTraceWriter(createOtlpTraceExporter({ endpoint: otlpEndpoint }), {
          redactor: createRedactor(options.model?.redaction),
          onError: (error, lost) =>
            options.logger?.warn(`OTLP export: ${lost} lost: ${(error as Error).message}`),
        })
      : null;
    if (otlp) cleanups.push(() => otlp.close());
    const budget = await openSqliteBudget({ file: join(stateDir, 'model', 'budget.db') });
    cleanups.push(() => budget.close());
    const env = options.model?.env;
    const providers = builtinProviders(env === undefined ? {} : { env });
    const limits = options.model?.agentDailyTokens ?? {};
    const router = options.model?.routes ? createProviderRouter(options.model.routes, providers) : undefined;
    const proxyOptions = {
      ...(router ? { router } : {}),
      budget,
      agentDailyTokens: (agentId: string) => limits[agentId] ?? null,
      onTrace: (trace: ProxyTrace) => {
        const record = toModelTrace(trace);
        writer.write(record);
        otlp?.write(record);
      },
    };
    // one set of providers for the model step, the routes and the endpoint
    const modelActivities = createModelActivities({ providers, proxy: proxyOptions });
    let gatewayUrl: string | undefined;
    if (options.model?.gateway) {
      const gateway = createServer(
        createModelGateway({
          keys: options.model.gateway.keys.map((k) => ({
            agentId: k.agentId,
            keySha256: createHash('sha256').update(k.key).digest('hex'),
          })),
          caller: createProxyCaller({
            proxy: createModelProxy({ ...proxyOptions, providers }),
            ...(router ? { router } : {}),
            ...(env === undefined ? {} : { env }),
          }),
        }),
      );
      await new Promise<void>((resolve, reject) => {
        gateway.once('error', reject);
        gateway.listen(options.model?.gateway?.port ?? 0, '127.0.0.1', () => resolve());
      });
      gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/v1`;
      cleanups.push(
        () =>
          new Promise<void>((resolve) => {
            gateway.closeAllConnections();
            gateway.close(() => resolve());
          }),
      );
    }

    let metricsUrl: string | undefined;
    if (registry) {
      const metrics = await serveWorkerMetrics({
        registry,
        port: options.metricsPort ?? 0,
        temporalMetricsAddress: options.temporalMetricsAddress,
      });
      metricsUrl = metrics.url;
      cleanups.push(() => metrics.close());
    }

    // the observer, its own process with its own token, store and Temporal client
    let observer: DevObserver | undefined;
    if (options.observer !== false) {
      const o = options.observer ?? {};
      const heartbeatTtlMs = o.heartbeatTtlMs ?? 5_000;
      const observerDir = join(stateDir, 'observer');
      await mkdir(observerDir, { recursive: true, mode: 0o700 });
      const governanceKeyDir = join(stateDir, 'keys', 'governance');
      if (!existsSync(join(governanceKeyDir, SECRET_KEY_FILE))) await initSigningKey(governanceKeyDir);
      const observerConfig = join(observerDir, 'observer.yaml');
      const alertEnv: Record<string, string> = {};
      const writeConfig = (alerts: object | undefined) =>
        writeFile(
          observerConfig,
          JSON.stringify(
            {
              aggregator: { url: aggregatorUrl, tokenEnv: 'AGENT_RUNTIME_AUDIT_OBSERVER_TOKEN' },
              temporal: { address: server.address, namespace: server.namespace },
              store: { file: 'observer.db' },
              rules: { builtin: true, files: [...(o.rules ?? [])], enforce: o.enforce ?? true },
              heartbeat: {
                ttl: `${heartbeatTtlMs}ms`,
                every: `${Math.max(100, Math.floor(heartbeatTtlMs / 5))}ms`,
              },
              governanceKeys: [join(governanceKeyDir, PUBLIC_KEY_FILE)],
              ...(o.metricsPort === undefined ? {} : { metrics: { port: o.metricsPort } }),
              // the workers' metrics are one of its inputs
              ...(metricsUrl === undefined
                ? {}
                : { scrape: [{ job: 'workers', url: `${metricsUrl}/metrics`, every: '5s' }] }),
              ...(alerts ? { alerts } : {}),
            },
            null,
            2,
          ),
          { mode: 0o600 },
        );
      await writeConfig(undefined);
      const launch = (): Promise<ChildHandle> =>
        startChild({
          name: 'observer',
          args: ['observer', 'serve', '--config', observerConfig],
          env: { AGENT_RUNTIME_AUDIT_OBSERVER_TOKEN: tokens.observer, ...alertEnv },
          ready: /^observer: \d+ rules.*?(?:metrics at (\S+))?$/,
          onLine: (line) => log(line),
        });
      let child = await launch();
      observer = {
        get pid() {
          return child.pid;
        },
        storeFile: join(observerDir, 'observer.db'),
        heartbeatTtlMs,
        get metricsUrl() {
          return child.ready[1];
        },
        kill: (signal = 'SIGKILL') => child.kill(signal),
        restart: async () => {
          await child.stop();
          child = await launch();
        },
        alertThroughApprovals: async (url, token) => {
          alertEnv['AGENT_RUNTIME_OBSERVER_ALERT_TOKEN'] = token;
          await writeConfig({ approvals: { url, tokenEnv: 'AGENT_RUNTIME_OBSERVER_ALERT_TOKEN' } });
          await child.stop();
          child = await launch();
        },
        stop: () => child.stop(),
      };
      cleanups.push(() => child.stop());
    }
    const lease = await watchObserverLease({ url: aggregatorUrl, token: tokens.workers, pollMs: 500 });
    cleanups.push(async () => lease.close());

    const bundle = await bundleAgentWorkflows(options.toolSpecModules ?? []);
    const on = { connection, namespace: server.namespace };
    const workers: Worker[] = [
      await createAgentsWorker({ ...on, bundle, activities: modelActivities, audit, lease }),
      await createToolsWorker({
        ...on,
        tools: [
          ...workspaceTools({ workspace, stateDir: join(stateDir, 'state'), http: options.http }),
          ...(options.tools ?? []),
        ],
        trustedKeys: publicKeys,
        audit,
        journalDir: toolsStateDirs(join(stateDir, 'state')).journal,
      }),
      await createApprovalsWorker({ ...on, sink: options.onNotice ?? (() => undefined), audit }),
    ];
    const running = runWorkers(workers);
    cleanups.push(() => running.stop());

    return {
      address: server.address,
      namespace: server.namespace,
      uiUrl: server.uiUrl,
      client,
      stateDir,
      workspace,
      auditFile,
      tracesFile,
      gatewayUrl,
      audit,
      aggregator: { url: aggregatorUrl, token: tokens.workers, pid: aggregatorChild.pid },
      observer,
      observerLease: observer !== undefined,
      metricsUrl,
      keys,
      trustedKeys,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
