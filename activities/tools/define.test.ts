import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { toolCatalog } from '../../policy/index.ts';
import { createToolRegistry, defineTool, defineToolSpec, implementTool } from './define.ts';
import type { ToolContext, ToolResult } from './define.ts';

const ctx: ToolContext = { idempotencyKey: 'wf-1/step-2' };

const NoteArgs = z.strictObject({
  path: z.string().startsWith('/'),
  tags: z.array(z.string()).default([]),
});

/** A tool that records what `run` saw. */
function noteTool() {
  const seen: { args: unknown; idempotencyKey: string; config: unknown }[] = [];
  const tool = defineTool({
    name: 'notes.add',
    description: 'Add a note.',
    args: NoteArgs,
    resource: (args) => `notes:${args.path}#${args.tags.length}`,
    run: async (args, runCtx) => {
      seen.push({ args, idempotencyKey: runCtx.idempotencyKey, config: runCtx.config });
      return { ok: true, output: { saved: args.path } };
    },
  });
  return { tool, seen };
}

describe('defineToolSpec', () => {
  it('returns a frozen spec; resource sees the parsed arguments (defaults applied)', () => {
    const spec = defineToolSpec({
      name: 'notes.add',
      description: 'Add a note.',
      args: NoteArgs,
      resource: (args) => `notes:${args.path}#${args.tags.length}`,
    });
    expect(Object.isFrozen(spec)).toBe(true);
    expect(spec.name).toBe('notes.add');
    expect(spec.description).toBe('Add a note.');
    expect(spec.args).toBe(NoteArgs);
    const parsed = spec.args.parse({ path: '/a' });
    expect(parsed).toEqual({ path: '/a', tags: [] });
    expect(spec.resource?.(parsed)).toBe('notes:/a#0');
    expect(toolCatalog([spec]).get('notes.add')).toBe(spec);
  });

  it('leaves out `resource` when none is given', () => {
    const spec = defineToolSpec({ name: 'clock.now', description: 'Time.', args: z.strictObject({}) });
    expect(Object.keys(spec).sort()).toEqual(['args', 'description', 'name']);
  });

  it('keeps an effect (a tier or a function of the arguments) and refuses an unknown one', () => {
    const fixed = defineToolSpec({ name: 'a.b', description: 'd', args: NoteArgs, effect: 'idempotent' });
    expect(fixed.effect).toBe('idempotent');
    const derived = defineToolSpec({
      name: 'a.c',
      description: 'd',
      args: NoteArgs,
      effect: (args) => (args.tags.includes('draft') ? 'none' : 'unsafe'),
    });
    expect(typeof derived.effect === 'function' && derived.effect(NoteArgs.parse({ path: '/x' }))).toBe(
      'unsafe',
    );
    expect(() =>
      defineToolSpec({ name: 'a.d', description: 'd', args: NoteArgs, effect: 'maybe' as 'none' }),
    ).toThrow(expect.objectContaining({ code: 'TOOL_INVALID_CONFIG' }));
  });

  it.each(['', 'a..b', '.a', 'a.', 'a.*', 'billing.{refund}', 'has space', 'x/y', 'é', 'a'.repeat(129)])(
    'refuses the name %j',
    (name) => {
      expect(() => defineToolSpec({ name, description: 'd', args: z.strictObject({}) })).toThrow(
        expect.objectContaining({ code: 'TOOL_INVALID_CONFIG' }),
      );
    },
  );

  it.each(['ok', 'billing.refund', 'a-b_c.d1', 'a'.repeat(128)])('accepts the name %j', (name) => {
    expect(defineToolSpec({ name, description: 'd', args: z.strictObject({}) }).name).toBe(name);
  });

  it('refuses an empty description and arguments that are not a zod schema', () => {
    expect(() => defineToolSpec({ name: 'a.b', description: '  ', args: z.strictObject({}) })).toThrow(
      expect.objectContaining({ code: 'TOOL_INVALID_CONFIG' }),
    );
    expect(() => defineToolSpec({ name: 'a.b', description: 'd', args: {} as unknown as z.ZodType })).toThrow(
      expect.objectContaining({ code: 'TOOL_INVALID_CONFIG' }),
    );
  });

  it('define.ts stays workflow-safe: it imports only zod and policy/ (spec modules import it)', () => {
    const source = readFileSync(new URL('./define.ts', import.meta.url), 'utf8');
    const specifiers = [...source.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)].map(
      (m) => m[1],
    );
    expect(specifiers.length).toBeGreaterThan(0);
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    for (const specifier of specifiers) {
      expect(builtins.has(specifier ?? ''), specifier).toBe(false);
      expect(['zod', '../../policy/index.ts']).toContain(specifier);
    }
  });
});

