/**
 * `agent-runtime governance validate|explain|table`.
 * @module
 */
import { parseArgs } from 'node:util';
import {
  compilePolicy,
  decide,
  formatProblem,
  parseGovernance,
  POSTURES,
  toolCatalog,
} from '../../policy/index.ts';
import type {
  ApprovalRequirement,
  CompiledPolicy,
  Decision,
  LoadedGovernance,
  Posture,
} from '../../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../../tools/builtin-specs.ts';
import { ExitCode, parseJsonOption, println, readTextFile, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';
import { renderTable } from '../table.ts';

const USAGE = `usage:
  agent-runtime governance validate <file>
  agent-runtime governance explain <file> --tool <name> [--resource <r>] [--args '<json>']
      [--director <principalId>] [--posture normal|conservative|revoked] [--frozen <tool,...>]
      [--used '<json ruleId→count>'] [--json]
  agent-runtime governance table <file>`;

/** Loads a document from disk, printing every problem on failure. */
export async function loadOrReport(file: string, io: CliIo): Promise<LoadedGovernance | undefined> {
  const result = parseGovernance(await readTextFile(file), file);
  if (result.ok) return result;
  for (const problem of result.problems) println(io.stderr, formatProblem(problem));
  println(io.stderr, `${file}: ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}`);
  return undefined;
}

export const governanceCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'validate':
      return validate(rest, io);
    case 'explain':
      return explain(rest, io);
    case 'table':
      return table(rest, io);
    default:
      throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
  }
};

function singleFile(positionals: readonly string[]): string {
  if (positionals.length !== 1)
    throw new UsageError(`expected exactly one <file>, got ${positionals.length}`, USAGE);
  return positionals[0]!;
}

async function validate(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals } = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: {} });
  const file = singleFile(positionals);
  const loaded = await loadOrReport(file, io);
  if (!loaded) return ExitCode.failed;
  const { document } = loaded;
  println(
    io.stdout,
    `${file}: valid: agent ${document.identity.id}, ${document.actions.rules.length} rule${document.actions.rules.length === 1 ? '' : 's'}, policyVersion ${loaded.policyVersion}`,
  );
  return ExitCode.ok;
}

async function explain(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      tool: { type: 'string' },
      resource: { type: 'string' },
      args: { type: 'string' },
      director: { type: 'string' },
      posture: { type: 'string' },
      frozen: { type: 'string' },
      used: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const file = singleFile(positionals);
  if (values.tool === undefined || values.tool === '') throw new UsageError('--tool is required', USAGE);
  const posture = values.posture ?? 'normal';
  if (!(POSTURES as readonly string[]).includes(posture)) {
    throw new UsageError(
      `--posture: expected one of ${POSTURES.join(', ')}, got ${JSON.stringify(posture)}`,
      USAGE,
    );
  }
  const used = values.used === undefined ? {} : parseJsonOption('--used', values.used, USAGE);
  if (
    typeof used !== 'object' ||
    used === null ||
    Array.isArray(used) ||
    !Object.values(used).every((n) => Number.isInteger(n) && (n as number) >= 0)
  ) {
    throw new UsageError('--used: expected a JSON object of rule id → non-negative integer count', USAGE);
  }
  const args = values.args === undefined ? undefined : parseJsonOption('--args', values.args, USAGE);
  const loaded = await loadOrReport(file, io);
  if (!loaded) return ExitCode.failed;
  const policy = compilePolicy(loaded.document, loaded.policyVersion);
  if (
    values.director !== undefined &&
    !loaded.document.authority.principals.some((p) => p.id === values.director)
  ) {
    throw new UsageError(
      `--director: unknown principal ${JSON.stringify(values.director)} in ${file}`,
      USAGE,
    );
  }
  const frozenTools =
    values.frozen === undefined
      ? []
      : values.frozen
          .split(',')
          .map((t) => t.trim())
          .filter(Boolean);
  const decision = decide(
    policy,
    {
      tool: values.tool,
      ...(args === undefined ? {} : { args }),
      ...(values.resource === undefined ? {} : { resource: values.resource }),
      ...(values.director === undefined ? {} : { director: values.director }),
    },
    {
      tools: toolCatalog(BUILTIN_TOOL_SPECS),
      posture: posture as Posture,
      frozenTools,
      used: used as Record<string, number>,
      unregisteredTools: 'decide-from-rules',
    },
  );
  if (values.json) {
    const { tier, ruleId, reason, approval, posture: effectivePosture, policyVersion } = decision;
    println(
      io.stdout,
      JSON.stringify({ tier, ruleId, reason, approval, posture: effectivePosture, policyVersion }),
    );
  } else {
    printDecision(decision, io);
  }
  return ExitCode.ok;
}

