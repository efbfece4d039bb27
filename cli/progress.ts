/**
 * Following an AgentRun from the terminal, shared by `dev --demo` and `run --wait`: one line per
 * decision as it happens (from the run's `status` query), a box with the exact vote command when
 * the run waits for approval, approval notices, and the summary at the end. `json` mode prints
 * one JSON object per line instead.
 * @module
 */
import { WorkflowFailedError } from '@temporalio/client';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { showApproval, summarise } from '../approval-channels/operator.ts';
import type { PendingApproval } from '../approval-channels/operator.ts';
import { statusQuery } from '../workflows/agent-run.ts';
import type { agentRunWorkflow } from '../workflows/agent-run.ts';
import type { ApprovalNotice } from '../workflows/approval-types.ts';
import type { AgentRunResult, DecisionRecord, RunView } from '../workflows/run-types.ts';
import { println } from './io.ts';
import type { CliIo } from './io.ts';
import { renderTable } from './table.ts';

/** A run handle as `startAgentRun` returns it. */
export type RunHandle = WorkflowHandle<typeof agentRunWorkflow>;

/** Options of {@link followRun}. */
export interface FollowOptions {
  readonly client: Client;
  readonly io: CliIo;
  /** One JSON object per line instead of text. */
  readonly json?: boolean;
  /** Options appended to printed vote commands (`--address`, `--key`) when they are not the defaults. */
  readonly voteOptions?: readonly string[];
  /** Stops following; the run itself goes on. */
  readonly signal?: AbortSignal;
  /** Poll interval of the status query in ms (default 200). */
  readonly intervalMs?: number;
}

/** How following a run ended. */
export type FollowOutcome =
  | { readonly kind: 'finished'; readonly result: AgentRunResult }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'interrupted' };

/** How long an "executed" outcome of the step in progress is held back before it is printed. */
const HOLD_EXECUTED_MS = 1000;

const OUTCOME_TEXT: Readonly<Record<DecisionRecord['outcome'], string>> = {
  executed: 'executed',
  failed: 'failed',
  refused_by_guard: 'refused by the execution guard',
  denied: 'denied',
  approval_pending: 'waiting for approval',
  approval_denied: 'approval denied',
  approval_timed_out: 'approval timed out',
};

/** The rule that decided, or the decision code when no rule did (`invalid_arguments`, `unknown_tool`, `default`). */
export function ruleLabel(decision: DecisionRecord): string {
  return decision.ruleId ?? decision.code;
}

/** One progress line, e.g. `  step 3  fs.write /workspace/runbooks/restart.md  → preapproved (write-docs)  executed`. */
export function decisionLine(decision: DecisionRecord): string {
  const target = decision.resource === null ? decision.tool : `${decision.tool} ${decision.resource}`;
  return `  step ${String(decision.step).padEnd(2)}  ${target}  → ${decision.tier} (${ruleLabel(decision)})  ${OUTCOME_TEXT[decision.outcome]}`;
}

/** Quotes a shell word when it needs it. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The exact command that casts a vote. */
export function voteCommand(
  approvalWorkflowId: string,
  decision: 'approve' | 'deny',
  principal: string,
  voteOptions: readonly string[] = [],
): string {
  return [
    'npx',
    'agent-runtime',
    'approvals',
    'vote',
    approvalWorkflowId,
    decision,
    '--as',
    principal,
    ...voteOptions,
  ]
    .map(shellWord)
    .join(' ');
}

/** Temporal UI list of workflows matching a visibility query. */
export function uiWorkflowsUrl(uiUrl: string, namespace: string, query: string): string {
  return `${uiUrl}/namespaces/${encodeURIComponent(namespace)}/workflows?query=${encodeURIComponent(query)}`;
}

/** Temporal UI list filtered to one run and its approval requests. */
export function uiRunUrl(uiUrl: string, namespace: string, runWorkflowId: string): string {
  return uiWorkflowsUrl(uiUrl, namespace, `WorkflowId STARTS_WITH '${runWorkflowId.replaceAll("'", '')}'`);
}

