/**
 * `agent-runtime approvals list|show|vote`: the operator CLI approval channel. Votes are signed
 * with the approval service's key; the requester, the agent and principals the rule does not name
 * are refused with the reason (exit 1).
 * @module
 */
import { parseArgs } from 'node:util';
import { loadSecretKey } from '../../approval-channels/keys.ts';
import { castVote, listPendingApprovals, showApproval, summarise } from '../../approval-channels/operator.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';
import { DEFAULT_ADDRESS, keyFiles, resolveTarget, withClient } from '../local.ts';
import { renderTable } from '../table.ts';

const USAGE = `usage:
  agent-runtime approvals serve --config <approvals-service.yaml>
      the approvals service as its own process: web inbox, email, Slack (SLACK_*), the approvals worker
  agent-runtime approvals list [--json] [--address host:port] [--namespace N]
  agent-runtime approvals show <approvalWorkflowId> [--json] [--address host:port] [--namespace N]
  agent-runtime approvals vote <approvalWorkflowId> approve|deny --as <principalId> [--reason <text>]
      [--key <secret key file>] [--json] [--address host:port] [--namespace N]
      --address  Temporal frontend (default $TEMPORAL_ADDRESS or ${DEFAULT_ADDRESS})
      --key      vote-signing secret key (default .agent-runtime/keys/vote-signing.key)`;

const CONNECTION = {
  address: { type: 'string' },
  namespace: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

export const approvalsCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'list':
      return list(rest, io);
    case 'show':
      return show(rest, io);
    case 'vote':
      return vote(rest, io);
    case 'serve': {
      const { values } = parseArgs({ args: rest, strict: true, options: { config: { type: 'string' } } });
      if (!values.config) throw new UsageError('--config is required', USAGE);
      const { serveApprovals } = await import('../approvals-serve.ts');
      return serveApprovals(values.config, io);
    }
    default:
      throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
  }
};

async function list(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: [...argv], strict: true, options: CONNECTION });
  const pending = await withClient(resolveTarget(values), (client) => listPendingApprovals(client));
  if (values.json) {
    println(io.stdout, JSON.stringify(pending));
    return ExitCode.ok;
  }
  if (pending.length === 0) {
    println(io.stdout, 'No pending approvals.');
    return ExitCode.ok;
  }
  const rows = pending.map((p) => [
    p.approvalWorkflowId,
    p.agentId,
    p.tool,
    p.resource ?? '',
    p.ruleId ?? '(default)',
    `${p.approvedBy.length}/${p.quorum}`,
    p.expiresAt,
  ]);
  println(
    io.stdout,
    renderTable(['ID', 'AGENT', 'TOOL', 'RESOURCE', 'RULE', 'APPROVALS', 'EXPIRES'], rows, 80),
  );
  return ExitCode.ok;
}

function singleId(positionals: readonly string[], what: string): string {
  if (positionals.length !== 1)
    throw new UsageError(
      `expected exactly one <approvalWorkflowId>${what}, got ${positionals.length} arguments`,
      USAGE,
    );
  return positionals[0]!;
}

async function show(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: CONNECTION,
  });
  const id = singleId(positionals, '');
  const view = await withClient(resolveTarget(values), (client) => showApproval(client, id));
  const summary = summarise(id, view);
  if (values.json) {
    println(io.stdout, JSON.stringify({ approvalWorkflowId: id, ...view, eligible: summary.eligible }));
    return ExitCode.ok;
  }
  const { request } = view;
  const args = JSON.stringify(request.action.args, null, 2) ?? 'null';
  const rows: [string, string][] = [
    ['id', id],
    ['state', view.state],
    ['run', `${request.runWorkflowId} (agent ${request.agentId}, requested by ${request.requester})`],
    ['step', String(request.step)],
    ['tool', request.action.tool],
    ['resource', request.action.resource ?? '(none)'],
    ['arguments', args.split('\n').join('\n                ')],
    ['rationale', `${request.action.rationale ?? '(none)'} (from the model, unverified)`],
    ['rule', request.ruleId ?? '(default)'],
    [
      'approvals',
      `${view.approvedBy.length} of ${view.quorum}${view.approvedBy.length ? `: ${view.approvedBy.join(', ')}` : ''}`,
    ],
    ['eligible', summary.eligible.join(', ') || 'nobody'],
    ['escalated', view.escalated ? 'yes' : 'no'],
    ['expires', summary.expiresAt],
    ['policyVersion', request.policyVersion],
  ];
  for (const attempt of view.attempts)
    rows.push([
      'vote',
      `${attempt.approver ?? '?'} ${attempt.decision ?? '?'}: ${attempt.accepted ? 'accepted' : `refused (${attempt.code ?? ''}: ${attempt.message ?? ''})`}`,
    ]);
  for (const [key, value] of rows) println(io.stdout, `${`${key}:`.padEnd(16)}${value}`);
  return ExitCode.ok;
}

async function vote(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: { ...CONNECTION, as: { type: 'string' }, reason: { type: 'string' }, key: { type: 'string' } },
  });
  if (positionals.length !== 2)
    throw new UsageError(
      `expected <approvalWorkflowId> approve|deny, got ${positionals.length} arguments`,
      USAGE,
    );
  const [id, decision] = positionals as [string, string];
  if (decision !== 'approve' && decision !== 'deny')
    throw new UsageError(`expected approve or deny, got ${JSON.stringify(decision)}`, USAGE);
  if (values.as === undefined || values.as === '') throw new UsageError('--as is required', USAGE);
  const principal = values.as;
  const { secretKey } = await loadSecretKey(values.key ?? keyFiles().secretKeyFile);
  const receipt = await withClient(resolveTarget(values), (client) =>
    castVote(client, {
      approvalWorkflowId: id,
      principal,
      decision,
      secretKey,
      ...(values.reason === undefined ? {} : { reason: values.reason }),
    }),
  );
  if (values.json)
    println(io.stdout, JSON.stringify({ approvalWorkflowId: id, principal, decision, ...receipt }));
  else
    println(
      io.stdout,
      `${principal} voted ${decision} on ${id}: ${receipt.state.toLowerCase()} (${receipt.approvedBy.length} of ${receipt.quorum} approvals)`,
    );
  return ExitCode.ok;
}
