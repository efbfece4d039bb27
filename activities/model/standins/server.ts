/**
 * The machinery both vendor stand-ins share: a real `node:http` server on 127.0.0.1 (random port)
 * that records every request, answers from a queue of scripted replies (non-streaming JSON, or SSE
 * when the body says `"stream": true`) and injects failures into the next N requests. The wire
 * formats themselves live in `openai-standin.ts` and `anthropic-standin.ts`.
 * @module
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the stand-in received. */
export interface RecordedRequest {
  readonly method: string;
  /** Path and query, e.g. `/v1/messages`. */
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  /** The body parsed as JSON; the raw text when it is not JSON; undefined when empty. */
  readonly body: unknown;
  /** 1-based number of the request. */
  readonly n: number;
}

/** A tool call the scripted model makes. */
export interface StandInToolCall {
  /** Default `call_standin_<n>_<i>` (OpenAI) or `toolu_standin_<n>_<i>` (Anthropic). */
  readonly id?: string;
  /** Our name or the wire name: dots are written as `__`, as the model saw the tool offered. */
  readonly name: string;
  /**
   * The arguments: a value is sent as JSON; a string is sent verbatim as the arguments text
   * (OpenAI `arguments`, Anthropic `partial_json`), so invalid JSON can be scripted too.
   */
  readonly args: unknown;
}

/** One scripted model reply. */
export interface StandInReply {
  readonly text?: string;
  readonly toolCalls?: readonly StandInToolCall[];
  /** Reported usage; default about four characters per token of the request's messages and the reply. */
  readonly usage?: { readonly inputTokens: number; readonly outputTokens: number };
  /** Sent verbatim as `finish_reason` / `stop_reason`; default from whether there are tool calls. */
  readonly finishReason?: string;
  /** Reported model; default the request's. */
  readonly model?: string;
}

/** A reply, or a function of the request that makes one. */
export type StandInReplySource = StandInReply | ((request: RecordedRequest) => StandInReply);

/** A failure to inject (see {@link StandIn.failNext}). */
export type StandInFailure =
  /** HTTP 500 in the vendor's error shape. */
  | { readonly kind: 'server_error' }
  /** HTTP 429 with `retry-after` (seconds, default 1). */
  | { readonly kind: 'rate_limit'; readonly retryAfterSeconds?: number }
  /** Anthropic: HTTP 529 `overloaded_error`; OpenAI: HTTP 503 "model is currently overloaded". */
  | { readonly kind: 'overloaded' }
  /** HTTP 400 with the vendor's context-length error. */
  | { readonly kind: 'context_length' }
  /** HTTP 401 with the vendor's invalid-key error. */
  | { readonly kind: 'auth' }
  /** HTTP 200 with a body (or, streaming, an event) that is not valid JSON. */
  | { readonly kind: 'malformed_json' }
  /** Waits `delayMs` (default 1000) before sending headers, then answers normally. */
  | { readonly kind: 'slow_first_byte'; readonly delayMs?: number }
  /** Never answers; the connection stays open until the client gives up or the stand-in closes. */
  | { readonly kind: 'hang' }
  /**
   * Sends the first `afterChunks` (default 2) SSE events of the reply (non-streaming: half the body),
   * waits `delayMs` (default 100, so the client reads them) and drops the connection.
   */
  | { readonly kind: 'disconnect'; readonly afterChunks?: number; readonly delayMs?: number }
  /** Streaming: sends `afterChunks` (default 0) events, then the vendor's in-stream error event, then ends. */
  | { readonly kind: 'stream_error'; readonly afterChunks?: number }
  /** Any HTTP answer. */
  | {
      readonly kind: 'http';
      readonly status: number;
      /** Sent as JSON unless a string. */
      readonly body: unknown;
      readonly headers?: Readonly<Record<string, string>>;
    };

/** The kinds of {@link StandInFailure} that need no parameters. */
export type StandInFailureKind = Exclude<StandInFailure['kind'], 'http'>;

/** A running stand-in. */
export interface StandIn {
  /** The base URL a provider config takes (`…/v1` for OpenAI, the origin for Anthropic). */
  readonly url: string;
  /** Every request received so far, in order (live). */
  readonly requests: readonly RecordedRequest[];
  /** Queues replies for the next requests, in order; when the queue is empty the fallback answers. */
  reply(...replies: StandInReplySource[]): void;
  /** Makes the next `count` (default 1) requests fail so; failures come before queued replies. */
  failNext(failure: StandInFailure | StandInFailureKind, count?: number): void;
  /** Stops the server and drops every open connection. */
  close(): Promise<void>;
}

