/**
 * What the decision point needs to know about a tool: its name, its argument schema and how to
 * derive the resource it touches. Tool implementations (I/O) live elsewhere; these specs are
 * pure so workflow code can use them.
 * @module
 */
import type { z } from 'zod';

/** A tool as the policy sees it. */
export interface ToolSpec<Args = unknown> {
  readonly name: string;
  readonly description: string;
  readonly args: z.ZodType<Args>;
  /** The resource the call touches (a path, a URL, `prod/orders`), derived from validated args. */
  readonly resource?: (args: Args) => string | undefined;
}

/** A tool spec with its argument type erased, as stored in a catalog. */
export interface AnyToolSpec {
  readonly name: string;
  readonly description: string;
  readonly args: z.ZodType;
  readonly resource?: (args: never) => string | undefined;
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
