/**
 * What the OpenAI-compatible endpoint calls: the model proxy (budgets, routes, traces) for plain
 * requests, and, for streams, the agent's route target by target — a target that fails before its
 * first event hands over to the next; one that fails after output ends the stream with the error.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { ModelError, ModelErrorCode } from '../errors.ts';
import { streamAnthropic, streamOpenAICompatible } from '../providers/index.ts';
import type { ModelStreamEvent } from '../providers/index.ts';
import type { ModelProxy } from '../proxy.ts';
import type { ModelRouter } from '../routing/index.ts';
import type { ModelConfig, ModelRequest } from '../types.ts';
import type { GatewayRequest } from './openai-wire.ts';
import type { GatewayCaller, GatewayStreamEvent } from './server.ts';

export interface ProxyCallerOptions {
  readonly proxy: ModelProxy;
  /** The routes the gateway's agents use (required for streaming). */
  readonly router?: ModelRouter;
  readonly env?: NodeJS.ProcessEnv;
  readonly fetch?: typeof fetch;
  readonly newId?: () => string;
}

/** Builds the endpoint's caller over the proxy. */
export function createProxyCaller(options: ProxyCallerOptions): GatewayCaller {
  const newId = options.newId ?? randomUUID;
  const toRequest = (agentId: string, request: GatewayRequest): ModelRequest => ({
    agentId,
    // each gateway call is its own "run" for budgets and traces; the agent's daily budget still applies
    runId: `gateway-${newId()}`,
    turn: 0,
    model: {
      provider: 'routed',
      ...(request.maxTokens === undefined ? {} : { maxTokens: request.maxTokens }),
    },
    messages: request.messages,
    tools: request.tools,
  });
  const io = {
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  };

  /** The agent's route, target by target: a target failing before its first event hands over. */
  async function* routedStream(
    agentId: string,
    base: ModelRequest,
    signal: AbortSignal,
  ): AsyncGenerator<GatewayStreamEvent> {
    const router = options.router;
    if (!router) throw new ModelError(ModelErrorCode.badRequest, 'streaming needs routes on the gateway');
    const { targets } = router.route(agentId);
    let last: ModelError | null = null;
    for (const targetId of targets) {
      const target = router.config.targets[targetId];
      if (!target) continue;
      const model = target.provider as unknown as ModelConfig;
      const call = { ...base, model };
      const events: AsyncIterable<ModelStreamEvent> =
        model.provider === 'anthropic'
          ? streamAnthropic(call, { ...io, signal })
          : streamOpenAICompatible(call, { ...io, signal });
      let emitted = false;
      try {
        for await (const event of events) {
          emitted = true;
          yield event;
        }
        return;
      } catch (error) {
        // after output there is no clean way back: the endpoint ends the stream with the error
        if (emitted || !(error instanceof ModelError)) throw error;
        last = error;
        if (!error.retryable && error.code !== ModelErrorCode.contextLength) throw error;
      }
    }
    throw last ?? new ModelError(ModelErrorCode.badRequest, `no route target for agent ${agentId}`);
  }

  return {
    complete: (agentId, request, signal) => options.proxy.complete(toRequest(agentId, request), signal),
    stream: (agentId, request, signal) => {
      const base = toRequest(agentId, request);
      // budgets and the trace wrap the routed stream
      return options.proxy.stream(base, () => routedStream(agentId, base, signal));
    },
  };
}
