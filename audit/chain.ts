/**
 * The hash chain and its signed checkpoints (pure: no I/O, no Node built-ins).
 *
 * Every record of a stream carries `prevHash` (the previous record's `hash`, or
 * {@link GENESIS_HASH} for seq 1) and `hash = sha256(canonicalJson(envelope without hash))`.
 * A checkpoint is an Ed25519 signature over `{stream, seq, hash, ts}` of a stream's head, so a
 * verifier holding only public keys can tell edited, deleted, inserted, reordered and truncated
 * records apart.
 * @module
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import type { AuditKind, AuditSource } from '../activities/audit/types.ts';
import type { PreparedEvent } from '../activities/audit/event.ts';
import { canonicalJson, digestOf } from '../policy/canonical.ts';
import { keyIdOf } from '../policy/votes.ts';

/** `prevHash` of a stream's first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** Domain separation: a checkpoint signature can never be replayed as a vote or anything else. */
export const CHECKPOINT_DOMAIN = 'agent-runtime/audit-checkpoint/v1';

/** The hashed envelope: everything of a record but its `hash` (and the stream it lives in). */
export interface AuditEnvelope {
  readonly seq: number;
  readonly ts: string;
  readonly source: AuditSource;
  readonly agent: string | null;
  readonly run: string | null;
  readonly step: number | null;
  readonly kind: AuditKind;
  readonly attrs: Readonly<Record<string, unknown>>;
  readonly prevHash: string;
}

/** One stored record of a stream. `stream` names the chain; it is not part of the hash. */
export interface AuditRecord extends AuditEnvelope {
  readonly stream: string;
  readonly hash: string;
}

/** The head of a stream: its last seq and hash (0 and {@link GENESIS_HASH} when empty). */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

/** The empty stream's head. */
export const EMPTY_HEAD: ChainHead = Object.freeze({ seq: 0, hash: GENESIS_HASH });

/** What a checkpoint signs. */
export interface CheckpointPayload {
  readonly stream: string;
  readonly seq: number;
  readonly hash: string;
  /** ISO-8601 UTC time of signing. */
  readonly ts: string;
}

/** A signed checkpoint. */
export interface Checkpoint extends CheckpointPayload {
  /** `ed25519:` + 16 hex digits, as {@link keyIdOf}. */
  readonly keyId: string;
  /** 128 hex digits. */
  readonly signature: string;
}

/** Signs checkpoint bytes; the private key never leaves it. */
export interface CheckpointSigner {
  readonly keyId: string;
  sign(message: Uint8Array): Uint8Array;
}

/** Why verification stopped. */
export const ChainBreak = {
  /** The record's content does not match its hash. */
  edited: 'edited',
  /** `prevHash` is not the previous record's hash: a record was deleted or inserted. */
  brokenLink: 'broken_link',
  /** The record sits before a record it follows (seq not increasing, or links to a later record). */
  reordered: 'reordered',
  /** seq skips ahead while the link holds. */
  seqGap: 'seq_gap',
  /** A checkpoint's signature is invalid or it names another hash than the record at its seq. */
  badCheckpoint: 'bad_checkpoint',
  /** The last checkpoint names a seq beyond the last record. */
  truncated: 'truncated',
} as const;
export type ChainBreak = (typeof ChainBreak)[keyof typeof ChainBreak];

/** Outcome of {@link verifyChain}. */
export type ChainVerification =
  | { readonly ok: true; readonly count: number; readonly lastSeq: number }
  | { readonly ok: false; readonly firstBroken: { readonly seq: number; readonly reason: ChainBreak } };

/** The envelope of a record (drops `hash` and `stream`). */
export function envelopeOf(record: AuditEnvelope): AuditEnvelope {
  const { seq, ts, source, agent, run, step, kind, attrs, prevHash } = record;
  return { seq, ts, source, agent, run, step, kind, attrs, prevHash };
}

/** sha256 (hex) of the canonical JSON of the envelope. */
export function recordHash(record: AuditEnvelope): string {
  return digestOf(envelopeOf(record));
}

/**
 * Chains validated events onto `head`: seq head.seq+1…, one `ts` for the batch. Returns frozen
 * records.
 */
export function chainRecords(
  stream: string,
  head: ChainHead,
  events: readonly PreparedEvent[],
  ts: string,
): AuditRecord[] {
  let { seq, hash } = head;
  return events.map((event) => {
    seq += 1;
    const envelope: AuditEnvelope = {
      seq,
      ts,
      source: event.source,
      agent: event.agent,
      run: event.run,
      step: event.step,
      kind: event.kind,
      attrs: deepFreeze(JSON.parse(event.attrsJson) as Record<string, unknown>),
      prevHash: hash,
    };
    hash = recordHash(envelope);
    return Object.freeze({ stream, ...envelope, hash });
  });
}

