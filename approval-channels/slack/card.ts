/**
 * Block Kit rendering of an approval request: a pure function of the stored {@link RequestRecord}
 * (never of a Slack payload). Every piece of agent-supplied text is escaped for mrkdwn, so a tool
 * name, argument or stated reason cannot inject `<!channel>`, user mentions or disguised links.
 * Final states re-render the same card without buttons.
 * @module
 */
import type { types } from '@slack/bolt';
import type { RequestRecord } from '../core/types.ts';

/** Block Kit blocks as Slack accepts them in `chat.postMessage` / `chat.update`. */
export type SlackBlock = types.KnownBlock;

/** `action_id`s of the card's buttons. */
export const SlackActionId = {
  approve: 'approval_approve',
  deny: 'approval_deny',
  denyReason: 'approval_deny_reason',
} as const;
export type SlackActionId = (typeof SlackActionId)[keyof typeof SlackActionId];

/** Slack's limit on a section's text (and on each field). */
export const SECTION_TEXT_MAX = 3000;
/** How much of the arguments' JSON the card shows (the rest is behind "Full details"). */
export const ARGS_TEXT_MAX = 1500;
/** How much of the agent's stated reason the card shows. */
export const RATIONALE_TEXT_MAX = 1500;
const HEADER_MAX = 150;
const FIELD_MAX = 500;

/** What {@link renderCard} needs besides the request. */
export interface CardContext {
  /** Base URL of the web inbox (`https://approvals.example.com`), no trailing slash needed. */
  readonly publicBaseUrl: string;
  readonly nowMs: number;
  /**
   * Renders a principal id as mrkdwn, e.g. `<@U01>` when the principal has a Slack id. Its output
   * is inserted verbatim, so it must escape ids itself; default: the escaped id.
   */
  readonly principalNames?: (id: string) => string;
}

/** A rendered message: `text` is the notification/fallback text, `blocks` the card. */
export interface SlackCard {
  readonly text: string;
  readonly blocks: SlackBlock[];
}

/** Escapes `&`, `<` and `>` for Slack mrkdwn (the only characters Slack wants escaped). */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Escapes `text` and cuts it so the escaped form is at most `max` characters (never mid-entity). */
export function escapeTruncated(text: string, max: number, marker = '…'): string {
  const escaped = escapeMrkdwn(text);
  if (escaped.length <= max) return escaped;
  let out = '';
  for (const ch of text) {
    const piece = escapeMrkdwn(ch);
    if (out.length + piece.length + marker.length > max) break;
    out += piece;
  }
  return out + marker;
}

/** Cuts plain text to `max` characters (by code point), with an ellipsis. */
function truncatePlain(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : chars.slice(0, max - 1).join('') + '…';
}

