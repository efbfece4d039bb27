/**
 * HTML of the review page (shared by the email link and the web inbox) and the small pages around
 * it. No scripts anywhere; the one stylesheet is allowed by its CSP hash. Every interpolated value
 * goes through `escapeHtml`.
 * @module
 */
import { createHash } from 'node:crypto';
import type { RequestRecord, SubmitRefusal, SubmitResult } from '../core/types.ts';
import { escapeHtml, formatArgs, isoTime, quorumProgress, stateText, truncate } from '../email/format.ts';

/** Arguments longer than this are cut on the page (a limit against huge agent payloads). */
export const PAGE_ARGS_MAX_CHARS = 200_000;

const CSS = [
  'body{font-family:system-ui,sans-serif;max-width:52rem;margin:1.5rem auto;padding:0 1rem;line-height:1.45;color:#111}',
  'dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0}',
  'pre,textarea{font-family:ui-monospace,monospace;font-size:.9rem}',
  'pre{white-space:pre-wrap;word-break:break-word;background:#f4f4f4;padding:.75rem;max-height:40rem;overflow:auto}',
  'textarea{width:100%;box-sizing:border-box}',
  'blockquote{white-space:pre-wrap;border-left:4px solid #c90;margin:0;padding:.25rem .75rem;background:#fffbea}',
  '.unverified{color:#8a5a00;font-weight:600}.acting{font-size:1.1rem}.warn{color:#a00;font-weight:600}',
  'form{margin:1rem 0}button{font-size:1rem;padding:.4rem 1rem;margin-right:.5rem}',
  'header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ddd;margin-bottom:1rem}',
  'header form{margin:0}',
].join('');

