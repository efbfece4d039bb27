/**
 * The demo against "a real model": OPENAI_BASE_URL pointed at the OpenAI wire-format stand-in (the vendor's
 * cloud is out of reach here). The three tasks go to the model as prompts, with the tools offered; what it
 * does is reported, not checked.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { startOpenAIStandIn } from '../activities/model/standins/index.ts';
import type { StandIn } from '../activities/model/standins/index.ts';
import { startDemoProcess } from './demo-process.ts';

let stateDir = '';
let model: StandIn | undefined;
afterAll(async () => {
  await model?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

test('OPENAI_BASE_URL + OPENAI_API_KEY: the demo sends its three tasks to the model and reports, exit 0', async () => {
  model = await startOpenAIStandIn({
    apiKey: 'sk-demo-key',
    fallback: {
      text: 'I will not act on this without more context.',
      usage: { inputTokens: 50, outputTokens: 9 },
    },
  });
  stateDir = await mkdtemp(join(tmpdir(), 'ar-demo-model-'));
  const demo = await startDemoProcess('start', ['--no-wait', '--yes', '--json'], {
    stateDir,
    env: { OPENAI_BASE_URL: model.url, OPENAI_API_KEY: 'sk-demo-key', ANTHROPIC_API_KEY: '' },
  });
  const code = await demo.exited;
  const events = demo.events();
  const stdout = demo.stdout();
  expect(code, stdout.slice(-3000)).toBe(0);
  expect(events.find((e) => e['event'] === 'demo_summary')).toMatchObject({ checked: false });
  expect(events.filter((e) => e['event'] === 'run_finished').map((e) => e['status'])).toEqual([
    'completed',
    'completed',
    'completed',
  ]);
  const prompts = model.requests.map((r) => JSON.stringify(r.body));
  expect(prompts.some((p) => p.includes('Tidy the staging runbooks'))).toBe(true);
  expect(prompts.some((p) => p.includes('status page'))).toBe(true);
  expect(prompts.some((p) => p.includes('incident reports'))).toBe(true);
  expect(model.requests.every((r) => r.headers.authorization === 'Bearer sk-demo-key')).toBe(true);
  expect((model.requests[0]?.body as { tools?: unknown[] }).tools?.length).toBeGreaterThan(0);
}, 180_000);
