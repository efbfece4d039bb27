/**
 * Token budgets for model calls (per run, per agent per UTC day): reserve, then reconcile or
 * release. SQLite for one host, PostgreSQL for several; the same semantics (pinned by `cases.ts`).
 * @module
 */
import { z } from 'zod';
import { BudgetError, BudgetErrorCode } from './errors.ts';
import { BUDGET_SCHEMA_PATTERN, openPostgresBudget } from './postgres.ts';
import { openSqliteBudget } from './sqlite.ts';
import type { TokenBudget } from './types.ts';

export type * from './types.ts';
export { DEFAULT_RESERVATION_TTL_MS } from './types.ts';
export { BudgetError, BudgetErrorCode } from './errors.ts';
export { utcDayKey } from './core.ts';
export { BUDGET_SCHEMA_PATTERN, DEFAULT_BUDGET_SCHEMA, openPostgresBudget } from './postgres.ts';
export type { PostgresBudgetOptions } from './postgres.ts';
export { openSqliteBudget, SQLITE_BUDGET_BUSY_TIMEOUT_MS } from './sqlite.ts';
export type { SqliteBudgetOptions } from './sqlite.ts';

const ttl = z.int().positive().optional();

/** The token budget store's configuration. */
export const TokenBudgetConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('sqlite'),
    /** A file path (parent directories are created) or `:memory:`. */
    file: z.string().min(1),
    reservationTtlMs: ttl,
  }),
  z.strictObject({
    kind: z.literal('postgres'),
    connectionString: z.string().min(1),
    schema: z.string().regex(BUDGET_SCHEMA_PATTERN).optional(),
    reservationTtlMs: ttl,
  }),
]);
/** A validated token budget configuration. */
export type TokenBudgetConfig = z.infer<typeof TokenBudgetConfigSchema>;

/** Validates a token budget configuration; throws `BUDGET_CONFIG_INVALID`. */
export function parseTokenBudgetConfig(input: unknown): TokenBudgetConfig {
  const parsed = TokenBudgetConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new BudgetError(BudgetErrorCode.configInvalid, `invalid token budget config: ${problems}`);
  }
  return parsed.data;
}

/** Injected behaviour of {@link openTokenBudget} (tests). */
export interface OpenTokenBudgetOptions {
  readonly now?: () => number;
  readonly newId?: () => string;
}

/** Validates `config` and opens the store it names (creating and migrating its tables). */
export async function openTokenBudget(
  config: TokenBudgetConfig,
  options: OpenTokenBudgetOptions = {},
): Promise<TokenBudget> {
  const valid = parseTokenBudgetConfig(config);
  const common = { reservationTtlMs: valid.reservationTtlMs, now: options.now, newId: options.newId };
  return valid.kind === 'sqlite'
    ? openSqliteBudget({ file: valid.file, ...common })
    : openPostgresBudget({ connectionString: valid.connectionString, schema: valid.schema, ...common });
}
