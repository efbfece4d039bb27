/**
 * The model gateway's OpenAI-compatible endpoint (`POST /v1/chat/completions`, plain and
 * streaming): agents not built on agent-runtime send their model traffic here, authenticated by a
 * per-agent API key, and get the same routing, budgets and tracing as AgentRun's model steps.
 * A stream falls back only before its first token; one broken after output ends with an explicit
 * error event and never with `[DONE]`.
 * @module
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { ModelError, ModelErrorCode } from '../errors.ts';
import type { ModelResponse, ProposedCall, TokenUsage } from '../types.ts';
import {
  chatCompletion,
  chunk,
  invalidRequest,
  parseChatCompletionRequest,
  toolCallDelta,
  usageChunk,
  wireFinish,
} from './openai-wire.ts';
import type { GatewayRequest, WireError } from './openai-wire.ts';

/** One event of a streamed model reply. */
export type GatewayStreamEvent =
  | { readonly type: 'text'; readonly delta: string }
  | { readonly type: 'tool_call'; readonly call: ProposedCall }
  | { readonly type: 'usage'; readonly usage: TokenUsage }
  | { readonly type: 'finish'; readonly finishReason: ModelResponse['finishReason'] };

/** What the endpoint calls: the model proxy, for the agent the key belongs to. */
export interface GatewayCaller {
  complete(agentId: string, request: GatewayRequest, signal: AbortSignal): Promise<ModelResponse>;
  /** Streams a reply; errors before the first event are typed {@link ModelError}s (and may have fallen back). */
  stream?(agentId: string, request: GatewayRequest, signal: AbortSignal): AsyncIterable<GatewayStreamEvent>;
}

export interface ModelGatewayOptions {
  /** Per-agent API keys, stored as sha256 hex. */
  readonly keys: readonly { readonly agentId: string; readonly keySha256: string }[];
  readonly caller: GatewayCaller;
  readonly now?: () => number;
  readonly newId?: () => string;
  readonly maxBodyBytes?: number;
}

const STATUS: Readonly<
  Partial<Record<ModelErrorCode, { status: number; type: string; code: string | null }>>
> = {
  MODEL_RATE_LIMIT: { status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  MODEL_BUDGET_EXHAUSTED: { status: 429, type: 'insufficient_quota', code: 'insufficient_quota' },
  MODEL_TIMEOUT: { status: 504, type: 'timeout', code: 'timeout' },
  MODEL_OVERLOADED: { status: 503, type: 'server_error', code: 'overloaded' },
  MODEL_CONTEXT_LENGTH: { status: 400, type: 'invalid_request_error', code: 'context_length_exceeded' },
  MODEL_CONTENT_POLICY: { status: 400, type: 'invalid_request_error', code: 'content_policy_violation' },
  MODEL_BAD_REQUEST: { status: 400, type: 'invalid_request_error', code: null },
};

/** A model failure in OpenAI's error shape (upstream credentials and 5xx are the gateway's problem: 502). */
export function wireErrorOf(error: unknown): WireError {
  if (error instanceof ModelError) {
    const mapped = STATUS[error.code] ?? { status: 502, type: 'server_error', code: 'upstream_error' };
    return {
      status: mapped.status,
      body: { error: { message: error.message, type: mapped.type, code: mapped.code } },
    };
  }
  return { status: 500, body: { error: { message: 'internal error', type: 'server_error', code: null } } };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

async function readJson(
  req: IncomingMessage,
  max: number,
): Promise<{ ok: true; value: unknown } | { ok: false; error: WireError }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const part of req) {
    size += (part as Buffer).length;
    if (size > max) return { ok: false, error: { ...invalidRequest('request body too large'), status: 413 } };
    chunks.push(part as Buffer);
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown };
  } catch {
    return { ok: false, error: invalidRequest('the body is not JSON') };
  }
}

/** Builds the endpoint's request handler. */
export function createModelGateway(options: ModelGatewayOptions): RequestListener {
  const keys = options.keys.map((k) => ({ agentId: k.agentId, hash: Buffer.from(k.keySha256, 'hex') }));
  const now = options.now ?? Date.now;
  const newId = options.newId ?? (() => `chatcmpl-${randomUUID().replaceAll('-', '')}`);
  const maxBody = options.maxBodyBytes ?? 4 * 1024 * 1024;

  const agentOf = (req: IncomingMessage): string | null => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer (\S+)$/.exec(header);
    if (!match?.[1]) return null;
    const hash = sha256(match[1]);
    // compare against every key (constant time each) so timing says nothing about which matched
    let found: string | null = null;
    for (const key of keys)
      if (key.hash.length === hash.length && timingSafeEqual(key.hash, hash)) found = key.agentId;
    return found;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/chat/completions')
      return send(res, 404, { error: { message: 'not found', type: 'invalid_request_error', code: null } });
    if (req.method !== 'POST')
      return send(res, 405, { error: { message: 'use POST', type: 'invalid_request_error', code: null } });
    const agentId = agentOf(req);
    if (agentId === null)
      return send(res, 401, {
        error: { message: 'invalid API key', type: 'invalid_request_error', code: 'invalid_api_key' },
      });
    const body = await readJson(req, maxBody);
    if (!body.ok) return send(res, body.error.status, body.error.body);
    const parsed = parseChatCompletionRequest(body.value);
    if (!parsed.ok) return send(res, parsed.error.status, parsed.error.body);
    const request = parsed.request;
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableEnded) abort.abort();
    });
    const id = newId();
    const created = Math.floor(now() / 1000);
    if (!request.stream || !options.caller.stream) {
      try {
        const response = await options.caller.complete(agentId, request, abort.signal);
        return send(res, 200, chatCompletion(id, created, request.model, response));
      } catch (error) {
        const wire = wireErrorOf(error);
        return send(res, wire.status, wire.body);
      }
    }
    // streaming: headers only once the first event is there, so an early failure is still a plain error
    let started = false;
    let toolIndex = 0;
    try {
      for await (const event of options.caller.stream(agentId, request, abort.signal)) {
        if (!started) {
          started = true;
          res.writeHead(200, {
            'content-type': 'text/event-stream',
            'cache-control': 'no-store',
            connection: 'keep-alive',
          });
          res.write(chunk(id, created, request.model, { role: 'assistant', content: '' }));
        }
        if (event.type === 'text') res.write(chunk(id, created, request.model, { content: event.delta }));
        else if (event.type === 'tool_call')
          res.write(chunk(id, created, request.model, toolCallDelta(toolIndex++, event.call)));
        else if (event.type === 'usage') res.write(usageChunk(id, created, request.model, event.usage));
        else res.write(chunk(id, created, request.model, {}, wireFinish(event.finishReason)));
      }
      if (!started) throw new ModelError(ModelErrorCode.badResponse, 'the model stream ended without output');
      res.end('data: [DONE]\n\n');
    } catch (error) {
      const wire = wireErrorOf(error);
      if (!started) return send(res, wire.status, wire.body);
      // after output: an explicit error event, never a clean finish
      res.write(`data: ${JSON.stringify({ ...wire.body, finish_reason: 'error' })}\n\n`);
      res.end();
    }
  };

  return (req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent)
        send(res, 500, { error: { message: 'internal error', type: 'server_error', code: null } });
      else res.end();
    });
  };
}
