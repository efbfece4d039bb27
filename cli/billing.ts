/**
 * The custom-tool example wired into `agent-runtime dev`: `billing.refund` (examples/billing)
 * bound to the fake billing API, which this starts on a free port with the demo orders. `dev`
 * imports this module lazily and goes on without billing when it cannot be loaded.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AnyToolImplementation } from '../activities/tools/define.ts';
import { DEMO_ORDERS, startFakeBillingApi } from '../examples/billing/fake-api.ts';
import { billingTools } from '../examples/billing/tool.ts';

/** The billing example, running. */
export interface BillingExample {
  /** The pure spec module, for the workflow bundle (`toolSpecModules`). */
  readonly specModule: string;
  /** The implementation, for the tools worker. */
  readonly tools: readonly AnyToolImplementation[];
  /** Base URL of the fake billing API. */
  readonly url: string;
  readonly orders: readonly string[];
  close(): Promise<void>;
}

/** Starts the fake billing API and binds `billing.refund` to it. */
export async function startBillingExample(): Promise<BillingExample> {
  // `.ts` from source, `.js` from dist/ (tsc emits the example because this module imports it)
  const ext = extname(fileURLToPath(import.meta.url));
  const specModule = fileURLToPath(new URL(`../examples/billing/spec${ext}`, import.meta.url));
  const apiKey = `sk_dev_${randomBytes(12).toString('hex')}`;
  const api = await startFakeBillingApi({ apiKey, orders: DEMO_ORDERS });
  return {
    specModule,
    tools: billingTools({ baseUrl: api.url, apiKey }),
    url: api.url,
    orders: Object.keys(DEMO_ORDERS),
    close: () => api.close(),
  };
}
