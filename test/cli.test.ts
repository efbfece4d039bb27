/**
 * The `agent-runtime` CLI: in-process through `main()` for the decision and validation paths, and
 * as a real child process through the package `bin` for exit codes and the dev server.
 */
import { runCli } from './run-cli.ts';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { Connection } from '@temporalio/client';
import { findFreePort, startDevServer } from '../worker/temporal/dev-server.ts';
import { SEARCH_ATTRIBUTES } from '../worker/temporal/search-attributes.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const ops = join(root, 'examples/ops-staging/governance.yaml');
const finance = join(root, 'examples/support-finance/governance.yaml');
const bin = join(root, 'bin/agent-runtime.js');

const run = (...argv: string[]) => runCli(argv);

const relative = (text: string): string => text.replaceAll(root, '');

describe('governance validate', () => {
  test('a valid document: exit 0 and one line with agent id, rule count and policyVersion', async () => {
    const result = await run('governance', 'validate', ops);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(relative(result.stdout)).toMatch(
      /^examples\/ops-staging\/governance\.yaml: valid: agent ops-assistant, 14 rules, policyVersion [0-9a-f]{64}\n$/,
    );
  });

  test('an invalid document: exit 1 and every problem as file:line: path: message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ar-cli-'));
    const file = join(dir, 'broken.yaml');
    await writeFile(
      file,
      [
        'schemaVersion: 1',
        'identity: { id: x, name: X, purpose: P, owner: o }',
        'authority:',
        '  roles: { sre: { level: 50 } }',
        '  principals: [{ id: bob, roles: [sre] }]',
        '  directors: { roles: [sre] }',
        'actions:',
        '  default: { tier: autonomous }',
        '  rules:',
        '    - { id: a, tool: fs.read, tier: auto }',
        '    - { id: a, tool: fs.read, tier: approval, approval: { approvers: { roles: [ghost] }, timeout: soon } }',
        '',
      ].join('\n'),
    );
    const result = await run('governance', 'validate', file);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.replaceAll(dir, '<dir>')).toMatchInlineSnapshot(`
      "<dir>/broken.yaml:8: actions.default.tier: expected approval or prohibited (an unmatched action must ask or be denied), got "autonomous"
      <dir>/broken.yaml:10: actions.rules[0].tier: expected "autonomous" | "preapproved" | "approval" | "prohibited", got "auto"
      <dir>/broken.yaml:11: actions.rules[1].approval.timeout: expected a positive duration such as 90s, 15m, 4h, 1d or PT4H (at most 366d), got "soon"
      <dir>/broken.yaml:11: actions.rules[1].id: duplicate rule id "a" (first at actions.rules[0])
      <dir>/broken.yaml:11: actions.rules[1].approval.approvers.roles[0]: unknown role "ghost" (expected one of: sre)
      <dir>/broken.yaml:11: actions.rules[1].approval.approvers: selects no principal: nobody could approve
      <dir>/broken.yaml: 6 problems
      "
    `);
  });

  test('a missing file is a clear one-line error', async () => {
    const result = await run('governance', 'validate', '/nonexistent/governance.yaml');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('agent-runtime: /nonexistent/governance.yaml: cannot read (ENOENT)\n');
  });
});

