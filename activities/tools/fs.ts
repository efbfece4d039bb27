/**
 * `fs.read`, `fs.list` and `fs.write`, confined to configured root directories.
 *
 * Confinement: a path is resolved as the kernel would (realpath of its deepest existing ancestor,
 * then the remaining components, none of which may be `..`) and must land inside a root (roots
 * are realpath'ed at construction). Writes never follow a final symlink (`O_NOFOLLOW`, temp file
 * + `link`/`rename`), reads open only regular files (`O_NONBLOCK`, so a FIFO never blocks), and on
 * Linux every opened descriptor is checked again through `/proc/self/fd` against the path that
 * was resolved, which closes the window between resolving and opening.
 *
 * Idempotency: `fs.write` keeps one record per idempotency key under `<stateDir>/fs-idempotency`
 * (outside the roots). A retry with the same key and the same request returns the recorded
 * result without writing again; an attempt that died mid-write is recovered from the record.
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, mkdirSync, realpathSync, statSync } from 'node:fs';
import { link, lstat, open, opendir, readFile, readlink, realpath, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { canonicalJson } from '../../policy/index.ts';
import { fsList, fsRead, fsWrite } from '../../tools/builtin-specs.ts';
import { ToolError, ToolErrorCode, implementTool } from './define.ts';
import type { ToolResult, ToolRunContext } from './define.ts';

/** Stable codes of `fs.*` refusals (`ToolResult` with `ok: false`). */
export const FsErrorCode = {
  outsideRoots: 'FS_OUTSIDE_ROOTS',
  symlinkEscape: 'FS_SYMLINK_ESCAPE',
  symlinkDangling: 'FS_SYMLINK_DANGLING',
  symlinkTarget: 'FS_SYMLINK_TARGET',
  invalidPath: 'FS_INVALID_PATH',
  notFound: 'FS_NOT_FOUND',
  notAFile: 'FS_NOT_A_FILE',
  notADirectory: 'FS_NOT_A_DIRECTORY',
  notText: 'FS_NOT_TEXT',
  tooLarge: 'FS_TOO_LARGE',
  exists: 'FS_EXISTS',
  hardLink: 'FS_HARD_LINK',
  permissionDenied: 'FS_PERMISSION_DENIED',
  idempotencyConflict: 'FS_IDEMPOTENCY_CONFLICT',
  idempotencyUncertain: 'FS_IDEMPOTENCY_UNCERTAIN',
} as const;
export type FsErrorCode = (typeof FsErrorCode)[keyof typeof FsErrorCode];

/** Configuration of {@link fsTools}. */
export interface FsToolsConfig {
  /** Directories the tools may touch (must exist; realpath'ed at construction). */
  readonly roots: readonly string[];
  /** Directory for idempotency records; must lie outside every root (created when missing). */
  readonly stateDir: string;
  /** Largest file `fs.read` returns, in bytes (default 1 MiB). */
  readonly maxReadBytes?: number;
  /** Largest content `fs.write` writes, in UTF-8 bytes (default 1 MiB). */
  readonly maxWriteBytes?: number;
  /** Most entries `fs.list` returns (default 1000); more are reported as `truncated`. */
  readonly maxListEntries?: number;
  /**
   * Paths the agent sees → real directories (e.g. `{'/workspace': '/srv/agent-a/ws'}`), so policies
   * name stable paths whatever the host layout. With mounts, only mounted paths are reachable, the
   * mounted directories are the roots, and results and refusals name the agent's paths.
   */
  readonly mounts?: Readonly<Record<string, string>>;
}

/** {@link FsToolsConfig} after construction: real paths, defaults applied. */
export interface ResolvedFsToolsConfig {
  readonly roots: readonly string[];
  readonly stateDir: string;
  readonly maxReadBytes: number;
  readonly maxWriteBytes: number;
  readonly maxListEntries: number;
}

/** Output of `fs.read`. */
export interface FsReadOutput {
  readonly path: string;
  readonly content: string;
  readonly bytes: number;
}

/** One entry of `fs.list`. */
export interface FsListEntry {
  readonly name: string;
  readonly type: 'file' | 'directory' | 'symlink' | 'other';
}

/** Output of `fs.list`: entries sorted by name, at most `maxListEntries` of them. */
export interface FsListOutput {
  readonly path: string;
  readonly entries: readonly FsListEntry[];
  readonly truncated: boolean;
}

