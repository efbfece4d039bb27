/**
 * The model step's contract: provider-neutral messages, the tools offered, the model's reply.
 * Types only, so the AgentRun workflow can import them. Routing, fallback, budgets and tracing
 * (model-proxy issue) wrap {@link ModelProvider} without changing these shapes.
 * @module
 */

/** A tool call the model proposes; nothing has decided or run it yet. */
export interface ProposedCall {
  /** The provider's call id (or a generated one), echoed by the `tool` message that answers it. */
  readonly id: string;
  readonly tool: string;
  /** Parsed JSON arguments as the model wrote them; unvalidated. */
  readonly args: unknown;
  /** The model's stated reason for the call; unverified, shown to approvers as such. */
  readonly rationale: string | null;
}

/** One message of the conversation. */
export type ChatMessage =
  | { readonly role: 'system'; readonly content: string }
  | { readonly role: 'user'; readonly content: string }
  | {
      readonly role: 'assistant';
      readonly content: string | null;
      readonly toolCalls: readonly ProposedCall[];
    }
  | {
      readonly role: 'tool';
      readonly toolCallId: string;
      readonly tool: string;
      /** JSON text: the tool's result or the gateway's structured denial. */
      readonly content: string;
    };

/** A tool offered to the model. */
export interface ToolDefinition {
  readonly name: string;
  readonly description: string;
  /** JSON Schema (draft 2020-12) of the arguments. */
  readonly parameters: Readonly<Record<string, unknown>>;
}

/** One scripted turn: either tool calls (with an optional text) or a final answer. */
export interface ScriptedTurn {
  readonly say?: string;
  readonly calls?: readonly {
    readonly tool: string;
    readonly args: unknown;
    readonly rationale?: string;
  }[];
  readonly final?: string;
  /** Token usage to report for this turn (default: a count derived from the text). */
  readonly usage?: { readonly inputTokens: number; readonly outputTokens: number };
  /** Simulated model latency in ms before this turn is answered (tests and demos). */
  readonly thinkMs?: number;
}

/** Which provider answers and how. JSON-serialisable: it travels in workflow input. */
export type ModelConfig =
  | {
      readonly provider: 'scripted';
      /** The turns, in order; the n-th assistant turn of the conversation plays `turns[n]`. */
      readonly turns: readonly ScriptedTurn[];
    }
  | {
      readonly provider: 'openai-compatible';
      /** e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`. */
      readonly baseUrl: string;
      readonly model: string;
      /** Name of the environment variable holding the API key on the worker (never the key itself). */
      readonly apiKeyEnv?: string;
      readonly temperature?: number;
      readonly maxTokens?: number;
      /** Per-request time limit in ms (default 60 s). */
      readonly timeoutMs?: number;
    }
  | {
      /** Anthropic Messages API with tools. */
      readonly provider: 'anthropic';
      /** Default `https://api.anthropic.com`. */
      readonly baseUrl?: string;
      readonly model: string;
      /** Name of the environment variable holding the API key on the worker (default `ANTHROPIC_API_KEY`). */
      readonly apiKeyEnv?: string;
      readonly maxTokens?: number;
      readonly temperature?: number;
      readonly timeoutMs?: number;
    }
  | {
      /** The worker's routes for this agent (the model proxy's fallback chain); the request's `purpose` picks one. */
      readonly provider: 'routed';
      /** Tokens reserved for each completion (default the proxy's). */
      readonly maxTokens?: number;
    };

/** What `callModel` receives. */
export interface ModelRequest {
  readonly agentId: string;
  readonly runId: string;
  /** The model turn within the run (0-based, across continue-as-new). */
  readonly turn: number;
  readonly model: ModelConfig;
  readonly messages: readonly ChatMessage[];
  readonly tools: readonly ToolDefinition[];
  /** The run's token budget (`maxTokens`): the proxy reserves each call against what the run has used. */
  readonly runTokenLimit?: number;
  /** What the turn is for (`plan`, `act`, `summarize`, …): selects the proxy's route. Default `act`. */
  readonly purpose?: string;
}

export interface TokenUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** The model's reply. */
export interface ModelResponse {
  /** Text the model wrote (the final answer when `toolCalls` is empty). */
  readonly content: string | null;
  readonly toolCalls: readonly ProposedCall[];
  readonly finishReason: 'tool_calls' | 'stop' | 'length' | 'content_filter' | 'other';
  readonly usage: TokenUsage;
  /** Provider and model that answered, for the audit record. */
  readonly provider: string;
  readonly model: string;
}

/** A model backend. Implementations throw `ModelError` (see `errors.ts`) with a typed code. */
export interface ModelProvider {
  readonly name: string;
  complete(request: ModelRequest, signal?: AbortSignal): Promise<ModelResponse>;
}
