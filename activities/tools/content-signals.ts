/**
 * Signals of instructions planted in tool output (prompt injection), computed by the tools worker
 * on every successful result and written to the audit trail (`execution.result` attrs `content`),
 * where the observer's rules match them. A heuristic: it flags, it does not block, and the
 * gateway's tiers do not depend on it. Patterns are linear-time (no nested quantifiers).
 * @module
 */
import { createHash } from 'node:crypto';

/** Signal names; stable strings that rules match on. */
export const ContentSignal = {
  /** "ignore all previous instructions", "disregard the above" … */
  overrideInstructions: 'override_instructions',
  /** A fake role or system block: "system:", "<|im_start|>", "### system" … */
  roleMarker: 'role_marker',
  /** An instruction addressed to the model reading the text: "you are now", "as an AI assistant you must" … */
  addressesModel: 'addresses_model',
  /** A request to send, post or upload data somewhere. */
  exfiltration: 'exfiltration',
  /** Hidden text: zero-width or bidi control characters. */
  hiddenText: 'hidden_text',
} as const;
export type ContentSignal = (typeof ContentSignal)[keyof typeof ContentSignal];

const PATTERNS: readonly (readonly [ContentSignal, RegExp])[] = [
  [
    ContentSignal.overrideInstructions,
    /\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier|your)\s+(?:instructions|rules|directions|guidelines|prompts?)\b/i,
  ],
  [
    ContentSignal.roleMarker,
    /<\|im_start\|>|<\|system\|>|^\s*#{1,3}\s*system\b|^\s*system\s*:|\[\s*system\s*\]/im,
  ],
  [
    ContentSignal.addressesModel,
    /\b(?:you are now|new instructions|as an ai(?: assistant| model)?,? you (?:must|should)|assistant,? you must)\b/i,
  ],
  [
    ContentSignal.exfiltration,
    /\b(?:send|post|upload|forward|email|exfiltrate)\b[^.\n]{0,80}\b(?:to|at)\s+(?:https?:\/\/|[\w.+-]+@[\w-]+\.)/i,
  ],
  [ContentSignal.hiddenText, /[\u200b-\u200f\u202a-\u202e\u2066-\u2069]/],
];

/** Longest text scanned, in characters (the rest is not looked at; `truncated` says so). */
export const MAX_SCANNED_CHARS = 256 * 1024;

/** What the audit trail records about one tool output. */
export interface ContentSummary {
  readonly sha256: string;
  readonly chars: number;
  readonly signals: readonly ContentSignal[];
  readonly truncated: boolean;
}

/** Summarises a tool output (any JSON value; strings inside it are scanned). */
export function summarizeContent(output: unknown): ContentSummary {
  const text = typeof output === 'string' ? output : (JSON.stringify(output) ?? '');
  const scanned = text.length > MAX_SCANNED_CHARS ? text.slice(0, MAX_SCANNED_CHARS) : text;
  const signals = PATTERNS.filter(([, pattern]) => pattern.test(scanned)).map(([signal]) => signal);
  return {
    sha256: createHash('sha256').update(text).digest('hex'),
    chars: text.length,
    signals,
    truncated: scanned.length < text.length,
  };
}
