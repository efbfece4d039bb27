import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditError } from './errors.ts';
import { openAuditFile } from './file-sink.ts';
import type { AuditFileOptions } from './file-sink.ts';
import { readAuditFile } from './read.ts';
import type { AuditEventInput } from './types.ts';

let base: string;
let counter = 0;

beforeAll(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), 'agent-runtime-audit-')));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

/** A fresh file path in its own (not yet existing) directory. */
function freshPath(): string {
  counter += 1;
  return join(base, `case-${counter}`, 'audit.jsonl');
}

const fixedClock = () => new Date('2026-11-25T10:00:00.000Z');

function event(attrs: Record<string, unknown> = {}, extra: Partial<AuditEventInput> = {}): AuditEventInput {
  return {
    source: 'workflow',
    agent: 'ops-assistant',
    run: 'abc',
    step: 3,
    kind: 'decision',
    attrs,
    ...extra,
  };
}

async function thrown(call: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await call;
  } catch (error) {
    if (!(error instanceof AuditError)) throw error;
    return {
      code: error.code,
      message: error.message.replaceAll(base, '<tmp>').replace(/case-\d+/g, 'case'),
    };
  }
  throw new Error('expected an AuditError');
}

async function withSink<T>(
  path: string,
  body: (sink: Awaited<ReturnType<typeof openAuditFile>>) => Promise<T>,
  options: AuditFileOptions = {},
): Promise<T> {
  const sink = await openAuditFile(path, options);
  try {
    return await body(sink);
  } finally {
    await sink.close();
  }
}

async function lines(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).split('\n').slice(0, -1);
}

