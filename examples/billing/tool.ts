/**
 * The `billing.refund` implementation, for the tools worker only (it does I/O): POSTs the refund
 * to the billing API with the call's idempotency key, so a retried activity can never refund twice.
 *
 * - 2xx: `{ ok: true, output: { refundId, orderId, amountCents, currency, status } }`;
 * - 4xx: a refusal for the model with a stable code (`BILLING_ORDER_NOT_FOUND`,
 *   `BILLING_AMOUNT_EXCEEDS_CHARGE`, `BILLING_REJECTED`), the API's own text in `detail` only;
 * - 5xx, 408, 409, 429, timeouts and network errors: throws {@link BillingUnavailableError}, which
 *   Temporal retries; the retry carries the same idempotency key.
 * @module
 */
import { z } from 'zod';
import { ToolError, ToolErrorCode, implementTool } from '../../activities/tools/define.ts';
import type { ToolImplementation, ToolResult, ToolRunContext } from '../../activities/tools/define.ts';
import { AgentRuntimeError } from '../../policy/errors.ts';
import { billingRefund } from './spec.ts';
import type { BillingRefundArgs } from './spec.ts';

/** Stable codes of billing refusals (results) and errors (thrown). */
export const BillingErrorCode = {
  orderNotFound: 'BILLING_ORDER_NOT_FOUND',
  amountExceedsCharge: 'BILLING_AMOUNT_EXCEEDS_CHARGE',
  rejected: 'BILLING_REJECTED',
  unavailable: 'BILLING_UNAVAILABLE',
  invalidResponse: 'BILLING_INVALID_RESPONSE',
} as const;
export type BillingErrorCode = (typeof BillingErrorCode)[keyof typeof BillingErrorCode];

/** The billing API could not be reached or failed; retryable with the same idempotency key. */
export class BillingUnavailableError extends AgentRuntimeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(BillingErrorCode.unavailable, message, options);
  }
}

/** Configuration of {@link billingTools}. */
export interface BillingToolsConfig {
  /** Base URL of the billing API (`https://billing.internal`); refunds go to `<baseUrl>/v1/refunds`. */
  readonly baseUrl: string;
  /** Bearer token. Kept out of the implementation's `config`, which may be logged. */
  readonly apiKey: string;
  /** Deadline per attempt, in ms. Default 10 000. */
  readonly timeoutMs?: number;
}

/** The configuration the implementation exposes (no secret). */
export interface ResolvedBillingToolsConfig {
  readonly refundsUrl: string;
  readonly timeoutMs: number;
}

/** Output of a successful `billing.refund`. */
export interface BillingRefundOutput {
  readonly refundId: string;
  readonly orderId: string;
  readonly amountCents: number;
  readonly currency: string;
  readonly status: string;
}

const RefundResponse = z.object({
  refundId: z.string().min(1).max(200),
  orderId: z.string(),
  amountCents: z.int(),
  currency: z.string(),
  status: z.string().min(1).max(100),
});
const ErrorResponse = z.object({
  error: z.object({ code: z.string().max(100), message: z.string().max(1000).optional() }),
});

/** API error codes with a refusal code of their own; every other 4xx is `BILLING_REJECTED`. */
const REFUSALS: Readonly<Record<string, { code: BillingErrorCode; message: string }>> = {
  order_not_found: { code: BillingErrorCode.orderNotFound, message: 'There is no order with that id.' },
  amount_exceeds_charge: {
    code: BillingErrorCode.amountExceedsCharge,
    message: 'The refund would exceed what is left of the amount charged for this order.',
  },
};
const RETRYABLE_4XX = new Set([408, 409, 425, 429]);
const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_RESPONSE_CHARS = 64 * 1024;

/**
 * `billing.refund` bound to the billing API. Throws {@link ToolError} `TOOL_INVALID_CONFIG` on a
 * malformed configuration.
 */
export function billingTools(
  config: BillingToolsConfig,
): readonly [ToolImplementation<BillingRefundArgs, ResolvedBillingToolsConfig>] {
  const resolved = resolveConfig(config);
  const authorization = `Bearer ${config.apiKey}`;
  const run = (args: BillingRefundArgs, ctx: ToolRunContext<ResolvedBillingToolsConfig>) =>
    refund(args, ctx, authorization);
  return Object.freeze([implementTool(billingRefund, run, resolved)] as const);
}

