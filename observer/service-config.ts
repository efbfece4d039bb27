/**
 * The observer process's configuration file (YAML), validated once with zod. The aggregator token
 * comes from the environment, never the file; relative paths resolve against the file's directory.
 * @module
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { readConfigFile } from '../common/config-file.ts';
import { parseDuration } from '../policy/duration.ts';
import { AgentRuntimeError } from '../policy/index.ts';

/** `250ms`, or a governance duration (`5s`, `2m`, `1h`). */
function parseMs(text: string): number | undefined {
  const ms = /^(\d{1,9})ms$/.exec(text);
  return ms ? Number(ms[1]) : parseDuration(text);
}

const Duration = (max: number) =>
  z.string().refine(
    (text) => {
      const ms = parseMs(text);
      return ms !== undefined && ms > 0 && ms <= max;
    },
    `expected a duration such as 500ms, 5s or 2m (at most ${max / 1000}s)`,
  );

export const ObserverConfigSchema = z.strictObject({
  aggregator: z.strictObject({
    url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
    /** Environment variable holding the observer's bearer token (writer of source `observer`). */
    tokenEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'expected an environment variable name (A-Z, 0-9, _)' }),
    stream: z.string().min(1).default('default'),
  }),
  temporal: z
    .strictObject({
      address: z.string().min(1).default('127.0.0.1:7233'),
      namespace: z.string().min(1).default('default'),
    })
    .prefault({}),
  store: z.strictObject({ file: z.string().min(1) }),
  rules: z
    .strictObject({
      builtin: z.boolean().default(true),
      files: z.array(z.string().min(1)).default([]),
      /** `false`: every rule reports only (shadow), whatever its mode. */
      enforce: z.boolean().default(true),
    })
    .prefault({}),
  heartbeat: z
    .strictObject({
      ttl: Duration(600_000).default('5s'),
      every: Duration(60_000).default('1s'),
    })
    .prefault({}),
  /** Public keys trusted to sign governance changes. */
  governanceKeys: z.array(z.string().min(1)).default([]),
  /** Prometheus `/metrics` and `/healthz`; omitted = none. */
  metrics: z
    .strictObject({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65_535) })
    .optional(),
  alerts: z
    .strictObject({
      /** Each alert is POSTed as JSON here (Slack-compatible incoming webhooks accept `text`). */
      webhook: z.url({ protocol: /^https?$/ }).optional(),
      /** The approvals service's `POST /v1/alerts` (Slack DM and email to the principals its config names). */
      approvals: z
        .strictObject({
          url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
          /** Environment variable holding the observer's alert token. */
          tokenEnv: z
            .string()
            .regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'expected an environment variable name (A-Z, 0-9, _)' }),
        })
        .optional(),
    })
    .prefault({}),
  revokeGrace: Duration(600_000).default('10s'),
  /** Prometheus endpoints whose samples the rules see as `metric.sample` events. */
  scrape: z
    .array(
      z.strictObject({
        job: z.string().min(1).max(64),
        url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
        every: Duration(3_600_000).default('15s'),
      }),
    )
    .default([]),
});
export type ObserverConfig = z.output<typeof ObserverConfigSchema>;

/** An invalid observer configuration; the message names the file and each problem's path. */
export class ObserverConfigError extends AgentRuntimeError {
  constructor(message: string) {
    super('OBSERVER_CONFIG_INVALID', message);
  }
}

/** Reads and validates the file. */
export async function loadObserverConfig(file: string): Promise<ObserverConfig> {
  const config = await readConfigFile(
    file,
    ObserverConfigSchema,
    'observer configuration',
    (message) => new ObserverConfigError(message),
  );
  const base = dirname(resolve(file));
  return Object.freeze({
    ...config,
    store: { file: resolve(base, config.store.file) },
    rules: { ...config.rules, files: config.rules.files.map((f) => resolve(base, f)) },
    governanceKeys: config.governanceKeys.map((k) => resolve(base, k)),
  });
}

/** Milliseconds of a duration the schema accepted. */
export function durationMs(text: string): number {
  return parseMs(text) ?? 0;
}