/** Lines for one approval notice (the `log` channel of `dev`). */
export function noticeLines(notice: ApprovalNotice, voteOptions: readonly string[] = []): string[] {
  const { request } = notice;
  const target = `${request.action.tool}${request.action.resource === null ? '' : ` ${request.action.resource}`}`;
  const head = `[approval ${notice.kind}] ${notice.approvalWorkflowId}`;
  if (notice.kind === 'outcome') return [`${head}: ${notice.outcome ?? 'decided'}`];
  const lines = [
    `${head}: ${target} (rule ${request.ruleId ?? 'default'}) for ${notice.recipients.join(', ') || 'nobody'}, expires ${new Date(notice.expiresAtMs).toISOString()}`,
  ];
  const first = notice.recipients[0];
  if (first !== undefined)
    lines.push(`    approve: ${voteCommand(notice.approvalWorkflowId, 'approve', first, voteOptions)}`);
  return lines;
}

/** The box shown while a run waits for an approval. */
export function approvalBox(pending: PendingApproval, voteOptions: readonly string[] = []): string[] {
  const target = `${pending.tool}${pending.resource === null ? '' : ` ${pending.resource}`}`;
  const first = pending.eligible[0];
  const body = [
    `step ${pending.step}: ${target}`,
    `rule ${pending.ruleId ?? 'default'} needs ${pending.quorum} of: ${pending.eligible.join(', ') || 'nobody'} (not ${pending.requester}, who asked for the run)`,
    `expires ${pending.expiresAt}`,
    '',
    ...(first === undefined
      ? ['nobody may approve this request']
      : [
          'approve:',
          `  ${voteCommand(pending.approvalWorkflowId, 'approve', first, voteOptions)}`,
          'or deny:',
          `  ${voteCommand(pending.approvalWorkflowId, 'deny', first, voteOptions)} --reason '…'`,
        ]),
    `details: ${['npx', 'agent-runtime', 'approvals', 'show', pending.approvalWorkflowId, ...withoutKey(voteOptions)].map(shellWord).join(' ')}`,
  ];
  const width = Math.max(...body.map((line) => line.length)) + 2;
  const title = '─ waiting for approval ';
  return [
    `  ┌${title}${'─'.repeat(Math.max(0, width - title.length))}`,
    ...body.map((line) => (line === '' ? '  │' : `  │ ${line}`)),
    `  └${'─'.repeat(width)}`,
  ];
}

/** The connection options of a vote command (`show` and `list` need no key). */
function withoutKey(options: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < options.length; i += 1) {
    if (options[i] === '--key') i += 1;
    else out.push(options[i]!);
  }
  return out;
}

