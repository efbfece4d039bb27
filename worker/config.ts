/**
 * The configuration file of one worker process (`agent-runtime worker --config F`): role `agents`
 * (the AgentRun workflows and the model step) or `tools` (the builtin tools behind the execution
 * guard). YAML or JSON, validated once with zod; every problem names the file, its YAML path and
 * the value expected. The aggregator token comes from the environment, never the file; relative
 * paths resolve against the file's directory.
 * @module
 */
import { messageOf } from '../audit/errors.ts';
import { stat } from 'node:fs/promises';
import { dirname, relative, resolve, isAbsolute } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { parseRouterConfig } from '../activities/model/routing/index.ts';
import type { RouterConfig } from '../activities/model/routing/index.ts';
import { httpTool } from '../activities/tools/http.ts';
import { loadPublicKeys } from '../approval-channels/keys.ts';
import { temporalPrometheusOptions } from '../metrics/temporal.ts';
import { AgentRuntimeError } from '../policy/errors.ts';
import { TaskQueue } from '../workflows/run-types.ts';
import { readTextFile } from '../cli/io.ts';

/** Stable codes of {@link WorkerError}. */
export const WorkerErrorCode = {
  /** The configuration file is unreadable or invalid, or names something that is not there. */
  configInvalid: 'WORKER_CONFIG_INVALID',
  /** The worker could not be started (Temporal unreachable, the bundle failed, …). */
  startFailed: 'WORKER_START_FAILED',
} as const;
export type WorkerErrorCode = (typeof WorkerErrorCode)[keyof typeof WorkerErrorCode];

