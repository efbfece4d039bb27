import { describe, expect, test } from 'vitest';
import {
  DECISION_CASES,
  decisionContextOf,
  decisionPolicy,
  runDecisionCases,
} from '../test/decision-cases.ts';
import { fixtureCatalog } from '../test/fixtures/tools.ts';
import { compilePolicy } from './compile.ts';
import { decide } from './decide.ts';
import type { Decision, DecisionContext } from './decide.ts';
import { parseGovernanceOrThrow } from './load.ts';

runDecisionCases('decision table: compilePolicy + decide', (document) => {
  const policy = compilePolicy(document);
  return { decide: (request, context) => decide(policy, request, context) };
});

const policy = compilePolicy(decisionPolicy.document);
const ctx = (more: Partial<DecisionContext> = {}): DecisionContext => ({ tools: fixtureCatalog, ...more });
const read = (path: string) => ({ tool: 'fs.read', args: { path } });

function isDeepFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  return Object.isFrozen(value) && Object.values(value).every(isDeepFrozen);
}

const DECISION_KEYS = [
  'approval',
  'baseTier',
  'code',
  'denial',
  'policyVersion',
  'posture',
  'reason',
  'resource',
  'ruleId',
  'tier',
];

describe('decision shape', () => {
  const decisions = DECISION_CASES.map(
    (c) => [c.name, decide(policy, c.request, decisionContextOf(c))] as const,
  );

  test('every table decision survives a JSON round trip unchanged', () => {
    for (const [name, d] of decisions) expect(JSON.parse(JSON.stringify(d)), name).toStrictEqual(d);
  });

  test('every table decision is deeply frozen', () => {
    for (const [name, d] of decisions) expect(isDeepFrozen(d), name).toBe(true);
  });

  test('every table decision has exactly the documented keys', () => {
    for (const [name, d] of decisions) expect(Object.keys(d).sort(), name).toEqual(DECISION_KEYS);
  });

  test('deciding twice gives deep-equal decisions', () => {
    for (const c of DECISION_CASES) {
      expect(decide(policy, c.request, decisionContextOf(c)), c.name).toStrictEqual(
        decide(policy, c.request, decisionContextOf(c)),
      );
    }
  });

  test('a frozen decision cannot be altered', () => {
    const d = decide(policy, read('/etc/passwd'), ctx()) as { tier: string; denial: { hint: string } };
    expect(() => {
      d.tier = 'autonomous';
    }).toThrow(TypeError);
    expect(() => {
      d.denial.hint = 'go ahead';
    }).toThrow(TypeError);
  });

  test('an autonomous decision, whole', () => {
    expect(decide(policy, read('/workspace/src/../a.txt'), ctx())).toEqual({
      tier: 'autonomous',
      ruleId: 'read-workspace',
      code: 'rule_matched',
      reason: 'matched rule "read-workspace" (autonomous)',
      approval: null,
      posture: 'normal',
      policyVersion: decisionPolicy.policyVersion,
      baseTier: 'autonomous',
      resource: '/workspace/a.txt',
      denial: null,
    });
  });

  test('a prohibited decision keeps the rule reason for the audit and a generic hint for the model', () => {
    const d = decide(policy, read('/etc/passwd'), ctx());
    expect(d.reason).toMatchInlineSnapshot(
      `"Vaults, dotenv files and host settings stay untouched (SEC-12)."`,
    );
    expect(d.denial).toMatchInlineSnapshot(`
      {
        "code": "prohibited",
        "hint": "This action is not permitted for this agent and cannot be escalated. Do not retry it; choose another approach or report that it cannot be done.",
      }
    `);
  });

  test('denial hints, pinned', () => {
    const hint = (d: Decision) => d.denial?.hint;
    expect(
      hint(decide(policy, { tool: 'billing.refund', args: { amountCents: 1.5, currency: 'usd' } }, ctx())),
    ).toMatchInlineSnapshot(
      `"The arguments do not match the schema of billing.refund: amountCents: Invalid input: expected int, received number; currency: Invalid string: must match pattern /^[A-Z]{3}$/; customerId: Invalid input: expected string, received undefined. Fix them and call again."`,
    );
    expect(hint(decide(policy, { tool: 'rm.rf', args: {} }, ctx()))).toMatchInlineSnapshot(
      `"There is no tool named "rm.rf". Use only the tools you were given."`,
    );
    expect(hint(decide(policy, read('/workspace/a'), ctx({ frozenTools: ['fs.*'] })))).toMatchInlineSnapshot(
      `"The tool "fs.read" is temporarily unavailable for this run. Continue without it or finish."`,
    );
    expect(hint(decide(policy, read('/workspace/a'), ctx({ posture: 'revoked' })))).toMatchInlineSnapshot(
      `"This run has been revoked; no further actions are permitted. Stop and report."`,
    );
    expect(hint(decide(policy, read('/workspace/\u0000'), ctx()))).toMatchInlineSnapshot(
      `"The resource named by the arguments is not acceptable. Check the arguments."`,
    );
  });
});