/** `2026-01-01 00:00 UTC`: the fallback shown where Slack cannot render a date token. */
export function isoFallback(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** An absolute date in each viewer's time zone: `<!date^UNIX^{date_short_pretty} {time}|fallback>`. */
export function slackDate(ms: number): string {
  return `<!date^${Math.floor(ms / 1000)}^{date_short_pretty} {time}|${isoFallback(ms)}>`;
}

/** `block_id` of the actions block: encodes the revision the buttons decide. */
export function encodeActionsBlockId(revision: number): string {
  return `appr|${revision}`;
}

/** The revision in an actions `block_id`, or null when it is not one of ours. */
export function parseActionsBlockId(blockId: string | undefined): number | null {
  const match = /^appr\|([1-9][0-9]{0,8})$/.exec(blockId ?? '');
  return match?.[1] === undefined ? null : Number(match[1]);
}

/** The web inbox page of a request. */
export function detailsUrl(publicBaseUrl: string, requestId: string): string {
  return `${publicBaseUrl.replace(/\/+$/, '')}/inbox/${encodeURIComponent(requestId)}`;
}

const mrkdwn = (text: string): types.MrkdwnElement => ({ type: 'mrkdwn', text });
const plain = (text: string): types.PlainTextElement => ({ type: 'plain_text', text, emoji: false });

/** JSON of the arguments, escaped, with code fences inside it defused, cut to `max`. */
function argumentsText(args: unknown, max: number): { text: string; truncated: boolean } {
  let json: string;
  try {
    json = JSON.stringify(args, null, 2) ?? 'undefined';
  } catch {
    json = String(args);
  }
  // a "```" inside the JSON would close the fence; a zero-width space keeps it literal
  json = json.replace(/```/g, '`\u200b`\u200b`');
  const text = escapeTruncated(json, max, '\n… (truncated)');
  return { text, truncated: text !== escapeMrkdwn(json) };
}

function list(names: readonly string[]): string {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** The line that tells a final state (null while pending); `b` wraps the headline (bold on the card). */
function finalLine(
  request: RequestRecord,
  name: (id: string) => string,
  b: (s: string) => string,
): string | null {
  const at = request.decidedAtMs === null ? '' : ` at ${slackDate(request.decidedAtMs)}`;
  switch (request.state) {
    case 'approved':
      return `${b(`Approved by ${list(request.approvedBy.map(name)) || 'the approvers'}`)}${at}`;
    case 'denied': {
      const who = request.deniedBy === null ? 'Denied' : `Denied by ${name(request.deniedBy)}`;
      const reason =
        request.reason === null || request.reason === ''
          ? ''
          : `: ${escapeTruncated(request.reason, RATIONALE_TEXT_MAX)}`;
      return `${b(who)}${at}${reason}`;
    }
    case 'timed_out':
      return b(`Expired — denied at ${slackDate(request.decidedAtMs ?? request.expiresAtMs)}`);
    case 'cancelled':
      return b('Cancelled — the run was revoked');
    default:
      return null;
  }
}

const STATE_EMOJI: Readonly<Record<RequestRecord['state'], string>> = {
  pending: '',
  approved: ':white_check_mark: ',
  denied: ':no_entry: ',
  timed_out: ':hourglass: ',
  cancelled: ':heavy_multiplication_x: ',
};

const HEADER_PREFIX: Readonly<Record<RequestRecord['state'], string>> = {
  pending: 'Approval needed',
  approved: 'Approved',
  denied: 'Denied',
  timed_out: 'Expired',
  cancelled: 'Cancelled',
};

/**
 * Renders the approval card of `request`: buttons while it is pending (and unexpired), the final
 * state without buttons otherwise. The actions `block_id` carries the revision and each button's
 * `value` the request id; both are opaque references checked against the store on click.
 */
export function renderCard(request: RequestRecord, context: CardContext): SlackCard {
  const name = context.principalNames ?? escapeMrkdwn;
  const pending = request.state === 'pending';
  const open = pending && context.nowMs < request.expiresAtMs;
  const tool = escapeTruncated(request.tool, 200);
  const blocks: SlackBlock[] = [];

  // plain_text is never parsed for mentions or links: the raw tool name is shown literally
  blocks.push({
    type: 'header',
    text: plain(truncatePlain(`${HEADER_PREFIX[request.state]}: ${request.tool}`, HEADER_MAX)),
  });

  const rule =
    request.ruleId === null
      ? 'approval (default)'
      : `approval (rule ${escapeTruncated(request.ruleId, 200)})`;
  const fields = [
    `*Agent*\n${escapeTruncated(request.agentId, 150)} (run ${escapeTruncated(request.runWorkflowId, 200)})`,
    `*Requested by*\n${name(request.requester)}`,
    `*Tier/rule*\n${rule}${request.highRisk ? '\n:warning: high risk' : ''}`,
    `*Expires*\n${slackDate(request.expiresAtMs)}`,
  ];
  if (request.resource !== null) fields.push(`*Resource*\n${escapeTruncated(request.resource, 400)}`);
  blocks.push({ type: 'section', fields: fields.map((f) => mrkdwn(truncateField(f))) });

  const final = finalLine(request, name, (t) => `*${t}*`);
  if (final !== null)
    blocks.push({
      type: 'section',
      text: mrkdwn(`${STATE_EMOJI[request.state]}${final}`.slice(0, SECTION_TEXT_MAX)),
    });

  const reason =
    request.rationale === null || request.rationale.trim() === ''
      ? '_none given_'
      : escapeTruncated(request.rationale, RATIONALE_TEXT_MAX);
  blocks.push({ type: 'section', text: mrkdwn(`*Agent's stated reason (unverified)*\n${reason}`) });

  let link = `\n<${detailsUrl(context.publicBaseUrl, request.id)}|Full details>`;
  if (link.length > SECTION_TEXT_MAX - ARGS_TEXT_MAX - 100) link = '';
  const args = argumentsText(request.args, ARGS_TEXT_MAX);
  blocks.push({
    type: 'section',
    text: mrkdwn(`*Arguments*${args.truncated ? ' (truncated)' : ''}\n\`\`\`${args.text}\`\`\`${link}`),
  });

  const progress: string[] = [];
  if (pending && (request.quorum > 1 || request.approvedBy.length > 0)) {
    const count = `*${request.approvedBy.length} of ${request.quorum} approvals*`;
    progress.push(
      request.approvedBy.length === 0
        ? count
        : `${count} — approved by ${list(request.approvedBy.map(name))}`,
    );
  }
  if (request.escalated) {
    const to = request.escalationEligible.map(name);
    progress.push(
      `:arrow_double_up: Escalated to ${to.length === 0 ? 'the escalation approvers' : list(to)}`,
    );
  }
  if (pending && !open) progress.push(':hourglass: This request has expired.');
  if (progress.length > 0)
    blocks.push({ type: 'section', text: mrkdwn(progress.join('\n').slice(0, SECTION_TEXT_MAX)) });

  if (open) {
    blocks.push({
      type: 'actions',
      block_id: encodeActionsBlockId(request.revision),
      elements: [
        {
          type: 'button',
          action_id: SlackActionId.approve,
          style: 'primary',
          value: request.id,
          text: plain('Approve'),
          confirm: {
            title: plain(truncatePlain(`Approve ${request.tool}?`, 100)),
            text: mrkdwn(
              truncateField(
                `The agent *${escapeTruncated(request.agentId, 60)}* will run \`${escapeTruncated(request.tool, 80)}\` with the arguments shown. This cannot be undone.`,
                300,
              ),
            ),
            confirm: plain('Approve'),
            deny: plain('Cancel'),
          },
        },
        {
          type: 'button',
          action_id: SlackActionId.deny,
          style: 'danger',
          value: request.id,
          text: plain('Deny'),
        },
        {
          type: 'button',
          action_id: SlackActionId.denyReason,
          value: request.id,
          text: plain('Deny with reason…'),
        },
      ],
    });
  }

  blocks.push({
    type: 'context',
    elements: [
      mrkdwn(
        truncateField(
          `Request ${escapeTruncated(request.id, 300)} · revision ${request.revision} · policy ${escapeTruncated(request.policyVersion, 100)}. Requesters cannot approve their own requests.`,
          FIELD_MAX * 2,
        ),
      ),
    ],
  });

  const text = fallbackText(request, name, tool);
  return { text, blocks };
}

function fallbackText(request: RequestRecord, name: (id: string) => string, tool: string): string {
  const agent = escapeTruncated(request.agentId, 150);
  if (request.state === 'pending')
    return `Approval needed: ${tool} (agent ${agent}, requested by ${name(request.requester)}) — expires ${slackDate(request.expiresAtMs)}`;
  const line = finalLine(request, name, (t) => t) ?? '';
  return `${line} — ${tool} (agent ${agent})`.slice(0, SECTION_TEXT_MAX);
}

/** Cuts a mrkdwn field that was assembled from escaped parts (at a line or space, never mid-entity). */
function truncateField(text: string, max = FIELD_MAX): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max - 1);
  const amp = cut.lastIndexOf('&');
  const safe = amp > cut.length - 6 && !cut.slice(amp).includes(';') ? cut.slice(0, amp) : cut;
  return `${safe}…`;
}
