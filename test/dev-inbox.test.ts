/**
 * `npm start`'s demo approved the way a person would: `agent-runtime dev --demo` runs as a real
 * process, prints a one-time web inbox link for the SRE, and headless Chromium signs in, opens the
 * request and clicks Approve; the demo run then completes and the process exits 0.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDemoProcess } from './demo-process.ts';
import type { DemoProcess } from './demo-process.ts';

describe('npm start demo, approved in the web inbox', () => {
  let stateDir: string;
  let demo: DemoProcess;
  let browser: Browser;

  const waitForOutput = (pattern: RegExp, timeoutMs?: number) => demo.waitForOutput(pattern, timeoutMs);

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ar-dev-inbox-'));
    demo = await startDemoProcess('dev', ['--demo', '--exit-when-done'], { stateDir });
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
        '--disable-sync',
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await demo?.stop();
    await rm(stateDir, { recursive: true, force: true });
  });

  test('the SRE signs in with the printed link, approves in the inbox, and the demo completes', async () => {
    const [, link] = await waitForOutput(/web inbox for bob: (http:\/\/127\.0\.0\.1:\d+\/signin\/\S+)/);
    // the same request also went out by email (to the local capture), one link per approver
    expect(demo.stdout()).toMatch(/\[mail to bob@acme\.test\] \[Approval needed\] fs\.write/);
    expect(demo.stdout()).toMatch(/\[mail to dana@acme\.test\] \[Approval needed\] fs\.write/);
    expect(demo.stdout()).not.toMatch(/\[mail to carol@acme\.test\]/); // the requester is never asked

    const page = await browser.newPage();
    await page.goto(link!);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL(/\/inbox$/);
    await page.getByRole('link', { name: 'fs.write' }).click();
    await page.waitForURL(/\/inbox\/.+/);
    expect(await page.locator('h1').textContent()).toBe('Approval requested: fs.write');
    expect(await page.content()).toContain('/workspace/config/app.yaml');
    await page.locator('#reason').fill('third replica for the load test');
    await page.getByRole('button', { name: 'Approve', exact: true }).click();
    await page.waitForURL(/\/vote$/);
    expect(await page.locator('h1').textContent()).toBe('Approved. The agent may now perform the action.');

    expect(await demo.exited).toBe(0);
    expect(demo.stdout()).toMatch(/fs\.write \/workspace\/config\/app\.yaml\s+→ approval \(write-config\)/);
    expect(demo.stdout()).toMatch(/Run run-ops-assistant-[0-9a-f]+ completed: 7 steps/);
    expect(await readFile(join(stateDir, 'workspace', 'config', 'app.yaml'), 'utf8')).toContain(
      'replicas: 3',
    );
    // the vote and the web attempt are in the audit log, with the channel
    const events = (await readFile(join(stateDir, 'audit', 'audit.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { kind: string; attrs: Record<string, unknown> });
    const attempts = events
      .filter((e) => e.kind === 'approval.attempt')
      .map((e) =>
        [e.attrs.channel, e.attrs.action, e.attrs.principal, e.attrs.outcome].map(String).join(':'),
      );
    // the sign-in, the page views and the one vote are all audited
    expect(attempts.filter((a) => a === 'web:vote:bob:ok')).toHaveLength(1);
    expect(attempts).toContain('web:sign_in:bob:ok');
    expect(attempts.some((a) => a.startsWith('web:view:bob:'))).toBe(true);
    expect(events.filter((e) => e.kind === 'vote.accepted').map((e) => e.attrs.approver)).toEqual(['bob']);
  }, 90_000);
});