describe('decide, direct', () => {
  test('policyVersion is the loader version unless pinned', () => {
    expect(policy.policyVersion).toBe(decisionPolicy.policyVersion);
    expect(
      decide(compilePolicy(decisionPolicy.document, 'pinned-v1'), read('/workspace/a'), ctx()).policyVersion,
    ).toBe('pinned-v1');
  });

  test('two compilations of one document decide identically', () => {
    const again = compilePolicy(decisionPolicy.document);
    for (const c of DECISION_CASES) {
      expect(decide(again, c.request, decisionContextOf(c)), c.name).toStrictEqual(
        decide(policy, c.request, decisionContextOf(c)),
      );
    }
  });

  test('conservative with a prohibited default: raised calls are prohibited, not approved by nobody', () => {
    const strict = parseGovernanceOrThrow(
      [
        'schemaVersion: 1',
        'identity: { id: strict, name: Strict, purpose: Test., owner: t }',
        'authority:',
        '  roles: { sre: { level: 50 } }',
        '  principals: [{ id: bob, roles: [sre] }]',
        '  directors: { roles: [sre] }',
        'actions:',
        '  default: { tier: prohibited }',
        '  rules:',
        '    - { id: r, tool: fs.read, tier: autonomous }',
        '    - { id: a, tool: fs.write, tier: approval, approval: { approvers: { roles: [sre] }, timeout: 5m } }',
      ].join('\n'),
      'strict.yaml',
    );
    const p = compilePolicy(strict.document);
    const conservative = ctx({ posture: 'conservative' });
    expect(decide(p, read('/a'), conservative)).toMatchObject({
      tier: 'prohibited',
      code: 'posture_conservative',
      baseTier: 'autonomous',
      approval: null,
      denial: { code: 'approval_unavailable' },
    });
    expect(decide(p, { tool: 'fs.write', args: { path: '/a' } }, conservative)).toMatchObject({
      tier: 'approval',
      ruleId: 'a',
      approval: { eligible: ['bob'], timeoutMs: 300_000 },
    });
    expect(decide(p, { tool: 'fs.list', args: { path: '/a' } }, ctx())).toMatchObject({
      tier: 'prohibited',
      code: 'default',
      ruleId: null,
      denial: { code: 'prohibited' },
    });
  });

  test('a request of null or undefined is refused, not thrown', () => {
    expect(decide(policy, null as never, ctx()).code).toBe('internal_error');
    expect(decide(policy, undefined as never, ctx()).code).toBe('internal_error');
  });

  // decide documents "never throws"; a missing context currently throws before the try block
  test('a missing context is refused, not thrown', () => {
    expect(decide(policy, read('/workspace/a'), undefined as never).tier).toBe('prohibited');
  });

  test('many invented tool names do not disturb later decisions (bounded candidate cache)', () => {
    const explain = ctx({ unregisteredTools: 'decide-from-rules' });
    for (let i = 0; i < 5000; i++) decide(policy, { tool: `made.up.tool${i}`, args: {} }, explain);
    expect(decide(policy, read('/workspace/a'), explain).ruleId).toBe('read-workspace');
    expect(decide(policy, { tool: 'ping', args: {} }, explain).ruleId).toBe('bare-names');
  });

  test('the run state objects are not mutated', () => {
    const used = Object.freeze({ 'write-docs': 1 });
    const frozenTools = Object.freeze(['email.*']);
    const request = Object.freeze({ tool: 'fs.write', args: Object.freeze({ path: '/workspace/docs/a' }) });
    expect(decide(policy, request, ctx({ used, frozenTools })).ruleId).toBe('write-docs');
  });
});
