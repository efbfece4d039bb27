/**
 * What CI runs of `npm start`: the whole demo, unattended. `start --yes` approves the one approval
 * the demo asks for through the web inbox itself; every check of the three runs must hold.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { findFreePort } from '../worker/temporal/dev-server.ts';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'agent-runtime.js');
let stateDir = '';
afterAll(async () => {
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

test('npm start --yes: the demo runs to its summary by itself, every check as expected, exit 0', async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ar-demo-yes-'));
  const [port, uiPort] = [await findFreePort(), await findFreePort()];
  const child = spawn(
    process.execPath,
    [
      bin,
      'start',
      '--no-wait',
      '--yes',
      '--json',
      '--state-dir',
      stateDir,
      '--port',
      `${port}`,
      '--ui-port',
      `${uiPort}`,
      '--approvals-port',
      '0',
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const events = stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(code, `stdout:\n${stdout.slice(-4000)}\nstderr:\n${stderr.slice(-2000)}`).toBe(0);
  expect(events.filter((e) => e['event'] === 'auto_approve')).toEqual([
    expect.objectContaining({
      principal: 'bob',
      approvalWorkflowId: expect.stringMatching(/\/approval\/4$/),
    }),
  ]);
  const finished = events.filter((e) => e['event'] === 'run_finished');
  expect(finished.map((e) => [e['scene'], e['status']])).toEqual([
    ['tiers', 'completed'],
    ['injection', 'completed'],
    ['burst', 'completed'],
  ]);
  const failed = finished.flatMap((e) =>
    (e['checks'] as { ok: boolean; shows: string }[]).filter((c) => !c.ok),
  );
  expect(failed).toEqual([]);
  expect(events.find((e) => e['event'] === 'demo_summary')).toEqual({
    event: 'demo_summary',
    passed: 10,
    total: 10,
    checked: true,
  });
}, 180_000);