/** Options of both stand-ins. */
export interface StandInOptions {
  /** Replies queued from the start. */
  readonly replies?: readonly StandInReplySource[];
  /** Answers when the queue is empty (default `{ text: 'OK.' }`). */
  readonly fallback?: StandInReplySource;
  /** When set, requests without this key get the vendor's 401. */
  readonly apiKey?: string;
  /** Characters per streamed text or arguments piece (default 8). */
  readonly chunkChars?: number;
  /** Pause between streamed events in ms (default 0). */
  readonly chunkDelayMs?: number;
}

/** An HTTP answer a wire format produces. */
export interface WireAnswer {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent as JSON unless a string. */
  readonly body: unknown;
}

/** What a vendor's wire format supplies to {@link startStandIn}. */
export interface WireFormat {
  /** Appended to the origin to make {@link StandIn.url}. */
  readonly basePath: string;
  /** Headers on every answer (request ids). */
  headers(n: number): Record<string, string>;
  /** Whether the request goes to the endpoint (else 404). */
  routes(method: string, path: string): boolean;
  notFound(method: string, path: string, n: number): WireAnswer;
  /** Whether the request carries `apiKey`. */
  authorized(headers: http.IncomingHttpHeaders, apiKey: string): boolean;
  /** A request the vendor would refuse (missing fields, unparsable JSON); undefined when fine. */
  validate(request: RecordedRequest, parsed: boolean): WireAnswer | undefined;
  /** The error answer of a failure kind. */
  failure(
    kind: 'server_error' | 'rate_limit' | 'overloaded' | 'context_length' | 'auth',
    n: number,
    retryAfterSeconds: number,
  ): WireAnswer;
  /** The non-streaming body of a reply. */
  completion(reply: StandInReply, request: RecordedRequest, usage: Usage): unknown;
  /** The SSE events of a reply, each a complete `…\n\n` block. */
  events(reply: StandInReply, request: RecordedRequest, usage: Usage, chunkChars: number): string[];
  /** The in-stream error event. */
  streamError(n: number): string;
  /** An SSE event whose data is not JSON. */
  malformedEvent(): string;
}

/** Resolved usage of a reply. */
export interface Usage {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** Splits text into pieces of at most `size` characters (none for empty text). */
export function pieces(text: string, size: number): string[] {
  if (text === '') return [];
  const out: string[] = [];
  const chars = Array.from(text);
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

/** The arguments text of a scripted tool call (strings verbatim). */
export function argumentsText(args: unknown): string {
  return typeof args === 'string' ? args : (JSON.stringify(args) ?? 'null');
}

/** A tool name as the model writes it on the wire. */
export function wireToolName(name: string): string {
  return name.replaceAll('.', '__');
}

/** One SSE block. */
export function sse(data: unknown, event?: string): string {
  const text = typeof data === 'string' ? data : JSON.stringify(data);
  return `${event === undefined ? '' : `event: ${event}\n`}data: ${text}\n\n`;
}

function defaultUsage(reply: StandInReply, request: RecordedRequest): Usage {
  const messages = (request.body as { messages?: unknown } | null)?.messages;
  let output = reply.text?.length ?? 0;
  for (const call of reply.toolCalls ?? []) output += call.name.length + argumentsText(call.args).length;
  return {
    inputTokens: Math.ceil((JSON.stringify(messages ?? '') ?? '').length / 4),
    outputTokens: Math.ceil(output / 4),
  };
}

/** Starts a stand-in speaking `wire`. */
export async function startStandIn(wire: WireFormat, options: StandInOptions = {}): Promise<StandIn> {
  const requests: RecordedRequest[] = [];
  const replies: StandInReplySource[] = [...(options.replies ?? [])];
  const failures: StandInFailure[] = [];
  // pending pauses, resolved early when the stand-in closes
  const timers = new Map<NodeJS.Timeout, () => void>();
  const fallback = options.fallback ?? { text: 'OK.' };
  const chunkChars = Math.max(1, options.chunkChars ?? 8);
  const chunkDelayMs = options.chunkDelayMs ?? 0;
  let closed = false;

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.set(timer, resolve);
    });

  const write = (res: http.ServerResponse, chunk: string): Promise<boolean> =>
    new Promise((resolve) => {
      if (closed || res.destroyed || res.writableEnded) {
        resolve(false);
        return;
      }
      res.write(chunk, (error) => resolve(error === undefined || error === null));
    });

