/**
 * The approvals service's one HTTP server: Slack's interactivity endpoint (`/slack/…`, handled by
 * Bolt's receiver, which verifies every signature on the raw body) beside the email review pages
 * and the web inbox, and the observer's alerts endpoint (`POST /v1/alerts`, see `alerts.ts`).
 * Nothing parses a body before Bolt sees it.
 * @module
 */
import { createServer } from 'node:http';
import type { RequestListener, Server, ServerResponse } from 'node:http';
import { listen } from '../common/listen.ts';

export interface ApprovalsHttpOptions {
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  /** Bolt's `HTTPReceiver.requestListener`, mounted at `/slack/`. */
  readonly slack?: RequestListener;
  /** The observer's alerts endpoint, mounted at {@link ALERTS_PATH} (404 when omitted). */
  readonly alerts?: RequestListener;
  /** Email review pages and the web inbox (everything else). */
  readonly web?: RequestListener;
}

/** Where the observer posts alerts. */
export const ALERTS_PATH = '/v1/alerts';

export interface ApprovalsHttpServer {
  readonly server: Server;
  /** `http://host:port` as bound. */
  readonly url: string;
  close(): Promise<void>;
}

/** Headers of every answer the server itself gives (health, 404, the alerts endpoint). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

function notFound(res: ServerResponse): void {
  res.writeHead(404, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
  res.end('Not found\n');
}

/** Starts the server on 127.0.0.1 (or `host`). */
export async function startApprovalsHttp(options: ApprovalsHttpOptions): Promise<ApprovalsHttpServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/healthz') {
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      res.end('ok\n');
      return;
    }
    const handler =
      path === ALERTS_PATH ? options.alerts : path.startsWith('/slack/') ? options.slack : options.web;
    if (!handler) return notFound(res);
    try {
      handler(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(500, SECURITY_HEADERS);
      res.end();
    }
  });
  // slow clients cannot hold sockets open forever
  server.requestTimeout = 15_000;
  server.headersTimeout = 10_000;
  const host = options.host ?? '127.0.0.1';
  const url = await listen(server, options.port ?? 0, host);
  return {
    server,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
