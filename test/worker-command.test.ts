/**
 * `agent-runtime worker --config F` end to end: the agents and the tools worker as real child
 * processes on the shared dev server, auditing to a real aggregator (SQLite), serving /metrics;
 * and the configuration file's refusals, pinned.
 */
import { runCli } from './run-cli.ts';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { AuditKind } from '../activities/audit/types.ts';
import { castVote } from '../approval-channels/operator.ts';
import { initSigningKey, loadSecretKey } from '../approval-channels/keys.ts';
import { createAuditAggregatorClient } from '../audit/client.ts';
import type { AuditAggregatorClient } from '../audit/client.ts';
import type { AuditRecord } from '../audit/chain.ts';
import { startAuditAggregator, tokenSha256 } from '../audit/server.ts';
import type { AuditAggregator } from '../audit/server.ts';
import { openSqliteAuditStore } from '../audit/sqlite.ts';
import type { AuditStore } from '../audit/store.ts';
import { keyIdOf } from '../policy/index.ts';
import type { LoadedGovernance } from '../policy/index.ts';
import { startChild } from '../worker/child.ts';
import type { ChildHandle } from '../worker/child.ts';
import { loadWorkerConfig } from '../worker/config.ts';
import { startAgentRun } from '../worker/runs.ts';
import { createApprovalsWorker } from '../worker/workers.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import { statusQuery } from '../workflows/agent-run.ts';
import type { ScriptedTurn } from '../activities/model/types.ts';
import type { AgentRunInput } from '../workflows/run-types.ts';
import { loadGovernance, OPS_GOVERNANCE } from './agent-stack.ts';
import { connectTestEnv } from './temporal.ts';

const dir = mkdtempSync(join(tmpdir(), 'ar-worker-cmd-'));
const TOKEN = randomBytes(24).toString('base64url');
const OBSERVER_TOKEN = randomBytes(24).toString('base64url');
const TOKEN_ENV = 'AGENT_RUNTIME_AUDIT_WORKERS_TOKEN';
const suffix = randomBytes(4).toString('hex');
const queues = {
  agents: `agents-worker-cmd-${suffix}`,
  tools: `tools-worker-cmd-${suffix}`,
  approvals: `approvals-worker-cmd-${suffix}`,
};
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const READY = /^worker (agents|tools) ready on (\S+) \(temporal (\S+), namespace (\S+)\)$/;
const METRICS = /^worker (?:agents|tools): metrics at (http:\/\/\S+)\/metrics$/;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Runs the CLI in process. */
async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await runCli(argv);
  return { code, out: stdout, err: stderr };
}