/** The CSP: nothing but this page's own stylesheet and same-origin form posts. */
export const CONTENT_SECURITY_POLICY = `default-src 'none'; style-src 'sha256-${createHash('sha256')
  .update(CSS, 'utf8')
  .digest('base64')}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

/** A header for signed-in pages: who is signed in and a sign-out button. */
export interface SignedInHeader {
  readonly principal: string;
  readonly csrf: string;
}

/** A complete HTML document. */
export function page(title: string, body: string, header?: SignedInHeader): string {
  const top =
    header === undefined
      ? ''
      : `<header><p>Signed in as <strong>${escapeHtml(header.principal)}</strong> · <a href="/inbox">Inbox</a></p>` +
        `<form method="post" action="/signout"><input type="hidden" name="csrf" value="${escapeHtml(header.csrf)}">` +
        `<button type="submit">Sign out</button></form></header>`;
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    '<meta name="robots" content="noindex, nofollow">' +
    `<title>${escapeHtml(title)}</title><style>${CSS}</style></head>\n<body>${top}<main>\n${body}\n</main></body></html>\n`
  );
}

/** The one page every unusable link gets (unknown, expired, used, decided, stale): indistinguishable. */
export function neutralLinkPage(): string {
  return page(
    'Link no longer valid',
    '<h1>This link is no longer valid</h1>\n' +
      '<p>It may have expired or been used already, or the request may have been decided. Nothing was changed.</p>\n' +
      '<p>Approvers can <a href="/signin">sign in to the web inbox</a> to see what is waiting for them.</p>',
  );
}

/** The review details: action, arguments, resource, risk, rationale (unverified), requester, quorum, expiry. */
export function reviewDetails(request: RequestRecord, principal: string): string {
  const args = truncate(formatArgs(request.args), PAGE_ARGS_MAX_CHARS);
  const row = (label: string, value: string) => `<dt>${escapeHtml(label)}</dt><dd>${value}</dd>`;
  const code = (value: string) => `<code>${escapeHtml(value)}</code>`;
  const risk = request.highRisk ? '<span class="warn">High risk</span>' : 'Elevated';
  const rule = request.ruleId === null ? 'default rule' : `rule ${code(request.ruleId)}`;
  return [
    `<h1>Approval requested: ${code(request.tool)}</h1>`,
    `<p class="acting">Acting as <strong>${escapeHtml(principal)}</strong></p>`,
    '<dl>',
    row('Action', code(request.tool)),
    row('Resource', request.resource === null ? '(none)' : code(request.resource)),
    row('Risk', `${risk} — ${rule} (policy ${code(request.policyVersion)})`),
    row(
      'Agent',
      `${code(request.agentId)} (run ${code(request.runWorkflowId)}, step ${escapeHtml(String(request.step))})`,
    ),
    row('Requested by', escapeHtml(request.requester)),
    row('Approvals', escapeHtml(quorumProgress(request))),
    row(
      'Expires',
      `<time datetime="${isoTime(request.expiresAtMs)}">${isoTime(request.expiresAtMs)}</time> (denied automatically after this time)`,
    ),
    row('Request', `${code(request.id)} (revision ${escapeHtml(String(request.revision))})`),
    row('State', escapeHtml(stateText(request))),
    '</dl>',
    '<h2>Arguments</h2>',
    `<pre>${escapeHtml(args)}</pre>`,
    '<h2>Reason</h2>',
    '<p class="unverified">Stated by the agent, unverified:</p>',
    `<blockquote>${request.rationale === null ? '(none given)' : escapeHtml(request.rationale)}</blockquote>`,
  ].join('\n');
}

function hidden(name: string, value: string): string {
  return `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`;
}

const REASON_FIELD =
  '<p><label for="reason">Reason (sent to the agent and kept in the audit log)</label><br>' +
  '<textarea id="reason" name="reason" rows="3" maxlength="2000"></textarea></p>';

/** The email review page's form: posts to itself; high-risk requests get only Deny. */
export function emailReviewForm(request: RequestRecord, nonce: string): string {
  const buttons = request.highRisk
    ? '<button type="submit" name="decision" value="deny">Deny</button>'
    : '<button type="submit" name="decision" value="approve">Approve</button>' +
      '<button type="submit" name="decision" value="deny">Deny</button>';
  const highRisk = request.highRisk
    ? '<p class="warn">This is a high-risk request: email can only deny it. ' +
      'To approve, <a href="/signin">sign in to the web inbox</a> or use Slack.</p>'
    : '';
  return [
    '<h2>Your decision</h2>',
    highRisk,
    `<form method="post">${hidden('nonce', nonce)}`,
    REASON_FIELD,
    `<p>${buttons}</p></form>`,
  ].join('\n');
}

/** The web inbox forms: approve/deny, and approve with edited arguments. */
export function inboxForms(request: RequestRecord, csrf: string, nonce: string): string {
  const action = `/inbox/${encodeURIComponent(request.id)}/vote`;
  const common = hidden('csrf', csrf) + hidden('nonce', nonce) + hidden('revision', String(request.revision));
  return [
    '<h2>Your decision</h2>',
    `<form method="post" action="${escapeHtml(action)}">${common}`,
    REASON_FIELD,
    '<p><button type="submit" name="decision" value="approve">Approve</button>' +
      '<button type="submit" name="decision" value="deny">Deny</button></p></form>',
    '<h2>Approve with edits</h2>',
    `<form method="post" action="${escapeHtml(action)}">${common}${hidden('decision', 'approve')}`,
    '<p><label for="editedArgs">Edited arguments (JSON). The service re-checks them against the policy; ' +
      'an edit that needs a higher tier is refused.</label><br>' +
      `<textarea id="editedArgs" name="editedArgs" rows="12">${escapeHtml(formatArgs(request.args))}</textarea></p>`,
    '<p><label for="editReason">Reason</label><br>' +
      '<textarea id="editReason" name="reason" rows="2" maxlength="2000"></textarea></p>',
    '<p><button type="submit">Approve with edits</button></p></form>',
  ].join('\n');
}

/** Why the principal sees no buttons in the inbox (or null when it may decide now). */
export function cannotDecideReason(request: RequestRecord, principal: string): string | null {
  if (request.state !== 'pending') return `This request is ${stateText(request)}.`;
  if (principal === request.requester)
    return 'You requested this action, so another approver must decide it.';
  if (request.approvedBy.includes(principal))
    return 'You already approved this request; it needs more approvals.';
  const eligible =
    request.eligible.includes(principal) ||
    (request.escalated && request.escalationEligible.includes(principal));
  return eligible ? null : 'You are not an approver for this request.';
}

const REFUSAL_TEXT: Readonly<Record<SubmitRefusal, string>> = {
  unknown_request: 'This request no longer exists.',
  decided: 'This request has already been decided.',
  expired: 'This request has expired; expired requests are denied automatically.',
  stale_revision: 'This request was changed after you opened it. Review the new version before deciding.',
  self_approval: 'You requested this action, so you cannot approve it. Another approver must decide.',
  agent: 'An agent identity cannot decide approval requests.',
  not_authorized: 'You are not an approver for this request.',
  duplicate: 'You have already voted on this request. Your first vote is the one that counts.',
  high_risk_channel:
    'This is a high-risk request: email can only deny it. To approve it, sign in to the web inbox or use Slack.',
  invalid_edit: 'The edited arguments are not valid for this tool. Nothing was approved.',
  edit_raised_tier:
    'Your edit would need a higher approval tier than this request has. Nothing was approved; the agent must ask for that action separately.',
  edit_prohibited: 'Your edit turns this into an action the policy prohibits. Nothing was approved.',
  channel_not_allowed:
    'Approvals for this request are not accepted through this channel. Use one of the channels named in the request.',
  delivery_failed:
    'Your vote could not be delivered to the workflow. Nothing was recorded; please try again.',
};

/** The human sentence for a refusal code. */
export function refusalText(code: SubmitRefusal): string {
  return REFUSAL_TEXT[code];
}

/** The page after a decision was submitted. */
export function resultPage(
  result: SubmitResult,
  decision: 'approve' | 'deny',
  links: string,
  header?: SignedInHeader,
): string {
  if (result.ok) {
    const { request } = result;
    const sentence =
      result.effect === 'approved'
        ? 'Approved. The agent may now perform the action.'
        : result.effect === 'denied'
          ? 'Denied. The agent will not perform the action.'
          : 'Your approval was recorded. More approvals are needed before the agent may act.';
    return page(
      decision === 'deny' ? 'Denied' : 'Approval recorded',
      [
        `<h1>${escapeHtml(sentence)}</h1>`,
        `<p>Request <code>${escapeHtml(request.id)}</code> (${escapeHtml(request.tool)}): ${escapeHtml(quorumProgress(request))}; ${escapeHtml(stateText(request))}.</p>`,
        links,
      ].join('\n'),
      header,
    );
  }
  const text = refusalText(result.code);
  const detail =
    result.message !== '' && result.message !== text ? `<p>${escapeHtml(result.message)}</p>` : '';
  return page(
    'Not recorded',
    [`<h1>Not recorded</h1>`, `<p class="warn">${escapeHtml(text)}</p>`, detail, links].join('\n'),
    header,
  );
}

/** A simple message page. */
export function messagePage(
  title: string,
  sentences: readonly string[],
  links = '',
  header?: SignedInHeader,
): string {
  return page(
    title,
    [`<h1>${escapeHtml(title)}</h1>`, ...sentences.map((s) => `<p>${escapeHtml(s)}</p>`), links].join('\n'),
    header,
  );
}

/** The inbox list. */
export function inboxPage(requests: readonly RequestRecord[], header: SignedInHeader): string {
  const items = requests.map(
    (r) =>
      `<li><a href="/inbox/${escapeHtml(encodeURIComponent(r.id))}">${escapeHtml(r.tool)}</a> for ${escapeHtml(r.agentId)}` +
      ` — requested by ${escapeHtml(r.requester)} — ${escapeHtml(quorumProgress(r))}` +
      `${r.highRisk ? ' — <span class="warn">high risk</span>' : ''} — expires ${isoTime(r.expiresAtMs)}</li>`,
  );
  return page(
    'Approvals inbox',
    [
      '<h1>Waiting for your decision</h1>',
      items.length === 0 ? '<p>Nothing is waiting for you.</p>' : `<ul>\n${items.join('\n')}\n</ul>`,
    ].join('\n'),
    header,
  );
}

/** The sign-in form (asks for an email address). */
export function signInFormPage(): string {
  return page(
    'Sign in',
    [
      '<h1>Sign in to the approvals inbox</h1>',
      '<form method="post" action="/signin">',
      '<p><label for="email">Your email address</label><br>',
      '<input id="email" name="email" type="email" required maxlength="320" autocomplete="email"></p>',
      '<p><button type="submit">Send me a sign-in link</button></p></form>',
    ].join('\n'),
  );
}

/** The confirm page of a sign-in link (the GET consumes nothing; the button's POST signs in). */
export function signInConfirmPage(principal: string, nonce: string): string {
  return page(
    'Confirm sign-in',
    [
      '<h1>Sign in to the approvals inbox</h1>',
      `<p class="acting">Sign in as <strong>${escapeHtml(principal)}</strong>?</p>`,
      `<form method="post">${hidden('nonce', nonce)}<p><button type="submit">Sign in</button></p></form>`,
    ].join('\n'),
  );
}
