/**
 * Binds pure tool specs (`tools/`) to implementations that do I/O, and a registry that runs them.
 * The registry re-validates every call's arguments with the spec's zod schema before anything
 * runs: the execution guard never trusts that the workflow's gate already did.
 *
 * This module must stay pure (zod and `policy/` only, no Node built-ins): spec modules import
 * {@link defineToolSpec} from it, and the workflow bundle imports spec modules.
 * @module
 */
import type { z } from 'zod';
import { AgentRuntimeError, toolCatalog } from '../../policy/index.ts';
import type { AnyToolSpec, ToolCatalog, ToolEffect, ToolSpec } from '../../policy/index.ts';

/** Stable codes of the errors the tool runtime throws (refusals are results, not errors). */
export const ToolErrorCode = {
  unknown: 'TOOL_UNKNOWN',
  invalidArguments: 'TOOL_INVALID_ARGUMENTS',
  invalidContext: 'TOOL_INVALID_CONTEXT',
  duplicate: 'TOOL_DUPLICATE',
  invalidConfig: 'TOOL_INVALID_CONFIG',
} as const;
export type ToolErrorCode = (typeof ToolErrorCode)[keyof typeof ToolErrorCode];

/** A tool call that must not run: unknown tool, invalid arguments, bad context or configuration. */
export class ToolError extends AgentRuntimeError {}

/**
 * What a tool returns; JSON-serialisable. A refusal (`ok: false`) is an answer for the model with
 * a stable `code`, not a failure to retry.
 */
export type ToolResult =
  | { readonly ok: true; readonly output: unknown }
  | {
      readonly ok: false;
      readonly code: string;
      /** Safe to show to the model: names no internal address, DNS answer or credential. */
      readonly message: string;
      /** Diagnostic detail for the audit log, never for the model. */
      readonly detail?: string;
    };

/** Per-call context given by the caller (the tools worker). */
export interface ToolContext {
  /** Stable across retries of the same action (`workflowId/step`); side effects are deduplicated by it. */
  readonly idempotencyKey: string;
  /** Cancellation of the call (activity cancellation). */
  readonly signal?: AbortSignal;
}

/** What an implementation's `run` receives: the call's context plus the tool's configuration. */
export interface ToolRunContext<Config> extends ToolContext {
  readonly config: Config;
}

/** The I/O side of a tool: gets arguments already validated by the spec's schema. */
export type ToolRun<Args, Config> = (args: Args, ctx: ToolRunContext<Config>) => Promise<ToolResult>;

/** A tool spec with its argument type erased, bound to an implementation, as a registry stores it. */
export interface AnyToolImplementation {
  readonly spec: AnyToolSpec;
  readonly config: unknown;
  /**
   * Validates `rawArgs` with the spec's schema (throws {@link ToolError} `TOOL_INVALID_ARGUMENTS`
   * without running anything when invalid), then runs the implementation.
   */
  execute(rawArgs: unknown, ctx: ToolContext): Promise<ToolResult>;
}

/** A tool spec bound to its implementation and configuration. */
export interface ToolImplementation<Args, Config> extends AnyToolImplementation {
  readonly spec: ToolSpec<Args>;
  readonly config: Config;
  /** The implementation itself; prefer {@link AnyToolImplementation.execute}, which validates. */
  readonly run: ToolRun<Args, Config>;
}

/** Binds a pure spec to an implementation without configuration. */
export function implementTool<Args>(
  spec: ToolSpec<Args>,
  run: ToolRun<Args, undefined>,
): ToolImplementation<Args, undefined>;
/** Binds a pure spec to an implementation; `config` reaches `run` as `ctx.config`. */
export function implementTool<Args, Config>(
  spec: ToolSpec<Args>,
  run: ToolRun<Args, Config>,
  config: Config,
): ToolImplementation<Args, Config>;
export function implementTool<Args, Config>(
  spec: ToolSpec<Args>,
  run: ToolRun<Args, Config>,
  config?: Config,
): ToolImplementation<Args, Config | undefined> {
  const execute = async (rawArgs: unknown, ctx: ToolContext): Promise<ToolResult> => {
    checkContext(spec.name, ctx);
    const parsed = spec.args.safeParse(rawArgs);
    if (!parsed.success) {
      const problems = parsed.error.issues.map(
        (issue) =>
          `${issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.')}: ${issue.message}`,
      );
      throw new ToolError(
        ToolErrorCode.invalidArguments,
        `invalid arguments for "${spec.name}": ${problems.join('; ')}`,
      );
    }
    ctx.signal?.throwIfAborted();
    const runCtx: ToolRunContext<Config | undefined> =
      ctx.signal === undefined
        ? { idempotencyKey: ctx.idempotencyKey, config }
        : { idempotencyKey: ctx.idempotencyKey, signal: ctx.signal, config };
    return run(parsed.data, runCtx as ToolRunContext<Config>);
  };
  return Object.freeze({ spec, config, run: run as ToolRun<Args, Config | undefined>, execute });
}

function checkContext(name: string, ctx: ToolContext): void {
  if (
    typeof ctx !== 'object' ||
    ctx === null ||
    typeof ctx.idempotencyKey !== 'string' ||
    ctx.idempotencyKey === ''
  ) {
    throw new ToolError(ToolErrorCode.invalidContext, `"${name}" needs a non-empty idempotency key`);
  }
}

