/**
 * `agent-runtime dev`: the whole stack on this machine (Temporal dev server with its Web UI, the
 * agents/tools/approvals workers, vote-signing keys, audit log) until Ctrl-C. Approval notices are
 * printed with the exact vote command. `--demo` also runs the ops-staging example with a scripted
 * model and follows it; `start` is `dev --demo`.
 * @module
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadScriptFile } from '../../activities/model/index.ts';
import type { LoadedGovernance } from '../../policy/index.ts';
import { bundleAgentWorkflows } from '../../worker/bundle.ts';
import { startDevStack } from '../../worker/stack.ts';
import type { DevStack } from '../../worker/stack.ts';
import type { ScriptedTurn } from '../../activities/model/types.ts';
import type { BillingExample } from '../billing.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';
import { DEFAULT_ADDRESS, defaultStateDir, projectRoot } from '../local.ts';
import { streamLogger } from '../logger.ts';
import { noticeLines, uiWorkflowsUrl } from '../progress.ts';
import { approveInInbox, demoModelFromEnv, runDemoScenes, startStatusPage, STATUS_HOST } from '../demo.ts';
import type { AuditEvent } from '../../activities/audit/types.ts';
import { lookup as dnsLookup } from 'node:dns/promises';
import { createHash, randomBytes } from 'node:crypto';
import { findFreePort } from '../../worker/temporal/dev-server.ts';
import { loadOrReport } from './governance.ts';
import { exampleGovernanceFiles, startDevApprovals } from '../dev-approvals.ts';
import type { DevApprovals } from '../dev-approvals.ts';
import type { ApprovalNotice } from '../../workflows/approval-types.ts';
import type { AnyToolSpec } from '../../policy/index.ts';

const USAGE = `usage:
  agent-runtime dev [--state-dir D] [--port N] [--ui-port N] [--approvals-port N] [--governance F]...
                    [--demo [--yes]] [--exit-when-done] [--json]
      --state-dir        Temporal database, keys, audit log, workspace (default .agent-runtime)
      --port, --ui-port  Temporal gRPC and Web UI ports (default 7233, 8233)
      --approvals-port   the approvals service: web inbox, email review pages, Slack (default 8288; 0 = any)
      --governance       a governance document the approvals service trusts (repeatable; default: examples/*)
      --model-routes F   the model proxy's routes (YAML): runs with model { provider: routed } use them, and the
                         OpenAI-compatible endpoint starts on --model-gateway-port (default 8290; 0 = any)
      --demo             three runs of the ops-staging agent that show every layer (a scripted model, or a
                         real one with OPENAI_API_KEY, ANTHROPIC_API_KEY or OPENAI_BASE_URL)
      --yes              the demo approves its one approval itself, through the web inbox (for CI)
      --exit-when-done   exit once started (with --demo: once the run ended; exit 0 if it completed)
      --json             one JSON object per line instead of text
  agent-runtime start [--no-wait] ...   same as dev --demo (--no-wait: exit when the demo is done)`;

/** How long stopping may take after Ctrl-C before the process exits anyway. */
const FORCE_EXIT_MS = 20_000;

/** What {@link runDev} starts. */
export interface DevOptions {
  readonly stateDir: string;
  readonly port: number;
  readonly uiPort: number;
  readonly approvalsPort: number;
  /** The model proxy's routes file; with it the OpenAI-compatible endpoint starts too. */
  readonly modelRoutes?: string;
  readonly modelGatewayPort?: number;
  /** Governance files the approvals service trusts (empty: the examples). */
  readonly governance: readonly string[];
  readonly demo: boolean;
  readonly exitWhenDone: boolean;
  readonly json: boolean;
  /** The demo approves its approval itself through the web inbox. */
  readonly yes?: boolean;
}

/** The demo: who directs which agent to do what, under which document, with which script. */
export const DEMO = {
  governance: join('examples', 'ops-staging', 'governance.yaml'),
  script: join('examples', 'ops-staging', 'demo.script.yaml'),
  requestedBy: 'carol',
  task: 'Tidy the staging runbooks and bump the app replicas',
  /** The one approval the demo asks for (`--yes` gives it); the others are left to time out. */
  approvedRule: 'write-config',
} as const;

