import { expect, test } from 'vitest';
import { MAX_DURATION_MS, parseDuration } from './duration.ts';

const S = 1_000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

const VALID: readonly (readonly [text: string, ms: number])[] = [
  ['90s', 90 * S],
  ['15m', 15 * M],
  ['4h', 4 * H],
  ['1d', D],
  ['1h30m', H + 30 * M],
  ['1d2h3m4s', D + 2 * H + 3 * M + 4 * S],
  ['0h1s', S],
  ['015m', 15 * M],
  ['120m', 2 * H],
  ['366d', MAX_DURATION_MS],
  ['PT4H', 4 * H],
  ['PT15M', 15 * M],
  ['PT90S', 90 * S],
  ['PT1H30M', H + 30 * M],
  ['P1D', D],
  ['P1DT12H', D + 12 * H],
  ['P366D', MAX_DURATION_MS],
];

const INVALID: readonly string[] = [
  '',
  '0s',
  '0h0m',
  'PT0S',
  '-1s',
  '1.5h',
  '1,5h',
  '4H',
  '4 h',
  '1h 30m',
  '30m1h',
  '1h1h',
  '1w',
  '1y',
  'h',
  '4',
  'P',
  'PT',
  'P1DT',
  'pt4h',
  'P1W',
  'P1M',
  'P1Y',
  'PT1.5H',
  '367d',
  'P366DT1S',
  '99999999999999999999d',
  ' 4h',
  '4h\n',
];

for (const [text, ms] of VALID) {
  test(`parseDuration(${JSON.stringify(text)}) = ${ms}`, () => {
    expect(parseDuration(text)).toBe(ms);
  });
}

for (const text of INVALID) {
  test(`parseDuration(${JSON.stringify(text)}) is undefined`, () => {
    expect(parseDuration(text)).toBeUndefined();
  });
}

test('the maximum is one leap year', () => {
  expect(MAX_DURATION_MS).toBe(366 * D);
  expect(parseDuration(`${366 * 24}h`)).toBe(MAX_DURATION_MS);
  expect(parseDuration(`${366 * 24 * 60 * 60 + 1}s`)).toBeUndefined();
});

test('short and ISO forms agree', () => {
  expect(parseDuration('1d2h3m4s')).toBe(parseDuration('P1DT2H3M4S'));
});
