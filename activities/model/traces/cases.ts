/**
 * The one case table every {@link TraceStore} must pass (SQLite and PostgreSQL alike). Cases share
 * a database: every id, agent, run and searched word comes from `ctx.uid`, and searches are scoped
 * to the case's own agent.
 * @module
 */
import { expect } from 'vitest';
import { TraceErrorCode } from './errors.ts';
import { MAX_QUERY_CHARS, MAX_QUERY_TERMS } from './query.ts';
import { createRedactor } from './redact.ts';
import type { TraceStore } from './store.ts';
import type { ModelTrace } from './types.ts';

/** What a case gets besides the store under test. */
export interface CaseContext {
  /** A word unique to this run (letters and digits only, so one search token), starting with `prefix`. */
  uid(prefix: string): string;
}

/** One named case. */
export interface TraceStoreCase {
  readonly name: string;
  readonly run: (store: TraceStore, ctx: CaseContext) => Promise<void>;
}

const T0 = 1_750_000_000_000;

/** A complete trace with plausible defaults; `agentId` and `runId` are the case's own. */
export function sampleTrace(
  ctx: CaseContext,
  overrides: Partial<ModelTrace> & Pick<ModelTrace, 'agentId' | 'runId'>,
): ModelTrace {
  return {
    id: ctx.uid('trace'),
    ts: T0,
    step: 0,
    route: 'default',
    purpose: 'act',
    target: 'primary',
    provider: 'openai',
    model: 'gpt-test',
    attempts: [
      { target: 'primary', provider: 'openai', model: 'gpt-test', outcome: 'ok', durationMs: 120.5 },
    ],
    fallbackCause: null,
    messages: [
      { role: 'system', content: 'You are a billing assistant.' },
      { role: 'user', content: 'Please look at invoice inv_42.' },
    ],
    tools: [
      {
        name: 'billing.refund',
        description: 'Refund an invoice',
        parameters: { type: 'object', properties: { invoice: { type: 'string' } } },
      },
    ],
    completion: { content: 'Done.', toolCalls: [], finishReason: 'stop' },
    error: null,
    usage: { inputTokens: 42, outputTokens: 7 },
    latencyMs: 130,
    overheadMs: 2.5,
    contentCaptured: true,
    ...overrides,
  };
}

const INVALID_TRACE = { code: TraceErrorCode.invalidTrace };
const INVALID_QUERY = { code: TraceErrorCode.invalidQuery };

async function ids(store: TraceStore, query: Parameters<TraceStore['search']>[0]): Promise<string[]> {
  return (await store.search(query)).map((h) => h.trace.id);
}

