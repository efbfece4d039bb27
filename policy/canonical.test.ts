import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { expect, test } from 'vitest';
import { canonicalJson, digestOf } from './canonical.ts';

const fromBits = (hex: string): number =>
  new DataView(new Uint8Array(hex.match(/../g)!.map((b) => parseInt(b, 16))).buffer).getFloat64(0);

// RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text
const RFC8785_NUMBERS: readonly (readonly [bits: string, text: string])[] = [
  ['0000000000000000', '0'],
  ['8000000000000000', '0'],
  ['0000000000000001', '5e-324'],
  ['8000000000000001', '-5e-324'],
  ['7fefffffffffffff', '1.7976931348623157e+308'],
  ['ffefffffffffffff', '-1.7976931348623157e+308'],
  ['4340000000000000', '9007199254740992'],
  ['c340000000000000', '-9007199254740992'],
  ['4430000000000000', '295147905179352830000'],
  ['44b52d02c7e14af5', '9.999999999999997e+22'],
  ['44b52d02c7e14af6', '1e+23'],
  ['44b52d02c7e14af7', '1.0000000000000001e+23'],
  ['444b1ae4d6e2ef4e', '999999999999999700000'],
  ['444b1ae4d6e2ef4f', '999999999999999900000'],
  ['444b1ae4d6e2ef50', '1e+21'],
  ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
  ['3eb0c6f7a0b5ed8d', '0.000001'],
  ['41b3de4355555553', '333333333.3333332'],
  ['41b3de4355555554', '333333333.33333325'],
  ['41b3de4355555555', '333333333.3333333'],
  ['41b3de4355555556', '333333333.3333334'],
  ['41b3de4355555557', '333333333.33333343'],
  ['becbf647612f3696', '-0.0000033333333333333333'],
  ['43143ff3c1cb0959', '1424953923781206.2'],
];

for (const [bits, text] of RFC8785_NUMBERS) {
  test(`RFC 8785 number ${bits} → ${text}`, () => {
    expect(canonicalJson(fromBits(bits))).toBe(text);
  });
}

test('RFC 8785 number: NaN and Infinity are errors', () => {
  expect(() => canonicalJson(fromBits('7fffffffffffffff'))).toThrowErrorMatchingInlineSnapshot(
    `[TypeError: canonical JSON cannot represent NaN]`,
  );
  expect(() => canonicalJson(fromBits('7ff0000000000000'))).toThrowErrorMatchingInlineSnapshot(
    `[TypeError: canonical JSON cannot represent Infinity]`,
  );
  expect(() => canonicalJson(-Infinity)).toThrow(TypeError);
});

test('RFC 8785 3.2.2 example: whitespace, numbers, string escapes, literals', () => {
  const input = JSON.parse(
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
      ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
      ' "literals": [null, true, false]}',
  );
  expect(canonicalJson(input)).toBe(
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
  );
});

test('RFC 8785 3.2.3 example: keys sorted by UTF-16 code units', () => {
  const input = {
    '\u20ac': 'Euro Sign',
    '\r': 'Carriage Return',
    '\ufb33': 'Hebrew Letter Dalet With Dagesh',
    '1': 'One',
    '\ud83d\ude00': 'Emoji: Grinning Face',
    '\u0080': 'Control',
    '\u00f6': 'Latin Small Letter O With Diaeresis',
  };
  expect(canonicalJson(input)).toBe(
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  );
});

test('UTF-16 order, not code point order: U+1F600 (surrogates D83D DE00) sorts before U+E000', () => {
  expect(canonicalJson({ '\ufb33': 1, '\u{1f600}': 2, '\ue000': 3 })).toBe(
    '{"\u{1f600}":2,"\ue000":3,"\ufb33":1}',
  );
});