/** Tool implementations by name. */
export interface ToolRegistry {
  /** The implementation registered under `name`, if any. */
  get(name: string): AnyToolImplementation | undefined;
  /** The registered specs, as the policy's decision point takes them. */
  specs(): ToolCatalog;
  /**
   * Runs a tool: unknown `name` → throws {@link ToolError} `TOOL_UNKNOWN`; arguments that fail
   * the spec's schema → throws `TOOL_INVALID_ARGUMENTS`. In both cases nothing runs.
   */
  execute(name: string, rawArgs: unknown, ctx: ToolContext): Promise<ToolResult>;
}

/** Builds a registry; throws {@link ToolError} `TOOL_DUPLICATE` when two implementations share a name. */
export function createToolRegistry(implementations: readonly AnyToolImplementation[]): ToolRegistry {
  const byName = new Map<string, AnyToolImplementation>();
  for (const implementation of implementations) {
    const name = implementation.spec.name;
    if (byName.has(name)) throw new ToolError(ToolErrorCode.duplicate, `duplicate tool "${name}"`);
    byName.set(name, implementation);
  }
  const catalog = toolCatalog([...byName.values()].map((implementation) => implementation.spec));
  return Object.freeze({
    get: (name: string) => byName.get(name),
    specs: () => catalog,
    execute: async (name: string, rawArgs: unknown, ctx: ToolContext) => {
      const implementation = byName.get(name);
      if (implementation === undefined) throw new ToolError(ToolErrorCode.unknown, `unknown tool "${name}"`);
      return implementation.execute(rawArgs, ctx);
    },
  });
}

/** What {@link defineToolSpec} takes: `resource` sees the schema's output type. */
export interface ToolSpecDefinition<S extends z.ZodType> {
  /** Dot-separated segments of letters, digits, `_` and `-` (`billing.refund`). */
  readonly name: string;
  readonly description: string;
  readonly args: S;
  readonly resource?: (args: z.output<S>) => string | undefined;
  /**
   * What a call does to the world, for the execution guard's retry rule (default `unsafe`): `idempotent`
   * only when the side effect is deduplicated by `ctx.idempotencyKey`.
   */
  readonly effect?: ToolEffect | ((args: z.output<S>) => ToolEffect);
}

/** What {@link defineTool} takes: a spec definition plus its implementation. */
export interface ToolDefinition<S extends z.ZodType> extends ToolSpecDefinition<S> {
  readonly run: ToolRun<z.output<S>, undefined>;
}

const EFFECTS: ReadonlySet<unknown> = new Set<ToolEffect>(['none', 'idempotent', 'unsafe']);
const TOOL_NAME = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
const MAX_TOOL_NAME = 128;

/**
 * Builds a frozen, pure {@link ToolSpec}. Throws {@link ToolError} `TOOL_INVALID_CONFIG` on a
 * malformed name or an empty description.
 *
 * Call it from a workflow-safe module (zod and pure code only, no Node built-ins, no I/O): the
 * AgentRun workflow bundle imports spec modules to decide on calls, never implementation code.
 * Bind the spec to its implementation elsewhere with {@link implementTool}.
 */
export function defineToolSpec<S extends z.ZodType>(
  definition: ToolSpecDefinition<S>,
): ToolSpec<z.output<S>> {
  const { name, description, args, resource, effect } = definition;
  if (typeof name !== 'string' || name.length > MAX_TOOL_NAME || !TOOL_NAME.test(name)) {
    throw new ToolError(
      ToolErrorCode.invalidConfig,
      `tool name ${JSON.stringify(name)} is not dot-separated letters, digits, "_" or "-"`,
    );
  }
  if (typeof description !== 'string' || description.trim() === '') {
    throw new ToolError(ToolErrorCode.invalidConfig, `tool "${name}" needs a description`);
  }
  if (typeof args?.safeParse !== 'function') {
    throw new ToolError(ToolErrorCode.invalidConfig, `tool "${name}" needs a zod schema for its arguments`);
  }
  if (effect !== undefined && typeof effect !== 'function' && !EFFECTS.has(effect)) {
    throw new ToolError(
      ToolErrorCode.invalidConfig,
      `tool "${name}" has an unknown effect ${JSON.stringify(effect)}`,
    );
  }
  // z.ZodType<z.output<S>> is what S is; TypeScript cannot see it through the generic
  const spec: { -readonly [K in keyof ToolSpec<z.output<S>>]: ToolSpec<z.output<S>>[K] } = {
    name,
    description,
    args: args as unknown as z.ZodType<z.output<S>>,
  };
  if (resource !== undefined) spec.resource = resource;
  if (effect !== undefined) spec.effect = effect;
  return Object.freeze(spec);
}

/**
 * Defines a spec and binds `run` to it in one step (sugar for {@link defineToolSpec} +
 * {@link implementTool}). The result carries spec and implementation together, so it belongs in
 * the tools worker only. When the workflow must decide on the tool (every tool the AgentRun
 * workflow gates), put the spec in a workflow-safe module with {@link defineToolSpec} instead and
 * bind it here with {@link implementTool}; the workflow bundle must never import `run` code.
 */
export function defineTool<S extends z.ZodType>(
  definition: ToolDefinition<S>,
): ToolImplementation<z.output<S>, undefined> {
  const { run, ...specDefinition } = definition;
  if (typeof run !== 'function') {
    throw new ToolError(ToolErrorCode.invalidConfig, `tool "${definition.name}" needs a run function`);
  }
  return implementTool(defineToolSpec(specDefinition), run);
}
