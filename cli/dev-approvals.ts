/**
 * The approvals service inside `agent-runtime dev`: its SQLite store under the state directory,
 * the web inbox on localhost, email through nodemailer to a local SMTP capture whose messages
 * (with their links) are printed, and Slack only when `SLACK_*` is configured. Given an alert
 * token's hash, observer alerts go to the holders of the `platform-lead` role of each document.
 * @module
 */
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditClient } from '../activities/audit/types.ts';
import { loadTrustedGovernance } from '../approval-channels/core/directory.ts';
import { startApprovalsHost } from '../approval-channels/host.ts';
import type { ApprovalsHost, SlackHostOptions } from '../approval-channels/host.ts';
import { loadSecretKey } from '../approval-channels/keys.ts';
import { startMailCapture } from '../approval-channels/mail-capture.ts';
import type { CapturedMail, MailCapture } from '../approval-channels/mail-capture.ts';
import { openSqliteStore } from '../approval-channels/store/index.ts';
import { toolCatalog } from '../policy/index.ts';
import type { AnyToolSpec } from '../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../tools/builtin-specs.ts';
import type { DevStack } from '../worker/stack.ts';
import { UsageError } from './io.ts';

/** The role whose holders receive observer alerts in `agent-runtime dev`. */
export const DEV_ALERT_ROLE = 'platform-lead';

export interface DevApprovals {
  readonly host: ApprovalsHost;
  readonly mail: MailCapture;
  /** Governance files the service trusts. */
  readonly governanceFiles: readonly string[];
  close(): Promise<void>;
}

/** Every `examples/<name>/governance.yaml` of the project. */
export function exampleGovernanceFiles(root: string): string[] {
  const examples = join(root, 'examples');
  if (!existsSync(examples)) return [];
  return readdirSync(examples, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => join(examples, entry.name, 'governance.yaml'))
    .filter((file) => existsSync(file));
}

/** Slack settings from `SLACK_*`, or undefined when Slack is not configured (all or nothing). */
export function slackFromEnv(env: NodeJS.ProcessEnv = process.env): SlackHostOptions | undefined {
  const names = [
    'SLACK_BOT_TOKEN',
    'SLACK_SIGNING_SECRET',
    'SLACK_APP_ID',
    'SLACK_BOT_ID',
    'SLACK_BOT_USER_ID',
    'SLACK_ALLOWED_TEAMS',
  ] as const;
  const set = names.filter((name) => env[name]);
  if (set.length === 0) return undefined;
  if (set.length !== names.length)
    throw new UsageError(
      `Slack is half configured: set all of ${names.join(', ')} (missing: ${names.filter((n) => !env[n]).join(', ')})`,
      '',
    );
  return {
    botToken: env.SLACK_BOT_TOKEN!,
    signingSecret: env.SLACK_SIGNING_SECRET!,
    appId: env.SLACK_APP_ID!,
    botId: env.SLACK_BOT_ID!,
    botUserId: env.SLACK_BOT_USER_ID!,
    allowedTeams: env.SLACK_ALLOWED_TEAMS!.split(',').map((t) => t.trim()),
    ...(env.SLACK_API_URL ? { slackApiUrl: env.SLACK_API_URL } : {}),
  };
}

/** Starts the approvals service for the dev stack. */
export async function startDevApprovals(options: {
  readonly stack: DevStack;
  readonly governanceFiles: readonly string[];
  readonly toolSpecs?: readonly AnyToolSpec[];
  readonly port: number;
  readonly audit?: AuditClient;
  readonly onMail?: (mail: CapturedMail) => void;
  readonly warn?: (message: string) => void;
  readonly env?: NodeJS.ProcessEnv;
  /** sha256 (hex) of the observer's alert token; omitted = no alerts endpoint. */
  readonly alertTokenSha256?: string;
}): Promise<DevApprovals> {
  const governance = await loadTrustedGovernance(options.governanceFiles);
  const hasAlertRole = governance
    .versions()
    .some((v) => governance.policy(v.policyVersion)?.document.authority.roles[DEV_ALERT_ROLE] !== undefined);
  if (options.alertTokenSha256 !== undefined && !hasAlertRole)
    options.warn?.(
      `no trusted governance document defines the role ${DEV_ALERT_ROLE}: observer alerts are off`,
    );
  const alerts =
    options.alertTokenSha256 !== undefined && hasAlertRole
      ? { to: { roles: [DEV_ALERT_ROLE] }, tokenSha256: [options.alertTokenSha256] }
      : undefined;
  const store = await openSqliteStore({ file: join(options.stack.stateDir, 'approvals', 'approvals.db') });
  const mail = await startMailCapture(options.onMail ? { onMail: options.onMail } : {});
  const slack = slackFromEnv(options.env);
  try {
    const host = await startApprovalsHost({
      store,
      governance,
      client: options.stack.client,
      secretKey: (await loadSecretKey(options.stack.keys.secretKeyFile)).secretKey,
      tools: toolCatalog([...BUILTIN_TOOL_SPECS, ...(options.toolSpecs ?? [])]),
      http: { port: options.port },
      email: {
        config: {
          from: 'agent-runtime <approvals@localhost>',
          smtp: { host: mail.host, port: mail.port, ignoreTLS: true },
        },
      },
      ...(slack ? { slack } : {}),
      ...(alerts ? { alerts } : {}),
      ...(options.audit ? { audit: options.audit } : {}),
      ...(options.warn ? { warn: options.warn } : {}),
    });
    return {
      host,
      mail,
      governanceFiles: options.governanceFiles,
      close: async () => {
        await host.close();
        await mail.close();
        await store.close();
      },
    };
  } catch (error) {
    await mail.close();
    await store.close();
    throw error;
  }
}
