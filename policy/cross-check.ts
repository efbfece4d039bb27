/**
 * Checks that span the document: duplicate ids, references to unknown roles and principals,
 * quorums no eligible group can meet, schedules longer than their timeout, tier-specific keys.
 * Runs on the raw parsed YAML defensively, so its findings are reported together with schema
 * errors rather than after them.
 * @module
 */
import { parseDuration } from './duration.ts';
import { selectPrincipals } from './selector.ts';

/** One cross-reference finding: a path (keys and indices) and a message. */
export interface CrossProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const strings = (v: unknown): string[] => list(v).filter((x): x is string => typeof x === 'string');

interface PrincipalView {
  readonly id: string;
  readonly roles: readonly string[];
}

/** Finds cross-reference problems in a raw governance document. */
export function crossCheck(raw: unknown): CrossProblem[] {
  const problems: CrossProblem[] = [];
  if (!isObj(raw)) return problems;
  const authority = isObj(raw.authority) ? raw.authority : {};
  const roles = isObj(authority.roles) ? authority.roles : {};
  const roleExists = (role: string): boolean => Object.hasOwn(roles, role);
  const roleLevel = (role: string): number | undefined => {
    const r = roles[role];
    return isObj(r) && typeof r.level === 'number' ? r.level : undefined;
  };

  const principals: PrincipalView[] = [];
  const seenPrincipals = new Map<string, number>();
  const seenSlack = new Map<string, number>();
  const seenEmail = new Map<string, number>();
  list(authority.principals).forEach((p, i) => {
    if (!isObj(p) || typeof p.id !== 'string') return;
    const at = ['authority', 'principals', i];
    const previous = seenPrincipals.get(p.id);
    if (previous !== undefined) {
      problems.push({
        path: [...at, 'id'],
        message: `duplicate principal id "${p.id}" (first at authority.principals[${previous}])`,
      });
    } else {
      seenPrincipals.set(p.id, i);
    }
    const principalRoles = strings(p.roles);
    principalRoles.forEach((role, j) => {
      if (!roleExists(role)) {
        problems.push({ path: [...at, 'roles', j], message: unknownRole(role, roles) });
      }
    });
    if (isObj(p.slack) && typeof p.slack.team === 'string' && typeof p.slack.user === 'string') {
      const key = `${p.slack.team}/${p.slack.user}`;
      const other = seenSlack.get(key);
      if (other !== undefined) {
        problems.push({
          path: [...at, 'slack'],
          message: `Slack user ${key} is already mapped to authority.principals[${other}]`,
        });
      } else {
        seenSlack.set(key, i);
      }
    }
    if (typeof p.email === 'string') {
      const email = p.email.toLowerCase();
      const other = seenEmail.get(email);
      if (other !== undefined) {
        problems.push({
          path: [...at, 'email'],
          message: `email ${p.email} is already used by authority.principals[${other}]: one inbox could cast two votes`,
        });
      } else {
        seenEmail.set(email, i);
      }
    }
    principals.push({ id: p.id, roles: principalRoles });
  });

  /** Validates a selector's references; returns how many principals it selects. */
  const checkSelector = (selector: unknown, path: (string | number)[]): number | undefined => {
    if (!isObj(selector)) return undefined;
    strings(selector.roles).forEach((role, j) => {
      if (!roleExists(role))
        problems.push({ path: [...path, 'roles', j], message: unknownRole(role, roles) });
    });
    strings(selector.principals).forEach((id, j) => {
      if (!seenPrincipals.has(id)) {
        problems.push({
          path: [...path, 'principals', j],
          message: `unknown principal "${id}" (expected one of: ${[...seenPrincipals.keys()].join(', ') || 'none defined'})`,
        });
      }
    });
    return selectPrincipals(principals, roleLevel, {
      roles: strings(selector.roles),
      principals: strings(selector.principals),
      minLevel: typeof selector.minLevel === 'number' ? selector.minLevel : undefined,
    }).length;
  };

  const directorCount = checkSelector(authority.directors, ['authority', 'directors']);
  if (directorCount === 0) {
    problems.push({
      path: ['authority', 'directors'],
      message: 'selects no principal: nobody could start a run',
    });
  }

  const actions = isObj(raw.actions) ? raw.actions : {};
  const defaultAction = isObj(actions.default) ? actions.default : undefined;
  const checkApproval = (approval: unknown, path: (string | number)[]): void => {
    if (!isObj(approval)) return;
    const eligible = checkSelector(approval.approvers, [...path, 'approvers']);
    const quorum = typeof approval.quorum === 'number' ? approval.quorum : 1;
    if (eligible === 0) {
      problems.push({ path: [...path, 'approvers'], message: 'selects no principal: nobody could approve' });
    } else if (eligible !== undefined && eligible < quorum) {
      problems.push({
        path: [...path, 'quorum'],
        message: `expected a quorum of at most ${eligible} (the eligible approvers), got ${quorum}`,
      });
    }
    const channels = strings(approval.channels);
    if (approval.highRisk === true && channels.length > 0 && channels.every((c) => c === 'email')) {
      problems.push({
        path: [...path, 'channels'],
        message:
          'expected a channel besides email: high-risk requests cannot be approved by email alone (add slack or web)',
      });
    }
    const timeout = typeof approval.timeout === 'string' ? parseDuration(approval.timeout) : undefined;
    for (const key of ['remindAfter'] as const) {
      const value = typeof approval[key] === 'string' ? parseDuration(approval[key]) : undefined;
      if (timeout !== undefined && value !== undefined && value >= timeout) {
        problems.push({
          path: [...path, key],
          message: `expected less than the timeout (${String(approval.timeout)}), got ${String(approval[key])}`,
        });
      }
    }
    if (isObj(approval.escalate)) {
      const after =
        typeof approval.escalate.after === 'string' ? parseDuration(approval.escalate.after) : undefined;
      if (timeout !== undefined && after !== undefined && after >= timeout) {
        problems.push({
          path: [...path, 'escalate', 'after'],
          message: `expected less than the timeout (${String(approval.timeout)}), got ${String(approval.escalate.after)}`,
        });
      }
      const escalationEligible = checkSelector(approval.escalate.to, [...path, 'escalate', 'to']);
      if (escalationEligible === 0) {
        problems.push({
          path: [...path, 'escalate', 'to'],
          message: 'selects no principal: escalation would reach nobody',
        });
      }
    }
  };

  if (defaultAction) {
    if (defaultAction.tier === 'approval' && defaultAction.approval === undefined) {
      problems.push({
        path: ['actions', 'default', 'approval'],
        message: 'expected an approval block: the default tier is approval',
      });
    }
    if (defaultAction.tier === 'prohibited' && defaultAction.approval !== undefined) {
      problems.push({
        path: ['actions', 'default', 'approval'],
        message: 'unexpected approval block: the default tier is prohibited',
      });
    }
    checkApproval(defaultAction.approval, ['actions', 'default', 'approval']);
  }

  const seenRules = new Map<string, number>();
  list(actions.rules).forEach((rule, i) => {
    if (!isObj(rule)) return;
    const at = ['actions', 'rules', i];
    if (typeof rule.id === 'string') {
      const previous = seenRules.get(rule.id);
      if (previous !== undefined) {
        problems.push({
          path: [...at, 'id'],
          message: `duplicate rule id "${rule.id}" (first at actions.rules[${previous}])`,
        });
      } else {
        seenRules.set(rule.id, i);
      }
    }
    if (
      Array.isArray(rule.resources) &&
      rule.resources.length > 0 &&
      strings(rule.resources).every((r) => r.startsWith('!'))
    ) {
      problems.push({
        path: [...at, 'resources'],
        message: 'expected at least one positive pattern: exclusions alone match nothing',
      });
    }
    if (rule.tier === 'approval') {
      if (
        rule.approval === undefined &&
        !(defaultAction?.tier === 'approval' && defaultAction.approval !== undefined)
      ) {
        problems.push({
          path: [...at, 'approval'],
          message: 'expected an approval block (the default has none to inherit)',
        });
      }
    } else if (rule.approval !== undefined && typeof rule.tier === 'string') {
      problems.push({
        path: [...at, 'approval'],
        message: `unexpected approval block on ${rule.tier === 'autonomous' ? 'an' : 'a'} ${rule.tier} rule`,
      });
    }
    if (rule.limits !== undefined && (rule.tier === 'approval' || rule.tier === 'prohibited')) {
      problems.push({
        path: [...at, 'limits'],
        message: `limits apply to autonomous and preapproved rules only; a spent limit would loosen a ${rule.tier} rule`,
      });
    }
    checkApproval(rule.approval, [...at, 'approval']);
    if (isObj(rule.when)) {
      if (checkSelector(rule.when.director, [...at, 'when', 'director']) === 0) {
        problems.push({
          path: [...at, 'when', 'director'],
          message: 'selects no principal: the rule could never match',
        });
      }
      if (isObj(rule.when.args)) {
        for (const [arg, constraint] of Object.entries(rule.when.args)) {
          if (!isObj(constraint)) continue;
          const bounds = [constraint.lt, constraint.lte, constraint.gt, constraint.gte];
          const upper = Math.min(
            ...[constraint.lt, constraint.lte].filter((v): v is number => typeof v === 'number'),
          );
          const lower = Math.max(
            ...[constraint.gt, constraint.gte].filter((v): v is number => typeof v === 'number'),
          );
          if (bounds.some((b) => typeof b === 'number') && lower > upper) {
            problems.push({
              path: [...at, 'when', 'args', arg],
              message: `bounds can never hold together (lower ${lower} > upper ${upper})`,
            });
          }
        }
      }
    }
  });
  return problems;
}

function unknownRole(role: string, roles: Obj): string {
  const known = Object.keys(roles);
  return `unknown role "${role}" (expected one of: ${known.length > 0 ? known.join(', ') : 'none defined'})`;
}
