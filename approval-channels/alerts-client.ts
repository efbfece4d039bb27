/**
 * The observer's side of `POST /v1/alerts`: an alert sink (`ObserverServiceOptions.alert`) that
 * sends each alert to the approvals service with the observer's own token. Transient failures
 * (network errors, timeouts, 5xx, 429) are retried; a refusal (4xx) throws with the service's code.
 * The service deduplicates by `findingId`, so a retry after a lost answer never alerts twice.
 * @module
 */
import type { ObserverAlert } from '../observer/service.ts';
import { AlertErrorCode, ApprovalsAlertError } from './alerts.ts';
import { ALERTS_PATH } from './server.ts';

/** Options of {@link createApprovalsAlertSink}. */
export interface ApprovalsAlertSinkOptions {
  /** The approvals service's base URL (`http://127.0.0.1:8288`). */
  readonly url: string;
  /** A token whose sha256 the service's `alerts` section names. */
  readonly token: string;
  /** Default the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Retries after the first try; default 3. */
  readonly retries?: number;
  /** Backoff before the first retry (doubling); default 250 ms. */
  readonly baseDelayMs?: number;
  /** Per-try timeout; default 30 s (the service answers after delivering). */
  readonly timeoutMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const isTransient = (error: unknown): boolean =>
  !(error instanceof ApprovalsAlertError) ||
  error.status === undefined ||
  error.status >= 500 ||
  error.status === 429;

/**
 * Creates the sink. It resolves once the service accepted the alert (202) or had seen it (200),
 * and throws {@link ApprovalsAlertError}: the service's code on a 4xx (`ALERT_UNAUTHORIZED`,
 * `ALERT_UNKNOWN_AGENT`, …), its last code or the network error after the retries.
 */
export function createApprovalsAlertSink(
  options: ApprovalsAlertSinkOptions,
): (alert: ObserverAlert) => Promise<void> {
  const endpoint = `${options.url.replace(/\/+$/, '')}${ALERTS_PATH}`;
  const doFetch = options.fetch ?? fetch;
  const retries = Math.max(0, options.retries ?? 3);
  const baseDelayMs = Math.max(0, options.baseDelayMs ?? 250);
  const timeoutMs = options.timeoutMs ?? 30_000;

  const once = async (body: string): Promise<void> => {
    const response = await doFetch(endpoint, {
      method: 'POST',
      headers: { authorization: `Bearer ${options.token}`, 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text) as unknown;
    } catch {
      parsed = undefined;
    }
    if (response.status === 200 || response.status === 202) return;
    const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    throw new ApprovalsAlertError(
      typeof error?.code === 'string' ? error.code : AlertErrorCode.protocol,
      `approvals alerts: ${typeof error?.message === 'string' ? error.message : `HTTP ${response.status}`}`,
      { status: response.status },
    );
  };

  return async (alert) => {
    const body = JSON.stringify({
      findingId: alert.findingId,
      ruleId: alert.ruleId,
      severity: alert.severity,
      agent: alert.agent,
      runs: alert.runs,
      summary: alert.summary,
      at: alert.at,
    });
    for (let attempt = 0; ; attempt++) {
      try {
        await once(body);
        return;
      } catch (error) {
        if (attempt >= retries || !isTransient(error)) {
          if (error instanceof ApprovalsAlertError) throw error;
          throw new ApprovalsAlertError(
            AlertErrorCode.unavailable,
            `approvals alerts: ${error instanceof Error ? error.message : String(error)}`,
            { cause: error },
          );
        }
        await sleep(baseDelayMs * 2 ** attempt);
      }
    }
  };
}
