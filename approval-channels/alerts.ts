/**
 * Observer alerts through the approvals service: `POST /v1/alerts` with the observer's own bearer
 * token. The alert names a finding and an agent; who hears about it comes from the service's
 * configuration (`alerts.to`: principals or roles) resolved through the trusted governance
 * documents of that agent, and where they are reached (Slack DM, email) from those documents
 * alone, never from the alert. Each finding is delivered once (repeats are answered
 * `{deduplicated: true}`); every alert, refusal and delivery is audited as `approval.delivery`
 * with `attrs.alert: true`.
 * @module
 */
import { readBounded } from './web/http.ts';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { webApi } from '@slack/bolt';
import { z } from 'zod';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditClient } from '../activities/audit/types.ts';
import { Severity } from '../observer/rules/schema.ts';
import { AgentRuntimeError, formatPath } from '../policy/index.ts';
import type { CompiledPolicy } from '../policy/index.ts';
import type { TrustedGovernance } from './core/directory.ts';
import { ChannelName } from './core/types.ts';
import type { PrincipalContact } from './core/types.ts';
import { cleanText, oneLine, truncate } from './email/format.ts';
import type { MailSender } from './email/mailer.ts';
import { defang } from './email/templates.ts';
import { SECURITY_HEADERS } from './server.ts';
import { escapeTruncated } from './slack/card.ts';
import { clientDetail } from './web/http.ts';

/** Largest alert body accepted (413 beyond). */
export const MAX_ALERT_BODY_BYTES = 32 * 1024;
/** Findings remembered for deduplication (the oldest are forgotten first). */
export const ALERT_DEDUPE_LIMIT = 10_000;

/** Stable error codes of the alerts endpoint (the `error.code` of its answers) and its client. */
export const AlertErrorCode = {
  /** No bearer token, or not an alert token. 401. */
  unauthorized: 'ALERT_UNAUTHORIZED',
  /** The body is not JSON or not an alert; the message names the first problem. 400. */
  invalid: 'ALERT_INVALID',
  /** The body is larger than {@link MAX_ALERT_BODY_BYTES}. 413. */
  tooLarge: 'ALERT_BODY_TOO_LARGE',
  /** Not `application/json`. 415. */
  unsupportedMediaType: 'ALERT_UNSUPPORTED_MEDIA_TYPE',
  /** Only POST is served. 405. */
  methodNotAllowed: 'ALERT_METHOD_NOT_ALLOWED',
  /** The alert's agent has no governance document the service trusts. 404. */
  unknownAgent: 'ALERT_UNKNOWN_AGENT',
  /** The agent is trusted but `alerts.agents` does not list it. 404. */
  agentNotRouted: 'ALERT_AGENT_NOT_ROUTED',
  /** Every delivery failed (nothing was sent; retrying may succeed). 503. */
  undelivered: 'ALERT_UNDELIVERED',
  /** The audit log or a channel failed unexpectedly (or, on the client, the service stayed unreachable); retry. 503. */
  unavailable: 'ALERT_UNAVAILABLE',
  /** The `alerts` settings do not fit the trusted governance documents. */
  configInvalid: 'ALERT_CONFIG_INVALID',
  /** (client) The service answered something that is not an alerts answer. */
  protocol: 'ALERT_PROTOCOL_ERROR',
} as const;
export type AlertErrorCode = (typeof AlertErrorCode)[keyof typeof AlertErrorCode];

/** An alerts refusal or failure; `code` is an {@link AlertErrorCode} (the server's, on the client). */
export class ApprovalsAlertError extends AgentRuntimeError {
  /** The HTTP status, when the error is an answer of the service. */
  readonly status: number | undefined;
  constructor(
    code: string,
    message: string,
    options?: { readonly status?: number; readonly cause?: unknown },
  ) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.status = options?.status;
  }
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const oneLineText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => s.isWellFormed() && !CONTROL.test(s), {
      error: 'expected one line of text without control characters',
    });

