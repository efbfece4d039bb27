/**
 * Server-backed proof of the toolchain: the real Temporal dev server (started by global-setup),
 * a real worker bundling workflow code that imports policy/, the decision point running inside the
 * workflow sandbox, search attributes visible through visibility, and replay of the history.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { expect, test } from 'vitest';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import {
  actionDigest,
  compilePolicy,
  decide,
  parseGovernanceOrThrow,
  signVote,
  toolCatalog,
} from '../policy/index.ts';
import type { ActionRequest } from '../policy/index.ts';
import { BUILTIN_TOOL_SPECS } from '../tools/builtin-specs.ts';
import { useTemporal } from './temporal.ts';
import type { decisionWorkflow } from './workflows/decision-workflow.ts';

const workflowsPath = fileURLToPath(new URL('./workflows/decision-workflow.ts', import.meta.url));
const governanceFile = fileURLToPath(new URL('../examples/ops-staging/governance.yaml', import.meta.url));

const temporal = useTemporal(workflowsPath);

const calls: ActionRequest[] = [
  { tool: 'fs.read', args: { path: '/workspace/src/app.ts' } },
  { tool: 'fs.write', args: { path: '/workspace/docs/runbook.md', content: '# Runbook' } },
  { tool: 'fs.write', args: { path: '/workspace/config/app.yaml', content: 'replicas: 2' } },
  { tool: 'fs.read', args: { path: '/workspace/docs/../../etc/shadow' } },
  { tool: 'fs.write', args: { path: 'relative.txt', content: 'x' } },
  { tool: 'shell.exec', args: { command: 'rm -rf /' } },
];

test('the decision point and vote verification run inside a workflow on the real dev server', async () => {
  const loaded = parseGovernanceOrThrow(await readFile(governanceFile, 'utf8'), governanceFile);
  const taskQueue = `toolchain-${randomUUID()}`;
  const worker = await temporal.createWorker(taskQueue);
  const workflowId = `toolchain-${randomUUID()}`;
  const secretKey = ed25519.utils.randomSecretKey();
  const expectAction = {
    workflowId: `${workflowId}/approval-2`,
    step: 2,
    actionDigest: actionDigest({
      tool: 'fs.write',
      args: calls[2]!.args,
      resource: '/workspace/config/app.yaml',
      policyVersion: loaded.policyVersion,
    }),
  };
  const signed = signVote(
    { ...expectAction, decision: 'approve', approver: 'bob', expiresAt: 2_000_000_000_000 },
    secretKey,
  );
  const result = await worker.runUntil(
    temporal.env.client.workflow.execute<typeof decisionWorkflow>('decisionWorkflow', {
      taskQueue,
      workflowId,
      args: [
        {
          document: loaded.document,
          policyVersion: loaded.policyVersion,
          calls,
          posture: 'normal',
          vote: {
            signed,
            publicKeyHex: bytesToHex(ed25519.getPublicKey(secretKey)),
            expect: expectAction,
            nowMs: 1_900_000_000_000,
          },
        },
      ],
    }),
  );
  // Ed25519 verification (pure JS) runs inside the workflow sandbox: the approval workflow's validator can use it
  expect(result.voteCheck).toMatchObject({ ok: true, vote: { approver: 'bob', decision: 'approve' } });

  const policy = compilePolicy(loaded.document, loaded.policyVersion);
  const local = calls.map((call) => decide(policy, call, { tools: toolCatalog(BUILTIN_TOOL_SPECS) }));
  expect(result.decisions).toEqual(JSON.parse(JSON.stringify(local)));
  expect(result.decisions.map((d) => [d.tier, d.ruleId, d.code])).toEqual([
    ['autonomous', 'read-workspace', 'rule_matched'],
    ['preapproved', 'write-docs', 'rule_matched'],
    ['approval', 'write-config', 'rule_matched'],
    ['prohibited', 'secrets-never', 'rule_matched'],
    ['prohibited', null, 'invalid_arguments'],
    ['prohibited', null, 'unknown_tool'],
  ]);
  // the workflow recomputes the version from the document it was given: pinning is checkable
  expect(result.recomputedVersion).toBe(loaded.policyVersion);

  // search attributes are registered on the server and filterable
  const query = `PolicyVersion = '${loaded.policyVersion}' AND WorkflowId = '${workflowId}'`;
  let listed: string[] = [];
  for (let i = 0; i < 50 && listed.length === 0; i++) {
    listed = [];
    for await (const info of temporal.env.client.workflow.list({ query })) listed.push(info.workflowId);
    if (listed.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  expect(listed).toEqual([workflowId]);
  const description = await temporal.env.client.workflow.getHandle(workflowId).describe();
  expect(description.searchAttributes.LastDecision).toEqual(['prohibited:default']);

  // the recorded history replays against the same code without nondeterminism
  const history = await temporal.env.client.workflow.getHandle(workflowId).fetchHistory();
  await Worker.runReplayHistory({ workflowBundle: temporal.bundle }, history, workflowId);
});