describe('governance explain', () => {
  const explainJson = async (...argv: string[]) => {
    const result = await run('governance', 'explain', ...argv, '--json');
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    return JSON.parse(lines[0]!) as Record<string, unknown>;
  };

  test('--json prints exactly one object with the documented keys', async () => {
    const decision = await explainJson(
      ops,
      '--tool',
      'fs.write',
      '--args',
      '{"path":"/workspace/docs/a.md","content":"x"}',
    );
    expect(Object.keys(decision)).toEqual([
      'tier',
      'ruleId',
      'reason',
      'approval',
      'posture',
      'policyVersion',
    ]);
    expect(decision).toMatchObject({
      tier: 'preapproved',
      ruleId: 'write-docs',
      approval: null,
      posture: 'normal',
    });
    expect(decision.policyVersion).toMatch(/^[0-9a-f]{64}$/);
  });

  test('ruleId is null when the default applied, and approval carries the requirement', async () => {
    const decision = await explainJson(
      ops,
      '--tool',
      'fs.write',
      '--args',
      '{"path":"/workspace/src/main.ts","content":"x"}',
    );
    expect(decision).toMatchObject({
      tier: 'approval',
      ruleId: null,
      approval: {
        eligible: ['alice', 'bob', 'dana'],
        quorum: 1,
        timeoutMs: 900_000,
        channels: ['slack', 'web'],
      },
    });
  });

  test('a tool without a registered schema is decided from the rules alone and says so', async () => {
    const decision = await explainJson(
      finance,
      '--tool',
      'billing.refund',
      '--args',
      '{"amountCents": 900000, "currency": "USD"}',
    );
    expect(decision.tier).toBe('prohibited');
    expect(decision.ruleId).toBe('refund-too-large');
    expect(decision.reason).toMatch(
      /^no schema registered for "billing.refund": decided from the rules alone/,
    );
  });

  test('director, posture, frozen tools and used limits are applied', async () => {
    const restart = ['--tool', 'svc.restart', '--args', '{"service":"api","environment":"staging"}'];
    expect((await explainJson(ops, ...restart, '--director', 'bob')).tier).toBe('preapproved');
    expect((await explainJson(ops, ...restart, '--director', 'carol')).ruleId).toBe('restart-by-engineer');
    // the spent limit stops the preapproved rule matching; bob is no engineer, so the default applies
    expect(
      await explainJson(ops, ...restart, '--director', 'bob', '--used', '{"restart-staging-service":3}'),
    ).toMatchObject({
      tier: 'approval',
      ruleId: null,
    });
    const read = ['--tool', 'fs.read', '--args', '{"path":"/workspace/README.md"}'];
    expect(await explainJson(ops, ...read, '--posture', 'conservative')).toMatchObject({
      tier: 'approval',
      posture: 'conservative',
    });
    expect(await explainJson(ops, ...read, '--frozen', 'fs.*')).toMatchObject({ tier: 'prohibited' });
    expect(await explainJson(ops, ...read, '--posture', 'revoked')).toMatchObject({
      tier: 'prohibited',
      posture: 'revoked',
    });
  });

  test('invalid arguments are prohibited with reason invalid_arguments', async () => {
    const decision = await explainJson(ops, '--tool', 'fs.read', '--args', '{"path": 42}');
    expect(decision).toMatchObject({ tier: 'prohibited', ruleId: null, reason: 'invalid_arguments' });
  });

  test('the human-readable form shows the rule, the approval and the denial', async () => {
    const result = await run(
      'governance',
      'explain',
      ops,
      '--tool',
      'fs.write',
      '--args',
      '{"path":"/workspace/config/app.yaml","content":"x"}',
    );
    expect(result.code).toBe(0);
    expect(result.stdout.replace(/[0-9a-f]{64}/, '<version>')).toMatchInlineSnapshot(`
      "tier:          approval
      rule:          write-config
      reason:        matched rule "write-config" (approval)
      resource:      /workspace/config/app.yaml
      posture:       normal
      approval:      1 of [bob, dana], timeout 30m, via slack/email/web, remind 10m, escalate 20m → [alice]
      policyVersion: <version>
      "
    `);
  });

  test.each([
    [['--tool'], /--tool/],
    [
      ['--posture', 'relaxed', '--tool', 'fs.read'],
      /--posture: expected one of normal, conservative, revoked, got "relaxed"/,
    ],
    [['--tool', 'fs.read', '--args', '{oops'], /--args: expected JSON/],
    [['--tool', 'fs.read', '--used', '{"a":-1}'], /--used: expected a JSON object/],
    [['--tool', 'fs.read', '--director', 'mallory'], /--director: unknown principal "mallory"/],
    [['--tool', 'fs.read', '--bogus'], /Unknown option '--bogus'/],
  ])('usage errors exit 2: %j', async (extra, message) => {
    const result = await run('governance', 'explain', ops, ...extra);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });
});

describe('bench decide', () => {
  test('--json prints one object with the documented keys', async () => {
    const result = await run('bench', 'decide', '--rules', '50', '--iterations', '2000', '--json');
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as Record<string, number | string>;
    expect(Object.keys(parsed)).toEqual(['name', 'rules', 'p50_us', 'p90_us', 'p99_us', 'per_second']);
    expect(parsed).toMatchObject({ name: 'decide', rules: 50 });
    expect(parsed.p50_us as number).toBeLessThanOrEqual(parsed.p99_us as number);
    expect(parsed.per_second as number).toBeGreaterThan(0);
  });
});