/** The body of `POST /v1/alerts`: an `ObserverAlert` (`observer/service.ts`), nothing more. */
export const AlertBodySchema = z.strictObject({
  findingId: z.string().regex(/^[A-Za-z0-9_:.-]{1,128}$/, { error: 'expected a finding id' }),
  ruleId: oneLineText(200),
  severity: z.enum(Severity),
  agent: z.string().regex(ID_PATTERN, { error: 'expected an agent id' }).nullable(),
  runs: z.array(oneLineText(256)).max(50),
  summary: z
    .string()
    .min(1)
    .max(4000)
    .refine((s) => s.isWellFormed(), { error: 'contains a lone surrogate' }),
  at: z.iso.datetime({ offset: true }),
});
/** A validated alert. */
export type AlertBody = z.output<typeof AlertBodySchema>;

/** Who alerts go to: listed principals, or every holder of one of the roles. */
export type AlertRecipients =
  { readonly principals: readonly string[] } | { readonly roles: readonly string[] };

/** The service's alert route (from the `alerts` section of its configuration). */
export interface AlertRoute {
  readonly to: AlertRecipients;
  /** Only alerts of these agents are accepted (default: every trusted agent). */
  readonly agents?: readonly string[];
  /** sha256 (64 lowercase hex) of each accepted bearer token. */
  readonly tokenSha256: readonly string[];
}

/** One delivery, as answered and audited. */
export interface AlertDelivery {
  readonly principal: string;
  readonly channel: typeof ChannelName.slack | typeof ChannelName.email;
  readonly ok: boolean;
}

/** What the alerts endpoint needs of Slack: the Web API client and the workspaces DMs may go to. */
export interface AlertSlack {
  readonly client: Pick<webApi.WebClient, 'chat'>;
  readonly allowedTeams: readonly string[];
}

/** Options of {@link createAlertsEndpoint}. */
export interface AlertsEndpointOptions {
  readonly route: AlertRoute;
  readonly governance: TrustedGovernance;
  readonly slack?: AlertSlack;
  readonly email?: { readonly transport: MailSender; readonly from: string };
  readonly audit?: AuditClient;
  readonly warn?: (message: string) => void;
  /** Findings remembered for deduplication; default {@link ALERT_DEDUPE_LIMIT}. */
  readonly dedupeLimit?: number;
}

/** The mounted endpoint. */
export interface AlertsEndpoint {
  readonly requestListener: RequestListener;
  /** Resolves once every alert being handled is answered. */
  idle(): Promise<void>;
}

/**
 * Checks the route against the trusted documents: each agent it names is trusted, each principal
 * is a principal of some document, each role is defined in one. Throws `ALERT_CONFIG_INVALID`
 * naming the path (`alerts.to.roles[0]`).
 */
export function checkAlertRoute(route: AlertRoute, governance: TrustedGovernance): void {
  const problems: string[] = [];
  if (route.tokenSha256.length === 0) problems.push('alerts: expected at least one token');
  route.tokenSha256.forEach((digest, i) => {
    if (!/^[0-9a-f]{64}$/.test(digest))
      problems.push(`alerts.tokenSha256[${i}]: expected 64 lowercase hex digits`);
  });
  const agents = new Set(governance.versions().map((v) => v.agentId));
  route.agents?.forEach((agent, i) => {
    if (!agents.has(agent))
      problems.push(`alerts.agents[${i}]: "${agent}" has no trusted governance document`);
  });
  const documents = policiesOf(governance, null, route);
  if ('principals' in route.to) {
    const known = new Set(documents.flatMap((p) => p.document.authority.principals.map((x) => x.id)));
    route.to.principals.forEach((id, i) => {
      if (!known.has(id))
        problems.push(
          `alerts.to.principals[${i}]: "${id}" is not a principal of any trusted governance document`,
        );
    });
  } else {
    const roles = new Set(documents.flatMap((p) => Object.keys(p.document.authority.roles)));
    route.to.roles.forEach((role, i) => {
      if (!roles.has(role))
        problems.push(`alerts.to.roles[${i}]: "${role}" is not a role of any trusted governance document`);
    });
  }
  if (problems.length > 0)
    throw new ApprovalsAlertError(
      AlertErrorCode.configInvalid,
      `invalid alert route:\n  ${problems.join('\n  ')}`,
    );
}

