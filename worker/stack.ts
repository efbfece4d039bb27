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
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { Worker } from '@temporalio/worker';
import { bytesToHex } from '@noble/hashes/utils.js';
import { openAuditFile } from '../activities/audit/index.ts';
import type { AuditClient, AuditEvent, AuditFile } from '../activities/audit/index.ts';
import { createHash } from 'node:crypto';
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
import { builtinTools } from '../activities/tools/index.ts';
import type { HttpRequestToolConfig } from '../activities/tools/http.ts';
import { ed25519Signer, openSqliteAuditStore } from '../audit/index.ts';
import {
  initSigningKey,
  loadPublicKeys,
  loadSecretKey,
  PUBLIC_KEY_FILE,
  SECRET_KEY_FILE,
} from '../approval-channels/keys.ts';
import { bundleAgentWorkflows } from './bundle.ts';
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
  readonly logger?: TemporalToolsLogger;
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
  readonly keys: { readonly secretKeyFile: string; readonly publicKeyFile: string };
  /** keyId → public key hex, for run inputs. */
  readonly trustedKeys: Readonly<Record<string, string>>;
  /** Stops workers, connections and the server. Idempotent. */
  stop(): Promise<void>;
}

let runtimeInstalled = false;

/** Starts the embedded stack; `stop()` undoes everything. */
export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  if (!runtimeInstalled) {
    runtimeInstalled = true;
    try {
      Runtime.install({ logger: new DefaultLogger('WARN') });
    } catch {
      // installed already (tests)
    }
  }
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
    // the hash-chained, checkpointed copy (`agent-runtime audit verify`), signed with its own key
    const auditKeyDir = join(stateDir, 'keys', 'audit');
    if (!existsSync(join(auditKeyDir, SECRET_KEY_FILE))) await initSigningKey(auditKeyDir);
    const chain = await openSqliteAuditStore({
      file: join(stateDir, 'audit', 'chain.db'),
      autoCheckpoint: {
        signer: ed25519Signer((await loadSecretKey(join(auditKeyDir, SECRET_KEY_FILE))).secretKey),
        everyAppends: 100,
        everySeconds: 10,
      },
      onError: (error) => options.logger?.warn(`audit chain: ${(error as Error).message}`),
    });
    cleanups.push(() => chain.close());
    const chained = new Set<number>();
    const audit: AuditClient = {
      append: async (event) => {
        const stored = await file.append(event);
        // the file sink answers a duplicate (a retried workflow task) with the stored event: chain it once
        if (!chained.has(stored.seq)) {
          chained.add(stored.seq);
          if (chained.size > 10_000) chained.delete(chained.values().next().value as number);
          const { id: _id, ...input } = event;
          await chain.append('default', input);
        }
        options.onAudit?.(stored);
        return stored;
      },
    };

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

    const bundle = await bundleAgentWorkflows(options.toolSpecModules ?? []);
    const on = { connection, namespace: server.namespace };
    const workers: Worker[] = [
      await createAgentsWorker({ ...on, bundle, activities: modelActivities, audit }),
      await createToolsWorker({
        ...on,
        tools: [
          ...builtinTools({
            fs: { roots: [], mounts: { '/workspace': workspace }, stateDir: join(stateDir, 'state', 'fs') },
            http: options.http ?? { allowedHosts: [] },
          }),
          ...(options.tools ?? []),
        ],
        trustedKeys: publicKeys,
        audit,
        journalDir: join(stateDir, 'state', 'journal'),
      }),
      await createApprovalsWorker({ ...on, sink: options.onNotice ?? (() => undefined), audit }),
    ];
    const running = workers.map((worker) => worker.run());
    cleanups.push(async () => {
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      await Promise.allSettled(running);
    });

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
      keys,
      trustedKeys,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
