/**
 * The approvals service's configuration file (YAML or JSON), validated once with zod. Secrets are
 * files or environment variables, never inline: the vote-signing key is a key file, SMTP and the
 * PostgreSQL connection may come from the environment, Slack always does (`SLACK_*`), and the
 * observer's alert token is its sha256 or an environment variable.
 * @module
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { readConfigFile } from '../common/config-file.ts';
import { MIN_TOKEN_LENGTH } from '../audit/service-config.ts';
import { tokenSha256 } from '../audit/server.ts';
import { AgentRuntimeError } from '../policy/index.ts';
import type { AlertRoute } from './alerts.ts';

const StoreConfig = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('sqlite'), file: z.string().min(1) }),
  z.strictObject({
    kind: z.literal('postgres'),
    /** Or `$APPROVALS_DATABASE_URL` when omitted. */
    connectionString: z.string().min(1).optional(),
    schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]*$/)
      .optional(),
  }),
]);

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const names = (what: string) =>
  z
    .array(z.string().regex(NAME, { error: `expected ${what}` }))
    .min(1, { error: 'expected a non-empty list' })
    .max(100);
const SHA256_HEX = z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected 64 lowercase hex digits' });

/** Observer alerts: who receives them, of which agents, and the observer's token. */
const AlertsConfig = z
  .strictObject({
    to: z
      .strictObject({
        principals: names('a principal id').optional(),
        roles: names('a role name').optional(),
      })
      .refine((to) => (to.principals === undefined) !== (to.roles === undefined), {
        error: 'expected exactly one of principals or roles',
      }),
    agents: names('an agent id').optional(),
    /** The token's sha256 (or several, while one is rotated). */
    tokenSha256: z
      .preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(SHA256_HEX).min(1).max(8))
      .optional(),
    /** The environment variable holding the token. */
    tokenEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'expected an environment variable name' })
      .optional(),
  })
  .refine((a) => (a.tokenSha256 === undefined) !== (a.tokenEnv === undefined), {
    error: 'expected exactly one of tokenSha256 or tokenEnv',
  });

export const ApprovalsServiceConfigSchema = z.strictObject({
  temporal: z
    .strictObject({
      address: z.string().min(1).default('127.0.0.1:7233'),
      namespace: z.string().min(1).default('default'),
      /** The notification activities' task queue. */
      taskQueue: z.string().min(1).default('approvals'),
    })
    .prefault({}),
  http: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65_535).default(8288),
      /** The origin approvers reach (links in mail and Slack); default the bound address. */
      publicBaseUrl: z.url({ protocol: /^https?$/ }).optional(),
    })
    .prefault({}),
  /** Governance documents the service trusts (paths relative to this file). */
  governance: z.array(z.string().min(1)).min(1),
  /** The vote-signing secret key file (`agent-runtime keys init`). */
  signingKey: z.string().min(1),
  store: StoreConfig,
  /** Append-only audit file of this service (approval attempts and deliveries); omitted = none. */
  auditFile: z.string().min(1).optional(),
  /** The audit aggregator every event also goes to (token: a writer of source `approvals`); omitted = none. */
  aggregator: z
    .strictObject({
      url: z.url({ protocol: /^https?$/ }),
      tokenEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/),
    })
    .optional(),
  /** Prometheus `/metrics` of this service; omitted = none. */
  metrics: z
    .strictObject({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65_535) })
    .optional(),
  /** The email channel; omitted = no email. SMTP credentials may come from `$SMTP_USER` / `$SMTP_PASS`. */
  email: z
    .strictObject({
      from: z.string().min(3),
      smtp: z.strictObject({
        host: z.string().min(1),
        port: z.number().int().min(1).max(65_535),
        secure: z.boolean().optional(),
        ignoreTLS: z.boolean().optional(),
      }),
      dkim: z
        .strictObject({ domainName: z.string(), keySelector: z.string(), privateKeyFile: z.string() })
        .optional(),
    })
    .optional(),
  /** Observer alerts (`POST /v1/alerts`); omitted = no alerts endpoint. */
  alerts: AlertsConfig.optional(),
});
export type ApprovalsServiceConfig = z.output<typeof ApprovalsServiceConfigSchema>;

/** An invalid service configuration; the message names the file and each problem's path. */
export class ApprovalsConfigError extends AgentRuntimeError {
  constructor(message: string) {
    super('APPROVALS_CONFIG_INVALID', message);
  }
}

/** Reads and validates the file; relative paths in it are resolved against its directory. */
export async function loadApprovalsServiceConfig(file: string): Promise<ApprovalsServiceConfig> {
  const config = await readConfigFile(
    file,
    ApprovalsServiceConfigSchema,
    'approvals service configuration',
    (message) => new ApprovalsConfigError(message),
  );
  const base = dirname(resolve(file));
  return Object.freeze({
    ...config,
    governance: config.governance.map((g) => resolve(base, g)),
    signingKey: resolve(base, config.signingKey),
    store:
      config.store.kind === 'sqlite'
        ? { ...config.store, file: resolve(base, config.store.file) }
        : config.store,
    ...(config.auditFile === undefined ? {} : { auditFile: resolve(base, config.auditFile) }),
    ...(config.email?.dkim
      ? {
          email: {
            ...config.email,
            dkim: { ...config.email.dkim, privateKeyFile: resolve(base, config.email.dkim.privateKeyFile) },
          },
        }
      : {}),
  });
}

/**
 * The alert route of a loaded configuration (null without an `alerts` section), with `tokenEnv`
 * read from `env` and hashed. Throws {@link ApprovalsConfigError} naming `file` and
 * `alerts.tokenEnv` when the variable is unset or shorter than {@link MIN_TOKEN_LENGTH}.
 */
export function alertRouteOf(
  config: ApprovalsServiceConfig,
  env: NodeJS.ProcessEnv,
  file: string,
): AlertRoute | null {
  const alerts = config.alerts;
  if (alerts === undefined) return null;
  let digests = alerts.tokenSha256 ?? [];
  if (alerts.tokenEnv !== undefined) {
    const token = env[alerts.tokenEnv];
    if (!token) throw new ApprovalsConfigError(`${file}: alerts.tokenEnv: $${alerts.tokenEnv} is not set`);
    if (token.length < MIN_TOKEN_LENGTH)
      throw new ApprovalsConfigError(
        `${file}: alerts.tokenEnv: $${alerts.tokenEnv} is ${token.length} characters; expected at least ${MIN_TOKEN_LENGTH}`,
      );
    digests = [tokenSha256(token)];
  }
  const to =
    alerts.to.principals === undefined
      ? { roles: alerts.to.roles ?? [] }
      : { principals: alerts.to.principals };
  return Object.freeze({
    to,
    ...(alerts.agents === undefined ? {} : { agents: alerts.agents }),
    tokenSha256: digests,
  });
}