/** Output of `fs.write`. */
export interface FsWriteOutput {
  readonly path: string;
  readonly mode: 'create' | 'overwrite' | 'append';
  readonly bytes: number;
  /** Whether the file did not exist before. */
  readonly created: boolean;
}

const MiB = 1024 * 1024;
const {
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  O_CREAT,
  O_EXCL,
  O_APPEND,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_DIRECTORY,
  O_NOCTTY,
} = constants;

/**
 * Implementations of `fs.read`, `fs.list` and `fs.write` bound to the built-in specs. Throws
 * {@link ToolError} `TOOL_INVALID_CONFIG` when a root is missing or not a directory, or when
 * `stateDir` is not outside every root.
 */
export function fsTools(config: FsToolsConfig) {
  const mounts = resolveMounts(config);
  const resolved = resolveConfig(mounts ? { ...config, roots: mounts.map((m) => m.real) } : config);
  const view = mounts ? mountedView(mounts) : undefined;
  const through = <Args extends { path: string }>(
    args: Args,
    body: (real: Args) => Promise<unknown>,
  ): Promise<ToolResult> => {
    if (!view) return refusalsAsResults(() => body(args));
    const real = view.toReal(args.path);
    if (real === undefined)
      return Promise.resolve({
        ok: false,
        code: FsErrorCode.outsideRoots,
        message: `"${args.path}" is outside the allowed roots`,
      });
    return refusalsAsResults(() => body({ ...args, path: real })).then(view.toAgent);
  };
  return Object.freeze([
    implementTool(fsRead, (args, ctx) => through(args, (a) => readTool(a.path, ctx)), resolved),
    implementTool(fsList, (args, ctx) => through(args, (a) => listTool(a.path, ctx)), resolved),
    implementTool(fsWrite, (args, ctx) => through(args, (a) => writeTool(a, ctx)), resolved),
  ] as const);
}

interface Mount {
  readonly virtual: string;
  readonly real: string;
}

function resolveMounts(config: FsToolsConfig): readonly Mount[] | undefined {
  if (config.mounts === undefined) return undefined;
  const mounts = Object.entries(config.mounts).map(([virtual, real]) => {
    const normal = posix.normalize(virtual).replace(/\/+$/, '');
    if (!virtual.startsWith('/') || normal === '' || normal !== virtual.replace(/\/+$/, ''))
      throw new ToolError(
        ToolErrorCode.invalidConfig,
        `fs tools: mount "${virtual}" is not a normalised absolute path`,
      );
    return { virtual: normal, real };
  });
  if (mounts.length === 0) throw new ToolError(ToolErrorCode.invalidConfig, 'fs tools: mounts is empty');
  // longest first, so /workspace/docs beats /workspace
  return mounts.sort((a, b) => b.virtual.length - a.virtual.length);
}

function mountedView(mounts: readonly Mount[]) {
  const pairs = mounts.map((m) => ({ virtual: m.virtual, real: realpathSync.native(m.real) }));
  const swap = (text: string, from: 'real' | 'virtual'): string => {
    let out = text;
    for (const pair of [...pairs].sort((a, b) => b[from].length - a[from].length))
      out = out.split(pair[from]).join(from === 'real' ? pair.virtual : pair.real);
    return out;
  };
  return {
    toReal(path: string): string | undefined {
      const normal = posix.normalize(path);
      for (const pair of pairs) {
        if (normal === pair.virtual) return pair.real;
        if (normal.startsWith(`${pair.virtual}/`)) return pair.real + normal.slice(pair.virtual.length);
      }
      return undefined;
    },
    toAgent(result: ToolResult): ToolResult {
      if (!result.ok) return { ...result, message: swap(result.message, 'real') };
      const output = result.output as { path?: unknown } | null;
      if (output && typeof output.path === 'string')
        return { ok: true, output: { ...output, path: swap(output.path, 'real') } };
      return result;
    },
  };
}

