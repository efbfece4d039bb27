import { expect, test } from 'vitest';
import { checkRegexSafety, MAX_PATTERN_LENGTH } from './regex-safety.ts';

const rejected = (pattern: string) => checkRegexSafety(pattern) !== undefined;

// Timing-free: each pattern below is known to backtrack catastrophically in a backtracking engine
// (V8 irregexp included); the checker only has to refuse it. Sources in the comments.
const DANGEROUS: readonly (readonly [pattern: string, source: string])[] = [
  ['(a+)+$', 'OWASP ReDoS page: nested quantifier'],
  ['([a-zA-Z]+)*', 'OWASP ReDoS page'],
  ['(a|aa)+', 'OWASP ReDoS page: overlapping alternation'],
  ['(a|a?)+', 'OWASP ReDoS page'],
  ['^(\\w+\\s?)*$', 'common "words" validator, many advisories'],
  ['^([a-zA-Z0-9]+\\s?)+$', 'alphanumeric-with-spaces validator'],
  ['^(([a-z])+.)+[A-Z]([a-z])+$', 'OWASP ReDoS page: Java class name validator'],
  [
    '^([a-zA-Z0-9])(([\\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$',
    'OWASP ReDoS page: email validator',
  ],
  ['(x+x+)+y', 'regular-expressions.info: catastrophic backtracking'],
  ['^(\\d+)*$', 'nested digit repeat'],
  ['(\\w+\\d+)+C', 'overlapping classes inside a repeated group'],
  ['(.*){1,32000}[bc]', 'V8 blog / Chromium bug: huge bounded repeat of .*'],
  ['\\d+\\d+', 'adjacent overlapping repeats (quadratic)'],
  ['.*.*=.*', 'adjacent .* (cubic)'],
  ['^\\d*\\.?\\d+$', 'number parser with an optional separator (quadratic)'],
  ['a{2,}a{2,}', 'adjacent open-ended bounded repeats'],
  ['(a+){33}', 'bounded repeat above the large-bound threshold'],
];

// Refused by the second round of checks (bounded repeats of groups holding repeats, optional groups
// beside overlapping repeats, more than two wildcards). Measured on Node 24 before the fix:
// (.*a){12}b 8.3 s on 30 chars; ^(a+){10}$ 1.2 s on 31; ^(a|a){32}$ 0.7 s on 25;
// ^(\w+\s?){8}$ 2.7 s on 41; ^(?:\d+)?\.?\d+$ 0.8 s on 50k; a.*b.*c.*d$ 1.5 s on 1k, 336 s on 4k.
const DANGEROUS_BOUNDED_REPEATS: readonly (readonly [pattern: string, source: string])[] = [
  ['(.*a){12}', 'Wikipedia "ReDoS": (.*a){x} for x > 10; a bounded repeat of a group holding .*'],
  ['^(a+){10}$', 'nested repeat behind a bound of 10 (splits n chars into 10 runs: C(n-1, 9) ways)'],
  ['^(a|a){32}$', 'repeated overlapping alternation behind a bound of 32 (2^32 paths)'],
  ['^(\\w+\\s?){8}$', 'the words validator above with {8} instead of *'],
  ['^(?:\\d+)?\\.?\\d+$', 'ms (npm) ReDoS 2017 shape; the same as ^\\d*\\.?\\d+$'],
  ['a.*b.*c.*d$', 'several .* separated by literals, unanchored (polynomial, degree 4)'],
];

// Quadratic at worst (the unanchored search retries each start position) and accepted: decisions
// never run a pattern on more than MAX_MATCH_INPUT characters (1,024: \s+$ takes 0.6 ms there).
const QUADRATIC_BOUNDED_BY_INPUT_CAP: readonly string[] = ['\\s+$', 'a.*b.*c$'];

// Patterns a policy author writes every day: the checker must accept them.
const COMMON_SAFE: readonly string[] = [
  '^[a-z]+@acme\\.com$',
  '^\\s*(SELECT|EXPLAIN)\\s',
  '^[A-Z]{3}$',
  '^https://status\\.acme\\.test/',
  '^\\d{1,10}$',
  '^(GET|HEAD)$',
  '^[\\w.+-]+@acme\\.com$',
  '^cus_[A-Za-z0-9]{14}$',
  '^[a-z0-9-]+$',
  '^(?!.*DROP)',
  '^[^;]*$',
  '^\\S+$',
  '[Pp]assword|api[_-]?key',
  '^\\p{Lu}',
  '^v\\d+\\.\\d+\\.\\d+$',
  '^\\d{4}-\\d{2}-\\d{2}$',
  '^[0-9a-f]{40}$',
  '^[^@\\s]+@[^@\\s]+$',
  '^[^@]+@(acme\\.com|acme\\.org)$',
  '^(staging|dev)-[a-z]+$',
  '^[A-Z]{3}(,[A-Z]{3})*$',
  'DROP\\s+TABLE',
  '^/workspace/[^/]+\\.md$',
  '^(?:[01]\\d|2[0-3]):[0-5]\\d$',
  '(ab){1,40}',
];

// Safe in practice (a mandatory separator or anchor rules out ambiguity) but refused: the checker is
// conservative by design. Listed so a change in either direction is noticed.
const SAFE_BUT_REJECTED: readonly string[] = [
  '^([a-z0-9-]+\\.)+[a-z]{2,}$', // host names
  '^[a-z]+(-[a-z]+)*$', // kebab-case
  '^(?:SELECT|WITH)\\b[^;]*;?\\s*$', // one SQL statement
];

