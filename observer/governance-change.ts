/**
 * The governance change manifest (§4.5): a signed statement that a policy change from one version to another
 * was approved, by whom, and what new behaviour it declares (tools, directories, hosts). The observer opens a
 * learning window only for changes whose manifest verifies against a trusted key; everything the manifest
 * does not declare keeps being compared with the old normal.
 *
 * The signature is Ed25519 over `agent-runtime/governance-change/v1\n` + the canonical JSON of the manifest,
 * so it can never be replayed as a vote (or a vote as a change). It travels as the `attrs` of a
 * `governance.change` audit event (`governanceChangeEvent`).
 * @module
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { z } from 'zod';
import { AuditKind } from '../activities/audit/types.ts';
import type { AuditEventInput } from '../activities/audit/types.ts';
import {
  AgentRuntimeError,
  canonicalJson,
  formatPath,
  keyIdOf,
  normaliseResource,
  parseDuration,
} from '../policy/index.ts';

/** Domain separation of the signed bytes. */
export const GOVERNANCE_CHANGE_DOMAIN = 'agent-runtime/governance-change/v1';

/** Longest learning window a manifest may declare. */
export const MAX_LEARNING_WINDOW_MS = 14 * 86_400_000;

/** How far `approvedAt` may lie in the future of the verifier's clock (clock skew). */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

const principal = z.string().min(1).max(128);
const version = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'expected a policy version (letters, digits, . _ : -, max 128)');
const tool = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'expected a tool name such as crm.write');
const directory = z
  .string()
  .max(4096)
  .refine((d) => d.startsWith('/') && normaliseResource(d) === d, {
    message: 'expected a normalised absolute directory such as /srv/reports (no trailing slash, . or ..)',
  })
  .refine((d) => d !== '/', { message: 'declaring / would excuse every path' });
const host = z
  .string()
  .max(256)
  .refine((h) => /^[a-z0-9.-]+(?::\d{1,5})?$/.test(h) && URL.canParse(`http://${h}`), {
    message: 'expected a lower-case host[:port] such as api.example.com',
  });
const unique = <T extends z.ZodType<string>>(item: T, max: number) =>
  z
    .array(item)
    .max(max)
    .refine((list) => new Set(list).size === list.length, { message: 'duplicate entries' });

/** The manifest. `declares` names the new behaviour the change is expected to bring (at least one entry). */
export const GovernanceChangeSchema = z
  .strictObject({
    agent: principal,
    fromVersion: version,
    toVersion: version,
    declares: z
      .strictObject({
        tools: unique(tool, 100).optional(),
        directories: unique(directory, 100).optional(),
        hosts: unique(host, 100).optional(),
      })
      .refine((d) => (d.tools?.length ?? 0) + (d.directories?.length ?? 0) + (d.hosts?.length ?? 0) > 0, {
        message: 'declare at least one tool, directory or host',
      }),
    reason: z.string().min(1).max(2000),
    approvedBy: unique(principal, 20).min(1, 'at least one approver'),
    approvedAt: z.iso.datetime({ offset: true }),
    learningWindow: z.string().refine(
      (text) => {
        const ms = parseDuration(text);
        return ms !== undefined && ms <= MAX_LEARNING_WINDOW_MS;
      },
      { message: 'expected a duration such as 72h, at most 14d' },
    ),
  })
  .refine((c) => c.fromVersion !== c.toVersion, {
    message: 'fromVersion and toVersion are the same',
    path: ['toVersion'],
  });
/** A governance change manifest. */
export type GovernanceChange = z.infer<typeof GovernanceChangeSchema>;

const SignedEnvelopeSchema = z.strictObject({
  change: z.unknown(),
  keyId: z.string().regex(/^ed25519:[0-9a-f]{16}$/),
  signature: z.string().regex(/^[0-9a-f]{128}$/),
});

/** A manifest, the id of the key that signed it, and the signature (hex). */
export interface SignedGovernanceChange {
  readonly change: GovernanceChange;
  readonly keyId: string;
  readonly signature: string;
}

/** Why a signed change was refused; stable codes for audit records and the CLI. */
export const GovernanceChangeRefusal = {
  /** Not `{ change, keyId, signature }` with a well-formed key id and signature. */
  malformed: 'GOVERNANCE_CHANGE_MALFORMED',
  /** The manifest itself fails the schema. */
  invalid: 'GOVERNANCE_CHANGE_INVALID',
  unknownKey: 'GOVERNANCE_CHANGE_UNKNOWN_KEY',
  badSignature: 'GOVERNANCE_CHANGE_BAD_SIGNATURE',
  /** `approvedAt` + `learningWindow` has passed: the change opens no window any more. */
  expired: 'GOVERNANCE_CHANGE_EXPIRED',
  /** `approvedAt` lies further in the future than the allowed clock skew. */
  notYetValid: 'GOVERNANCE_CHANGE_NOT_YET_VALID',
  /** The audit event is not a `governance.change` about the manifest's agent. */
  wrongEvent: 'GOVERNANCE_CHANGE_WRONG_EVENT',
} as const;
export type GovernanceChangeRefusal = (typeof GovernanceChangeRefusal)[keyof typeof GovernanceChangeRefusal];

