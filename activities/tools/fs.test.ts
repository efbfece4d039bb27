import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  link,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  realpath,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fsRead } from '../../tools/builtin-specs.ts';
import { ToolError, createToolRegistry, implementTool } from './define.ts';
import type { ToolRegistry, ToolResult } from './define.ts';
import { fsTools } from './fs.ts';

let base: string;
let root: string;
let outside: string;
let stateDir: string;
let registry: ToolRegistry;
let keyCounter = 0;

const hasMkfifo = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v mkfifo'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

beforeAll(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), 'agent-runtime-fs-')));
  root = join(base, 'root');
  outside = join(base, 'outside');
  stateDir = join(base, 'state');
  await mkdir(join(root, 'sub'), { recursive: true });
  await mkdir(outside);
  await writeFile(join(root, 'hello.txt'), 'hello\n');
  await writeFile(join(root, 'sub', 'b.txt'), 'b');
  await writeFile(join(root, 'sub', 'a.txt'), 'a');
  await writeFile(join(outside, 'secret.txt'), 'secret\n');
  await symlink(join(outside, 'secret.txt'), join(root, 'link-out')); // file symlink escaping
  await symlink(outside, join(root, 'dir-link')); // directory symlink escaping
  await symlink(join(outside, 'new.txt'), join(root, 'dangling')); // dangling, pointing outside
  await symlink(join(root, 'nowhere.txt'), join(root, 'dangling-in')); // dangling, pointing inside
  await symlink('hello.txt', join(root, 'link-in')); // relative symlink staying inside
  await symlink(join(root, 'sub'), join(root, 'sub-link')); // directory symlink staying inside
  if (hasMkfifo) execFileSync('mkfifo', [join(root, 'fifo')]);
  registry = createToolRegistry(fsTools({ roots: [root], stateDir }));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

function ctx() {
  keyCounter += 1;
  return { idempotencyKey: `wf-test/${keyCounter}` };
}

/** The refusal a call returned, with the temp directory replaced by `<tmp>`. */
async function refusal(call: Promise<ToolResult>): Promise<{ code: string; message: string }> {
  const result = await call;
  if (result.ok) throw new Error(`expected a refusal, got ${JSON.stringify(result)}`);
  return { code: result.code, message: result.message.replaceAll(base, '<tmp>') };
}

async function thrown(call: Promise<unknown>): Promise<{ name: string; code: string; message: string }> {
  try {
    await call;
  } catch (error) {
    if (!(error instanceof ToolError)) throw error;
    return { name: error.name, code: error.code, message: error.message.replaceAll(base, '<tmp>') };
  }
  throw new Error('expected a ToolError');
}

const read = (path: string) => registry.execute('fs.read', { path }, ctx());
const list = (path: string) => registry.execute('fs.list', { path }, ctx());
const write = (path: string, content: string, mode?: 'create' | 'overwrite' | 'append', key = ctx()) =>
  registry.execute('fs.write', mode === undefined ? { path, content } : { path, content, mode }, key);