/** The bytes a checkpoint signature covers. */
export function checkpointSigningBytes(payload: CheckpointPayload): Uint8Array {
  const { stream, seq, hash, ts } = payload;
  return utf8ToBytes(`${CHECKPOINT_DOMAIN}\n${canonicalJson({ stream, seq, hash, ts })}`);
}

/** A signer over an Ed25519 secret key (32 bytes). */
export function ed25519Signer(secretKey: Uint8Array): CheckpointSigner {
  const keyId = keyIdOf(ed25519.getPublicKey(secretKey));
  return Object.freeze({ keyId, sign: (message: Uint8Array) => ed25519.sign(message, secretKey) });
}

/** Signs a checkpoint payload. */
export function signCheckpoint(payload: CheckpointPayload, signer: CheckpointSigner): Checkpoint {
  const { stream, seq, hash, ts } = payload;
  return Object.freeze({
    stream,
    seq,
    hash,
    ts,
    keyId: signer.keyId,
    signature: bytesToHex(signer.sign(checkpointSigningBytes(payload))),
  });
}

/** True when the checkpoint is signed by a trusted key over exactly its payload. Never throws. */
export function checkpointSignatureValid(
  checkpoint: Checkpoint,
  publicKeys: ReadonlyMap<string, Uint8Array>,
): boolean {
  const publicKey = publicKeys.get(checkpoint.keyId);
  if (publicKey === undefined || !/^[0-9a-f]{128}$/.test(checkpoint.signature)) return false;
  try {
    return ed25519.verify(hexToBytes(checkpoint.signature), checkpointSigningBytes(checkpoint), publicKey);
  } catch {
    return false;
  }
}

/**
 * Verifies one stream's records (in stored order) against its checkpoints. Per record, in order:
 * seq going backwards → `reordered`; `prevHash` ≠ previous hash → `reordered` when it names a
 * later record's hash, else `broken_link`; seq skipping ahead with the link intact → `seq_gap`;
 * content ≠ hash → `edited`; a checkpoint at this seq that is unsigned, from another stream or
 * names another hash → `bad_checkpoint`. Then checkpoints beyond the last record: a bad one →
 * `bad_checkpoint`, else `truncated` at the first missing seq. Never throws.
 */
export function verifyChain(
  records: readonly AuditRecord[],
  checkpoints: readonly Checkpoint[],
  publicKeys: ReadonlyMap<string, Uint8Array>,
): ChainVerification {
  const broken = (seq: number, reason: ChainBreak): ChainVerification => ({
    ok: false,
    firstBroken: { seq, reason },
  });
  const stream = records[0]?.stream ?? checkpoints[0]?.stream;
  const badAt = new Map<number, boolean>();
  const sorted = [...checkpoints].sort((a, b) => a.seq - b.seq);
  for (const c of sorted) {
    const valid = c.stream === stream && checkpointSignatureValid(c, publicKeys);
    badAt.set(c.seq, (badAt.get(c.seq) ?? false) || !valid);
  }
  const misplaced = sorted.find((c) => !Number.isSafeInteger(c.seq) || c.seq < 1);
  if (misplaced !== undefined) return broken(misplaced.seq, ChainBreak.badCheckpoint);
  const byHash = new Map<string, number>();
  records.forEach((r, i) => byHash.set(r.hash, i));

  let head: ChainHead = EMPTY_HEAD;
  for (const [index, record] of records.entries()) {
    const expected = head.seq + 1;
    if (!Number.isSafeInteger(record.seq) || record.seq < expected) {
      return broken(record.seq, ChainBreak.reordered);
    }
    if (record.prevHash !== head.hash) {
      const linked = byHash.get(record.prevHash);
      return broken(
        record.seq,
        linked !== undefined && linked > index ? ChainBreak.reordered : ChainBreak.brokenLink,
      );
    }
    if (record.seq !== expected) return broken(record.seq, ChainBreak.seqGap);
    let hash: string;
    try {
      hash = recordHash(record);
    } catch {
      hash = '';
    }
    if (hash !== record.hash) return broken(record.seq, ChainBreak.edited);
    if (record.stream !== stream) return broken(record.seq, ChainBreak.edited);
    for (const c of sorted) {
      if (c.seq === record.seq && (badAt.get(c.seq) === true || c.hash !== record.hash)) {
        return broken(record.seq, ChainBreak.badCheckpoint);
      }
    }
    head = record;
  }
  const beyond = sorted.filter((c) => c.seq > head.seq);
  const bad = beyond.find((c) => badAt.get(c.seq) === true);
  if (bad !== undefined) return broken(bad.seq, ChainBreak.badCheckpoint);
  if (beyond.length > 0) return broken(head.seq + 1, ChainBreak.truncated);
  return { ok: true, count: records.length, lastSeq: head.seq };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of Object.values(value)) deepFreeze(item);
  }
  return value;
}
