import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { isRetryableModelError, ModelError, ModelErrorCode, toApplicationFailure } from './errors.ts';
import { createModelActivities } from './index.ts';
import type { ModelProvider, ModelRequest, ModelResponse } from './types.ts';

const scripted: ModelRequest = {
  agentId: 'agent-1',
  runId: 'run-1',
  turn: 0,
  model: { provider: 'scripted', turns: [{ final: 'Hello.' }] },
  messages: [{ role: 'user', content: 'hi' }],
  tools: [],
};

const openai: ModelRequest = {
  ...scripted,
  model: { provider: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', model: 'm', apiKeyEnv: 'K' },
};

function throwing(error: unknown): ModelProvider {
  return { name: 'failing', complete: () => Promise.reject(error) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('errors', () => {
  it('marks exactly the non-retryable codes', () => {
    const retryable = Object.values(ModelErrorCode).filter(isRetryableModelError);
    expect(retryable.sort()).toEqual(
      [
        'MODEL_BAD_RESPONSE',
        'MODEL_OVERLOADED',
        'MODEL_RATE_LIMIT',
        'MODEL_SERVER_ERROR',
        'MODEL_TIMEOUT',
      ].sort(),
    );
  });

  it('converts to an ApplicationFailure carrying code, retryability and retry delay', () => {
    const rate = toApplicationFailure(
      new ModelError(ModelErrorCode.rateLimit, 'slow down', { retryAfterMs: 1500, status: 429 }),
    );
    expect(rate).toBeInstanceOf(ApplicationFailure);
    expect(rate.type).toBe('MODEL_RATE_LIMIT');
    expect(rate.message).toBe('slow down');
    expect(rate.nonRetryable).toBe(false);
    expect(rate.nextRetryDelay).toBe(1500);
    expect(rate.details).toEqual([{ code: 'MODEL_RATE_LIMIT', status: 429, retryAfterMs: 1500 }]);

    const auth = toApplicationFailure(new ModelError(ModelErrorCode.auth, 'no key'));
    expect(auth.nonRetryable).toBe(true);
    expect(auth.nextRetryDelay).toBeUndefined();
  });
});

describe('createModelActivities', () => {
  it('answers a scripted request outside an activity', async () => {
    const reply = await createModelActivities().callModel(scripted);
    expect(reply).toMatchObject({ content: 'Hello.', finishReason: 'stop', provider: 'scripted' });
  });

  it('throws ModelErrors as ApplicationFailures and lets other errors through', async () => {
    const rate = new ModelError(ModelErrorCode.rateLimit, 'slow down', { retryAfterMs: 2000 });
    const failure = await rejection(
      createModelActivities({ providers: { scripted: throwing(rate) } }).callModel(scripted),
    );
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'MODEL_RATE_LIMIT', nonRetryable: false, nextRetryDelay: 2000 });

    const other = new Error('boom');
    const passed = await rejection(
      createModelActivities({ providers: { scripted: throwing(other) } }).callModel(scripted),
    );
    expect(passed).toBe(other);
  });

  it('refuses an unknown provider as non-retryable', async () => {
    const request = { ...scripted, model: { provider: 'nope' } } as unknown as ModelRequest;
    const failure = await rejection(createModelActivities().callModel(request));
    expect(failure).toMatchObject({ type: 'MODEL_BAD_REQUEST', nonRetryable: true });
  });

  it('uses the given env and fetch for openai-compatible', async () => {
    const seen: { url: string; auth: string | null }[] = [];
    const fetchFn: typeof fetch = (input, init) => {
      seen.push({ url: String(input), auth: new Headers(init?.headers).get('authorization') });
      return Promise.resolve(
        Response.json({ choices: [{ finish_reason: 'stop', message: { content: 'ok' } }] }),
      );
    };
    const activities = createModelActivities({ env: { K: 'key-1' }, fetch: fetchFn });
    expect((await activities.callModel(openai)).content).toBe('ok');
    expect(seen).toEqual([{ url: 'http://127.0.0.1:9/v1/chat/completions', auth: 'Bearer key-1' }]);

    const noKey = await rejection(createModelActivities({ env: {}, fetch: fetchFn }).callModel(openai));
    expect(noKey).toMatchObject({ type: 'MODEL_AUTH', nonRetryable: true });
  });

  it("passes the activity's cancellation signal to the provider", async () => {
    let signal: AbortSignal | undefined;
    const waiting: ModelProvider = {
      name: 'waiting',
      complete: (_request, s) =>
        new Promise<ModelResponse>((_resolve, reject) => {
          signal = s;
          s?.addEventListener('abort', () => reject(s.reason as Error));
        }),
    };
    const env = new MockActivityEnvironment();
    const activities = createModelActivities({ providers: { scripted: waiting } });
    const running = env.run(activities.callModel, scripted);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(signal?.aborted).toBe(false);
    env.cancel();
    await expect(running).rejects.toThrow();
    expect(signal?.aborted).toBe(true);
  });
});
