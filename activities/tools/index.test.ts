import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILTIN_TOOL_SPECS } from '../../tools/builtin-specs.ts';
import { builtinTools, createToolRegistry } from './index.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function fsConfig() {
  const base = mkdtempSync(join(tmpdir(), 'builtin-tools-'));
  dirs.push(base);
  const root = join(base, 'root');
  const stateDir = join(base, 'state');
  mkdirSync(root);
  return { roots: [root], stateDir, root };
}

const ctx = { idempotencyKey: 'wf/1' };

describe('builtinTools', () => {
  it('implements exactly the built-in specs, with the very same spec objects, in order', () => {
    const { root: _root, ...fs } = fsConfig();
    const tools = builtinTools({ fs });
    expect(Object.isFrozen(tools)).toBe(true);
    expect(tools.map((t) => t.spec)).toEqual([...BUILTIN_TOOL_SPECS]);
    tools.forEach((tool, i) => expect(tool.spec).toBe(BUILTIN_TOOL_SPECS[i]));
    expect([...createToolRegistry(tools).specs().keys()]).toEqual([
      'fs.read',
      'fs.list',
      'fs.write',
      'http.request',
    ]);
  });

  it('runs fs.read through a registry, and refuses every http.request when no http config is given', async () => {
    const { root, ...fs } = fsConfig();
    writeFileSync(join(root, 'a.txt'), 'hello');
    const registry = createToolRegistry(builtinTools({ fs }));
    expect(await registry.execute('fs.read', { path: join(root, 'a.txt') }, ctx)).toMatchObject({
      ok: true,
      output: { content: 'hello' },
    });
    expect(
      await registry.execute('http.request', { method: 'GET', url: 'http://127.0.0.1:9/' }, ctx),
    ).toMatchObject({ ok: false, code: 'HTTP_HOST_NOT_ALLOWED' });
  });

  it('passes the http config through', async () => {
    const { root: _root, ...fs } = fsConfig();
    const tools = builtinTools({ fs, http: { allowedHosts: ['api.acme.test'] } });
    expect(tools[3]?.config).toEqual({ allowedHosts: ['api.acme.test'] });
    expect(() => builtinTools({ fs, http: { allowedHosts: ['*'] } })).toThrow(
      expect.objectContaining({ code: 'HTTP_CONFIG_INVALID' }),
    );
  });
});
