/**
 * Every deliberately broken document in examples/invalid is rejected, with its full problem list
 * pinned (`file:line: path: message`). Each file has its own inline snapshot, so a change in any
 * message shows up as a readable diff. The directory and the list below must stay in step.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { formatProblem } from '../policy/errors.ts';
import type { DocumentProblem } from '../policy/errors.ts';
import { parseGovernance } from '../policy/load.ts';

const INVALID_DIR = new URL('../examples/invalid/', import.meta.url);

/** Every file in examples/invalid (README.md aside). Keep sorted. */
const INVALID_FILES = [
  '01-yaml-syntax-error.yaml',
  '02-duplicate-yaml-key.yaml',
  '03-wrong-schema-version.yaml',
  '04-missing-identity.yaml',
  '05-unknown-top-level-key.yaml',
  '06-rule-key-typo-teir.yaml',
  '07-unknown-tier-value.yaml',
  '08-default-tier-autonomous.yaml',
  '09-default-approval-without-block.yaml',
  '10-duplicate-rule-ids.yaml',
  '11-principal-unknown-role.yaml',
  '12-approvers-unknown-role.yaml',
  '13-approvers-unknown-principal.yaml',
  '14-quorum-exceeds-approvers.yaml',
  '15-unparsable-duration.yaml',
  '16-remind-after-not-before-timeout.yaml',
  '17-escalate-after-not-before-timeout.yaml',
  '18-escalation-selects-nobody.yaml',
  '19-empty-resource-glob.yaml',
  '20-globstar-inside-segment.yaml',
  '21-dotdot-in-resource.yaml',
  '22-exclusions-only.yaml',
  '23-invalid-regex.yaml',
  '24-catastrophic-regex.yaml',
  '25-alternation-under-repeat.yaml',
  '26-unknown-constraint-operator.yaml',
  '27-empty-constraint.yaml',
  '28-empty-in-list.yaml',
  '29-lt-with-string.yaml',
  '30-approval-on-autonomous-rule.yaml',
  '31-limits-on-prohibited-rule.yaml',
  '32-approval-rule-without-block-default-prohibited.yaml',
  '33-directors-select-nobody.yaml',
  '34-duplicate-principal-id.yaml',
  '35-duplicate-slack-mapping.yaml',
  '36-invalid-email.yaml',
  '37-alias-bomb.yaml',
  '38-json-syntax-error.json',
  '39-json-schema-error.json',
  '40-document-is-a-list.yaml',
  '41-empty-file.yaml',
  '42-several-mistakes.yaml',
  '43-approvers-select-nobody.yaml',
  '44-tool-glob-empty-segment.yaml',
  '45-unknown-channel.yaml',
  '46-quorum-zero.yaml',
  '47-contradictory-bounds.yaml',
  '48-json-duplicate-key.json',
  '49-empty-resources-list.yaml',
  '50-prohibited-default-with-approval.yaml',
  '51-invalid-argument-name.yaml',
  '52-role-level-not-a-number.yaml',
  '53-principals-as-mapping.yaml',
  '54-empty-approvers-selector.yaml',
  '55-tab-indentation.yaml',
  '56-schema-version-quoted.yaml',
  '57-role-name-with-space.yaml',
  '58-agent-id-with-slash.yaml',
  '59-empty-purpose.yaml',
  '60-duration-too-long.yaml',
  '61-json-truncated.json',
] as const;
type InvalidFile = (typeof INVALID_FILES)[number];

/** Problems that have no line because the input has no position for them. */
const NO_POSITION: Partial<Record<InvalidFile, string>> = {
  '37-alias-bomb.yaml':
    'the alias limit trips while converting the whole document; the YAML library names no node',
  '41-empty-file.yaml': 'an empty file has no YAML node at all',
};

function load(file: string): ReturnType<typeof parseGovernance> {
  const text = readFileSync(new URL(file, INVALID_DIR), 'utf8');
  return parseGovernance(text, `examples/invalid/${file}`);
}

function problemsOf(file: InvalidFile): readonly DocumentProblem[] {
  const result = load(file);
  expect(result.ok, `${file} should be rejected`).toBe(false);
  return result.ok ? [] : result.problems;
}

