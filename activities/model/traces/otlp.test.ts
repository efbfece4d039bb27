/**
 * OTLP/HTTP JSON export against a local collector (a real HTTP server): spans carry the GenAI
 * attributes, the run as trace id, errors as status; batches go through the background writer.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOtlpTraceExporter } from './otlp.ts';
import type { ModelTrace } from './types.ts';
import { createTraceWriter } from './writer.ts';

const received: {
  path: string;
  body: { resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
}[] = [];
let collector: Server;
let endpoint: string;
let status = 200;
beforeAll(async () => {
  collector = createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      received.push({ path: req.url ?? '', body: JSON.parse(text) as (typeof received)[number]['body'] });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => collector.close(() => resolve())));

const trace = (id: string, error: ModelTrace['error'] = null): ModelTrace => ({
  id,
  ts: 1_700_000_000_000,
  agentId: 'support-bot',
  runId: 'run-7',
  step: 0,
  route: 'routes[0]',
  purpose: 'act',
  target: 'fallback',
  provider: 'openai-compatible',
  model: 'gpt-fallback',
  attempts: [
    {
      target: 'primary',
      provider: 'openai-compatible',
      model: 'gpt-primary',
      outcome: 'MODEL_SERVER_ERROR',
      durationMs: 3,
    },
    {
      target: 'fallback',
      provider: 'openai-compatible',
      model: 'gpt-fallback',
      outcome: 'ok',
      durationMs: 5,
    },
  ],
  fallbackCause: 'MODEL_SERVER_ERROR',
  messages: [{ role: 'user', content: 'hello [REDACTED:email]' }],
  tools: [],
  completion: error ? null : { content: 'hi', toolCalls: [], finishReason: 'stop' },
  error,
  usage: { inputTokens: 12, outputTokens: 3 },
  latencyMs: 9.5,
  overheadMs: 0.4,
  contentCaptured: true,
});

describe('OTLP export', () => {
  it('posts GenAI spans for each batch; errors become the span status', async () => {
    const writer = createTraceWriter(createOtlpTraceExporter({ endpoint, serviceName: 'agents-worker' }), {
      redactor: null,
      onError: (error) => {
        throw error;
      },
    });
    writer.write(trace('t1'));
    writer.write(trace('t2', { code: 'MODEL_TIMEOUT', message: 'no answer' }));
    await writer.close();
    expect(received.map((r) => r.path)).toEqual(['/v1/traces']);
    const spans = received[0]!.body.resourceSpans[0]!.scopeSpans[0]!.spans;
    expect(spans).toHaveLength(2);
    const attrs = Object.fromEntries(
      (spans[0]!.attributes as { key: string; value: Record<string, unknown> }[]).map((a) => [
        a.key,
        a.value,
      ]),
    );
    expect(attrs).toMatchObject({
      'gen_ai.operation.name': { stringValue: 'chat' },
      'gen_ai.provider.name': { stringValue: 'openai-compatible' },
      'gen_ai.usage.input_tokens': { intValue: '12' },
      'govern.fallback.cause': { stringValue: 'MODEL_SERVER_ERROR' },
      'gen_ai.agent.id': { stringValue: 'support-bot' },
    });
    expect(spans[0]).toMatchObject({ name: 'chat gpt-fallback', kind: 3, status: { code: 1 } });
    expect(spans[1]).toMatchObject({ status: { code: 2, message: 'MODEL_TIMEOUT: no answer' } });
    // both calls of one run share its trace id
    expect(spans[0]!.traceId).toBe(spans[1]!.traceId);
  });

  it('a collector that fails is reported to onError, never thrown at the caller', async () => {
    status = 503;
    const errors: string[] = [];
    const writer = createTraceWriter(createOtlpTraceExporter({ endpoint }), {
      redactor: null,
      onError: (error) => errors.push((error as Error).message),
    });
    expect(() => writer.write(trace('t3'))).not.toThrow();
    await writer.close();
    expect(errors).toEqual([`OTLP export to ${endpoint}/v1/traces answered 503`]);
    status = 200;
  });
});
