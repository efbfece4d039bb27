/**
 * The tool runtime's public API: binding specs to implementations, the registry, and the built-in
 * `fs.*` and `http.request` tools. Worker code only (the implementations do I/O); workflow code
 * imports specs from `tools/` or other pure spec modules instead.
 * @module
 */
import type { AnyToolImplementation } from './define.ts';
import { fsTools } from './fs.ts';
import type { FsToolsConfig } from './fs.ts';
import { httpTool } from './http.ts';
import type { HttpRequestToolConfig } from './http.ts';

export {
  createToolRegistry,
  defineTool,
  defineToolSpec,
  implementTool,
  ToolError,
  ToolErrorCode,
} from './define.ts';
export type {
  AnyToolImplementation,
  ToolContext,
  ToolDefinition,
  ToolImplementation,
  ToolRegistry,
  ToolResult,
  ToolRun,
  ToolRunContext,
  ToolSpecDefinition,
} from './define.ts';
export { FsErrorCode, fsTools } from './fs.ts';
export type {
  FsListEntry,
  FsListOutput,
  FsReadOutput,
  FsToolsConfig,
  FsWriteOutput,
  ResolvedFsToolsConfig,
} from './fs.ts';
export { HttpErrorCode, HttpToolError, httpTool } from './http.ts';
export type {
  HttpLookup,
  HttpLookupAddress,
  HttpRequestArgs,
  HttpRequestOutput,
  HttpRequestToolConfig,
} from './http.ts';

/** Configuration of {@link builtinTools}. */
export interface BuiltinToolsConfig {
  readonly fs: FsToolsConfig;
  /** Without it `http.request` is still registered, with an empty allow-list: every call is refused. */
  readonly http?: HttpRequestToolConfig;
}

/**
 * The built-in tools, in `BUILTIN_TOOL_SPECS` order: `fs.read`, `fs.list`, `fs.write`, `http.request`.
 * Every built-in spec always has an implementation, so the registry matches the catalog the workflow
 * decides with. Throws `TOOL_INVALID_CONFIG` / `HTTP_CONFIG_INVALID` on a malformed configuration.
 */
export function builtinTools(config: BuiltinToolsConfig): readonly AnyToolImplementation[] {
  return Object.freeze([...fsTools(config.fs), httpTool(config.http ?? { allowedHosts: [] })]);
}