describe('defineTool', () => {
  it('binds run to a frozen spec; execute hands run the parsed arguments and the context', async () => {
    const { tool, seen } = noteTool();
    expect(Object.isFrozen(tool)).toBe(true);
    expect(Object.isFrozen(tool.spec)).toBe(true);
    expect(tool.spec.name).toBe('notes.add');
    expect(tool.config).toBeUndefined();
    expect(await tool.execute({ path: '/x' }, ctx)).toEqual({ ok: true, output: { saved: '/x' } });
    expect(seen).toEqual([
      { args: { path: '/x', tags: [] }, idempotencyKey: 'wf-1/step-2', config: undefined },
    ]);
  });

  it('never runs with invalid arguments, a missing idempotency key or an aborted signal', async () => {
    const { tool, seen } = noteTool();
    await expect(tool.execute({ path: 'relative' }, ctx)).rejects.toMatchObject({
      code: 'TOOL_INVALID_ARGUMENTS',
      message: expect.stringContaining('path'),
    });
    await expect(tool.execute({ path: '/x', extra: 1 }, ctx)).rejects.toMatchObject({
      code: 'TOOL_INVALID_ARGUMENTS',
    });
    await expect(tool.execute({ path: '/x' }, { idempotencyKey: '' })).rejects.toMatchObject({
      code: 'TOOL_INVALID_CONTEXT',
    });
    const aborted = new AbortController();
    aborted.abort(new Error('cancelled'));
    await expect(tool.execute({ path: '/x' }, { ...ctx, signal: aborted.signal })).rejects.toThrow(
      'cancelled',
    );
    expect(seen).toEqual([]);
  });

  it('refuses a definition without a run function', () => {
    expect(() =>
      defineTool({
        name: 'a.b',
        description: 'd',
        args: z.strictObject({}),
        run: undefined as unknown as () => Promise<ToolResult>,
      }),
    ).toThrow(expect.objectContaining({ code: 'TOOL_INVALID_CONFIG' }));
  });
});

describe('createToolRegistry', () => {
  const refusing = defineTool({
    name: 'notes.delete',
    description: 'Delete a note.',
    args: z.strictObject({ id: z.string() }),
    run: async () => ({
      ok: false,
      code: 'NOTES_LOCKED',
      message: 'the note is locked',
      detail: 'lock held by job 7',
    }),
  });

  it('runs a registered tool and passes refusals (with their audit detail) through', async () => {
    const { tool, seen } = noteTool();
    const registry = createToolRegistry([tool, refusing]);
    expect([...registry.specs().keys()]).toEqual(['notes.add', 'notes.delete']);
    expect(registry.get('notes.add')).toBe(tool);
    expect(await registry.execute('notes.add', { path: '/r', tags: ['t'] }, ctx)).toEqual({
      ok: true,
      output: { saved: '/r' },
    });
    expect(seen).toHaveLength(1);
    expect(await registry.execute('notes.delete', { id: 'n1' }, ctx)).toEqual({
      ok: false,
      code: 'NOTES_LOCKED',
      message: 'the note is locked',
      detail: 'lock held by job 7',
    });
  });

  it('throws TOOL_INVALID_ARGUMENTS for invalid arguments, and the implementation never runs', async () => {
    const { tool, seen } = noteTool();
    const registry = createToolRegistry([tool]);
    for (const args of [
      undefined,
      null,
      {},
      { path: 7 },
      { path: '/x', tags: 'a' },
      { path: '/x', more: true },
    ]) {
      await expect(registry.execute('notes.add', args, ctx), JSON.stringify(args)).rejects.toMatchObject({
        code: 'TOOL_INVALID_ARGUMENTS',
      });
    }
    expect(seen).toEqual([]);
  });

  it('throws TOOL_UNKNOWN for a tool it does not hold', async () => {
    const registry = createToolRegistry([noteTool().tool]);
    expect(registry.get('notes.remove')).toBeUndefined();
    await expect(registry.execute('notes.remove', { path: '/x' }, ctx)).rejects.toMatchObject({
      code: 'TOOL_UNKNOWN',
    });
  });

  it('throws TOOL_DUPLICATE when two implementations share a name', () => {
    const first = noteTool().tool;
    const second = implementTool(first.spec, async () => ({ ok: true, output: null }));
    expect(() => createToolRegistry([first, second])).toThrow(
      expect.objectContaining({ code: 'TOOL_DUPLICATE', message: 'duplicate tool "notes.add"' }),
    );
  });
});
