/**
 * The model proxy: every model call of a run (and of the OpenAI-compatible endpoint) passes here.
 * It reserves tokens against the run's and the agent's daily budget before the call, routes it
 * (fallback, retries, breakers) when the run asks for the worker's routes, reconciles the budget
 * with the actual usage after (releasing it on failure), and hands a trace of the call — prompt,
 * tools offered, completion, proposed calls with their stated rationale, the attempt chain, usage,
 * latency and the proxy's own overhead — to a background writer, redacted, off the critical path.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ModelError, ModelErrorCode } from './errors.ts';
import { utcDayKey } from './budget/index.ts';
import type { ModelRouter, RouteAttempt } from './routing/index.ts';
import type { ModelTrace } from './traces/index.ts';
import type { ModelProvider, ModelRequest, ModelResponse, ProposedCall, TokenUsage } from './types.ts';

/** Outcome of a budget reservation (structurally the budget store's). */
export type Reservation =
  | { readonly ok: true; readonly reservationId: string }
  | {
      readonly ok: false;
      readonly scope: 'run' | 'agent_day';
      readonly limit: number;
      readonly used: number;
      readonly reserved: number;
    };

/** The token budget the proxy reserves against (see `budget/`). */
export interface ProxyBudget {
  reserve(input: {
    readonly runId: string;
    readonly agentId: string;
    readonly dayKey: string;
    readonly tokens: number;
    readonly runLimit: number | null;
    readonly agentDailyLimit: number | null;
  }): Promise<Reservation>;
  reconcile(reservationId: string, actualTokens: number): Promise<unknown>;
  release(reservationId: string): Promise<unknown>;
}

/** One event of a streamed reply. */
export type ProxyStreamEvent =
  | { readonly type: 'text'; readonly delta: string }
  | { readonly type: 'tool_call'; readonly call: ProposedCall }
  | { readonly type: 'usage'; readonly usage: TokenUsage }
  | {
      readonly type: 'finish';
      readonly finishReason: ModelResponse['finishReason'];
      readonly model?: string;
    };

/** One call as the trace writer receives it (before redaction). */
export interface ProxyTrace {
  readonly id: string;
  readonly ts: number;
  readonly agentId: string;
  readonly runId: string;
  readonly step: number;
  readonly purpose: string;
  readonly route: string;
  readonly target: string;
  readonly provider: string;
  readonly model: string;
  readonly attempts: readonly RouteAttempt[];
  readonly fallbackCause: string | null;
  readonly request: ModelRequest;
  readonly response: ModelResponse | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly latencyMs: number;
  readonly overheadMs: number;
  readonly reservedTokens: number;
}

export interface ModelProxyOptions {
  /** Direct providers by kind (`scripted`, `openai-compatible`, `anthropic`). */
  readonly providers: Readonly<Record<string, ModelProvider>>;
  /** The worker's routes, used by runs whose model config is `{ provider: 'routed' }`. */
  readonly router?: ModelRouter;
  readonly budget?: ProxyBudget;
  /** The agent's daily token limit, or null for none. */
  readonly agentDailyTokens?: (agentId: string) => number | null;
  /** Tokens reserved for the completion when the model config names no `maxTokens` (default 4,096). */
  readonly defaultMaxTokens?: number;
  /** Receives each call's trace; must not block (the trace writer queues). */
  readonly onTrace?: (trace: ProxyTrace) => void;
  readonly now?: () => number;
  readonly newId?: () => string;
}

/** The proxy's answer: the response plus what the audit record and traces show. */
export interface ProxiedResponse extends ModelResponse {
  readonly proxy: {
    readonly traceId: string;
    readonly target: string;
    readonly route: string;
    readonly attempts: number;
    readonly fallbackCause: string | null;
    readonly overheadMs: number;
    /** The whole turn (every attempt plus the proxy's own work), ms. */
    readonly latencyMs: number;
  };
}

/** Rough size of a prompt in tokens (4 characters a token), for the reservation only. */
export function estimateTokens(request: ModelRequest): number {
  let chars = 0;
  for (const m of request.messages) chars += JSON.stringify(m).length;
  for (const t of request.tools) chars += JSON.stringify(t).length;
  return Math.ceil(chars / 4);
}

function maxTokensOf(request: ModelRequest, fallback: number): number {
  const configured = (request.model as { maxTokens?: unknown }).maxTokens;
  return typeof configured === 'number' && configured > 0 ? configured : fallback;
}

