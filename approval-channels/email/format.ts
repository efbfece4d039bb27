/**
 * Text helpers shared by the approval email and the web review page. Everything an agent supplies
 * (arguments, resource, rationale) passes through {@link cleanText} and, in HTML, {@link escapeHtml}.
 * @module
 */
import type { RequestRecord } from '../core/types.ts';

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes `& < > " '` for HTML text and attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

// eslint-disable-next-line no-control-regex
const UNSAFE_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Removes control characters (except tab and newline) and bidirectional overrides, which could
 * disguise what a human reads.
 */
export function cleanText(value: string): string {
  return value.replace(/\r\n?/g, '\n').replace(UNSAFE_CHARS, '');
}

/** One line: control characters and newlines removed, cut to `max` characters. */
export function oneLine(value: string, max: number): string {
  return truncate(cleanText(value).replace(/\s+/g, ' ').trim(), max);
}

/** Cuts `value` to `max` characters, marking the cut with an ellipsis. */
export function truncate(value: string, max: number): string {
  return value.length <= max ? value : `${value.slice(0, Math.max(0, max - 1))}…`;
}

/** Pretty JSON of tool arguments (never throws). */
export function formatArgs(args: unknown): string {
  try {
    return cleanText(JSON.stringify(args, null, 2) ?? 'undefined');
  } catch {
    return '(arguments cannot be shown)';
  }
}

/** An absolute UTC time, e.g. `2030-01-01T10:30:00.000Z`. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** `1 of 2 approvals (approved by alice)`. */
export function quorumProgress(request: RequestRecord): string {
  const by = request.approvedBy.length > 0 ? ` (approved by ${request.approvedBy.join(', ')})` : '';
  return `${request.approvedBy.length} of ${request.quorum} approval${request.quorum === 1 ? '' : 's'}${by}`;
}

/** Human wording of a request state. */
export function stateText(request: RequestRecord): string {
  switch (request.state) {
    case 'pending':
      return 'pending';
    case 'approved':
      return 'approved';
    case 'denied':
      return 'denied';
    case 'timed_out':
      return 'timed out (denied automatically)';
    case 'cancelled':
      return 'cancelled';
  }
}
