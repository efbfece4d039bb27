/**
 * Argument schemas and resource derivations of the built-in tools. Pure (zod only), so the
 * workflow's gate and the tools worker's execution guard validate with the same schemas.
 * Implementations live in `activities/`.
 * @module
 */
import { z } from 'zod';
import type { AnyToolSpec, ToolSpec } from '../policy/index.ts';

const MAX_PATH = 4096;
const path = z
  .string()
  .min(1)
  .max(MAX_PATH)
  .refine((p) => p.startsWith('/'), { error: 'expected an absolute path' })
  .refine((p) => !p.includes('\0'), { error: 'expected a path without NUL bytes' });

const FsPathArgs = z.strictObject({ path });
export const fsRead: ToolSpec<z.infer<typeof FsPathArgs>> = {
  name: 'fs.read',
  description: 'Read a UTF-8 text file inside the configured roots.',
  args: FsPathArgs,
  resource: (args) => args.path,
  effect: 'none',
};

export const fsList: ToolSpec<z.infer<typeof FsPathArgs>> = {
  name: 'fs.list',
  description: 'List the entries of a directory inside the configured roots.',
  args: FsPathArgs,
  resource: (args) => args.path,
  effect: 'none',
};

const FsWriteArgs = z.strictObject({
  path,
  content: z.string().max(1024 * 1024),
  mode: z.enum(['create', 'overwrite', 'append']).default('create'),
});
export const fsWrite: ToolSpec<z.infer<typeof FsWriteArgs>> = {
  name: 'fs.write',
  description: 'Write a UTF-8 text file inside the configured roots.',
  args: FsWriteArgs,
  resource: (args) => args.path,
  effect: 'idempotent',
};

const HttpArgs = z.strictObject({
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']),
  url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).max(8192),
  headers: z.record(z.string().max(256), z.string().max(8192)).optional(),
  body: z
    .string()
    .max(1024 * 1024)
    .optional(),
});
export const httpRequest: ToolSpec<z.infer<typeof HttpArgs>> = {
  name: 'http.request',
  description: 'Make an HTTP request to an allowed host.',
  args: HttpArgs,
  resource: (args) => args.url,
  // the tool sends an Idempotency-Key, but whether the server honours it is unknown
  effect: (args) => (args.method === 'GET' || args.method === 'HEAD' ? 'none' : 'unsafe'),
};

/** The built-in tool specs. */
export const BUILTIN_TOOL_SPECS: readonly AnyToolSpec[] = Object.freeze([
  fsRead,
  fsList,
  fsWrite,
  httpRequest,
]);