/** Builds the proxy. */
export function createModelProxy(options: ModelProxyOptions) {
  const now = options.now ?? Date.now;
  const newId = options.newId ?? randomUUID;

  /** Reserves `tokens` for the call; null when no budget applies; throws `MODEL_BUDGET_EXHAUSTED`. */
  const reserveFor = async (request: ModelRequest, tokens: number): Promise<string | null> => {
    if (!options.budget) return null;
    const runLimit = request.runTokenLimit ?? null;
    const agentDailyLimit = options.agentDailyTokens?.(request.agentId) ?? null;
    if (runLimit === null && agentDailyLimit === null) return null;
    const result = await options.budget.reserve({
      runId: request.runId,
      agentId: request.agentId,
      dayKey: utcDayKey(now()),
      tokens,
      runLimit,
      agentDailyLimit,
    });
    if (result.ok) return result.reservationId;
    throw new ModelError(
      ModelErrorCode.budgetExhausted,
      result.scope === 'run'
        ? `the run's token budget cannot cover this call (${tokens} tokens needed, ${Math.max(0, result.limit - result.used - result.reserved)} left)`
        : `agent ${request.agentId}'s token budget for today (${result.limit}) cannot cover this call (${result.used} used, ${result.reserved} reserved, ${tokens} needed)`,
    );
  };

  return {
    /**
     * A streamed call (the endpoint's): reserved like {@link complete}, reconciled with the usage
     * the stream reports (or released when it failed before any output), and traced with the
     * assembled completion. `source` produces the events (already routed by the caller).
     */
    async *stream(
      request: ModelRequest,
      source: () => AsyncIterable<ProxyStreamEvent>,
    ): AsyncGenerator<ProxyStreamEvent> {
      const started = performance.now();
      const traceId = newId();
      const reserve = estimateTokens(request) + maxTokensOf(request, options.defaultMaxTokens ?? 4_096);
      const base = { id: traceId, agentId: request.agentId, runId: request.runId, step: request.turn };
      const record = (
        response: ModelResponse | null,
        error: ModelError | null,
        reservedTokens: number,
      ): void =>
        options.onTrace?.({
          ...base,
          ts: now(),
          purpose: request.purpose ?? 'act',
          route: 'stream',
          target: response?.provider ?? '',
          provider: response?.provider ?? '',
          model: response?.model ?? '',
          attempts: [],
          fallbackCause: null,
          request,
          response,
          error: error ? { code: error.code, message: error.message } : null,
          latencyMs: performance.now() - started,
          overheadMs: 0,
          reservedTokens,
        });
      let reservationId: string | null;
      try {
        reservationId = await reserveFor(request, reserve);
      } catch (error) {
        record(null, error as ModelError, 0);
        throw error;
      }
      let content = '';
      const toolCalls: ProposedCall[] = [];
      let usage: TokenUsage | null = null;
      let finishReason: ModelResponse['finishReason'] = 'stop';
      let model = '';
      let emitted = false;
      try {
        for await (const event of source()) {
          emitted = true;
          if (event.type === 'text') content += event.delta;
          else if (event.type === 'tool_call') toolCalls.push(event.call);
          else if (event.type === 'usage') usage = event.usage;
          else {
            finishReason = event.finishReason;
            model = event.model ?? model;
          }
          yield event;
        }
        const used = usage ?? {
          inputTokens: estimateTokens(request),
          outputTokens: Math.ceil(content.length / 4),
        };
        if (reservationId !== null)
          await options.budget?.reconcile(reservationId, used.inputTokens + used.outputTokens);
        record(
          { content: content || null, toolCalls, finishReason, usage: used, provider: 'stream', model },
          null,
          reservationId === null ? 0 : reserve,
        );
      } catch (error) {
        if (reservationId !== null) {
          // output was produced (and billed upstream): count what the stream showed; else nothing was used
          if (emitted)
            await options.budget
              ?.reconcile(reservationId, estimateTokens(request) + Math.ceil(content.length / 4))
              .catch(() => undefined);
          else await options.budget?.release(reservationId).catch(() => undefined);
        }
        record(
          null,
          error instanceof ModelError
            ? error
            : new ModelError(ModelErrorCode.serverError, (error as Error).message),
          reservationId === null ? 0 : reserve,
        );
        throw error;
      }
    },

    async complete(request: ModelRequest, signal?: AbortSignal): Promise<ProxiedResponse> {
      const started = performance.now();
      const traceId = newId();
      const purpose = request.purpose ?? 'act';
      const routed = request.model.provider === 'routed';
      const reserve = estimateTokens(request) + maxTokensOf(request, options.defaultMaxTokens ?? 4_096);
      let reservationId: string | null = null;
      let attempts: readonly RouteAttempt[] = [];
      let fallbackCause: string | null = null;
      let target = routed ? '' : request.model.provider;
      let route = routed ? '' : 'direct';
      let providerMs = 0;
      const trace = (response: ModelResponse | null, error: ModelError | null): number => {
        const latencyMs = performance.now() - started;
        const overheadMs = Math.max(0, latencyMs - providerMs);
        options.onTrace?.({
          id: traceId,
          ts: now(),
          agentId: request.agentId,
          runId: request.runId,
          step: request.turn,
          purpose,
          route,
          target,
          provider: response?.provider ?? attempts.at(-1)?.provider ?? request.model.provider,
          model:
            response?.model ??
            attempts.at(-1)?.model ??
            String((request.model as { model?: unknown }).model ?? ''),
          attempts,
          fallbackCause,
          request,
          response,
          error: error ? { code: error.code, message: error.message } : null,
          latencyMs,
          overheadMs,
          reservedTokens: reservationId === null ? 0 : reserve,
        });
        return overheadMs;
      };

      try {
        reservationId = await reserveFor(request, reserve);
      } catch (error) {
        trace(null, error as ModelError);
        throw error;
      }

      try {
        let response: ModelResponse;
        if (routed) {
          if (!options.router)
            throw new ModelError(
              ModelErrorCode.badRequest,
              'the run asks for routed models, and this worker has no routes',
            );
          const result = await options.router.complete(request, {
            purpose,
            ...(signal === undefined ? {} : { signal }),
          });
          // the router's own bookkeeping between attempts counts as overhead; the attempts do not
          providerMs = result.attempts.reduce((sum, a) => sum + a.durationMs, 0);
          response = result.response;
          attempts = result.attempts;
          fallbackCause = result.fallbackCause;
          target = result.target;
          route = `routes[${result.route}]`;
        } else {
          const provider = options.providers[request.model.provider];
          if (!provider)
            throw new ModelError(
              ModelErrorCode.badRequest,
              `unknown model provider ${JSON.stringify(request.model.provider)}`,
            );
          const callStarted = performance.now();
          response = await provider.complete(request, signal);
          providerMs = performance.now() - callStarted;
          attempts = [
            {
              target,
              provider: response.provider,
              model: response.model,
              startedAtMs: now(),
              durationMs: providerMs,
              outcome: 'ok',
            },
          ];
        }
        if (reservationId !== null)
          await options.budget?.reconcile(
            reservationId,
            response.usage.inputTokens + response.usage.outputTokens,
          );
        const overheadMs = trace(response, null);
        return {
          ...response,
          proxy: {
            traceId,
            target,
            route,
            attempts: attempts.length,
            fallbackCause,
            overheadMs,
            latencyMs: Math.round((providerMs + overheadMs) * 100) / 100,
          },
        };
      } catch (error) {
        if (reservationId !== null) await options.budget?.release(reservationId).catch(() => undefined);
        const typed = error instanceof ModelError ? error : null;
        const routeError = error as { attempts?: readonly RouteAttempt[]; fallbackCause?: string | null };
        if (routeError.attempts) {
          attempts = routeError.attempts;
          fallbackCause = routeError.fallbackCause ?? null;
          providerMs = attempts.reduce((sum, a) => sum + a.durationMs, 0);
        }
        trace(null, typed ?? new ModelError(ModelErrorCode.serverError, (error as Error).message));
        throw error;
      }
    },
  };
}

