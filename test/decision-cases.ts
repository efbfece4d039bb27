/**
 * The shared decision case table (Hono `common.case.test.ts` style): one list of cases over the
 * fixture policy `test/fixtures/decision-policy.yaml` and the catalog `test/fixtures/tools.ts`,
 * and `runDecisionCases(name, makeEngine)` to run them against any engine built from a
 * governance document. A second engine (e.g. Cedar-backed) must pass the same table.
 *
 * A case marked `failing: true` states the CORRECT expectation for behaviour the current
 * implementation gets wrong; the runner registers it with `test.fails` and `issue` says why.
 * When the implementation is fixed, that test fails until the flag is removed.
 * @module
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { beforeAll, describe, expect, test } from 'vitest';
import type { ApprovalRequirement } from '../policy/compile.ts';
import type { ActionRequest, Decision, DecisionContext } from '../policy/decide.ts';
import { parseGovernanceOrThrow } from '../policy/load.ts';
import type { GovernanceDocument } from '../policy/schema.ts';
import type { DecisionCode, Posture, Tier } from '../policy/tiers.ts';
import { POSTURES } from '../policy/tiers.ts';
import { toolCatalog } from '../policy/tool-spec.ts';
import type { ToolSpec } from '../policy/tool-spec.ts';
import { defineTool, FIXTURE_TOOLS, fixtureCatalog } from './fixtures/tools.ts';

const FIXTURE_FILE = 'test/fixtures/decision-policy.yaml';

/** The fixture governance document, validated and frozen, with its `policyVersion`. */
export const decisionPolicy = parseGovernanceOrThrow(
  readFileSync(new URL('./fixtures/decision-policy.yaml', import.meta.url), 'utf8'),
  FIXTURE_FILE,
);

/** What the table needs from an engine. */
export interface DecisionEngine {
  decide(request: ActionRequest, context: DecisionContext): Decision | Promise<Decision>;
}

/** Builds an engine from a validated governance document. */
export type MakeEngine = (document: GovernanceDocument) => DecisionEngine | Promise<DecisionEngine>;

type DeepPartial<T> = T extends readonly (infer U)[]
  ? readonly U[]
  : T extends object
    ? { readonly [K in keyof T]?: DeepPartial<T[K]> }
    : T;

export interface DecisionExpectation {
  readonly tier: Tier;
  /** `null` pins "no rule decided" (default, refusal). */
  readonly ruleId?: string | null;
  readonly code?: DecisionCode;
  readonly reasonIncludes?: string | readonly string[];
  /** Matched with `toMatchObject`: arrays must match whole. */
  readonly approval?: DeepPartial<ApprovalRequirement>;
  readonly denialCode?: string;
  readonly hintIncludes?: string;
  /** The normalised resource the rules saw. */
  readonly resource?: string | null;
  readonly baseTier?: Tier;
}

export interface DecisionCase {
  readonly name: string;
  readonly request: ActionRequest;
  /** Merged over `{ tools: fixtureCatalog }`. */
  readonly context?: Partial<DecisionContext>;
  readonly expect: DecisionExpectation;
  /** The implementation contradicts the expectation (a known bug); runs as `test.fails`. */
  readonly failing?: true;
  /** Why the case is marked failing. */
  readonly issue?: string;
}

// ---- request builders ------------------------------------------------------------------------

const call = (
  tool: string,
  args: unknown,
  extra: Pick<ActionRequest, 'resource' | 'director'> = {},
): ActionRequest => ({
  tool,
  args,
  ...extra,
});
const read = (path: string): ActionRequest => call('fs.read', { path });
const list = (path: string): ActionRequest => call('fs.list', { path });
const write = (path: string): ActionRequest => call('fs.write', { path });
const http = (method: string, url: string): ActionRequest => call('http.request', { method, url });
const refund = (amountCents: number, currency = 'USD', note?: string): ActionRequest =>
  call('billing.refund', {
    amountCents,
    currency,
    customerId: 'cus_0001',
    ...(note === undefined ? {} : { note }),
  });
const query = (database: string, sql: string, options?: Record<string, unknown>): ActionRequest =>
  call('db.query', { database, sql, ...(options === undefined ? {} : { options }) });
const restart = (environment: string, director?: string): ActionRequest =>
  call('svc.restart', { service: 'api', environment }, director === undefined ? {} : { director });
const email = (to: string, body = 'The nightly job finished.'): ActionRequest =>
  call('email.send', { to, subject: 'Status', body });

const EXPLAIN: Partial<DecisionContext> = { unregisteredTools: 'decide-from-rules' };
const EXPLAIN_NOTE = 'decided from the rules alone';

/** The default's approval requirement, as compiled. */
const DEFAULT_APPROVAL = {
  approvers: { roles: ['sre', 'platform-lead'] },
  eligible: ['alice', 'bob', 'dana'],
  quorum: 1,
  timeoutMs: 15 * 60_000,
  channels: ['slack', 'web'],
  remindAfterMs: null,
  escalate: null,
  highRisk: false,
} as const;

const rule = (
  tier: Tier,
  ruleId: string,
  more: Omit<DecisionExpectation, 'tier' | 'ruleId'> = {},
): DecisionExpectation => ({
  tier,
  ruleId,
  code: 'rule_matched',
  ...more,
});
const byDefault = (
  more: Omit<DecisionExpectation, 'tier' | 'ruleId' | 'code'> = {},
): DecisionExpectation => ({
  tier: 'approval',
  ruleId: null,
  code: 'default',
  approval: DEFAULT_APPROVAL,
  ...more,
});
const refused = (
  code: DecisionCode,
  more: Omit<DecisionExpectation, 'tier' | 'code'> = {},
): DecisionExpectation => ({
  tier: 'prohibited',
  ruleId: null,
  code,
  denialCode: code,
  ...more,
});

// ---- catalogs for fail-closed cases -----------------------------------------------------------

const pathArgs = z.strictObject({ path: z.string().min(1) });
const withTool = (spec: ToolSpec<never>) =>
  toolCatalog([...FIXTURE_TOOLS.filter((t) => t.name !== spec.name), spec]);

