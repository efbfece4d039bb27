/**
 * Assembles the approvals service: the core ({@link ApprovalService}), its channels (Slack when
 * configured, email when configured, the web inbox always), the observer's alerts endpoint when an
 * alert route is configured, and the HTTP server they share. The `approvals` worker's notification
 * activity is {@link ApprovalsHost.handleNotice}.
 * @module
 */
import type { RequestListener } from 'node:http';
import type { Client } from '@temporalio/client';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditClient } from '../activities/audit/types.ts';
import type { ToolCatalog } from '../policy/index.ts';
import type { ApprovalNotice } from '../workflows/approval-types.ts';
import { checkAlertRoute, createAlertsEndpoint } from './alerts.ts';
import type { AlertRoute, AlertsEndpoint } from './alerts.ts';
import type { TrustedGovernance } from './core/directory.ts';
import { ApprovalService } from './core/service.ts';
import type { ApprovalStore, NotifyChannel, RequestRecord } from './core/types.ts';
import { createMailTransport, EmailChannel, parseEmailConfig } from './email/index.ts';
import type { MailSender } from './email/index.ts';
import { startApprovalsHttp } from './server.ts';
import type { ApprovalsHttpServer } from './server.ts';
import { createSlackApp } from './slack/app.ts';
import type { SlackApp, SlackAppOptions } from './slack/app.ts';
import { createWebApp } from './web/index.ts';
import type { WebApp } from './web/index.ts';

/** Slack settings: credentials and workspace; the host supplies the rest. */
export type SlackHostOptions = Omit<
  SlackAppOptions,
  'decisions' | 'directory' | 'store' | 'getRequest' | 'publicBaseUrl' | 'onMessagesPosted' | 'now'
>;

/** Email settings: an SMTP config (validated by the email channel) or a ready transport. */
export type EmailHostOptions =
  { readonly config: unknown } | { readonly transport: MailSender; readonly from: string };

export interface ApprovalsHostOptions {
  readonly store: ApprovalStore;
  readonly governance: TrustedGovernance;
  readonly client: Client;
  readonly secretKey: Uint8Array;
  /** Tool specs for approve-with-edits. */
  readonly tools?: ToolCatalog;
  readonly http?: { readonly host?: string; readonly port?: number };
  /** The origin approvers reach (default: the server's own `http://127.0.0.1:<port>`). */
  readonly publicBaseUrl?: string;
  readonly slack?: SlackHostOptions;
  readonly email?: EmailHostOptions;
  /** Observer alerts (`POST /v1/alerts`) and who receives them; omitted = no alerts endpoint. */
  readonly alerts?: AlertRoute;
  readonly audit?: AuditClient;
  readonly now?: () => number;
  readonly warn?: (message: string) => void;
  readonly onNotice?: (notice: ApprovalNotice, request: RequestRecord | null) => void;
}

export interface ApprovalsHost {
  readonly service: ApprovalService;
  readonly web: WebApp;
  readonly slack: SlackApp | null;
  readonly email: EmailChannel | null;
  /** The alerts endpoint, when an alert route is configured. */
  readonly alerts: AlertsEndpoint | null;
  readonly http: ApprovalsHttpServer;
  readonly publicBaseUrl: string;
  /** The `approvals` worker's notification activity. */
  handleNotice(notice: ApprovalNotice): Promise<void>;
  /** A one-time web inbox sign-in link for `principal`. */
  createSignInLink(principal: string): Promise<string>;
  close(): Promise<void>;
}

/** The store, with every `recordAttempt` also appended to the audit log as `approval.attempt`. */
function auditedAttempts(store: ApprovalStore, audit: AuditClient | undefined): ApprovalStore {
  if (!audit) return store;
  const recordAttempt: ApprovalStore['recordAttempt'] = async (attempt) => {
    await store.recordAttempt(attempt);
    await audit.append({
      source: 'approvals',
      agent: null,
      run: null,
      step: null,
      kind: AuditKind.approvalAttempt,
      attrs: {
        approvalWorkflowId: attempt.requestId,
        channel: attempt.channel,
        action: attempt.action,
        principal: attempt.principal,
        outcome: attempt.outcome,
        ...attempt.detail,
      },
    });
  };
  // the stores are frozen objects of closures: a copy with one method replaced delegates the rest
  return Object.freeze({ ...store, recordAttempt });
}