describe('the package bin, as a real process', () => {
  const exec = promisify(execFile);
  const spawnCli = async (...argv: string[]) => {
    try {
      const { stdout, stderr } = await exec(process.execPath, [bin, ...argv], {
        cwd: root,
        timeout: 120_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  test('exit codes: 0 valid, 1 invalid, 2 usage', async () => {
    expect((await spawnCli('governance', 'validate', ops)).code).toBe(0);
    expect((await spawnCli('governance', 'validate', join(root, 'package.json'))).code).toBe(1);
    expect((await spawnCli('governance', 'frobnicate')).code).toBe(2);
    expect((await spawnCli()).code).toBe(2);
  });

  test('dev --exit-when-done: the stack comes up with its UI, says where everything is, and stops', async () => {
    const [port, uiPort] = [await findFreePort(), await findFreePort()];
    const stateDir = await mkdtemp(join(tmpdir(), 'ar-cli-dev-'));
    const result = await spawnCli(
      'dev',
      '--exit-when-done',
      '--state-dir',
      stateDir,
      '--port',
      String(port),
      '--ui-port',
      String(uiPort),
      '--approvals-port',
      '0',
    );
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/Approvals inbox {4}http:\/\/127\.0\.0\.1:\d+\/inbox/);
    expect(result.stdout).toContain('Slack              not configured (SLACK_*)');
    expect(result.stdout).toContain(`Temporal frontend  127.0.0.1:${port}`);
    expect(result.stdout).toContain(`Temporal Web UI    http://127.0.0.1:${uiPort}`);
    expect(result.stdout).toContain(
      `Running workflows  http://127.0.0.1:${uiPort}/namespaces/default/workflows?query=ExecutionStatus%3D'Running'`,
    );
    expect(result.stdout).toContain(`Vote public key    ${join(stateDir, 'keys', 'vote-signing.pub')}`);
    expect(result.stdout).toMatch(/Stopped\.\n$/);
  });

  test('start is dev --demo: same options, and --no-wait is accepted', async () => {
    const result = await spawnCli('start', '--no-wait', '--port', 'x');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--port: expected a port number (1-65535), got "x"');
    expect(result.stderr).toContain('same as: agent-runtime dev --demo');
  });
});

describe('keys init', () => {
  test('creates the key pair once and refuses to overwrite it without --force', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'ar-keys-cli-')), 'keys');
    const first = await run('keys', 'init', '--dir', dir);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^key ed25519:[0-9a-f]{16}\n/);
    const again = await run('keys', 'init', '--dir', dir);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists (use --force to replace it');
    expect((await run('keys', 'init', '--dir', dir, '--force')).code).toBe(0);
  });
});

describe('temporal search-attributes (cluster namespaces)', () => {
  test('registers the six custom attributes on a namespace that lacks them; a second run adds nothing', async () => {
    const server = await startDevServer({
      namespace: 'cluster-ns',
      logger: { info: () => {}, warn: () => {} },
    });
    try {
      const listed = async () => {
        const connection = await Connection.connect({ address: server.address });
        try {
          const { customAttributes } = await connection.operatorService.listSearchAttributes({
            namespace: 'cluster-ns',
          });
          return Object.keys(customAttributes ?? {}).sort();
        } finally {
          await connection.close();
        }
      };
      expect(await listed()).not.toContain('ApprovalState');
      const first = await run(
        'temporal',
        'search-attributes',
        '--address',
        server.address,
        '--namespace',
        'cluster-ns',
      );
      expect(first.code).toBe(0);
      expect(first.stdout).toBe(
        'namespace cluster-ns: registered AgentId, RequestedBy, PolicyVersion, RunState, LastDecision, ApprovalState\n',
      );
      expect(await listed()).toEqual(expect.arrayContaining(Object.keys(SEARCH_ATTRIBUTES)));
      const second = await run(
        'temporal',
        'search-attributes',
        '--address',
        server.address,
        '--namespace',
        'cluster-ns',
      );
      expect(second.stdout).toBe('namespace cluster-ns: all 6 search attributes already registered\n');
    } finally {
      await server.stop();
    }
  });

  test('an unreachable frontend is one clear error', async () => {
    const port = await findFreePort();
    const result = await run('temporal', 'search-attributes', '--address', `127.0.0.1:${port}`);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot reach Temporal at 127.0.0.1:${port}`);
  });
});
