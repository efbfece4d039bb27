/**
 * Approval mail contents (plain text and HTML). An approval mail carries exactly one link, "Review
 * request", which opens a page that decides nothing until a button is pressed. URLs inside
 * agent-supplied text are defanged (`https[://]…`) so mail clients do not turn them into links.
 * @module
 */
import type { ChannelNotice, RequestRecord } from '../core/types.ts';
import {
  cleanText,
  escapeHtml,
  formatArgs,
  isoTime,
  oneLine,
  quorumProgress,
  stateText,
  truncate,
} from './format.ts';

/** Arguments longer than this are cut in mail (the review page shows them all). */
export const MAIL_ARGS_MAX_CHARS = 1500;
const MAIL_RATIONALE_MAX_CHARS = 1000;

/** A rendered mail. */
export interface MailContent {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

/** Stops mail clients from auto-linking URLs in agent-supplied text. */
export function defang(value: string): string {
  return value.replace(/:\/\//g, '[://]').replace(/\bwww\./gi, (m) => `${m.slice(0, 3)}[.]`);
}

const SUBJECT_PREFIX: Readonly<Record<'request' | 'reminder' | 'escalation', string>> = {
  request: '[Approval needed]',
  reminder: '[Reminder: approval needed]',
  escalation: '[Escalated: approval needed]',
};

function agentText(value: string, max: number): string {
  return defang(truncate(cleanText(value), max));
}

interface Field {
  readonly label: string;
  readonly value: string;
}

function fields(request: RequestRecord, principal: string): Field[] {
  return [
    { label: 'Action', value: oneLine(request.tool, 200) },
    {
      label: 'Resource',
      value: request.resource === null ? '(none)' : defang(oneLine(request.resource, 500)),
    },
    {
      label: 'Agent',
      value: `${oneLine(request.agentId, 200)} (run ${oneLine(request.runWorkflowId, 200)}, step ${request.step})`,
    },
    { label: 'Requested by', value: oneLine(request.requester, 200) },
    { label: 'Rule', value: request.ruleId === null ? '(default)' : oneLine(request.ruleId, 200) },
    { label: 'Risk', value: request.highRisk ? 'HIGH' : 'elevated' },
    { label: 'Approvals', value: quorumProgress(request) },
    { label: 'Expires', value: `${isoTime(request.expiresAtMs)} (denied automatically after this time)` },
    { label: 'Request', value: `${oneLine(request.id, 300)} (revision ${request.revision})` },
    { label: 'Sent to', value: oneLine(principal, 200) },
  ];
}

const HIGH_RISK_LINE =
  'This is a high-risk request: email can only deny it. To approve it, sign in to the web inbox or use Slack.';

/** The approval mail for one approver: one "Review request" link to `reviewUrl`. */
export function renderApprovalMail(
  kind: 'request' | 'reminder' | 'escalation',
  request: RequestRecord,
  principal: string,
  reviewUrl: string,
): MailContent {
  const subject = `${SUBJECT_PREFIX[kind]} ${oneLine(request.tool, 80)} for ${oneLine(request.agentId, 80)} — expires ${isoTime(request.expiresAtMs)}`;
  const args = agentText(formatArgs(request.args), MAIL_ARGS_MAX_CHARS);
  const rationale =
    request.rationale === null ? '(none given)' : agentText(request.rationale, MAIL_RATIONALE_MAX_CHARS);
  const intro =
    kind === 'reminder'
      ? 'Reminder: an agent is still waiting for your approval.'
      : kind === 'escalation'
        ? 'Escalated: an agent is waiting for approval and the first approvers have not decided.'
        : 'An agent asks for your approval.';
  const rows = fields(request, principal);
  const width = Math.max(...rows.map((r) => r.label.length)) + 2;
  const text = [
    intro,
    '',
    ...rows.map((r) => `${`${r.label}:`.padEnd(width)}${r.value}`),
    '',
    'Arguments:',
    args,
    '',
    'Reason stated by the agent (unverified):',
    rationale,
    '',
    ...(request.highRisk ? [HIGH_RISK_LINE, ''] : []),
    `Review request: ${reviewUrl}`,
    '',
    'The link is personal: do not forward it. It opens a review page; nothing is decided until you press a button there.',
    '',
  ].join('\n');
  const html = [
    '<!doctype html><html><body style="font-family:sans-serif;line-height:1.4">',
    `<p>${escapeHtml(intro)}</p>`,
    '<table cellpadding="4" style="border-collapse:collapse">',
    ...rows.map(
      (r) =>
        `<tr><th align="left" valign="top">${escapeHtml(r.label)}</th><td>${escapeHtml(r.value)}</td></tr>`,
    ),
    '</table>',
    '<p><strong>Arguments</strong></p>',
    `<pre style="white-space:pre-wrap;background:#f4f4f4;padding:8px">${escapeHtml(args)}</pre>`,
    '<p><strong>Reason stated by the agent (unverified)</strong></p>',
    `<blockquote style="white-space:pre-wrap">${escapeHtml(rationale)}</blockquote>`,
    ...(request.highRisk ? [`<p style="color:#a00"><strong>${escapeHtml(HIGH_RISK_LINE)}</strong></p>`] : []),
    `<p><a href="${escapeHtml(reviewUrl)}" style="font-size:1.2em">Review request</a></p>`,
    '<p style="color:#555">The link is personal: do not forward it. It opens a review page; nothing is decided until you press a button there.</p>',
    '</body></html>',
  ].join('\n');
  return { subject, text, html };
}

/** A short, link-free notice that a request was decided (`outcome`) or changed (`revised`). */
export function renderNoticeMail(kind: 'outcome' | 'revised', request: RequestRecord): MailContent {
  const what = `${oneLine(request.tool, 80)} for ${oneLine(request.agentId, 80)}`;
  const lines: string[] = [];
  let subject: string;
  if (kind === 'outcome') {
    subject = `[Approval ${request.state === 'pending' ? 'update' : 'decided'}] ${what}: ${stateText(request)}`;
    lines.push(`The approval request ${oneLine(request.id, 300)} is ${stateText(request)}.`);
    if (request.approvedBy.length > 0) lines.push(`Approved by: ${request.approvedBy.join(', ')}`);
    if (request.deniedBy !== null) lines.push(`Denied by: ${request.deniedBy}`);
    if (request.reason !== null) lines.push(`Reason: ${agentText(request.reason, 500)}`);
    lines.push('', 'Earlier review links for this request no longer work. Nothing more is needed from you.');
  } else {
    subject = `[Approval changed] ${what} (revision ${request.revision})`;
    lines.push(
      `The approval request ${oneLine(request.id, 300)} was changed (now revision ${request.revision}).`,
      '',
      'Earlier review links no longer work. If your vote is needed on the new version you will get a new mail; you can also review it in the web inbox.',
    );
  }
  const text = `${lines.join('\n')}\n`;
  const html = `<!doctype html><html><body style="font-family:sans-serif">${lines
    .map((l) => (l === '' ? '' : `<p>${escapeHtml(l)}</p>`))
    .join('\n')}</body></html>`;
  return { subject, text, html };
}

/** The magic-link mail of the web inbox. */
export function renderSignInMail(principal: string, url: string, expiresAtMs: number): MailContent {
  const lines = [
    `Someone (hopefully you) asked to sign in to the approvals inbox as ${oneLine(principal, 200)}.`,
    '',
    `Sign in: ${url}`,
    '',
    `The link works once and expires at ${isoTime(expiresAtMs)}. If you did not ask for it, ignore this mail.`,
  ];
  return {
    subject: 'Sign in to the approvals inbox',
    text: `${lines.join('\n')}\n`,
    html: [
      '<!doctype html><html><body style="font-family:sans-serif">',
      `<p>${escapeHtml(lines[0] ?? '')}</p>`,
      `<p><a href="${escapeHtml(url)}">Sign in</a></p>`,
      `<p>${escapeHtml(lines[4] ?? '')}</p>`,
      '</body></html>',
    ].join('\n'),
  };
}

/** Narrows a notice kind to the ones that carry a review link. */
export function isLinkKind(kind: ChannelNotice['kind']): kind is 'request' | 'reminder' | 'escalation' {
  return kind === 'request' || kind === 'reminder' || kind === 'escalation';
}
