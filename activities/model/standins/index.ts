/**
 * Stand-ins for the model vendors' HTTP APIs (OpenAI Chat Completions, Anthropic Messages), for
 * tests anywhere in the project: real servers on 127.0.0.1 with scripted replies, request
 * recording and failure injection.
 * @module
 */
export { startAnthropicStandIn } from './anthropic-standin.ts';
export { startOpenAIStandIn } from './openai-standin.ts';
export type {
  RecordedRequest,
  StandIn,
  StandInFailure,
  StandInFailureKind,
  StandInOptions,
  StandInReply,
  StandInReplySource,
  StandInToolCall,
} from './server.ts';
