import { describe, expect, it } from 'vitest';
import { MAX_SSE_LINE_CHARS, parseSSE, SSELineTooLongError } from './sse.ts';
import type { SSEEvent } from './sse.ts';

async function* from(chunks: readonly (string | Uint8Array)[]): AsyncGenerator<string | Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

async function parse(chunks: readonly (string | Uint8Array)[]): Promise<SSEEvent[]> {
  const events: SSEEvent[] = [];
  for await (const event of parseSSE(from(chunks))) events.push(event);
  return events;
}

describe('parseSSE', () => {
  it('parses event and data fields, joins data lines, skips comments and unknown fields', async () => {
    expect(
      await parse([
        ': keep-alive\n',
        'event: message_start\ndata: {"a":1}\n\n',
        'retry: 100\nfoo: bar\ndata:first\ndata:  second\n\n',
        'id: 7\ndata\n\n',
      ]),
    ).toEqual([
      { event: 'message_start', data: '{"a":1}', id: undefined },
      // one leading space is dropped, not two
      { event: 'message', data: 'first\n second', id: undefined },
      { event: 'message', data: '', id: '7' },
    ]);
  });

  it('handles LF, CRLF and CR line ends, also split across chunks', async () => {
    const events = await parse(['data: a\r', '\n\r', '\ndata: b\r\rdata: c\n', '\n']);
    expect(events.map((e) => e.data)).toEqual(['a', 'b', 'c']);
  });

  it('splits anywhere, even inside a UTF-8 character', async () => {
    const bytes = new TextEncoder().encode('\uFEFFevent: x\ndata: héllo ✓\n\n');
    const chunks = Array.from(bytes, (byte) => Uint8Array.of(byte));
    expect(await parse(chunks)).toEqual([{ event: 'x', data: 'héllo ✓', id: undefined }]);
  });

  it('does not dispatch an event without data or an unfinished last event', async () => {
    expect(await parse(['event: ping\n\n', 'data: done\n\n', 'data: cut off'])).toEqual([
      { event: 'message', data: 'done', id: undefined },
    ]);
  });

  it('refuses a line longer than the limit', async () => {
    const long = 'x'.repeat(MAX_SSE_LINE_CHARS + 1);
    await expect(parse([`data: ${long}`])).rejects.toBeInstanceOf(SSELineTooLongError);
  });

  it('passes the source’s error through unchanged', async () => {
    const broken = new Error('socket hang up');
    async function* source(): AsyncGenerator<string> {
      yield 'data: one\n\n';
      throw broken;
    }
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const event of parseSSE(source())) seen.push(event.data);
      })(),
    ).rejects.toBe(broken);
    expect(seen).toEqual(['one']);
  });
});
