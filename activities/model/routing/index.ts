/**
 * Model routing: routes by agent and purpose, retries, fallbacks, circuit breakers and one
 * deadline per call, over any `ModelProvider`s (see `router.ts`).
 * @module
 */
export { backoffMs, createRouter, parseRouterConfig, RouterConfigSchema } from './router.ts';
export type {
  ModelRouter,
  ResolvedTarget,
  RouteCallOptions,
  RoutedResponse,
  RouterConfig,
  RouterConfigInput,
  RouterDeps,
  RouterTarget,
} from './router.ts';
export { ModelRouteError, RouterConfigError, RouterErrorCode } from './errors.ts';
export type { RouteAttempt, SkipReason } from './errors.ts';
export { Breakers, isHealthFailure } from './breaker.ts';
export type { Admission, BreakerSettings, BreakerSnapshot } from './breaker.ts';