function printDecision(decision: Decision, io: CliIo): void {
  const rows: [string, string][] = [
    [
      'tier',
      decision.baseTier === decision.tier
        ? decision.tier
        : `${decision.tier} (rules gave ${decision.baseTier})`,
    ],
    ['rule', decision.ruleId ?? '(default)'],
    ['reason', decision.reason],
    ['resource', decision.resource ?? '(none)'],
    ['posture', decision.posture],
  ];
  if (decision.approval) rows.push(['approval', describeApproval(decision.approval)]);
  if (decision.denial) rows.push(['to the model', `${decision.denial.code}: ${decision.denial.hint}`]);
  rows.push(['policyVersion', decision.policyVersion]);
  for (const [key, value] of rows) println(io.stdout, `${`${key}:`.padEnd(15)}${value}`);
}

/** One-line description of an approval requirement. */
export function describeApproval(approval: ApprovalRequirement): string {
  const parts = [
    `${approval.quorum} of [${approval.eligible.join(', ')}]`,
    `timeout ${formatMs(approval.timeoutMs)}`,
    `via ${approval.channels.join('/')}`,
  ];
  if (approval.remindAfterMs !== null) parts.push(`remind ${formatMs(approval.remindAfterMs)}`);
  if (approval.escalate)
    parts.push(
      `escalate ${formatMs(approval.escalate.afterMs)} → [${approval.escalate.eligible.join(', ')}]`,
    );
  if (approval.highRisk) parts.push('high-risk');
  return parts.join(', ');
}

function formatMs(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ];
  let rest = ms;
  let out = '';
  for (const [size, unit] of units) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out || `${ms}ms`;
}

async function table(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals } = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: {} });
  const file = singleFile(positionals);
  const loaded = await loadOrReport(file, io);
  if (!loaded) return ExitCode.failed;
  printDecisionTable(compilePolicy(loaded.document, loaded.policyVersion), io);
  return ExitCode.ok;
}

/** Prints every rule of a policy with its tier and requirements, then the default. */
export function printDecisionTable(policy: CompiledPolicy, io: CliIo): void {
  const { document } = policy;
  println(
    io.stdout,
    `${document.identity.name} (${document.identity.id}), policyVersion ${policy.policyVersion}`,
  );
  println(io.stdout, `directors: ${[...policy.directors].join(', ')}`);
  const rows = document.actions.rules.map((rule, i) => {
    const compiled = policy.rules[i]!;
    const when = [
      ...Object.entries(rule.when?.args ?? {}).map(
        ([arg, c]) =>
          `${arg} ${Object.entries(c)
            .map(([op, v]) => `${op} ${JSON.stringify(v)}`)
            .join(' & ')}`,
      ),
      ...(rule.when?.director ? [`director ∈ [${[...(compiled.directors ?? [])].join(', ')}]`] : []),
    ].join('; ');
    const extra = [
      compiled.approval ? describeApproval(compiled.approval) : '',
      rule.limits ? `≤ ${rule.limits.perRun} per run` : '',
    ]
      .filter(Boolean)
      .join('; ');
    return [rule.id, rule.tool, (rule.resources ?? []).join(' '), when, rule.tier, extra];
  });
  rows.push([
    '(default)',
    '*',
    '',
    'no rule matched',
    policy.defaultAction.tier,
    policy.defaultAction.approval ? describeApproval(policy.defaultAction.approval) : '',
  ]);
  println(io.stdout, renderTable(['RULE', 'TOOL', 'RESOURCES', 'WHEN', 'TIER', 'REQUIRES'], rows));
}
