/**
 * What the decision point needs to know about a tool: its name, its argument schema and how to
 * derive the resource it touches. Tool implementations (I/O) live elsewhere; these specs are
 * pure so workflow code can use them.
 * @module
 */
import type { z } from 'zod';

/**
 * What a call does to the world, for the execution guard's retry rule: `none` (reads only; safe to
 * run again), `idempotent` (the tool deduplicates side effects by the call's idempotency key, so a
 * retry after a crash is safe), `unsafe` (a retry after an attempt whose outcome is unknown could
 * repeat the side effect, so the guard refuses it).
 */
export type ToolEffect = 'none' | 'idempotent' | 'unsafe';

/** A tool as the policy sees it. */
export interface ToolSpec<Args = unknown> {
  readonly name: string;
  readonly description: string;
  readonly args: z.ZodType<Args>;
  /** The resource the call touches (a path, a URL, `prod/orders`), derived from validated args. */
  readonly resource?: (args: Args) => string | undefined;
  /** @default 'unsafe' */
  readonly effect?: ToolEffect | ((args: Args) => ToolEffect);
}

/** A tool spec with its argument type erased, as stored in a catalog. */
export interface AnyToolSpec {
  readonly name: string;
  readonly description: string;
  readonly args: z.ZodType;
  readonly resource?: (args: never) => string | undefined;
  readonly effect?: ToolEffect | ((args: never) => ToolEffect);
}

/** Registered tools by name. */
export type ToolCatalog = ReadonlyMap<string, AnyToolSpec>;

/** Builds a catalog; throws on duplicate names. */
export function toolCatalog(specs: readonly AnyToolSpec[]): ToolCatalog {
  const map = new Map<string, AnyToolSpec>();
  for (const spec of specs) {
    if (map.has(spec.name)) throw new Error(`duplicate tool name "${spec.name}"`);
    map.set(spec.name, spec);
  }
  return map;
}
