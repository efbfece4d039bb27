import fc from 'fast-check';
import { expect, test } from 'vitest';
import { normaliseResource } from './resource.ts';

const ROWS: readonly (readonly [input: string, normalised: string | undefined])[] = [
  // refused
  ['', undefined],
  ['/workspace/a\u0000b', undefined],
  ['\u0000', undefined],
  // absolute paths
  ['/workspace/a', '/workspace/a'],
  ['/workspace//a', '/workspace/a'],
  ['//workspace///a//', '/workspace/a'],
  ['/workspace/./a/.', '/workspace/a'],
  ['/workspace/a/', '/workspace/a'],
  ['/workspace/a/../b', '/workspace/b'],
  ['/workspace/docs/../../etc/passwd', '/etc/passwd'],
  ['/workspace/../../../../etc', '/etc'],
  ['/..', '/'],
  ['/', '/'],
  ['//', '/'],
  ['/.', '/'],
  ['/workspace/a/../../workspace/b', '/workspace/b'],
  ['/workspace/...', '/workspace/...'],
  ['/workspace/..a/b', '/workspace/..a/b'],
  ['/workspace/a..', '/workspace/a..'],
  // percent-encoding is not decoded outside URLs (a file system does not decode it)
  ['/workspace/%2e%2e/etc', '/workspace/%2e%2e/etc'],
  // relative paths stay relative
  ['prod/orders', 'prod/orders'],
  ['./prod/orders', 'prod/orders'],
  ['staging/../prod/orders', 'prod/orders'],
  ['prod/', 'prod'],
  ['a/..', '.'],
  ['.', '.'],
  // relative paths cannot climb above their start: refused
  ['..', undefined],
  ['../a', undefined],
  ['a/../../b', undefined],
  ['../../a/../b', undefined],
  // URLs: scheme and authority lowercased, path normalised, %2e decoded in the path only
  ['https://api.acme.test/v1/items', 'https://api.acme.test/v1/items'],
  ['HTTPS://API.Acme.TEST/V1/Items', 'https://api.acme.test/V1/Items'],
  ['https://api.acme.test/public/../admin', 'https://api.acme.test/admin'],
  ['https://api.acme.test/public/%2e%2e/admin', 'https://api.acme.test/admin'],
  ['https://api.acme.test/public/%2E%2E/admin', 'https://api.acme.test/admin'],
  ['https://api.acme.test/public/.%2e/admin', 'https://api.acme.test/admin'],
  ['https://api.acme.test/public/%2e/admin', 'https://api.acme.test/public/admin'],
  ['https://api.acme.test/../../admin', 'https://api.acme.test/admin'],
  ['https://api.acme.test//a///b/', 'https://api.acme.test/a/b'],
  ['https://api.acme.test', 'https://api.acme.test'],
  ['https://api.acme.test/', 'https://api.acme.test/'],
  ['https://api.acme.test/a/?q=../../x', 'https://api.acme.test/a?q=../../x'],
  ['https://api.acme.test/a/..?q=%2e%2e', 'https://api.acme.test/?q=%2e%2e'],
  ['https://api.acme.test/a#../../b', 'https://api.acme.test/a#../../b'],
  ['https://User@API.acme.test:8443/a', 'https://user@api.acme.test:8443/a'],
  ['https://api.acme.test%2e%2e/a', 'https://api.acme.test%2e%2e/a'],
  ['file:///etc/../passwd', 'file:///passwd'],
  ['s3://Bucket/key/../other', 's3://bucket/other'],
  // no "//" after the scheme: a plain relative path
  ['mailto:ops@acme.test', 'mailto:ops@acme.test'],
  ['urn:a/../b', 'b'],
];

for (const [input, expected] of ROWS) {
  test(`normaliseResource(${JSON.stringify(input)})`, () => {
    expect(normaliseResource(input)).toBe(expected);
  });
}

test('normalising is idempotent', () => {
  const segment = fc.constantFrom('a', 'b', '..', '.', '', '%2e%2e', '%2E.', 'x.md', '?q=..', '#..');
  const resource = fc
    .tuple(
      fc.constantFrom('', '/', 'https://Host.test/', 'HTTP://h.test', 's3://b/'),
      fc.array(segment, { maxLength: 8 }),
    )
    .map(([prefix, parts]) => prefix + parts.join('/'));
  fc.assert(
    fc.property(resource, (r) => {
      const once = normaliseResource(r);
      if (once !== undefined) expect(normaliseResource(once)).toBe(once);
    }),
    { numRuns: 1000 },
  );
});

test('an absolute path never keeps ., .. or empty segments', () => {
  const segment = fc.constantFrom('a', 'b', '..', '.', '', 'c.d');
  fc.assert(
    fc.property(fc.array(segment, { maxLength: 10 }), (parts) => {
      const out = normaliseResource(`/${parts.join('/')}`)!;
      expect(out.startsWith('/')).toBe(true);
      if (out !== '/')
        expect(
          out
            .slice(1)
            .split('/')
            .filter((s) => s === '' || s === '.' || s === '..'),
        ).toEqual([]);
    }),
    { numRuns: 1000 },
  );
});

// The http tools send what Node's WHATWG URL parser makes of the text, and for http(s) it reads
// "\" as "/" and drops tabs and newlines, so these reach /admin. The policy must see the same
// (docs/architecture.md, on %2e): either the resolved URL or a refusal.
test('http(s) URLs are resolved the way the WHATWG parser resolves them', () => {
  for (const url of ['https://h.test/public/..\\admin/users', 'https://h.test/public/.\t./admin/users']) {
    expect(new URL(url).pathname).toBe('/admin/users');
    const out = normaliseResource(url);
    expect(out === undefined || out === 'https://h.test/admin/users', JSON.stringify(url)).toBe(true);
  }
});

// A relative resource that climbs above its root keeps its leading "..", which no glob may
// contain: no rule (a prohibition included) can ever match it. Clamp at the root or refuse.
test('a relative resource cannot climb above its root', () => {
  const out = normaliseResource('staging/../../prod/orders');
  expect(out === undefined || out === 'prod/orders').toBe(true);
});
