import { appendFile, mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditError } from './errors.ts';
import { openAuditFile } from './file-sink.ts';
import { followAuditFile, formatAuditEvent, readAuditFile } from './read.ts';
import type { AuditEvent, AuditEventInput } from './types.ts';

let base: string;
let counter = 0;

beforeAll(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), 'agent-runtime-audit-read-')));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

function freshPath(): string {
  counter += 1;
  return join(base, `case-${counter}`, 'audit.jsonl');
}

const input = (n: number): AuditEventInput => ({
  source: 'guard',
  agent: 'ops-assistant',
  run: 'wf-1',
  step: n,
  kind: 'execution.result',
  attrs: { n },
});

/** Collects `count` events from a follow, then aborts it. */
async function take(events: AsyncGenerator<AuditEvent>, count: number, controller: AbortController) {
  const seen: AuditEvent[] = [];
  for await (const e of events) {
    seen.push(e);
    if (seen.length === count) controller.abort();
  }
  return seen;
}

describe('readAuditFile', () => {
  it('names the file when it does not exist', async () => {
    await expect(readAuditFile(join(base, 'missing.jsonl'))).rejects.toThrow(/ENOENT/);
  });

  it('reads an empty file as no events', async () => {
    const path = freshPath();
    await (await openAuditFile(path)).close();
    expect(await readAuditFile(path)).toEqual([]);
  });
});

describe('followAuditFile', () => {
  it('yields existing events from fromSeq, then appended ones in order, until aborted', async () => {
    const path = freshPath();
    const sink = await openAuditFile(path);
    try {
      for (let n = 1; n <= 3; n++) await sink.append(input(n));
      const controller = new AbortController();
      const following = take(followAuditFile(path, { signal: controller.signal, fromSeq: 2 }), 6, controller);
      for (let n = 4; n <= 7; n++) {
        await sink.append(input(n));
        if (n % 2 === 0) await new Promise((r) => setTimeout(r, 20));
      }
      expect((await following).map((e) => e.seq)).toEqual([2, 3, 4, 5, 6, 7]);
    } finally {
      await sink.close();
    }
  });

  it('waits for a file that does not exist yet and for the rest of a half-written line', async () => {
    const path = freshPath();
    const controller = new AbortController();
    const following = take(
      followAuditFile(path, { signal: controller.signal, pollIntervalMs: 20 }),
      2,
      controller,
    );
    await new Promise((r) => setTimeout(r, 50));
    const sink = await openAuditFile(path, { clock: () => new Date('2026-11-25T10:00:00.000Z') });
    await sink.append(input(1));
    await sink.close();
    const line =
      '{"seq":2,"ts":"2026-11-25T10:00:00.000Z","source":"cli","agent":null,"run":null,"step":null,';
    await appendFile(path, line);
    await new Promise((r) => setTimeout(r, 80));
    await appendFile(path, '"kind":"posture.changed","attrs":{}}\n');
    const seen = await following;
    expect(seen.map((e) => [e.seq, e.kind])).toEqual([
      [1, 'execution.result'],
      [2, 'posture.changed'],
    ]);
  });

  it('ends at once when the signal is already aborted, and on abort while waiting', async () => {
    const path = freshPath();
    const aborted = AbortSignal.abort();
    const none: AuditEvent[] = [];
    for await (const e of followAuditFile(path, { signal: aborted })) none.push(e);
    expect(none).toEqual([]);

    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    for await (const e of followAuditFile(path, { signal: controller.signal })) none.push(e);
    expect(none).toEqual([]);
  });

  it('throws on a corrupted line, naming file:line', async () => {
    const path = freshPath();
    const sink = await openAuditFile(path);
    await sink.append(input(1));
    await sink.close();
    await appendFile(path, 'not json\n');
    const seen: number[] = [];
    try {
      for await (const e of followAuditFile(path, { signal: new AbortController().signal })) seen.push(e.seq);
      throw new Error('expected an error');
    } catch (error) {
      if (!(error instanceof AuditError)) throw error;
      expect(seen).toEqual([1]);
      expect(error.code).toBe('AUDIT_FILE_CORRUPT');
      expect(error.message.replaceAll(base, '<tmp>').replace(/case-\d+/g, 'case')).toMatchInlineSnapshot(
        `"<tmp>/case/audit.jsonl:2: not valid JSON (Unexpected token 'o', "not json" is not valid JSON)"`,
      );
    }
  });
});

describe('formatAuditEvent', () => {
  const stored = (attrs: Record<string, unknown>, extra: Partial<AuditEvent> = {}): AuditEvent => ({
    seq: 12,
    ts: '2026-11-25T10:00:00.000Z',
    source: 'workflow',
    agent: 'ops-assistant',
    run: 'abc',
    step: 3,
    kind: 'decision',
    attrs,
    ...extra,
  });

  it('prints seq, ts, source, agent, run, step, kind and attrs as k=v', () => {
    expect(formatAuditEvent(stored({ tier: 'preapproved', rule: 'write-docs', tool: 'fs.write' }))).toBe(
      '#12 2026-11-25T10:00:00.000Z workflow ops-assistant run=abc step=3 decision tier=preapproved rule=write-docs tool=fs.write',
    );
    expect(
      formatAuditEvent(
        stored(
          { ok: true, count: 2, args: { path: '/tmp/x' }, none: null },
          { agent: null, run: null, step: null },
        ),
      ),
    ).toMatchInlineSnapshot(
      `"#12 2026-11-25T10:00:00.000Z workflow - decision ok=true count=2 args={"path":"/tmp/x"} none=null"`,
    );
  });

  it('escapes control characters so an attr cannot forge a line', () => {
    const hostile =
      'ok\n#13 2026-11-25T10:00:01.000Z guard ops-assistant decision tier=preapproved\r\u2028\u202e\u001b[2J';
    const line = formatAuditEvent(
      stored({ reason: hostile, 'bad\nkey': 'v', path: 'C:\\tmp\\new' }, { agent: 'a\nb' }),
    );
    // eslint-disable-next-line no-control-regex -- asserting their absence
    expect(line).not.toMatch(/[\n\r\u2028\u2029\u202e\u001b]/);
    expect(line).toMatchInlineSnapshot(
      `"#12 2026-11-25T10:00:00.000Z workflow "a\\nb" run=abc step=3 decision reason="ok\\n#13 2026-11-25T10:00:01.000Z guard ops-assistant decision tier=preapproved\\r\\u2028\\u202e…" "bad\\nkey"=v path=C:\\\\tmp\\\\new"`,
    );
  });

  it('truncates long values to 80 code points', () => {
    const line = formatAuditEvent(
      stored({
        long: 'é'.repeat(100),
        emoji: '😀'.repeat(81),
        list: Array.from({ length: 40 }, (_, i) => i),
      }),
    );
    expect(line).toMatchInlineSnapshot(
      `"#12 2026-11-25T10:00:00.000Z workflow ops-assistant run=abc step=3 decision long=éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé… emoji=😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀… list=[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29…"`,
    );
  });
});
