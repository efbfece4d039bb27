/**
 * The audit aggregator's configuration file (YAML or JSON), validated once with zod. Secrets are
 * never inline: the checkpoint key is a key file (`agent-runtime keys init`), tokens are given as
 * their sha256 or read from an environment variable at load time, and so are the headers of the
 * optional OTLP log export.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { formatPath } from '../policy/load.ts';
import { AuditStoreConfigSchema, STREAM_PATTERN } from './index.ts';
import type { AuditStoreConfig } from './index.ts';
import type { AuditExportStart } from './otlp-logs.ts';
import { AuditAggregatorError, AuditAggregatorErrorCode, TokenSourcesSchema, tokenSha256 } from './server.ts';
import type { AggregatorToken } from './server.ts';

/** Shortest token accepted from the environment. */
export const MIN_TOKEN_LENGTH = 16;
/** Checkpoints when the configuration names none: a signed head at least this often. */
export const DEFAULT_CHECKPOINTS = Object.freeze({ everyAppends: 1_000, everySeconds: 10 });

const EnvNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' });

const TokenSchema = z
  .strictObject({
    name: z.string().min(1).max(128),
    tokenSha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, { error: 'expected 64 lowercase hex digits' })
      .optional(),
    tokenEnv: EnvNameSchema.optional(),
    sources: TokenSourcesSchema,
  })
  .refine((t) => (t.tokenSha256 === undefined) !== (t.tokenEnv === undefined), {
    error: 'expected exactly one of tokenSha256 or tokenEnv',
  });

const OtlpExportSchema = z.strictObject({
  /** The collector's base URL; records go to `<endpoint>/v1/logs`. */
  endpoint: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
  /** Headers as `name=value,name2=value2` (values URL-encoded), like `OTEL_EXPORTER_OTLP_HEADERS`. */
  headersEnv: EnvNameSchema.optional(),
  serviceName: z.string().min(1).max(256).optional(),
  streams: z
    .array(z.string().regex(STREAM_PATTERN, { error: 'expected a stream name' }))
    .min(1, { error: 'expected at least one stream' })
    .refine((s) => new Set(s).size === s.length, { error: 'a stream is named twice' })
    .default(['default']),
  fromSeq: z.enum(['head', 'start'], { error: 'expected "head" or "start"' }).default('head'),
});

/** The file's schema. */
export const AggregatorConfigSchema = z.strictObject({
  listen: z.strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.int({ error: 'expected a port from 0 to 65535' }).min(0).max(65_535),
  }),
  store: AuditStoreConfigSchema,
  /** The Ed25519 secret key file the checkpoints are signed with. */
  checkpointKey: z.string().min(1),
  tokens: z
    .array(TokenSchema)
    .min(1, { error: 'expected at least one token' })
    .refine((t) => new Set(t.map((x) => x.name)).size === t.length, {
      error: 'two tokens have the same name',
    }),
  export: z.strictObject({ otlp: OtlpExportSchema }).optional(),
});

/** The OTLP log export of a loaded configuration: headers read from the environment. */
export interface AggregatorOtlpExport {
  readonly endpoint: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName?: string;
  readonly streams: readonly string[];
  readonly fromSeq: AuditExportStart;
}

/** A loaded configuration: paths absolute, tokens as their hashes. */
export interface AggregatorConfig {
  readonly listen: { readonly host: string; readonly port: number };
  /** With `checkpoints` filled in ({@link DEFAULT_CHECKPOINTS} when the file names none). */
  readonly store: AuditStoreConfig;
  readonly checkpointKey: string;
  readonly tokens: readonly AggregatorToken[];
  /** Present when the file has an `export` section. */
  readonly export?: { readonly otlp: AggregatorOtlpExport };
}

/** The configuration file is unreadable or invalid; the message names the file, line and path. */
export class AggregatorConfigError extends AuditAggregatorError {
  constructor(message: string) {
    super(AuditAggregatorErrorCode.configInvalid, message);
  }
}

/**
 * Reads and validates the file; relative paths in it are resolved against its directory.
 * `withoutTokens` (for tools that only open the store: export, verify) skips reading the tokens'
 * environment variables and returns no tokens (nor the OTLP export's headers).
 */
