/**
 * What CI runs of `npm start`: the whole demo, unattended. `start --yes` approves the one approval
 * the demo asks for through the web inbox itself; every check of the three runs must hold.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { startDemoProcess } from './demo-process.ts';

let stateDir = '';
afterAll(async () => {
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

test('npm start --yes: the demo runs to its summary by itself, every check as expected, exit 0', async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ar-demo-yes-'));
  const demo = await startDemoProcess('start', ['--no-wait', '--yes', '--json'], { stateDir });
  const code = await demo.exited;
  const events = demo.events();
  const [stdout, stderr] = [demo.stdout(), demo.stderr()];
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
