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
  // while the demo runs: every process's Prometheus endpoint answers with its own metrics
  const ready = await demo.waitForOutput(/^\{"event":"ready".*$/m, 120_000);
  const metrics = (JSON.parse(ready[0]) as { metrics: Record<string, string | null> }).metrics;
  await demo.waitForOutput(/"event":"run_finished","scene":"tiers"/, 120_000);
  const scrape = async (url: string | null | undefined) => (url ? (await fetch(url)).text() : '');
  expect(await scrape(metrics['workers'])).toMatch(
    /^agent_runtime_decisions_total\{[^}]*tier="autonomous"[^}]*\} \d+/m,
  );
  expect(await scrape(metrics['workers'])).toMatch(/^temporal_worker_task_slots_available/m);
  expect(await scrape(metrics['aggregator'])).toMatch(
    /^agent_runtime_audit_appended_total\{source="guard"\} \d+/m,
  );
  expect(await scrape(metrics['observer'])).toMatch(/^agent_runtime_observer_events_total \d+/m);
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