/** Polls the run's status, printing decisions and approval waits, until it ends or `signal` aborts. */
export async function followRun(handle: RunHandle, options: FollowOptions): Promise<FollowOutcome> {
  const { client, io } = options;
  const runId = handle.workflowId;
  const voteOptions = options.voteOptions ?? [];
  const emit = (event: Record<string, unknown>): void => println(io.stdout, JSON.stringify(event));
  const shown = new Map<number, DecisionRecord['outcome']>();
  // cancels the calls still in flight when following ends, before the caller closes the connection
  const calls = new AbortController();
  const cancelCalls = (): void => calls.abort();
  options.signal?.addEventListener('abort', cancelCalls, { once: true });
  const announced = new Set<string>();

  // "executed" is recorded when the call is dispatched: the current step's is held back a moment,
  // so that a call that then fails shows up as one "failed" line rather than two
  const heldSince = new Map<number, number>();
  const report = (
    decisions: readonly DecisionRecord[],
    current: { step: number; settled: boolean },
  ): void => {
    const now = Date.now();
    for (const decision of [...decisions].sort((a, b) => a.step - b.step)) {
      if (shown.get(decision.step) === decision.outcome) continue;
      if (decision.outcome === 'executed' && !current.settled && decision.step >= current.step) {
        const since = heldSince.get(decision.step) ?? now;
        heldSince.set(decision.step, since);
        if (now - since < HOLD_EXECUTED_MS) continue;
      }
      heldSince.delete(decision.step);
      shown.set(decision.step, decision.outcome);
      if (options.json) {
        const { step, tool, resource, tier, ruleId, code, outcome } = decision;
        emit({ event: 'decision', runId, step, tool, resource, tier, ruleId, code, outcome });
      } else println(io.stdout, decisionLine(decision));
    }
  };
  const announce = async (pending: NonNullable<RunView['pendingApproval']>): Promise<void> => {
    if (announced.has(pending.approvalWorkflowId)) return;
    let summary: PendingApproval;
    try {
      const view = await client.withAbortSignal(calls.signal, () =>
        showApproval(client, pending.approvalWorkflowId),
      );
      if (view.state !== 'PENDING') return;
      summary = summarise(pending.approvalWorkflowId, view);
    } catch {
      return; // the approval workflow is not up yet: try again at the next poll
    }
    announced.add(pending.approvalWorkflowId);
    const first = summary.eligible[0];
    if (options.json) {
      emit({
        event: 'approval_pending',
        runId,
        step: summary.step,
        tool: summary.tool,
        resource: summary.resource,
        ruleId: summary.ruleId,
        approvalWorkflowId: summary.approvalWorkflowId,
        eligible: summary.eligible,
        quorum: summary.quorum,
        expiresAt: summary.expiresAt,
        command:
          first === undefined ? null : voteCommand(summary.approvalWorkflowId, 'approve', first, voteOptions),
      });
    } else for (const line of approvalBox(summary, voteOptions)) println(io.stdout, line);
  };

  let settled: { ok: true; result: AgentRunResult } | { ok: false; error: unknown } | undefined;
  const done = client
    .withAbortSignal(calls.signal, () => handle.result())
    .then(
      (result) => {
        settled = { ok: true, result };
      },
      (error: unknown) => {
        settled = { ok: false, error };
      },
    );
  const stopped = new Promise<void>((resolve) => {
    if (options.signal?.aborted) resolve();
    options.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  const interrupted = (): boolean => options.signal?.aborted === true;

  try {
    while (settled === undefined && !interrupted()) {
      try {
        const query = client.withAbortSignal(calls.signal, () => handle.query(statusQuery));
        query.catch(() => undefined); // a poll that loses the race must not reject unhandled
        const view = await Promise.race([query, done, stopped]);
        if (view) {
          report(view.recentDecisions, { step: view.step, settled: view.state === 'finished' });
          if (view.pendingApproval) await announce(view.pendingApproval);
        }
      } catch {
        // not queryable yet, or finished between polls: the result tells
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (timer = setTimeout(resolve, options.intervalMs ?? 200))),
        done,
        stopped,
      ]);
      clearTimeout(timer);
    }
  } finally {
    options.signal?.removeEventListener('abort', cancelCalls);
    calls.abort();
  }
  // set by the promise callbacks during the awaits above
  const outcome = settled as typeof settled;
  if (outcome === undefined || (!outcome.ok && interrupted())) return { kind: 'interrupted' };
  if (!outcome.ok) return { kind: 'failed', message: failureMessage(outcome.error) };
  report(outcome.result.decisions, { step: outcome.result.usage.steps, settled: true });
  return { kind: 'finished', result: outcome.result };
}

function failureMessage(error: unknown): string {
  if (error instanceof WorkflowFailedError && error.cause) return `${error.message}: ${error.cause.message}`;
  return (error as Error).message;
}

/** The summary table of a finished run, its answer and totals. */
export function printRunSummary(io: CliIo, runId: string, result: AgentRunResult): void {
  const { usage } = result;
  println(
    io.stdout,
    `Run ${runId} ${result.status}: ${usage.steps} step${usage.steps === 1 ? '' : 's'}, ${usage.modelTurns} model turns, ${usage.inputTokens + usage.outputTokens} tokens${result.reason ? ` (${result.reason})` : ''}`,
  );
  println(io.stdout);
  const rows = [...result.decisions]
    .sort((a, b) => a.step - b.step)
    .map((d) => [String(d.step), d.tool, d.resource ?? '', d.tier, ruleLabel(d), d.outcome]);
  println(io.stdout, renderTable(['STEP', 'TOOL', 'RESOURCE', 'TIER', 'RULE', 'OUTCOME'], rows));
  println(io.stdout);
  println(io.stdout, `Answer: ${result.answer ?? '(none)'}`);
}
