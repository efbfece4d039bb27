/**
 * The search language both stores accept, parsed here so that a user's query never reaches a
 * database as syntax: words (all must match), `"quoted phrases"`, `-word` / `-"phrase"` to exclude,
 * and `OR` (upper case) between alternatives. Everything else (`*`, `(`, `NEAR(`, `'`, `:`, `;`) is
 * a word separator. The parsed query is rendered to FTS5 syntax (SQLite) or to a sanitised
 * `websearch_to_tsquery` string (PostgreSQL) made only of quoted word tokens, so neither can fail
 * to parse. An alternative made only of exclusions is dropped (a search must name something).
 * @module
 */
import { TraceStoreError, TraceErrorCode } from './errors.ts';
import { usableText } from './record.ts';

/** Longest search text accepted, in characters. */
export const MAX_QUERY_CHARS = 1_000;
/** Most words and phrases in one search. */
export const MAX_QUERY_TERMS = 32;
/** Results returned unless `limit` says otherwise. */
export const DEFAULT_SEARCH_LIMIT = 50;
/** Largest `limit` honoured (larger ones are lowered to it). */
export const MAX_SEARCH_LIMIT = 500;
/** Words of context in a search result's snippet. */
export const SNIPPET_WORDS = 16;
/** Marks around matched words in a search result's snippet. */
export const HIGHLIGHT = { start: '«', end: '»' } as const;

/** One phrase: its word tokens in order (a single word is a one-token phrase). */
export type Phrase = readonly string[];

/** One alternative: every `include` phrase and none of the `exclude` phrases. */
export interface QueryGroup {
  readonly include: readonly Phrase[];
  readonly exclude: readonly Phrase[];
}

const TOKEN = /[\p{L}\p{N}]+/gu;

/** The word tokens of `text` (NFC), as both stores' tokenizers split it. */
export function tokens(text: string): string[] {
  return text.normalize('NFC').match(TOKEN) ?? [];
}

/**
 * Case folded, and diacritics removed from Latin letters, the way SQLite's
 * `unicode61 remove_diacritics 2` folds them (it keeps them on Greek or Cyrillic letters).
 */
export function foldToken(token: string): string {
  return token
    .toLowerCase()
    .normalize('NFD')
    .replace(/(\p{Script=Latin})\p{M}+/gu, '$1')
    .normalize('NFC');
}

/** The folded tokens of `text` joined by spaces: what the PostgreSQL store indexes. */
export function foldedText(text: string): string {
  return tokens(text).map(foldToken).join(' ');
}

function tooLong(what: string): TraceStoreError {
  return new TraceStoreError(TraceErrorCode.invalidQuery, `search text has too many ${what}`);
}

/** Parses a user's search text; the alternatives that can match something, OR-ed. */
export function parseSearchText(text: string): QueryGroup[] {
  if (text.length > MAX_QUERY_CHARS) throw tooLong(`characters (at most ${MAX_QUERY_CHARS})`);
  const groups: { include: Phrase[]; exclude: Phrase[] }[] = [{ include: [], exclude: [] }];
  let terms = 0;
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (/\s/u.test(ch)) {
      i++;
      continue;
    }
    let negated = false;
    if (ch === '-') {
      negated = true;
      i++;
    }
    let chunk: string;
    if (text[i] === '"') {
      const close = text.indexOf('"', i + 1);
      const end = close < 0 ? text.length : close;
      chunk = text.slice(i + 1, end);
      i = end + 1;
    } else {
      let end = i;
      while (end < text.length && text[end] !== '"' && !/\s/u.test(text[end]!)) end++;
      chunk = text.slice(i, end);
      i = end;
      if (!negated && chunk === 'OR') {
        groups.push({ include: [], exclude: [] });
        continue;
      }
    }
    const phrase = tokens(chunk);
    if (phrase.length === 0) continue;
    if (++terms > MAX_QUERY_TERMS) throw tooLong(`words (at most ${MAX_QUERY_TERMS})`);
    const group = groups[groups.length - 1]!;
    (negated ? group.exclude : group.include).push(phrase);
  }
  return groups.filter((g) => g.include.length > 0);
}

const ftsPhrase = (phrase: Phrase): string => `"${phrase.join(' ').replaceAll('"', '""')}"`;

/** The parsed query as an FTS5 `MATCH` expression (every token quoted). */
export function toFts5(groups: readonly QueryGroup[]): string {
  return groups
    .map((g) => {
      const include = g.include.map(ftsPhrase).join(' AND ');
      return g.exclude.length === 0
        ? `(${include})`
        : `((${include}) NOT (${g.exclude.map(ftsPhrase).join(' OR ')}))`;
    })
    .join(' OR ');
}

const webPhrase = (phrase: Phrase): string => `"${phrase.map(foldToken).join(' ')}"`;

/** The parsed query as a `websearch_to_tsquery` input: folded tokens, quoted; `-` and `or` only. */
export function toWebsearch(groups: readonly QueryGroup[]): string {
  return groups
    .map((g) => [...g.include.map(webPhrase), ...g.exclude.map((p) => `-${webPhrase(p)}`)].join(' '))
    .join(' or ');
}

/** What `search` takes. All filters combine (AND). */
export interface TraceQuery {
  /** Search text (see the module comment); absent: no text condition, and no snippet. */
  readonly text?: string | undefined;
  readonly agentId?: string | undefined;
  readonly runId?: string | undefined;
  /** Only traces with `ts >= since` (ms since the epoch). */
  readonly since?: number | undefined;
  /** Most results (default {@link DEFAULT_SEARCH_LIMIT}, at most {@link MAX_SEARCH_LIMIT}). */
  readonly limit?: number | undefined;
}

/** A checked query: `null` when it cannot match anything (so no statement is run). */
export interface CheckedQuery {
  readonly groups: readonly QueryGroup[] | null;
  readonly agentId: string | undefined;
  readonly runId: string | undefined;
  readonly since: number | undefined;
  readonly limit: number;
}

/** Validates a query; throws `TRACE_QUERY_INVALID` for a malformed one, returns null for a hopeless one. */
export function checkQuery(query: TraceQuery): CheckedQuery | null {
  const { text, agentId, runId, since, limit } = query;
  if (text !== undefined && typeof text !== 'string') throw invalid('text must be a string');
  for (const [name, key] of [
    ['agentId', agentId],
    ['runId', runId],
  ] as const) {
    if (key !== undefined && typeof key !== 'string') throw invalid(`${name} must be a string`);
  }
  if (since !== undefined && (typeof since !== 'number' || !Number.isFinite(since))) {
    throw invalid('since must be a finite number of milliseconds');
  }
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw invalid('limit must be a positive integer');
  }
  // a key no store can hold matches nothing
  if ((agentId !== undefined && !usableText(agentId)) || (runId !== undefined && !usableText(runId)))
    return null;
  const groups = text === undefined ? null : parseSearchText(text);
  if (groups !== null && groups.length === 0) return null;
  return {
    groups,
    agentId,
    runId,
    // traces have integer timestamps; a bound outside bigint range would fail in PostgreSQL
    since:
      since === undefined
        ? undefined
        : Math.min(Math.max(Math.ceil(since), Number.MIN_SAFE_INTEGER), Number.MAX_SAFE_INTEGER),
    limit: Math.min(limit ?? DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT),
  };
}

function invalid(message: string): TraceStoreError {
  return new TraceStoreError(TraceErrorCode.invalidQuery, `invalid trace search: ${message}`);
}