describe('fs.read', () => {
  it('reads a UTF-8 file inside the root, also through a symlink that stays inside', async () => {
    expect(await read(join(root, 'hello.txt'))).toEqual({
      ok: true,
      output: { path: join(root, 'hello.txt'), content: 'hello\n', bytes: 6 },
    });
    expect(await read(join(root, 'link-in'))).toMatchObject({ ok: true, output: { content: 'hello\n' } });
    expect(await read(join(root, 'sub-link', 'a.txt'))).toMatchObject({ ok: true, output: { content: 'a' } });
    expect(await read(`${root}/sub/../hello.txt`)).toMatchObject({
      ok: true,
      output: { content: 'hello\n' },
    });
  });

  it('refuses `..` climbing out of the root', async () => {
    expect(await refusal(read(`${root}/../outside/secret.txt`))).toMatchInlineSnapshot(`
      {
        "code": "FS_OUTSIDE_ROOTS",
        "message": ""<tmp>/root/../outside/secret.txt" is outside the allowed roots",
      }
    `);
    expect(await refusal(read(`${root}/sub/../../../../etc/passwd`))).toMatchInlineSnapshot(`
      {
        "code": "FS_OUTSIDE_ROOTS",
        "message": ""<tmp>/root/sub/../../../../etc/passwd" is outside the allowed roots",
      }
    `);
  });

  it('refuses absolute paths outside the roots without telling whether they exist', async () => {
    expect(await refusal(read(join(outside, 'secret.txt')))).toMatchInlineSnapshot(`
      {
        "code": "FS_OUTSIDE_ROOTS",
        "message": ""<tmp>/outside/secret.txt" is outside the allowed roots",
      }
    `);
    expect(await refusal(read(join(outside, 'missing.txt')))).toMatchInlineSnapshot(`
      {
        "code": "FS_OUTSIDE_ROOTS",
        "message": ""<tmp>/outside/missing.txt" is outside the allowed roots",
      }
    `);
    expect(await refusal(read('/etc/passwd'))).toMatchObject({ code: 'FS_OUTSIDE_ROOTS' });
  });

  it('refuses a symlink inside the root that points outside', async () => {
    expect(await refusal(read(join(root, 'link-out')))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_ESCAPE",
        "message": ""<tmp>/root/link-out" resolves through a symlink to outside the allowed roots",
      }
    `);
  });

  it('refuses a symlinked directory component that leads outside, also when `..` follows it', async () => {
    expect(await refusal(read(join(root, 'dir-link', 'secret.txt')))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_ESCAPE",
        "message": ""<tmp>/root/dir-link/secret.txt" resolves through a symlink to outside the allowed roots",
      }
    `);
    // the kernel applies `..` after following the link: root/dir-link/.. is base/, not root/
    expect(await refusal(read(`${root}/dir-link/../outside/secret.txt`))).toMatchObject({
      code: 'FS_SYMLINK_ESCAPE',
    });
  });

  it('refuses dangling symlinks (outside: escape; inside: dangling)', async () => {
    expect(await refusal(read(join(root, 'dangling')))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_ESCAPE",
        "message": ""<tmp>/root/dangling" goes through a symlink that points outside the allowed roots",
      }
    `);
    expect(await refusal(read(join(root, 'dangling-in')))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_DANGLING",
        "message": ""<tmp>/root/dangling-in" goes through a symlink that does not resolve",
      }
    `);
  });

  it('refuses NUL bytes: the spec rejects them, and the implementation does again if called directly', async () => {
    expect(await thrown(read(`${root}/hello.txt\0.png`))).toMatchInlineSnapshot(`
      {
        "code": "TOOL_INVALID_ARGUMENTS",
        "message": "invalid arguments for "fs.read": path: expected a path without NUL bytes",
        "name": "ToolError",
      }
    `);
    const [readImpl] = fsTools({ roots: [root], stateDir });
    expect(
      await refusal(readImpl.run({ path: `${root}/hello.txt\0` }, { ...ctx(), config: readImpl.config })),
    ).toMatchInlineSnapshot(`
      {
        "code": "FS_INVALID_PATH",
        "message": "path contains a NUL byte",
      }
    `);
  });

  it.skipIf(!hasMkfifo)('refuses a FIFO without blocking on it', async () => {
    const started = Date.now();
    expect(await refusal(read(join(root, 'fifo')))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_A_FILE",
        "message": ""<tmp>/root/fifo" is not a regular file",
      }
    `);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('refuses device files (/dev/zero would never end)', async () => {
    const devices = createToolRegistry(fsTools({ roots: ['/dev'], stateDir }));
    expect(await refusal(devices.execute('fs.read', { path: '/dev/zero' }, ctx()))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_A_FILE",
        "message": ""/dev/zero" is not a regular file",
      }
    `);
    expect(await refusal(devices.execute('fs.read', { path: '/dev/null' }, ctx()))).toMatchObject({
      code: 'FS_NOT_A_FILE',
    });
  });

  it('refuses directories and missing files', async () => {
    expect(await refusal(read(join(root, 'sub')))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_A_FILE",
        "message": ""<tmp>/root/sub" is a directory, not a file",
      }
    `);
    expect(await refusal(read(join(root, 'missing.txt')))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_FOUND",
        "message": "file "<tmp>/root/missing.txt" does not exist",
      }
    `);
    expect(await refusal(read(join(root, 'hello.txt', 'x')))).toMatchObject({ code: 'FS_NOT_A_DIRECTORY' });
    expect(await refusal(read(`${root}/nope/../hello.txt`))).toMatchInlineSnapshot(`
      {
        "code": "FS_INVALID_PATH",
        "message": ""<tmp>/root/nope/../hello.txt" climbs with ".." out of a directory that does not exist",
      }
    `);
  });

  it('enforces maxReadBytes from the stat, before reading', async () => {
    const small = createToolRegistry(fsTools({ roots: [root], stateDir, maxReadBytes: 6 }));
    await writeFile(join(root, 'seven.txt'), '1234567');
    expect(await small.execute('fs.read', { path: join(root, 'hello.txt') }, ctx())).toMatchObject({
      ok: true,
    });
    expect(await refusal(small.execute('fs.read', { path: join(root, 'seven.txt') }, ctx())))
      .toMatchInlineSnapshot(`
      {
        "code": "FS_TOO_LARGE",
        "message": ""<tmp>/root/seven.txt" is 7 bytes; the limit is 6",
      }
    `);
  });

  it('refuses content that is not UTF-8', async () => {
    await writeFile(join(root, 'binary.bin'), Buffer.from([0xff, 0xfe, 0x00, 0xc3]));
    expect(await refusal(read(join(root, 'binary.bin')))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_TEXT",
        "message": ""<tmp>/root/binary.bin" is not UTF-8 text",
      }
    `);
  });
});

describe('fs.list', () => {
  it('lists entries sorted by name, with their types', async () => {
    expect(await list(join(root, 'sub'))).toEqual({
      ok: true,
      output: {
        path: join(root, 'sub'),
        entries: [
          { name: 'a.txt', type: 'file' },
          { name: 'b.txt', type: 'file' },
        ],
        truncated: false,
      },
    });
    const result = await list(root);
    expect(result).toMatchObject({ ok: true, output: { truncated: false } });
    const entries = result.ok ? (result.output as { entries: { name: string; type: string }[] }).entries : [];
    expect(entries).toContainEqual({ name: 'link-out', type: 'symlink' });
    expect(entries).toContainEqual({ name: 'sub', type: 'directory' });
  });

  it('stops at maxListEntries and says so', async () => {
    const small = createToolRegistry(fsTools({ roots: [root], stateDir, maxListEntries: 1 }));
    const result = await small.execute('fs.list', { path: join(root, 'sub') }, ctx());
    expect(result).toMatchObject({ ok: true, output: { truncated: true } });
    expect(result.ok && (result.output as { entries: unknown[] }).entries).toHaveLength(1);
  });

  it('refuses files, escaping directory symlinks and outside directories', async () => {
    expect(await refusal(list(join(root, 'hello.txt')))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_A_DIRECTORY",
        "message": ""<tmp>/root/hello.txt" is not a directory",
      }
    `);
    expect(await refusal(list(join(root, 'dir-link')))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_ESCAPE",
        "message": ""<tmp>/root/dir-link" resolves through a symlink to outside the allowed roots",
      }
    `);
    expect(await refusal(list(`${root}/..`))).toMatchInlineSnapshot(`
      {
        "code": "FS_OUTSIDE_ROOTS",
        "message": ""<tmp>/root/.." is outside the allowed roots",
      }
    `);
    expect(await list(join(root, 'sub-link'))).toMatchObject({ ok: true });
  });
});

describe('fs.write', () => {
  it('creates, refuses to create over an existing file, overwrites and appends', async () => {
    const path = join(root, 'notes.txt');
    expect(await write(path, 'one\n')).toEqual({
      ok: true,
      output: { path, mode: 'create', bytes: 4, created: true },
    });
    expect(await refusal(write(path, 'two\n', 'create'))).toMatchInlineSnapshot(`
      {
        "code": "FS_EXISTS",
        "message": ""<tmp>/root/notes.txt" already exists (mode "create")",
      }
    `);
    expect(await write(path, 'two\n', 'overwrite')).toMatchObject({ ok: true, output: { created: false } });
    expect(await write(path, 'three\n', 'append')).toMatchObject({ ok: true, output: { created: false } });
    expect(await readFile(path, 'utf8')).toBe('two\nthree\n');
    expect(await write(join(root, 'fresh.log'), 'x', 'append')).toMatchObject({
      ok: true,
      output: { created: true },
    });
    // no temp files left behind
    expect((await readdir(root)).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('requires the parent directory to exist inside the root', async () => {
    expect(await refusal(write(join(root, 'no-such-dir', 'x.txt'), 'x'))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_FOUND",
        "message": "parent directory of "<tmp>/root/no-such-dir/x.txt" does not exist",
      }
    `);
    expect(await refusal(write(`${root}/no-such-dir/../x.txt`, 'x'))).toMatchInlineSnapshot(`
      {
        "code": "FS_INVALID_PATH",
        "message": ""<tmp>/root/no-such-dir/../x.txt" climbs with ".." out of a directory that does not exist",
      }
    `);
    expect(await refusal(write(`${root}/hello.txt/x.txt`, 'x'))).toMatchObject({
      code: 'FS_NOT_A_DIRECTORY',
    });
    expect(await refusal(write(`${root}/sub/`, 'x'))).toMatchInlineSnapshot(`
      {
        "code": "FS_INVALID_PATH",
        "message": ""<tmp>/root/sub/" does not name a file",
      }
    `);
    expect(await refusal(write(`${root}/sub`, 'x', 'overwrite'))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_A_FILE",
        "message": ""<tmp>/root/sub" is a directory, not a file",
      }
    `);
  });

  it('refuses paths outside the roots, by `..` or absolutely', async () => {
    expect(await refusal(write(`${root}/../outside/new.txt`, 'x'))).toMatchInlineSnapshot(`
      {
        "code": "FS_OUTSIDE_ROOTS",
        "message": ""<tmp>/root/../outside/new.txt" is outside the allowed roots",
      }
    `);
    expect(await refusal(write(join(outside, 'new.txt'), 'x'))).toMatchObject({ code: 'FS_OUTSIDE_ROOTS' });
    expect(existsSync(join(outside, 'new.txt'))).toBe(false);
  });

  it('never writes through a final symlink', async () => {
    for (const mode of ['create', 'overwrite', 'append'] as const) {
      expect(await refusal(write(join(root, 'link-out'), 'pwned', mode))).toMatchObject({
        code: 'FS_SYMLINK_ESCAPE',
      });
      expect(await refusal(write(join(root, 'dangling'), 'pwned', mode))).toMatchObject({
        code: 'FS_SYMLINK_ESCAPE',
      });
      expect(await refusal(write(join(root, 'link-in'), 'changed', mode))).toMatchObject({
        code: 'FS_SYMLINK_TARGET',
      });
    }
    expect(await refusal(write(join(root, 'link-out'), 'pwned', 'overwrite'))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_ESCAPE",
        "message": ""<tmp>/root/link-out" is a symlink that points outside the allowed roots",
      }
    `);
    expect(await refusal(write(join(root, 'dangling'), 'pwned', 'create'))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_ESCAPE",
        "message": ""<tmp>/root/dangling" goes through a symlink that points outside the allowed roots",
      }
    `);
    expect(await refusal(write(join(root, 'link-in'), 'changed', 'append'))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_TARGET",
        "message": ""<tmp>/root/link-in" is a symlink; fs.write does not write through symlinks",
      }
    `);
    expect(await readFile(join(outside, 'secret.txt'), 'utf8')).toBe('secret\n');
    expect(existsSync(join(outside, 'new.txt'))).toBe(false);
    expect(await readFile(join(root, 'hello.txt'), 'utf8')).toBe('hello\n');
  });

  it('refuses a symlinked directory component leading outside', async () => {
    expect(await refusal(write(join(root, 'dir-link', 'new.txt'), 'x'))).toMatchInlineSnapshot(`
      {
        "code": "FS_SYMLINK_ESCAPE",
        "message": ""<tmp>/root/dir-link/new.txt" resolves through a symlink to outside the allowed roots",
      }
    `);
    expect(existsSync(join(outside, 'new.txt'))).toBe(false);
  });

  it.skipIf(!hasMkfifo)('refuses a FIFO target without blocking on it', async () => {
    expect(await refusal(write(join(root, 'fifo'), 'x', 'append'))).toMatchInlineSnapshot(`
      {
        "code": "FS_NOT_A_FILE",
        "message": ""<tmp>/root/fifo" is not a regular file",
      }
    `);
    expect(await refusal(write(join(root, 'fifo'), 'x', 'overwrite'))).toMatchObject({
      code: 'FS_NOT_A_FILE',
    });
  });

  it('refuses to append to a file with other hard links', async () => {
    await writeFile(join(root, 'linked.txt'), 'a');
    await link(join(root, 'linked.txt'), join(root, 'sub', 'linked-again.txt'));
    expect(await refusal(write(join(root, 'linked.txt'), 'b', 'append'))).toMatchInlineSnapshot(`
      {
        "code": "FS_HARD_LINK",
        "message": ""<tmp>/root/linked.txt" has other hard links; fs.write does not append to it",
      }
    `);
    expect(await readFile(join(root, 'linked.txt'), 'utf8')).toBe('a');
  });

  it('enforces maxWriteBytes in UTF-8 bytes', async () => {
    const small = createToolRegistry(fsTools({ roots: [root], stateDir, maxWriteBytes: 4 }));
    const run = (content: string) =>
      small.execute('fs.write', { path: join(root, 'small.txt'), content, mode: 'overwrite' }, ctx());
    expect(await run('abcd')).toMatchObject({ ok: true });
    expect(await refusal(run('ééé'))).toMatchInlineSnapshot(`
      {
        "code": "FS_TOO_LARGE",
        "message": "content is 6 bytes; the limit is 4",
      }
    `);
    expect(await readFile(join(root, 'small.txt'), 'utf8')).toBe('abcd');
  });
});

