/**
 * `agent-runtime traces search|show`: the model proxy's traces. `search` finds prompts,
 * completions and stated rationales; `show <runId>` lays each model turn beside what the gateway
 * did with it — prompt → proposed calls and stated intent → policy decisions → executed results —
 * from the trace store and the audit log, and flags mismatches (a proposed call that was never
 * decided, a decided call that differs from the proposal, a result never fed back to the model).
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readAuditFile } from '../../activities/audit/index.ts';
import type { AuditEvent } from '../../activities/audit/index.ts';
import { openTraceStore } from '../../activities/model/traces/index.ts';
import type { ModelTrace, TraceStore } from '../../activities/model/traces/index.ts';
import { canonicalJson } from '../../policy/index.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';
import { defaultStateDir } from '../local.ts';

const USAGE = `usage:
  agent-runtime traces search "<text>" [--agent A] [--run R] [--since ISO|30m|2h|1d] [--limit N] [--json]
  agent-runtime traces show <runId> [--step N] [--json]
      --state-dir D   where \`agent-runtime dev\` keeps traces.db and the audit log (default .agent-runtime)
      --store URL     a PostgreSQL trace store instead (postgres://…)
  search: words must all match; "a phrase", -exclude, OR`;

const COMMON = {
  'state-dir': { type: 'string' },
  store: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

function storeOf(values: {
  'state-dir'?: string | undefined;
  store?: string | undefined;
}): Promise<TraceStore> {
  if (values.store?.startsWith('postgres'))
    return openTraceStore({ kind: 'postgres', connectionString: values.store });
  const file = join(values['state-dir'] ?? defaultStateDir(), 'traces', 'traces.db');
  if (!existsSync(file))
    throw new UsageError(`no trace store at ${file} (start \`agent-runtime dev\` first)`, USAGE);
  return openTraceStore({ kind: 'sqlite', file });
}

/** `--since`: an ISO time, or a duration back from now (`30m`, `2h`, `1d`). */
export function parseSince(value: string, now = Date.now()): number {
  const relative = /^(\d+)(s|m|h|d)$/.exec(value);
  if (relative) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 's' | 'm' | 'h' | 'd'];
    return now - Number(relative[1]) * unit;
  }
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw new UsageError(`--since: expected an ISO time or 30m/2h/1d, got ${JSON.stringify(value)}`, USAGE);
  return ms;
}

async function search(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      ...COMMON,
      agent: { type: 'string' },
      run: { type: 'string' },
      since: { type: 'string' },
      limit: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('expected one search text', USAGE);
  const store = await storeOf(values);
  try {
    const hits = await store.search({
      text: positionals[0],
      agentId: values.agent,
      runId: values.run,
      since: values.since === undefined ? undefined : parseSince(values.since),
      limit: values.limit === undefined ? undefined : Number(values.limit),
    });
    if (values.json) {
      for (const hit of hits)
        println(
          io.stdout,
          JSON.stringify({
            id: hit.trace.id,
            ts: new Date(hit.trace.ts).toISOString(),
            agentId: hit.trace.agentId,
            runId: hit.trace.runId,
            step: hit.trace.step,
            target: hit.trace.target,
            fallbackCause: hit.trace.fallbackCause,
            snippet: hit.snippet,
          }),
        );
      return ExitCode.ok;
    }
    if (hits.length === 0) println(io.stdout, 'No traces match.');
    for (const hit of hits)
      println(
        io.stdout,
        `${new Date(hit.trace.ts).toISOString()}  ${hit.trace.runId} turn ${hit.trace.step}  ${hit.trace.agentId}  ${hit.trace.target}${hit.trace.fallbackCause ? ` (fallback: ${hit.trace.fallbackCause})` : ''}\n    ${hit.snippet ?? ''}`,
      );
    return ExitCode.ok;
  } finally {
    await store.close();
  }
}

/** One model turn beside what happened to its proposed calls. */
export interface TurnView {
  readonly step: number;
  readonly traceId: string;
  readonly target: string;
  readonly attempts: readonly string[];
  readonly fallbackCause: string | null;
  readonly lastPrompt: string | null;
  readonly calls: readonly {
    readonly tool: string;
    readonly args: unknown;
    readonly rationale: string | null;
    readonly decision: string | null;
    readonly result: string | null;
  }[];
  readonly answer: string | null;
  readonly mismatches: readonly string[];
}