/** Files the workspace starts with (created when missing; the demo script reads and writes them). */
const DEMO_WORKSPACE: Readonly<Record<string, string>> = {
  'docs/index.md': '# Staging\n\n- on-call.md: who to page\n- ../runbooks/: what to do\n',
  'docs/on-call.md': '# On call\n\nPage the SRE on call (bob or dana) for anything that changes a service.\n',
  'runbooks/README.md': '# Runbooks\n\nOne file per procedure; see restart.md for restarts.\n',
  'config/app.yaml': 'app: shop-api\nenvironment: staging\nreplicas: 2\n',
  'secrets/token': 'not-a-real-token\n',
};

export const devCommand: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      'state-dir': { type: 'string' },
      port: { type: 'string' },
      'ui-port': { type: 'string' },
      'approvals-port': { type: 'string' },
      governance: { type: 'string', multiple: true },
      'model-routes': { type: 'string' },
      'model-gateway-port': { type: 'string' },
      demo: { type: 'boolean', default: false },
      'exit-when-done': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      yes: { type: 'boolean', default: false },
    },
  });
  if (values.yes && !values.demo) throw new UsageError('--yes goes with --demo', USAGE);
  return runDev(
    {
      stateDir: resolve(values['state-dir'] ?? defaultStateDir()),
      port: parsePort('--port', values.port, 7233, USAGE),
      uiPort: parsePort('--ui-port', values['ui-port'], 8233, USAGE),
      approvalsPort: parsePort('--approvals-port', values['approvals-port'], 8288, USAGE, true),
      governance: (values.governance ?? []).map((file) => resolve(file)),
      ...(values['model-routes'] === undefined ? {} : { modelRoutes: resolve(values['model-routes']) }),
      modelGatewayPort: parsePort('--model-gateway-port', values['model-gateway-port'], 8290, USAGE, true),
      demo: values.demo,
      exitWhenDone: values['exit-when-done'],
      json: values.json,
      yes: values.yes,
    },
    io,
  );
};

/** Parses a port option (1-65535). */
export function parsePort(
  option: string,
  value: string | undefined,
  fallback: number,
  usage: string,
  allowZero = false,
): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  const min = allowZero ? 0 : 1;
  if (!/^\d+$/.test(value) || port < min || port > 65_535)
    throw new UsageError(
      `${option}: expected a port number (${min}-65535), got ${JSON.stringify(value)}`,
      usage,
    );
  return port;
}