export type ModelProxy = ReturnType<typeof createModelProxy>;

/** The trace record of a proxied call (redaction is the writer's, before anything is stored). */
export function toModelTrace(trace: ProxyTrace): ModelTrace {
  return {
    id: trace.id,
    ts: trace.ts,
    agentId: trace.agentId,
    runId: trace.runId,
    step: trace.step,
    route: trace.route,
    purpose: trace.purpose,
    target: trace.target,
    provider: trace.provider,
    model: trace.model,
    attempts: trace.attempts.map((a) => ({
      target: a.target,
      provider: a.provider,
      model: a.model,
      outcome: a.outcome,
      durationMs: a.durationMs,
      ...(a.retryAfterMs === undefined ? {} : { retryAfterMs: a.retryAfterMs }),
      ...(a.skipped === undefined ? {} : { skipped: true }),
    })),
    fallbackCause: trace.fallbackCause,
    messages: trace.request.messages,
    tools: trace.request.tools,
    completion: trace.response
      ? {
          content: trace.response.content,
          toolCalls: trace.response.toolCalls,
          finishReason: trace.response.finishReason,
        }
      : null,
    error: trace.error,
    usage: trace.response?.usage ?? { inputTokens: 0, outputTokens: 0 },
    latencyMs: trace.latencyMs,
    overheadMs: trace.overheadMs,
    contentCaptured: true,
  };
}