/** Outcome of `verifyGovernanceChange`. */
export type GovernanceChangeCheck =
  | { readonly ok: true; readonly change: GovernanceChange; readonly keyId: string }
  | { readonly ok: false; readonly code: GovernanceChangeRefusal; readonly message: string };

/** A manifest could not be signed (it is invalid, or the key id does not match the key). */
export class GovernanceChangeError extends AgentRuntimeError {
  declare readonly code: GovernanceChangeRefusal;
  constructor(code: GovernanceChangeRefusal, message: string) {
    super(code, message);
  }
}

/** The problems of a manifest that fails the schema, as `path: message; …`. */
function problemsOf(error: z.ZodError): string {
  return error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`).join('; ');
}

/** The bytes a change signature covers. */
export function governanceChangeSigningBytes(change: GovernanceChange): Uint8Array {
  return utf8ToBytes(`${GOVERNANCE_CHANGE_DOMAIN}\n${canonicalJson(change)}`);
}

/** Validates and parses a manifest; throws `GovernanceChangeError` (`GOVERNANCE_CHANGE_INVALID`). */
export function parseGovernanceChange(value: unknown): GovernanceChange {
  const parsed = GovernanceChangeSchema.safeParse(value);
  if (!parsed.success)
    throw new GovernanceChangeError(
      GovernanceChangeRefusal.invalid,
      `invalid governance change: ${problemsOf(parsed.error)}`,
    );
  return parsed.data;
}

/** Milliseconds of the manifest's learning window. */
export function learningWindowMs(change: GovernanceChange): number {
  return parseDuration(change.learningWindow)!;
}

/** Signs a manifest with the Ed25519 secret key whose id is `keyId`; throws `GovernanceChangeError`. */
export function signGovernanceChange(
  change: GovernanceChange,
  secretKey: Uint8Array,
  keyId: string,
): SignedGovernanceChange {
  const valid = parseGovernanceChange(change);
  if (keyIdOf(ed25519.getPublicKey(secretKey)) !== keyId)
    throw new GovernanceChangeError(
      GovernanceChangeRefusal.unknownKey,
      `key id ${keyId} does not belong to the secret key`,
    );
  return {
    change: valid,
    keyId,
    signature: bytesToHex(ed25519.sign(governanceChangeSigningBytes(valid), secretKey)),
  };
}

/**
 * Checks a signed manifest's form, key and signature and, when `nowMs` is given, that its learning window has
 * not yet passed and that it was not approved in the future. Never throws.
 */
export function verifyGovernanceChange(
  signed: unknown,
  trustedKeys: ReadonlyMap<string, Uint8Array>,
  options: { readonly nowMs?: number } = {},
): GovernanceChangeCheck {
  const envelope = SignedEnvelopeSchema.safeParse(signed);
  if (!envelope.success)
    return refuse(
      GovernanceChangeRefusal.malformed,
      'expected { change, keyId: "ed25519:<16 hex>", signature: "<128 hex>" }',
    );
  const manifest = GovernanceChangeSchema.safeParse(envelope.data.change);
  if (!manifest.success)
    return refuse(
      GovernanceChangeRefusal.invalid,
      `invalid governance change: ${problemsOf(manifest.error)}`,
    );
  const change = manifest.data;
  const { keyId, signature } = envelope.data;
  const publicKey = trustedKeys.get(keyId);
  if (!publicKey) return refuse(GovernanceChangeRefusal.unknownKey, `no trusted key ${keyId}`);
  let valid: boolean;
  try {
    valid = ed25519.verify(hexToBytes(signature), governanceChangeSigningBytes(change), publicKey);
  } catch {
    valid = false;
  }
  if (!valid) return refuse(GovernanceChangeRefusal.badSignature, 'the signature does not verify');
  if (options.nowMs !== undefined) {
    const approvedAt = Date.parse(change.approvedAt);
    if (approvedAt > options.nowMs + MAX_CLOCK_SKEW_MS)
      return refuse(GovernanceChangeRefusal.notYetValid, `approved in the future (${change.approvedAt})`);
    if (approvedAt + learningWindowMs(change) <= options.nowMs)
      return refuse(
        GovernanceChangeRefusal.expired,
        `the learning window of ${change.learningWindow} from ${change.approvedAt} has passed`,
      );
  }
  return { ok: true, change, keyId };
}

function refuse(code: GovernanceChangeRefusal, message: string): GovernanceChangeCheck {
  return { ok: false, code, message };
}

/** The audit event that carries a signed change (written by the CLI; `agent` is the manifest's agent). */
export function governanceChangeEvent(signed: SignedGovernanceChange): AuditEventInput {
  return {
    source: 'cli',
    agent: signed.change.agent,
    run: null,
    step: null,
    kind: AuditKind.governanceChange,
    attrs: { change: signed.change, keyId: signed.keyId, signature: signed.signature },
    // the same signed change appended twice is one event
    id: `governance.change:${signed.signature.slice(0, 32)}`,
  };
}