/** Starts the stack (and the demo), prints where everything is, and stops it all on Ctrl-C. */
export async function runDev(options: DevOptions, io: CliIo): Promise<number> {
  const root = projectRoot();
  const emit = (event: Record<string, unknown>): void => println(io.stdout, JSON.stringify(event));
  const say = (text = ''): void => {
    if (!options.json) println(io.stdout, text);
  };

  // the demo's inputs are checked before anything starts
  let demo: { governance: LoadedGovernance; turns: readonly ScriptedTurn[] } | undefined;
  if (options.demo) {
    const governance = await loadOrReport(join(root, DEMO.governance), io);
    if (!governance) return ExitCode.failed;
    demo = { governance, turns: await loadScriptFile(join(root, DEMO.script)) };
  }

  const stopping = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) process.exit(130); // a second Ctrl-C does not wait
    say();
    say(`${signal}: stopping…`);
    stopping.abort();
    // a server that died first can leave the workers retrying: do not hang on them
    setTimeout(() => {
      println(io.stderr, `agent-runtime: could not stop cleanly within ${FORCE_EXIT_MS / 1000} s; exiting`);
      process.exit(1);
    }, FORCE_EXIT_MS).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let stack: DevStack | undefined;
  let billing: BillingExample | undefined;
  let statusPage: { port: number; close(): Promise<void> } | undefined;
  const events: AuditEvent[] = [];
  let demoRunning = true;
  const alertToken = randomBytes(24).toString('base64url');
  let approvals: DevApprovals | undefined;
  // notices wait for the approvals service, which needs the stack's client
  let approvalsReady: (value: DevApprovals) => void = () => undefined;
  const approvalsStarted = new Promise<DevApprovals>((resolve) => (approvalsReady = resolve));
  try {
    billing = await startBilling(io);
    if (demo) statusPage = await startStatusPage();
    say(`Starting Temporal and the workers (state in ${options.stateDir})…`);
    let voteOptions: string[] = [];
    try {
      const model = options.modelRoutes ? await modelOptions(options, root) : undefined;
      stack = await startDevStack({
        ...(model ? { model } : {}),
        // Prometheus endpoints on free ports (printed below): workers (+ Temporal Core SDK metrics), observer
        metricsPort: 0,
        temporalMetricsAddress: `127.0.0.1:${await findFreePort()}`,
        observer: { metricsPort: 0 },
        stateDir: options.stateDir,
        port: options.port,
        uiPort: options.uiPort,
        ...(billing ? { toolSpecModules: [billing.specModule], tools: billing.tools } : {}),
        // the demo's status page: its host name resolves to this machine
        ...(statusPage
          ? {
              http: {
                allowedHosts: [STATUS_HOST],
                allowPrivateAddresses: [STATUS_HOST],
                lookup: async (host: string) =>
                  host === STATUS_HOST
                    ? [{ address: '127.0.0.1', family: 4 }]
                    : dnsLookup(host, { all: true }),
              },
            }
          : {}),
        // the demo checks its runs against these; collected only while it runs
        ...(demo ? { onAudit: (event: AuditEvent) => void (demoRunning && events.push(event)) } : {}),
        onNotice: async (notice) => {
          if (options.json)
            emit({
              event: 'approval_notice',
              kind: notice.kind,
              approvalWorkflowId: notice.approvalWorkflowId,
              recipients: notice.recipients,
              tool: notice.request.action.tool,
              resource: notice.request.action.resource,
              ruleId: notice.request.ruleId,
              expiresAt: new Date(notice.expiresAtMs).toISOString(),
              outcome: notice.outcome,
            });
          else for (const line of noticeLines(notice, voteOptions)) println(io.stdout, line);
          return deliverNotice(await approvalsStarted, notice, options, io);
        },
        logger: streamLogger(io.stderr),
      });
    } catch (error) {
      if (stopping.signal.aborted) return ExitCode.ok; // Ctrl-C during startup took the server down too
      throw error;
    }
    if (stopping.signal.aborted) return ExitCode.ok;
    approvals = await startDevApprovals({
      stack,
      governanceFiles: options.governance.length > 0 ? options.governance : exampleGovernanceFiles(root),
      toolSpecs: billing ? await billingSpecs(billing.specModule) : [],
      port: options.approvalsPort,
      audit: stack.audit,
      alertTokenSha256: createHash('sha256').update(alertToken).digest('hex'),
      onMail: (mail) => {
        if (options.json) emit({ event: 'mail', to: mail.to, subject: mail.subject, links: mail.links });
        else {
          println(io.stdout, `[mail to ${mail.to.join(', ')}] ${mail.subject}`);
          for (const link of mail.links) println(io.stdout, `    ${link}`);
        }
      },
      warn: (message) => println(io.stderr, `warning: ${message}`),
    });
    approvalsReady(approvals);
    // the observer's alerts go out through the approvals service (Slack DM, email), with their own token
    if (stack.observer) await stack.observer.alertThroughApprovals(approvals.host.publicBaseUrl, alertToken);
    await seedWorkspace(stack.workspace);
    voteOptions = [
      ...(stack.address === DEFAULT_ADDRESS ? [] : ['--address', stack.address]),
      ...(options.stateDir === defaultStateDir() ? [] : ['--key', stack.keys.secretKeyFile]),
    ];
    printReady(stack, billing, approvals, options, io);

    let code: number = ExitCode.ok;
    if (demo && statusPage && !stopping.signal.aborted)
      code = await runDemoScenes({
        stack,
        approvals,
        governance: demo.governance,
        tiersTurns: demo.turns,
        requestedBy: DEMO.requestedBy,
        tiersTask: DEMO.task,
        statusPort: statusPage.port,
        events,
        model: demoModelFromEnv(process.env),
        io,
        json: options.json,
        voteOptions,
        signal: stopping.signal,
      });
    demoRunning = false;
    events.length = 0;
    if (options.exitWhenDone) return code; // interrupted: the run did not complete here
    if (stopping.signal.aborted) return ExitCode.ok;

    say();
    say('The stack keeps running. Try:');
    say(
      `  npx agent-runtime approvals list${voteOptions.includes('--address') ? ` --address ${stack.address}` : ''}`,
    );
    say(
      `  npx agent-runtime run ${DEMO.governance} --script ${DEMO.script} --task "…" --as carol --wait${voteOptions.includes('--address') ? ` --address ${stack.address}` : ''}`,
    );
    say('Press Ctrl-C to stop.');
    await new Promise<void>((resolve) =>
      stopping.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    return ExitCode.ok;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (stack) {
      say('Stopping the workers and Temporal…');
      await stack.stop();
    }
    await approvals?.close();
    await billing?.close();
    await statusPage?.close();
    if (stack) {
      if (options.json) emit({ event: 'stopped' });
      else say('Stopped.');
    }
  }
}