function resolveConfig(config: FsToolsConfig): ResolvedFsToolsConfig {
  const invalid = (message: string): never => {
    throw new ToolError(ToolErrorCode.invalidConfig, `fs tools: ${message}`);
  };
  const limit = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || value < 0) invalid(`${name} must be a non-negative integer`);
    return value;
  };
  if (config.roots.length === 0) invalid('at least one root is required');
  const roots = config.roots.map((root) => {
    if (!isAbsolute(root)) invalid(`root "${root}" is not an absolute path`);
    let real = '';
    try {
      real = realpathSync.native(root);
    } catch (error) {
      invalid(`root "${root}" cannot be resolved (${errnoOf(error) ?? String(error)})`);
    }
    if (!statSync(real).isDirectory()) invalid(`root "${root}" is not a directory`);
    return real;
  });
  if (!isAbsolute(config.stateDir)) invalid(`stateDir "${config.stateDir}" is not an absolute path`);
  const assertOutsideRoots = (stateDir: string) => {
    for (const root of [...roots, ...config.roots.map((r) => posix.resolve(r))]) {
      if (isInside(stateDir, root) || isInside(root, stateDir)) {
        invalid(`stateDir "${config.stateDir}" must lie outside every root (overlaps "${root}")`);
      }
    }
  };
  assertOutsideRoots(posix.resolve(config.stateDir)); // before creating anything
  mkdirSync(posix.join(config.stateDir, 'fs-idempotency'), { recursive: true, mode: 0o700 });
  const stateDir = realpathSync.native(config.stateDir);
  assertOutsideRoots(stateDir);
  return Object.freeze({
    roots: Object.freeze(roots),
    stateDir,
    maxReadBytes: limit('maxReadBytes', config.maxReadBytes, MiB),
    maxWriteBytes: limit('maxWriteBytes', config.maxWriteBytes, MiB),
    maxListEntries: limit('maxListEntries', config.maxListEntries, 1000),
  });
}

// ---------------------------------------------------------------------------------------------
// refusals

class FsRefusal extends ToolError {}

function refuse(code: FsErrorCode, message: string): never {
  throw new FsRefusal(code, message);
}

async function refusalsAsResults(body: () => Promise<unknown>): Promise<ToolResult> {
  try {
    return { ok: true, output: await body() };
  } catch (error) {
    if (error instanceof FsRefusal) return { ok: false, code: error.code, message: error.message };
    throw error;
  }
}

function errnoOf(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

/** Maps errors the model can cause to refusals; anything else (EIO, ENOSPC…) stays a failure. */
function refuseErrno(error: unknown, requested: string): never {
  const errno = errnoOf(error);
  if (errno === 'ENOENT') refuse(FsErrorCode.notFound, `"${requested}" does not exist`);
  if (errno === 'ENOTDIR')
    refuse(FsErrorCode.notADirectory, `a component of "${requested}" is not a directory`);
  if (errno === 'EISDIR') refuse(FsErrorCode.notAFile, `"${requested}" is a directory, not a file`);
  if (errno === 'ELOOP')
    refuse(FsErrorCode.symlinkEscape, `"${requested}" became a symlink while it was being opened`);
  if (errno === 'EEXIST') refuse(FsErrorCode.exists, `"${requested}" already exists`);
  if (errno === 'EACCES' || errno === 'EPERM')
    refuse(FsErrorCode.permissionDenied, `permission denied for "${requested}"`);
  if (errno === 'ENXIO') refuse(FsErrorCode.notAFile, `"${requested}" is not a regular file`);
  throw error;
}

// ---------------------------------------------------------------------------------------------
// path resolution

function isInside(path: string, root: string): boolean {
  return path === root || root === '/' || path.startsWith(`${root}/`);
}

function insideSomeRoot(path: string, roots: readonly string[]): boolean {
  return roots.some((root) => isInside(path, root));
}

/** Path components, `.` and empty ones dropped; `..` kept (the kernel resolves it after symlinks). */
function componentsOf(requested: string): string[] {
  if (!requested.startsWith('/')) refuse(FsErrorCode.invalidPath, `"${requested}" is not an absolute path`);
  if (requested.includes('\0')) refuse(FsErrorCode.invalidPath, 'path contains a NUL byte');
  return requested.split('/').filter((part) => part !== '' && part !== '.');
}

async function tryRealpath(path: string): Promise<string | undefined> {
  try {
    return await realpath(path);
  } catch {
    return undefined;
  }
}

/**
 * Resolves `parts` (of `requested`) to a real path inside a root: realpath of the deepest
 * existing ancestor, then the remaining components. Refuses outside paths, symlink escapes,
 * dangling symlinks and missing paths (`what` names the missing thing in the message).
 */
async function resolveExisting(
  requested: string,
  parts: readonly string[],
  config: ResolvedFsToolsConfig,
  what: string,
): Promise<string> {
  // existence of a prefix is monotone (a resolvable prefix has resolvable prefixes): binary search
  // invariant: the first `low` parts resolve to `ancestor`; more than `high` parts do not resolve
  let low = 0;
  let ancestor = '/';
  const full = await tryRealpath(`/${parts.join('/')}`);
  if (full !== undefined) {
    low = parts.length;
    ancestor = full;
  } else {
    let high = parts.length - 1;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      const real = await tryRealpath(`/${parts.slice(0, middle).join('/')}`);
      if (real === undefined) high = middle - 1;
      else {
        low = middle;
        ancestor = real;
      }
    }
  }
  const remaining = parts.slice(low);
  if (remaining.includes('..')) {
    const candidate = posix.join(ancestor, ...remaining.filter((part) => part !== '..'));
    assertInside(candidate, requested, config);
    refuse(FsErrorCode.invalidPath, `"${requested}" climbs with ".." out of a directory that does not exist`);
  }
  const candidate = posix.join(ancestor, ...remaining);
  assertInside(candidate, requested, config);
  const [first] = remaining;
  if (first === undefined) return candidate;
  const next = posix.join(ancestor, first);
  let entry;
  try {
    entry = await lstat(next);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') refuse(FsErrorCode.notFound, `${what} "${requested}" does not exist`);
    if (errnoOf(error) === 'ENOTDIR')
      refuse(FsErrorCode.notADirectory, `a component of "${requested}" is not a directory`);
    return refuseErrno(error, requested);
  }
  if (entry.isSymbolicLink()) await refuseUnresolvableSymlink(next, requested, config);
  return refuse(FsErrorCode.notFound, `${what} "${requested}" does not exist`);
}

