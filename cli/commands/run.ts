/**
 * `agent-runtime run <governance> --script <file> --task <text> --as <principal>`: starts an
 * AgentRun with a scripted model on a running stack (`agent-runtime dev`) and, with `--wait`,
 * follows it to the end.
 * @module
 */
import { parseArgs } from 'node:util';
import { bytesToHex } from '@noble/hashes/utils.js';
import { loadScriptFile } from '../../activities/model/index.ts';
import type { ModelConfig } from '../../activities/model/types.ts';
import { loadPublicKeys } from '../../approval-channels/keys.ts';
import { buildRunInput, startAgentRun } from '../../worker/runs.ts';
import type { StartRunOptions } from '../../worker/runs.ts';
import { ExitCode, println, UsageError } from '../io.ts';
import type { Command } from '../io.ts';
import { DEFAULT_ADDRESS, keyFiles, resolveTarget, withClient } from '../local.ts';
import { followRun } from '../progress.ts';
import { loadOrReport } from './governance.ts';

const USAGE = `usage:
  agent-runtime run <governance.yaml> --script <script.yaml> --task "<text>" --as <principalId>
      [--wait] [--json] [--address host:port] [--namespace N] [--keys <public key file>] [--max-steps N]
      [--no-observer-lease]
      --as         the principal asking for the run; must be a director of the agent
      --wait       follow the run: decisions as they happen, approval waits, the end (exit 0 if completed)
      --address    Temporal frontend (default $TEMPORAL_ADDRESS or ${DEFAULT_ADDRESS})
      --keys       vote-signing public key the run trusts (default .agent-runtime/keys/vote-signing.pub)
      --no-observer-lease
                   do not require the observer's heartbeat (by default a run goes conservative
                   when the observer of \`agent-runtime dev\` stops renewing its lease)`;

export const runCommand: Command = async (argv, io) => {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      script: { type: 'string' },
      task: { type: 'string' },
      as: { type: 'string' },
      wait: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      address: { type: 'string' },
      namespace: { type: 'string' },
      keys: { type: 'string' },
      'max-steps': { type: 'string' },
      'no-observer-lease': { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1)
    throw new UsageError(`expected exactly one <governance.yaml>, got ${positionals.length}`, USAGE);
  for (const option of ['script', 'task', 'as'] as const)
    if (values[option] === undefined || values[option] === '')
      throw new UsageError(`--${option} is required`, USAGE);
  const maxSteps = values['max-steps'] === undefined ? undefined : Number(values['max-steps']);
  if (maxSteps !== undefined && (!Number.isInteger(maxSteps) || maxSteps < 1))
    throw new UsageError(
      `--max-steps: expected a positive integer, got ${JSON.stringify(values['max-steps'])}`,
      USAGE,
    );

  const governance = await loadOrReport(positionals[0]!, io);
  if (!governance) return ExitCode.failed;
  const model: ModelConfig = { provider: 'scripted', turns: await loadScriptFile(values.script!) };
  const keys = await loadPublicKeys([values.keys ?? keyFiles().publicKeyFile]);
  const options: StartRunOptions = {
    governance,
    task: values.task!,
    requestedBy: values.as!,
    model,
    trustedKeys: Object.fromEntries([...keys].map(([id, key]) => [id, bytesToHex(key)])),
    ...(maxSteps === undefined ? {} : { budgets: { maxSteps } }),
    ...(values['no-observer-lease'] ? {} : { options: { requireObserverLease: true } }),
  };
  buildRunInput(options); // a requester who may not direct the agent is refused before connecting

  const target = resolveTarget(values);
  return withClient(target, async (client) => {
    const handle = await startAgentRun(client, options);
    const runId = handle.workflowId;
    if (!values.wait) {
      println(io.stdout, values.json ? JSON.stringify({ runId }) : runId);
      return ExitCode.ok;
    }
    if (!values.json)
      println(
        io.stdout,
        `Run ${runId} started (${governance.document.identity.id}, requested by ${values.as!}).`,
      );
    const voteOptions = target.address === DEFAULT_ADDRESS ? [] : ['--address', target.address];
    const outcome = await followRun(handle, { client, io, json: values.json, voteOptions });
    if (outcome.kind !== 'finished') {
      const message = outcome.kind === 'failed' ? outcome.message : 'interrupted';
      if (values.json)
        println(io.stdout, JSON.stringify({ runId, status: 'failed', steps: null, error: message }));
      else println(io.stderr, `agent-runtime: run ${runId} failed: ${message}`);
      return ExitCode.failed;
    }
    const { result } = outcome;
    if (values.json) {
      println(io.stdout, JSON.stringify({ runId, status: result.status, steps: result.usage.steps }));
    } else {
      println(io.stdout, `Answer: ${result.answer ?? '(none)'}`);
      println(
        io.stdout,
        `Run ${runId} ${result.status} after ${result.usage.steps} step${result.usage.steps === 1 ? '' : 's'}${result.reason ? ` (${result.reason})` : ''}`,
      );
    }
    return result.status === 'completed' ? ExitCode.ok : ExitCode.failed;
  });
};
