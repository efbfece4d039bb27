/**
 * What an audit event is about: the tool, and for filesystem and HTTP tools the path, its directory and the
 * host. One function, shared by the baseline learner and the learning windows, so "the directory of this
 * read" means the same thing to both (and to the rules' `dirname`/`host` transforms on normalised
 * resources).
 * @module
 */
import { hostOf } from './rules/schema.ts';
import type { AuditEvent } from '../activities/audit/types.ts';
import { normaliseResource } from '../policy/index.ts';

/** Tools whose resource is a filesystem path (`fs.read`, `fs.list`, `fs.write`, …). */
export const FS_TOOL_PREFIX = 'fs.';
/** Tools whose resource is a URL (`http.request`, …). */
export const HTTP_TOOL_PREFIX = 'http.';

/** The subjects of one event. Fields are absent when the event does not name them. */
export interface EventSubjects {
  /** `attrs.tool`. */
  readonly tool?: string;
  /** Normalised path of an fs tool's resource (`attrs.resource`, else `attrs.args.path`). */
  readonly path?: string;
  /** Directory of `path` (`/` for a file at the root). */
  readonly directory?: string;
  /** Lower-case `host[:port]` of an http tool's URL (`attrs.resource`, else `attrs.args.url`). */
  readonly host?: string;
  /**
   * True when an fs or http event names a resource that cannot be normalised or parsed: its directory or
   * host is unknown, so it can never count as declared.
   */
  readonly opaque?: boolean;
}

function stringAt(record: unknown, key: string): string | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  const value = (record as Record<string, unknown>)[key];
  return typeof value === 'string' ? value : undefined;
}

/** Directory of a normalised absolute path; `undefined` for a relative one. */
export function directoryOf(path: string): string | undefined {
  const cut = path.lastIndexOf('/');
  if (cut < 0) return undefined;
  return cut === 0 ? '/' : path.slice(0, cut);
}

// the rules' `host` transform: one definition of a URL's host for rules and subjects alike
export { hostOf };

/** Extracts the subjects of an event (see `EventSubjects`). Never throws. */
export function eventSubjects(event: AuditEvent): EventSubjects {
  const tool = stringAt(event.attrs, 'tool');
  if (tool === undefined) return {};
  const args = event.attrs.args;
  if (tool.startsWith(FS_TOOL_PREFIX)) {
    const raw = stringAt(event.attrs, 'resource') ?? stringAt(args, 'path');
    if (raw === undefined) return { tool };
    const path = normaliseResource(raw);
    const directory = path === undefined ? undefined : directoryOf(path);
    if (path === undefined || directory === undefined) return { tool, opaque: true };
    return { tool, path, directory };
  }
  if (tool.startsWith(HTTP_TOOL_PREFIX)) {
    const raw = stringAt(event.attrs, 'resource') ?? stringAt(args, 'url');
    if (raw === undefined) return { tool };
    const host = hostOf(raw);
    return host === undefined ? { tool, opaque: true } : { tool, host };
  }
  return { tool };
}