for (const [pattern, source] of DANGEROUS) {
  test(`rejects ${pattern} (${source})`, () => {
    expect(rejected(pattern)).toBe(true);
  });
}

for (const [pattern, source] of DANGEROUS_BOUNDED_REPEATS) {
  test(`rejects ${pattern} (${source})`, () => {
    expect(rejected(pattern)).toBe(true);
  });
}

test('quadratic patterns are accepted: the decision-time input cap bounds them', () => {
  for (const pattern of QUADRATIC_BOUNDED_BY_INPUT_CAP)
    expect(checkRegexSafety(pattern), pattern).toBeUndefined();
});

for (const pattern of COMMON_SAFE) {
  test(`accepts ${pattern}`, () => {
    expect(checkRegexSafety(pattern)).toBeUndefined();
  });
}

test('conservative refusals of safe patterns', () => {
  expect(SAFE_BUT_REJECTED.filter((p) => !rejected(p))).toEqual([]);
});

test('every accepted pattern compiles with the u flag, as compile.ts uses it', () => {
  for (const pattern of COMMON_SAFE) expect(() => new RegExp(pattern, 'u')).not.toThrow();
});

test('messages: nested repeat', () => {
  expect(checkRegexSafety('(a+)+')).toMatchInlineSnapshot(
    `"pattern prone to catastrophic backtracking: a repeated group contains another unbounded repeat"`,
  );
});

test('messages: repeated alternation', () => {
  expect(checkRegexSafety('(a|ab)*')).toMatchInlineSnapshot(
    `"pattern prone to catastrophic backtracking: alternation inside a repeated group (use a character class)"`,
  );
});

test('messages: adjacent overlapping repeats', () => {
  expect(checkRegexSafety('\\w+\\d+')).toMatchInlineSnapshot(
    `"pattern prone to catastrophic backtracking: adjacent unbounded repeats \\w and \\d can match the same text"`,
  );
  expect(checkRegexSafety('(a)+(b)+')).toMatchInlineSnapshot(
    `"pattern prone to catastrophic backtracking: adjacent unbounded repeats (…) and (…) can match the same text"`,
  );
});

test('adjacent repeats of distinct literals are fine', () => {
  expect(checkRegexSafety('a+b+')).toBeUndefined();
  expect(checkRegexSafety('\\.+-+')).toBeUndefined();
});

test('a mandatory atom between repeats resets the adjacency check', () => {
  expect(checkRegexSafety('\\d+-\\d+')).toBeUndefined();
  expect(checkRegexSafety('\\d+-?\\d+')).not.toBeUndefined();
});

test('anchors and \\b do not separate repeats', () => {
  expect(checkRegexSafety('\\w+\\b\\w+')).not.toBeUndefined();
});

test('lazy quantifiers are judged like greedy ones', () => {
  expect(checkRegexSafety('(a+?)+?')).not.toBeUndefined();
  expect(checkRegexSafety('.*?.*?')).not.toBeUndefined();
});

test('messages: backreferences and lookbehind', () => {
  expect(checkRegexSafety('(a)\\1')).toMatchInlineSnapshot(
    `"backreferences are not supported in policy patterns"`,
  );
  expect(checkRegexSafety('(?<n>a)\\k<n>')).toMatchInlineSnapshot(
    `"backreferences are not supported in policy patterns"`,
  );
  expect(checkRegexSafety('(?<=a)b')).toMatchInlineSnapshot(
    `"lookbehind is not supported in policy patterns"`,
  );
  expect(checkRegexSafety('(?<!a)b')).toMatchInlineSnapshot(
    `"lookbehind is not supported in policy patterns"`,
  );
});

test('named groups and lookahead are allowed', () => {
  expect(checkRegexSafety('^(?<env>staging|dev)$')).toBeUndefined();
  expect(checkRegexSafety('^(?=.*x)[a-z]+$')).toBeUndefined();
});

test('messages: invalid patterns (u flag)', () => {
  expect(checkRegexSafety('(')).toMatchInlineSnapshot(
    `"invalid regular expression: /(/u: Unterminated group"`,
  );
  expect(checkRegexSafety('a++')).toMatchInlineSnapshot(
    `"invalid regular expression: /a++/u: Nothing to repeat"`,
  );
  expect(checkRegexSafety('\\q')).toMatchInlineSnapshot(
    `"invalid regular expression: /\\q/u: Invalid escape"`,
  );
});

test('length limit', () => {
  expect(checkRegexSafety('a'.repeat(MAX_PATTERN_LENGTH))).toBeUndefined();
  expect(checkRegexSafety('a'.repeat(MAX_PATTERN_LENGTH + 1))).toMatchInlineSnapshot(
    `"expected a pattern of at most 512 characters, got 513"`,
  );
});

test('escapes inside classes and unicode escapes parse', () => {
  expect(checkRegexSafety('^[\\]\\\\-]+$')).toBeUndefined();
  expect(checkRegexSafety('^\\u{1F600}+$')).toBeUndefined();
  expect(checkRegexSafety('^\\x41\\u0042\\cJ$')).toBeUndefined();
  expect(checkRegexSafety('^\\p{Script=Greek}+$')).toBeUndefined();
});
