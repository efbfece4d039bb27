/**
 * Globs for tool names (segments split on `.`) and resources (segments split on `/`).
 *
 * `*` matches within one segment, `**` (a whole segment) matches any number of segments,
 * `?` one character within a segment, `{a,b}` alternatives. Everything else is literal.
 * Patterns compile once to an anchored RegExp.
 * @module
 */
import { hasControlCharacter } from './resource.ts';

export type GlobSeparator = '/' | '.';

/** A compiled glob. */
export interface Glob {
  readonly source: string;
  test(value: string): boolean;
}

/** Returns a problem description, or `undefined` when the pattern is a valid glob. */
export function checkGlob(pattern: string, separator: GlobSeparator): string | undefined {
  try {
    compileGlob(pattern, separator);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

const URL_GLOB_PREFIX = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i;

const REGEX_SPECIAL = /[\\^$.*+?()[\]{}|/]/g;
const escapeRegex = (text: string): string => text.replace(REGEX_SPECIAL, '\\$&');

/** True when the pattern has no glob syntax, so a plain string comparison decides. */
export function isLiteralGlob(pattern: string): boolean {
  return !/[*?{}]/.test(pattern);
}

/** Compiles a glob; throws an Error describing the first problem. */
export function compileGlob(pattern: string, separator: GlobSeparator): Glob {
  if (pattern.length === 0) throw new Error('expected a non-empty glob, got ""');
  if (hasControlCharacter(pattern)) throw new Error('expected a glob without control characters');
  // `https://host/**`: scheme and authority are one leading segment (resources lowercase them)
  const url = separator === '/' ? URL_GLOB_PREFIX.exec(pattern) : null;
  const body = url ? pattern.slice(url[0].length) : pattern;
  if (url && body !== '' && !body.startsWith('/'))
    throw new Error(`expected "/" after the host in "${pattern}"`);
  if (separator === '/' && body.length > 1 && body.endsWith('/')) {
    throw new Error(`trailing "/" in "${pattern}" never matches (resources are normalised without it)`);
  }
  const segments = (url ? `${url[0].toLowerCase()}${body}` : pattern).split(separator);
  if (url) segments.splice(0, 3, segments.slice(0, 3).join(separator));
  const sep = escapeRegex(separator);
  const notSep = `[^${sep}]`;
  let re = '';
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const previousWasLeadingGlobstar = i === 1 && segments[0] === '**';
    if (segment === '**') {
      if (segments[i - 1] === '**') throw new Error(`"**${separator}**" is redundant in "${pattern}"`);
      if (segments.length === 1) re += '.*';
      else if (i === 0) re += `(?:.*${sep})?`;
      else re += `(?:${sep}.*)?`;
      continue;
    }
    if (segment.includes('**')) {
      throw new Error(`"**" must be a whole segment in "${pattern}" (use "*" within a segment)`);
    }
    if (separator === '/' && (segment === '..' || segment === '.')) {
      throw new Error(`"${segment}" segments are not allowed in resource globs ("${pattern}")`);
    }
    if (segment === '' && i > 0 && i < segments.length - 1) {
      throw new Error(`empty segment in "${pattern}"`);
    }
    if (i > 0 && !previousWasLeadingGlobstar) re += sep;
    re += segmentToRegex(segment, pattern, notSep);
  }
  const regex = new RegExp(`^${re}$`);
  if (isLiteralGlob(pattern))
    return Object.freeze({ source: pattern, test: (value: string) => value === pattern });
  return Object.freeze({ source: pattern, test: (value: string) => regex.test(value) });
}

function segmentToRegex(segment: string, pattern: string, notSep: string): string {
  let out = '';
  let inBraces = false;
  for (const ch of segment) {
    switch (ch) {
      case '*':
        out += `${notSep}*`;
        break;
      case '?':
        out += notSep;
        break;
      case '{':
        if (inBraces) throw new Error(`nested "{" in "${pattern}"`);
        inBraces = true;
        out += '(?:';
        break;
      case '}':
        if (!inBraces) throw new Error(`unbalanced "}" in "${pattern}"`);
        inBraces = false;
        out += ')';
        break;
      case ',':
        out += inBraces ? '|' : ',';
        break;
      default:
        out += escapeRegex(ch);
    }
  }
  if (inBraces) throw new Error(`unbalanced "{" in "${pattern}"`);
  return out;
}

// bounded: run contexts name few frozen patterns, but they arrive as untrusted data
const TOOL_GLOB_CACHE_LIMIT = 256;
const toolGlobCache = new Map<string, Glob>();

/** `compileGlob(pattern, '.')`, memoised: for tool patterns that arrive per call (frozen tools). */
export function toolGlob(pattern: string): Glob {
  const hit = toolGlobCache.get(pattern);
  if (hit) return hit;
  const glob = compileGlob(pattern, '.');
  if (toolGlobCache.size >= TOOL_GLOB_CACHE_LIMIT) toolGlobCache.clear();
  toolGlobCache.set(pattern, glob);
  return glob;
}