/** `path` is a symlink that does not resolve (dangling or a loop). */
async function refuseUnresolvableSymlink(
  path: string,
  requested: string,
  config: ResolvedFsToolsConfig,
): Promise<never> {
  const target = posix.resolve(posix.dirname(path), await readlink(path));
  if (!insideSomeRoot(target, config.roots)) {
    refuse(
      FsErrorCode.symlinkEscape,
      `"${requested}" goes through a symlink that points outside the allowed roots`,
    );
  }
  return refuse(FsErrorCode.symlinkDangling, `"${requested}" goes through a symlink that does not resolve`);
}

/** Refuses `real` outside every root: a symlink escape when the path as written looked inside. */
function assertInside(real: string, requested: string, config: ResolvedFsToolsConfig): void {
  if (insideSomeRoot(real, config.roots)) return;
  // written against a root's real or configured form, yet resolving outside: a symlink took it there
  const lexical = posix.resolve(requested);
  if (insideSomeRoot(lexical, config.roots)) {
    refuse(
      FsErrorCode.symlinkEscape,
      `"${requested}" resolves through a symlink to outside the allowed roots`,
    );
  }
  refuse(FsErrorCode.outsideRoots, `"${requested}" is outside the allowed roots`);
}

/** On Linux, checks that the descriptor really is the file at `expected` (closes resolve/open races). */
async function verifyOpened(handle: FileHandle, expected: string, requested: string): Promise<void> {
  let actual: string;
  try {
    actual = await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return; // no procfs: the O_NOFOLLOW open and the realpath'ed path are the guard
  }
  if (actual !== expected) {
    refuse(FsErrorCode.symlinkEscape, `"${requested}" changed while it was being opened`);
  }
}

// ---------------------------------------------------------------------------------------------
// fs.read / fs.list