/** Loads a file, asserts it is rejected, returns its formatted problems. */
function rejected(file: InvalidFile): string[] {
  const problems = problemsOf(file);
  expect(problems.length).toBeGreaterThan(0);
  return problems.map(formatProblem);
}

describe('examples/invalid holds the pinned set', () => {
  const onDisk = readdirSync(INVALID_DIR)
    .filter((name) => name !== 'README.md')
    .sort();

  test('at least 30 broken documents', () => {
    expect(onDisk.length).toBeGreaterThanOrEqual(30);
  });

  test('every file on disk is in INVALID_FILES and vice versa', () => {
    expect(onDisk).toEqual([...INVALID_FILES].sort());
  });

  test('every file in INVALID_FILES has its own pinned snapshot test below', () => {
    const source = readFileSync(fileURLToPath(import.meta.url), 'utf8');
    const pinned = [...source.matchAll(/expect\(rejected\('([^']+)'\)\)\.toMatchInlineSnapshot\(/g)].map(
      (m) => m[1],
    );
    expect(pinned.sort()).toEqual([...INVALID_FILES].sort());
  });

  test('README lists every file; every non-empty YAML file starts with a "# " comment', () => {
    const readme = readFileSync(new URL('README.md', INVALID_DIR), 'utf8');
    for (const file of INVALID_FILES) {
      expect(readme, file).toContain(`| \`${file}\` |`);
      const text = readFileSync(new URL(file, INVALID_DIR), 'utf8');
      if (file.endsWith('.yaml') && text.length > 0) expect(text.split('\n')[0], file).toMatch(/^# \S/);
    }
  });
});

describe('every problem has a line number where the input has a position for it', () => {
  for (const file of INVALID_FILES) {
    const noPosition = NO_POSITION[file];
    if (noPosition !== undefined) {
      test(`${file}: no line (${noPosition})`, () => {
        expect(problemsOf(file).map((p) => p.line)).toEqual(problemsOf(file).map(() => undefined));
      });
    } else {
      test(file, () => {
        for (const problem of problemsOf(file)) expect(problem.line, formatProblem(problem)).toBeDefined();
      });
    }
  }
});

test('the alias bomb is refused by the alias limit, not by expanding it', () => {
  const problems = problemsOf('37-alias-bomb.yaml');
  expect(problems).toHaveLength(1);
  expect(problems[0]?.message).toMatch(/Excessive alias count/);
});

test('every problem of the several-mistakes document is reported in one go', () => {
  expect(problemsOf('42-several-mistakes.yaml').length).toBeGreaterThanOrEqual(9);
});

describe('pinned problem lists', () => {
  test('01-yaml-syntax-error.yaml', () => {
    expect(rejected('01-yaml-syntax-error.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/01-yaml-syntax-error.yaml:12: (root): invalid YAML: Flow map in block collection must be sufficiently indented and end with a }",
      ]
    `);
  });

  test('02-duplicate-yaml-key.yaml', () => {
    expect(rejected('02-duplicate-yaml-key.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/02-duplicate-yaml-key.yaml:26: (root): invalid YAML: duplicate key "tier"",
      ]
    `);
  });

  test('03-wrong-schema-version.yaml', () => {
    expect(rejected('03-wrong-schema-version.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/03-wrong-schema-version.yaml:2: schemaVersion: expected 1, got number 2",
      ]
    `);
  });

  test('04-missing-identity.yaml', () => {
    expect(rejected('04-missing-identity.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/04-missing-identity.yaml:2: identity: missing required key: expected a mapping",
      ]
    `);
  });

  test('05-unknown-top-level-key.yaml', () => {
    expect(rejected('05-unknown-top-level-key.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/05-unknown-top-level-key.yaml:20: permissions: unknown key "permissions" (expected one of: schemaVersion, identity, context, authority, actions)",
      ]
    `);
  });

  // Note: the missing tier says "got nothing" (other missing keys say "missing required key").
  test('06-rule-key-typo-teir.yaml', () => {
    expect(rejected('06-rule-key-typo-teir.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/06-rule-key-typo-teir.yaml:21: actions.rules[0].tier: missing required key: expected "autonomous" | "preapproved" | "approval" | "prohibited"",
        "examples/invalid/06-rule-key-typo-teir.yaml:24: actions.rules[0].teir: unknown key "teir" (expected one of: id, description, tool, resources, when, tier, approval, limits, reason)",
      ]
    `);
  });

  test('07-unknown-tier-value.yaml', () => {
    expect(rejected('07-unknown-tier-value.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/07-unknown-tier-value.yaml:23: actions.rules[0].tier: expected "autonomous" | "preapproved" | "approval" | "prohibited", got "ask"",
      ]
    `);
  });

  test('08-default-tier-autonomous.yaml', () => {
    expect(rejected('08-default-tier-autonomous.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/08-default-tier-autonomous.yaml:18: actions.default.tier: expected approval or prohibited (an unmatched action must ask or be denied), got "autonomous"",
      ]
    `);
  });

  test('09-default-approval-without-block.yaml', () => {
    expect(rejected('09-default-approval-without-block.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/09-default-approval-without-block.yaml:18: actions.default.approval: expected an approval block: the default tier is approval",
      ]
    `);
  });

  test('10-duplicate-rule-ids.yaml', () => {
    expect(rejected('10-duplicate-rule-ids.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/10-duplicate-rule-ids.yaml:25: actions.rules[1].id: duplicate rule id "read-handbook" (first at actions.rules[0])",
      ]
    `);
  });

  test('11-principal-unknown-role.yaml', () => {
    expect(rejected('11-principal-unknown-role.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/11-principal-unknown-role.yaml:14: authority.principals[1].roles[0]: unknown role "author" (expected one of: editor, writer)",
      ]
    `);
  });

  // Note: a derived problem (approvers select nobody) follows the unknown role: accurate, if redundant.
  test('12-approvers-unknown-role.yaml', () => {
    expect(rejected('12-approvers-unknown-role.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/12-approvers-unknown-role.yaml:19: actions.default.approval.approvers.roles[0]: unknown role "editors" (expected one of: editor, writer)",
        "examples/invalid/12-approvers-unknown-role.yaml:19: actions.default.approval.approvers: selects no principal: nobody could approve",
      ]
    `);
  });

  // Note: a derived problem (approvers select nobody) follows the unknown principal.
  test('13-approvers-unknown-principal.yaml', () => {
    expect(rejected('13-approvers-unknown-principal.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/13-approvers-unknown-principal.yaml:25: actions.rules[0].approval.approvers.principals[0]: unknown principal "mia" (expected one of: maya, omar)",
        "examples/invalid/13-approvers-unknown-principal.yaml:25: actions.rules[0].approval.approvers: selects no principal: nobody could approve",
      ]
    `);
  });

  test('14-quorum-exceeds-approvers.yaml', () => {
    expect(rejected('14-quorum-exceeds-approvers.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/14-quorum-exceeds-approvers.yaml:26: actions.rules[0].approval.quorum: expected a quorum of at most 1 (the eligible approvers), got 2",
      ]
    `);
  });

  test('15-unparsable-duration.yaml', () => {
    expect(rejected('15-unparsable-duration.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/15-unparsable-duration.yaml:19: actions.default.approval.timeout: expected a positive duration such as 90s, 15m, 4h, 1d or PT4H (at most 366d), got "4 hours"",
      ]
    `);
  });

  test('16-remind-after-not-before-timeout.yaml', () => {
    expect(rejected('16-remind-after-not-before-timeout.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/16-remind-after-not-before-timeout.yaml:27: actions.rules[0].approval.remindAfter: expected less than the timeout (1h), got 2h",
      ]
    `);
  });

  test('17-escalate-after-not-before-timeout.yaml', () => {
    expect(rejected('17-escalate-after-not-before-timeout.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/17-escalate-after-not-before-timeout.yaml:30: actions.rules[0].approval.escalate.after: expected less than the timeout (1h), got 60m",
      ]
    `);
  });

  test('18-escalation-selects-nobody.yaml', () => {
    expect(rejected('18-escalation-selects-nobody.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/18-escalation-selects-nobody.yaml:27: actions.rules[0].approval.escalate.to: selects no principal: escalation would reach nobody",
      ]
    `);
  });

  test('19-empty-resource-glob.yaml', () => {
    expect(rejected('19-empty-resource-glob.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/19-empty-resource-glob.yaml:23: actions.rules[0].resources[1]: expected a non-empty glob, got """,
      ]
    `);
  });

  // Cosmetic: ", got …" repeats the pattern the message already quotes (also 21, 44).
  test('20-globstar-inside-segment.yaml', () => {
    expect(rejected('20-globstar-inside-segment.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/20-globstar-inside-segment.yaml:23: actions.rules[0].resources[0]: "**" must be a whole segment in "/workspace/a**" (use "*" within a segment)",
      ]
    `);
  });

  test('21-dotdot-in-resource.yaml', () => {
    expect(rejected('21-dotdot-in-resource.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/21-dotdot-in-resource.yaml:23: actions.rules[0].resources[0]: ".." segments are not allowed in resource globs ("/workspace/handbook/../**")",
      ]
    `);
  });

  test('22-exclusions-only.yaml', () => {
    expect(rejected('22-exclusions-only.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/22-exclusions-only.yaml:23: actions.rules[0].resources: expected at least one positive pattern: exclusions alone match nothing",
      ]
    `);
  });

  // Cosmetic: "invalid regular expression: Invalid regular expression: …" says it twice.
  test('23-invalid-regex.yaml', () => {
    expect(rejected('23-invalid-regex.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/23-invalid-regex.yaml:23: actions.rules[0].when.args.sql.matches: invalid regular expression: /^(SELECT|EXPLAIN\\s/u: Unterminated group, got "^(SELECT|EXPLAIN\\\\s"",
      ]
    `);
  });

  test('24-catastrophic-regex.yaml', () => {
    expect(rejected('24-catastrophic-regex.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/24-catastrophic-regex.yaml:23: actions.rules[0].when.args.label.matches: pattern prone to catastrophic backtracking: a repeated group contains another unbounded repeat, got "^(a+)+$"",
      ]
    `);
  });

  test('25-alternation-under-repeat.yaml', () => {
    expect(rejected('25-alternation-under-repeat.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/25-alternation-under-repeat.yaml:23: actions.rules[0].when.args.label.matches: pattern prone to catastrophic backtracking: alternation inside a repeated group (use a character class), got "^(a|ab)*$"",
      ]
    `);
  });

  test('26-unknown-constraint-operator.yaml', () => {
    expect(rejected('26-unknown-constraint-operator.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/26-unknown-constraint-operator.yaml:23: actions.rules[0].when.args.pages.between: unknown key "between" (expected one of: eq, ne, in, notIn, lt, lte, gt, gte, matches, prefix)",
      ]
    `);
  });

  test('27-empty-constraint.yaml', () => {
    expect(rejected('27-empty-constraint.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/27-empty-constraint.yaml:23: actions.rules[0].when.args.draft: expected at least one operator: eq, ne, in, notIn, lt, lte, gt, gte, matches, prefix, got a mapping",
      ]
    `);
  });

  // Cosmetic: "at least 1 items, got 0 items" (also 49).
  test('28-empty-in-list.yaml', () => {
    expect(rejected('28-empty-in-list.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/28-empty-in-list.yaml:23: actions.rules[0].when.args.section.in: expected at least 1 item, got 0 items",
      ]
    `);
  });

  test('29-lt-with-string.yaml', () => {
    expect(rejected('29-lt-with-string.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/29-lt-with-string.yaml:23: actions.rules[0].when.args.changedLines.lt: expected number, got "500"",
      ]
    `);
  });

  // Cosmetic: "a autonomous rule".
  test('30-approval-on-autonomous-rule.yaml', () => {
    expect(rejected('30-approval-on-autonomous-rule.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/30-approval-on-autonomous-rule.yaml:24: actions.rules[0].approval: unexpected approval block on an autonomous rule",
      ]
    `);
  });

  test('31-limits-on-prohibited-rule.yaml', () => {
    expect(rejected('31-limits-on-prohibited-rule.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/31-limits-on-prohibited-rule.yaml:24: actions.rules[0].limits: limits apply to autonomous and preapproved rules only; a spent limit would loosen a prohibited rule",
      ]
    `);
  });

  test('32-approval-rule-without-block-default-prohibited.yaml', () => {
    expect(rejected('32-approval-rule-without-block-default-prohibited.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/32-approval-rule-without-block-default-prohibited.yaml:25: actions.rules[1].approval: expected an approval block (the default has none to inherit)",
      ]
    `);
  });

  test('33-directors-select-nobody.yaml', () => {
    expect(rejected('33-directors-select-nobody.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/33-directors-select-nobody.yaml:16: authority.directors: selects no principal: nobody could start a run",
      ]
    `);
  });

  test('34-duplicate-principal-id.yaml', () => {
    expect(rejected('34-duplicate-principal-id.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/34-duplicate-principal-id.yaml:15: authority.principals[2].id: duplicate principal id "maya" (first at authority.principals[0])",
      ]
    `);
  });

  test('35-duplicate-slack-mapping.yaml', () => {
    expect(rejected('35-duplicate-slack-mapping.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/35-duplicate-slack-mapping.yaml:14: authority.principals[1].slack: Slack user T0ACME/U0MAYA is already mapped to authority.principals[0]",
      ]
    `);
  });

  test('36-invalid-email.yaml', () => {
    expect(rejected('36-invalid-email.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/36-invalid-email.yaml:13: authority.principals[0].email: expected an email address, got "maya(at)acme.test"",
      ]
    `);
  });

  test('37-alias-bomb.yaml', () => {
    expect(rejected('37-alias-bomb.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/37-alias-bomb.yaml: (root): invalid YAML: Excessive alias count indicates a resource exhaustion attack",
      ]
    `);
  });

  test('38-json-syntax-error.json', () => {
    expect(rejected('38-json-syntax-error.json')).toMatchInlineSnapshot(`
      [
        "examples/invalid/38-json-syntax-error.json:8: (root): invalid JSON: Expected double-quoted property name in JSON at position 203 (line 8 column 3)",
      ]
    `);
  });

  test('39-json-schema-error.json', () => {
    expect(rejected('39-json-schema-error.json')).toMatchInlineSnapshot(`
      [
        "examples/invalid/39-json-schema-error.json:10: authority.roles.editor.level: expected number, got "60"",
        "examples/invalid/39-json-schema-error.json:20: actions.default.approval.timeout: expected a duration such as 90s, 15m, 4h, 1d or PT4H, got number 900",
      ]
    `);
  });

  test('40-document-is-a-list.yaml', () => {
    expect(rejected('40-document-is-a-list.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/40-document-is-a-list.yaml:2: (root): expected a mapping, got a list",
      ]
    `);
  });

  test('41-empty-file.yaml', () => {
    expect(rejected('41-empty-file.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/41-empty-file.yaml: (root): expected a governance document, got an empty file",
      ]
    `);
  });

  test('42-several-mistakes.yaml', () => {
    expect(rejected('42-several-mistakes.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/42-several-mistakes.yaml:2: schemaVersion: expected 1, got "v1"",
        "examples/invalid/42-several-mistakes.yaml:4: identity.owner: missing required key: expected string",
        "examples/invalid/42-several-mistakes.yaml:8: authority.directors: missing required key: expected a mapping",
        "examples/invalid/42-several-mistakes.yaml:13: authority.principals[1].roles[0]: unknown role "contributor" (expected one of: editor, writer)",
        "examples/invalid/42-several-mistakes.yaml:14: authority.director: unknown key "director" (expected one of: roles, principals, directors)",
        "examples/invalid/42-several-mistakes.yaml:18: actions.default.approval.timeout: expected a positive duration such as 90s, 15m, 4h, 1d or PT4H (at most 366d), got "15 min"",
        "examples/invalid/42-several-mistakes.yaml:22: actions.rules[0].resource: unknown key "resource" (expected one of: id, description, tool, resources, when, tier, approval, limits, reason)",
        "examples/invalid/42-several-mistakes.yaml:26: actions.rules[1].tier: expected "autonomous" | "preapproved" | "approval" | "prohibited", got "manual"",
        "examples/invalid/42-several-mistakes.yaml:27: actions.rules[2].id: duplicate rule id "read-handbook" (first at actions.rules[0])",
        "examples/invalid/42-several-mistakes.yaml:29: actions.rules[2].when.args.q.matches: pattern prone to catastrophic backtracking: a repeated group contains another unbounded repeat, got "^(\\\\w+\\\\s?)*$"",
      ]
    `);
  });

  test('43-approvers-select-nobody.yaml', () => {
    expect(rejected('43-approvers-select-nobody.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/43-approvers-select-nobody.yaml:25: actions.rules[0].approval.approvers: selects no principal: nobody could approve",
      ]
    `);
  });

  test('44-tool-glob-empty-segment.yaml', () => {
    expect(rejected('44-tool-glob-empty-segment.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/44-tool-glob-empty-segment.yaml:22: actions.rules[0].tool: empty segment in "fs..read"",
      ]
    `);
  });

  test('45-unknown-channel.yaml', () => {
    expect(rejected('45-unknown-channel.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/45-unknown-channel.yaml:27: actions.rules[0].approval.channels[1]: expected "slack" | "email" | "web" | "cli" | "log", got "teams"",
      ]
    `);
  });

  test('46-quorum-zero.yaml', () => {
    expect(rejected('46-quorum-zero.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/46-quorum-zero.yaml:26: actions.rules[0].approval.quorum: expected at least 1, got number 0",
      ]
    `);
  });

  test('47-contradictory-bounds.yaml', () => {
    expect(rejected('47-contradictory-bounds.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/47-contradictory-bounds.yaml:23: actions.rules[0].when.args.changedLines: bounds can never hold together (lower 500 > upper 50)",
      ]
    `);
  });

  test('48-json-duplicate-key.json', () => {
    expect(rejected('48-json-duplicate-key.json')).toMatchInlineSnapshot(`
      [
        "examples/invalid/48-json-duplicate-key.json:23: (root): invalid YAML: duplicate key "tier"",
      ]
    `);
  });

  test('49-empty-resources-list.yaml', () => {
    expect(rejected('49-empty-resources-list.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/49-empty-resources-list.yaml:23: actions.rules[0].resources: expected at least 1 item, got 0 items",
      ]
    `);
  });

  test('50-prohibited-default-with-approval.yaml', () => {
    expect(rejected('50-prohibited-default-with-approval.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/50-prohibited-default-with-approval.yaml:19: actions.default.approval: unexpected approval block: the default tier is prohibited",
      ]
    `);
  });

  test('51-invalid-argument-name.yaml', () => {
    expect(rejected('51-invalid-argument-name.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/51-invalid-argument-name.yaml:23: actions.rules[0].when.args["changed lines"]: invalid key "changed lines": expected an argument name or dotted path such as amountCents or recipient.domain",
      ]
    `);
  });

  test('52-role-level-not-a-number.yaml', () => {
    expect(rejected('52-role-level-not-a-number.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/52-role-level-not-a-number.yaml:10: authority.roles.editor.level: expected number, got "high"",
      ]
    `);
  });

  // Note: a derived problem (directors select nobody) follows from the principals not being a list.
  test('53-principals-as-mapping.yaml', () => {
    expect(rejected('53-principals-as-mapping.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/53-principals-as-mapping.yaml:13: authority.principals: expected a list, got a mapping",
        "examples/invalid/53-principals-as-mapping.yaml:15: authority.directors: selects no principal: nobody could start a run",
      ]
    `);
  });

  // Note: a derived problem (selects no principal) follows the empty selector.
  test('54-empty-approvers-selector.yaml', () => {
    expect(rejected('54-empty-approvers-selector.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/54-empty-approvers-selector.yaml:25: actions.rules[0].approval.approvers: expected at least one of roles, minLevel, principals, got a mapping",
        "examples/invalid/54-empty-approvers-selector.yaml:25: actions.rules[0].approval.approvers: selects no principal: nobody could approve",
      ]
    `);
  });

  test('55-tab-indentation.yaml', () => {
    expect(rejected('55-tab-indentation.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/55-tab-indentation.yaml:11: (root): invalid YAML: Tabs are not allowed as indentation",
        "examples/invalid/55-tab-indentation.yaml:12: (root): invalid YAML: All mapping items must start at the same column",
      ]
    `);
  });

  test('56-schema-version-quoted.yaml', () => {
    expect(rejected('56-schema-version-quoted.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/56-schema-version-quoted.yaml:2: schemaVersion: expected 1, got "1"",
      ]
    `);
  });

  test('57-role-name-with-space.yaml', () => {
    expect(rejected('57-role-name-with-space.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/57-role-name-with-space.yaml:10: authority.roles["site lead"]: invalid key "site lead": expected a role name: letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 characters",
        "examples/invalid/57-role-name-with-space.yaml:13: authority.principals[0].roles[0]: unknown role "site-lead" (expected one of: site lead, writer)",
      ]
    `);
  });

  test('58-agent-id-with-slash.yaml', () => {
    expect(rejected('58-agent-id-with-slash.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/58-agent-id-with-slash.yaml:4: identity.id: expected an agent id: letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 characters, got "docs/helper"",
      ]
    `);
  });

  // Note: the length is counted after trimming ("got 0 characters" for three spaces).
  test('59-empty-purpose.yaml', () => {
    expect(rejected('59-empty-purpose.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/59-empty-purpose.yaml:6: identity.purpose: expected at least 1 character, got 0 characters",
      ]
    `);
  });

  test('60-duration-too-long.yaml', () => {
    expect(rejected('60-duration-too-long.yaml')).toMatchInlineSnapshot(`
      [
        "examples/invalid/60-duration-too-long.yaml:17: actions.default.approval.timeout: expected a positive duration such as 90s, 15m, 4h, 1d or PT4H (at most 366d), got "400d"",
      ]
    `);
  });

  test('61-json-truncated.json', () => {
    expect(rejected('61-json-truncated.json')).toMatchInlineSnapshot(`
      [
        "examples/invalid/61-json-truncated.json:20: (root): invalid JSON: Unexpected end of JSON input",
      ]
    `);
  });
});

describe('mistakes beyond the pinned corpus', () => {
  const base = readFileSync(new URL('../examples/ops-staging/governance.yaml', import.meta.url), 'utf8');
  const problems = (text: string): string[] => {
    const result = parseGovernance(text, 'doc.yaml');
    return result.ok ? [] : result.problems.map(formatProblem);
  };

  test('a when.director that selects nobody is refused: the rule could never match', () => {
    const text = base.replace('director: { roles: [sre, platform-lead] }', 'director: { minLevel: 999 }');
    expect(problems(text)).toEqual([
      'doc.yaml:96: actions.rules[8].when.director: selects no principal: the rule could never match',
    ]);
  });

  test('high-risk approvals must offer a channel besides email', () => {
    const text = base.replace(
      'timeout: 30m }\n    - id: restart-staging',
      'timeout: 30m, highRisk: true, channels: [email] }\n    - id: restart-staging',
    );
    expect(problems(text)).toEqual([
      'doc.yaml:93: actions.rules[7].approval.channels: expected a channel besides email: high-risk requests cannot be approved by email alone (add slack or web)',
    ]);
  });

  test('two principals sharing an email address are refused', () => {
    const text = base.replace('email: dana@acme.test', 'email: Bob@acme.test');
    expect(problems(text)).toEqual([
      'doc.yaml:32: authority.principals[2].email: email Bob@acme.test is already used by authority.principals[1]: one inbox could cast two votes',
    ]);
  });

  test('a UTF-8 byte-order mark is ignored in YAML and JSON alike', () => {
    expect(parseGovernance(`\uFEFF${base}`, 'doc.yaml').ok).toBe(true);
    const json = JSON.stringify((parseGovernance(base, 'doc.yaml') as { document: unknown }).document);
    expect(parseGovernance(`\uFEFF${json}`, 'doc.json').ok).toBe(true);
  });
});
