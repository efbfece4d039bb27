/**
 * `agent-runtime audit reconcile <runId>`: compares a run's records in the hash-chained audit
 * store of `agent-runtime dev` with the run's Temporal history (every generation, the approval
 * children) and lists each step and each difference. Exit 0 when they agree, 1 with differences.
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_SEARCH_LIMIT, openSqliteAuditStore } from '../../audit/index.ts';
import { CheckState, ReconcileError, ReconcileErrorCode, reconcileRun } from '../../audit/reconcile.ts';
import type { ReconcileReport } from '../../audit/reconcile.ts';
import { fetchRunHistoryFacts } from '../../audit/reconcile-history.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { CliIo } from '../io.ts';
import { DEFAULT_ADDRESS, DEFAULT_NAMESPACE, defaultStateDir, resolveTarget, withClient } from '../local.ts';

const USAGE = `usage:
  agent-runtime audit reconcile <runId> [--state-dir D] [--address A] [--namespace N] [--json]
      compares the run's audit records with its Temporal history: decisions with proposed calls,
      executions with executeTool activities, approvals with approval workflows, start and end
      --state-dir D   the state directory of \`agent-runtime dev\` (default .agent-runtime)
      --address A     Temporal frontend (default $TEMPORAL_ADDRESS or ${DEFAULT_ADDRESS})
      --namespace N   (default $TEMPORAL_NAMESPACE or ${DEFAULT_NAMESPACE})
      --json          print the report as one JSON object
      exit 0 reconciled, 1 differences found, 2 usage error`;

const MARK: Readonly<Record<CheckState, string>> = {
  [CheckState.ok]: '✓',
  [CheckState.differs]: '✗',
  [CheckState.none]: '—',
  [CheckState.pending]: '…',
};

/** The human form of a report: a headline, one line per step, one per difference. */
export function formatReconcileReport(report: ReconcileReport): string[] {
  const generations = report.generations === 1 ? '1 generation' : `${report.generations} generations`;
  const lines = [
    `run ${report.runId}: ${report.close}${report.status === null ? '' : ` (status ${report.status})`}, ${generations}, ${report.steps.length} steps`,
  ];
  const stepWidth = Math.max(0, ...report.steps.map((s) => String(s.step).length));
  const toolWidth = Math.max(0, ...report.steps.map((s) => (s.tool ?? '?').length));
  for (const s of report.steps) {
    const approval = s.approval === CheckState.none ? '' : `  approval ${MARK[s.approval]}`;
    lines.push(
      `step ${String(s.step).padEnd(stepWidth)}  ${(s.tool ?? '?').padEnd(toolWidth)}  decision ${MARK[s.decision]}${approval}  execution ${MARK[s.execution]}`,
    );
  }
  if (report.ok) lines.push('reconciled: no differences');
  else {
    lines.push(`${report.differences.length} difference${report.differences.length === 1 ? '' : 's'}:`);
    for (const d of report.differences)
      lines.push(`  ${d.kind}  ${d.step === null ? 'run' : `step ${d.step}`}  ${d.what}: ${d.detail}`);
  }
  return lines;
}

function parse(argv: readonly string[]) {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      'state-dir': { type: 'string' },
      address: { type: 'string' },
      namespace: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const [runId, ...rest] = positionals;
  if (runId === undefined || runId === '') throw new UsageError('expected a <runId>', USAGE);
  if (rest.length > 0) throw new UsageError(`expected one <runId>, got ${positionals.length}`, USAGE);
  for (const option of ['state-dir', 'address', 'namespace'] as const)
    if (values[option] === '') throw new UsageError(`--${option} needs a value`, USAGE);
  const stateDir = values['state-dir'] ?? defaultStateDir();
  const file = join(stateDir, 'audit', 'chain.db');
  if (!existsSync(file))
    throw new UsageError(`no audit chain at ${file} (start \`agent-runtime dev\` first)`, USAGE);
  return { runId, file, json: values.json, target: resolveTarget(values) };
}

/** `agent-runtime audit reconcile`: returns 0 when reconciled, 1 with differences, 2 for usage errors. */
export async function reconcileCommand(argv: readonly string[], io: CliIo): Promise<number> {
  let options: ReturnType<typeof parse>;
  try {
    options = parse(argv);
  } catch (error) {
    const parseArgsError = (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
    if (!(error instanceof UsageError) && !parseArgsError) throw error;
    println(io.stderr, `agent-runtime: ${(error as Error).message}`);
    println(io.stderr, USAGE);
    return ExitCode.usage;
  }
  const { runId, file, json, target } = options;

  const store = await openSqliteAuditStore({ file });
  const records = await store.search({ run: runId, limit: MAX_SEARCH_LIMIT }).finally(() => store.close());
  if (records.length >= MAX_SEARCH_LIMIT)
    throw new ReconcileError(
      ReconcileErrorCode.auditTooLarge,
      `run ${runId} has ${MAX_SEARCH_LIMIT} or more audit records; reconcile reads at most ${MAX_SEARCH_LIMIT - 1}`,
    );
  const history = await withClient(target, (client) => fetchRunHistoryFacts(client, runId));
  const report = reconcileRun({ runId, audit: records, history });
  if (json) println(io.stdout, JSON.stringify(report));
  else for (const line of formatReconcileReport(report)) println(io.stdout, line);
  return report.ok ? ExitCode.ok : ExitCode.failed;
}
