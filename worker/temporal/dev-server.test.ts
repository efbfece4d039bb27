import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectTestEnv } from '../../test/temporal.ts';
import { resolveTemporalCli } from './binary.ts';
import type { TemporalCliResolution } from './binary.ts';
import {
  DevServerStartError,
  buildDevServerArgs,
  findFreePort,
  isPortOpen,
  startDevServer,
} from './dev-server.ts';
import type { DevServerHandle } from './dev-server.ts';

const execFileAsync = promisify(execFile);

/** IndexedValueType numbers as returned by ListSearchAttributes. */
const KEYWORD = 2;
const INT = 3;

let tmp: string;
let cli: TemporalCliResolution;
const handles: DevServerHandle[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'agent-runtime-dev-server-test-'));
  // These tests need a real binary and must never be skipped: resolution failing is a test failure.
  cli = await resolveTemporalCli({ install: false, sdkDownload: false });
});
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.stop()));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

async function start(options: Parameters<typeof startDevServer>[0] = {}): Promise<DevServerHandle> {
  const handle = await startDevServer({ cli, ...options });
  handles.push(handle);
  return handle;
}

async function withConnection<T>(address: string, fn: (connection: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address });
  try {
    return await fn(connection);
  } finally {
    await connection.close();
  }
}

async function customSearchAttributes(address: string, namespace: string): Promise<Record<string, unknown>> {
  return withConnection(address, async (connection) => {
    const response = await connection.operatorService.listSearchAttributes({ namespace });
    return { ...response.customAttributes };
  });
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

/** True when `pid` is gone (or only a zombie waiting to be reaped). */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

describe('buildDevServerArgs', () => {
  it('builds the start-dev argv', () => {
    expect(
      buildDevServerArgs({
        port: 17233,
        namespace: 'agents',
        dbFilename: '/data/temporal.db',
        uiPort: 18233,
        searchAttributes: { AgentId: 'Keyword', Attempts: 'Int' },
        extraArgs: ['--sqlite-pragma', 'journal_mode=WAL'],
      }),
    ).toMatchInlineSnapshot(`
      [
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        "17233",
        "--namespace",
        "agents",
        "--db-filename",
        "/data/temporal.db",
        "--ui-port",
        "18233",
        "--log-format",
        "json",
        "--log-level",
        "warn",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecution=true",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
        "--dynamic-config-value",
        "history.transferProcessorMaxPollRPS=2000",
        "--dynamic-config-value",
        "history.timerProcessorMaxPollRPS=2000",
        "--dynamic-config-value",
        "history.visibilityProcessorMaxPollRPS=2000",
        "--dynamic-config-value",
        "history.outboundProcessorMaxPollRPS=2000",
        "--dynamic-config-value",
        "frontend.workerVersioningWorkflowAPIs=true",
        "--search-attribute",
        "AgentId=Keyword",
        "--search-attribute",
        "Attempts=Int",
        "--ui-disable-news-fetch",
        "--sqlite-pragma",
        "journal_mode=WAL",
      ]
    `);
    expect(buildDevServerArgs({ port: 7233, namespace: 'default', optionalDynamicConfig: false }))
      .toMatchInlineSnapshot(`
        [
          "server",
          "start-dev",
          "--ip",
          "127.0.0.1",
          "--port",
          "7233",
          "--namespace",
          "default",
          "--headless",
          "--log-format",
          "json",
          "--log-level",
          "warn",
          "--dynamic-config-value",
          "frontend.enableUpdateWorkflowExecution=true",
          "--dynamic-config-value",
          "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
          "--dynamic-config-value",
          "history.transferProcessorMaxPollRPS=2000",
          "--dynamic-config-value",
          "history.timerProcessorMaxPollRPS=2000",
          "--dynamic-config-value",
          "history.visibilityProcessorMaxPollRPS=2000",
          "--dynamic-config-value",
          "history.outboundProcessorMaxPollRPS=2000",
        ]
      `);
  });
});

describe('startDevServer (real binary)', () => {
  it('starts an in-memory server with a namespace and custom search attributes, and stops it', async () => {
    const server = await start({
      namespace: 'agents',
      searchAttributes: { AgentId: 'Keyword', Attempts: 'Int' },
    });

    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(server.namespace).toBe('agents');
    expect(server.uiUrl).toBeUndefined();
    expect(server.pid).toBeTypeOf('number');
    expect(server.cli).toEqual(cli);
    const described = await withConnection(server.address, (c) =>
      c.workflowService.describeNamespace({ namespace: 'agents' }),
    );
    expect(described.namespaceInfo?.name).toBe('agents');
    const attributes = await customSearchAttributes(server.address, 'agents');
    expect(attributes).toMatchObject({ AgentId: KEYWORD, Attempts: INT });

    const port = portOf(server.address);
    expect(await isPortOpen(port)).toBe(true);
    await server.stop();
    expect(await isPortOpen(port)).toBe(false);
    expect(processGone(server.pid ?? -1)).toBe(true);
    await server.stop(); // idempotent
  });

  it('persists to a db file; search attributes survive a restart and new ones are added to the existing db', async () => {
    const dbFilename = path.join(tmp, 'persist', 'nested', 'temporal.db');
    const namespace = 'agents';
    const workflowId = 'persisted-run-1';
    const agentId = defineSearchAttributeKey('AgentId', SearchAttributeType.KEYWORD);
    const approvalState = defineSearchAttributeKey('ApprovalState', SearchAttributeType.KEYWORD);

    const first = await start({ dbFilename, namespace, searchAttributes: { AgentId: 'Keyword' } });
    expect(existsSync(dbFilename)).toBe(true);
    await withConnection(first.address, async (connection) => {
      const client = new Client({ connection, namespace });
      // no worker needed: the execution just stays Running
      await client.workflow.start('agentRun', {
        taskQueue: 'nobody-polls-this',
        workflowId,
        typedSearchAttributes: [{ key: agentId, value: 'agent-1' }],
      });
    });
    await first.stop();
    expect(await isPortOpen(portOf(first.address))).toBe(false);

    // Same file, one more attribute: the CLI ignores --search-attribute for an existing db, startDevServer adds it.
    const second = await start({
      dbFilename,
      namespace,
      searchAttributes: { AgentId: 'Keyword', ApprovalState: 'Keyword' },
    });
    expect(await customSearchAttributes(second.address, namespace)).toMatchObject({
      AgentId: KEYWORD,
      ApprovalState: KEYWORD,
    });
    await withConnection(second.address, async (connection) => {
      const client = new Client({ connection, namespace });
      const description = await client.workflow.getHandle(workflowId).describe();
      expect(description.status.name).toBe('RUNNING');
      expect(description.typedSearchAttributes.get(agentId)).toBe('agent-1');
      // the attribute added through the operator service is usable right away
      await client.workflow.start('agentRun', {
        taskQueue: 'nobody-polls-this',
        workflowId: 'persisted-run-2',
        typedSearchAttributes: [{ key: approvalState, value: 'pending' }],
      });
      await expect
        .poll(
          async () => {
            const ids: string[] = [];
            for await (const wf of client.workflow.list({ query: 'ApprovalState = "pending"' }))
              ids.push(wf.workflowId);
            return ids;
          },
          { timeout: 10_000, interval: 200 },
        )
        .toEqual(['persisted-run-2']);
    });
  });

  it('(upstream behaviour) the CLI alone does not register --search-attribute on an existing db file', async () => {
    // Pins what ensureSearchAttributes works around (CLI 1.9.1 / Server 1.32.0). If this starts failing, the CLI now
    // applies --search-attribute to existing databases and the workaround can go.
    const dbFilename = path.join(tmp, 'canary.db');
    const first = await start({ dbFilename });
    await first.stop();
    const second = await start({ dbFilename, extraArgs: ['--search-attribute', 'CanaryAttr=Keyword'] });
    expect(await customSearchAttributes(second.address, 'default')).not.toHaveProperty('CanaryAttr');
    await second.stop();
    // while on a fresh db the flag works
    const fresh = await start({ extraArgs: ['--search-attribute', 'CanaryAttr=Keyword'] });
    expect(await customSearchAttributes(fresh.address, 'default')).toHaveProperty('CanaryAttr', KEYWORD);
  });

  it('rejects with the server output when the process exits early', async () => {
    const error: unknown = await start({ extraArgs: ['--no-such-flag'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DevServerStartError);
    const startError = error as DevServerStartError;
    expect(startError.code).toBe('TEMPORAL_DEV_SERVER_START_FAILED');
    expect(startError.reason).toBe('exited');
    expect(startError.message).toMatch(/exited with code 1 before it became ready/);
    expect(startError.message).toContain('unknown flag: --no-such-flag');
    expect(startError.outputTail).toContain('unknown flag: --no-such-flag');
  });

  it('rejects with reason "timeout" and kills the server when it is not ready in time', async () => {
    const port = await findFreePort();
    const error: unknown = await start({ port, startTimeoutMs: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DevServerStartError);
    expect((error as DevServerStartError).reason).toBe('timeout');
    await sleep(1000); // a surviving server would be listening by now
    expect(await isPortOpen(port)).toBe(false);
  });

  it('rejects invalid search attribute names and types before spawning anything', async () => {
    await expect(start({ searchAttributes: { 'bad name': 'Keyword' } })).rejects.toThrow(
      'Invalid search attribute name',
    );
    // @ts-expect-error -- a JS caller passing an unknown type
    await expect(start({ searchAttributes: { Fine: 'Keywords' } })).rejects.toThrow(
      'expected one of Text, Keyword, Int',
    );
  });

  it('serves the Web UI when asked', async () => {
    const server = await start({ ui: true });
    expect(server.uiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const response = await fetch(server.uiUrl ?? '');
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('<html');
  });

  it('kills the server when the parent process exits without stopping it', async () => {
    const script = [
      `import { startDevServer } from ${JSON.stringify(path.join(import.meta.dirname, 'dev-server.ts'))};`,
      `const server = await startDevServer({ cli: ${JSON.stringify(cli)} });`,
      'console.log(JSON.stringify({ pid: server.pid, address: server.address }));',
      'process.exit(0);',
    ].join('\n');
    const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script], {
      timeout: 60_000,
    });
    const { pid, address } = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
      pid: number;
      address: string;
    };
    expect(pid).toBeTypeOf('number');
    await expect.poll(() => processGone(pid), { timeout: 5000 }).toBe(true);
    expect(await isPortOpen(portOf(address))).toBe(false);
  });

  it('maps the sdk-download fallback (TestWorkflowEnvironment.createLocal) into the same handle', async () => {
    // Seed the SDK's download cache with our binary so no network is needed: @temporalio/testing looks for
    // <TMPDIR>/temporal-sdk-typescript-<version> and uses it when younger than a day.
    const cacheDir = mkdtempSync(path.join(tmp, 'sdk-cache-'));
    const { version } = JSON.parse(
      readFileSync(
        path.join(import.meta.dirname, '../../node_modules/@temporalio/testing/package.json'),
        'utf8',
      ),
    ) as { version: string };
    if (cli.path === undefined) throw new Error('expected a real binary');
    copyFileSync(cli.path, path.join(cacheDir, `temporal-sdk-typescript-${version}`));
    const savedTmpdir = process.env.TMPDIR;
    process.env.TMPDIR = cacheDir;
    try {
      const server = await startDevServer({
        cli: { source: 'sdk-download', path: undefined },
        namespace: 'agents',
        searchAttributes: { AgentId: 'Keyword' },
        logger: { info: () => {}, warn: () => {} },
      });
      handles.push(server);
      expect(server.cli.source).toBe('sdk-download');
      expect(server.pid).toBeUndefined();
      expect(await customSearchAttributes(server.address, 'agents')).toMatchObject({ AgentId: KEYWORD });
      await server.stop();
      expect(await isPortOpen(portOf(server.address))).toBe(false);
    } finally {
      if (savedTmpdir === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmpdir;
    }
  });
});

describe('shared test server (test/global-setup.ts)', () => {
  it('is reachable through connectTestEnv and has the agent-runtime search attributes', async () => {
    const env = await connectTestEnv();
    try {
      const { customAttributes } = await env.connection.operatorService.listSearchAttributes({
        namespace: env.namespace ?? 'default',
      });
      for (const name of [
        'AgentId',
        'RequestedBy',
        'PolicyVersion',
        'RunState',
        'LastDecision',
        'ApprovalState',
      ]) {
        expect(customAttributes).toHaveProperty(name, KEYWORD);
      }
    } finally {
      await env.teardown();
    }
  });
});

describe('start-up port clashes', () => {
  it('an explicitly chosen port that is taken fails at once, naming the cause', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as AddressInfo).port;
    try {
      await expect(startDevServer({ uiPort: taken, startTimeoutMs: 30_000 })).rejects.toThrow(
        /address already in use/,
      );
    } finally {
      blocker.close();
    }
  });
});
