/**
 * Test support: a real SMTP server (`smtp-server`, plaintext AUTH, no STARTTLS) on 127.0.0.1 that
 * parses every message with `mailparser`. Recipients starting with `bounce@` are rejected.
 * @module
 */
import type { AddressInfo } from 'node:net';
import type { ParsedMail } from 'mailparser';
import { simpleParser } from 'mailparser';
import type { SMTPServerEnvelope } from 'smtp-server';
import { SMTPServer } from 'smtp-server';

/** One received message. */
export interface ReceivedMail {
  readonly envelope: SMTPServerEnvelope;
  readonly mail: ParsedMail;
  /** Every http(s) URL in the text part. */
  readonly textLinks: readonly string[];
  /** Every `href` in the HTML part. */
  readonly htmlLinks: readonly string[];
}

/** A running sink. */
export interface SmtpSink {
  readonly port: number;
  readonly user: string;
  readonly pass: string;
  readonly inbox: ReceivedMail[];
  /** Resolves once `count` messages matching `to` (any when omitted) arrived. */
  waitFor(count: number, to?: string, timeoutMs?: number): Promise<ReceivedMail[]>;
  close(): Promise<void>;
}

/** Starts the sink on a free port. */
export async function startSmtpSink(): Promise<SmtpSink> {
  const user = 'svc';
  const pass = 'pw';
  const inbox: ReceivedMail[] = [];
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS'],
    authOptional: true,
    logger: false,
    onAuth: (auth, _session, done) =>
      auth.username === user && auth.password === pass
        ? done(null, { user })
        : done(new Error('invalid credentials')),
    onRcptTo: (address, _session, done) =>
      address.address.startsWith('bounce@') ? done(new Error('mailbox unavailable')) : done(),
    onData: (stream, session, done) => {
      simpleParser(stream).then(
        (mail) => {
          inbox.push({
            envelope: session.envelope,
            mail,
            textLinks: [...(mail.text ?? '').matchAll(/https?:\/\/[^\s<>"')]+/g)].map((m) => m[0]),
            htmlLinks: [...(typeof mail.html === 'string' ? mail.html : '').matchAll(/href="([^"]*)"/g)].map(
              (m) => m[1] ?? '',
            ),
          });
          done();
        },
        (err: Error) => done(err),
      );
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;
  const matching = (to: string | undefined) =>
    inbox.filter((m) => to === undefined || m.envelope.rcptTo.some((r) => r.address === to));
  return {
    port,
    user,
    pass,
    inbox,
    waitFor: async (count, to, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      while (matching(to).length < count) {
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${count} mail(s) to ${to ?? 'anyone'}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return matching(to);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An SMTP config for nodemailer pointing at `sink`. */
export function sinkConfig(sink: SmtpSink): {
  from: string;
  smtp: { host: string; port: number; secure: false; ignoreTLS: true; auth: { user: string; pass: string } };
} {
  return {
    from: 'Approvals <approvals@example.com>',
    smtp: {
      host: '127.0.0.1',
      port: sink.port,
      secure: false,
      ignoreTLS: true,
      auth: { user: sink.user, pass: sink.pass },
    },
  };
}
