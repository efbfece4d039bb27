/**
 * The model step as a Temporal activity: `callModel` picks the provider named by the request's
 * model config, passes the activity's cancellation on, and turns a {@link ModelError} into an
 * `ApplicationFailure` whose `type` is the code (non-retryable codes are marked so).
 * @module
 */
import { performance } from 'node:perf_hooks';
import { Context } from '@temporalio/activity';
import { ModelError, ModelErrorCode, toApplicationFailure } from './errors.ts';
import { createOpenAICompatibleProvider } from './openai-compatible.ts';
import { createAnthropicProvider } from './providers/anthropic.ts';
import { createModelProxy } from './proxy.ts';
import { createRouter } from './routing/index.ts';
import type { ModelRouter, RouterConfigInput } from './routing/index.ts';
import type { ModelProxyOptions } from './proxy.ts';
import { createScriptedProvider } from './scripted.ts';
import type { ModelConfig, ModelProvider, ModelRequest, ModelResponse } from './types.ts';

export type * from './types.ts';
export { createModelProxy, estimateTokens, toModelTrace } from './proxy.ts';
export type { ModelProxy, ModelProxyOptions, ProxiedResponse, ProxyBudget, ProxyTrace } from './proxy.ts';
export { isRetryableModelError, ModelError, ModelErrorCode, toApplicationFailure } from './errors.ts';
export {
  createScriptedProvider,
  loadScriptFile,
  parseScript,
  playScript,
  SCRIPT_FINISHED,
  ScriptError,
  ScriptSchema,
  validateTurns,
} from './scripted.ts';
export {
  createOpenAICompatibleProvider,
  decodeToolName,
  DEFAULT_TIMEOUT_MS,
  encodeToolName,
  parseRetryAfter,
} from './openai-compatible.ts';
export type { OpenAICompatibleOptions } from './openai-compatible.ts';

/** Provider kinds a run's model config names directly (`routed` goes through the worker's routes). */
export type DirectProviderKind = Exclude<ModelConfig['provider'], 'routed'>;

/** What {@link createModelActivities} takes; everything defaults to the real thing. */
export interface ModelActivitiesOptions {
  /** Replaces the built-in provider of a kind (tests). */
  readonly providers?: Partial<Record<DirectProviderKind, ModelProvider>>;
  /** Where `apiKeyEnv` is looked up (default `process.env`). */
  readonly env?: NodeJS.ProcessEnv;
  readonly fetch?: typeof fetch;
  /** The model proxy's routes, budgets and trace sink; without them every call still passes the proxy. */
  readonly proxy?: Omit<ModelProxyOptions, 'providers'>;
}

/** The built-in providers by kind. */
export function builtinProviders(
  options: Pick<ModelActivitiesOptions, 'providers' | 'env' | 'fetch'> = {},
): Readonly<Record<DirectProviderKind, ModelProvider>> {
  const io = {
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  };
  return {
    scripted: options.providers?.scripted ?? createScriptedProvider(),
    'openai-compatible': options.providers?.['openai-compatible'] ?? createOpenAICompatibleProvider(io),
    anthropic: options.providers?.anthropic ?? createAnthropicProvider(io),
  };
}

/** Builds the model activities: every call passes the model proxy (budgets, routes, traces). */
export function createModelActivities(options: ModelActivitiesOptions = {}) {
  const proxy = createModelProxy({ ...options.proxy, providers: builtinProviders(options) });
  return {
    /**
     * Asks the model for its next turn. Throws an `ApplicationFailure` of `type` = a
     * {@link ModelErrorCode} when the provider fails; other errors (cancellation) pass through.
     */
    async callModel(request: ModelRequest): Promise<ModelResponse> {
      try {
        const kind = (request.model as { provider?: unknown } | undefined)?.provider;
        if (typeof kind !== 'string')
          throw new ModelError(ModelErrorCode.badRequest, `unknown model provider ${JSON.stringify(kind)}`);
        return await proxy.complete(request, activitySignal());
      } catch (error) {
        if (error instanceof ModelError) throw toApplicationFailure(error);
        throw error;
      }
    },
  };
}

/** The model activities, as a workflow's `proxyActivities` sees them. */
export type ModelActivities = ReturnType<typeof createModelActivities>;

function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    // called outside an activity (tests, the CLI)
    return undefined;
  }
}

/**
 * A router over the built-in providers: each target's `provider` is a run-style model config
 * (`{ provider: 'openai-compatible', baseUrl, model, … }` or `{ provider: 'anthropic', model, … }`).
 * Attempt durations use a sub-millisecond clock, since the proxy's overhead is measured against them.
 */
export function createProviderRouter(
  config: RouterConfigInput,
  providers: Readonly<Record<DirectProviderKind, ModelProvider>>,
): ModelRouter {
  return createRouter(config, {
    resolve: (targetId, target) => {
      const kind = target.provider['provider'];
      if (kind !== 'openai-compatible' && kind !== 'anthropic' && kind !== 'scripted')
        throw new ModelError(
          ModelErrorCode.badRequest,
          `route target ${targetId}: provider must be openai-compatible, anthropic or scripted, got ${JSON.stringify(kind)}`,
        );
      return { provider: providers[kind], model: target.provider as unknown as ModelConfig };
    },
    now: () => performance.timeOrigin + performance.now(),
  });
}