/** The trusted documents of `agent` (every routed agent's when null). */
function policiesOf(
  governance: TrustedGovernance,
  agent: string | null,
  route: AlertRoute,
): CompiledPolicy[] {
  return governance
    .versions()
    .filter((v) => (agent === null ? (route.agents?.includes(v.agentId) ?? true) : v.agentId === agent))
    .flatMap((v) => governance.policy(v.policyVersion) ?? []);
}

/** The route's recipients for `agent`, and the listed principals its documents do not know. */
function resolveRecipients(
  governance: TrustedGovernance,
  route: AlertRoute,
  agent: string | null,
): { readonly contacts: PrincipalContact[]; readonly notInGovernance: string[] } {
  const documents = policiesOf(governance, agent, route);
  const ids = new Set<string>();
  const notInGovernance: string[] = [];
  if ('principals' in route.to) {
    for (const id of route.to.principals) {
      if (documents.some((p) => p.document.authority.principals.some((x) => x.id === id))) ids.add(id);
      else notInGovernance.push(id);
    }
  } else {
    for (const p of documents) for (const id of p.select({ roles: [...route.to.roles] })) ids.add(id);
  }
  return { contacts: [...ids].flatMap((id) => governance.byId(id) ?? []), notInGovernance };
}

const SEVERITY_LABEL: Readonly<Record<Severity, string>> = {
  low: 'LOW',
  medium: 'MEDIUM',
  high: 'HIGH',
  critical: 'CRITICAL',
};
const RUNS_SHOWN = 5;

/** The alert as text lines; `line`/`block` escape and cut every observer-supplied string. */
function alertLines(
  alert: AlertBody,
  line: (value: string, max: number) => string,
  block: (value: string, max: number) => string,
): string[] {
  const runs = alert.runs.slice(0, RUNS_SHOWN).map((r) => line(r, 256));
  if (alert.runs.length > RUNS_SHOWN) runs.push(`+${alert.runs.length - RUNS_SHOWN} more`);
  return [
    `The independent observer raised a ${alert.severity} finding.`,
    '',
    `Severity: ${SEVERITY_LABEL[alert.severity]}`,
    `Rule:     ${line(alert.ruleId, 200)}`,
    `Agent:    ${alert.agent === null ? '(not one agent)' : line(alert.agent, 128)}`,
    `Runs:     ${runs.length === 0 ? '(none)' : runs.join(', ')}`,
    `Finding:  ${line(alert.findingId, 128)}`,
    `At:       ${line(alert.at, 64)}`,
    '',
    'Summary (from the observer):',
    block(alert.summary, 1500),
    '',
    'Details: agent-runtime observer findings --json',
  ];
}

/** The plain-text mail of an alert (URLs in observer text defanged, control characters removed). */
function renderAlertMail(alert: AlertBody): { subject: string; text: string } {
  const line = (value: string, max: number) => defang(oneLine(value, max));
  const block = (value: string, max: number) => defang(truncate(cleanText(value), max));
  const agent = alert.agent === null ? 'several agents' : line(alert.agent, 80);
  return {
    subject: `[Observer alert: ${SEVERITY_LABEL[alert.severity]}] ${line(alert.ruleId, 80)} on ${agent}`,
    text: `${alertLines(alert, line, block).join('\n')}\n`,
  };
}

/** The plain-text Slack DM of an alert (escaped like the approval cards: no mentions, no links). */
function renderAlertSlack(alert: AlertBody): string {
  const line = (value: string, max: number) => escapeTruncated(oneLine(value, max), max);
  const block = (value: string, max: number) => escapeTruncated(cleanText(value), max);
  return alertLines(alert, line, block).join('\n');
}

/** A refusal answered with `status` (and audited). */
const refusal = (status: number, code: AlertErrorCode, message: string): ApprovalsAlertError =>
  new ApprovalsAlertError(code, message, { status });

const errorText = (error: unknown): string =>
  truncate(error instanceof Error ? error.message : String(error), 300);

