/**
 * `agent-runtime start`: an alias of `dev --demo` (what `npm start` runs). `--no-wait` keeps its
 * old meaning, "do not stay up": exit once the demo run has ended.
 * @module
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Command } from '../io.ts';
import { defaultStateDir } from '../local.ts';
import { parsePort, runDev } from './dev.ts';

const USAGE = `usage:
  agent-runtime start [--state-dir D] [--port N] [--ui-port N] [--approvals-port N] [--no-wait] [--yes] [--json]
      same as: agent-runtime dev --demo (--no-wait: --exit-when-done; --yes: the demo approves its
      one approval itself through the web inbox)`;

export const startCommand: Command = async (argv, io) => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      'state-dir': { type: 'string' },
      port: { type: 'string' },
      'ui-port': { type: 'string' },
      'approvals-port': { type: 'string' },
      'no-wait': { type: 'boolean', default: false },
      'exit-when-done': { type: 'boolean', default: false },
      yes: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  return runDev(
    {
      stateDir: resolve(values['state-dir'] ?? defaultStateDir()),
      port: parsePort('--port', values.port, 7233, USAGE),
      uiPort: parsePort('--ui-port', values['ui-port'], 8233, USAGE),
      approvalsPort: parsePort('--approvals-port', values['approvals-port'], 8288, USAGE, true),
      governance: [],
      demo: true,
      exitWhenDone: values['no-wait'] || values['exit-when-done'],
      json: values.json,
      yes: values.yes,
    },
    io,
  );
};