async function readTool(
  requested: string,
  ctx: ToolRunContext<ResolvedFsToolsConfig>,
): Promise<FsReadOutput> {
  const { config } = ctx;
  const real = await resolveExisting(requested, componentsOf(requested), config, 'file');
  const before = await lstat(real).catch((error: unknown) => refuseErrno(error, requested));
  if (before.isDirectory()) refuse(FsErrorCode.notAFile, `"${requested}" is a directory, not a file`);
  if (!before.isFile()) refuse(FsErrorCode.notAFile, `"${requested}" is not a regular file`);
  if (before.size > config.maxReadBytes) {
    refuse(
      FsErrorCode.tooLarge,
      `"${requested}" is ${before.size} bytes; the limit is ${config.maxReadBytes}`,
    );
  }
  const handle = await open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY).catch((error: unknown) =>
    refuseErrno(error, requested),
  );
  try {
    await verifyOpened(handle, real, requested);
    const stat = await handle.stat();
    if (!stat.isFile() || stat.ino !== before.ino || stat.dev !== before.dev) {
      refuse(FsErrorCode.notAFile, `"${requested}" is not a regular file`);
    }
    // read at most one byte more than the limit: a file that grew since the stat is caught too
    const buffer = Buffer.alloc(Math.min(stat.size, config.maxReadBytes) + 1);
    let length = 0;
    while (length < buffer.length) {
      ctx.signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > config.maxReadBytes) {
      refuse(FsErrorCode.tooLarge, `"${requested}" is larger than the limit of ${config.maxReadBytes} bytes`);
    }
    let content: string;
    try {
      content = new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(0, length));
    } catch {
      refuse(FsErrorCode.notText, `"${requested}" is not UTF-8 text`);
    }
    return { path: requested, content, bytes: length };
  } finally {
    await handle.close();
  }
}

