/**
 * The `billing.refund` tool as the policy sees it: argument schema and resource. PURE (zod and
 * pure code only, no Node built-ins, no I/O): the AgentRun workflow bundle imports this module to
 * decide on calls; the implementation lives in `tool.ts`, which only the tools worker loads.
 * @module
 */
import { z } from 'zod';
import { defineToolSpec } from '../../activities/tools/define.ts';
import type { AnyToolSpec } from '../../policy/index.ts';

/** Arguments of `billing.refund`; unknown keys are refused. */
export const BillingRefundArgs = z.strictObject({
  orderId: z.string().regex(/^ord_[A-Za-z0-9]{4,32}$/, { error: 'expected an order id like ord_1a2b3c' }),
  amountCents: z.int().positive().max(10_000_000),
  currency: z.string().regex(/^[A-Z]{3}$/, { error: 'expected an ISO 4217 code such as USD' }),
  reason: z.string().min(1).max(500),
});
/** Validated arguments of `billing.refund`. */
export type BillingRefundArgs = z.infer<typeof BillingRefundArgs>;

/** Refund part or all of an order's charge; the resource is the order. */
export const billingRefund = defineToolSpec({
  name: 'billing.refund',
  description:
    'Refund part or all of what a customer was charged for an order. amountCents is in the smallest ' +
    'currency unit; currency must be the currency the order was charged in.',
  args: BillingRefundArgs,
  resource: (args) => `billing://orders/${args.orderId}`,
  // the API deduplicates by Idempotency-Key, so a retry after a crash cannot refund twice
  effect: 'idempotent',
});

/** The billing tool specs, for the workflow's tool catalog. */
export const BILLING_TOOL_SPECS: readonly AnyToolSpec[] = Object.freeze([billingRefund]);

/** The name the workflow bundle looks for in a spec module (`worker/bundle.ts`). */
export const toolSpecs = BILLING_TOOL_SPECS;