export async function loadAggregatorConfig(
  file: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
  options: { readonly withoutTokens?: boolean } = {},
): Promise<AggregatorConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new AggregatorConfigError(
      `${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    throw new AggregatorConfigError(
      `${file}:${lineCounter.linePos(syntax.pos[0]).line}: invalid YAML: ${syntax.message.split('\n')[0]}`,
    );
  }
  const problem = (path: readonly PropertyKey[], message: string): never => {
    let line: number | undefined;
    for (let n = path.length; n >= 0 && line === undefined; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node?.range !== undefined) line = lineCounter.linePos(node.range[0]).line;
    }
    throw new AggregatorConfigError(
      `${file}${line === undefined ? '' : `:${line}`}: invalid audit aggregator configuration: ${formatPath(path)}: ${message}`,
    );
  };
  const parsed = AggregatorConfigSchema.safeParse(doc.toJS({ maxAliasCount: 50 }));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path ?? [];
    // the store's discriminated union says only "Invalid input" for an unknown kind
    if (issue?.code === 'invalid_union' && path.join('.') === 'store.kind') {
      return problem(path, `expected "sqlite" or "postgres", got ${JSON.stringify(doc.getIn(path))}`);
    }
    return problem(path, issue?.message ?? 'invalid');
  }
  const config = parsed.data;
  const base = dirname(resolve(file));
  const tokens = (options.withoutTokens === true ? [] : config.tokens).map((t, i): AggregatorToken => {
    let digest = t.tokenSha256;
    if (t.tokenEnv !== undefined) {
      const value = env[t.tokenEnv];
      if (value === undefined || value === '') {
        return problem(['tokens', i, 'tokenEnv'], `$${t.tokenEnv} is not set`);
      }
      if (value.length < MIN_TOKEN_LENGTH) {
        return problem(
          ['tokens', i, 'tokenEnv'],
          `$${t.tokenEnv} is ${value.length} characters; expected at least ${MIN_TOKEN_LENGTH}`,
        );
      }
      digest = tokenSha256(value);
    }
    return Object.freeze({ name: t.name, tokenSha256: digest ?? '', sources: Object.freeze([...t.sources]) });
  });
  const hashes = new Set<string>();
  tokens.forEach((t, i) => {
    if (hashes.has(t.tokenSha256)) problem(['tokens', i], 'the same token as an earlier entry');
    hashes.add(t.tokenSha256);
  });
  const checkpoints = config.store.checkpoints ?? DEFAULT_CHECKPOINTS;
  const store: AuditStoreConfig =
    config.store.kind === 'sqlite' && config.store.file !== ':memory:'
      ? { ...config.store, file: resolve(base, config.store.file), checkpoints }
      : { ...config.store, checkpoints };
  const otlp = config.export?.otlp;
  let headers: Record<string, string> = {};
  if (otlp?.headersEnv !== undefined && options.withoutTokens !== true) {
    const value = env[otlp.headersEnv];
    if (value === undefined || value === '') {
      return problem(['export', 'otlp', 'headersEnv'], `$${otlp.headersEnv} is not set`);
    }
    const parsed = parseOtlpHeaders(value);
    if (typeof parsed === 'string') {
      return problem(['export', 'otlp', 'headersEnv'], `$${otlp.headersEnv}: ${parsed}`);
    }
    headers = parsed;
  }
  return Object.freeze({
    listen: Object.freeze({ ...config.listen }),
    store,
    checkpointKey: resolve(base, config.checkpointKey),
    tokens: Object.freeze(tokens),
    ...(otlp === undefined
      ? {}
      : {
          export: Object.freeze({
            otlp: Object.freeze({
              endpoint: otlp.endpoint,
              headers: Object.freeze(headers),
              ...(otlp.serviceName === undefined ? {} : { serviceName: otlp.serviceName }),
              streams: Object.freeze([...otlp.streams]),
              fromSeq: otlp.fromSeq,
            }),
          }),
        }),
  });
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses `name=value,name2=value2` (values URL-decoded, blanks around entries ignored), the
 * format of `OTEL_EXPORTER_OTLP_HEADERS`. Returns the problem as a string, never quoting a
 * value (they are secrets).
 */
export function parseOtlpHeaders(text: string): Record<string, string> | string {
  const headers: Record<string, string> = {};
  const entries = text.split(',');
  for (const [i, entry] of entries.entries()) {
    if (entry.trim() === '' && entries.length > 1) continue;
    const at = entry.indexOf('=');
    const name = entry.slice(0, Math.max(0, at)).trim();
    if (at < 0 || !HEADER_NAME.test(name)) return `entry ${i + 1}: expected name=value`;
    let value: string;
    try {
      value = decodeURIComponent(entry.slice(at + 1).trim());
    } catch {
      return `entry ${i + 1} (${name}): the value is not valid URL encoding`;
    }
    if (/[\0\r\n]/.test(value)) return `entry ${i + 1} (${name}): the value contains a control character`;
    headers[name.toLowerCase()] = value;
  }
  return headers;
}
