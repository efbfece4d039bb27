/**
 * `agent-runtime`: the command-line entry point.
 * @module
 */
import { AgentRuntimeError } from '../policy/index.ts';
import { ExitCode, println, UsageError } from './io.ts';
import type { CliIo, Command } from './io.ts';

/** Loaded on use: the Temporal worker and client are only imported by the commands that need them. */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  governance: async () => (await import('./commands/governance.ts')).governanceCommand,
  keys: async () => (await import('./commands/keys.ts')).keysCommand,
  bench: async () => (await import('./commands/bench.ts')).benchCommand,
  temporal: async () => (await import('./commands/temporal.ts')).temporalCommand,
  dev: async () => (await import('./commands/dev.ts')).devCommand,
  start: async () => (await import('./commands/start.ts')).startCommand,
  run: async () => (await import('./commands/run.ts')).runCommand,
  approvals: async () => (await import('./commands/approvals.ts')).approvalsCommand,
  traces: async () => (await import('./commands/traces.ts')).tracesCommand,
  audit: async () => (await import('./commands/audit.ts')).auditCommand,
  observer: async () => (await import('./commands/observer.ts')).observerCommand,
  worker: async () => (await import('./commands/worker.ts')).workerCommand,
};

const USAGE = `agent-runtime: runtime governance for AI agents that act

usage: agent-runtime <command> ...

commands:
  dev [--demo] [--exit-when-done]   Temporal dev server + UI, the workers and keys on this machine
      [--state-dir D] [--port N] [--ui-port N] [--json]
                                    (--demo: run the ops-staging example and follow it; Ctrl-C stops)
  start [--no-wait]                 same as dev --demo (npm start)
  run <governance> --script <file> --task <text> --as <principal> [--wait] [--json]
                                    start an agent run with a scripted model on a running stack
  approvals list|show <id>          pending approval requests
  approvals vote <id> approve|deny --as <principal> [--reason <text>]
                                    sign and cast a vote (the requester cannot approve)
  approvals serve --config <file>   the approvals service (web inbox, email, Slack, approvals worker)
  traces search "<text>" [--agent] [--run] [--since] [--json]
                                    search the model proxy's traces (prompts, completions, rationales)
  traces show <runId> [--step N]    each model turn beside its decisions and results; flags mismatches
  audit verify|tail|search          the hash-chained audit log (verify names the first broken record)
  audit serve|export|reconcile      the audit aggregator; an offline-verifiable export; audit vs Temporal history
  observer serve|status|findings    the independent observer (rules, findings, interventions)
  observer rules test <rules.yaml>  run every rule's positive and negative fixtures
  worker --config <file>            one agents or tools worker against a Temporal cluster (until SIGTERM)
  governance validate <file>        check a governance document
  governance explain <file> ...     decide one proposed call and say why
  governance table <file>           print every rule with its tier
  keys init [--dir D] [--force]     create the vote-signing key (approval service)
  bench decide [--rules N]          decision latency benchmark
  temporal provision|path           find or install the Temporal CLI (dev server)
  temporal search-attributes        register the custom search attributes on a cluster namespace

run, approvals: --address host:port (default $TEMPORAL_ADDRESS or 127.0.0.1:7233), --namespace N`;

/** Runs the CLI with the given arguments; returns the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    println(name === undefined ? io.stderr : io.stdout, USAGE);
    return name === undefined ? ExitCode.usage : ExitCode.ok;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  try {
    if (!load) throw new UsageError(`unknown command "${name}"`, USAGE);
    return await (
      await load()
    )(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      println(io.stderr, `agent-runtime: ${error.message}`);
      println(io.stderr, error.usage);
      return ExitCode.usage;
    }
    // node:util parseArgs reports unknown or malformed options with these codes
    const code = (error as { code?: string }).code;
    if (code?.startsWith('ERR_PARSE_ARGS')) {
      println(io.stderr, `agent-runtime: ${(error as Error).message}`);
      return ExitCode.usage;
    }
    if (error instanceof AgentRuntimeError) {
      println(io.stderr, `agent-runtime: ${error.message}`);
      return ExitCode.failed;
    }
    throw error;
  }
}
