import { runCli } from './run-cli.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { BUILTIN_RULES_YAML } from '../observer/rules/builtin.ts';
import { loadObserverConfig } from '../observer/service-config.ts';
import { openObserverStore } from '../observer/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'ar-observer-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await runCli(argv);
  return { code, out: stdout, err: stderr };
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('agent-runtime observer rules test', () => {
  test('the built-in rules pass their fixtures', async () => {
    const { code, out } = await cli(['observer', 'rules', 'test', file('builtin.yaml', BUILTIN_RULES_YAML)]);
    expect(code).toBe(0);
    expect(out).toContain('PASS  fs-read-burst-new-directory (enforce)');
    expect(out).toMatch(/^11\/11 rules pass their fixtures$/m);
  });

  test('a rule whose negative fixture fires fails, exit 1', async () => {
    const rules = file(
      'bad-fixture.yaml',
      `- id: any-read
  description: every read
  severity: low
  mode: shadow
  match: { field: attrs.tool, eq: fs.read }
  fixtures:
    positive: [{ kind: execution.started, attrs: { tool: fs.read } }]
    negative: [{ kind: execution.started, attrs: { tool: fs.read } }]
`,
    );
    const { code, out } = await cli(['observer', 'rules', 'test', rules, '--json']);
    expect(code).toBe(1);
    expect(JSON.parse(out)).toMatchObject({
      rules: [{ rule: 'any-read', ok: false, positive: 1, negative: 1 }],
    });
  });

  test('an invalid rule file names the file, the rule and the path', async () => {
    const rules = file(
      'invalid.yaml',
      `- id: broken
  description: d
  severity: urgent
  mode: enforce
  match: { field: attrs.tool, like: fs.read }
  fixtures: { positive: [], negative: [] }
`,
    );
    const { code, err } = await cli(['observer', 'rules', 'test', rules]);
    expect(code).toBe(1);
    expect(err.replace(dir, '<dir>')).toMatchInlineSnapshot(`
      "<dir>/invalid.yaml: invalid observer rules (4 problems):
      rule "broken": severity: Invalid option: expected one of "low"|"medium"|"high"|"critical"
      rule "broken": fixtures.positive: Too small: expected array to have >=1 items
      rule "broken": fixtures.negative: Too small: expected array to have >=1 items
      rule "broken": match.like: unknown operator "like" (expected one of eq, ne, in, notIn, lt, lte, gt, gte, prefix, matches, exists)
      "
    `);
  });

  test('usage errors', async () => {
    expect((await cli(['observer', 'rules', 'check', 'x.yaml'])).code).toBe(2);
    expect((await cli(['observer', 'status', '--store', join(dir, 'missing.db')])).code).toBe(2);
    expect((await cli(['observer', 'nope'])).code).toBe(2);
  });
});

describe('agent-runtime observer status|findings|interventions', () => {
  test('read a store the observer wrote', async () => {
    const path = join(dir, 'observer.db');
    const store = openObserverStore(path);
    store.addFinding({
      id: 'f1',
      ruleId: 'denial-burst',
      severity: 'high',
      mode: 'enforce',
      group: 'run=r1',
      agent: 'a1',
      run: 'r1',
      events: [1, 2, 3, 4, 5],
      at: '2026-12-01T10:00:00.000Z',
      status: 'open',
      detail: null,
    });
    store.addIntervention({
      id: 'f1:conservative:r1',
      findingId: 'f1',
      action: 'conservative',
      run: 'r1',
      agent: 'a1',
      tools: [],
      status: 'active',
      appliedAt: '2026-12-01T10:00:00.100Z',
      expiresAt: '2026-12-01T11:00:00.100Z',
      endedAt: null,
      detail: null,
    });
    store.close();
    const status = await cli(['observer', 'status', '--store', path]);
    expect(status.code).toBe(1); // no status row yet: the observer never ran on this store
    expect(status.out).toContain('has not written its status');
    const findings = await cli(['observer', 'findings', '--store', path]);
    expect(findings.out).toContain('denial-burst');
    const active = await cli(['observer', 'interventions', '--store', path, '--active', '--json']);
    expect(JSON.parse(active.out.trim())).toMatchObject({
      action: 'conservative',
      run: 'r1',
      status: 'active',
    });
  });
});

describe('observer configuration', () => {
  test('errors name the file and each path', async () => {
    const config = file(
      'observer.yaml',
      `aggregator: { url: 'ftp://x', tokenEnv: lower }
store: {}
heartbeat: { ttl: 5 }
rules: { enforce: maybe }
`,
    );
    const error = await loadObserverConfig(config).then(
      () => new Error('no error'),
      (e: unknown) => e as Error,
    );
    expect(error.message.replace(dir, '<dir>')).toMatchInlineSnapshot(`
      "<dir>/observer.yaml: invalid observer configuration
        aggregator.url: expected an http(s) URL
        aggregator.tokenEnv: expected an environment variable name (A-Z, 0-9, _)
        store.file: Invalid input: expected string, received undefined
        rules.enforce: Invalid input: expected boolean, received string
        heartbeat.ttl: Invalid input: expected string, received number"
    `);
  });
});
