/**
 * `agent-runtime governance validate|explain|table|approve-change|verify-change`.
 * @module
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadPublicKeys, loadSecretKey } from '../../approval-channels/keys.ts';
import {
  GovernanceChangeSchema,
  learningWindowMs,
  signGovernanceChange,
  verifyGovernanceChange,
} from '../../observer/governance-change.ts';
import type { GovernanceChange } from '../../observer/governance-change.ts';
import {
  AgentRuntimeError,
  compilePolicy,
  decide,
  formatPath,
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
  agent-runtime governance table <file>
  agent-runtime governance approve-change [--agent <id>] (--from <version> | --from-file <old.yaml>)
      (--to <version> | --to-file <new.yaml>) [--declare-tools a,b] [--declare-dirs /x,/y]
      [--declare-hosts h1,h2] --reason <text> --as <principal> [--as <principal> ...]
      --key <secret key file> [--window 72h] [--out <file>]
  agent-runtime governance verify-change <file> --trust <public key file> [--trust <file> ...]`;

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
    case 'approve-change':
      return approveChange(rest, io);
    case 'verify-change':
      return verifyChange(rest, io);
    default:
      throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
  }
};

/** `a, b,,c` → `['a', 'b', 'c']`; `undefined` when the option was not given. */
function commaList(value: string | undefined): string[] | undefined {
  return value
    ?.split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

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
  const frozenTools = commaList(values.frozen) ?? [];
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

/** The command-line option each manifest field comes from, for error messages. */
const CHANGE_OPTIONS: Readonly<Record<string, string>> = {
  agent: '--agent',
  fromVersion: '--from',
  toVersion: '--to',
  tools: '--declare-tools',
  directories: '--declare-dirs',
  hosts: '--declare-hosts',
  declares: '--declare-tools/--declare-dirs/--declare-hosts',
  reason: '--reason',
  approvedBy: '--as',
  learningWindow: '--window',
};

/** One side of the change: `--from V` or `--from-file F` (the policyVersion of F, and its agent id). */
async function versionFrom(
  side: 'from' | 'to',
  version: string | undefined,
  file: string | undefined,
  io: CliIo,
): Promise<{ version: string; agent?: string } | undefined> {
  if ((version === undefined) === (file === undefined))
    throw new UsageError(`give exactly one of --${side} and --${side}-file`, USAGE);
  if (version !== undefined) return { version };
  const loaded = await loadOrReport(file!, io);
  if (!loaded) return undefined;
  return { version: loaded.policyVersion, agent: loaded.document.identity.id };
}

async function approveChange(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    allowPositionals: false,
    strict: true,
    options: {
      agent: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'from-file': { type: 'string' },
      'to-file': { type: 'string' },
      'declare-tools': { type: 'string' },
      'declare-dirs': { type: 'string' },
      'declare-hosts': { type: 'string' },
      reason: { type: 'string' },
      as: { type: 'string', multiple: true },
      key: { type: 'string' },
      window: { type: 'string', default: '72h' },
      out: { type: 'string' },
    },
  });
  if (values.key === undefined) throw new UsageError('--key is required', USAGE);
  if (values.reason === undefined) throw new UsageError('--reason is required', USAGE);
  if (values.as === undefined) throw new UsageError('--as is required (once per approver)', USAGE);
  const from = await versionFrom('from', values.from, values['from-file'], io);
  const to = await versionFrom('to', values.to, values['to-file'], io);
  if (!from || !to) return ExitCode.failed;
  const agents = new Set([values.agent, from.agent, to.agent].filter((a) => a !== undefined));
  if (agents.size === 0) throw new UsageError('--agent is required (or give --from-file/--to-file)', USAGE);
  if (agents.size > 1)
    throw new UsageError(
      `--agent and the governance files name different agents: ${[...agents].join(', ')}`,
      USAGE,
    );
  const tools = commaList(values['declare-tools']);
  const directories = commaList(values['declare-dirs']);
  const hosts = commaList(values['declare-hosts']);
  const parsed = GovernanceChangeSchema.safeParse({
    agent: [...agents][0]!,
    fromVersion: from.version,
    toVersion: to.version,
    declares: {
      ...(tools === undefined ? {} : { tools }),
      ...(directories === undefined ? {} : { directories }),
      ...(hosts === undefined ? {} : { hosts }),
    },
    reason: values.reason,
    approvedBy: values.as,
    approvedAt: new Date().toISOString(),
    learningWindow: values.window,
  } satisfies GovernanceChange);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = [...issue.path].reverse().find((p) => typeof p === 'string' && p in CHANGE_OPTIONS);
    const option = field === undefined ? formatPath(issue.path) : CHANGE_OPTIONS[field as string]!;
    const index = issue.path.find((p) => typeof p === 'number');
    throw new UsageError(`${option}${index === undefined ? '' : `[${index}]`}: ${issue.message}`, USAGE);
  }
  const { keyId, secretKey } = await loadSecretKey(values.key);
  const signed = signGovernanceChange(parsed.data, secretKey, keyId);
  const text = `${JSON.stringify(signed, null, 2)}\n`;
  if (values.out === undefined) {
    io.stdout.write(text);
  } else {
    await writeFile(values.out, text);
    println(
      io.stdout,
      `${values.out}: change for ${signed.change.agent} ${signed.change.fromVersion} → ${signed.change.toVersion}, signed by ${keyId}`,
    );
  }
  return ExitCode.ok;
}

async function verifyChange(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: { trust: { type: 'string', multiple: true } },
  });
  const file = singleFile(positionals);
  if (values.trust === undefined) throw new UsageError('--trust is required', USAGE);
  const text = await readTextFile(file);
  let signed: unknown;
  try {
    signed = JSON.parse(text);
  } catch (error) {
    throw new AgentRuntimeError('CLI_JSON_INVALID', `${file}: not valid JSON (${(error as Error).message})`);
  }
  const check = verifyGovernanceChange(signed, await loadPublicKeys(values.trust), { nowMs: Date.now() });
  if (!check.ok) {
    println(io.stderr, `${file}: ${check.code}: ${check.message}`);
    return ExitCode.failed;
  }
  const { change } = check;
  const endsAt = new Date(Date.parse(change.approvedAt) + learningWindowMs(change)).toISOString();
  const declared = Object.entries(change.declares)
    .map(([kind, list]) => `${kind} ${(list ?? []).join(', ')}`)
    .join('; ');
  println(io.stdout, `${file}: valid: agent ${change.agent}, ${change.fromVersion} → ${change.toVersion}`);
  println(
    io.stdout,
    `signed by ${check.keyId}, approved by ${change.approvedBy.join(', ')} at ${change.approvedAt}`,
  );
  println(io.stdout, `learning window ${change.learningWindow} (until ${endsAt}); declares ${declared}`);
  return ExitCode.ok;
}