async function listTool(
  requested: string,
  ctx: ToolRunContext<ResolvedFsToolsConfig>,
): Promise<FsListOutput> {
  const { config } = ctx;
  const real = await resolveExisting(requested, componentsOf(requested), config, 'directory');
  const handle = await open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK).catch((error: unknown) =>
    errnoOf(error) === 'ENOTDIR'
      ? refuse(FsErrorCode.notADirectory, `"${requested}" is not a directory`)
      : refuseErrno(error, requested),
  );
  try {
    await verifyOpened(handle, real, requested);
    // read through the verified descriptor where procfs exists
    const viaFd = `/proc/self/fd/${handle.fd}`;
    const directory = await opendir((await tryRealpath(viaFd)) === real ? viaFd : real);
    const entries: FsListEntry[] = [];
    let truncated = false;
    // `for await` closes the directory when the loop ends, breaks or throws
    for await (const entry of directory) {
      if (entries.length === config.maxListEntries) {
        truncated = true;
        break;
      }
      ctx.signal?.throwIfAborted();
      const type = entry.isFile()
        ? 'file'
        : entry.isDirectory()
          ? 'directory'
          : entry.isSymbolicLink()
            ? 'symlink'
            : 'other';
      entries.push({ name: entry.name, type });
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { path: requested, entries, truncated };
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// fs.write

interface WriteArgs {
  readonly path: string;
  readonly content: string;
  readonly mode: 'create' | 'overwrite' | 'append';
}

/** The sidecar record of one idempotency key. */
interface WriteRecord {
  readonly version: 1;
  readonly state: 'pending' | 'applied';
  /** sha256 of the canonical JSON of `{tool, path, mode, contentSha256}`. */
  readonly requestDigest: string;
  readonly target: string;
  /** For append: the file's identity and size before the write, and whether the append created it. */
  readonly before?: AppendStart;
  readonly result?: FsWriteOutput;
}

interface AppendStart {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly created: boolean;
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A name for a temp file next to `target` (short: the target's own name may be NAME_MAX long). */
function tempNameIn(directory: string): string {
  return posix.join(directory, `.agent-runtime-${randomBytes(12).toString('hex')}.tmp`);
}

async function writeAll(handle: FileHandle, data: Buffer, signal: AbortSignal | undefined): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    signal?.throwIfAborted();
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

/** Writes a complete file at a fresh name (exclusive create) and returns that name. */
async function writeTempFile(
  directory: string,
  data: Buffer,
  fileMode: number,
  signal: AbortSignal | undefined,
) {
  const temp = tempNameIn(directory);
  const handle = await open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, fileMode);
  try {
    await verifyOpened(handle, temp, temp);
    await writeAll(handle, data, signal);
    await handle.datasync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => {});
    throw error;
  }
  await handle.close();
  return temp;
}

/** Writes JSON atomically (temp + rename); with `exclusive`, fails with EEXIST instead of replacing. */
async function writeJsonAtomically(path: string, value: unknown, exclusive: boolean): Promise<void> {
  const temp = await writeTempFile(posix.dirname(path), Buffer.from(JSON.stringify(value)), 0o600, undefined);
  try {
    if (exclusive) await link(temp, path);
    else await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
  if (exclusive) await unlink(temp);
}

async function readRecord(path: string, requested: string): Promise<WriteRecord | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as WriteRecord;
  } catch {
    return refuse(
      FsErrorCode.idempotencyUncertain,
      `the idempotency record for this write to "${requested}" is unreadable; whether it was applied is unknown`,
    );
  }
}

async function writeTool(
  args: WriteArgs,
  ctx: ToolRunContext<ResolvedFsToolsConfig>,
): Promise<FsWriteOutput> {
  const { config } = ctx;
  const requested = args.path;
  const data = Buffer.from(args.content, 'utf8');
  if (data.length > config.maxWriteBytes) {
    refuse(FsErrorCode.tooLarge, `content is ${data.length} bytes; the limit is ${config.maxWriteBytes}`);
  }
  const requestDigest = sha256(
    canonicalJson({ tool: fsWrite.name, path: requested, mode: args.mode, contentSha256: sha256(data) }),
  );
  const recordPath = posix.join(config.stateDir, 'fs-idempotency', `${sha256(ctx.idempotencyKey)}.json`);
  const record = await readRecord(recordPath, requested);
  if (record !== undefined) {
    if (record.requestDigest !== requestDigest) {
      refuse(
        FsErrorCode.idempotencyConflict,
        `this idempotency key was already used for a different write; "${requested}" was not written`,
      );
    }
    if (record.state === 'applied' && record.result !== undefined) return record.result;
  }

  // resolve: the parent must exist inside a root; the final component is never followed
  const parts = componentsOf(requested);
  const name = parts.at(-1);
  if (name === undefined || name === '..' || /\/\.{0,2}$/.test(requested)) {
    refuse(FsErrorCode.invalidPath, `"${requested}" does not name a file`);
  }
  const parent = await resolveExisting(requested, parts.slice(0, -1), config, 'parent directory of');
  const target = posix.join(parent, name);
  assertInside(target, requested, config);
  const parentStat = await lstat(parent);
  if (!parentStat.isDirectory())
    refuse(FsErrorCode.notADirectory, `the parent of "${requested}" is not a directory`);
  const existing = await lstat(target).catch((error: unknown) =>
    errnoOf(error) === 'ENOENT' ? undefined : refuseErrno(error, requested),
  );
  if (existing?.isSymbolicLink()) {
    const real = await tryRealpath(target);
    if (real === undefined) await refuseUnresolvableSymlink(target, requested, config);
    else if (!insideSomeRoot(real, config.roots)) {
      refuse(FsErrorCode.symlinkEscape, `"${requested}" is a symlink that points outside the allowed roots`);
    }
    refuse(
      FsErrorCode.symlinkTarget,
      `"${requested}" is a symlink; fs.write does not write through symlinks`,
    );
  }
  if (existing?.isDirectory()) refuse(FsErrorCode.notAFile, `"${requested}" is a directory, not a file`);
  if (existing !== undefined && !existing.isFile())
    refuse(FsErrorCode.notAFile, `"${requested}" is not a regular file`);

  const pending = record?.state === 'pending' ? record : undefined;
  if (pending !== undefined && pending.target !== target) {
    refuse(
      FsErrorCode.idempotencyUncertain,
      `"${requested}" now resolves elsewhere than when this write began`,
    );
  }
  let appendStart = pending?.before;
  const markPending = async (before?: AppendStart) => {
    if (pending !== undefined) return;
    appendStart = before;
    const fresh: WriteRecord = {
      version: 1,
      state: 'pending',
      requestDigest,
      target,
      ...(before && { before }),
    };
    try {
      await writeJsonAtomically(recordPath, fresh, true);
    } catch (error) {
      // another attempt with this key is running: fail (retryable), never write twice
      if (errnoOf(error) === 'EEXIST') {
        throw new ToolError(
          FsErrorCode.idempotencyUncertain,
          'a concurrent attempt holds this idempotency key',
          {
            cause: error,
          },
        );
      }
      throw error;
    }
  };
  const applied = async (result: FsWriteOutput) => {
    const done: WriteRecord = {
      version: 1,
      state: 'applied',
      requestDigest,
      target,
      ...(appendStart && { before: appendStart }),
      result,
    };
    await writeJsonAtomically(recordPath, done, false);
    return result;
  };
  const result = (created: boolean): FsWriteOutput => ({
    path: requested,
    mode: args.mode,
    bytes: data.length,
    created,
  });

  if (args.mode === 'append') {
    const append = {
      target,
      requested,
      data,
      created: existing === undefined,
      pending,
      markPending,
      applied,
      result,
    };
    return appendFile(append, ctx);
  }

  // create / overwrite: a complete temp file in the same directory, then link (exclusive) or rename
  if (args.mode === 'create' && existing !== undefined) {
    if (pending !== undefined && (await hasContent(target, data))) return applied(result(true));
    refuse(FsErrorCode.exists, `"${requested}" already exists (mode "create")`);
  }
  await markPending();
  const fileMode = existing === undefined ? 0o644 : existing.mode & 0o777;
  const temp = await writeTempFile(parent, data, fileMode, ctx.signal);
  try {
    if (args.mode === 'create') {
      await link(temp, target).catch((error: unknown) =>
        errnoOf(error) === 'EEXIST'
          ? refuse(FsErrorCode.exists, `"${requested}" already exists (mode "create")`)
          : refuseErrno(error, requested),
      );
      await unlink(temp);
    } else {
      await rename(temp, target);
    }
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
  return applied(result(existing === undefined));
}

async function hasContent(target: string, data: Buffer): Promise<boolean> {
  const handle = await open(target, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.size !== data.length) return false;
    const buffer = Buffer.alloc(data.length);
    const { bytesRead } = await handle.read(buffer, 0, data.length, 0);
    return bytesRead === data.length && buffer.equals(data);
  } finally {
    await handle.close();
  }
}

interface AppendJob {
  readonly target: string;
  readonly requested: string;
  readonly data: Buffer;
  /** The target did not exist when it was resolved. */
  readonly created: boolean;
  readonly pending: WriteRecord | undefined;
  readonly markPending: (before: AppendStart) => Promise<void>;
  readonly applied: (result: FsWriteOutput) => Promise<FsWriteOutput>;
  readonly result: (created: boolean) => FsWriteOutput;
}

async function appendFile(
  job: AppendJob,
  ctx: ToolRunContext<ResolvedFsToolsConfig>,
): Promise<FsWriteOutput> {
  const { target, requested, data, pending } = job;
  // read access too: recovering an interrupted append compares the file's tail with the content
  const handle = await open(
    target,
    O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
    0o644,
  ).catch((error: unknown) => refuseErrno(error, requested));
  try {
    await verifyOpened(handle, target, requested);
    const stat = await handle.stat();
    if (!stat.isFile()) refuse(FsErrorCode.notAFile, `"${requested}" is not a regular file`);
    if (stat.nlink > 1) {
      refuse(FsErrorCode.hardLink, `"${requested}" has other hard links; fs.write does not append to it`);
    }
    const before = pending?.before ?? { dev: stat.dev, ino: stat.ino, size: stat.size, created: job.created };
    if (pending !== undefined) {
      // a previous attempt died after recording its intent: find out whether its append landed
      if (before.dev !== stat.dev || before.ino !== stat.ino) {
        refuse(FsErrorCode.idempotencyUncertain, `"${requested}" was replaced since this append began`);
      }
      if (stat.size !== before.size) {
        if (stat.size >= before.size + data.length && (await tailMatches(handle, before.size, data))) {
          return await job.applied(job.result(before.created));
        }
        refuse(
          FsErrorCode.idempotencyUncertain,
          `"${requested}" changed since this append began; whether it was applied is unknown`,
        );
      }
    } else {
      await job.markPending(before);
    }
    await writeAll(handle, data, ctx.signal);
    await handle.datasync();
    return await job.applied(job.result(before.created));
  } finally {
    await handle.close();
  }
}

async function tailMatches(handle: FileHandle, position: number, data: Buffer): Promise<boolean> {
  const buffer = Buffer.alloc(data.length);
  let length = 0;
  while (length < data.length) {
    const { bytesRead } = await handle.read(buffer, length, data.length - length, position + length);
    if (bytesRead === 0) break;
    length += bytesRead;
  }
  return length === data.length && buffer.equals(data);
}
