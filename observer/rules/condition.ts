/**
 * The single-event condition language: a CLOSED operator set over envelope fields and `attrs.<dot.path>`.
 * Conditions compile to plain closures; there is no eval and no expression parser.
 *
 * ```yaml
 * and:
 *   - { field: kind, eq: execution.started }
 *   - { field: attrs.tool, in: [fs.read, fs.list] }
 *   - not: { field: attrs.resource, matches: '^/tmp/' }
 * ```
 * @module
 */
import type { AuditEvent } from '../../activities/audit/types.ts';
import { checkRegexSafety } from '../../policy/regex-safety.ts';

/** Longest value a `matches` pattern is run against (bounds the quadratic cases regex-safety lets through). */
export const MAX_MATCH_INPUT = 4096;
/** Deepest `and`/`or`/`not` nesting accepted. */
export const MAX_CONDITION_DEPTH = 16;
/** Longest `attrs.<path>` accepted, in segments after `attrs`. */
export const MAX_PATH_SEGMENTS = 8;

/** Comparison operators, one per leaf. */
export const ConditionOperator = {
  eq: 'eq',
  ne: 'ne',
  in: 'in',
  notIn: 'notIn',
  lt: 'lt',
  lte: 'lte',
  gt: 'gt',
  gte: 'gte',
  prefix: 'prefix',
  matches: 'matches',
  exists: 'exists',
} as const;
export type ConditionOperator = (typeof ConditionOperator)[keyof typeof ConditionOperator];
const OPERATORS: ReadonlySet<string> = new Set(Object.values(ConditionOperator));

/** Envelope fields a condition or `groupBy` may name (besides `attrs.<path>`). */
export const ENVELOPE_FIELDS: ReadonlySet<string> = new Set([
  'seq',
  'ts',
  'source',
  'agent',
  'run',
  'step',
  'kind',
]);

/** A compiled predicate over one audit event. */
export type Predicate = (event: AuditEvent) => boolean;

/** A compiled field accessor. */
export type Accessor = (event: AuditEvent) => unknown;

