/**
 * The approvals service's own copy of the governance documents. Who may approve a request, how
 * many must, whether it is high-risk and where each approver is reached (email, Slack user) come
 * from here, never from the approval workflow's notice: the notice is written in the agent's
 * domain, and a notice that named an attacker's address as "alice" must not hand them her vote.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { AgentRuntimeError, compilePolicy, parseGovernanceOrThrow } from '../../policy/index.ts';
import type { ApprovalRequirement, CompiledPolicy, LoadedGovernance } from '../../policy/index.ts';
import type { PrincipalContact } from './types.ts';

/** The governance documents an approvals service trusts, by `policyVersion`, and their principals. */
export interface TrustedGovernance {
  /** The compiled policy of a trusted version, or null when the service does not know it. */
  policy(policyVersion: string): CompiledPolicy | null;
  /**
   * The approval requirement a request decided under `ruleId` has: the rule's own when it is an
   * approval rule, else the default's (a call raised to approval by the conservative posture).
   */
  requirement(policyVersion: string, ruleId: string | null): ApprovalRequirement | null;
  byId(id: string): PrincipalContact | null;
  byEmail(email: string): PrincipalContact | null;
  bySlack(team: string, user: string): PrincipalContact | null;
  /** Every trusted version, for status output. */
  versions(): readonly { readonly agentId: string; readonly policyVersion: string }[];
}

/** Two documents give one principal id different contact data (or two ids one address). */
export class DirectoryConflictError extends AgentRuntimeError {
  constructor(message: string) {
    super('APPROVALS_DIRECTORY_CONFLICT', message);
  }
}

const lower = (email: string): string => email.trim().toLowerCase();

/**
 * Builds the directory from loaded documents. A principal id names one human across documents:
 * the same id with another email or Slack identity, or one address claimed by two ids, is an error.
 */
export function trustedGovernance(documents: readonly LoadedGovernance[]): TrustedGovernance {
  const policies = new Map<string, CompiledPolicy>();
  const contacts = new Map<string, PrincipalContact>();
  const emails = new Map<string, string>();
  const slackIds = new Map<string, string>();
  for (const loaded of documents) {
    policies.set(loaded.policyVersion, compilePolicy(loaded.document, loaded.policyVersion));
    for (const p of loaded.document.authority.principals) {
      const contact: PrincipalContact = Object.freeze({
        id: p.id,
        email: p.email === undefined ? null : lower(p.email),
        slack: p.slack === undefined ? null : Object.freeze({ team: p.slack.team, user: p.slack.user }),
      });
      const known = contacts.get(p.id);
      if (known && JSON.stringify(known) !== JSON.stringify(contact))
        throw new DirectoryConflictError(
          `principal "${p.id}" has different contact data in two governance documents (${loaded.document.identity.id})`,
        );
      contacts.set(p.id, contact);
      for (const [index, key] of [
        [emails, contact.email],
        [slackIds, contact.slack && `${contact.slack.team}/${contact.slack.user}`],
      ] as const) {
        if (key === null) continue;
        const owner = index.get(key);
        if (owner !== undefined && owner !== p.id)
          throw new DirectoryConflictError(`"${key}" belongs to both "${owner}" and "${p.id}"`);
        index.set(key, p.id);
      }
    }
  }
  const contactOf = (id: string | undefined): PrincipalContact | null =>
    id === undefined ? null : (contacts.get(id) ?? null);
  return Object.freeze({
    policy: (version: string) => policies.get(version) ?? null,
    requirement: (version: string, ruleId: string | null) => {
      const policy = policies.get(version);
      if (!policy) return null;
      const rule = ruleId === null ? undefined : policy.rules.find((r) => r.id === ruleId);
      if (rule?.tier === 'approval' && rule.approval) return rule.approval;
      return policy.defaultAction.approval;
    },
    byId: (id: string) => contactOf(id),
    byEmail: (email: string) => contactOf(emails.get(lower(email))),
    bySlack: (team: string, user: string) => contactOf(slackIds.get(`${team}/${user}`)),
    versions: () =>
      [...policies.values()].map((p) => ({ agentId: p.agentId, policyVersion: p.policyVersion })),
  });
}

/** Reads, validates and trusts the given governance files (each error names its file). */
export async function loadTrustedGovernance(files: readonly string[]): Promise<TrustedGovernance> {
  const loaded = await Promise.all(
    files.map(async (file) => parseGovernanceOrThrow(await readFile(file, 'utf8'), file)),
  );
  return trustedGovernance(loaded);
}
