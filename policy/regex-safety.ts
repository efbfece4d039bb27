/**
 * Load-time check for `matches` patterns. Rejects invalid patterns and the shapes that cause
 * catastrophic backtracking in a backtracking engine: a repeated group that itself contains an
 * unbounded repeat (`(a+)+`), a repeated alternation (`(a|ab)*`), and two unbounded repeats of
 * possibly overlapping atoms with nothing mandatory between them (`\d+\d+`, `.*.*`). Also
 * rejects backreferences and lookbehind, which policy patterns never need.
 *
 * Also rejects a group repeated more than once that holds an unbounded repeat (`(.*a){12}`),
 * and more than two unbounded wildcards (`a.*b.*c.*d`: polynomial of degree four). What still
 * backtracks quadratically (`\s+$`, retried at each start position) is bounded at decision time:
 * arguments longer than `MAX_MATCH_INPUT` are never run through a pattern (see `compile.ts`).
 *
 * Conservative by design: a rejected pattern can always be rewritten (`[ab]+` for `(a|b)+`).
 * @module
 */

/** Longest `matches` pattern a document may contain. */
export const MAX_PATTERN_LENGTH = 512;

interface Quantifier {
  readonly min: number;
  readonly max: number;
  readonly unbounded: boolean;
}
interface Item {
  readonly kind: 'atom' | 'group' | 'anchor';
  /** lookahead groups consume nothing, so they never sit "between" two repeats */
  readonly zeroWidth?: boolean;
  /** for atoms: the source text, used to judge overlap */
  readonly text: string;
  readonly alternatives: Item[][];
  quantifier: Quantifier | undefined;
}

class PatternProblem extends Error {}

// repeats with a large upper bound backtrack like unbounded ones
const LARGE_BOUND = 32;
// alternation repeated more often than this multiplies paths past any useful bound
const ALTERNATION_REPEAT_LIMIT = 4;
// each unbounded wildcard separated by literals adds one degree to the worst-case polynomial
const MAX_WILDCARD_REPEATS = 2;

/** Returns a problem description, or `undefined` when the pattern is accepted. */
export function checkRegexSafety(pattern: string): string | undefined {
  if (pattern.length > MAX_PATTERN_LENGTH) {
    return `expected a pattern of at most ${MAX_PATTERN_LENGTH} characters, got ${pattern.length}`;
  }
  try {
    new RegExp(pattern, 'u');
  } catch (error) {
    return `invalid regular expression: ${(error as Error).message.replace(/^Invalid regular expression: /, '')}`;
  }
  try {
    const parser = new Parser(pattern);
    const alternatives = parser.parseAlternatives();
    for (const sequence of alternatives) checkSequence(sequence);
    if (countWildcardRepeats(alternatives) > MAX_WILDCARD_REPEATS) {
      throw new PatternProblem(
        `pattern prone to polynomial backtracking: more than ${MAX_WILDCARD_REPEATS} unbounded wildcard repeats (.*, [^…]*, \\S+)`,
      );
    }
    return undefined;
  } catch (error) {
    if (error instanceof PatternProblem) return error.message;
    throw error;
  }
}

function containsUnboundedRepeat(items: readonly Item[]): boolean {
  return items.some(
    (item) =>
      item.quantifier?.unbounded === true ||
      (item.kind === 'group' && item.alternatives.some((alt) => containsUnboundedRepeat(alt))),
  );
}