/** The message a promise rejects with, `<dir>` for the temp dir. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => new Error('expected a refusal'),
    (e: unknown) => e as Error & { code?: string },
  );
  expect(error).toMatchObject({ code: 'WORKER_CONFIG_INVALID' });
  return error.message.replaceAll(dir, '<dir>');
}

describe('agent-runtime worker --config (child processes)', () => {
  let store: AuditStore;
  let aggregator: AuditAggregator;
  let reader: AuditAggregatorClient;
  let env: TestWorkflowEnvironment;
  let governance: LoadedGovernance;
  let secretKey: Uint8Array;
  let trustedKeys: Record<string, string>;
  let agents: ChildHandle;
  let tools: ChildHandle;
  const output: Record<'agents' | 'tools', string[]> = { agents: [], tools: [] };
  const workspace = join(dir, 'cluster', 'workspace');
  const stopApprovals: (() => Promise<void>)[] = [];

  const metricsUrl = (role: 'agents' | 'tools'): string => {
    const url = output[role].map((line) => METRICS.exec(line)?.[1]).find((u) => u !== undefined);
    if (url === undefined)
      throw new Error(`no metrics line from the ${role} worker: ${output[role].join('\n')}`);
    return url;
  };
  const start = (
    turns: readonly ScriptedTurn[],
    keys = trustedKeys,
    options: AgentRunInput['options'] = {},
  ): Promise<WorkflowHandle<typeof agentRunWorkflow>> =>
    startAgentRun(env.client, {
      governance,
      task: 'tidy the docs',
      requestedBy: 'carol',
      model: { provider: 'scripted', turns },
      trustedKeys: keys,
      taskQueue: queues.agents,
      taskQueues: { tools: queues.tools, approvals: queues.approvals },
      options,
    });
  const runRecords = async (run: string): Promise<AuditRecord[]> =>
    (await reader.read({ stream: 'default' })).filter((r) => r.run === run);
  const pendingApproval = async (handle: WorkflowHandle<typeof agentRunWorkflow>): Promise<string> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const view = await handle.query(statusQuery);
      if (view.pendingApproval) return view.pendingApproval.approvalWorkflowId;
      if (Date.now() > deadline) throw new Error(`no pending approval: ${JSON.stringify(view)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    store = await openSqliteAuditStore({ file: join(dir, 'audit.db') });
    aggregator = await startAuditAggregator({
      store,
      tokens: [
        {
          name: 'workers',
          tokenSha256: tokenSha256(TOKEN),
          sources: ['workflow', 'guard', 'approvals', 'cli', 'model'],
        },
        { name: 'observer', tokenSha256: tokenSha256(OBSERVER_TOKEN), sources: ['observer'] },
      ],
    });
    reader = createAuditAggregatorClient({ url: aggregator.url, token: TOKEN });
    env = await connectTestEnv();
    governance = await loadGovernance(OPS_GOVERNANCE);
    const key = await initSigningKey(join(dir, 'cluster', 'keys'));
    ({ secretKey } = await loadSecretKey(key.secretKeyFile));
    trustedKeys = { [key.keyId]: bytesToHex(ed25519.getPublicKey(secretKey)) };
    for (const sub of ['docs', 'config']) mkdirSync(join(workspace, sub), { recursive: true });
    writeFileSync(join(workspace, 'docs', 'index.md'), '# Docs\n');
    writeFileSync(join(workspace, 'config', 'app.yaml'), 'replicas: 2\n');

    const temporal = `temporal: { address: ${inject('temporalAddress')}, namespace: ${inject('temporalNamespace')}, taskQueue: `;
    const common = [
      `audit: { url: ${aggregator.url}, tokenEnv: ${TOKEN_ENV} }`,
      'metrics: { host: 127.0.0.1, port: 0 }',
    ];
    const agentsFile = file(
      'cluster/agents.yaml',
      [
        'role: agents',
        `${temporal}${queues.agents} }`,
        common[0],
        `metrics: { host: 127.0.0.1, port: 0, temporalBindAddress: '127.0.0.1:${await freePort()}' }`,
        'observerLease: { pollMs: 200 }',
        '',
      ].join('\n'),
    );
    // relative paths: against the file's directory
    const toolsFile = file(
      'cluster/tools.yaml',
      [
        'role: tools',
        `${temporal}${queues.tools} }`,
        ...common,
        'tools: { workspace: workspace, stateDir: tools-state }',
        'trustedKeys: [keys/vote-signing.pub]',
        '',
      ].join('\n'),
    );
    const launch = (role: 'agents' | 'tools', config: string) =>
      startChild({
        name: `${role} worker`,
        args: ['worker', '--config', config],
        env: { [TOKEN_ENV]: TOKEN },
        ready: READY,
        timeoutMs: 60_000,
        onLine: (line) => output[role].push(line),
      });
    [agents, tools] = await Promise.all([launch('agents', agentsFile), launch('tools', toolsFile)]);

    // approval notices: an approvals worker of the test's own (not the subject here)
    const approvals = await createApprovalsWorker({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue: queues.approvals,
      sink: () => undefined,
    });
    const running = approvals.run();
    stopApprovals.push(async () => {
      if (approvals.getState() === 'RUNNING') approvals.shutdown();
      await running;
    });
  });

  afterAll(async () => {
    await agents?.stop();
    await tools?.stop();
    for (const stop of stopApprovals) await stop();
    await reader?.close();
    await aggregator?.close();
    await store?.close();
    await env?.teardown();
  });

  test('each prints its ready line', () => {
    expect(agents.ready.slice(1)).toEqual([
      'agents',
      queues.agents,
      inject('temporalAddress'),
      inject('temporalNamespace'),
    ]);
    expect(tools.ready.slice(1)).toEqual([
      'tools',
      queues.tools,
      inject('temporalAddress'),
      inject('temporalNamespace'),
    ]);
  });

  test('an AgentRun completes across both: fs.read and fs.write run in the tools worker, audited at the aggregator', async () => {
    const handle = await start([
      {
        calls: [
          { tool: 'fs.read', args: { path: '/workspace/docs/index.md' }, rationale: 'see the docs' },
          {
            tool: 'fs.write',
            args: { path: '/workspace/docs/new.md', content: '# New\n' },
            rationale: 'write',
          },
        ],
      },
      { final: 'Docs tidied.' },
    ]);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.answer).toBe('Docs tidied.');
    expect(result.decisions.map((d) => [d.step, d.tool, d.tier, d.ruleId, d.outcome])).toEqual([
      [1, 'fs.read', 'autonomous', 'read-workspace', 'executed'],
      [2, 'fs.write', 'preapproved', 'write-docs', 'executed'],
    ]);
    expect(readFileSync(join(workspace, 'docs', 'new.md'), 'utf8')).toBe('# New\n');

    // the aggregator client flushes within milliseconds; allow for the batch
    let records: AuditRecord[] = [];
    for (let i = 0; i < 100; i += 1) {
      records = await runRecords(handle.workflowId);
      if (records.some((r) => r.kind === AuditKind.runFinished)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const seen = records.map((r) => `${r.source} ${r.kind} ${r.step ?? '-'}`);
    expect(seen).toEqual(
      expect.arrayContaining([
        'workflow decision 1',
        'workflow decision 2',
        'guard execution.started 1',
        'guard execution.result 1',
        'guard execution.started 2',
        'guard execution.result 2',
        'workflow run.finished -',
      ]),
    );
    expect(records.filter((r) => r.kind === AuditKind.decision)).toHaveLength(2);
    expect(records.filter((r) => r.source === 'guard')).toHaveLength(4);

    const agentsMetrics = await (await fetch(`${metricsUrl('agents')}/metrics`)).text();
    expect(agentsMetrics).toMatch(/^agent_runtime_decisions_total\{[^}]*tier="autonomous"[^}]*\} [1-9]/m);
    expect(agentsMetrics).toMatch(/^agent_runtime_decisions_total\{[^}]*tier="preapproved"[^}]*\} [1-9]/m);
    expect(agentsMetrics).toContain('agent_runtime_process_resident_memory_bytes');
    // the Core SDK's own metrics, from temporalBindAddress, on the same scrape
    expect(agentsMetrics).toMatch(/^temporal_worker_task_slots_available\{/m);
    // each process meters only what it writes: the guard's events are the tools worker's
    const toolsMetrics = await (await fetch(`${metricsUrl('tools')}/metrics`)).text();
    expect(toolsMetrics).toMatch(/^agent_runtime_executions_total\{[^}]*\} [1-9]/m);
    expect(toolsMetrics).not.toMatch(/^agent_runtime_decisions_total\{/m);
  });

  test('an approval signed with the trusted key executes; one signed with another key is refused by the guard', async () => {
    const write = (content: string): ScriptedTurn[] => [
      {
        calls: [
          { tool: 'fs.write', args: { path: '/workspace/config/app.yaml', content, mode: 'overwrite' } },
        ],
      },
      { final: 'done' },
    ];
    const approved = await start(write('replicas: 3\n'));
    await castVote(env.client, {
      approvalWorkflowId: await pendingApproval(approved),
      principal: 'dana',
      decision: 'approve',
      secretKey,
    });
    expect((await approved.result()).decisions.map((d) => [d.tier, d.outcome])).toEqual([
      ['approval', 'executed'],
    ]);
    expect(readFileSync(join(workspace, 'config', 'app.yaml'), 'utf8')).toBe('replicas: 3\n');

    // the run trusts the rogue key too, so the workflow accepts its vote; the tools worker does not
    const rogue = ed25519.utils.randomSecretKey();
    const rogueKeys = {
      ...trustedKeys,
      [keyIdOf(ed25519.getPublicKey(rogue))]: bytesToHex(ed25519.getPublicKey(rogue)),
    };
    const forged = await start(write('replicas: 99\n'), rogueKeys);
    await castVote(env.client, {
      approvalWorkflowId: await pendingApproval(forged),
      principal: 'dana',
      decision: 'approve',
      secretKey: rogue,
    });
    expect((await forged.result()).decisions.map((d) => [d.tier, d.outcome])).toEqual([
      ['approval', 'refused_by_guard'],
    ]);
    expect(readFileSync(join(workspace, 'config', 'app.yaml'), 'utf8')).toBe('replicas: 3\n');
    const refused = (await runRecords(forged.workflowId)).filter(
      (r) => r.kind === AuditKind.executionRefused,
    );
    expect(refused.map((r) => r.source)).toEqual(['guard']);
  });

  test('the agents worker watches the observer lease on the aggregator', async () => {
    const readOnly: ScriptedTurn[] = [
      { calls: [{ tool: 'fs.read', args: { path: '/workspace/docs/index.md' } }] },
      { final: 'read' },
    ];
    // without a lease even a read waits for a human
    const unwatched = await start(readOnly, trustedKeys, { requireObserverLease: true });
    await pendingApproval(unwatched);
    expect(await unwatched.query(statusQuery)).toMatchObject({
      posture: 'conservative',
      postureCause: 'observer-lease',
      observerLease: { valid: false, holder: null, checkedAt: expect.any(String) },
    });
    await unwatched.terminate('test done');

    const observer = createAuditAggregatorClient({ url: aggregator.url, token: OBSERVER_TOKEN });
    try {
      await observer.putLease('observer', 'test-observer', 60_000);
      await new Promise((r) => setTimeout(r, 600)); // the worker polls every 200 ms
      const watched = await start(readOnly, trustedKeys, { requireObserverLease: true });
      expect((await watched.result()).decisions.map((d) => [d.tier, d.outcome])).toEqual([
        ['autonomous', 'executed'],
      ]);
      expect(await watched.query(statusQuery)).toMatchObject({
        posture: 'normal',
        observerLease: { valid: true, holder: 'test-observer' },
      });
    } finally {
      await observer.close();
    }
  });

  test('SIGTERM: both shut down cleanly and exit 0', async () => {
    await Promise.all([agents.stop(30_000), tools.stop(30_000)]);
    expect(await agents.exited).toBe(0);
    expect(await tools.exited).toBe(0);
    expect(output.agents.at(-1)).toBe('worker agents stopped');
    expect(output.tools.at(-1)).toBe('worker tools stopped');
  });
});

describe('worker configuration', () => {
  const ENV = { [TOKEN_ENV]: 'secret' };
  mkdirSync(join(dir, 'conf', 'ws'), { recursive: true });
  const conf = (name: string, text: string): string => file(`conf/${name}`, text);
  const AUDIT = `audit: { url: 'http://aggregator:8390', tokenEnv: ${TOKEN_ENV} }`;
  const KEYS = 'trustedKeys: [keys/vote-signing.pub]';
  beforeAll(() => initSigningKey(join(dir, 'conf', 'keys')));

  test('defaults: address, namespace, the role as task queue, the observer lease; paths resolve against the file', async () => {
    const agents = await loadWorkerConfig(conf('agents-min.yaml', `role: agents\n${AUDIT}\n`), ENV);
    expect(agents).toMatchObject({
      role: 'agents',
      temporal: { address: '127.0.0.1:7233', namespace: 'default', taskQueue: 'agents' },
      observerLease: { name: 'observer', pollMs: 1000 },
      toolSpecModules: [],
      model: {},
    });
    expect(agents.metrics).toBeUndefined();
    const tools = await loadWorkerConfig(
      conf(
        'tools-min.yaml',
        `role: tools\n${AUDIT}\nmetrics: { port: 9464 }\ntools: { workspace: ws, stateDir: state }\n${KEYS}\n`,
      ),
      ENV,
    );
    expect(tools).toMatchObject({
      temporal: { taskQueue: 'tools' },
      metrics: { host: '127.0.0.1', port: 9464 },
      tools: {
        workspace: join(dir, 'conf', 'ws'),
        stateDir: join(dir, 'conf', 'state'),
        http: { allowedHosts: [] },
      },
      trustedKeys: [join(dir, 'conf', 'keys', 'vote-signing.pub')],
    });
  });

  test('keys of the other role, unknown keys and wrong values: each path with the value expected', async () => {
    expect(
      await refusal(
        loadWorkerConfig(
          conf(
            'agents-bad.yaml',
            [
              'role: agents',
              "temporal: { adress: 'temporal:7233' }",
              "audit: { url: 'ftp://aggregator', tokenEnv: workers-token }",
              'metrics: { port: 70000, temporalBindAddress: localhost }',
              'observerLease: { pollMs: 1 }',
              'tools: { workspace: ws, stateDir: state }',
              'trustedKeys: [k.pub]',
              'replicas: 3',
              '',
            ].join('\n'),
          ),
          ENV,
        ),
      ),
    ).toMatchInlineSnapshot(`
      "<dir>/conf/agents-bad.yaml: invalid worker configuration
        temporal.adress: unknown key (expected one of address, namespace, taskQueue)
        audit.url: expected an http(s) URL of the audit aggregator
        audit.tokenEnv: expected an environment variable name (A-Z, 0-9, _)
        metrics.port: expected an integer from 0 to 65535
        metrics.temporalBindAddress: expected host:port with a port from 1 to 65535
        observerLease.pollMs: expected an integer from 10 to 3600000
        tools: only allowed with role tools, this file has role agents
        trustedKeys: only allowed with role tools, this file has role agents
        replicas: unknown key (expected one of role, temporal, audit, metrics, observerLease, model, toolSpecModules)"
    `);
    expect(
      await refusal(
        loadWorkerConfig(
          conf(
            'tools-bad.yaml',
            `role: tools\n${AUDIT}\nobserverLease: { name: observer }\nmodel: {}\ntools: { workspace: ws }\ntrustedKeys: []\n`,
          ),
          ENV,
        ),
      ),
    ).toMatchInlineSnapshot(`
      "<dir>/conf/tools-bad.yaml: invalid worker configuration
        tools.stateDir: expected a directory
        trustedKeys: expected at least one vote-signing public key file
        observerLease: only allowed with role agents, this file has role tools
        model: only allowed with role agents, this file has role tools"
    `);
    expect(await refusal(loadWorkerConfig(conf('no-role.yaml', `${AUDIT}\n`), ENV))).toMatchInlineSnapshot(`
      "<dir>/conf/no-role.yaml: invalid worker configuration
        role: expected agents or tools"
    `);
    expect(await refusal(loadWorkerConfig(conf('empty.yaml', ''), ENV))).toMatchInlineSnapshot(`
      "<dir>/conf/empty.yaml: invalid worker configuration
        (root): expected a mapping with role: agents or tools"
    `);
    expect(await refusal(loadWorkerConfig(conf('syntax.yaml', 'role: [agents\n'), ENV))).toMatch(
      /^<dir>\/conf\/syntax\.yaml: /,
    );
    expect(await refusal(loadWorkerConfig(join(dir, 'conf', 'missing.yaml'), ENV))).toMatchInlineSnapshot(
      `"<dir>/conf/missing.yaml: cannot read (ENOENT)"`,
    );
  });

  test('the token variable must be set', async () => {
    const agentsFile = conf('agents-token.yaml', `role: agents\n${AUDIT}\n`);
    expect(await refusal(loadWorkerConfig(agentsFile, {}))).toMatchInlineSnapshot(`
      "<dir>/conf/agents-token.yaml: invalid worker configuration
        audit.tokenEnv: $AGENT_RUNTIME_AUDIT_WORKERS_TOKEN is not set (expected the aggregator writer token)"
    `);
    expect(await refusal(loadWorkerConfig(agentsFile, { [TOKEN_ENV]: '' }))).toContain('is not set');
  });

  test('bad paths: missing workspace, state inside the workspace, missing or malformed key, routes and modules', async () => {
    file('conf/not-a-key.pub', '{"publicKey": "00"}');
    file('conf/routes.yaml', 'routes: nope\n');
    expect(
      await refusal(
        loadWorkerConfig(
          conf(
            'tools-paths.yaml',
            `role: tools\n${AUDIT}\ntools: { workspace: nowhere, stateDir: state, http: { allowedHosts: ['*'] } }\ntrustedKeys: [missing.pub, not-a-key.pub]\n`,
          ),
          ENV,
        ),
      ),
    ).toMatchInlineSnapshot(`
      "<dir>/conf/tools-paths.yaml: invalid worker configuration
        tools.workspace: <dir>/conf/nowhere is not a directory (expected the existing workspace)
        tools.http: allowedHosts: "*" is not a host name
        trustedKeys.0: <dir>/conf/missing.pub: cannot read (ENOENT); run agent-runtime keys init (expected a vote-signing public key file)
        trustedKeys.1: <dir>/conf/not-a-key.pub is not an agent-runtime vote-signing public key (expected a vote-signing public key file)"
    `);
    expect(
      await refusal(
        loadWorkerConfig(
          conf(
            'tools-inside.yaml',
            `role: tools\n${AUDIT}\ntools: { workspace: ws, stateDir: ws/.state }\n${KEYS}\n`,
          ),
          ENV,
        ),
      ),
    ).toMatchInlineSnapshot(`
      "<dir>/conf/tools-inside.yaml: invalid worker configuration
        tools.stateDir: <dir>/conf/ws/.state lies inside tools.workspace (expected a directory outside it)"
    `);
    expect(
      await refusal(
        loadWorkerConfig(
          conf(
            'agents-paths.yaml',
            `role: agents\n${AUDIT}\nmodel: { routes: routes.yaml }\ntoolSpecModules: [specs.ts, ws]\n`,
          ),
          ENV,
        ),
      ),
    ).toMatchInlineSnapshot(`
      "<dir>/conf/agents-paths.yaml: invalid worker configuration
        toolSpecModules.0: <dir>/conf/specs.ts does not exist (expected a module exporting toolSpecs)
        toolSpecModules.1: <dir>/conf/ws is a directory (expected a module exporting toolSpecs)
        model.routes: <dir>/conf/routes.yaml: invalid model router config: targets: Invalid input: expected record, received undefined; routes: Invalid input: expected array, received string"
    `);
  });

  test('the command: usage without --config, a refused file exits 1 naming it, an unreachable Temporal exits 1', async () => {
    expect(await cli(['worker'])).toMatchObject({
      code: 2,
      err: expect.stringContaining('missing --config'),
    });
    const bad = await cli(['worker', '--config', conf('cli-bad.yaml', 'role: agents\ntools: {}\n')]);
    expect(bad.code).toBe(1);
    expect(bad.err.replaceAll(dir, '<dir>')).toMatchInlineSnapshot(`
      "agent-runtime: <dir>/conf/cli-bad.yaml: invalid worker configuration
        audit: expected { url, tokenEnv }
        tools: only allowed with role tools, this file has role agents
      "
    `);
    const unreachable = await startChild({
      name: 'unreachable worker',
      args: [
        'worker',
        '--config',
        conf(
          'unreachable.yaml',
          `role: tools\ntemporal: { address: '127.0.0.1:1' }\n${AUDIT}\ntools: { workspace: ws, stateDir: state }\n${KEYS}\n`,
        ),
      ],
      env: ENV,
      ready: READY,
    }).catch((error: unknown) => error as Error);
    expect((unreachable as Error).message).toMatch(
      /exited \(1\) before it was ready:\nagent-runtime: cannot connect to Temporal at 127\.0\.0\.1:1: /,
    );
  });
});
