/**
 * `agent-runtime approvals serve --config <file>`: the approvals service as its own process (the
 * governance domain): its HTTP server (web inbox, email review pages, Slack), its store, the
 * vote-signing key, the worker of the `approvals` task queue that the approval workflows
 * notify, and (with an `alerts` section) the observer's alerts endpoint. Runs until SIGINT/SIGTERM.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { fanOut, openAuditFile } from '../activities/audit/index.ts';
import type { AuditClient, AuditFile } from '../activities/audit/index.ts';
import { createAuditAggregatorClient } from '../audit/client.ts';
import {
  createAuditMetrics,
  meteredAudit,
  MetricsRegistry,
  registerProcessMetrics,
  serveMetrics,
} from '../metrics/index.ts';
import { ApprovalsAlertError, checkAlertRoute } from '../approval-channels/alerts.ts';
import { loadTrustedGovernance } from '../approval-channels/core/directory.ts';
import { startApprovalsHost } from '../approval-channels/host.ts';
import type { ApprovalsHost, EmailHostOptions } from '../approval-channels/host.ts';
import { loadSecretKey } from '../approval-channels/keys.ts';
import {
  alertRouteOf,
  ApprovalsConfigError,
  loadApprovalsServiceConfig,
} from '../approval-channels/service-config.ts';
import type { ApprovalsServiceConfig } from '../approval-channels/service-config.ts';
import { openApprovalStore } from '../approval-channels/store/index.ts';
import { AgentRuntimeError, toolCatalog } from '../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../tools/builtin-specs.ts';
import { createApprovalsWorker } from '../worker/workers.ts';
import { slackFromEnv } from './dev-approvals.ts';
import { ExitCode, println } from './io.ts';
import type { CliIo } from './io.ts';

async function emailOptions(
  config: ApprovalsServiceConfig,
  env: NodeJS.ProcessEnv,
): Promise<EmailHostOptions | undefined> {
  const email = config.email;
  if (!email) return undefined;
  const auth = env.SMTP_USER ? { auth: { user: env.SMTP_USER, pass: env.SMTP_PASS ?? '' } } : {};
  const dkim = email.dkim
    ? {
        dkim: {
          domainName: email.dkim.domainName,
          keySelector: email.dkim.keySelector,
          privateKey: await readFile(email.dkim.privateKeyFile, 'utf8'),
        },
      }
    : {};
  return { config: { from: email.from, smtp: { ...email.smtp, ...auth }, ...dkim } };
}

/** Starts the service from a configuration file and serves until a signal; returns the exit code. */
export async function serveApprovals(
  configFile: string,
  io: CliIo,
  env: NodeJS.ProcessEnv = process.env,
  until: Promise<unknown> = new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  }),
): Promise<number> {
  const config = await loadApprovalsServiceConfig(configFile);
  const governance = await loadTrustedGovernance(config.governance);
  const alerts = alertRouteOf(config, env, configFile);
  if (alerts) {
    try {
      checkAlertRoute(alerts, governance);
    } catch (error) {
      if (!(error instanceof ApprovalsAlertError)) throw error;
      throw new ApprovalsConfigError(`${configFile}: ${error.message}`);
    }
  }
  const { secretKey } = await loadSecretKey(config.signingKey);
  const storeConfig =
    config.store.kind === 'sqlite'
      ? config.store
      : {
          kind: 'postgres' as const,
          connectionString:
            config.store.connectionString ??
            env.APPROVALS_DATABASE_URL ??
            (() => {
              throw new AgentRuntimeError(
                'APPROVALS_CONFIG_INVALID',
                `${configFile}: store.connectionString is not set and neither is $APPROVALS_DATABASE_URL`,
              );
            })(),
          ...(config.store.schema === undefined ? {} : { schema: config.store.schema }),
        };
  const cleanups: (() => Promise<unknown>)[] = [];
  const stop = async (): Promise<void> => {
    while (cleanups.length > 0)
      await cleanups
        .pop()?.()
        .catch(() => undefined);
  };
  try {
    const store = await openApprovalStore(storeConfig);
    cleanups.push(() => store.close());
    const sinks: AuditClient[] = [];
    if (config.auditFile) {
      const file: AuditFile = await openAuditFile(config.auditFile, { repairTruncatedTail: true });
      cleanups.push(() => file.close());
      sinks.push(file);
    }
    if (config.aggregator) {
      const token = env[config.aggregator.tokenEnv];
      if (!token)
        throw new ApprovalsConfigError(
          `$${config.aggregator.tokenEnv} (the audit aggregator token) is not set`,
        );
      const aggregator = createAuditAggregatorClient({
        url: config.aggregator.url,
        token,
        writer: 'approvals',
      });
      cleanups.push(() => aggregator.close());
      sinks.push(aggregator);
    }
    const registry = new MetricsRegistry();
    registerProcessMetrics(registry);
    const metered = createAuditMetrics(registry);
    const [first, ...rest] = sinks;
    const audit: AuditClient | undefined = first ? meteredAudit(fanOut(first, ...rest), metered) : undefined;
    if (config.metrics) {
      const metrics = await serveMetrics({ registry, host: config.metrics.host, port: config.metrics.port });
      cleanups.push(() => metrics.close());
    }
    const clientConnection = await Connection.connect({ address: config.temporal.address });
    cleanups.push(() => clientConnection.close());
    const client = new Client({ connection: clientConnection, namespace: config.temporal.namespace });
    const slack = slackFromEnv(env);
    const email = await emailOptions(config, env);
    const host: ApprovalsHost = await startApprovalsHost({
      store,
      governance,
      client,
      secretKey,
      tools: toolCatalog(BUILTIN_TOOL_SPECS),
      http: { host: config.http.host, port: config.http.port },
      ...(config.http.publicBaseUrl === undefined ? {} : { publicBaseUrl: config.http.publicBaseUrl }),
      ...(slack ? { slack } : {}),
      ...(email ? { email } : {}),
      ...(alerts ? { alerts } : {}),
      ...(audit ? { audit } : {}),
      warn: (message) => println(io.stderr, `warning: ${message}`),
    });
    cleanups.push(() => host.close());
    const connection = await NativeConnection.connect({ address: config.temporal.address });
    cleanups.push(() => connection.close());
    const worker = await createApprovalsWorker({
      connection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      sink: (notice) => host.handleNotice(notice),
      ...(audit ? { audit } : {}),
    });
    const running = worker.run();
    cleanups.push(async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    });
    const channels = ['web', ...(email ? ['email'] : []), ...(slack ? ['slack'] : [])];
    println(
      io.stdout,
      JSON.stringify({
        event: 'ready',
        url: host.http.url,
        publicBaseUrl: host.publicBaseUrl,
        temporal: config.temporal.address,
        namespace: config.temporal.namespace,
        taskQueue: config.temporal.taskQueue,
        channels,
        alerts: alerts !== null,
        trusted: governance.versions(),
      }),
    );
    await Promise.race([until, running]);
    println(io.stdout, JSON.stringify({ event: 'stopping' }));
    return ExitCode.ok;
  } finally {
    await stop();
  }
}
