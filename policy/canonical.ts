/**
 * Canonical JSON (RFC 8785 style: sorted keys, no whitespace, ECMAScript number form) and
 * sha256 digests over it. Pure JS so workflow code can compute the same digests.
 * @module
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

/** Serialises a JSON value canonically; throws on values JSON cannot represent. */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      if (!value.isWellFormed()) throw new TypeError('canonical JSON cannot represent a lone surrogate');
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot represent ${value}`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        const items: string[] = [];
        for (let i = 0; i < value.length; i++) {
          if (!(i in value)) throw new TypeError('canonical JSON cannot represent a sparse array');
          items.push(canonicalJson(value[i]));
        }
        return `[${items.join(',')}]`;
      }
      const proto = Object.getPrototypeOf(value) as unknown;
      // Maps, Dates and class instances would all collapse to "{}"; refuse them
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError(
          `canonical JSON cannot represent a ${(value as object).constructor?.name ?? 'non-plain object'}`,
        );
      }
      const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== undefined);
      keys.sort(compareUtf16);
      for (const key of keys) {
        if (!key.isWellFormed()) throw new TypeError('canonical JSON cannot represent a lone surrogate');
      }
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot represent a ${typeof value}`);
  }
}

// RFC 8785 orders keys by UTF-16 code units, which is what < does on JS strings.
function compareUtf16(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** sha256 (hex) of the canonical JSON of `value`. */
export function digestOf(value: unknown): string {
  return bytesToHex(sha256(utf8ToBytes(canonicalJson(value))));
}
