/**
 * The tool specs workflow code decides on: the built-ins plus any registered by the bundle's entry
 * module (`worker/bundle.ts` generates one that imports custom spec modules). Registration happens
 * at module load, so it is the same on every replay of the same bundle.
 * @module
 */
import { toolCatalog } from '../policy/index.ts';
import type { AnyToolSpec, ToolCatalog } from '../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../tools/builtin-specs.ts';

const extra: AnyToolSpec[] = [];
let catalog: ToolCatalog | undefined;

/** Adds tool specs to the workflow catalog; call at module load only (throws on a duplicate name). */
export function registerToolSpecs(specs: readonly AnyToolSpec[]): void {
  extra.push(...specs);
  catalog = undefined;
  workflowToolCatalog();
}

/** Built-in and registered specs by name. */
export function workflowToolCatalog(): ToolCatalog {
  catalog ??= toolCatalog([...BUILTIN_TOOL_SPECS, ...extra]);
  return catalog;
}