describe('openAuditFile', () => {
  it('writes one JSON line per event, keys in envelope order, attrs canonical, id last', async () => {
    const path = freshPath();
    const stored = await withSink(
      path,
      (sink) =>
        sink.append(event({ tool: 'fs.write', tier: 'preapproved', rule: 'write-docs' }, { id: 'e-1' })),
      { clock: fixedClock },
    );
    expect(stored).toEqual({
      seq: 1,
      ts: '2026-11-25T10:00:00.000Z',
      source: 'workflow',
      agent: 'ops-assistant',
      run: 'abc',
      step: 3,
      kind: 'decision',
      attrs: { rule: 'write-docs', tier: 'preapproved', tool: 'fs.write' },
      id: 'e-1',
    });
    expect(Object.isFrozen(stored) && Object.isFrozen(stored.attrs)).toBe(true);
    expect(await lines(path)).toEqual([
      '{"seq":1,"ts":"2026-11-25T10:00:00.000Z","source":"workflow","agent":"ops-assistant","run":"abc",' +
        '"step":3,"kind":"decision","attrs":{"rule":"write-docs","tier":"preapproved","tool":"fs.write"},"id":"e-1"}',
    ]);
    expect(await readAuditFile(path)).toEqual([stored]);
  });

  it('creates the file 0600 and its directory 0700, and removes the lock on close', async () => {
    const path = freshPath();
    const sink = await openAuditFile(path);
    expect(sink.path).toBe(path);
    expect(existsSync(`${path}.lock`)).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(path, '..'))).mode & 0o777).toBe(0o700);
    expect((await stat(`${path}.lock`)).mode & 0o777).toBe(0o600);
    await sink.close();
    await sink.close(); // idempotent
    expect(existsSync(`${path}.lock`)).toBe(false);
    expect(await thrown(sink.append(event()))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_CLOSED",
        "message": "<tmp>/case/audit.jsonl: audit file is closed",
      }
    `);
  });

  it('recovers seq and the recent ids across reopen', async () => {
    const path = freshPath();
    await withSink(path, async (sink) => {
      await sink.append(event({ n: 1 }, { id: 'a' }));
      await sink.append(event({ n: 2 }));
    });
    await withSink(
      path,
      async (sink) => {
        expect(sink.repairedTail).toBeNull();
        const again = await sink.append(event({ n: 'retry' }, { id: 'a' }));
        expect(again).toMatchObject({ seq: 1, attrs: { n: 1 } });
        expect((await sink.append(event({ n: 3 }))).seq).toBe(3);
      },
      { fsync: 'always' },
    );
    const events = await readAuditFile(path);
    expect(events.map((e) => [e.seq, e.attrs['n']])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
  });

  it('keeps seq gap-free and lines whole under 200 concurrent appends', async () => {
    const path = freshPath();
    const stored = await withSink(path, (sink) =>
      Promise.all(Array.from({ length: 200 }, (_, i) => sink.append(event({ i, pad: 'x'.repeat(i * 50) })))),
    );
    expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    // call order is append order
    expect(stored.map((e) => e.attrs['i'])).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(await readAuditFile(path)).toEqual(stored);
  });

  it('stores an id once and returns the original event for repeats', async () => {
    const path = freshPath();
    await withSink(path, async (sink) => {
      const [first, second] = await Promise.all([
        sink.append(event({ try: 1 }, { id: 'wf-1/step-3/decision' })),
        sink.append(event({ try: 2 }, { id: 'wf-1/step-3/decision' })),
      ]);
      expect(second).toBe(first);
      expect((await sink.append(event({}, { id: 'other' }))).seq).toBe(2);
    });
    expect(await lines(path)).toHaveLength(2);
  });

  it('forgets ids beyond the dedupe window', async () => {
    const path = freshPath();
    await withSink(
      path,
      async (sink) => {
        for (const id of ['a', 'b', 'c']) await sink.append(event({}, { id }));
        expect((await sink.append(event({}, { id: 'b' }))).seq).toBe(2);
        expect((await sink.append(event({}, { id: 'a' }))).seq).toBe(4);
      },
      { dedupeWindow: 2 },
    );
  });

  it('refuses invalid events without consuming a seq', async () => {
    const path = freshPath();
    await withSink(path, async (sink) => {
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic['self'] = { back: cyclic };
      const refusals = await Promise.all(
        [
          event({ fn: () => 1 }),
          event({ nested: cyclic }),
          event({}, { kind: 'bogus' as never }),
          event({}, { source: 'someone' as never }),
          event({ n: 10n }),
          event({ list: [1, Number.NaN] }),
          event({ when: new Date(0) }),
          event({}, { agent: 'a'.repeat(513) }),
          event({}, { step: -1 }),
          event({}, { step: 1.5 }),
          { ...event(), attrs: [] as never },
        ].map((e) => thrown(sink.append(e))),
      );
      expect(refusals.every((r) => r.code === 'AUDIT_INVALID_EVENT')).toBe(true);
      expect(refusals.map((r) => r.message)).toMatchInlineSnapshot(`
        [
          "invalid audit event: attrs.fn: a function is not JSON-serialisable",
          "invalid audit event: attrs.nested.self.back: cyclic reference",
          "invalid audit event: kind: unknown kind "bogus"",
          "invalid audit event: source: unknown source "someone"",
          "invalid audit event: attrs.n: a bigint is not JSON-serialisable",
          "invalid audit event: attrs.list[1]: NaN is not JSON-serialisable",
          "invalid audit event: attrs.when: a Date is not JSON-serialisable",
          "invalid audit event: agent: expected at most 512 characters",
          "invalid audit event: step: expected a non-negative integer or null",
          "invalid audit event: step: expected a non-negative integer or null",
          "invalid audit event: attrs: expected a plain object",
        ]
      `);
      // a shared (non-cyclic) reference is fine
      const shared = { x: 1 };
      expect((await sink.append(event({ a: shared, b: [shared, shared] }))).seq).toBe(1);
    });
  });

  it('refuses an incomplete last line unless asked to repair it', async () => {
    const path = freshPath();
    await withSink(path, async (sink) => {
      await sink.append(event({ n: 1 }));
      await sink.append(event({ n: 2 }));
    });
    const partial = '{"seq":3,"ts":"2026-11-25T10:00:00.000Z","sou';
    await appendFile(path, partial);
    expect(await thrown(openAuditFile(path))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_TRUNCATED_TAIL",
        "message": "<tmp>/case/audit.jsonl:3: incomplete last line (45 bytes without a newline; a writer stopped mid-write); open with repairTruncatedTail: true to drop it",
      }
    `);
    expect(await thrown(readAuditFile(path))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_TRUNCATED_TAIL",
        "message": "<tmp>/case/audit.jsonl:3: incomplete last line (45 bytes without a newline; a writer stopped mid-write)",
      }
    `);
    expect(existsSync(`${path}.lock`)).toBe(false); // released after the refusal

    await withSink(
      path,
      async (sink) => {
        expect(sink.repairedTail).toEqual({ line: 3, bytes: partial.length });
        expect((await sink.append(event({ n: 3 }))).seq).toBe(3);
      },
      { repairTruncatedTail: true },
    );
    expect((await readAuditFile(path)).map((e) => e.attrs['n'])).toEqual([1, 2, 3]);
  });

  it('refuses a corrupted line in the middle, naming file:line', async () => {
    const path = freshPath();
    await withSink(path, async (sink) => {
      for (let n = 1; n <= 3; n++) await sink.append(event({ n }));
    });
    const original = await lines(path);
    const rewrite = (middle: string) => writeFile(path, `${original[0]}\n${middle}\n${original[2]}\n`);

    await rewrite('{"seq":2, oops');
    expect(await thrown(openAuditFile(path))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_FILE_CORRUPT",
        "message": "<tmp>/case/audit.jsonl:2: not valid JSON (Expected double-quoted property name in JSON at position 10 (line 1 column 11))",
      }
    `);
    expect(await thrown(openAuditFile(path, { repairTruncatedTail: true }))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_FILE_CORRUPT",
        "message": "<tmp>/case/audit.jsonl:2: not valid JSON (Expected double-quoted property name in JSON at position 10 (line 1 column 11))",
      }
    `);

    await rewrite(original[1]!.replace('"decision"', '"bogus"'));
    expect(await thrown(openAuditFile(path))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_FILE_CORRUPT",
        "message": "<tmp>/case/audit.jsonl:2: not an audit event: kind: unknown kind "bogus"",
      }
    `);

    await rewrite('');
    expect(await thrown(readAuditFile(path))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_FILE_CORRUPT",
        "message": "<tmp>/case/audit.jsonl:2: empty line",
      }
    `);

    await writeFile(path, `${original[0]}\n${original[2]}\n`); // a deleted line
    expect(await thrown(openAuditFile(path))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_FILE_CORRUPT",
        "message": "<tmp>/case/audit.jsonl:2: expected seq 2, found 3 (seq must be gap-free)",
      }
    `);

    await writeFile(path, Buffer.concat([Buffer.from(`${original[0]}\n`), Buffer.from([0xff, 0xfe, 0x0a])]));
    expect(await thrown(readAuditFile(path))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_FILE_CORRUPT",
        "message": "<tmp>/case/audit.jsonl:2: not valid UTF-8",
      }
    `);
  });

  it('refuses a second writer in the same process', async () => {
    const path = freshPath();
    await withSink(path, async () => {
      expect(await thrown(openAuditFile(path))).toMatchInlineSnapshot(`
        {
          "code": "AUDIT_LOCKED",
          "message": "<tmp>/case/audit.jsonl is already open for writing by this process (lock file <tmp>/case/audit.jsonl.lock); close that writer first, or remove the lock file if it is not running",
        }
      `);
    });
    // free again once closed
    await withSink(path, async (sink) => expect((await sink.append(event())).seq).toBe(1));
  });

  it('refuses a writer while another process holds the lock, and takes over once it died', async () => {
    const path = freshPath();
    const child = await holdInChild(path);
    try {
      const refusal = await thrown(openAuditFile(path));
      expect(refusal.code).toBe('AUDIT_LOCKED');
      expect(refusal.message.replace(String(child.pid), '<pid>')).toMatchInlineSnapshot(
        `"<tmp>/case/audit.jsonl is already open for writing by process <pid> (lock file <tmp>/case/audit.jsonl.lock); close that writer first, or remove the lock file if it is not running"`,
      );
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    // the dead child's lock is stale; its appended event survives
    await withSink(path, async (sink) => expect((await sink.append(event())).seq).toBe(2));
    expect((await readAuditFile(path)).map((e) => e.source)).toEqual(['cli', 'workflow']);
  });

  it('takes over a stale lock file left by a dead pid, but not one of a live pid', async () => {
    const path = freshPath();
    await withSink(path, async () => {}); // creates the directory
    await writeFile(`${path}.lock`, `${await deadPid()}\n`);
    await withSink(path, async (sink) => expect((await sink.append(event())).seq).toBe(1));
    expect(existsSync(`${path}.lock`)).toBe(false);

    await writeFile(`${path}.lock`, '1\n');
    expect((await thrown(openAuditFile(path))).message).toMatchInlineSnapshot(
      `"<tmp>/case/audit.jsonl is already open for writing by process 1 (lock file <tmp>/case/audit.jsonl.lock); close that writer first, or remove the lock file if it is not running"`,
    );
    await rm(`${path}.lock`);
  });

  it('refuses bad options and a path that is not a regular file', async () => {
    expect(await thrown(openAuditFile(freshPath(), { dedupeWindow: -1 }))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_INVALID_OPTIONS",
        "message": "dedupeWindow must be a non-negative integer",
      }
    `);
    expect(await thrown(openAuditFile(freshPath(), { fsync: 'sometimes' as never }))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_INVALID_OPTIONS",
        "message": "fsync must be 'always' or 'never', not sometimes",
      }
    `);
    expect(await thrown(openAuditFile(base))).toMatchInlineSnapshot(`
      {
        "code": "AUDIT_INVALID_OPTIONS",
        "message": "<tmp> is not a regular file",
      }
    `);
  });

  it('rejects an append when the clock returns an invalid date, and keeps working', async () => {
    let bad = true;
    await withSink(
      freshPath(),
      async (sink) => {
        expect(await thrown(sink.append(event()))).toMatchInlineSnapshot(`
          {
            "code": "AUDIT_INVALID_OPTIONS",
            "message": "audit clock returned an unusable date (Invalid Date)",
          }
        `);
        bad = false;
        expect((await sink.append(event())).seq).toBe(1);
      },
      { clock: () => (bad ? new Date(Number.NaN) : new Date()) },
    );
  });
});

const fileSinkUrl = new URL('./file-sink.ts', import.meta.url).href;

/** A child process that opens `path`, appends one event and waits (holding the lock) until killed. */
async function holdInChild(path: string): Promise<ChildProcessWithoutNullStreams> {
  const script = `
    import { openAuditFile } from ${JSON.stringify(fileSinkUrl)};
    const sink = await openAuditFile(${JSON.stringify(path)});
    await sink.append({ source: 'cli', agent: null, run: null, step: null, kind: 'policy.updated', attrs: {} });
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [chunk] = (await Promise.race([
    once(child.stdout, 'data'),
    once(child, 'exit').then(() => {
      throw new Error(`child exited: ${stderr}`);
    }),
  ])) as [Buffer];
  expect(chunk.toString()).toBe('ready\n');
  return child;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await once(child, 'exit');
  if (child.pid === undefined) throw new Error('no pid');
  return child.pid;
}