/** Problem reported while compiling (path is relative to the rule). */
export interface ConditionProblem {
  readonly path: string;
  readonly message: string;
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/** Returns a problem message for a field path, or `undefined` when it is accepted. */
export function checkFieldPath(field: unknown): string | undefined {
  if (typeof field !== 'string') return 'expected a field name (string)';
  if (ENVELOPE_FIELDS.has(field)) return undefined;
  if (!field.startsWith('attrs.'))
    return `unknown field "${field}" (expected one of ${[...ENVELOPE_FIELDS].join(', ')} or attrs.<path>)`;
  const segments = field.slice('attrs.'.length).split('.');
  if (segments.length > MAX_PATH_SEGMENTS) return `attribute path deeper than ${MAX_PATH_SEGMENTS} segments`;
  if (segments.some((s) => !SEGMENT.test(s)))
    return `invalid attribute path "${field}" (segments are letters, digits, _ and -)`;
  return undefined;
}

/**
 * Compiles a validated field path to an accessor. Walking `attrs.a.b` through an array maps over its
 * elements (`attrs.proposed.tool` on `[{tool:'x'},{tool:'y'}]` gives `['x','y']`); a numeric segment indexes.
 */
export function compileAccessor(field: string): Accessor {
  if (ENVELOPE_FIELDS.has(field)) {
    const key = field as keyof AuditEvent;
    return (event) => event[key];
  }
  const segments = field.slice('attrs.'.length).split('.');
  return (event) => walk(event.attrs, segments, 0);
}

function walk(value: unknown, segments: readonly string[], index: number): unknown {
  if (index === segments.length) return value;
  const segment = segments[index]!;
  if (Array.isArray(value)) {
    if (/^\d+$/.test(segment)) return walk(value[Number(segment)], segments, index + 1);
    const mapped: unknown[] = [];
    for (const item of value) {
      const next = walk(item, segments, index);
      if (Array.isArray(next)) mapped.push(...(next as unknown[]));
      else if (next !== undefined) mapped.push(next);
    }
    return mapped;
  }
  if (value === null || typeof value !== 'object') return undefined;
  if (!Object.prototype.hasOwnProperty.call(value, segment)) return undefined;
  return walk((value as Record<string, unknown>)[segment], segments, index + 1);
}

type Scalar = string | number | boolean | null;
const isScalar = (v: unknown): v is Scalar =>
  v === null ||
  typeof v === 'string' ||
  typeof v === 'boolean' ||
  (typeof v === 'number' && Number.isFinite(v));

/**
 * Compiles a raw condition (already YAML-parsed) to a predicate, pushing every problem found into `problems`.
 * Returns `undefined` when there were problems.
 */
export function compileCondition(
  raw: unknown,
  path: string,
  problems: ConditionProblem[],
): Predicate | undefined {
  const before = problems.length;
  const predicate = compileNode(raw, path, problems, 0);
  return problems.length === before ? predicate : undefined;
}

function compileNode(raw: unknown, path: string, problems: ConditionProblem[], depth: number): Predicate {
  const never: Predicate = () => false;
  if (depth > MAX_CONDITION_DEPTH) {
    problems.push({ path, message: `conditions nested deeper than ${MAX_CONDITION_DEPTH}` });
    return never;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push({ path, message: 'expected a condition object ({field, <operator>}, and, or, not)' });
    return never;
  }
  const node = raw as Record<string, unknown>;
  const keys = Object.keys(node);
  if (keys.length === 1 && (keys[0] === 'and' || keys[0] === 'or')) {
    const key = keys[0];
    const list = node[key];
    if (!Array.isArray(list) || list.length === 0) {
      problems.push({ path: `${path}.${key}`, message: 'expected a non-empty list of conditions' });
      return never;
    }
    const parts = list.map((item, i) => compileNode(item, `${path}.${key}[${i}]`, problems, depth + 1));
    return key === 'and' ? (e) => parts.every((p) => p(e)) : (e) => parts.some((p) => p(e));
  }
  if (keys.length === 1 && keys[0] === 'not') {
    const inner = compileNode(node.not, `${path}.not`, problems, depth + 1);
    return (e) => !inner(e);
  }
  if (!keys.includes('field')) {
    const unknown = keys.filter((k) => !['and', 'or', 'not'].includes(k));
    problems.push({
      path,
      message:
        unknown.length > 0
          ? `unknown operator "${unknown[0]}" (expected field + one of ${[...OPERATORS].join(', ')}, or and/or/not)`
          : 'and/or/not must be the only key of their condition',
    });
    return never;
  }
  const fieldProblem = checkFieldPath(node.field);
  if (fieldProblem) {
    problems.push({ path: `${path}.field`, message: fieldProblem });
    return never;
  }
  const ops = keys.filter((k) => k !== 'field');
  const unknownOp = ops.find((k) => !OPERATORS.has(k));
  if (unknownOp !== undefined) {
    problems.push({
      path: `${path}.${unknownOp}`,
      message: `unknown operator "${unknownOp}" (expected one of ${[...OPERATORS].join(', ')})`,
    });
    return never;
  }
  if (ops.length !== 1) {
    problems.push({ path, message: `expected exactly one operator beside field, got ${ops.length}` });
    return never;
  }
  const op = ops[0] as ConditionOperator;
  const operand = node[op];
  const at = `${path}.${op}`;
  const get = compileAccessor(node.field as string);
  switch (op) {
    case 'eq':
    case 'ne': {
      if (!isScalar(operand)) {
        problems.push({ path: at, message: 'expected a string, number, boolean or null' });
        return never;
      }
      return op === 'eq' ? (e) => get(e) === operand : (e) => get(e) !== operand;
    }
    case 'in':
    case 'notIn': {
      if (!Array.isArray(operand) || operand.length === 0 || !operand.every(isScalar)) {
        problems.push({
          path: at,
          message: 'expected a non-empty list of strings, numbers, booleans or null',
        });
        return never;
      }
      const set = new Set<unknown>(operand);
      return op === 'in' ? (e) => set.has(get(e)) : (e) => !set.has(get(e));
    }
    case 'lt':
    case 'lte':
    case 'gt':
    case 'gte': {
      if (typeof operand !== 'number' || !Number.isFinite(operand)) {
        problems.push({ path: at, message: 'expected a finite number' });
        return never;
      }
      const cmp =
        op === 'lt'
          ? (v: number) => v < operand
          : op === 'lte'
            ? (v: number) => v <= operand
            : op === 'gt'
              ? (v: number) => v > operand
              : (v: number) => v >= operand;
      return (e) => {
        const v = get(e);
        return typeof v === 'number' && Number.isFinite(v) && cmp(v);
      };
    }
    case 'prefix': {
      if (typeof operand !== 'string') {
        problems.push({ path: at, message: 'expected a string' });
        return never;
      }
      return (e) => {
        const v = get(e);
        return typeof v === 'string' && v.startsWith(operand);
      };
    }
    case 'matches': {
      if (typeof operand !== 'string') {
        problems.push({ path: at, message: 'expected a regular expression (string)' });
        return never;
      }
      const unsafe = checkRegexSafety(operand);
      if (unsafe !== undefined) {
        problems.push({ path: at, message: unsafe });
        return never;
      }
      const re = new RegExp(operand, 'u');
      return (e) => {
        const v = get(e);
        return typeof v === 'string' && v.length <= MAX_MATCH_INPUT && re.test(v);
      };
    }
    case 'exists': {
      if (typeof operand !== 'boolean') {
        problems.push({ path: at, message: 'expected true or false' });
        return never;
      }
      return (e) => {
        const v = get(e);
        return (v !== undefined && v !== null) === operand;
      };
    }
  }
}
