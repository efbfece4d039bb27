import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditError } from './errors.ts';
import { fanOut } from './fan-out.ts';
import { openAuditFile } from './file-sink.ts';
import { createMemoryAudit } from './memory-sink.ts';
import { readAuditFile } from './read.ts';
import type { AuditClient, AuditEventInput } from './types.ts';

const input = (attrs: Record<string, unknown> = {}, id?: string): AuditEventInput => ({
  source: 'approvals',
  agent: 'ops-assistant',
  run: 'wf-1',
  step: 0,
  kind: 'approval.requested',
  attrs,
  ...(id === undefined ? {} : { id }),
});

async function code(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    if (error instanceof AuditError) return error.code;
    throw error;
  }
  throw new Error('expected an AuditError');
}

describe('createMemoryAudit', () => {
  it('assigns gap-free seq from 1, dedupes by id and keeps a frozen snapshot', async () => {
    const audit = createMemoryAudit({ clock: () => new Date('2026-11-25T10:00:00.000Z') });
    const stored = await Promise.all(
      Array.from({ length: 50 }, (_, i) => audit.append(input({ i }, `id-${i % 25}`))),
    );
    expect(stored.map((e) => e.seq)).toEqual([
      ...Array.from({ length: 25 }, (_, i) => i + 1),
      ...Array.from({ length: 25 }, (_, i) => i + 1),
    ]);
    const events = audit.events();
    expect(events).toHaveLength(25);
    expect(events[0]).toEqual({
      seq: 1,
      ts: '2026-11-25T10:00:00.000Z',
      source: 'approvals',
      agent: 'ops-assistant',
      run: 'wf-1',
      step: 0,
      kind: 'approval.requested',
      attrs: { i: 0 },
      id: 'id-0',
    });
    expect(Object.isFrozen(events) && Object.isFrozen(events[0])).toBe(true);
    await audit.append(input());
    expect(events).toHaveLength(25); // a snapshot, not a live view
  });

  it('copies attrs: later mutation of the input does not change the record', async () => {
    const audit = createMemoryAudit();
    const attrs = { list: [1, 2] };
    await audit.append(input(attrs));
    attrs.list.push(3);
    expect(audit.events()[0]?.attrs).toEqual({ list: [1, 2] });
  });

  it('refuses what the file sink refuses, without consuming a seq', async () => {
    const audit = createMemoryAudit();
    expect(await code(audit.append(input({ f: () => 1 })))).toBe('AUDIT_INVALID_EVENT');
    expect(await code(audit.append({ ...input(), kind: 'nope' as never }))).toBe('AUDIT_INVALID_EVENT');
    expect(await code(audit.append({ ...input(), run: 'r'.repeat(513) }))).toBe('AUDIT_INVALID_EVENT');
    expect((await audit.append(input())).seq).toBe(1);
  });
});

describe('fanOut', () => {
  let base: string;
  beforeAll(async () => {
    base = await realpath(await mkdtemp(join(tmpdir(), 'agent-runtime-audit-fan-')));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('appends to every client and returns the first client’s stored event', async () => {
    const file = await openAuditFile(join(base, 'a', 'audit.jsonl'));
    const printed: string[] = [];
    const printer: AuditClient = {
      append: async (e) => {
        printed.push(`${'seq' in e ? String(e.seq) : '?'} ${e.kind}`);
        return e as never;
      },
    };
    const memory = createMemoryAudit();
    try {
      await file.append(input({ before: true }));
      const both = fanOut(file, memory, printer);
      const stored = await both.append(input({ n: 1 }, 'x'));
      expect(stored.seq).toBe(2);
      expect(await both.append(input({ n: 2 }, 'x'))).toBe(stored);
      expect(printed).toEqual(['2 approval.requested', '2 approval.requested']);
      expect(memory.events().map((e) => [e.seq, e.attrs])).toEqual([[1, { n: 1 }]]);
      expect(await readAuditFile(file.path)).toHaveLength(2);
    } finally {
      await file.close();
    }
  });

  it('keeps a refused event from the other clients, and reports a failing other client', async () => {
    const memory = createMemoryAudit();
    const failing: AuditClient = {
      append: () => Promise.reject(new Error('stdout closed')),
    };
    expect(await code(fanOut(createMemoryAudit(), memory).append(input({ f: Symbol('x') })))).toBe(
      'AUDIT_INVALID_EVENT',
    );
    expect(memory.events()).toEqual([]);
    try {
      await fanOut(memory, failing).append(input());
      throw new Error('expected a failure');
    } catch (error) {
      expect(error).toBeInstanceOf(AuditError);
      expect((error as AuditError).message).toMatchInlineSnapshot(
        `"audit event #1 was stored, but 1 of 1 further client(s) failed: stdout closed"`,
      );
    }
    expect(memory.events()).toHaveLength(1);
  });
});
