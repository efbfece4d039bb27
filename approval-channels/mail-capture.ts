/**
 * A local SMTP server that keeps every message instead of delivering it: `agent-runtime dev`
 * sends approval mail here and prints it (with its links), so the email channel runs for real
 * (nodemailer over SMTP) on a machine without a mail server.
 * @module
 */
import type { AddressInfo } from 'node:net';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

/** One captured message. */
export interface CapturedMail {
  readonly from: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly text: string;
  readonly html: string | null;
  /** Every http(s) link in the text part. */
  readonly links: readonly string[];
  readonly headers: Readonly<Record<string, string>>;
}

export interface MailCapture {
  readonly host: string;
  readonly port: number;
  readonly messages: readonly CapturedMail[];
  /** Resolves with the next message for which `predicate` holds (already captured ones count). */
  waitFor(predicate: (mail: CapturedMail) => boolean, timeoutMs?: number): Promise<CapturedMail>;
  close(): Promise<void>;
}

/** Starts the capture on 127.0.0.1 (port 0 = a free one); `onMail` sees each message as it arrives. */
export async function startMailCapture(
  options: { readonly port?: number; readonly onMail?: (mail: CapturedMail) => void } = {},
): Promise<MailCapture> {
  const messages: CapturedMail[] = [];
  const waiters = new Set<(mail: CapturedMail) => void>();
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'],
    authOptional: true,
    logger: false,
    size: 5 * 1024 * 1024,
    onData(stream, session, done) {
      simpleParser(stream).then(
        (parsed) => {
          const text = parsed.text ?? '';
          const headers: Record<string, string> = {};
          for (const [key, value] of parsed.headers) if (typeof value === 'string') headers[key] = value;
          const mail: CapturedMail = Object.freeze({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            subject: parsed.subject ?? '',
            text,
            html: typeof parsed.html === 'string' ? parsed.html : null,
            links: [...text.matchAll(/https?:\/\/[^\s<>"')]+/g)].map((m) => m[0]),
            headers,
          });
          messages.push(mail);
          options.onMail?.(mail);
          for (const waiter of waiters) waiter(mail);
          done();
        },
        (error: Error) => done(error),
      );
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    messages,
    waitFor: (predicate, timeoutMs = 10_000) => {
      const found = messages.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise<CapturedMail>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching mail within ${timeoutMs} ms (${messages.length} captured)`));
        }, timeoutMs);
        const check = (mail: CapturedMail): void => {
          if (!predicate(mail)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(mail);
        };
        waiters.add(check);
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