function resolveConfig(config: BillingToolsConfig): ResolvedBillingToolsConfig {
  const invalid = (message: string): never => {
    throw new ToolError(ToolErrorCode.invalidConfig, `billing tools: ${message}`);
  };
  let base: URL | undefined;
  try {
    base = new URL(config.baseUrl);
  } catch {
    invalid('baseUrl is not a URL');
  }
  if (base === undefined || (base.protocol !== 'http:' && base.protocol !== 'https:'))
    return invalid('baseUrl must be an http(s) URL');
  if (base.username !== '' || base.password !== '' || base.search !== '' || base.hash !== '')
    invalid('baseUrl must not carry credentials, a query or a fragment');
  if (typeof config.apiKey !== 'string' || !/^[\x21-\x7e]{1,512}$/.test(config.apiKey))
    invalid('apiKey must be 1-512 visible ASCII characters');
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) invalid('timeoutMs must be a positive integer');
  const refundsUrl = `${base.origin}${base.pathname.replace(/\/+$/, '')}/v1/refunds`;
  return Object.freeze({ refundsUrl, timeoutMs });
}

async function refund(
  args: BillingRefundArgs,
  ctx: ToolRunContext<ResolvedBillingToolsConfig>,
  authorization: string,
): Promise<ToolResult> {
  const { refundsUrl, timeoutMs } = ctx.config;
  const signals = [AbortSignal.timeout(timeoutMs), ...(ctx.signal === undefined ? [] : [ctx.signal])];
  let status: number;
  let text: string;
  try {
    const response = await fetch(refundsUrl, {
      method: 'POST',
      headers: {
        authorization,
        'idempotency-key': ctx.idempotencyKey,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify({
        orderId: args.orderId,
        amountCents: args.amountCents,
        currency: args.currency,
        reason: args.reason,
      }),
      redirect: 'error',
      signal: AbortSignal.any(signals),
    });
    status = response.status;
    text = await response.text();
  } catch (error) {
    // cancellation of the activity is not an outage: let it through as it is
    if (ctx.signal?.aborted === true) throw ctx.signal.reason;
    const timedOut = error instanceof Error && error.name === 'TimeoutError';
    throw new BillingUnavailableError(
      timedOut
        ? `the billing API did not answer within ${timeoutMs} ms`
        : 'the billing API could not be reached',
      { cause: error },
    );
  }

  if (status >= 200 && status < 300) return { ok: true, output: parseRefund(args, status, text) };
  if (status >= 500 || RETRYABLE_4XX.has(status)) {
    throw new BillingUnavailableError(`the billing API answered ${status}`);
  }
  if (status >= 400) {
    const apiError = ErrorResponse.safeParse(parseJson(text)).data?.error;
    const known = apiError === undefined ? undefined : REFUSALS[apiError.code];
    const detail = `billing API ${status}${apiError === undefined ? '' : ` ${apiError.code}: ${apiError.message ?? ''}`}`;
    return known === undefined
      ? {
          ok: false,
          code: BillingErrorCode.rejected,
          message: `The billing API refused the refund (HTTP ${status}).`,
          detail,
        }
      : { ok: false, code: known.code, message: known.message, detail };
  }
  throw new AgentRuntimeError(BillingErrorCode.invalidResponse, `the billing API answered ${status}`);
}

/** The refund from a 2xx body; it must be the refund that was asked for. */
function parseRefund(args: BillingRefundArgs, status: number, text: string): BillingRefundOutput {
  const parsed = RefundResponse.safeParse(parseJson(text));
  const body = parsed.data;
  if (
    body === undefined ||
    body.orderId !== args.orderId ||
    body.amountCents !== args.amountCents ||
    body.currency !== args.currency
  ) {
    throw new AgentRuntimeError(
      BillingErrorCode.invalidResponse,
      `the billing API answered ${status} with a body that is not the requested refund`,
    );
  }
  return {
    refundId: body.refundId,
    orderId: body.orderId,
    amountCents: body.amountCents,
    currency: body.currency,
    status: body.status,
  };
}

function parseJson(text: string): unknown {
  if (text.length > MAX_RESPONSE_CHARS) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
