/**
 * `agent-runtime audit verify|tail|search`: the hash-chained audit store of `agent-runtime dev`
 * (`.agent-runtime/audit/chain.db`, checkpoints signed with `keys/audit/`). `verify` names the
 * first broken record (edited, deleted, reordered, inserted, truncated) and exits 1.
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadPublicKeys, PUBLIC_KEY_FILE } from '../../approval-channels/keys.ts';
import { openSqliteAuditStore, verifyStream } from '../../audit/index.ts';
import type { AuditStore } from '../../audit/index.ts';
import type { AuditKind } from '../../activities/audit/types.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';
import { defaultStateDir } from '../local.ts';

const USAGE = `usage:
  agent-runtime audit verify [--stream S] [--json]     check the hash chain and the signed checkpoints
  agent-runtime audit tail [-n N] [--stream S] [--json]
  agent-runtime audit search [--kind K] [--run R] [--agent A] [--text T] [--json]
      --state-dir D   the state directory of \`agent-runtime dev\` (default .agent-runtime)`;

const COMMON = {
  'state-dir': { type: 'string' },
  stream: { type: 'string', default: 'default' },
  json: { type: 'boolean', default: false },
} as const;

async function open(stateDir: string): Promise<AuditStore> {
  const file = join(stateDir, 'audit', 'chain.db');
  if (!existsSync(file))
    throw new UsageError(`no audit chain at ${file} (start \`agent-runtime dev\` first)`, USAGE);
  return openSqliteAuditStore({ file });
}

async function verify(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: [...argv], strict: true, options: COMMON });
  const stateDir = values['state-dir'] ?? defaultStateDir();
  const keys = await loadPublicKeys([join(stateDir, 'keys', 'audit', PUBLIC_KEY_FILE)]);
  const store = await open(stateDir);
  try {
    const result = await verifyStream(store, values.stream, keys);
    const checkpoints = (await store.checkpoints(values.stream)).length;
    if (values.json) println(io.stdout, JSON.stringify({ stream: values.stream, checkpoints, ...result }));
    else if (result.ok)
      println(
        io.stdout,
        `ok: ${result.count} records (last seq ${result.lastSeq}), ${checkpoints} signed checkpoints`,
      );
    else println(io.stdout, `BROKEN at seq ${result.firstBroken.seq}: ${result.firstBroken.reason}`);
    return result.ok ? ExitCode.ok : ExitCode.failed;
  } finally {
    await store.close();
  }
}

async function tail(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: { ...COMMON, n: { type: 'string', short: 'n' } },
  });
  const store = await open(values['state-dir'] ?? defaultStateDir());
  try {
    const all = await store.read({ stream: values.stream });
    const n = values.n === undefined ? 20 : Number(values.n);
    for (const r of all.slice(-n))
      println(
        io.stdout,
        values.json
          ? JSON.stringify(r)
          : `${r.seq}  ${r.ts}  ${r.source}  ${r.kind}  ${r.run ?? ''}${r.step === null ? '' : ` step ${r.step}`}`,
      );
    return ExitCode.ok;
  } finally {
    await store.close();
  }
}

async function search(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      ...COMMON,
      kind: { type: 'string' },
      run: { type: 'string' },
      agent: { type: 'string' },
      text: { type: 'string' },
    },
  });
  const store = await open(values['state-dir'] ?? defaultStateDir());
  try {
    const found = await store.search({
      stream: values.stream,
      ...(values.kind === undefined ? {} : { kind: values.kind as AuditKind }),
      ...(values.run === undefined ? {} : { run: values.run }),
      ...(values.agent === undefined ? {} : { agent: values.agent }),
      ...(values.text === undefined ? {} : { text: values.text }),
    });
    for (const r of found)
      println(
        io.stdout,
        values.json
          ? JSON.stringify(r)
          : `${r.seq}  ${r.ts}  ${r.kind}  ${JSON.stringify(r.attrs).slice(0, 160)}`,
      );
    return ExitCode.ok;
  } finally {
    await store.close();
  }
}

export const auditCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === 'verify') return verify(rest, io);
  if (sub === 'tail') return tail(rest, io);
  if (sub === 'search') return search(rest, io);
  throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
};
