/**
 * `agent-runtime dev --demo`, `run` and `approvals` as real processes of the built CLI: `dev`
 * starts its own Temporal dev server (free ports, state in a temporary directory) and the demo
 * run; other processes list the pending approval, are refused, and cast the vote the demo printed.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDemoProcess } from './demo-process.ts';
import type { DemoProcess } from './demo-process.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'dist/cli/bin.js');
const ops = join(root, 'examples/ops-staging/governance.yaml');
const script = join(root, 'examples/ops-staging/demo.script.yaml');

interface Exit {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to the end. */
function cli(...argv: string[]): Promise<Exit> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...argv], { cwd: root, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('dev --demo with a vote from another process', () => {
  let stateDir: string;
  let address: string;
  let demo: DemoProcess;

  const waitForOutput = (pattern: RegExp, timeoutMs?: number) => demo.waitForOutput(pattern, timeoutMs);

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ar-cli-dev-'));
    demo = await startDemoProcess('dev', ['--demo', '--exit-when-done'], { stateDir });
    address = demo.address;
  });

  afterAll(async () => {
    await demo?.stop();
    await rm(stateDir, { recursive: true, force: true });
  });

  let command: string[] = [];
  let approvalId = '';

  test('the demo waits for approval and prints the exact vote command', async () => {
    const [line] = await waitForOutput(/npx agent-runtime approvals vote \S+ approve --as \S+[^\n]*/);
    command = line.split(' ').slice(2);
    approvalId = command[2]!;
    expect(approvalId).toMatch(/^run-ops-assistant-[0-9a-f]+\/approval\/4$/);
    expect(command).toEqual([
      'approvals',
      'vote',
      approvalId,
      'approve',
      '--as',
      'bob',
      '--address',
      address,
      '--key',
      join(stateDir, 'keys', 'vote-signing.key'),
    ]);
    expect(demo.stdout()).toContain(`Temporal frontend  ${address}`);
    expect(demo.stdout()).toMatch(
      /Running workflows +http:\/\/127\.0\.0\.1:\d+\/namespaces\/default\/workflows\?query=/,
    );
    // the notice (from the approvals worker) can print before the run's progress reaches the wait
    await waitForOutput(/│ rule write-config needs 1 of: bob, dana/);
    expect(demo.stdout()).toMatch(
      /step 1 +fs\.list \/workspace\/docs +→ autonomous \(read-workspace\) +executed/,
    );
    expect(demo.stdout()).toMatch(
      /step 3 +fs\.write \/workspace\/runbooks\/restart\.md +→ preapproved \(write-docs\) +executed/,
    );
  });

  test('approvals list --json shows the pending approval', async () => {
    let listed: { approvalWorkflowId: string; requester: string; eligible: string[]; quorum: number }[] = [];
    for (let attempt = 0; attempt < 20 && listed.length === 0; attempt += 1) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 250)); // visibility catches up
      const result = await cli('approvals', 'list', '--json', '--address', address);
      expect(result.code).toBe(0);
      listed = JSON.parse(result.stdout) as typeof listed;
    }
    expect(listed).toEqual([
      expect.objectContaining({
        approvalWorkflowId: approvalId,
        requester: 'carol',
        ruleId: 'write-config',
        eligible: ['bob', 'dana'],
        quorum: 1,
      }),
    ]);
  });

  test('the requester cannot approve: exit 1 and a message naming her', async () => {
    const key = join(stateDir, 'keys', 'vote-signing.key');
    const result = await cli(
      'approvals',
      'vote',
      approvalId,
      'approve',
      '--as',
      'carol',
      '--address',
      address,
      '--key',
      key,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('agent-runtime: "carol" requested this run and cannot approve its actions\n');
  });

  test('run --as a principal who is no director is refused with exit 1', async () => {
    const result = await cli(
      'run',
      ops,
      '--script',
      script,
      '--task',
      'Tidy the runbooks',
      '--as',
      'mallory',
      '--address',
      address,
      '--keys',
      join(stateDir, 'keys', 'vote-signing.pub'),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^agent-runtime: principal "mallory" may not direct agent "ops-assistant"/);
  });

  test('the printed command approves; the demo completes with every outcome and exits 0', async () => {
    const vote = await cli(...command);
    expect(vote.stderr).toBe('');
    expect(vote.code).toBe(0);
    expect(vote.stdout).toContain(`bob voted approve on ${approvalId}: approved`);
    expect(await demo.exited).toBe(0);
    const summary = demo.stdout().slice(demo.stdout().indexOf('STEP  TOOL'));
    for (const row of [
      /fs\.list +\/workspace\/docs +autonomous +read-workspace +executed/,
      /fs\.read +\/workspace\/config\/app\.yaml +autonomous +read-workspace +executed/,
      /fs\.write +\/workspace\/runbooks\/restart\.md +preapproved +write-docs +executed/,
      /fs\.write +\/workspace\/config\/app\.yaml +approval +write-config +executed/,
      /fs\.read +\/workspace\/secrets\/token +prohibited +secrets-never +denied/,
      /fs\.write +prohibited +invalid_arguments +denied/,
      /shell\.exec +prohibited +unknown_tool +denied/,
    ])
      expect(summary).toMatch(row);
    expect(demo.stdout()).toMatch(/Run run-ops-assistant-[0-9a-f]+ completed: 7 steps/);
    expect(demo.stdout()).toMatch(/Answer: Wrote runbooks\/restart\.md/);
    expect(demo.stdout()).toMatch(
      /Temporal UI: http:\/\/127\.0\.0\.1:\d+\/namespaces\/default\/workflows\?query=WorkflowId/,
    );
    // then the injection and read-burst runs; the unanswered post times out after 30 s
    expect(demo.stdout()).toMatch(/10 of 10 as expected\./);
    expect(demo.stdout()).toMatch(/Stopped\.\n$/);
  }, 150_000);
});