/** Lays traces beside the run's audit events (pure; exported for tests). */
export function correlate(traces: readonly ModelTrace[], events: readonly AuditEvent[]): TurnView[] {
  // audit events of the run in order; each model.call opens a turn, its decisions follow it
  const turns: { traceId: string | null; decisions: AuditEvent[] }[] = [];
  const results = new Map<number, AuditEvent>();
  for (const e of events) {
    if (e.kind === 'model.call') {
      const proxy = e.attrs.proxy as { traceId?: string } | null | undefined;
      turns.push({ traceId: proxy?.traceId ?? null, decisions: [] });
    } else if (e.kind === 'decision') turns.at(-1)?.decisions.push(e);
    else if (e.kind === 'execution.result' && e.step !== null) results.set(e.step, e);
  }
  const ordered = [...traces].sort((a, b) => a.step - b.step);
  return ordered.map((trace, index) => {
    const turn = turns.find((t) => t.traceId === trace.id) ?? turns[index];
    const decisions = (turn?.decisions ?? []).filter((d) => d.attrs.editedBy === undefined);
    const mismatches: string[] = [];
    const proposed = trace.completion?.toolCalls ?? [];
    const calls = proposed.map((call, i) => {
      const decision = decisions[i];
      if (!decision) mismatches.push(`proposed ${call.tool} was never decided`);
      else if (
        decision.attrs.tool !== call.tool ||
        canonicalJson(decision.attrs.args ?? null) !== canonicalJson(call.args ?? null)
      )
        mismatches.push(`decided ${String(decision.attrs.tool)} differs from proposed ${call.tool}`);
      const result =
        decision?.step === null || decision === undefined ? undefined : results.get(decision.step);
      if (result) {
        // the next turn's prompt must carry this call's result back to the model
        const next = ordered[index + 1];
        if (next && !next.messages.some((m) => m.role === 'tool' && m.toolCallId === call.id))
          mismatches.push(
            `the result of ${call.tool} (step ${decision?.step ?? '?'}) never reached the model`,
          );
      }
      return {
        tool: call.tool,
        args: call.args,
        rationale: call.rationale,
        decision: decision
          ? `${String(decision.attrs.tier)} (${String(decision.attrs.ruleId ?? decision.attrs.code)})`
          : null,
        result: result
          ? result.attrs.ok === true
            ? 'executed'
            : `failed: ${String(result.attrs.code ?? '')}`
          : null,
      };
    });
    if (decisions.length > proposed.length)
      mismatches.push(`${decisions.length - proposed.length} decided call(s) the model never proposed`);
    const lastUser = [...trace.messages].reverse().find((m) => m.role === 'user' || m.role === 'tool');
    return {
      step: trace.step,
      traceId: trace.id,
      target: trace.target,
      attempts: trace.attempts.map((a) => `${a.target}:${a.outcome}`),
      fallbackCause: trace.fallbackCause,
      lastPrompt: lastUser ? ('content' in lastUser ? lastUser.content : null) : null,
      calls,
      answer: proposed.length === 0 ? (trace.completion?.content ?? null) : null,
      mismatches,
    };
  });
}

async function show(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: { ...COMMON, step: { type: 'string' } },
  });
  if (positionals.length !== 1) throw new UsageError('expected one <runId>', USAGE);
  const runId = positionals[0]!;
  const store = await storeOf(values);
  let traces: readonly ModelTrace[];
  try {
    traces = await store.byRun(runId);
  } finally {
    await store.close();
  }
  const auditFile = join(values['state-dir'] ?? defaultStateDir(), 'audit', 'audit.jsonl');
  const events = existsSync(auditFile) ? (await readAuditFile(auditFile)).filter((e) => e.run === runId) : [];
  let view = correlate(traces, events);
  if (values.step !== undefined) view = view.filter((t) => t.step === Number(values.step));
  if (values.json) {
    println(io.stdout, JSON.stringify({ runId, turns: view }));
    return ExitCode.ok;
  }
  if (view.length === 0) {
    println(io.stdout, `No traces for run ${runId}.`);
    return ExitCode.failed;
  }
  for (const turn of view) {
    println(
      io.stdout,
      `turn ${turn.step}  ${turn.target}  [${turn.attempts.join(' → ')}]${turn.fallbackCause ? `  fallback: ${turn.fallbackCause}` : ''}`,
    );
    if (turn.lastPrompt) println(io.stdout, `  prompt:   ${turn.lastPrompt.slice(0, 160)}`);
    for (const call of turn.calls) {
      println(io.stdout, `  proposed: ${call.tool} ${JSON.stringify(call.args).slice(0, 120)}`);
      if (call.rationale)
        println(io.stdout, `    intent (stated, unverified): ${call.rationale.slice(0, 160)}`);
      println(io.stdout, `    decision: ${call.decision ?? '(none)'}   result: ${call.result ?? '(none)'}`);
    }
    if (turn.answer !== null) println(io.stdout, `  answer:   ${turn.answer.slice(0, 200)}`);
    for (const m of turn.mismatches) println(io.stdout, `  ! ${m}`);
  }
  return ExitCode.ok;
}

export const tracesCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === 'search') return search(rest, io);
  if (sub === 'show') return show(rest, io);
  throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
};
