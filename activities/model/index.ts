/**
 * The model step as a Temporal activity: `callModel` picks the provider named by the request's
 * model config, passes the activity's cancellation on, and turns a {@link ModelError} into an
 * `ApplicationFailure` whose `type` is the code (non-retryable codes are marked so).
 * @module
 */
import { Context } from '@temporalio/activity';
import { ModelError, ModelErrorCode, toApplicationFailure } from './errors.ts';
import { createOpenAICompatibleProvider } from './openai-compatible.ts';
import { createScriptedProvider } from './scripted.ts';
import type { ModelConfig, ModelProvider, ModelRequest, ModelResponse } from './types.ts';

export type * from './types.ts';
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

/** What {@link createModelActivities} takes; everything defaults to the real thing. */
export interface ModelActivitiesOptions {
  /** Replaces the built-in provider of a kind (tests, the model proxy). */
  readonly providers?: Partial<Record<ModelConfig['provider'], ModelProvider>>;
  /** Where `apiKeyEnv` is looked up (default `process.env`). */
  readonly env?: NodeJS.ProcessEnv;
  readonly fetch?: typeof fetch;
}

/** Builds the model activities. */
export function createModelActivities(options: ModelActivitiesOptions = {}) {
  const providers: Readonly<Record<ModelConfig['provider'], ModelProvider>> = {
    scripted: options.providers?.scripted ?? createScriptedProvider(),
    'openai-compatible':
      options.providers?.['openai-compatible'] ??
      createOpenAICompatibleProvider({
        ...(options.env === undefined ? {} : { env: options.env }),
        ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
      }),
  };
  return {
    /**
     * Asks the model for its next turn. Throws an `ApplicationFailure` of `type` = a
     * {@link ModelErrorCode} when the provider fails; other errors (cancellation) pass through.
     */
    async callModel(request: ModelRequest): Promise<ModelResponse> {
      try {
        const kind = (request.model as { provider?: unknown } | undefined)?.provider;
        const provider = Object.hasOwn(providers, String(kind))
          ? providers[kind as ModelConfig['provider']]
          : undefined;
        if (provider === undefined) {
          throw new ModelError(ModelErrorCode.badRequest, `unknown model provider ${JSON.stringify(kind)}`);
        }
        return await provider.complete(request, activitySignal());
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