/** The case table. */
export const TRACE_STORE_CASES: readonly TraceStoreCase[] = [
  {
    name: 'append then byRun returns the trace as written',
    async run(store, ctx) {
      const t = sampleTrace(ctx, {
        agentId: ctx.uid('agent'),
        runId: ctx.uid('run'),
        attempts: [
          {
            target: 'primary',
            provider: 'openai',
            model: 'gpt-test',
            outcome: 'MODEL_RATE_LIMIT',
            durationMs: 3,
            retryAfterMs: 2000,
          },
          {
            target: 'local',
            provider: 'ollama',
            model: 'llama',
            outcome: 'skipped',
            durationMs: 0,
            skipped: true,
          },
          { target: 'backup', provider: 'anthropic', model: 'claude', outcome: 'ok', durationMs: 99 },
        ],
        fallbackCause: 'MODEL_RATE_LIMIT on primary',
        messages: [
          { role: 'user', content: 'refund it' },
          {
            role: 'assistant',
            content: null,
            toolCalls: [
              {
                id: 'c1',
                tool: 'billing.refund',
                args: { invoice: 'inv_42', lines: [1, 2.5, null, true], deep: { a: { b: {} } } },
                rationale: null,
              },
            ],
          },
          { role: 'tool', toolCallId: 'c1', tool: 'billing.refund', content: '{"ok":true}' },
        ],
        completion: {
          content: null,
          toolCalls: [{ id: 'c2', tool: 'mail.send', args: {}, rationale: 'tell the customer' }],
          finishReason: 'tool_calls',
        },
      });
      expect(await store.append(t)).toBe(true);
      expect(await store.byRun(t.runId)).toEqual([t]);
      expect(await store.byRun(ctx.uid('nobody'))).toEqual([]);
    },
  },
  {
    name: 'append is idempotent by id: the first record stays',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const runId = ctx.uid('run');
      const t = sampleTrace(ctx, { agentId, runId });
      expect(await store.append(t)).toBe(true);
      expect(await store.append({ ...t, model: 'other', step: 9 })).toBe(false);
      const t2 = sampleTrace(ctx, { agentId, runId, step: 1 });
      expect(await store.appendMany([t, t2, t2])).toBe(1);
      expect(await store.appendMany([])).toBe(0);
      expect(await store.byRun(runId)).toEqual([t, t2]);
      expect(await store.search({ agentId })).toHaveLength(2);
    },
  },
  {
    name: 'an invalid trace is refused with TRACE_INVALID; a batch holding one stores nothing',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const runId = ctx.uid('run');
      const good = sampleTrace(ctx, { agentId, runId });
      const bad: unknown[] = [
        { ...good, id: '' },
        { ...good, step: -1 },
        { ...good, ts: 1.5 },
        { ...good, extra: 1 },
        { ...good, agentId: 'nul\0byte' },
        { ...good, messages: [{ role: 'user', content: 'lone \uD800 surrogate' }] },
        { ...good, messages: [{ role: 'robot', content: 'x' }] },
        {
          ...good,
          completion: {
            content: 'x',
            toolCalls: [{ id: 'c', tool: 't', args: { n: Infinity }, rationale: null }],
            finishReason: 'stop',
          },
        },
        {
          ...good,
          completion: {
            content: 'x',
            toolCalls: [{ id: 'c', tool: 't', args: undefined, rationale: null }],
            finishReason: 'stop',
          },
        },
        { ...good, usage: { inputTokens: -1, outputTokens: 0 } },
        null,
      ];
      for (const value of bad) {
        await expect(store.append(value as ModelTrace), JSON.stringify(value)).rejects.toMatchObject(
          INVALID_TRACE,
        );
      }
      await expect(store.appendMany([good, bad[1] as ModelTrace])).rejects.toMatchObject(INVALID_TRACE);
      expect(await store.byRun(runId)).toEqual([]);
    },
  },
  {
    name: 'search finds a word in the prompt, with the word highlighted',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const word = ctx.uid('prompt');
      const t = sampleTrace(ctx, {
        agentId,
        runId: ctx.uid('run'),
        messages: [{ role: 'user', content: `Please refund the order tagged ${word} today, thanks.` }],
      });
      await store.append(t);
      await store.append(sampleTrace(ctx, { agentId, runId: ctx.uid('run') }));
      const hits = await store.search({ text: word, agentId });
      expect(hits.map((h) => h.trace)).toEqual([t]);
      expect(hits[0]?.snippet).toContain(`«${word}»`);
      expect(await ids(store, { text: word.toUpperCase(), agentId })).toEqual([t.id]);
      expect(await store.search({ agentId })).toHaveLength(2);
      expect((await store.search({ agentId })).every((h) => h.snippet === null)).toBe(true);
    },
  },
  {
    name: 'search finds a word in the completion, a rationale, a tool name, arguments and the error',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const [inCompletion, inRationale, inArgs, inError, inHistory] = [
        ctx.uid('completion'),
        ctx.uid('rationale'),
        ctx.uid('args'),
        ctx.uid('error'),
        ctx.uid('history'),
      ];
      const tool = `${ctx.uid('tool')}.send`;
      const a = sampleTrace(ctx, {
        agentId,
        runId: ctx.uid('run'),
        completion: {
          content: `I will ${inCompletion} now.`,
          toolCalls: [
            {
              id: 'c1',
              tool,
              args: { note: [`see ${inArgs}`] },
              rationale: `because ${inRationale} said so`,
            },
          ],
          finishReason: 'tool_calls',
        },
      });
      const b = sampleTrace(ctx, {
        agentId,
        runId: ctx.uid('run'),
        completion: null,
        error: { code: 'MODEL_TIMEOUT', message: `no answer from ${inError}` },
        messages: [
          {
            role: 'assistant',
            content: null,
            toolCalls: [{ id: 'h', tool: 'x.y', args: {}, rationale: `earlier ${inHistory}` }],
          },
        ],
      });
      await store.appendMany([a, b]);
      for (const word of [inCompletion, inRationale, inArgs, tool]) {
        expect(await ids(store, { text: word, agentId }), word).toEqual([a.id]);
      }
      for (const word of [inError, inHistory]) {
        expect(await ids(store, { text: word, agentId }), word).toEqual([b.id]);
      }
      expect((await store.search({ text: inRationale, agentId }))[0]?.snippet).toContain(`«${inRationale}»`);
    },
  },
  {
    name: 'filters by agent, run and since combine; limit bounds the answer',
    async run(store, ctx) {
      const word = ctx.uid('shared');
      const [agentA, agentB, run1, run2] = [
        ctx.uid('agent'),
        ctx.uid('agent'),
        ctx.uid('run'),
        ctx.uid('run'),
      ];
      const content = `common ${word}`;
      const make = (agentId: string, runId: string, ts: number): ModelTrace =>
        sampleTrace(ctx, { agentId, runId, ts, messages: [{ role: 'user', content }] });
      const a1 = make(agentA, run1, T0);
      const a2 = make(agentA, run1, T0 + 1_000);
      const a3 = make(agentA, run2, T0 + 2_000);
      const b1 = make(agentB, ctx.uid('run'), T0 + 3_000);
      await store.appendMany([a1, a2, a3, b1]);
      expect(await ids(store, { text: word })).toEqual([b1.id, a3.id, a2.id, a1.id]);
      expect(await ids(store, { text: word, agentId: agentA })).toEqual([a3.id, a2.id, a1.id]);
      expect(await ids(store, { text: word, agentId: agentA, runId: run1 })).toEqual([a2.id, a1.id]);
      expect(await ids(store, { agentId: agentA, runId: run2 })).toEqual([a3.id]);
      expect(await ids(store, { text: word, since: T0 + 1_000 })).toEqual([b1.id, a3.id, a2.id]);
      expect(await ids(store, { text: word, since: T0 + 999.5 })).toEqual([b1.id, a3.id, a2.id]);
      expect(await ids(store, { runId: run1, since: T0 + 1e30 })).toEqual([]);
      expect(await ids(store, { agentId: agentA, since: -1e30 })).toHaveLength(3);
      expect(await ids(store, { text: word, limit: 2 })).toEqual([b1.id, a3.id]);
      expect(await ids(store, { text: word, agentId: agentB, runId: run1 })).toEqual([]);
    },
  },
  {
    name: 'newest first: ts descending, then id descending',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const runId = ctx.uid('run');
      const base = ctx.uid('id');
      const t = (suffix: string, ts: number): ModelTrace =>
        sampleTrace(ctx, { id: `${base}-${suffix}`, agentId, runId, ts });
      const list = [t('b', T0 + 1), t('a', T0 + 3), t('c', T0 + 2), t('a2', T0 + 2), t('B', T0 + 2)];
      for (const x of list) await store.append(x);
      expect(await ids(store, { agentId })).toEqual([
        `${base}-a`,
        `${base}-c`,
        `${base}-a2`,
        `${base}-B`,
        `${base}-b`,
      ]);
    },
  },
  {
    name: 'byRun orders by step, then ts, then id',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const runId = ctx.uid('run');
      const s = (step: number, ts: number, id: string): ModelTrace =>
        sampleTrace(ctx, { id: `${runId}-${id}`, agentId, runId, step, ts });
      await store.appendMany([
        s(2, T0, 'x'),
        s(0, T0 + 5, 'y'),
        s(1, T0 + 9, 'z'),
        s(1, T0 + 1, 'w'),
        s(1, T0 + 1, 'v'),
      ]);
      await store.append(sampleTrace(ctx, { agentId, runId: ctx.uid('run') }));
      expect((await store.byRun(runId)).map((t) => `${t.step}:${t.id.slice(runId.length + 1)}`)).toEqual([
        '0:y',
        '1:v',
        '1:w',
        '1:z',
        '2:x',
      ]);
    },
  },
  {
    name: 'phrases, OR and exclusions',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const [w1, w2, w3] = [ctx.uid('alpha'), ctx.uid('beta'), ctx.uid('gamma')];
      const make = (content: string): ModelTrace =>
        sampleTrace(ctx, { agentId, runId: ctx.uid('run'), messages: [{ role: 'user', content }] });
      const ab = make(`${w1} ${w2}`);
      const ba = make(`${w2} then ${w1}`);
      const c = make(`${w3} only`);
      await store.appendMany([ab, ba, c]);
      const sorted = async (text: string): Promise<string[]> => (await ids(store, { text, agentId })).sort();
      expect(await sorted(`${w1} ${w2}`)).toEqual([ab.id, ba.id].sort());
      expect(await sorted(`"${w1} ${w2}"`)).toEqual([ab.id]);
      expect(await sorted(`${w1} -${w2}`)).toEqual([]);
      expect(await sorted(`${w1} -then`)).toEqual([ab.id]);
      expect(await sorted(`${w1} -"then ${w1}"`)).toEqual([ab.id]);
      expect(await sorted(`"${w2} then" OR ${w3}`)).toEqual([ba.id, c.id].sort());
      expect(await sorted(`${w3} or ${w1}`)).toEqual([]); // lower-case "or" is a word
      expect(await sorted(`-${w1} OR ${w3}`)).toEqual([c.id]); // an all-exclusion alternative is dropped
      expect(await sorted(`"${w1}`)).toEqual([ab.id, ba.id].sort()); // unterminated quote
    },
  },
  {
    name: 'redacted secrets are not findable; their placeholders are',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const redactor = createRedactor();
      const email = `${ctx.uid('alice')}@example.com`;
      const key = `sk-proj-${ctx.uid('Key')}AbCdEf0123456789`;
      const card = '4111 1111 1111 1111';
      const raw = sampleTrace(ctx, {
        agentId,
        runId: ctx.uid('run'),
        messages: [{ role: 'user', content: `mail ${email} with key ${key}, card ${card}` }],
        completion: {
          content: 'ok',
          toolCalls: [
            {
              id: 'c',
              tool: 'mail.send',
              args: { to: email, auth: `Bearer ${ctx.uid('tok')}9` },
              rationale: `asked by ${email}`,
            },
          ],
          finishReason: 'tool_calls',
        },
      });
      const { trace, counts } = redactor.redactTrace(raw);
      expect(counts).toMatchObject({ email: 3, api_key: 1, card_number: 1, bearer_token: 1 });
      await store.append(trace);
      const stored = JSON.stringify(await store.byRun(raw.runId));
      for (const secret of [email, key, card]) {
        expect(stored).not.toContain(secret);
        expect(await store.search({ text: secret, agentId }), secret).toEqual([]);
        expect(await store.search({ text: `"${secret}"`, agentId }), secret).toEqual([]);
      }
      expect(await store.search({ text: email.split('@')[0]!, agentId })).toEqual([]);
      for (const placeholder of ['[REDACTED:email]', 'REDACTED:api_key', 'redacted card_number']) {
        expect(await ids(store, { text: placeholder, agentId }), placeholder).toEqual([raw.id]);
      }
    },
  },
  {
    name: 'metadata capture stores no content: digests and shapes only',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const words = [
        ctx.uid('system'),
        ctx.uid('user'),
        ctx.uid('answer'),
        ctx.uid('why'),
        ctx.uid('arg'),
        ctx.uid('result'),
        ctx.uid('desc'),
      ];
      const [sys, user, answer, why, arg, result, desc] = words as [
        string,
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      const tool = `${ctx.uid('tool')}.run`;
      const raw = sampleTrace(ctx, {
        agentId,
        runId: ctx.uid('run'),
        messages: [
          { role: 'system', content: sys },
          { role: 'user', content: user },
          {
            role: 'assistant',
            content: answer,
            toolCalls: [{ id: 'c0', tool, args: { q: arg, n: 3, ok: true, list: [arg] }, rationale: why }],
          },
          { role: 'tool', toolCallId: 'c0', tool, content: result },
        ],
        tools: [{ name: tool, description: desc, parameters: { type: 'object' } }],
        completion: {
          content: answer,
          toolCalls: [{ id: 'c1', tool, args: { q: arg }, rationale: why }],
          finishReason: 'tool_calls',
        },
      });
      const { trace } = createRedactor({ capture: 'metadata' }).redactTrace(raw);
      await store.append(trace);
      const [stored] = await store.byRun(raw.runId);
      expect(stored?.contentCaptured).toBe(false);
      const json = JSON.stringify(stored);
      for (const word of words) {
        expect(json).not.toContain(word);
        expect(await store.search({ text: word, agentId }), word).toEqual([]);
      }
      const digest = /^\[sha256:[0-9a-f]{64} len=\d+\]$/;
      expect(stored?.messages[1]).toEqual({ role: 'user', content: expect.stringMatching(digest) });
      expect(stored?.messages[2]).toMatchObject({
        content: expect.stringMatching(digest),
        toolCalls: [
          {
            tool,
            args: { q: 'string', n: 'number', ok: 'boolean', list: ['string'] },
            rationale: expect.stringMatching(digest),
          },
        ],
      });
      expect(stored?.completion?.content).toMatch(digest);
      expect(stored?.tools[0]?.description).toMatch(digest);
      expect(await ids(store, { text: tool, agentId })).toEqual([raw.id]);
    },
  },
  {
    name: 'hostile query strings neither throw nor reach the database as syntax',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const marker = ctx.uid('marker');
      const t = sampleTrace(ctx, {
        agentId,
        runId: ctx.uid('run'),
        messages: [{ role: 'user', content: `meet NEAR the station and OR NOT here ${marker}` }],
      });
      await store.append(t);
      const hostile = [
        '"',
        '""',
        '""""',
        '"unterminated',
        '*',
        'x*',
        '^',
        '(',
        ')',
        '()',
        '{}',
        ':',
        'a:b',
        'body:x',
        'OR',
        'OR OR OR',
        'AND',
        'NOT',
        'NEAR(',
        'NEAR(a b, 2)',
        '-x',
        '-',
        '- - -',
        '--',
        "'",
        "''",
        "'; DROP TABLE traces; --",
        '\\',
        '%',
        '_',
        '$1',
        '?1',
        '@x',
        '\0',
        '\uD800',
        '!',
        '&',
        '|',
        '<->',
        ':*',
        'a & !b',
        "'a' | 'b'",
      ];
      for (const text of hostile) {
        const found = await store.search({ text, agentId });
        expect(Array.isArray(found), text).toBe(true);
      }
      // operators and punctuation alone name nothing
      for (const text of ['"', '*', 'OR', '-x', '- - -', '\0', '<->', ':*']) {
        expect(await store.search({ text, agentId }), text).toEqual([]);
      }
      // words that are operators elsewhere are plain words here
      for (const text of ['NEAR(', 'AND', 'NOT', 'near', '"and OR"', 'station*', '(station)', 'station:*']) {
        expect(await ids(store, { text, agentId }), text).toEqual([t.id]);
      }
      expect(await store.search({ text: "'; DROP TABLE traces; --", agentId })).toEqual([]);
      // still intact
      expect(await ids(store, { text: marker, agentId })).toEqual([t.id]);
      await expect(store.search({ text: 'x'.repeat(MAX_QUERY_CHARS + 1) })).rejects.toMatchObject(
        INVALID_QUERY,
      );
      await expect(
        store.search({ text: Array.from({ length: MAX_QUERY_TERMS + 1 }, (_, i) => `w${i}`).join(' ') }),
      ).rejects.toMatchObject(INVALID_QUERY);
    },
  },
  {
    name: 'unicode: case and diacritics fold, non-Latin scripts match, emoji do not break anything',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      const t = sampleTrace(ctx, {
        agentId,
        runId: ctx.uid('run'),
        messages: [
          { role: 'user', content: 'Résumé für die Straße 😀 東京タワー ПРИВЕТ мир naïve Ελληνικά' },
        ],
        completion: { content: '完成 ✅ done', toolCalls: [], finishReason: 'stop' },
      });
      await store.append(t);
      for (const text of [
        'resume',
        'RÉSUMÉ',
        'Résumé',
        'straße',
        'привет',
        'ПРИВЕТ мир',
        '東京タワー',
        'naive',
        'ελληνικά',
        'ΕΛΛΗΝΙΚΆ',
        '完成',
        'für',
        'fur',
      ]) {
        expect(await ids(store, { text, agentId }), text).toEqual([t.id]);
      }
      for (const text of ['😀', '✅', 'tokyo']) {
        expect(await store.search({ text, agentId }), text).toEqual([]);
      }
      expect(await store.byRun(t.runId)).toEqual([t]);
    },
  },
  {
    name: 'malformed filters are refused with TRACE_QUERY_INVALID; unusable keys find nothing',
    async run(store, ctx) {
      const agentId = ctx.uid('agent');
      await store.append(sampleTrace(ctx, { agentId, runId: ctx.uid('run') }));
      for (const query of [
        { limit: 0 },
        { limit: 1.5 },
        { limit: -3 },
        { since: Number.NaN },
        { since: Infinity },
        { text: 5 },
        { agentId: 7 },
      ]) {
        await expect(store.search(query as never), JSON.stringify(query)).rejects.toMatchObject(
          INVALID_QUERY,
        );
      }
      expect(await ids(store, { agentId, limit: 10_000 })).toHaveLength(1);
      for (const key of ['nul\0byte', 'lone\uD800', '']) {
        expect(await store.search({ agentId: key })).toEqual([]);
        expect(await store.search({ runId: key, text: 'billing' })).toEqual([]);
        expect(await store.byRun(key)).toEqual([]);
      }
    },
  },
];
