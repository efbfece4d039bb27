/**
 * `agent-runtime approvals serve` as its own process on the shared dev server: the approval
 * workflows of real runs notify its worker, its email reaches a real SMTP server, the human's POST
 * on the review page approves, and the run completes. Bad configuration is one clear error.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { initSigningKey } from '../approval-channels/keys.ts';
import { startMailCapture } from '../approval-channels/mail-capture.ts';
import type { MailCapture } from '../approval-channels/mail-capture.ts';
import { startAgentRun } from '../worker/runs.ts';
import { loadGovernance, OPS_GOVERNANCE, useAgentStack } from './agent-stack.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'dist/cli/bin.js');
const QUEUE = 'approvals-serve';

const stack = useAgentStack({ name: 'approvals-serve' });

/** Runs the CLI until it exits. */
function runCli(...argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...argv], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('approvals serve', () => {
  let dir: string;
  let mail: MailCapture;
  let service: ChildProcess;
  let stdout = '';
  let stderr = '';
  let exited: Promise<number | null>;
  let ready: { url: string; channels: string[]; taskQueue: string };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ar-approvals-serve-'));
    mail = await startMailCapture();
    // the service signs with the key the stack's tools worker trusts
    await initSigningKey(join(dir, 'keys'), { randomSecretKey: () => stack.secretKey });
    await writeFile(
      join(dir, 'approvals-service.yaml'),
      stringify({
        temporal: {
          address: inject('temporalAddress'),
          namespace: inject('temporalNamespace'),
          taskQueue: QUEUE,
        },
        http: { port: 0 },
        governance: [OPS_GOVERNANCE],
        signingKey: 'keys/vote-signing.key',
        store: { kind: 'sqlite', file: 'approvals.db' },
        auditFile: 'audit.jsonl',
        email: {
          from: 'Approvals <approvals@acme.test>',
          smtp: { host: mail.host, port: mail.port, ignoreTLS: true },
        },
      }),
    );
    service = spawn(
      process.execPath,
      [bin, 'approvals', 'serve', '--config', join(dir, 'approvals-service.yaml')],
      {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, SLACK_BOT_TOKEN: '' },
      },
    );
    service.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    service.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    exited = new Promise((resolve) => service.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while (!stdout.includes('"event":"ready"')) {
      if (Date.now() > deadline || service.exitCode !== null)
        throw new Error(`approvals serve did not start:\n${stdout}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    ready = JSON.parse(stdout.split('\n').find((l) => l.includes('"event":"ready"'))!) as typeof ready;
  }, 60_000);

  afterAll(async () => {
    if (service.exitCode === null) service.kill('SIGTERM');
    await exited;
    await mail.close();
  });

  it('delivers a real run’s request by email; scanner GETs decide nothing; the POST approves; the run completes', async () => {
    expect(ready).toMatchObject({ channels: ['web', 'email'], taskQueue: QUEUE });
    const handle = await startAgentRun(stack.client, {
      governance: await loadGovernance(OPS_GOVERNANCE),
      task: 'bump replicas',
      requestedBy: 'carol',
      model: {
        provider: 'scripted',
        turns: [
          {
            calls: [
              {
                tool: 'fs.write',
                args: { path: '/workspace/config/app.yaml', content: 'replicas: 4\n', mode: 'overwrite' },
                rationale: 'load test',
              },
            ],
          },
          { final: 'done' },
        ],
      },
      trustedKeys: stack.trustedKeys,
      taskQueue: stack.queues.agents,
      taskQueues: { tools: stack.queues.tools, approvals: QUEUE },
    });
    const toBob = await mail.waitFor((m) => m.to.includes('bob@acme.test'), 20_000);
    const link = toBob.links.find((l) => l.startsWith(`${ready.url}/review/`));
    expect(link).toBeDefined();
    for (const method of ['GET', 'GET', 'HEAD']) expect((await fetch(link!, { method })).status).toBe(200);
    expect((await handle.describe()).status.name).toBe('RUNNING');
    const page = await (await fetch(link!)).text();
    const nonce = /name="nonce" value="([^"]+)"/.exec(page)?.[1];
    const answer = await fetch(link!, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ nonce: nonce ?? '', decision: 'approve' }).toString(),
    });
    expect(answer.status).toBe(200);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.decisions[0]).toMatchObject({ outcome: 'executed' });
    expect(await readFile(join(stack.workspace, 'config', 'app.yaml'), 'utf8')).toBe('replicas: 4\n');
    // the service's own audit file holds the email vote
    const audit = (await readFile(join(dir, 'audit.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; attrs: Record<string, unknown> });
    expect(
      audit
        .filter((e) => e.kind === 'approval.attempt' && e.attrs.action === 'vote')
        .map((e) => e.attrs.outcome),
    ).toEqual(['ok']);
  }, 60_000);

  it('stops cleanly on SIGTERM', async () => {
    service.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stdout).toContain('"event":"stopping"');
  }, 30_000);

  it('an invalid configuration names the file and each wrong key; exit 1', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, stringify({ governance: [], store: { kind: 'mongo' }, http: { port: 'x' } }));
    const result = await runCli('approvals', 'serve', '--config', file);
    expect(result.code).toBe(1);
    expect(result.stderr.replaceAll(dir, '<dir>')).toMatchInlineSnapshot(`
      "agent-runtime: <dir>/bad.yaml: invalid approvals service configuration
        http.port: Invalid input: expected number, received string
        governance: Too small: expected array to have >=1 items
        signingKey: Invalid input: expected string, received undefined
        store.kind: Invalid discriminator value. Expected 'sqlite' | 'postgres'
      "
    `);
  }, 30_000);
});