  const send = (res: http.ServerResponse, n: number, answer: WireAnswer): void => {
    if (closed || res.destroyed || res.writableEnded) return;
    const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    res.writeHead(answer.status, {
      'content-type': 'application/json',
      ...wire.headers(n),
      ...answer.headers,
    });
    res.end(text);
  };

  const nextReply = (request: RecordedRequest): StandInReply => {
    const source = replies.shift() ?? fallback;
    return typeof source === 'function' ? source(request) : source;
  };

  const answer = async (req: http.IncomingMessage, res: http.ServerResponse, text: string): Promise<void> => {
    const n = requests.length + 1;
    let body: unknown = text === '' ? undefined : text;
    let parsed = text === '';
    try {
      if (text !== '') {
        body = JSON.parse(text) as unknown;
        parsed = true;
      }
    } catch {
      // recorded as text
    }
    const request: RecordedRequest = Object.freeze({
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: req.headers,
      body,
      n,
    });
    requests.push(request);

    if (!wire.routes(request.method, request.path))
      return send(res, n, wire.notFound(request.method, request.path, n));
    if (options.apiKey !== undefined && !wire.authorized(req.headers, options.apiKey)) {
      return send(res, n, wire.failure('auth', n, 0));
    }
    const refused = wire.validate(request, parsed);
    if (refused !== undefined) return send(res, n, refused);

    const failure = failures.shift();
    const streaming = (body as { stream?: unknown } | null)?.stream === true;
    switch (failure?.kind) {
      case undefined:
      case 'slow_first_byte':
      case 'disconnect':
      case 'stream_error':
        break;
      case 'hang':
        return;
      case 'http':
        return send(res, n, failure);
      case 'malformed_json':
        if (!streaming) return send(res, n, { status: 200, body: '{"id": "truncated", "content": [' });
        break;
      case 'rate_limit':
        return send(res, n, wire.failure('rate_limit', n, failure.retryAfterSeconds ?? 1));
      case 'server_error':
      case 'overloaded':
      case 'context_length':
      case 'auth':
        return send(res, n, wire.failure(failure.kind, n, 0));
    }
    if (failure?.kind === 'slow_first_byte') await sleep(failure.delayMs ?? 1000);
    if (res.destroyed || closed) return;

    const reply = nextReply(request);
    const usage = reply.usage ?? defaultUsage(reply, request);
    if (!streaming) {
      const json = JSON.stringify(wire.completion(reply, request, usage));
      if (failure?.kind === 'disconnect') {
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(json)),
          ...wire.headers(n),
        });
        await write(res, json.slice(0, Math.floor(json.length / 2)));
        await sleep(failure.delayMs ?? 100);
        res.destroy();
        return;
      }
      if (closed) return;
      return send(res, n, { status: 200, body: json });
    }

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...wire.headers(n),
    });
    res.flushHeaders();
    let events = wire.events(reply, request, usage, chunkChars);
    if (failure?.kind === 'malformed_json') events = [wire.malformedEvent()];
    if (failure?.kind === 'stream_error')
      events = [...events.slice(0, failure.afterChunks ?? 0), wire.streamError(n)];
    const cut = failure?.kind === 'disconnect' ? (failure.afterChunks ?? 2) : undefined;
    for (const [index, event] of events.entries()) {
      if (cut !== undefined && index >= cut) break;
      if (index > 0 && chunkDelayMs > 0) await sleep(chunkDelayMs);
      if (!(await write(res, event))) return;
    }
    if (failure?.kind === 'disconnect') {
      await sleep(failure.delayMs ?? 100);
      res.destroy();
      return;
    }
    res.end();
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      answer(req, res, Buffer.concat(chunks).toString('utf8')).catch((error: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`stand-in failed: ${error instanceof Error ? error.message : String(error)}`);
        } else {
          res.destroy();
        }
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return Object.freeze({
    url: `http://127.0.0.1:${port}${wire.basePath}`,
    requests,
    reply: (...more: StandInReplySource[]) => {
      replies.push(...more);
    },
    failNext: (failure: StandInFailure | StandInFailureKind, count = 1) => {
      const resolved: StandInFailure =
        typeof failure === 'string' ? ({ kind: failure } as StandInFailure) : failure;
      for (let i = 0; i < count; i++) failures.push(resolved);
    },
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        for (const [timer, resolveSleep] of timers) {
          clearTimeout(timer);
          resolveSleep();
        }
        timers.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
