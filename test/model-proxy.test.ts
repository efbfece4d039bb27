/**
 * The model proxy in the running stack: an AgentRun whose model is `routed`, whose primary target
 * (an OpenAI wire-format stand-in) fails with 500s, completes on its fallback (a second stand-in);
 * `traces show` lays each turn beside its decisions with the fallback visible; `traces search`
 * finds prompts and rationales but not the secrets redaction removed; a spent token budget ends
 * the run as budget_exhausted.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOpenAIStandIn } from '../activities/model/standins/index.ts';
import type { StandIn } from '../activities/model/standins/index.ts';
import { main } from '../cli/main.ts';
import { startAgentRun } from '../worker/runs.ts';
import { startDevStack } from '../worker/stack.ts';
import type { DevStack } from '../worker/stack.ts';
import { findFreePort } from '../worker/temporal/dev-server.ts';
import { loadGovernance, OPS_GOVERNANCE } from './agent-stack.ts';

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (c: Buffer) => (stdout += c.toString()));
  err.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await main(argv, { stdout: out, stderr: err });
  return { code, stdout, stderr };
}

describe('model proxy in the stack', () => {
  let primary: StandIn;
  let fallback: StandIn;
  let stack: DevStack;
  let stateDir: string;
  let collector: Server;
  const spans: Record<string, unknown>[] = [];

  beforeAll(async () => {
    // an OTLP/HTTP collector: the stack exports every trace there too
    collector = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(text) as {
          resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[];
        };
        for (const r of body.resourceSpans) for (const s of r.scopeSpans) spans.push(...s.spans);
        res.writeHead(200).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    primary = await startOpenAIStandIn();
    fallback = await startOpenAIStandIn();
    stateDir = await mkdtemp(join(tmpdir(), 'ar-model-proxy-'));
    const target = (standIn: StandIn, model: string) => ({
      provider: {
        provider: 'openai-compatible',
        baseUrl: standIn.url,
        model,
        apiKeyEnv: 'STANDIN_KEY',
        maxTokens: 256,
      },
    });
    stack = await startDevStack({
      stateDir,
      inMemory: true,
      port: await findFreePort(),
      uiPort: await findFreePort(),
      model: {
        env: { STANDIN_KEY: 'sk-standin-key-000' },
        routes: {
          targets: { primary: target(primary, 'gpt-primary'), fallback: target(fallback, 'gpt-fallback') },
          routes: [{ targets: ['primary', 'fallback'] }],
          retry: { maxAttempts: 2, baseMs: 1, maxMs: 5, jitter: 0 },
          // every failure here is injected: keep the breaker out of the counts
          breaker: { failureThreshold: 50 },
        },
        agentDailyTokens: { 'ops-assistant': 1_000_000 },
        otlpEndpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`,
        gateway: { keys: [{ agentId: 'ops-assistant', key: 'sk-ar-ops-test' }] },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await primary?.close();
    await fallback?.close();
    await new Promise<void>((resolve) => collector.close(() => resolve()));
  });

  it('a call the run’s token budget cannot cover ends the run as budget_exhausted, not a crash', async () => {
    const handle = await startAgentRun(stack.client, {
      governance: await loadGovernance(OPS_GOVERNANCE),
      task: 'Summarise the workspace layout',
      requestedBy: 'carol',
      model: { provider: 'routed' },
      budgets: { maxTokens: 100 }, // the first call reserves its prompt plus 256 for the completion
      trustedKeys: stack.trustedKeys,
    });
    const result = await handle.result();
    expect(result.status).toBe('budget_exhausted');
    expect(result.reason).toMatch(
      /^the run's token budget cannot cover this call \(\d+ tokens needed, 100 left\)$/,
    );
    expect(primary.requests).toHaveLength(0); // refused before any model was asked
  }, 30_000);

  it('agents outside agent-runtime reach the same routes through the OpenAI-compatible endpoint', async () => {
    primary.failNext('server_error', 2);
    fallback.reply({ text: 'Answered through the gateway.' });
    const res = await fetch(`${stack.gatewayUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-ar-ops-test', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'any', messages: [{ role: 'user', content: 'ping' }] }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]?.message.content).toBe('Answered through the gateway.');
    const refused = await fetch(`${stack.gatewayUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-wrong', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(refused.status).toBe(401);
  }, 30_000);

  it('a failing primary target: the run completes on the fallback, visible in traces show and search', async () => {
    primary.failNext('server_error', 100);
    fallback.reply(
      {
        text: 'I will list the docs first; contact ops-lead@acme.test if this fails.',
        toolCalls: [{ name: 'fs.list', args: { path: '/workspace' } }],
      },
      { text: 'The workspace holds the docs and config folders.' },
    );
    const handle = await startAgentRun(stack.client, {
      governance: await loadGovernance(OPS_GOVERNANCE),
      task: 'Summarise the workspace layout',
      requestedBy: 'carol',
      model: { provider: 'routed' },
      trustedKeys: stack.trustedKeys,
    });
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.answer).toBe('The workspace holds the docs and config folders.');
    // two attempts on the primary per turn (retry), then the fallback (the gateway test made 2 + 1 before)
    expect(primary.requests.length).toBe(2 + 4);
    expect(fallback.requests.length).toBe(1 + 2);
    await stack.stop(); // flushes the trace writers
    expect(
      spans.filter((span) =>
        (span.attributes as { key: string; value: { stringValue?: string } }[]).some(
          (a) => a.key === 'govern.run.id' && a.value.stringValue === handle.workflowId,
        ),
      ),
    ).toHaveLength(2);

    const shown = await cli('traces', 'show', handle.workflowId, '--state-dir', stateDir, '--json');
    expect(shown.stderr).toBe('');
    const view = JSON.parse(shown.stdout) as {
      turns: {
        target: string;
        attempts: string[];
        fallbackCause: string;
        calls: { tool: string; decision: string; result: string }[];
        mismatches: string[];
      }[];
    };
    expect(view.turns.map((t) => [t.target, t.attempts, t.fallbackCause])).toEqual([
      [
        'fallback',
        ['primary:MODEL_SERVER_ERROR', 'primary:MODEL_SERVER_ERROR', 'fallback:ok'],
        'MODEL_SERVER_ERROR',
      ],
      [
        'fallback',
        ['primary:MODEL_SERVER_ERROR', 'primary:MODEL_SERVER_ERROR', 'fallback:ok'],
        'MODEL_SERVER_ERROR',
      ],
    ]);
    expect(view.turns[0]!.calls).toEqual([
      expect.objectContaining({
        tool: 'fs.list',
        decision: 'autonomous (read-workspace)',
        result: 'executed',
      }),
    ]);
    expect(view.turns.flatMap((t) => t.mismatches)).toEqual([]);
    const text = await cli('traces', 'show', handle.workflowId, '--state-dir', stateDir);
    expect(text.stdout).toContain('fallback: MODEL_SERVER_ERROR');
    expect(text.stdout).toContain('intent (stated, unverified): I will list the docs first');

    const found = await cli('traces', 'search', 'workspace layout', '--state-dir', stateDir, '--json');
    expect(
      found.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { runId: string }).runId),
    ).toContain(handle.workflowId);
    // the email in the model's text was redacted before storage: not findable, the placeholder is
    expect((await cli('traces', 'search', '"ops-lead@acme.test"', '--state-dir', stateDir)).stdout).toBe(
      'No traces match.\n',
    );
  }, 60_000);
});

describe('the hash-chained audit of the same stack', () => {
  it('audit verify passes on what the runs wrote, and names the first record a tamperer edited or deleted', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'ar-audit-chain-'));
    const stack = await startDevStack({
      stateDir,
      inMemory: true,
      port: await findFreePort(),
      uiPort: await findFreePort(),
    });
    try {
      const handle = await startAgentRun(stack.client, {
        governance: await loadGovernance(OPS_GOVERNANCE),
        task: 'look around',
        requestedBy: 'carol',
        model: {
          provider: 'scripted',
          turns: [{ calls: [{ tool: 'fs.list', args: { path: '/workspace' } }] }, { final: 'done' }],
        },
        trustedKeys: stack.trustedKeys,
      });
      expect((await handle.result()).status).toBe('completed');
    } finally {
      await stack.stop();
    }
    const ok = await cli('audit', 'verify', '--state-dir', stateDir, '--json');
    const verdict = JSON.parse(ok.stdout) as { ok: boolean; count: number };
    expect(verdict.ok).toBe(true);
    expect(verdict.count).toBeGreaterThanOrEqual(6); // run.started, model.call ×2, decision, execution ×2, run.finished
    const tail = await cli('audit', 'tail', '-n', '3', '--state-dir', stateDir);
    expect(tail.stdout).toMatch(/run\.finished/);

    // a tamperer with write access to the database edits one record, then deletes another
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(stateDir, 'audit', 'chain.db'));
    db.prepare(`UPDATE audit_records SET attrs = '{"tier":"autonomous","forged":true}' WHERE seq = 3`).run();
    const edited = await cli('audit', 'verify', '--state-dir', stateDir);
    expect(edited).toMatchObject({ code: 1, stdout: 'BROKEN at seq 3: edited\n' });
    db.prepare(`DELETE FROM audit_records WHERE seq IN (2, 3)`).run();
    db.close();
    const deleted = await cli('audit', 'verify', '--state-dir', stateDir);
    expect(deleted).toMatchObject({ code: 1, stdout: 'BROKEN at seq 4: broken_link\n' });
  }, 60_000);
});
