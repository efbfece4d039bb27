/**
 * Model providers beyond the built-in `openai-compatible` one: the Anthropic Messages provider and
 * streaming for both wire formats.
 * @module
 */
export {
  ANTHROPIC_BASE_URL,
  ANTHROPIC_VERSION,
  createAnthropicProvider,
  DEFAULT_ANTHROPIC_API_KEY_ENV,
  DEFAULT_ANTHROPIC_MAX_TOKENS,
  DEFAULT_ANTHROPIC_TIMEOUT_MS,
} from './anthropic.ts';
export type { AnthropicModelConfig, AnthropicProviderOptions } from './anthropic.ts';
export { systemClock } from './http.ts';
export type { Clock } from './http.ts';
export { parseSSE } from './sse.ts';
export type { SSEEvent } from './sse.ts';
export { ModelStreamInterruptedError, streamAnthropic, streamOpenAICompatible } from './streaming.ts';
export type { ModelStreamEvent, OpenAIStreamOptions, StreamOptions } from './streaming.ts';
