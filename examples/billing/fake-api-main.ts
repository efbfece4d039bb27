/**
 * Starts the fake billing API for the demo: `BILLING_API_KEY` (required) and `BILLING_PORT`
 * (default 0, any free port) from the environment; prints the base URL as the only line on stdout.
 *
 *   BILLING_API_KEY=sk_test_demo BILLING_PORT=4242 node examples/billing/fake-api-main.ts
 * @module
 */
import { DEMO_ORDERS, startFakeBillingApi } from './fake-api.ts';

const apiKey = process.env.BILLING_API_KEY ?? '';
const portText = process.env.BILLING_PORT ?? '0';
const port = Number(portText);
if (apiKey === '') {
  process.stderr.write('fake billing API: set BILLING_API_KEY\n');
  process.exit(2);
}
if (!/^\d{1,5}$/.test(portText) || port > 65_535) {
  process.stderr.write(`fake billing API: BILLING_PORT "${portText}" is not a port number\n`);
  process.exit(2);
}

const api = await startFakeBillingApi({ apiKey, port, orders: DEMO_ORDERS });
process.stdout.write(`${api.url}\n`);
process.stderr.write(`fake billing API: orders ${Object.keys(DEMO_ORDERS).join(', ')}\n`);

const stop = (): void => {
  void api.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
