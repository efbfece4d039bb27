import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { harness, startServers } from './harness.ts';
import type { Servers } from './harness.ts';

let servers: Servers;
let browser: Browser;
beforeAll(async () => {
  servers = await startServers();
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
});
afterAll(async () => {
  await browser.close();
  await servers.close();
});

describe('web inbox in headless Chromium', () => {
  test('printed sign-in link → confirm → inbox → request → Approve: exactly one approve from that principal', async () => {
    const h = await harness(servers);
    const request = h.request();
    const link = await h.app.createSignInLink('alice');
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text()); // CSP violations land here
    });
    page.on('pageerror', (e) => problems.push(e.message));
    try {
      await page.goto(link);
      expect(await h.tokenState(link)).toBe('usable'); // opening the link used nothing
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await page.waitForURL(`${servers.base}/inbox`);
      expect(await page.locator('h1').textContent()).toBe('Waiting for your decision');
      const cookies = await context.cookies();
      expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite, c.path])).toEqual([
        ['ar_session', true, 'Strict', '/'],
      ]);

      await page.getByRole('link', { name: 'fs.delete' }).click();
      await page.waitForURL(`${servers.base}/inbox/${encodeURIComponent(request.id)}`);
      expect(await page.locator('h1').textContent()).toBe('Approval requested: fs.delete');
      expect(await page.locator('.unverified').textContent()).toBe('Stated by the agent, unverified:');
      expect(h.decisions.submissions).toEqual([]);

      await page.locator('#reason').fill('checked the path');
      await page.getByRole('button', { name: 'Approve', exact: true }).click();
      await page.waitForURL(/\/vote$/);
      expect(await page.locator('h1').textContent()).toBe('Approved. The agent may now perform the action.');
      expect(h.decisions.submissions).toHaveLength(1);
      expect(h.decisions.submissions).toMatchObject([
        {
          channel: 'web',
          principal: 'alice',
          requestId: request.id,
          revision: 1,
          decision: 'approve',
          reason: 'checked the path',
        },
      ]);
      expect(h.decisions.requests.get(request.id)).toMatchObject({
        state: 'approved',
        approvedBy: ['alice'],
      });
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