/** Builds the `POST /v1/alerts` listener (mounted by the approvals HTTP server). */
export function createAlertsEndpoint(options: AlertsEndpointOptions): AlertsEndpoint {
  const { route, governance } = options;
  checkAlertRoute(route, governance);
  const digests = route.tokenSha256.map((hex) => Buffer.from(hex, 'hex'));
  const limit = Math.max(1, options.dedupeLimit ?? ALERT_DEDUPE_LIMIT);
  const allowedTeams = new Set(options.slack?.allowedTeams ?? []);
  /** findingId → handled (or being handled); insertion order is age. */
  const seen = new Set<string>();
  const inflight = new Set<Promise<void>>();

  const audit = async (
    agent: string | null,
    runs: readonly string[],
    attrs: Readonly<Record<string, unknown>>,
  ): Promise<void> => {
    await options.audit?.append({
      source: 'approvals',
      agent,
      run: runs.length === 1 ? (runs[0] ?? null) : null,
      step: null,
      kind: AuditKind.approvalDelivery,
      attrs: { alert: true, ...attrs },
    });
  };

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
      ...(status === 413 ? { connection: 'close' } : {}),
      ...(status === 405 ? { allow: 'POST' } : {}),
    });
    res.end(text);
  };

  const authenticate = (req: IncomingMessage): void => {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([!-~]{1,4096})$/.exec(header) : null;
    if (match?.[1] === undefined)
      throw refusal(401, AlertErrorCode.unauthorized, 'a bearer token is required');
    const presented = createHash('sha256').update(match[1], 'utf8').digest();
    let found = false;
    // every digest is compared, so the time taken does not say which one nearly matched
    for (const digest of digests) if (timingSafeEqual(presented, digest)) found = true;
    if (!found) throw refusal(401, AlertErrorCode.unauthorized, 'not an alert token');
  };

  const parse = async (req: IncomingMessage): Promise<AlertBody> => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json')
      throw refusal(415, AlertErrorCode.unsupportedMediaType, 'expected content-type application/json');
    const tooLarge = refusal(
      413,
      AlertErrorCode.tooLarge,
      `the body is larger than ${MAX_ALERT_BODY_BYTES} bytes`,
    );
    if (Number(req.headers['content-length'] ?? 0) > MAX_ALERT_BODY_BYTES) throw tooLarge;
    const body = await readBounded(req, MAX_ALERT_BODY_BYTES);
    if (body === null) throw tooLarge;
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8')) as unknown;
    } catch {
      throw refusal(400, AlertErrorCode.invalid, 'body: not valid JSON');
    }
    const parsed = AlertBodySchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw refusal(
        400,
        AlertErrorCode.invalid,
        issue === undefined ? '(root): invalid' : `${formatPath(issue.path)}: ${issue.message}`,
      );
    }
    return parsed.data;
  };

  const checkAgent = (agent: string | null): void => {
    if (agent === null) return;
    if (!governance.versions().some((v) => v.agentId === agent))
      throw refusal(404, AlertErrorCode.unknownAgent, `agent "${agent}" has no trusted governance document`);
    if (route.agents !== undefined && !route.agents.includes(agent))
      throw refusal(404, AlertErrorCode.agentNotRouted, `alerts of agent "${agent}" are not routed here`);
  };

  const remember = (findingId: string): boolean => {
    if (seen.has(findingId)) return false;
    seen.add(findingId);
    for (const oldest of seen) {
      if (seen.size <= limit) break;
      seen.delete(oldest);
    }
    return true;
  };

  const deliverOne = async (
    alert: AlertBody,
    contact: PrincipalContact,
    channel: AlertDelivery['channel'],
    deliver: () => Promise<unknown>,
  ): Promise<AlertDelivery> => {
    let error: string | null = null;
    try {
      await deliver();
    } catch (e) {
      error = errorText(e);
      options.warn?.(`alert ${alert.findingId}: ${channel} to ${contact.id} failed: ${error}`);
    }
    return { principal: contact.id, channel, ok: error === null };
  };

  const deliver = async (
    alert: AlertBody,
    contacts: readonly PrincipalContact[],
  ): Promise<AlertDelivery[]> => {
    const mail = options.email ? renderAlertMail(alert) : null;
    const dm = options.slack ? renderAlertSlack(alert) : null;
    const tasks: Promise<AlertDelivery>[] = [];
    for (const contact of contacts) {
      const { slack } = contact;
      if (options.slack && dm !== null && slack !== null && allowedTeams.has(slack.team)) {
        const client = options.slack.client;
        tasks.push(
          deliverOne(alert, contact, ChannelName.slack, async () => {
            const answer = await client.chat.postMessage({
              channel: slack.user,
              text: dm,
              mrkdwn: false,
              unfurl_links: false,
              unfurl_media: false,
            });
            if (answer.ok !== true) throw new Error(`chat.postMessage: ${answer.error ?? 'not ok'}`);
          }),
        );
      }
      const address = contact.email;
      if (options.email && mail !== null && address !== null) {
        const { transport, from } = options.email;
        tasks.push(
          deliverOne(alert, contact, ChannelName.email, () =>
            transport.sendMail({
              from,
              to: address,
              subject: mail.subject,
              text: mail.text,
              // no HTML part: the alert is plain text
              html: '',
              headers: { 'X-Agent-Runtime-Alert': alert.findingId, 'Auto-Submitted': 'auto-generated' },
            }),
          ),
        );
      }
    }
    return Promise.all(tasks);
  };

  const handleAlert = async (alert: AlertBody, res: ServerResponse): Promise<void> => {
    const about = { findingId: alert.findingId, ruleId: alert.ruleId, severity: alert.severity };
    if (!remember(alert.findingId)) {
      await audit(alert.agent, alert.runs, { ...about, outcome: 'deduplicated' });
      send(res, 200, { deduplicated: true });
      return;
    }
    let sent = false;
    try {
      const { contacts, notInGovernance } = resolveRecipients(governance, route, alert.agent);
      await audit(alert.agent, alert.runs, {
        ...about,
        outcome: 'received',
        runs: alert.runs,
        recipients: contacts.map((c) => c.id),
        ...(notInGovernance.length === 0 ? {} : { notInGovernance }),
      });
      const delivered = await deliver(alert, contacts);
      sent = delivered.some((d) => d.ok);
      for (const d of delivered)
        await audit(alert.agent, alert.runs, {
          ...about,
          channel: d.channel,
          principal: d.principal,
          outcome: d.ok ? 'sent' : 'failed',
        });
      const reached = new Set(delivered.map((d) => d.principal));
      const unreachable = contacts.filter((c) => !reached.has(c.id)).map((c) => c.id);
      for (const principal of unreachable)
        await audit(alert.agent, alert.runs, { ...about, principal, outcome: 'no_channel' });
      if (delivered.length > 0 && !sent) {
        seen.delete(alert.findingId); // nothing went out: a retry may deliver it
        send(res, 503, {
          error: { code: AlertErrorCode.undelivered, message: `every delivery of ${alert.findingId} failed` },
        });
        return;
      }
      send(res, 202, { delivered, unreachable });
    } catch (error) {
      if (!sent) seen.delete(alert.findingId);
      options.warn?.(`alert ${alert.findingId}: ${errorText(error)}`);
      if (!res.headersSent)
        send(res, 503, {
          error: { code: AlertErrorCode.unavailable, message: 'the alert could not be handled; retry' },
        });
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let alert: AlertBody;
    try {
      if (req.method !== 'POST')
        throw refusal(405, AlertErrorCode.methodNotAllowed, 'only POST is served here');
      authenticate(req);
      alert = await parse(req);
      checkAgent(alert.agent);
    } catch (error) {
      if (!(error instanceof ApprovalsAlertError) || error.status === undefined) throw error;
      send(res, error.status, { error: { code: error.code, message: error.message } });
      await audit(null, [], {
        outcome: 'refused',
        code: error.code,
        status: error.status,
        message: truncate(error.message, 300),
        ...clientDetail(req),
      }).catch((e: unknown) => options.warn?.(`alerts: could not audit a refusal: ${errorText(e)}`));
      return;
    }
    await handleAlert(alert, res);
  };

  return {
    requestListener: (req, res) => {
      const work = handle(req, res)
        .catch((error: unknown) => {
          options.warn?.(`alerts: ${errorText(error)}`);
          if (!res.headersSent)
            send(res, 503, {
              error: { code: AlertErrorCode.unavailable, message: 'the alert could not be handled; retry' },
            });
          else res.end();
        })
        .finally(() => inflight.delete(work));
      inflight.add(work);
    },
    idle: async () => {
      while (inflight.size > 0) await Promise.allSettled([...inflight]);
    },
  };
}