/** A worker configuration was refused or the worker did not start; `code` is a {@link WorkerErrorCode}. */
export class WorkerError extends AgentRuntimeError {
  declare readonly code: WorkerErrorCode;
  constructor(code: WorkerErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The two worker roles a configuration file can name. */
export const WorkerRole = { agents: 'agents', tools: 'tools' } as const;
export type WorkerRole = (typeof WorkerRole)[keyof typeof WorkerRole];

const text = (expected: string) => z.string({ error: `expected ${expected}` }).min(1, `expected ${expected}`);
const intIn = (min: number, max: number) => {
  const message = `expected an integer from ${min} to ${max}`;
  return z.int({ error: message }).min(min, message).max(max, message);
};
const paths = (expected: string) => z.array(text(expected), { error: `expected a list of ${expected}s` });

const TemporalSection = z.strictObject({
  address: text('host:port of the Temporal frontend').default('127.0.0.1:7233'),
  namespace: text('a Temporal namespace').default('default'),
  /** Default: the role's name. */
  taskQueue: text('a task queue name').optional(),
});
const AuditSection = z.strictObject(
  {
    url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL of the audit aggregator' }),
    /** The environment variable holding the aggregator writer token. */
    tokenEnv: z
      .string({ error: 'expected an environment variable name (A-Z, 0-9, _)' })
      .regex(/^[A-Z_][A-Z0-9_]*$/, 'expected an environment variable name (A-Z, 0-9, _)'),
  },
  { error: 'expected { url, tokenEnv }' },
);
const MetricsSection = z.strictObject({
  host: text('an interface to bind (0.0.0.0 in a container)').default('127.0.0.1'),
  port: intIn(0, 65_535),
  /** The Temporal Core SDK's Prometheus bind address; its output is appended to `/metrics`. */
  temporalBindAddress: z
    .string({ error: 'expected host:port' })
    .refine((address) => {
      try {
        temporalPrometheusOptions(address);
        return true;
      } catch {
        return false;
      }
    }, 'expected host:port with a port from 1 to 65535')
    .optional(),
});
const LeaseSection = z.strictObject({
  name: z
    .string({ error: 'expected 1-128 of A-Z a-z 0-9 . _ -' })
    .regex(/^[A-Za-z0-9._-]{1,128}$/, 'expected 1-128 of A-Z a-z 0-9 . _ -')
    .default('observer'),
  pollMs: intIn(10, 3_600_000).default(1000),
});
const ModelSection = z.strictObject({
  /** The model proxy's routes (the `agent-runtime dev --model-routes` format). */
  routes: text('a model routes file').optional(),
});
const HttpSection = z.strictObject({
  allowedHosts: z.array(text('a host name'), { error: 'expected a list of host names' }).default([]),
  allowPrivateAddresses: z
    .array(text('a CIDR, an address or a host name'), { error: 'expected a list of CIDRs' })
    .default([]),
});
const ToolsSection = z.strictObject(
  {
    /** Mounted as `/workspace` for the fs tools; must exist. */
    workspace: text('a directory'),
    /** The fs tools' state (`fs/`) and the guard's journal (`journal/`); created when missing. */
    stateDir: text('a directory'),
    http: HttpSection.prefault({}),
  },
  { error: 'expected { workspace, stateDir, http? }' },
);

const common = {
  temporal: TemporalSection.prefault({}),
  audit: AuditSection,
  metrics: MetricsSection.optional(),
};
const AgentsSchema = z.strictObject({
  role: z.literal(WorkerRole.agents),
  ...common,
  /** `false` turns the lease watcher off (runs that require the lease then go conservative). */
  observerLease: z
    .union([z.literal(false), LeaseSection], { error: 'expected { name, pollMs } or false' })
    .prefault({}),
  model: ModelSection.optional(),
  toolSpecModules: paths('module path').default([]),
});
const ToolsSchema = z.strictObject({
  role: z.literal(WorkerRole.tools),
  ...common,
  tools: ToolsSection,
  trustedKeys: paths('public key file').min(1, 'expected at least one vote-signing public key file'),
});

/** The configuration file's schema (before paths are resolved and defaults filled in). */
export const WorkerConfigSchema = z.discriminatedUnion('role', [AgentsSchema, ToolsSchema], {
  error: (issue) =>
    issue.input !== null && typeof issue.input === 'object'
      ? 'expected agents or tools'
      : 'expected a mapping with role: agents or tools',
});

/** The keys allowed at each object path, for "unknown key" messages. */
const ALLOWED_KEYS: Readonly<Record<string, readonly string[]>> = {
  temporal: Object.keys(TemporalSection.shape),
  audit: Object.keys(AuditSection.shape),
  metrics: Object.keys(MetricsSection.shape),
  observerLease: Object.keys(LeaseSection.shape),
  model: Object.keys(ModelSection.shape),
  tools: Object.keys(ToolsSection.shape),
  'tools.http': Object.keys(HttpSection.shape),
};
const ROLE_KEYS: Readonly<Record<WorkerRole, readonly string[]>> = {
  agents: Object.keys(AgentsSchema.shape),
  tools: Object.keys(ToolsSchema.shape),
};

type AgentsOutput = z.output<typeof AgentsSchema>;
type ToolsOutput = z.output<typeof ToolsSchema>;
type Resolved<T extends { temporal: object }> = Readonly<
  Omit<T, 'temporal'> & { readonly temporal: T['temporal'] & { readonly taskQueue: string } }
>;

/** A validated `agents` configuration: absolute paths, every default filled in. */
export type AgentsWorkerConfig = Resolved<Omit<AgentsOutput, 'model'>> & {
  /** The parsed routes file, when `model.routes` names one. */
  readonly model: { readonly routesFile?: string; readonly routes?: RouterConfig };
};
/** A validated `tools` configuration: absolute paths, every default filled in. */
export type ToolsWorkerConfig = Resolved<ToolsOutput>;
/** A validated worker configuration ({@link loadWorkerConfig}). */
export type WorkerConfig = AgentsWorkerConfig | ToolsWorkerConfig;

type Problem = readonly [path: string, message: string];

function pathOf(path: readonly PropertyKey[]): string {
  return path.map(String).join('.');
}

/** zod's issues as `path: expected …` lines; an unknown key says what is allowed there. */
function schemaProblems(error: z.ZodError, raw: unknown): Problem[] {
  const role = (raw as { role?: unknown } | null)?.role;
  const other: WorkerRole | undefined =
    role === WorkerRole.agents ? WorkerRole.tools : role === WorkerRole.tools ? WorkerRole.agents : undefined;
  return error.issues.flatMap((issue): Problem[] => {
    const at = pathOf(issue.path);
    if (issue.code !== 'unrecognized_keys') return [[at || '(root)', issue.message]];
    return issue.keys.map((key): Problem => {
      const path = at ? `${at}.${key}` : key;
      if (at === '' && other !== undefined && ROLE_KEYS[other].includes(key))
        return [path, `only allowed with role ${other}, this file has role ${String(role)}`];
      const allowed =
        at === '' ? (other === undefined ? undefined : ROLE_KEYS[role as WorkerRole]) : ALLOWED_KEYS[at];
      return [path, `unknown key${allowed ? ` (expected one of ${allowed.join(', ')})` : ''}`];
    });
  });
}

async function isDirectory(path: string): Promise<boolean | undefined> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return undefined;
  }
}