const WIDE_ATOM = /^(?:\.|\[\^|\\[SWD])/;

function countWildcardRepeats(alternatives: readonly (readonly Item[])[]): number {
  let count = 0;
  for (const sequence of alternatives) {
    for (const item of sequence) {
      if (item.kind === 'group') count += countWildcardRepeats(item.alternatives);
      else if (item.quantifier?.unbounded && WIDE_ATOM.test(item.text)) count++;
    }
  }
  return count;
}

/** An unbounded repeat, or a group holding one: either can give back text to its neighbour. */
function isUnboundedLike(item: Item): boolean {
  return (
    item.quantifier?.unbounded === true ||
    (item.kind === 'group' && item.alternatives.some((alt) => containsUnboundedRepeat(alt)))
  );
}

function checkSequence(items: readonly Item[]): void {
  let lastUnbounded: Item | undefined;
  for (const item of items) {
    if (item.kind === 'group') {
      for (const alt of item.alternatives) checkSequence(alt);
      if (item.zeroWidth) continue;
      const repeats = item.quantifier !== undefined && item.quantifier.max > 1;
      if (repeats && item.alternatives.length > 1 && item.quantifier!.max > ALTERNATION_REPEAT_LIMIT) {
        throw new PatternProblem(
          'pattern prone to catastrophic backtracking: alternation inside a repeated group (use a character class)',
        );
      }
      if (repeats) {
        if (item.alternatives.some((alt) => containsUnboundedRepeat(alt))) {
          throw new PatternProblem(
            'pattern prone to catastrophic backtracking: a repeated group contains another unbounded repeat',
          );
        }
      }
    }
    if (isUnboundedLike(item)) {
      if (lastUnbounded && mayOverlap(lastUnbounded, item)) {
        throw new PatternProblem(
          `pattern prone to catastrophic backtracking: adjacent unbounded repeats ${describe(lastUnbounded)} and ${describe(item)} can match the same text`,
        );
      }
      lastUnbounded = item;
    } else if (item.kind !== 'anchor' && (item.quantifier === undefined || item.quantifier.min > 0)) {
      lastUnbounded = undefined;
    }
  }
}

function describe(item: Item): string {
  return item.kind === 'group' ? '(…)' : `${item.text}`;
}

function mayOverlap(a: Item, b: Item): boolean {
  if (a.kind === 'group' || b.kind === 'group') return true;
  const literal = (t: string): boolean => t.length === 1 || /^\\[^dDwWsSbBpPux0-9cklnrtfv]$/.test(t);
  if (literal(a.text) && literal(b.text)) return a.text === b.text;
  return true;
}

class Parser {
  private pos = 0;
  private readonly source: string;
  constructor(source: string) {
    this.source = source;
  }

  parseAlternatives(): Item[][] {
    const alternatives: Item[][] = [[]];
    while (this.pos < this.source.length) {
      const ch = this.source[this.pos]!;
      if (ch === ')') break;
      if (ch === '|') {
        this.pos++;
        alternatives.push([]);
        continue;
      }
      const item = this.parseAtom();
      item.quantifier = this.parseQuantifier();
      alternatives[alternatives.length - 1]!.push(item);
    }
    return alternatives;
  }

  private parseAtom(): Item {
    const start = this.pos;
    const ch = this.source[this.pos]!;
    if (ch === '(') {
      this.pos++;
      if (this.source.startsWith('?<=', this.pos) || this.source.startsWith('?<!', this.pos)) {
        throw new PatternProblem('lookbehind is not supported in policy patterns');
      }
      const zeroWidth = this.source.startsWith('?=', this.pos) || this.source.startsWith('?!', this.pos);
      if (zeroWidth || this.source.startsWith('?:', this.pos)) {
        this.pos += 2;
      } else if (this.source.startsWith('?<', this.pos)) {
        this.pos = this.source.indexOf('>', this.pos) + 1;
      }
      const alternatives = this.parseAlternatives();
      this.pos++; // ')'
      return {
        kind: 'group',
        text: this.source.slice(start, this.pos),
        alternatives,
        quantifier: undefined,
        zeroWidth,
      };
    }
    if (ch === '[') {
      this.pos++;
      while (this.pos < this.source.length && this.source[this.pos] !== ']') {
        if (this.source[this.pos] === '\\') this.pos++;
        this.pos++;
      }
      this.pos++;
      return {
        kind: 'atom',
        text: this.source.slice(start, this.pos),
        alternatives: [],
        quantifier: undefined,
      };
    }
    if (ch === '\\') {
      const next = this.source[this.pos + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k')
        throw new PatternProblem('backreferences are not supported in policy patterns');
      this.pos += 2;
      if ((next === 'p' || next === 'P') && this.source[this.pos] === '{')
        this.pos = this.source.indexOf('}', this.pos) + 1;
      else if (next === 'u' && this.source[this.pos] === '{')
        this.pos = this.source.indexOf('}', this.pos) + 1;
      else if (next === 'u') this.pos += 4;
      else if (next === 'x') this.pos += 2;
      else if (next === 'c') this.pos += 1;
      return {
        kind: next === 'b' || next === 'B' ? 'anchor' : 'atom',
        text: this.source.slice(start, this.pos),
        alternatives: [],
        quantifier: undefined,
      };
    }
    this.pos += ch.codePointAt(0)! > 0xffff ? 2 : 1;
    return {
      kind: ch === '^' || ch === '$' ? 'anchor' : 'atom',
      text: this.source.slice(start, this.pos),
      alternatives: [],
      quantifier: undefined,
    };
  }

  private parseQuantifier(): Quantifier | undefined {
    const ch = this.source[this.pos];
    let quantifier: Quantifier | undefined;
    if (ch === '*') quantifier = { min: 0, max: Infinity, unbounded: true };
    else if (ch === '+') quantifier = { min: 1, max: Infinity, unbounded: true };
    else if (ch === '?') quantifier = { min: 0, max: 1, unbounded: false };
    if (quantifier) {
      this.pos++;
    } else if (ch === '{') {
      const match = /^\{(\d+)(,(\d*))?\}/.exec(this.source.slice(this.pos));
      if (!match) return undefined;
      this.pos += match[0].length;
      const min = Number(match[1]);
      const max = match[2] === undefined ? min : match[3] === '' ? Infinity : Number(match[3]);
      quantifier = { min, max, unbounded: max > LARGE_BOUND };
    } else {
      return undefined;
    }
    if (this.source[this.pos] === '?') this.pos++;
    return quantifier;
  }
}
