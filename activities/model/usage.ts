/**
 * Token estimates for providers that do not report usage: about four characters per token.
 * @module
 */
import type { ChatMessage, ProposedCall } from './types.ts';

/** `ceil(chars / 4)`: a rough token count for `chars` characters of text. */
export function estimateTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

/** Characters of a message as a model would read them: text, tool names and JSON arguments. */
export function messageChars(message: ChatMessage): number {
  switch (message.role) {
    case 'assistant':
      return (message.content?.length ?? 0) + callsChars(message.toolCalls);
    case 'tool':
      return message.tool.length + message.content.length;
    default:
      return message.content.length;
  }
}

/** Characters of the tool calls of a reply. */
export function callsChars(calls: readonly ProposedCall[]): number {
  let chars = 0;
  for (const call of calls) chars += call.tool.length + argsText(call.args).length;
  return chars;
}

/** Estimated usage of a reply: input from the request's messages, output from the reply. */
export function estimateUsage(
  messages: readonly ChatMessage[],
  content: string | null,
  calls: readonly ProposedCall[],
): { readonly inputTokens: number; readonly outputTokens: number } {
  let input = 0;
  for (const message of messages) input += messageChars(message);
  return Object.freeze({
    inputTokens: estimateTokens(input),
    outputTokens: estimateTokens((content?.length ?? 0) + callsChars(calls)),
  });
}

/** Arguments as the model wrote them: raw (unparsable) text stays as is, anything else is JSON. */
export function argsText(args: unknown): string {
  if (typeof args === 'string') return args;
  return JSON.stringify(args) ?? 'null';
}