describe('fs.write idempotency', () => {
  const recordOf = (key: string) =>
    join(stateDir, 'fs-idempotency', `${createHash('sha256').update(key).digest('hex')}.json`);

  it('does not append twice when an append is retried with the same key', async () => {
    const path = join(root, 'journal.log');
    const key = ctx();
    const first = await write(path, 'entry\n', 'append', key);
    expect(first).toMatchObject({ ok: true, output: { created: true } });
    expect(await write(path, 'entry\n', 'append', key)).toEqual(first);
    expect(await write(path, 'entry\n', 'append', key)).toEqual(first);
    expect(await readFile(path, 'utf8')).toBe('entry\n');
    expect(JSON.parse(await readFile(recordOf(key.idempotencyKey), 'utf8'))).toMatchObject({
      state: 'applied',
    });
    // a new key is a new action
    await write(path, 'entry\n', 'append');
    expect(await readFile(path, 'utf8')).toBe('entry\nentry\n');
  });

  it('does not fail a retried create (the first attempt created the file)', async () => {
    const key = ctx();
    const path = join(root, 'once.txt');
    const first = await write(path, 'once', 'create', key);
    expect(await write(path, 'once', 'create', key)).toEqual(first);
  });

  it('refuses the same key for a different write', async () => {
    const key = ctx();
    await write(join(root, 'conflict.txt'), 'a', 'append', key);
    expect(await refusal(write(join(root, 'conflict.txt'), 'b', 'append', key))).toMatchInlineSnapshot(`
      {
        "code": "FS_IDEMPOTENCY_CONFLICT",
        "message": "this idempotency key was already used for a different write; "<tmp>/root/conflict.txt" was not written",
      }
    `);
    expect(await readFile(join(root, 'conflict.txt'), 'utf8')).toBe('a');
  });

  it('recovers an append interrupted after writing (record still pending): no second append', async () => {
    const key = ctx();
    const path = join(root, 'crash-after.log');
    await writeFile(path, 'head\n');
    await write(path, 'tail\n', 'append', key);
    const record = JSON.parse(await readFile(recordOf(key.idempotencyKey), 'utf8')) as Record<
      string,
      unknown
    >;
    await writeFile(
      recordOf(key.idempotencyKey),
      JSON.stringify({ ...record, state: 'pending', result: undefined }),
    );
    expect(await write(path, 'tail\n', 'append', key)).toMatchObject({
      ok: true,
      output: { created: false },
    });
    expect(await readFile(path, 'utf8')).toBe('head\ntail\n');
    expect(JSON.parse(await readFile(recordOf(key.idempotencyKey), 'utf8'))).toMatchObject({
      state: 'applied',
    });
  });

  it('recovers an append interrupted before writing (record pending, file unchanged): appends once', async () => {
    const key = ctx();
    const path = join(root, 'crash-before.log');
    await writeFile(path, 'head\n');
    await write(path, 'tail\n', 'append', key);
    const record = JSON.parse(await readFile(recordOf(key.idempotencyKey), 'utf8')) as Record<
      string,
      unknown
    >;
    await writeFile(
      recordOf(key.idempotencyKey),
      JSON.stringify({ ...record, state: 'pending', result: undefined }),
    );
    await truncate(path, 'head\n'.length);
    expect(await write(path, 'tail\n', 'append', key)).toMatchObject({ ok: true });
    expect(await readFile(path, 'utf8')).toBe('head\ntail\n');
  });

  it('refuses to guess when an interrupted append left the file in another state', async () => {
    const key = ctx();
    const path = join(root, 'crash-partial.log');
    await writeFile(path, 'head\n');
    await write(path, 'tail\n', 'append', key);
    const record = JSON.parse(await readFile(recordOf(key.idempotencyKey), 'utf8')) as Record<
      string,
      unknown
    >;
    await writeFile(
      recordOf(key.idempotencyKey),
      JSON.stringify({ ...record, state: 'pending', result: undefined }),
    );
    await truncate(path, 'head\nta'.length);
    expect(await refusal(write(path, 'tail\n', 'append', key))).toMatchInlineSnapshot(`
      {
        "code": "FS_IDEMPOTENCY_UNCERTAIN",
        "message": ""<tmp>/root/crash-partial.log" changed since this append began; whether it was applied is unknown",
      }
    `);
    expect(await readFile(path, 'utf8')).toBe('head\nta');
  });

  it('keeps its records outside the roots', async () => {
    expect((await stat(join(stateDir, 'fs-idempotency'))).isDirectory()).toBe(true);
    expect(await thrown((async () => fsTools({ roots: [root], stateDir: join(root, 'state') }))()))
      .toMatchInlineSnapshot(`
      {
        "code": "TOOL_INVALID_CONFIG",
        "message": "fs tools: stateDir "<tmp>/root/state" must lie outside every root (overlaps "<tmp>/root")",
        "name": "ToolError",
      }
    `);
    expect(existsSync(join(root, 'state'))).toBe(false);
    await mkdir(join(stateDir, 'x'));
    expect(() => fsTools({ roots: [join(stateDir, 'x')], stateDir })).toThrow(ToolError);
  });
});