function inside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * Reads and validates a worker configuration file. Besides the schema it checks that `$tokenEnv`
 * is set in `env`, that the files and directories it names exist (the workspace, key files, the
 * routes file, tool spec modules) and parse (public keys, routes, the `http.request` settings).
 * Throws {@link WorkerError} `WORKER_CONFIG_INVALID` listing every problem as `path: expected …`.
 */
export async function loadWorkerConfig(file: string, env: NodeJS.ProcessEnv): Promise<WorkerConfig> {
  const fail = (problems: readonly Problem[]): never => {
    throw new WorkerError(
      WorkerErrorCode.configInvalid,
      [
        `${file}: invalid worker configuration`,
        ...problems.map(([path, message]) => `  ${path}: ${message}`),
      ].join('\n'),
    );
  };
  let raw: unknown;
  try {
    raw = parse(await readTextFile(file));
  } catch (error) {
    throw new WorkerError(
      WorkerErrorCode.configInvalid,
      error instanceof AgentRuntimeError ? error.message : `${file}: ${messageOf(error)}`,
      { cause: error },
    );
  }
  const parsed = WorkerConfigSchema.safeParse(raw);
  if (!parsed.success) return fail(schemaProblems(parsed.error, raw));

  const base = dirname(resolve(file));
  const at = (path: string): string => resolve(base, path);
  const config = parsed.data;
  const problems: Problem[] = [];
  if (!env[config.audit.tokenEnv])
    problems.push([
      'audit.tokenEnv',
      `$${config.audit.tokenEnv} is not set (expected the aggregator writer token)`,
    ]);
  const temporal = { ...config.temporal, taskQueue: config.temporal.taskQueue ?? TaskQueue[config.role] };

  if (config.role === WorkerRole.agents) {
    const toolSpecModules = config.toolSpecModules.map(at);
    for (const [i, module] of toolSpecModules.entries()) {
      const directory = await isDirectory(module);
      if (directory !== false)
        problems.push([
          `toolSpecModules.${i}`,
          `${module} ${directory ? 'is a directory' : 'does not exist'} (expected a module exporting toolSpecs)`,
        ]);
    }
    let model: AgentsWorkerConfig['model'] = {};
    if (config.model?.routes !== undefined) {
      const routesFile = at(config.model.routes);
      try {
        model = { routesFile, routes: parseRouterConfig(parse(await readTextFile(routesFile))) };
      } catch (error) {
        problems.push(['model.routes', `${routesFile}: ${messageOf(error)}`]);
      }
    }
    if (problems.length > 0) return fail(problems);
    return Object.freeze({ ...config, temporal, toolSpecModules, model });
  }

  const workspace = at(config.tools.workspace);
  const stateDir = at(config.tools.stateDir);
  if ((await isDirectory(workspace)) !== true)
    problems.push(['tools.workspace', `${workspace} is not a directory (expected the existing workspace)`]);
  else if (inside(stateDir, workspace))
    problems.push([
      'tools.stateDir',
      `${stateDir} lies inside tools.workspace (expected a directory outside it)`,
    ]);
  if ((await isDirectory(stateDir)) === false)
    problems.push(['tools.stateDir', `${stateDir} is a file (expected a directory, created when missing)`]);
  try {
    httpTool(config.tools.http);
  } catch (error) {
    problems.push(['tools.http', messageOf(error)]);
  }
  const trustedKeys = config.trustedKeys.map(at);
  for (const [i, key] of trustedKeys.entries()) {
    try {
      await loadPublicKeys([key]);
    } catch (error) {
      problems.push([`trustedKeys.${i}`, `${messageOf(error)} (expected a vote-signing public key file)`]);
    }
  }
  if (problems.length > 0) return fail(problems);
  return Object.freeze({
    ...config,
    temporal,
    tools: { ...config.tools, workspace, stateDir },
    trustedKeys,
  });
}