test('string escapes: short forms, lowercase \\u00xx for other controls, no escaping above 0x1f', () => {
  expect(canonicalJson('\b\t\n\f\r"\\')).toBe('"\\b\\t\\n\\f\\r\\"\\\\"');
  expect(canonicalJson('\u0000\u0001\u001f\u007f')).toBe('"\\u0000\\u0001\\u001f\u007f"');
  expect(canonicalJson('/ < > & \u2028 \u2029 é 😀')).toBe('"/ < > & \u2028 \u2029 é 😀"');
});

test('nested objects and arrays sort keys at every level, arrays keep their order', () => {
  expect(canonicalJson({ b: [3, { z: 1, a: [2, 1] }], a: { d: null, c: true } })).toBe(
    '{"a":{"c":true,"d":null},"b":[3,{"a":[2,1],"z":1}]}',
  );
});

test('number forms', () => {
  expect(
    [1e21, 1e-7, 1.5, -0, 0.1 + 0.2, 123456789012345680000, 2 ** 53 + 2, -1e-7].map(canonicalJson),
  ).toEqual([
    '1e+21',
    '1e-7',
    '1.5',
    '0',
    '0.30000000000000004',
    '123456789012345680000',
    '9007199254740994',
    '-1e-7',
  ]);
});

test('undefined properties are dropped like JSON.stringify; other non-JSON values throw', () => {
  expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  expect(() => canonicalJson(undefined)).toThrowErrorMatchingInlineSnapshot(
    `[TypeError: canonical JSON cannot represent a undefined]`,
  );
  expect(() => canonicalJson([undefined])).toThrow(TypeError);
  expect(() => canonicalJson(() => 1)).toThrowErrorMatchingInlineSnapshot(
    `[TypeError: canonical JSON cannot represent a function]`,
  );
  expect(() => canonicalJson(1n)).toThrowErrorMatchingInlineSnapshot(
    `[TypeError: canonical JSON cannot represent a bigint]`,
  );
  expect(() => canonicalJson(Symbol('s'))).toThrow(TypeError);
});

test('agrees with JSON.stringify on plain data apart from key order', () => {
  const value = { z: [1, 'two', { y: false, x: null }], a: 'ä\n', m: -0.5 };
  expect(JSON.parse(canonicalJson(value))).toEqual(JSON.parse(JSON.stringify(value)));
});

test('digestOf is the sha256 of the canonical text, independent of key order', () => {
  const a = { tool: 'fs.read', args: { path: '/a' }, resource: '/a', policyVersion: 'v1' };
  const b = { policyVersion: 'v1', resource: '/a', args: { path: '/a' }, tool: 'fs.read' };
  expect(digestOf(a)).toBe(digestOf(b));
  expect(digestOf(a)).toBe(bytesToHex(sha256(utf8ToBytes(canonicalJson(a)))));
  expect(digestOf(a)).toMatch(/^[0-9a-f]{64}$/);
  expect(digestOf({ ...a, args: { path: '/b' } })).not.toBe(digestOf(a));
});

test('digest of a known value', () => {
  // sha256('{"a":1}'), computed independently
  expect(digestOf({ a: 1 })).toBe('015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862');
});

// The digest feeds actionDigest, which signed approval votes cover: two different values must not
// share canonical text. Values JSON cannot represent must throw (as the doc comment says), not
// collapse to "{}".
test('a Map is not silently serialised as {}', () => {
  expect(() => canonicalJson(new Map([['amountCents', 1_000_000]]))).toThrow();
});

test('two different Dates do not share a digest', () => {
  let same: boolean;
  try {
    same = digestOf({ at: new Date(0) }) === digestOf({ at: new Date(1) });
  } catch {
    same = false; // refusing a Date is also correct
  }
  expect(same).toBe(false);
});

test('a sparse array gives valid JSON or throws', () => {
  // eslint-disable-next-line no-sparse-arrays
  const sparse = [, 1];
  let text: string | undefined;
  try {
    text = canonicalJson(sparse);
  } catch {
    text = undefined;
  }
  if (text !== undefined) expect(() => JSON.parse(text) as unknown).not.toThrow();
});