const resourceThrows = withTool(
  defineTool({
    name: 'fs.read',
    description: 'Resource derivation that crashes.',
    args: pathArgs,
    resource: () => {
      throw new Error('resource derivation failed');
    },
  }),
);
const schemaThrows = withTool(
  defineTool({
    name: 'fs.read',
    description: 'Schema whose refinement crashes.',
    args: z.strictObject({
      path: z.string().refine(() => {
        throw new Error('schema crashed');
      }),
    }),
    resource: (a) => a.path,
  }),
);
const resourceNotString = withTool(
  defineTool({
    name: 'fs.read',
    description: 'Returns a number.',
    args: pathArgs,
    resource: () => 42 as unknown as string,
  }),
);
const resourceEmpty = withTool(
  defineTool({ name: 'fs.read', description: 'Returns "".', args: pathArgs, resource: () => '' }),
);

class UnavailableCatalog extends Map<string, ToolSpec<never>> {
  override get(_name: string): ToolSpec<never> | undefined {
    throw new Error('catalog unavailable');
  }
}

// ---- the table ---------------------------------------------------------------------------------

export const DECISION_CASES: readonly DecisionCase[] = [
  // every tier
  {
    name: 'tier autonomous: read inside the workspace',
    request: read('/workspace/src/main.ts'),
    expect: rule('autonomous', 'read-workspace', {
      resource: '/workspace/src/main.ts',
      baseTier: 'autonomous',
    }),
  },
  {
    name: 'tier preapproved: write under docs',
    request: write('/workspace/docs/guide.txt'),
    expect: rule('preapproved', 'write-docs'),
  },
  {
    name: 'tier approval: write config carries the rule approval requirement',
    request: write('/workspace/config/app.yaml'),
    expect: rule('approval', 'write-config', {
      approval: {
        approvers: { roles: ['sre'] },
        eligible: ['bob', 'dana'],
        quorum: 1,
        timeoutMs: 30 * 60_000,
        channels: ['slack', 'email', 'web'],
        remindAfterMs: 10 * 60_000,
        escalate: { afterMs: 20 * 60_000, to: { roles: ['platform-lead'] }, eligible: ['alice'] },
        highRisk: false,
      },
    }),
  },
  {
    name: 'tier prohibited: host configuration',
    request: read('/etc/passwd'),
    expect: rule('prohibited', 'secrets-never', { reasonIncludes: 'SEC-12', denialCode: 'prohibited' }),
  },
  {
    name: 'default: registered tool no rule matches gets the default approval',
    request: write('/workspace/src/main.ts'),
    expect: byDefault({
      reasonIncludes: 'someone on call decides',
      resource: '/workspace/src/main.ts',
      baseTier: 'approval',
    }),
  },
  {
    name: 'default: email to an outside address',
    request: email('ops@partner.example'),
    expect: byDefault(),
  },
  {
    name: 'default: http call no rule names',
    request: http('POST', 'https://api.acme.test/v1/items'),
    expect: byDefault(),
  },
  {
    name: 'default: refund in a listed but unruled currency',
    request: refund(500, 'GBP'),
    expect: byDefault(),
  },
  {
    name: 'approval rule without its own block inherits the default requirement',
    request: http('HEAD', 'https://status.staging.acme.test/health'),
    expect: rule('approval', 'status-write', { approval: DEFAULT_APPROVAL }),
  },

  // precedence
  {
    name: 'precedence: earlier prohibited beats later autonomous (secrets in the sandbox)',
    request: write('/workspace/sandbox/secrets/token'),
    expect: rule('prohibited', 'secrets-never'),
  },
  {
    name: 'precedence: later prohibited beats earlier autonomous (admin path on status host)',
    request: http('GET', 'https://status.staging.acme.test/admin/health'),
    expect: rule('prohibited', 'admin-consoles-never', { reasonIncludes: 'OPS-9' }),
  },
  {
    name: 'precedence: earlier prohibited beats later autonomous (EXPLAIN on prod)',
    request: query('prod/orders', 'EXPLAIN SELECT 1'),
    expect: rule('prohibited', 'no-prod-db', { reasonIncludes: 'DBA-3' }),
  },
  {
    name: 'precedence: later approval beats earlier autonomous; tie goes to the first approval rule',
    request: query('analytics/events', 'DROP TABLE t'),
    expect: rule('approval', 'db-ddl-review', {
      approval: { quorum: 2, eligible: ['alice', 'bob', 'dana'], timeoutMs: 3_600_000 },
    }),
  },
  {
    name: 'precedence: approval beats autonomous (TRUNCATE on a replica)',
    request: query('analytics/events', 'TRUNCATE events'),
    expect: rule('approval', 'db-destructive-review', { approval: { quorum: 1, eligible: ['alice'] } }),
  },
  {
    name: 'precedence: preapproved beats a later autonomous rule',
    request: write('/workspace/sandbox/readme.md'),
    expect: rule('preapproved', 'write-markdown'),
  },
  {
    name: 'precedence: approval beats earlier preapproved (goodwill note on a tiny refund)',
    request: refund(500, 'USD', 'goodwill: late parcel'),
    expect: rule('approval', 'refund-goodwill', { approval: DEFAULT_APPROVAL }),
  },
  {
    name: 'precedence: prohibited beats approval (seven-figure refund)',
    request: refund(2_000_000),
    expect: rule('prohibited', 'refund-huge-never', { reasonIncludes: 'treasury' }),
  },
  {
    name: 'precedence: prohibited by currency beats approval by amount',
    request: refund(60_000, 'JPY'),
    expect: rule('prohibited', 'refund-exotic-currency'),
  },
  {
    name: 'tie: two autonomous rules, the first in file order wins',
    request: read('/workspace/sandbox/notes.txt'),
    expect: rule('autonomous', 'read-workspace'),
  },
  {
    name: 'tie: two autonomous db rules, the first in file order wins',
    request: query('staging/app', 'EXPLAIN SELECT 1'),
    expect: rule('autonomous', 'staging-db-read'),
  },
  {
    name: 'tie: two preapproved rules, the first in file order wins',
    request: write('/workspace/docs/intro.md'),
    expect: rule('preapproved', 'write-docs'),
  },
  {
    name: 'tie: two prohibited rules, the first in file order wins',
    request: email('press@newswire.example', 'the password is hunter2'),
    expect: rule('prohibited', 'email-no-credentials'),
  },
  {
    name: 'single autonomous rule: sandbox write',
    request: write('/workspace/sandbox/notes.txt'),
    expect: rule('autonomous', 'scratch-anything'),
  },
  {
    name: 'single autonomous rule without resources: EXPLAIN elsewhere',
    request: query('reporting/main', 'EXPLAIN SELECT 1'),
    expect: rule('autonomous', 'db-explain-anywhere'),
  },

  // * and ** in resources, ?, braces
  {
    name: 'resource *: one segment under /tmp',
    request: list('/tmp/build'),
    expect: rule('autonomous', 'list-tmp-top'),
  },
  { name: 'resource *: does not cross a slash', request: list('/tmp/build/cache'), expect: byDefault() },
  { name: 'resource *: does not match the parent itself', request: list('/tmp'), expect: byDefault() },
  {
    name: 'resource * (relative): one segment',
    request: query('analytics/events', 'SELECT 1'),
    expect: rule('autonomous', 'analytics-replicas'),
  },
  {
    name: 'resource * (relative): not two segments',
    request: query('analytics/eu/events', 'SELECT 1'),
    expect: byDefault(),
  },
  {
    name: 'resource **: any depth',
    request: query('scratch/a/b/c', 'DELETE FROM t'),
    expect: rule('autonomous', 'scratch-db-deep'),
  },
  {
    name: 'resource **: matches the prefix itself',
    request: list('/workspace'),
    expect: rule('autonomous', 'read-workspace'),
  },
  {
    name: 'resource **: segment boundary (workspacex is not workspace)',
    request: read('/workspacex/notes.txt'),
    expect: byDefault(),
  },
  {
    name: 'resource ?: one character',
    request: read('/var/log/app-1.log'),
    expect: rule('autonomous', 'read-app-logs'),
  },
  { name: 'resource ?: not two characters', request: read('/var/log/app-12.log'), expect: byDefault() },
  {
    name: 'resource braces: first alternative',
    request: read('/var/log/nginx/access.log'),
    expect: rule('autonomous', 'read-app-logs'),
  },
  {
    name: 'resource braces: second alternative',
    request: read('/var/log/haproxy/edge.log'),
    expect: rule('autonomous', 'read-app-logs'),
  },
  {
    name: 'resource braces: unlisted alternative',
    request: read('/var/log/apache/access.log'),
    expect: byDefault(),
  },
  {
    name: 'resource braces then *: * stays in its segment',
    request: read('/var/log/nginx/old/access.log'),
    expect: byDefault(),
  },

  // tool globs
  {
    name: 'tool braces: fs.{read,list} matches fs.list',
    request: list('/workspace/src'),
    expect: rule('autonomous', 'read-workspace'),
  },
  {
    name: 'tool db.**: matches a deeper tool name',
    request: call('db.admin.vacuum', {}, { resource: 'scratch/tmp1' }),
    context: EXPLAIN,
    expect: rule('autonomous', 'scratch-db-deep', { reasonIncludes: EXPLAIN_NOTE }),
  },
  {
    name: 'tool db.*: does not match a deeper tool name (replica rule)',
    request: call('db.admin.vacuum', {}, { resource: 'analytics/events' }),
    context: EXPLAIN,
    expect: byDefault({ reasonIncludes: EXPLAIN_NOTE }),
  },
  {
    name: 'tool db.*: a db.* prohibition does not cover db.admin.* (author must write db.**)',
    request: call('db.admin.vacuum', {}, { resource: 'prod/orders' }),
    context: EXPLAIN,
    expect: byDefault(),
  },
  {
    name: 'tool **: matches every tool name (no-production on an unregistered tool)',
    request: call('ops.deep.tool', { environment: 'production' }),
    context: EXPLAIN,
    expect: rule('prohibited', 'no-production'),
  },
  {
    name: 'tool *: matches a single-segment name',
    request: call('ping', {}),
    context: EXPLAIN,
    expect: rule('preapproved', 'bare-names'),
  },
  {
    name: 'tool *: does not match a dotted name',
    request: call('net.ping', {}),
    context: EXPLAIN,
    expect: byDefault(),
  },

  // ! exclusions
  {
    name: 'exclusion: markdown under private is carved out',
    request: write('/workspace/private/plan.md'),
    expect: byDefault(),
  },
  {
    name: 'exclusion: .env excluded from reads, caught by the prohibition',
    request: read('/workspace/app/.env'),
    expect: rule('prohibited', 'secrets-never'),
  },
  {
    name: 'exclusion: .envrc is not .env',
    request: read('/workspace/app/.envrc'),
    expect: rule('autonomous', 'read-workspace'),
  },
  {
    name: 'exclusion: ** in an exclusion matches the directory itself',
    request: list('/workspace/secrets'),
    expect: rule('prohibited', 'secrets-never'),
  },

  // path normalisation
  {
    name: 'normalise: .. climbs out of /workspace to /etc',
    request: read('/workspace/docs/../../etc/passwd'),
    expect: rule('prohibited', 'secrets-never', { resource: '/etc/passwd' }),
  },
  {
    name: 'normalise: .. above the root stays at the root',
    request: read('/workspace/../../../../tmp/x'),
    expect: byDefault({ resource: '/tmp/x' }),
  },
  {
    name: 'normalise: climbing out and back in is inside',
    request: read('/workspace/a/../../workspace/b.txt'),
    expect: rule('autonomous', 'read-workspace', { resource: '/workspace/b.txt' }),
  },
  {
    name: 'normalise: repeated slashes collapse',
    request: read('//workspace///src//main.ts'),
    expect: rule('autonomous', 'read-workspace', { resource: '/workspace/src/main.ts' }),
  },
  {
    name: 'normalise: ./ segments vanish',
    request: read('/workspace/./src/./main.ts'),
    expect: rule('autonomous', 'read-workspace', { resource: '/workspace/src/main.ts' }),
  },
  {
    name: 'normalise: a relative path is not under an absolute prefix',
    request: read('./workspace/src/main.ts'),
    expect: byDefault({ resource: 'workspace/src/main.ts' }),
  },
  {
    name: 'normalise: trailing slash is dropped',
    request: write('/workspace/docs/'),
    expect: rule('preapproved', 'write-docs', { resource: '/workspace/docs' }),
  },
  {
    name: 'normalise: /workspace/.. is the root',
    request: read('/workspace/..'),
    expect: byDefault({ resource: '/' }),
  },
  {
    name: 'normalise: docs/../config is config (approval, not the docs preapproval)',
    request: write('/workspace/docs/../config/app.yaml'),
    expect: rule('approval', 'write-config'),
  },
  {
    name: 'normalise: docs/../secrets is prohibited',
    request: write('/workspace/docs/../secrets/key'),
    expect: rule('prohibited', 'secrets-never'),
  },
  {
    name: 'normalise: relative db name staging/../prod is prod',
    request: query('staging/../prod/orders', 'SELECT 1'),
    expect: rule('prohibited', 'no-prod-db', { resource: 'prod/orders' }),
  },
  {
    name: 'normalise: relative db name climbing above its root is refused',
    request: query('staging/../../prod/orders', 'SELECT 1'),
    expect: refused('invalid_resource'),
  },
  {
    name: 'normalise URL: %2e%2e leaves the public prefix',
    request: http('GET', 'https://www.acme.test/public/%2e%2e/internal/report'),
    expect: byDefault({ resource: 'https://www.acme.test/internal/report' }),
  },
  {
    name: 'normalise URL: %2E%2E and upper-case host reach the admin prohibition',
    request: http('GET', 'HTTPS://API.acme.test/public/%2E%2E/admin/users'),
    expect: rule('prohibited', 'admin-consoles-never', { resource: 'https://api.acme.test/admin/users' }),
  },
  {
    name: 'normalise URL: mixed .%2e is a dot segment',
    request: http('GET', 'https://www.acme.test/public/.%2e/admin/users'),
    expect: rule('prohibited', 'admin-consoles-never'),
  },
  {
    name: 'normalise URL: a plain public page',
    request: http('GET', 'https://www.acme.test/public/docs/index.html'),
    expect: rule('autonomous', 'public-pages', { resource: 'https://www.acme.test/public/docs/index.html' }),
  },
  {
    name: 'normalise URL: a backslash dot segment is resolved like the WHATWG URL parser does',
    request: http('GET', 'https://www.acme.test/public/..\\admin/users'),
    expect: {
      tier: 'prohibited',
      ruleId: 'admin-consoles-never',
      resource: 'https://www.acme.test/admin/users',
    },
  },

  // a rule with resources never matches a call without one
  {
    name: 'no resource: tool ** rule with resources does not match email.send',
    request: email('vendor@partner.example'),
    expect: byDefault({ resource: null }),
  },
  {
    name: 'no resource: unregistered tool without a stated resource',
    request: call('tmp.cleanup', {}),
    context: EXPLAIN,
    expect: byDefault({ resource: null }),
  },
  {
    name: 'stated resource (explain mode): unregistered tool in the sandbox',
    request: call('tmp.cleanup', {}, { resource: '/workspace/sandbox/run-1' }),
    context: EXPLAIN,
    expect: rule('autonomous', 'scratch-anything'),
  },

  // operators, true and false
  {
    name: 'eq true (+ prefix true): GET on the status host',
    request: http('GET', 'https://status.staging.acme.test/v1/health'),
    expect: rule('autonomous', 'staging-status'),
  },
  {
    name: 'eq false: GET elsewhere is not the status rule',
    request: http('GET', 'https://status.prod.acme.test/v1/health'),
    expect: byDefault(),
  },
  {
    name: 'ne true: a non-GET on the status host',
    request: http('PUT', 'https://status.staging.acme.test/v1/banner'),
    expect: rule('approval', 'status-write'),
  },
  {
    name: 'in true: DELETE on the deploy API',
    request: http('DELETE', 'https://deploy.staging.acme.test/v1/releases/42'),
    expect: rule('approval', 'deploy-api', {
      approval: { eligible: ['bob', 'dana'], timeoutMs: 30 * 60_000, channels: ['slack', 'email', 'web'] },
    }),
  },
  {
    name: 'in false: GET on the deploy API',
    request: http('GET', 'https://deploy.staging.acme.test/v1/releases'),
    expect: byDefault(),
  },
  {
    name: 'prefix false: deploy host without the trailing slash prefix',
    request: http('POST', 'https://deploy.staging.acme.test.evil.example/v1'),
    expect: byDefault(),
  },
  {
    name: 'notIn false: GBP is listed, so the exotic-currency rule does not apply',
    request: refund(60_000, 'GBP'),
    expect: rule('approval', 'refund-large'),
  },
  { name: 'lt true: 999 is tiny', request: refund(999), expect: rule('preapproved', 'refund-tiny') },
  {
    name: 'lt false, gte true: 1000 is small',
    request: refund(1000),
    expect: rule('approval', 'refund-small', {
      approval: {
        approvers: { roles: ['finance-lead'] },
        eligible: ['erin'],
        quorum: 1,
        timeoutMs: 4 * 3_600_000,
        channels: ['slack', 'email'],
        remindAfterMs: 2 * 3_600_000,
        escalate: { afterMs: 3 * 3_600_000, to: { minLevel: 80 }, eligible: ['alice'] },
      },
    }),
  },
  {
    name: 'lte true at the bound, gt false at the bound: 50000 is small',
    request: refund(50_000, 'EUR'),
    expect: rule('approval', 'refund-small'),
  },
  {
    name: 'lte false, gt true: 50001 is large',
    request: refund(50_001, 'EUR'),
    expect: rule('approval', 'refund-large', {
      approval: { quorum: 2, highRisk: true, eligible: ['alice', 'bob', 'dana', 'erin'] },
    }),
  },
  {
    name: 'gte true at the bound: 1000000 is prohibited',
    request: refund(1_000_000),
    expect: rule('prohibited', 'refund-huge-never'),
  },
  { name: 'gte false: 999999 is large', request: refund(999_999), expect: rule('approval', 'refund-large') },
  {
    name: 'matches true: SELECT on staging',
    request: query('staging/app', '  SELECT * FROM users'),
    expect: rule('autonomous', 'staging-db-read'),
  },
  {
    name: 'matches false: UPDATE on staging',
    request: query('staging/app', 'UPDATE users SET x = 1'),
    expect: byDefault(),
  },
  {
    name: 'matches false: patterns are case-sensitive',
    request: query('staging/app', 'select 1'),
    expect: byDefault(),
  },
  {
    name: 'matches true: internal recipient',
    request: email('bob@acme.test'),
    expect: rule('autonomous', 'email-internal'),
  },
  {
    name: 'matches false: recipient on a look-alike domain',
    request: email('bob@acme.test.evil.example'),
    expect: byDefault(),
  },
  {
    name: 'prefix true: goodwill note',
    request: refund(2000, 'EUR', 'goodwill'),
    expect: rule('approval', 'refund-small'),
  },
  {
    name: 'prefix false: note without the prefix',
    request: refund(500, 'USD', 'parcel lost; goodwill'),
    expect: rule('preapproved', 'refund-tiny'),
  },

  // nested argument paths
  {
    name: 'nested a.b: options.readOnly eq true and options.timeoutMs lte',
    request: query('staging/app', 'UPDATE t SET x = 1', { readOnly: true, timeoutMs: 1000 }),
    expect: rule('preapproved', 'staging-db-readonly-tx'),
  },
  {
    name: 'nested a.b: false value does not match',
    request: query('staging/app', 'UPDATE t SET x = 1', { readOnly: false, timeoutMs: 1000 }),
    expect: byDefault(),
  },
  {
    name: 'nested a.b: missing leaf does not match',
    request: query('staging/app', 'UPDATE t SET x = 1', { timeoutMs: 1000 }),
    expect: byDefault(),
  },
  {
    name: 'nested a.b: second constraint false',
    request: query('staging/app', 'UPDATE t SET x = 1', { readOnly: true, timeoutMs: 60_000 }),
    expect: byDefault(),
  },
  {
    name: 'nested a.b: missing parent does not match',
    request: query('staging/app', 'UPDATE t SET x = 1'),
    expect: byDefault(),
  },
  {
    name: 'nested a.b (explain): parent is a string',
    request: call('db.admin.vacuum', { options: 'readOnly' }, { resource: 'staging/app' }),
    context: EXPLAIN,
    expect: byDefault(),
  },

  // missing and wrongly typed arguments (explain mode: no schema stands in between)
  {
    name: 'operators: all constraints satisfied or inapplicable',
    request: call('legacy.payout', { amount: 50, payee: 'acme-payroll', region: 'eu' }),
    context: EXPLAIN,
    expect: rule('autonomous', 'legacy-payout-small', { reasonIncludes: EXPLAIN_NOTE }),
  },
  {
    name: 'notIn true: unlisted payee',
    request: call('legacy.payout', { amount: 50, payee: 'mallory', region: 'eu' }),
    context: EXPLAIN,
    expect: rule('prohibited', 'legacy-payout-blocklist'),
  },
  {
    name: 'ne true: region other than eu',
    request: call('legacy.payout', { amount: 50, payee: 'acme-vendors', region: 'us' }),
    context: EXPLAIN,
    expect: rule('approval', 'legacy-payout-region', { approval: DEFAULT_APPROVAL }),
  },
  {
    name: 'missing argument: notIn and ne do not match',
    request: call('legacy.payout', { amount: 50 }),
    context: EXPLAIN,
    expect: rule('autonomous', 'legacy-payout-small'),
  },
  {
    name: 'missing argument: lte does not match',
    request: call('legacy.payout', { payee: 'acme-payroll', region: 'eu' }),
    context: EXPLAIN,
    expect: byDefault(),
  },
  {
    name: 'wrong type: lte on a numeric string does not match',
    request: call('legacy.payout', { amount: '50', payee: 'acme-payroll', region: 'eu' }),
    context: EXPLAIN,
    expect: byDefault(),
  },
  {
    name: 'wrong type: notIn on a number does not match',
    request: call('legacy.payout', { amount: 50, payee: 7, region: 'eu' }),
    context: EXPLAIN,
    expect: rule('autonomous', 'legacy-payout-small'),
  },
  {
    name: 'wrong type: ne on a number does not match',
    request: call('legacy.payout', { amount: 50, payee: 'acme-payroll', region: 1 }),
    context: EXPLAIN,
    expect: rule('autonomous', 'legacy-payout-small'),
  },
  {
    name: 'wrong type: lte on a boolean does not match',
    request: call('legacy.payout', { amount: true }),
    context: EXPLAIN,
    expect: byDefault(),
  },
  {
    name: 'wrong type: arguments that are not an object match no constraint',
    request: call('legacy.payout', 'pay mallory 50'),
    context: EXPLAIN,
    expect: byDefault(),
  },
  {
    name: 'missing optional argument (registered): prefix on an absent note',
    request: refund(500),
    expect: rule('preapproved', 'refund-tiny'),
  },

  // director constraints
  {
    name: 'director by role: sre restarts staging (preapproved)',
    request: restart('staging', 'bob'),
    expect: rule('preapproved', 'restart-staging-by-sre'),
  },
  {
    name: 'director by role: platform lead restarts staging',
    request: restart('staging', 'alice'),
    expect: rule('preapproved', 'restart-staging-by-sre'),
  },
  {
    name: 'director by role: engineer restarts staging (approval)',
    request: restart('staging', 'carol'),
    expect: rule('approval', 'restart-staging-by-engineer', {
      approval: { eligible: ['bob', 'dana'], timeoutMs: 20 * 60_000 },
    }),
  },
  {
    name: 'director by role: any of several roles (support + engineer)',
    request: restart('staging', 'frank'),
    expect: rule('approval', 'restart-staging-by-engineer'),
  },
  {
    name: 'director by role: a role no rule names',
    request: restart('staging', 'ivan'),
    expect: byDefault(),
  },
  { name: 'director: unknown principal id', request: restart('staging', 'mallory'), expect: byDefault() },
  { name: 'director: none given matches no director rule', request: restart('staging'), expect: byDefault() },
  {
    name: 'director by minLevel: exactly at the level',
    request: restart('dev', 'bob'),
    expect: rule('autonomous', 'restart-dev-senior'),
  },
  {
    name: 'director by minLevel: above it with an unrelated role',
    request: restart('dev', 'erin'),
    expect: rule('autonomous', 'restart-dev-senior'),
  },
  { name: 'director by minLevel: below it', request: restart('dev', 'carol'), expect: byDefault() },
  { name: 'director by minLevel: none given', request: restart('dev'), expect: byDefault() },
  {
    name: 'director does not rescue production',
    request: restart('production', 'alice'),
    expect: rule('prohibited', 'no-production', { reasonIncludes: 'humans on call' }),
  },

  // perRun limits
  {
    name: 'perRun below the limit',
    request: write('/workspace/docs/a.txt'),
    context: { used: { 'write-docs': 2 } },
    expect: rule('preapproved', 'write-docs'),
  },
  {
    name: 'perRun at the limit: the rule stops matching, the default applies',
    request: write('/workspace/docs/a.txt'),
    context: { used: { 'write-docs': 3 } },
    expect: byDefault(),
  },
  {
    name: 'perRun above the limit',
    request: write('/workspace/docs/a.txt'),
    context: { used: { 'write-docs': 9 } },
    expect: byDefault(),
  },
  {
    name: 'perRun spent: the next matching rule applies',
    request: write('/workspace/docs/b.md'),
    context: { used: { 'write-docs': 3 } },
    expect: rule('preapproved', 'write-markdown'),
  },
  {
    name: 'perRun spent on both: the default applies',
    request: write('/workspace/docs/b.md'),
    context: { used: { 'write-docs': 3, 'write-markdown': 10 } },
    expect: byDefault(),
  },
  {
    name: 'perRun counts of other rules do not matter',
    request: write('/workspace/docs/a.txt'),
    context: { used: { 'write-markdown': 99, 'read-workspace': 1000 } },
    expect: rule('preapproved', 'write-docs'),
  },
  {
    name: 'perRun with a director constraint spent',
    request: restart('staging', 'bob'),
    context: { used: { 'restart-staging-by-sre': 2 } },
    expect: byDefault(),
  },
  {
    name: 'perRun spent on a tiny refund',
    request: refund(500),
    context: { used: { 'refund-tiny': 5 } },
    expect: byDefault(),
  },

  // posture overlays
  {
    name: 'conservative raises autonomous to approval with the default requirement',
    request: read('/workspace/src/main.ts'),
    context: { posture: 'conservative' },
    expect: {
      tier: 'approval',
      ruleId: 'read-workspace',
      code: 'posture_conservative',
      baseTier: 'autonomous',
      approval: DEFAULT_APPROVAL,
      reasonIncludes: 'raised to approval',
    },
  },
  {
    name: 'conservative raises preapproved to approval',
    request: write('/workspace/docs/guide.txt'),
    context: { posture: 'conservative' },
    expect: {
      tier: 'approval',
      ruleId: 'write-docs',
      code: 'posture_conservative',
      baseTier: 'preapproved',
      approval: DEFAULT_APPROVAL,
    },
  },
  {
    name: 'conservative keeps an approval rule and its own requirement',
    request: write('/workspace/config/app.yaml'),
    context: { posture: 'conservative' },
    expect: rule('approval', 'write-config', {
      approval: { eligible: ['bob', 'dana'], timeoutMs: 30 * 60_000 },
    }),
  },
  {
    name: 'conservative never lowers prohibited',
    request: read('/etc/shadow'),
    context: { posture: 'conservative' },
    expect: rule('prohibited', 'secrets-never'),
  },
  {
    name: 'conservative keeps the default',
    request: write('/workspace/src/main.ts'),
    context: { posture: 'conservative' },
    expect: byDefault(),
  },
  {
    name: 'frozen by name',
    request: read('/workspace/src/main.ts'),
    context: { frozenTools: ['fs.read'] },
    expect: { tier: 'prohibited', code: 'tool_frozen', denialCode: 'tool_frozen', baseTier: 'autonomous' },
  },
  {
    name: 'frozen by glob fs.*',
    request: write('/workspace/docs/guide.txt'),
    context: { frozenTools: ['fs.*'] },
    expect: { tier: 'prohibited', code: 'tool_frozen', denialCode: 'tool_frozen' },
  },
  {
    name: 'frozen by glob db.**',
    request: query('staging/app', 'SELECT 1'),
    context: { frozenTools: ['db.**'] },
    expect: { tier: 'prohibited', code: 'tool_frozen' },
  },
  {
    name: 'frozen by braces glob',
    request: list('/workspace'),
    context: { frozenTools: ['fs.{read,list}'] },
    expect: { tier: 'prohibited', code: 'tool_frozen' },
  },
  {
    name: 'frozen applies to approval-tier calls',
    request: write('/workspace/config/app.yaml'),
    context: { frozenTools: ['fs.write'] },
    expect: { tier: 'prohibited', code: 'tool_frozen' },
  },
  {
    name: 'frozen applies to default-tier calls',
    request: email('ops@partner.example'),
    context: { frozenTools: ['email.send'] },
    expect: { tier: 'prohibited', code: 'tool_frozen' },
  },
  {
    name: 'frozen other tools do not matter',
    request: read('/workspace/src/main.ts'),
    context: { frozenTools: ['email.*', 'fs.write', 'db.**'] },
    expect: rule('autonomous', 'read-workspace'),
  },
  {
    name: 'conservative and frozen: frozen wins',
    request: read('/workspace/src/main.ts'),
    context: { posture: 'conservative', frozenTools: ['fs.read'] },
    expect: { tier: 'prohibited', code: 'tool_frozen' },
  },
  {
    name: 'revoked: autonomous becomes prohibited',
    request: read('/workspace/src/main.ts'),
    context: { posture: 'revoked' },
    expect: {
      tier: 'prohibited',
      code: 'posture_revoked',
      denialCode: 'run_revoked',
      baseTier: 'autonomous',
    },
  },
  {
    name: 'revoked: approval becomes prohibited',
    request: write('/workspace/config/app.yaml'),
    context: { posture: 'revoked' },
    expect: { tier: 'prohibited', code: 'posture_revoked' },
  },
  {
    name: 'revoked: the default becomes prohibited',
    request: email('ops@partner.example'),
    context: { posture: 'revoked' },
    expect: { tier: 'prohibited', code: 'posture_revoked' },
  },
  {
    name: 'revoked: frozen as well',
    request: read('/workspace/src/main.ts'),
    context: { posture: 'revoked', frozenTools: ['fs.read'] },
    expect: { tier: 'prohibited', code: 'posture_revoked' },
  },
  {
    name: 'revoked: an unknown tool stays prohibited',
    request: call('fs.delete', { path: '/x' }),
    context: { posture: 'revoked' },
    expect: { tier: 'prohibited' },
  },
  {
    name: 'unknown posture value fails closed',
    request: read('/workspace/src/main.ts'),
    context: { posture: 'lockdown' as unknown as Posture },
    expect: { tier: 'prohibited' },
  },

  // invalid arguments
  {
    name: 'invalid args: wrong type names the field',
    request: call('fs.read', { path: 42 }),
    expect: refused('invalid_arguments', { hintIncludes: 'path' }),
  },
  {
    name: 'invalid args: non-integer cents names the field',
    request: call('billing.refund', { amountCents: 12.5, currency: 'USD', customerId: 'cus_0001' }),
    expect: refused('invalid_arguments', { hintIncludes: 'amountCents' }),
  },
  {
    name: 'invalid args: unknown key is named',
    request: call('fs.read', { path: '/workspace/a', force: true }),
    expect: refused('invalid_arguments', { hintIncludes: 'force' }),
  },
  {
    name: 'invalid args: enum value names the field',
    request: call('svc.restart', { service: 'api', environment: 'prod' }),
    expect: refused('invalid_arguments', { hintIncludes: 'environment' }),
  },
  {
    name: 'invalid args: missing field is named',
    request: call('email.send', { to: 'bob@acme.test', body: 'hi' }),
    expect: refused('invalid_arguments', { hintIncludes: 'subject' }),
  },
  {
    name: 'invalid args: nested field path is named',
    request: query('staging/app', 'SELECT 1', { readOnly: 'yes' }),
    expect: refused('invalid_arguments', { hintIncludes: 'options.readOnly' }),
  },
  {
    name: 'invalid args: no arguments at all',
    request: { tool: 'fs.read' },
    expect: refused('invalid_arguments', { hintIncludes: 'path' }),
  },
  { name: 'invalid args: null', request: call('fs.read', null), expect: refused('invalid_arguments') },
  {
    name: 'invalid args: an array',
    request: call('fs.read', ['/workspace/a']),
    expect: refused('invalid_arguments'),
  },
  {
    name: 'invalid args: validated before rules (a prohibited path does not leak its rule)',
    request: call('fs.read', { path: '/etc/passwd', x: 1 }),
    expect: refused('invalid_arguments'),
  },
  {
    name: 'invalid args: validated in explain mode too for registered tools',
    request: call('fs.read', { path: 42 }),
    context: EXPLAIN,
    expect: refused('invalid_arguments'),
  },
  {
    name: 'invalid args under revoked posture stay prohibited',
    request: call('fs.read', {}),
    context: { posture: 'revoked' },
    expect: { tier: 'prohibited', code: 'invalid_arguments' },
  },

  // unknown tools
  {
    name: 'unknown tool: unregistered name',
    request: call('fs.delete', { path: '/workspace/a' }),
    expect: refused('unknown_tool', { hintIncludes: 'fs.delete' }),
  },
  {
    name: 'unknown tool: names are case-sensitive',
    request: call('FS.READ', { path: '/workspace/a' }),
    expect: refused('unknown_tool'),
  },
  { name: 'unknown tool: __proto__', request: call('__proto__', {}), expect: refused('unknown_tool') },
  { name: 'unknown tool: constructor', request: call('constructor', {}), expect: refused('unknown_tool') },
  { name: 'unknown tool: empty name', request: call('', {}), expect: refused('unknown_tool') },
  {
    name: 'unknown tool: a glob as a name',
    request: call('fs.*', { path: '/workspace/a' }),
    expect: refused('unknown_tool'),
  },
  {
    name: 'unknown tool: rules naming it do not help under prohibit (default)',
    request: call('legacy.payout', { amount: 1, payee: 'acme-payroll', region: 'eu' }),
    expect: refused('unknown_tool'),
  },
  {
    name: 'unknown tool: explicit prohibit',
    request: call('legacy.payout', { amount: 1 }),
    context: { unregisteredTools: 'prohibit' },
    expect: refused('unknown_tool'),
  },
  {
    name: 'unknown tool: even when conservative',
    request: call('shell.exec', { cmd: 'ls' }),
    context: { posture: 'conservative' },
    expect: refused('unknown_tool'),
  },

  // decide-from-rules (explain)
  {
    name: 'explain: unregistered tool no rule names gets the default, and says why',
    request: call('shell.exec', { cmd: 'ls' }),
    context: EXPLAIN,
    expect: byDefault({ reasonIncludes: [EXPLAIN_NOTE, 'arguments not validated', 'shell.exec'] }),
  },
  {
    name: 'explain: registered tools are decided normally (no note)',
    request: read('/workspace/a.txt'),
    context: EXPLAIN,
    expect: rule('autonomous', 'read-workspace'),
  },

  // fail closed
  {
    name: 'fail closed: resource() throws',
    request: read('/workspace/a.txt'),
    context: { tools: resourceThrows },
    expect: refused('internal_error'),
  },
  {
    name: 'fail closed: the schema throws',
    request: read('/workspace/a.txt'),
    context: { tools: schemaThrows },
    expect: refused('internal_error'),
  },
  {
    name: 'fail closed: the catalog throws',
    request: read('/workspace/a.txt'),
    context: { tools: new UnavailableCatalog() },
    expect: refused('internal_error'),
  },
  {
    name: 'fail closed: resource() returns a non-string',
    request: read('/workspace/a.txt'),
    context: { tools: resourceNotString },
    expect: { tier: 'prohibited', ruleId: null },
  },
  {
    name: 'fail closed: resource() returns an empty string',
    request: read('/workspace/a.txt'),
    context: { tools: resourceEmpty },
    expect: refused('invalid_resource'),
  },
  {
    name: 'fail closed: an invalid frozen glob',
    request: read('/workspace/a.txt'),
    context: { frozenTools: ['fs.**.**'] },
    expect: refused('internal_error'),
  },
  {
    name: 'fail closed: a tool name that is not a string',
    request: { tool: 42 as unknown as string, args: {} },
    expect: refused('internal_error'),
  },
  {
    name: 'fail closed: an argument getter that throws (explain)',
    request: call(
      'legacy.payout',
      Object.defineProperty({}, 'amount', {
        enumerable: true,
        get: () => {
          throw new Error('boom');
        },
      }),
    ),
    context: EXPLAIN,
    expect: refused('internal_error'),
  },

  // NUL bytes and stated resources
  {
    name: 'NUL byte in a path',
    request: read('/workspace/a\u0000.txt'),
    expect: refused('invalid_resource'),
  },
  {
    name: 'NUL byte in a stated resource (explain)',
    request: call('tmp.cleanup', {}, { resource: '/workspace/sandbox/\u0000' }),
    context: EXPLAIN,
    expect: refused('invalid_resource'),
  },
  {
    name: 'stated resource differs from the arguments',
    request: call('fs.read', { path: '/workspace/a.txt' }, { resource: '/etc/passwd' }),
    expect: refused('invalid_resource'),
  },
  {
    name: 'stated resource looks benign, arguments are not',
    request: call('fs.read', { path: '/etc/passwd' }, { resource: '/workspace/a.txt' }),
    expect: refused('invalid_resource'),
  },
  {
    name: 'stated resource equal after normalisation is accepted',
    request: call('fs.read', { path: '/workspace/a.txt' }, { resource: '/workspace/./x/../a.txt' }),
    expect: rule('autonomous', 'read-workspace'),
  },
  {
    name: 'stated resource on a tool whose arguments name none is refused',
    request: call(
      'email.send',
      { to: 'ceo@partner.example', subject: 'Hi', body: 'Numbers attached.' },
      { resource: '/workspace/sandbox/x' },
    ),
    expect: refused('invalid_resource'),
  },
];