/** Starts the HTTP server and builds the service around it. */
export async function startApprovalsHost(options: ApprovalsHostOptions): Promise<ApprovalsHost> {
  // a route that does not fit the trusted documents is refused before anything listens
  if (options.alerts) checkAlertRoute(options.alerts, options.governance);
  let listener: RequestListener | null = null;
  let slackListener: RequestListener | null = null;
  let alertsListener: RequestListener | null = null;
  const http = await startApprovalsHttp({
    ...(options.http?.host === undefined ? {} : { host: options.http.host }),
    ...(options.http?.port === undefined ? {} : { port: options.http.port }),
    web: (req, res) => listener?.(req, res),
    ...(options.alerts ? { alerts: (req, res) => alertsListener?.(req, res) } : {}),
    slack: (req, res) => {
      if (slackListener) slackListener(req, res);
      else {
        res.writeHead(404);
        res.end();
      }
    },
  });
  const publicBaseUrl = (options.publicBaseUrl ?? http.url).replace(/\/+$/, '');
  const now = options.now ?? Date.now;
  const { governance } = options;
  // what the channels record themselves (views, sign-ins, refusals before the core) reaches the audit log too
  const store = auditedAttempts(options.store, options.audit);
  // filled below: the channels need the service (their DecisionPort) and the service its channels
  const channels: NotifyChannel[] = [];
  const service = new ApprovalService({
    // the core audits its own attempts (with agent, run and step)
    store: options.store,
    governance,
    client: options.client,
    secretKey: options.secretKey,
    channels,
    ...(options.tools === undefined ? {} : { tools: options.tools }),
    ...(options.audit === undefined ? {} : { audit: options.audit }),
    now,
    ...(options.warn === undefined ? {} : { warn: options.warn }),
    ...(options.onNotice === undefined ? {} : { onNotice: options.onNotice }),
  });

  let slack: SlackApp | null = null;
  if (options.slack) {
    slack = createSlackApp({
      ...options.slack,
      decisions: service,
      directory: governance,
      store,
      getRequest: (id) => store.getRequest(id),
      publicBaseUrl,
      now,
      onMessagesPosted: async (requestId, refs) => {
        const current = await store.getRequest(requestId);
        if (!current) return;
        const known = new Set(current.slackMessages.map((m) => `${m.channel}/${m.ts}`));
        const added = refs.filter((r) => !known.has(`${r.channel}/${r.ts}`));
        if (added.length > 0)
          await store.updateRequest(requestId, { slackMessages: [...current.slackMessages, ...added] });
      },
    });
    slackListener = slack.requestListener;
    channels.push(slack.channel);
  }
  let email: EmailChannel | null = null;
  // one transport for approval mail and alerts (the channel closes it)
  let mail: { readonly transport: MailSender; readonly from: string } | null = null;
  if (options.email) {
    if ('config' in options.email) {
      const config = parseEmailConfig(options.email.config);
      mail = { transport: createMailTransport(config), from: config.from };
    } else mail = options.email;
    email = new EmailChannel({ ...mail, store, publicBaseUrl, now });
    channels.push(email);
  }

  let alerts: AlertsEndpoint | null = null;
  if (options.alerts) {
    alerts = createAlertsEndpoint({
      route: options.alerts,
      governance,
      ...(slack && options.slack
        ? { slack: { client: slack.app.client, allowedTeams: options.slack.allowedTeams } }
        : {}),
      ...(mail ? { email: mail } : {}),
      ...(options.audit === undefined ? {} : { audit: options.audit }),
      ...(options.warn === undefined ? {} : { warn: options.warn }),
    });
    alertsListener = alerts.requestListener;
  }

  const web = createWebApp({
    store,
    decisions: service,
    getRequest: (id) => store.getRequest(id),
    listPending: (principal) => service.listPending(principal),
    directory: governance,
    publicBaseUrl,
    now,
    secureCookies: publicBaseUrl.startsWith('https:'),
    ...(email
      ? { sendSignInLink: (principal: string, address: string) => email.sendSignInLink(principal, address) }
      : {}),
  });
  listener = web;

  return {
    service,
    web,
    slack,
    email,
    alerts,
    http,
    publicBaseUrl,
    handleNotice: (notice) => service.handleNotice(notice),
    createSignInLink: (principal) => web.createSignInLink(principal),
    close: async () => {
      await service.idle();
      await alerts?.idle();
      await http.close();
      await email?.close();
    },
  };
}
