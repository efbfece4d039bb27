/**
 * `agent-runtime observer serve|status|findings|interventions|rules test`: the independent
 * observer process, and reading its own store (`<state-dir>/observer/observer.db`).
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runFixtures } from '../../observer/rules/fixtures.ts';
import { parseRules } from '../../observer/rules/schema.ts';
import { ObserverRuleError } from '../../observer/errors.ts';
import { openObserverStore } from '../../observer/store.ts';
import type { InterventionStatus, ObserverStore } from '../../observer/store.ts';
import type { ObserverStatus } from '../../observer/service.ts';
import { ExitCode, println, readTextFile, UsageError } from '../io.ts';
import type { CliIo, Command } from '../io.ts';
import { defaultStateDir } from '../local.ts';
import { renderTable as table } from '../table.ts';

const USAGE = `usage:
  agent-runtime observer serve --config F          run the observer (until SIGTERM)
  agent-runtime observer status [--json]           cursor, heartbeat, findings and active interventions
  agent-runtime observer findings [--run R] [-n N] [--json]
  agent-runtime observer interventions [--active] [-n N] [--json]
  agent-runtime observer lift <intervention id or prefix> --as P --reason R
                                                   the running observer undoes it (unfreeze / normal posture)
  agent-runtime observer rules test <rules.yaml> [--json]
                                                   run every rule's positive and negative fixtures
      --state-dir D   the state directory of \`agent-runtime dev\` (default .agent-runtime)
      --store F       the observer's store file (default <state-dir>/observer/observer.db)`;

const STORE_OPTIONS = {
  'state-dir': { type: 'string' },
  store: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

function openStore(values: { 'state-dir'?: string | undefined; store?: string | undefined }): ObserverStore {
  const file = values.store ?? join(values['state-dir'] ?? defaultStateDir(), 'observer', 'observer.db');
  if (!existsSync(file))
    throw new UsageError(`no observer store at ${file} (start \`agent-runtime dev\` first)`, USAGE);
  return openObserverStore(file, { readOnly: true });
}

async function status(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args: [...argv], strict: true, options: STORE_OPTIONS });
  const store = openStore(values);
  try {
    const state = store.getState('status') as ObserverStatus | undefined;
    const active = store.interventions({ status: 'active', limit: 10_000 });
    if (values.json) {
      println(io.stdout, JSON.stringify({ status: state ?? null, activeInterventions: active }));
      return ExitCode.ok;
    }
    if (!state) {
      println(io.stdout, 'the observer has not written its status yet');
      return ExitCode.failed;
    }
    const findings = Object.values(state.stats.findings).reduce((a, b) => a + b, 0);
    println(io.stdout, `observer since ${state.startedAt} (status written ${state.writtenAt})`);
    println(
      io.stdout,
      `  stream ${state.stream}: ${state.stats.events} events, cursor at seq ${state.cursor}`,
    );
    println(io.stdout, `  rules: ${state.rules} (${state.enforce ? 'enforcing' : 'shadow only'})`);
    println(
      io.stdout,
      `  heartbeat: ${state.stats.heartbeatError ? `FAILING (${state.stats.heartbeatError})` : `ok at ${state.stats.heartbeatOkAt ?? '—'}`}`,
    );
    println(
      io.stdout,
      `  findings: ${findings}; interventions: ${Object.values(state.stats.interventions).reduce((a, b) => a + b, 0)} (${state.stats.interventionFailures} failed); rule eval p99 ${state.stats.evalP99Ms?.toFixed(3) ?? '—'} ms`,
    );
    println(io.stdout, `  active interventions: ${active.length}`);
    for (const i of active)
      println(
        io.stdout,
        `    ${i.id.slice(0, 24)}…  ${i.action}${i.tools.length ? ` ${i.tools.join(',')}` : ''}  run ${i.run ?? '—'}  until ${i.expiresAt ?? 'lifted'}`,
      );
    return ExitCode.ok;
  } finally {
    store.close();
  }
}

async function findings(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: { ...STORE_OPTIONS, run: { type: 'string' }, n: { type: 'string', short: 'n' } },
  });
  const store = openStore(values);
  try {
    const rows = store.findings({
      limit: values.n === undefined ? 50 : Number(values.n),
      ...(values.run === undefined ? {} : { run: values.run }),
    });
    if (values.json) {
      for (const row of rows) println(io.stdout, JSON.stringify(row));
      return ExitCode.ok;
    }
    if (rows.length === 0) println(io.stdout, 'no findings');
    else
      println(
        io.stdout,
        table(
          ['at', 'rule', 'severity', 'status', 'run', 'group'],
          rows.map((f) => [f.at, f.ruleId, f.severity, f.status, f.run ?? '—', f.group]),
        ),
      );
    return ExitCode.ok;
  } finally {
    store.close();
  }
}

async function interventions(argv: readonly string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      ...STORE_OPTIONS,
      active: { type: 'boolean', default: false },
      n: { type: 'string', short: 'n' },
    },
  });
  const store = openStore(values);
  try {
    const rows = store.interventions({
      limit: values.n === undefined ? 50 : Number(values.n),
      ...(values.active ? { status: 'active' as InterventionStatus } : {}),
    });
    if (values.json) {
      for (const row of rows) println(io.stdout, JSON.stringify(row));
      return ExitCode.ok;
    }
    if (rows.length === 0) println(io.stdout, 'no interventions');
    else
      println(
        io.stdout,
        table(
          ['applied', 'action', 'tools', 'run', 'status', 'until'],
          rows.map((i) => [
            i.appliedAt,
            i.action,
            i.tools.join(',') || '—',
            i.run ?? '—',
            i.status,
            i.expiresAt ?? '—',
          ]),
        ),
      );
    return ExitCode.ok;
  } finally {
    store.close();
  }
}

async function lift(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: true,
    options: {
      'state-dir': { type: 'string' },
      store: { type: 'string' },
      as: { type: 'string' },
      reason: { type: 'string' },
      'timeout-ms': { type: 'string', default: '15000' },
    },
  });
  const [wanted] = positionals;
  if (wanted === undefined || positionals.length !== 1 || !values.as || !values.reason)
    throw new UsageError('expected: observer lift <intervention id> --as <principal> --reason <text>', USAGE);
  const readable = openStore(values);
  const matches = readable.interventions({ limit: 10_000 }).filter((i) => i.id.startsWith(wanted));
  readable.close();
  if (matches.length !== 1) {
    println(
      io.stderr,
      `agent-runtime: ${matches.length === 0 ? 'no' : `${matches.length}`} interventions match "${wanted}"`,
    );
    return ExitCode.failed;
  }
  const target = matches[0]!;
  if (target.status !== 'active') {
    println(io.stderr, `agent-runtime: intervention ${target.id} is ${target.status}, not active`);
    return ExitCode.failed;
  }
  const file = values.store ?? join(values['state-dir'] ?? defaultStateDir(), 'observer', 'observer.db');
  const store = openObserverStore(file);
  try {
    const n = store.requestLift(target.id, values.as, values.reason, new Date().toISOString());
    const deadline = Date.now() + Number(values['timeout-ms']);
    while (Date.now() < deadline) {
      const outcome = store.liftOutcome(n);
      if (outcome !== null) {
        println(io.stdout, `${target.action} on ${target.run ?? target.agent ?? '—'}: ${outcome}`);
        return outcome === 'lifted' ? ExitCode.ok : ExitCode.failed;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    println(
      io.stderr,
      'agent-runtime: the lift is recorded, but no observer carried it out (is it running?)',
    );
    return ExitCode.failed;
  } finally {
    store.close();
  }
}

async function rulesTest(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: true,
    options: { json: { type: 'boolean', default: false } },
  });
  const [sub, file] = positionals;
  if (sub !== 'test' || file === undefined || positionals.length !== 2)
    throw new UsageError('expected: observer rules test <rules.yaml>', USAGE);
  const text = await readTextFile(file);
  let rules;
  try {
    rules = parseRules(text);
  } catch (error) {
    if (!(error instanceof ObserverRuleError)) throw error;
    println(io.stderr, `${file}: ${error.message}`);
    return ExitCode.failed;
  }
  const results = rules.map((rule) => {
    const { positive, negative } = runFixtures(rule);
    const ok = positive.length > 0 && negative.length === 0;
    return { rule: rule.id, mode: rule.mode, ok, positive: positive.length, negative: negative.length };
  });
  if (values.json) println(io.stdout, JSON.stringify({ file, rules: results }));
  else {
    for (const r of results)
      println(
        io.stdout,
        `${r.ok ? 'PASS' : 'FAIL'}  ${r.rule} (${r.mode})  positive: ${r.positive} finding${r.positive === 1 ? '' : 's'}, negative: ${r.negative}`,
      );
    const failed = results.filter((r) => !r.ok).length;
    println(io.stdout, `${results.length - failed}/${results.length} rules pass their fixtures`);
  }
  return results.every((r) => r.ok) ? ExitCode.ok : ExitCode.failed;
}

export const observerCommand: Command = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === 'serve') return (await import('../../observer/process.ts')).serveObserver(rest, io, USAGE);
  if (sub === 'status') return status(rest, io);
  if (sub === 'findings') return findings(rest, io);
  if (sub === 'interventions') return interventions(rest, io);
  if (sub === 'lift') return lift(rest, io);
  if (sub === 'rules') return rulesTest(rest, io);
  throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`, USAGE);
};
