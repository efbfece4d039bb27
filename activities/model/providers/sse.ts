/**
 * A server-sent events parser (the WHATWG `text/event-stream` rules), by hand: lines end in LF,
 * CRLF or CR (also when split across chunks); `event:` names the event, `data:` lines are joined
 * with LF; one leading space after the colon is dropped; `:` lines are comments; a blank line
 * dispatches; an event without data is not dispatched; an unfinished event at the end of the
 * stream is discarded.
 * @module
 */

/** One dispatched event. */
export interface SSEEvent {
  /** The `event:` field; `message` when absent. */
  readonly event: string;
  readonly data: string;
  /** The last `id:` field seen, if any. */
  readonly id: string | undefined;
}

/** Longest line accepted (bytes of text); longer means the peer is not speaking SSE. */
export const MAX_SSE_LINE_CHARS = 8 * 1024 * 1024;

/** Thrown when a line exceeds {@link MAX_SSE_LINE_CHARS}. */
export class SSELineTooLongError extends Error {
  constructor() {
    super(`event-stream line longer than ${MAX_SSE_LINE_CHARS} characters`);
    this.name = 'SSELineTooLongError';
  }
}

/** Parses an event stream; errors of `chunks` propagate unchanged. */
export async function* parseSSE(chunks: AsyncIterable<Uint8Array | string>): AsyncGenerator<SSEEvent> {
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let first = true;
  let event = '';
  let data: string[] = [];
  let hasData = false;
  let id: string | undefined;

  // returns the event a line dispatches, if any
  const line = (text: string): SSEEvent | undefined => {
    if (text === '') {
      const out = hasData
        ? { event: event === '' ? 'message' : event, data: data.join('\n'), id }
        : undefined;
      event = '';
      data = [];
      hasData = false;
      return out;
    }
    if (text.startsWith(':')) return undefined;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        event = value;
        break;
      case 'data':
        data.push(value);
        hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) id = value;
        break;
      default:
        // `retry` and unknown fields are ignored
        break;
    }
    return undefined;
  };

  const drain = function* (final: boolean): Generator<SSEEvent> {
    let start = 0;
    for (;;) {
      let end = -1;
      for (let i = start; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i);
        if (c === 10 || c === 13) {
          end = i;
          break;
        }
      }
      if (end === -1) break;
      // a CR at the very end may be the first half of a CRLF split across chunks
      if (buffer.charCodeAt(end) === 13 && end === buffer.length - 1 && !final) break;
      const out = line(buffer.slice(start, end));
      if (out !== undefined) yield out;
      start = buffer.charCodeAt(end) === 13 && buffer.charCodeAt(end + 1) === 10 ? end + 2 : end + 1;
    }
    buffer = buffer.slice(start);
    if (buffer.length > MAX_SSE_LINE_CHARS) throw new SSELineTooLongError();
  };

  for await (const chunk of chunks) {
    let text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    if (first && text.length > 0) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      first = false;
    }
    buffer += text;
    yield* drain(false);
  }
  buffer += decoder.decode();
  yield* drain(true);
}
