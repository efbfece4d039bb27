/**
 * Test support: one real SMTP sink and one real HTTP server for a test file, and a per-test
 * harness (the SQLite store on `:memory:`, a decision port, the email channel, the web app) wired
 * over them.
 * @module
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';
import type { RequestRecord, SessionRecord } from '../core/types.ts';
import { EmailChannel } from '../email/mailer.ts';
import { startSmtpSink, sinkConfig } from '../email/test-smtp.ts';
import type { ReceivedMail, SmtpSink } from '../email/test-smtp.ts';
import { createWebApp } from './app.ts';
import type { WebApp, WebAppOptions } from './app.ts';
import { contact, makeDirectory, makeRequest, MemoryDecisions, seededRandom } from './test-decisions.ts';
import { openSqliteStore } from '../store/index.ts';

/** The fixed start of every test clock. */
export const T0 = Date.UTC(2030, 0, 1, 9, 0, 0);

/** The servers of one test file. */
export interface Servers {
  readonly sink: SmtpSink;
  readonly base: string;
  /** Routes the HTTP server to `app`. */
  use(app: WebApp): void;
  close(): Promise<void>;
}

/** Starts the SMTP sink and an HTTP server on 127.0.0.1:0. */
export async function startServers(): Promise<Servers> {
  const sink = await startSmtpSink();
  let current: WebApp | null = null;
  const server: Server = createServer((req, res) => {
    if (current === null) {
      res.writeHead(503).end();
      return;
    }
    current(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    sink,
    base: `http://127.0.0.1:${port}`,
    use: (app) => {
      current = app;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await sink.close();
    },
  };
}

let seq = 0;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** One test's world. */
export type Harness = Awaited<ReturnType<typeof harness>>;

/** Builds one test's world (closed when the test finishes). */
export async function harness(servers: Servers, options: Partial<Pick<WebAppOptions, 'secureCookies'>> = {}) {
  const n = ++seq;
  const clock = { ms: T0 };
  const now = () => clock.ms;
  const store = await openSqliteStore({ file: ':memory:' });
  onTestFinished(() => store.close());
  const decisions = new MemoryDecisions(now, store);
  const email = new EmailChannel({
    config: sinkConfig(servers.sink),
    store,
    publicBaseUrl: servers.base,
    now,
    randomBytes: seededRandom(`mail-${n}`),
  });
  const errors: unknown[] = [];
  const app = createWebApp({
    store,
    decisions,
    getRequest: decisions.getRequest,
    listPending: decisions.listPending,
    directory: makeDirectory(),
    publicBaseUrl: servers.base,
    now,
    randomBytes: seededRandom(`web-${n}`),
    sendSignInLink: (principal, address) => email.sendSignInLink(principal, address),
    onError: (err) => errors.push(err),
    ...options,
  });
  servers.use(app);
  const mark = servers.sink.inbox.length;
  let requests = 0;

  /** Mails received since this harness started that match. */
  const mails = (predicate: (m: ReceivedMail) => boolean) => servers.sink.inbox.slice(mark).filter(predicate);

  return {
    n,
    clock,
    store,
    decisions,
    email,
    app,
    errors,
    mails,
    /** `usable`, or why the token of a review or sign-in link cannot be used now. */
    async tokenState(link: string): Promise<string> {
      const [, kind = '', token = ''] = new URL(link).pathname.split('/');
      const found = await store.peekToken(
        sha256(token),
        kind === 'signin' ? 'sign-in' : 'email-review',
        now(),
      );
      return found.ok ? 'usable' : found.code;
    },
    /** The live session of a `ar_session=<id>` cookie. */
    session(cookie: string): Promise<SessionRecord | null> {
      return store.getSession(sha256(cookie.slice(cookie.indexOf('=') + 1)), now());
    },
    /** Adds a request with a unique id. */
    request(overrides: Partial<RequestRecord> = {}): RequestRecord {
      requests += 1;
      return decisions.put(makeRequest(now(), { id: `run-${requests}/approval/1`, ...overrides }));
    },
    /** Sends the approval mail of `request` to `principals` and returns each one's review link. */
    async mailLinks(request: RequestRecord, principals: readonly string[]): Promise<Record<string, string>> {
      await email.notify({ kind: 'request', request, recipients: principals.map(contact) });
      const links: Record<string, string> = {};
      for (const p of principals) {
        const address = contact(p).email ?? '';
        const found = mails(
          (m) =>
            m.mail.headers.get('x-agent-runtime-approval') === request.id &&
            m.envelope.rcptTo.some((r) => r.address === address),
        );
        const link = found.at(-1)?.textLinks[0];
        if (link === undefined) throw new Error(`no mail for ${p}`);
        links[p] = link;
      }
      return links;
    },
    /** Waits for `count` sign-in mails to `address` (since this harness started). */
    async signInMails(address: string, count: number, timeoutMs = 5000): Promise<ReceivedMail[]> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = mails(
          (m) =>
            m.mail.subject === 'Sign in to the approvals inbox' &&
            m.envelope.rcptTo.some((r) => r.address === address),
        );
        if (found.length >= count) return found;
        if (Date.now() > deadline) throw new Error(`only ${found.length} sign-in mail(s) to ${address}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/** A response read in full. */
export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
}

/** An HTTP call over the real server (no redirects followed). */
export async function call(
  base: string,
  method: string,
  path: string,
  options: {
    readonly form?: Readonly<Record<string, string>>;
    readonly body?: string;
    readonly cookie?: string;
    readonly headers?: Readonly<Record<string, string>>;
  } = {},
): Promise<Reply> {
  const res = await fetch(path.startsWith('http') ? path : `${base}${path}`, {
    method,
    redirect: 'manual',
    headers: {
      ...(options.form === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
      ...(options.cookie === undefined ? {} : { cookie: options.cookie }),
      ...options.headers,
    },
    ...(options.form === undefined
      ? options.body === undefined
        ? {}
        : { body: options.body }
      : { body: new URLSearchParams(options.form).toString() }),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** The value of a hidden field in a page (the first one). */
export function field(html: string, name: string): string {
  const found = new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
  if (found === undefined) throw new Error(`no field ${name}`);
  return found;
}

/** The page as a reader sees it: tags removed, whitespace collapsed, entities decoded. */
export function visibleText(html: string): string {
  return html
    .replace(/<head>[\s\S]*?<\/head>/, '')
    .replace(/<(textarea)[^>]*>[\s\S]*?<\/\1>/g, '[textarea]')
    .replace(/<button[^>]*>([\s\S]*?)<\/button>/g, '[$1]')
    .replace(/<[^>]+>/g, '\n')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join('\n');
}