/** The billing example, when it is there and its workflow bundle builds; `dev` runs without it otherwise. */
async function startBilling(io: CliIo): Promise<BillingExample | undefined> {
  let billing: BillingExample | undefined;
  const consoleError = console.error;
  try {
    const { startBillingExample } = await import('../billing.ts');
    billing = await startBillingExample();
    // bundled now (the stack reuses the cached bundle) so a failure costs no server restart;
    // webpack reports through console.error: one warning line below says it instead
    console.error = () => undefined;
    await bundleAgentWorkflows([billing.specModule]);
    return billing;
  } catch (error) {
    await billing?.close();
    println(
      io.stderr,
      `warning: billing example not wired (${(error as Error).message.split('\n')[0] ?? ''})`,
    );
    return undefined;
  } finally {
    console.error = consoleError;
  }
}

/** Creates the example files the workspace lacks; never overwrites. */
async function seedWorkspace(workspace: string): Promise<void> {
  for (const [file, content] of Object.entries(DEMO_WORKSPACE)) {
    const path = join(workspace, file);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, content, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
}

function printReady(
  stack: DevStack,
  billing: BillingExample | undefined,
  approvals: DevApprovals,
  options: DevOptions,
  io: CliIo,
): void {
  const inbox = `${approvals.host.publicBaseUrl}/inbox`;
  const running =
    stack.uiUrl === undefined
      ? undefined
      : uiWorkflowsUrl(stack.uiUrl, stack.namespace, "ExecutionStatus='Running'");
  if (options.json) {
    println(
      io.stdout,
      JSON.stringify({
        event: 'ready',
        address: stack.address,
        namespace: stack.namespace,
        uiUrl: stack.uiUrl ?? null,
        runningWorkflowsUrl: running ?? null,
        stateDir: stack.stateDir,
        workspace: stack.workspace,
        auditFile: stack.auditFile,
        publicKeyFile: stack.keys.publicKeyFile,
        billingApiUrl: billing?.url ?? null,
        inboxUrl: inbox,
        slack: approvals.host.slack !== null,
        metrics: {
          workers: stack.metricsUrl === undefined ? null : `${stack.metricsUrl}/metrics`,
          aggregator: `${stack.aggregator.url}/metrics`,
          observer: stack.observer?.metricsUrl ?? null,
        },
      }),
    );
    return;
  }
  const rows: [string, string][] = [
    ['Temporal frontend', `${stack.address} (namespace ${stack.namespace})`],
    ...(stack.uiUrl === undefined ? [] : [['Temporal Web UI', stack.uiUrl] as [string, string]]),
    ...(running === undefined ? [] : [['Running workflows', running] as [string, string]]),
    ['Workers', 'agents, tools, approvals (in this process)'],
    [
      'Audit aggregator',
      `${stack.aggregator.url} (own process; npx agent-runtime audit verify|tail|reconcile)`,
    ],
    [
      'Observer',
      stack.observer
        ? `own process (npx agent-runtime observer status|findings)`
        : 'not running (runs are not watched)',
    ],
    [
      'Metrics',
      [
        stack.metricsUrl === undefined ? undefined : `${stack.metricsUrl}/metrics`,
        `${stack.aggregator.url}/metrics`,
        stack.observer?.metricsUrl,
      ]
        .filter((url) => url !== undefined)
        .join('  '),
    ],
    ['Approvals inbox', `${inbox} (sign-in links are printed with each request)`],
    ['Email', `local capture on 127.0.0.1:${approvals.mail.port} (messages printed here)`],
    [
      'Slack',
      approvals.host.slack ? `${approvals.host.publicBaseUrl}/slack/events` : 'not configured (SLACK_*)',
    ],
    ['State', stack.stateDir],
    ['Workspace', `${stack.workspace} (the agent's /workspace)`],
    ['Audit log', stack.auditFile],
    ['Model traces', `${stack.tracesFile} (npx agent-runtime traces search|show)`],
    [
      'Model gateway',
      stack.gatewayUrl === undefined
        ? 'not started (give --model-routes <file>)'
        : `${stack.gatewayUrl} (OpenAI-compatible; agent keys in ${join(stack.stateDir, 'model', 'gateway-keys.json')})`,
    ],
    ['Vote public key', stack.keys.publicKeyFile],
    ...(billing
      ? [
          ['Billing API (fake)', `${billing.url} (billing.refund; orders ${billing.orders.join(', ')})`] as [
            string,
            string,
          ],
        ]
      : []),
  ];
  println(io.stdout);
  for (const [label, value] of rows) println(io.stdout, `${label.padEnd(19)}${value}`);
}

/** Hands a notice to the approvals service and, for a new request, prints a sign-in link per approver. */
async function deliverNotice(
  approvals: DevApprovals,
  notice: ApprovalNotice,
  options: DevOptions,
  io: CliIo,
): Promise<void> {
  await approvals.host.handleNotice(notice);
  if (notice.kind !== 'request') return;
  const request = await approvals.host.service.getRequest(notice.approvalWorkflowId);
  if (!request) return; // not trusted by the service (audited); the vote command above still works
  if (options.yes && notice.request.ruleId === DEMO.approvedRule) {
    const approver = approvals.host.service.recipients(request)[0]?.id;
    if (approver !== undefined) {
      if (options.json)
        println(
          io.stdout,
          JSON.stringify({
            event: 'auto_approve',
            principal: approver,
            approvalWorkflowId: notice.approvalWorkflowId,
          }),
        );
      else println(io.stdout, `    --yes: ${approver} approves it in the web inbox`);
      // after this notice is handled: the vote's Update waits for the workflow, which waits for this activity
      setTimeout(() => {
        approveInInbox(approvals, notice.approvalWorkflowId, approver).catch((error: unknown) =>
          println(io.stderr, `warning: --yes could not approve: ${(error as Error).message}`),
        );
      }, 0);
    }
    return;
  }
  for (const contact of approvals.host.service.recipients(request)) {
    const link = await approvals.host.createSignInLink(contact.id);
    if (options.json)
      println(io.stdout, JSON.stringify({ event: 'inbox_link', principal: contact.id, url: link }));
    else println(io.stdout, `    web inbox for ${contact.id}: ${link}`);
  }
}

/** The spec objects of a tool spec module (for approve-with-edits). */
async function billingSpecs(specModule: string): Promise<readonly AnyToolSpec[]> {
  const loaded = (await import(specModule)) as { toolSpecs?: readonly AnyToolSpec[] };
  return loaded.toolSpecs ?? [];
}

/** The model proxy's routes (from `--model-routes`) and a gateway key per trusted agent, kept 0600 in the state dir. */
async function modelOptions(options: DevOptions, root: string) {
  const { parse } = await import('yaml');
  const { readFile, writeFile, mkdir } = await import('node:fs/promises');
  const { randomBytes } = await import('node:crypto');
  const { loadTrustedGovernance } = await import('../../approval-channels/core/directory.ts');
  const { parseRouterConfig } = await import('../../activities/model/routing/index.ts');
  // validated here, so a bad routes file is one clear error before anything starts
  const routes = parseRouterConfig(parse(await readFile(options.modelRoutes!, 'utf8')));
  const files = options.governance.length > 0 ? options.governance : exampleGovernanceFiles(root);
  const agents = [...new Set((await loadTrustedGovernance(files)).versions().map((v) => v.agentId))];
  const keys = agents.map((agentId) => ({ agentId, key: `sk-ar-${randomBytes(24).toString('base64url')}` }));
  const keyFile = join(options.stateDir, 'model', 'gateway-keys.json');
  await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
  await writeFile(keyFile, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 });
  return { routes, gateway: { port: options.modelGatewayPort ?? 8290, keys } };
}
