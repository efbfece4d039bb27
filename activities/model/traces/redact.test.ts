import { describe, expect, test } from 'vitest';
import { sampleTrace } from './cases.ts';
import {
  contentDigest,
  createRedactor,
  luhnValid,
  MAX_REDACT_DEPTH,
  parseRedactionConfig,
} from './redact.ts';

let n = 0;
const ctx = { uid: (prefix: string) => `${prefix}r${++n}` };
const redactor = createRedactor();
const redact = (text: string): string => redactor.redactText(text).text;

describe('default rules', () => {
  test('API keys: OpenAI, Anthropic, Slack, AWS', () => {
    expect(redact('key sk-proj-AbCdEf0123456789_xyz-QQ end')).toBe('key [REDACTED:api_key] end');
    expect(redact('sk-ant-api03-abcdefghijklmnop0123')).toBe('[REDACTED:api_key]');
    expect(redact('slack xoxb-1234567890-abcdef token')).toBe('slack [REDACTED:api_key] token');
    expect(redact('xoxp-1234567890-abc, xoxa-1234567890-x')).toBe('[REDACTED:api_key], [REDACTED:api_key]');
    expect(redact('aws AKIAIOSFODNN7EXAMPLE.')).toBe('aws [REDACTED:api_key].');
    // lookalikes stay
    for (const text of [
      'risk-assessment-framework-2024-v2',
      'sk-short',
      'AKIAIOSFODNN7EXAMPLEX',
      'xoxz-1234567890ab',
      'desk-0123456789abcdefgh',
    ]) {
      expect(redact(text), text).toBe(text);
    }
  });

  test('api key assignments keep the name and quoting, replace the value', () => {
    expect(redact('api_key=abc123')).toBe('api_key=[REDACTED:api_key]');
    expect(redact('API-KEY: "hunter2"')).toBe('API-KEY: "[REDACTED:api_key]"');
    expect(redact('{"apiKey": "v4lue", "x": 1}')).toBe('{"apiKey": "[REDACTED:api_key]", "x": 1}');
    expect(redact('GET /v1?apikey=zzz999&page=2')).toBe('GET /v1?apikey=[REDACTED:api_key]&page=2');
    expect(redact('api_key = sk-proj-AbCdEf0123456789')).toBe('api_key = [REDACTED:api_key]');
    expect(redactor.redactText('api_key=x').counts).toEqual({ api_key_assignment: 1 });
    expect(redact('the api key is documented')).toBe('the api key is documented');
  });

  test('bearer tokens: the token goes, prose stays', () => {
    expect(redact('Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.abc-_123=')).toBe(
      'Authorization: Bearer [REDACTED:bearer_token]',
    );
    expect(redact('bearer 0a1b2c3d4e5f')).toBe('bearer [REDACTED:bearer_token]');
    expect(redact('Bearer authentication is described in RFC 6750')).toBe(
      'Bearer authentication is described in RFC 6750',
    );
    expect(redact('Bearer short1')).toBe('Bearer short1');
  });

  test('e-mail addresses', () => {
    expect(redact('write to alice.o+tag@mail.example.co.uk, or bob@x.io')).toBe(
      'write to [REDACTED:email], or [REDACTED:email]',
    );
    expect(redact('not an address: a@b, @home, x@y.z')).toBe('not an address: a@b, @home, x@y.z');
  });

  test('card numbers: 13–19 digits, grouped or not, Luhn-checked', () => {
    expect(redact('card 4111111111111111 ok')).toBe('card [REDACTED:card_number] ok');
    expect(redact('card 4111 1111 1111 1111.')).toBe('card [REDACTED:card_number].');
    expect(redact('card 5555-5555-5555-4444')).toBe('card [REDACTED:card_number]');
    expect(redact('amex 3782 822463 10005')).toBe('amex [REDACTED:card_number]');
    expect(redact('visa13 4222222222222')).toBe('visa13 [REDACTED:card_number]');
    // a card followed by another number, and a date before one
    expect(redact('4111 1111 1111 1111 123')).toBe('[REDACTED:card_number] 123');
    expect(redact('on 2024-01-15 4111111111111111')).toBe('on 2024-01-15 [REDACTED:card_number]');
    // order ids, phone numbers, timestamps stay
    for (const text of [
      'order 4111111111111112',
      'order 12345678901234567890',
      'ref 1234567890123',
      'call +1 555 123 4567',
      'ts 1750000000000',
      'id x4111111111111111',
      'id 4111111111111111x',
      'uuid 550e8400-e29b-41d4-a716-446655440000',
    ]) {
      expect(redact(text), text).toBe(text);
    }
  });

  test('luhnValid', () => {
    expect(['4111111111111111', '378282246310005', '6011111111111117', '0']).toSatisfy((all: string[]) =>
      all.every(luhnValid),
    );
    expect(['4111111111111112', '1234567890123', '', '41x1']).toSatisfy(
      (all: string[]) => !all.some(luhnValid),
    );
  });

  test('counts per rule; redacting twice changes nothing and counts nothing', () => {
    const text =
      'a@b.co and c@d.co with Bearer abcdef123456 and 4111111111111111 and sk-abcdefghijklmnopqrstu';
    const first = redactor.redactText(text);
    expect(first.counts).toEqual({ email: 2, bearer_token: 1, card_number: 1, api_key: 1 });
    const second = redactor.redactText(first.text);
    expect(second).toEqual({ text: first.text, counts: {} });
  });

  test('hostile inputs stay fast', () => {
    const inputs = [
      'a'.repeat(200_000) + '@',
      'a.'.repeat(100_000) + '@x',
      '1 '.repeat(100_000),
      '1-'.repeat(100_000),
      'Bearer ' + 'a'.repeat(200_000),
      'api_key=' + 'x'.repeat(200_000),
      'sk-' + 'a'.repeat(200_000),
    ];
    const started = performance.now();
    for (const input of inputs) redact(input);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('configured rules', () => {
  test('a custom rule with the default or a literal replacement, optionally case-insensitive', () => {
    const r = createRedactor({
      rules: [
        { name: 'ticket', pattern: 'TCK-\\d{6}' },
        {
          name: 'codename',
          pattern: 'project (?:falcon|osprey)',
          replacement: '<codename>',
          ignoreCase: true,
        },
        { name: 'dollar', pattern: 'cost \\d+', replacement: '$& $1' },
      ],
    });
    expect(r.redactText('see TCK-123456 about Project FALCON, cost 12').text).toBe(
      'see [REDACTED:ticket] about <codename>, $& $1',
    );
    expect(r.rules).toEqual([
      'bearer_token',
      'api_key_assignment',
      'api_key',
      'email',
      'card_number',
      'ticket',
      'codename',
      'dollar',
    ]);
  });

  test('placeholders are never matched again by later rules', () => {
    const r = createRedactor({ rules: [{ name: 'word', pattern: 'REDACTED|email' }] });
    expect(r.redactText('x@y.com email').text).toBe('[REDACTED:email] [REDACTED:word]');
  });

  test('default rules can be turned off, freeing their names', () => {
    const r = createRedactor({
      disableDefaults: ['email'],
      rules: [{ name: 'email', pattern: '@corp\\.example' }],
    });
    expect(r.redactText('a@b.co x@corp.example').text).toBe('a@b.co x[REDACTED:email]');
  });

  test('unsafe or invalid configurations are refused at config time, naming every problem', () => {
    const bad: [unknown, RegExp][] = [
      [{ rules: [{ name: 'nested', pattern: '(a+)+$' }] }, /rules\.0\.pattern: .*catastrophic backtracking/],
      [{ rules: [{ name: 'alt', pattern: '(a|ab)*c' }] }, /alternation inside a repeated group/],
      [{ rules: [{ name: 'adjacent', pattern: '\\d+\\d+x' }] }, /adjacent unbounded repeats/],
      [{ rules: [{ name: 'broken', pattern: '(' }] }, /invalid regular expression/],
      [{ rules: [{ name: 'back', pattern: '(a)\\1' }] }, /backreferences/],
      [{ rules: [{ name: 'empty', pattern: 'a*' }] }, /matches the empty string/],
      [{ rules: [{ name: 'email', pattern: 'x' }] }, /duplicate rule name email/],
      [
        {
          rules: [
            { name: 'x', pattern: 'a' },
            { name: 'x', pattern: 'b' },
          ],
        },
        /rules\.1\.name: duplicate/,
      ],
      [{ rules: [{ name: 'Bad Name', pattern: 'a' }] }, /rules\.0\.name/],
      [{ rules: [{ name: 'x', pattern: 'a', flags: 'g' }] }, /rules\.0/],
      [{ capture: 'everything' }, /capture/],
      [{ disableDefaults: ['nope'] }, /disableDefaults/],
      [{ hashKey: 'short' }, /hashKey/],
      [null, /invalid redaction config/],
    ];
    for (const [config, message] of bad) {
      expect(() => createRedactor(config as never), JSON.stringify(config)).toThrow(message);
      expect(() => parseRedactionConfig(config)).toThrow(
        expect.objectContaining({ code: 'TRACE_CONFIG_INVALID' }),
      );
    }
    expect(() =>
      createRedactor({
        rules: [
          { name: 'a', pattern: '(x+)+' },
          { name: 'b', pattern: '(' },
        ],
      }),
    ).toThrow(/rules\.0\.pattern.*rules\.1\.pattern/);
  });
});

describe('redactTrace', () => {
  const email = 'carol@example.com';
  const raw = sampleTrace(ctx, {
    agentId: 'agent',
    runId: 'run',
    messages: [
      { role: 'system', content: `admin is ${email}` },
      { role: 'user', content: 'card 4111111111111111' },
      {
        role: 'assistant',
        content: `mailing ${email}`,
        toolCalls: [
          {
            id: 'c0',
            tool: 'mail.send',
            args: {
              to: [email, { cc: email }],
              [email]: 1,
              api_key: 'plain-value',
              n: 4111111111111111,
              ok: true,
            },
            rationale: `asked by ${email}`,
          },
        ],
      },
      { role: 'tool', toolCallId: 'c0', tool: 'mail.send', content: `{"sent":"${email}"}` },
    ],
    tools: [{ name: 'mail.send', description: `owner ${email}`, parameters: { type: 'object' } }],
    completion: {
      content: `done for ${email}`,
      toolCalls: [{ id: 'c1', tool: 'x', args: `Bearer abcdef123456`, rationale: null }],
      finishReason: 'tool_calls',
    },
    error: { code: 'MODEL_BAD_RESPONSE', message: `echoed api_key=zzz` },
    fallbackCause: `primary said ${email}`,
  });

  test('redacts recursively through messages, arguments (keys too), rationales, completion, tools, error', () => {
    const { trace, counts } = redactor.redactTrace(raw);
    const json = JSON.stringify(trace);
    expect(json).not.toContain(email);
    expect(json).not.toContain('4111111111111111');
    expect(json).not.toContain('plain-value');
    expect(json).not.toContain('zzz');
    expect(trace.messages[2]).toEqual({
      role: 'assistant',
      content: 'mailing [REDACTED:email]',
      toolCalls: [
        {
          id: 'c0',
          tool: 'mail.send',
          args: {
            to: ['[REDACTED:email]', { cc: '[REDACTED:email]' }],
            '[REDACTED:email]': 1,
            api_key: '[REDACTED:api_key]',
            n: '[REDACTED:card_number]',
            ok: true,
          },
          rationale: 'asked by [REDACTED:email]',
        },
      ],
    });
    expect(trace.completion?.toolCalls[0]?.args).toBe('Bearer [REDACTED:bearer_token]');
    expect(trace.error).toEqual({ code: 'MODEL_BAD_RESPONSE', message: 'echoed api_key=[REDACTED:api_key]' });
    expect(counts).toEqual({ email: 10, card_number: 2, api_key_assignment: 2, bearer_token: 1 });
    expect(trace.contentCaptured).toBe(true);
    expect(redactor.redactTrace(trace)).toEqual({ trace, counts: {} });
    // the input is not modified
    expect(JSON.stringify(raw)).toContain(email);
  });

  test('unstorable text is repaired; over-deep arguments are cut', () => {
    let deep: unknown = 'bottom';
    for (let i = 0; i < MAX_REDACT_DEPTH + 10; i++) deep = { d: deep };
    const { trace } = redactor.redactTrace({
      ...raw,
      messages: [{ role: 'user', content: 'nul\0 and lone \uD800' }],
      completion: {
        content: null,
        toolCalls: [{ id: 'c', tool: 't', args: deep, rationale: null }],
        finishReason: 'stop',
      },
    });
    expect(trace.messages[0]).toEqual({ role: 'user', content: 'nul\uFFFD and lone \uFFFD' });
    expect(JSON.stringify(trace.completion?.toolCalls[0]?.args)).toContain('[TRUNCATED:depth]');
  });

  test('metadata capture keeps shapes and digests of the redacted text only', () => {
    const { trace } = createRedactor({ capture: 'metadata' }).redactTrace(raw);
    expect(trace.contentCaptured).toBe(false);
    expect(JSON.stringify(trace)).not.toMatch(/carol|mailing|admin is|asked by|done for|owner/);
    expect(trace.messages[0]).toEqual({
      role: 'system',
      content: contentDigest('admin is [REDACTED:email]'),
    });
    expect(trace.messages[2]).toMatchObject({
      toolCalls: [
        { args: { to: ['string', { cc: 'string' }], api_key: 'string', n: 'string', ok: 'boolean' } },
      ],
    });
    expect(trace.completion?.content).toBe(contentDigest('done for [REDACTED:email]'));
    expect(trace.tools[0]).toEqual({
      name: 'mail.send',
      description: contentDigest('owner [REDACTED:email]'),
      parameters: { type: 'object' },
    });
    const again = createRedactor({ capture: 'metadata' }).redactTrace(trace);
    expect(again.trace).toEqual(trace);
    const keyed = createRedactor({ capture: 'metadata', hashKey: 'k'.repeat(32) }).redactTrace(raw).trace;
    expect(keyed.messages[0]).toEqual({
      role: 'system',
      content: contentDigest('admin is [REDACTED:email]', 'k'.repeat(32)),
    });
    expect(keyed.messages[0]).not.toEqual(trace.messages[0]);
  });

  test('a trace that only claims to hold no content is still redacted', () => {
    const { trace } = redactor.redactTrace({ ...raw, contentCaptured: false });
    expect(JSON.stringify(trace)).not.toContain(email);
    expect(trace.contentCaptured).toBe(false);
  });
});