// ---- runner ------------------------------------------------------------------------------------

/** Rule ids, reasons, descriptions and patterns: none of it may reach the model in a denial. */
function policyTexts(document: GovernanceDocument): {
  readonly phrases: readonly string[];
  readonly words: ReadonlySet<string>;
} {
  const phrases: string[] = [];
  const prose: string[] = [];
  if (document.actions.default.reason !== undefined) prose.push(document.actions.default.reason);
  for (const r of document.actions.rules) {
    phrases.push(r.id, ...(r.resources ?? []));
    for (const c of Object.values(r.when?.args ?? {})) if (c.matches !== undefined) phrases.push(c.matches);
    if (r.reason !== undefined) prose.push(r.reason);
    if (r.description !== undefined) prose.push(r.description);
  }
  phrases.push(...prose);
  const words = new Set(prose.flatMap((p) => wordsOf(p)).filter((w) => w.length >= 6));
  return { phrases, words };
}

const wordsOf = (text: string): string[] =>
  text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '');

/** `{ tools: fixtureCatalog, ...case.context }`: the context a case runs with. */
export function decisionContextOf(c: DecisionCase): DecisionContext {
  return { tools: fixtureCatalog, ...c.context };
}

/** Checks one decision against its case, plus the invariants every decision must hold. */
export function checkDecision(
  c: DecisionCase,
  d: Decision,
  policyVersion: string,
  texts = policyTexts(decisionPolicy.document),
): void {
  const e = c.expect;
  expect(d.tier).toBe(e.tier);
  if (e.ruleId !== undefined) expect(d.ruleId).toBe(e.ruleId);
  if (e.code !== undefined) expect(d.code).toBe(e.code);
  for (const part of typeof e.reasonIncludes === 'string' ? [e.reasonIncludes] : (e.reasonIncludes ?? []))
    expect(d.reason).toContain(part);
  if (e.approval !== undefined) expect(d.approval).toMatchObject(e.approval);
  if (e.denialCode !== undefined) expect(d.denial?.code).toBe(e.denialCode);
  if (e.hintIncludes !== undefined) expect(d.denial?.hint).toContain(e.hintIncludes);
  if (e.resource !== undefined) expect(d.resource).toBe(e.resource);
  if (e.baseTier !== undefined) expect(d.baseTier).toBe(e.baseTier);

  // invariants
  const givenPosture = c.context?.posture ?? 'normal';
  // an unknown posture fails closed and is reported as revoked
  expect(d.posture).toBe((POSTURES as readonly string[]).includes(givenPosture) ? givenPosture : 'revoked');
  expect(d.policyVersion).toBe(policyVersion);
  expect(d.denial !== null, 'a denial exactly when prohibited').toBe(d.tier === 'prohibited');
  expect(d.approval !== null, 'an approval requirement exactly when approval').toBe(d.tier === 'approval');
  if (d.denial !== null) {
    const text = `${d.denial.code} ${d.denial.hint}`;
    for (const phrase of texts.phrases) expect(text, 'denial quotes policy text').not.toContain(phrase);
    const leaked = wordsOf(text).filter((w) => texts.words.has(w));
    expect(leaked, 'denial shares words with rule text').toEqual([]);
  }
}

/**
 * Registers one vitest test per case against the engine `makeEngine` builds from the fixture
 * document. Cases marked `failing` run as `test.fails`.
 */
export function runDecisionCases(
  name: string,
  makeEngine: MakeEngine,
  cases: readonly DecisionCase[] = DECISION_CASES,
): void {
  const names = cases.map((c) => c.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate !== undefined) throw new Error(`duplicate decision case name: ${duplicate}`);
  describe(name, () => {
    let engine: DecisionEngine | undefined;
    const texts = policyTexts(decisionPolicy.document);
    beforeAll(async () => {
      engine = await makeEngine(decisionPolicy.document);
    });
    for (const c of cases) {
      const register = c.failing ? test.fails : test;
      register(c.name, async () => {
        if (engine === undefined) throw new Error('engine not built');
        const decision = await engine.decide(c.request, decisionContextOf(c));
        checkDecision(c, decision, decisionPolicy.policyVersion, texts);
      });
    }
  });
}