describe('registry', () => {
  it('refuses invalid arguments and unknown tools without running anything', async () => {
    const run = vi.fn(async () => ({ ok: true as const, output: null }));
    const spy = createToolRegistry([implementTool(fsRead, run)]);
    expect(await thrown(spy.execute('fs.read', { path: 'relative.txt' }, ctx()))).toMatchInlineSnapshot(`
      {
        "code": "TOOL_INVALID_ARGUMENTS",
        "message": "invalid arguments for "fs.read": path: expected an absolute path",
        "name": "ToolError",
      }
    `);
    expect(await thrown(spy.execute('fs.read', { path: '/a', extra: 1 }, ctx()))).toMatchInlineSnapshot(`
      {
        "code": "TOOL_INVALID_ARGUMENTS",
        "message": "invalid arguments for "fs.read": (root): Unrecognized key: "extra"",
        "name": "ToolError",
      }
    `);
    expect(await thrown(spy.execute('fs.read', null, ctx()))).toMatchInlineSnapshot(`
      {
        "code": "TOOL_INVALID_ARGUMENTS",
        "message": "invalid arguments for "fs.read": (root): Invalid input: expected object, received null",
        "name": "ToolError",
      }
    `);
    expect(await thrown(spy.execute('fs.delete', { path: '/a' }, ctx()))).toMatchInlineSnapshot(`
      {
        "code": "TOOL_UNKNOWN",
        "message": "unknown tool "fs.delete"",
        "name": "ToolError",
      }
    `);
    expect(await thrown(spy.execute('fs.read', { path: '/a' }, { idempotencyKey: '' })))
      .toMatchInlineSnapshot(`
      {
        "code": "TOOL_INVALID_CONTEXT",
        "message": ""fs.read" needs a non-empty idempotency key",
        "name": "ToolError",
      }
    `);
    const aborted = AbortSignal.abort();
    await expect(spy.execute('fs.read', { path: '/a' }, { ...ctx(), signal: aborted })).rejects.toThrow();
    expect(run).not.toHaveBeenCalled();
    expect(await spy.execute('fs.read', { path: '/a' }, ctx())).toEqual({ ok: true, output: null });
    expect(run).toHaveBeenCalledTimes(1);
  });

  it('does not write when fs.write arguments are invalid', async () => {
    const path = join(root, 'invalid-args.txt');
    expect(await thrown(registry.execute('fs.write', { path, content: 42 }, ctx()))).toMatchObject({
      code: 'TOOL_INVALID_ARGUMENTS',
    });
    expect(
      await thrown(registry.execute('fs.write', { path, content: 'x', mode: 'truncate' }, ctx())),
    ).toMatchObject({
      code: 'TOOL_INVALID_ARGUMENTS',
    });
    expect(existsSync(path)).toBe(false);
  });

  it('exposes the specs as a catalog and refuses duplicate names', () => {
    expect([...registry.specs().keys()]).toEqual(['fs.read', 'fs.list', 'fs.write']);
    expect(registry.get('fs.write')?.spec.name).toBe('fs.write');
    expect(registry.get('fs.delete')).toBeUndefined();
    expect(() =>
      createToolRegistry([...fsTools({ roots: [root], stateDir }), ...fsTools({ roots: [root], stateDir })]),
    ).toThrowErrorMatchingInlineSnapshot(`[ToolError: duplicate tool "fs.read"]`);
  });
});
