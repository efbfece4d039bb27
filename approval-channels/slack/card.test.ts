import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../core/types.ts';
import {
  ARGS_TEXT_MAX,
  escapeMrkdwn,
  escapeTruncated,
  parseActionsBlockId,
  renderCard,
  SECTION_TEXT_MAX,
  slackDate,
} from './card.ts';
import type { CardContext, SlackCard } from './card.ts';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const SLACK: Readonly<Record<string, string>> = {
  alice: 'UALICE',
  bob: 'UBOB',
  rita: 'URITA',
  erin: 'UERIN',
};
const context: CardContext = {
  publicBaseUrl: 'https://approvals.example.com',
  nowMs: T0,
  principalNames: (id) => (SLACK[id] === undefined ? escapeMrkdwn(id) : `<@${SLACK[id]}>`),
};

function request(overrides: Partial<RequestRecord> = {}): RequestRecord {
  return {
    id: 'run-1/approval/3',
    revision: 1,
    runWorkflowId: 'run-1',
    agentId: 'build-bot',
    requester: 'rita',
    step: 3,
    tool: 'deploy_service',
    args: { service: 'api', version: '1.4.0' },
    resource: 'service:api',
    rationale: 'Release 1.4 fixes the login bug.',
    ruleId: 'prod-deploys',
    policyVersion: 'sha256:abc',
    actionDigest: 'd1',
    eligible: ['alice', 'bob'],
    escalationEligible: ['erin'],
    escalated: false,
    quorum: 1,
    highRisk: false,
    channels: [],
    createdAtMs: T0 - 60_000,
    expiresAtMs: T0 + 3_600_000,
    state: 'pending',
    approvedBy: [],
    deniedBy: null,
    reason: null,
    decidedAtMs: null,
    slackMessages: [],
    ...overrides,
  };
}

/** Every mrkdwn text in the card (and the fallback text), flattened. */
function texts(card: SlackCard, type = 'mrkdwn'): string[] {
  const out: string[] = [card.text];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (o['type'] === type && typeof o['text'] === 'string') out.push(o['text']);
      Object.values(o).forEach(walk);
    }
  };
  walk(card.blocks);
  return out;
}

/** The lines of a card that are not fixed layout: what a reviewer reads. */
const sectionTexts = (card: SlackCard): string[] =>
  card.blocks.flatMap((b) =>
    b.type === 'section'
      ? [...(b.text ? [b.text.text] : []), ...(b.fields ?? []).map((f) => f.text)]
      : b.type === 'header'
        ? [`# ${b.text.text}`]
        : b.type === 'actions'
          ? [`[actions ${b.block_id}]`]
          : [],
  );

describe('renderCard', () => {
  it('a pending card', () => {
    expect(renderCard(request(), context)).toMatchInlineSnapshot(`
      {
        "blocks": [
          {
            "text": {
              "emoji": false,
              "text": "Approval needed: deploy_service",
              "type": "plain_text",
            },
            "type": "header",
          },
          {
            "fields": [
              {
                "text": "*Agent*
      build-bot (run run-1)",
                "type": "mrkdwn",
              },
              {
                "text": "*Requested by*
      <@URITA>",
                "type": "mrkdwn",
              },
              {
                "text": "*Tier/rule*
      approval (rule prod-deploys)",
                "type": "mrkdwn",
              },
              {
                "text": "*Expires*
      <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
                "type": "mrkdwn",
              },
              {
                "text": "*Resource*
      service:api",
                "type": "mrkdwn",
              },
            ],
            "type": "section",
          },
          {
            "text": {
              "text": "*Agent's stated reason (unverified)*
      Release 1.4 fixes the login bug.",
              "type": "mrkdwn",
            },
            "type": "section",
          },
          {
            "text": {
              "text": "*Arguments*
      \`\`\`{
        "service": "api",
        "version": "1.4.0"
      }\`\`\`
      <https://approvals.example.com/inbox/run-1%2Fapproval%2F3|Full details>",
              "type": "mrkdwn",
            },
            "type": "section",
          },
          {
            "block_id": "appr|1",
            "elements": [
              {
                "action_id": "approval_approve",
                "confirm": {
                  "confirm": {
                    "emoji": false,
                    "text": "Approve",
                    "type": "plain_text",
                  },
                  "deny": {
                    "emoji": false,
                    "text": "Cancel",
                    "type": "plain_text",
                  },
                  "text": {
                    "text": "The agent *build-bot* will run \`deploy_service\` with the arguments shown. This cannot be undone.",
                    "type": "mrkdwn",
                  },
                  "title": {
                    "emoji": false,
                    "text": "Approve deploy_service?",
                    "type": "plain_text",
                  },
                },
                "style": "primary",
                "text": {
                  "emoji": false,
                  "text": "Approve",
                  "type": "plain_text",
                },
                "type": "button",
                "value": "run-1/approval/3",
              },
              {
                "action_id": "approval_deny",
                "style": "danger",
                "text": {
                  "emoji": false,
                  "text": "Deny",
                  "type": "plain_text",
                },
                "type": "button",
                "value": "run-1/approval/3",
              },
              {
                "action_id": "approval_deny_reason",
                "text": {
                  "emoji": false,
                  "text": "Deny with reason…",
                  "type": "plain_text",
                },
                "type": "button",
                "value": "run-1/approval/3",
              },
            ],
            "type": "actions",
          },
          {
            "elements": [
              {
                "text": "Request run-1/approval/3 · revision 1 · policy sha256:abc. Requesters cannot approve their own requests.",
                "type": "mrkdwn",
              },
            ],
            "type": "context",
          },
        ],
        "text": "Approval needed: deploy_service (agent build-bot, requested by <@URITA>) — expires <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
      }
    `);
  });

  it('a quorum-2 card after one approval', () => {
    const card = renderCard(request({ quorum: 2, approvedBy: ['alice'], revision: 2 }), context);
    expect(sectionTexts(card)).toMatchInlineSnapshot(`
      [
        "# Approval needed: deploy_service",
        "*Agent*
      build-bot (run run-1)",
        "*Requested by*
      <@URITA>",
        "*Tier/rule*
      approval (rule prod-deploys)",
        "*Expires*
      <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
        "*Resource*
      service:api",
        "*Agent's stated reason (unverified)*
      Release 1.4 fixes the login bug.",
        "*Arguments*
      \`\`\`{
        "service": "api",
        "version": "1.4.0"
      }\`\`\`
      <https://approvals.example.com/inbox/run-1%2Fapproval%2F3|Full details>",
        "*1 of 2 approvals* — approved by <@UALICE>",
        "[actions appr|2]",
      ]
    `);
  });

  it('approved', () => {
    const card = renderCard(
      request({ state: 'approved', quorum: 2, approvedBy: ['alice', 'bob'], decidedAtMs: T0 + 60_000 }),
      context,
    );
    expect(card.blocks.some((b) => b.type === 'actions')).toBe(false);
    expect({ text: card.text, sections: sectionTexts(card) }).toMatchInlineSnapshot(`
      {
        "sections": [
          "# Approved: deploy_service",
          "*Agent*
      build-bot (run run-1)",
          "*Requested by*
      <@URITA>",
          "*Tier/rule*
      approval (rule prod-deploys)",
          "*Expires*
      <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
          "*Resource*
      service:api",
          ":white_check_mark: *Approved by <@UALICE> and <@UBOB>* at <!date^1767268860^{date_short_pretty} {time}|2026-01-01 12:01 UTC>",
          "*Agent's stated reason (unverified)*
      Release 1.4 fixes the login bug.",
          "*Arguments*
      \`\`\`{
        "service": "api",
        "version": "1.4.0"
      }\`\`\`
      <https://approvals.example.com/inbox/run-1%2Fapproval%2F3|Full details>",
        ],
        "text": "Approved by <@UALICE> and <@UBOB> at <!date^1767268860^{date_short_pretty} {time}|2026-01-01 12:01 UTC> — deploy_service (agent build-bot)",
      }
    `);
  });

  it('denied with a reason (escaped)', () => {
    const card = renderCard(
      request({ state: 'denied', deniedBy: 'bob', reason: 'not now <!here>', decidedAtMs: T0 + 60_000 }),
      context,
    );
    expect(card.blocks.some((b) => b.type === 'actions')).toBe(false);
    expect({ text: card.text, sections: sectionTexts(card) }).toMatchInlineSnapshot(`
      {
        "sections": [
          "# Denied: deploy_service",
          "*Agent*
      build-bot (run run-1)",
          "*Requested by*
      <@URITA>",
          "*Tier/rule*
      approval (rule prod-deploys)",
          "*Expires*
      <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
          "*Resource*
      service:api",
          ":no_entry: *Denied by <@UBOB>* at <!date^1767268860^{date_short_pretty} {time}|2026-01-01 12:01 UTC>: not now &lt;!here&gt;",
          "*Agent's stated reason (unverified)*
      Release 1.4 fixes the login bug.",
          "*Arguments*
      \`\`\`{
        "service": "api",
        "version": "1.4.0"
      }\`\`\`
      <https://approvals.example.com/inbox/run-1%2Fapproval%2F3|Full details>",
        ],
        "text": "Denied by <@UBOB> at <!date^1767268860^{date_short_pretty} {time}|2026-01-01 12:01 UTC>: not now &lt;!here&gt; — deploy_service (agent build-bot)",
      }
    `);
  });

  it('expired', () => {
    const card = renderCard(request({ state: 'timed_out', decidedAtMs: T0 + 3_600_000 }), context);
    expect(card.blocks.some((b) => b.type === 'actions')).toBe(false);
    expect({ text: card.text, sections: sectionTexts(card) }).toMatchInlineSnapshot(`
      {
        "sections": [
          "# Expired: deploy_service",
          "*Agent*
      build-bot (run run-1)",
          "*Requested by*
      <@URITA>",
          "*Tier/rule*
      approval (rule prod-deploys)",
          "*Expires*
      <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
          "*Resource*
      service:api",
          ":hourglass: *Expired — denied at <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>*",
          "*Agent's stated reason (unverified)*
      Release 1.4 fixes the login bug.",
          "*Arguments*
      \`\`\`{
        "service": "api",
        "version": "1.4.0"
      }\`\`\`
      <https://approvals.example.com/inbox/run-1%2Fapproval%2F3|Full details>",
        ],
        "text": "Expired — denied at <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC> — deploy_service (agent build-bot)",
      }
    `);
  });

  it('cancelled', () => {
    const card = renderCard(request({ state: 'cancelled', decidedAtMs: T0 }), context);
    expect(card.blocks.some((b) => b.type === 'actions')).toBe(false);
    expect({ text: card.text, sections: sectionTexts(card) }).toMatchInlineSnapshot(`
      {
        "sections": [
          "# Cancelled: deploy_service",
          "*Agent*
      build-bot (run run-1)",
          "*Requested by*
      <@URITA>",
          "*Tier/rule*
      approval (rule prod-deploys)",
          "*Expires*
      <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
          "*Resource*
      service:api",
          ":heavy_multiplication_x: *Cancelled — the run was revoked*",
          "*Agent's stated reason (unverified)*
      Release 1.4 fixes the login bug.",
          "*Arguments*
      \`\`\`{
        "service": "api",
        "version": "1.4.0"
      }\`\`\`
      <https://approvals.example.com/inbox/run-1%2Fapproval%2F3|Full details>",
        ],
        "text": "Cancelled — the run was revoked — deploy_service (agent build-bot)",
      }
    `);
  });

  it('escalated (pending) shows the escalation line and keeps the buttons', () => {
    const card = renderCard(request({ escalated: true }), context);
    expect(sectionTexts(card)).toContain(':arrow_double_up: Escalated to <@UERIN>');
    expect(card.blocks.some((b) => b.type === 'actions')).toBe(true);
  });

  it('a pending card past its expiry shows no buttons', () => {
    const card = renderCard(request(), { ...context, nowMs: T0 + 3_600_000 });
    expect(card.blocks.some((b) => b.type === 'actions')).toBe(false);
    expect(sectionTexts(card)).toContain(':hourglass: This request has expired.');
  });

  it('the default rule and a high-risk request', () => {
    const card = renderCard(request({ ruleId: null, highRisk: true }), context);
    expect(sectionTexts(card)).toContain('*Tier/rule*\napproval (default)\n:warning: high risk');
  });

  it('without principalNames, principal ids are escaped', () => {
    const card = renderCard(request({ requester: '<!channel>' }), { publicBaseUrl: 'https://x', nowMs: T0 });
    expect(sectionTexts(card)).toContain('*Requested by*\n&lt;!channel&gt;');
  });
});

describe('escaping agent-supplied text', () => {
  const hostile = request({
    id: 'run-<!channel>/approval/1',
    tool: 'send<!channel>',
    agentId: 'bot <@U999>',
    runWorkflowId: 'run <!everyone>',
    args: { to: '<@U0ADMIN>', link: '<https://evil.example|Approve>', amp: 'a & b' },
    resource: '<!subteam^S1>',
    rationale: 'Click <https://evil.example|Approve> now <!channel>',
    ruleId: '<!here>',
  });
  const card = renderCard(hostile, context);

  it('no injected mention, broadcast or link survives in mrkdwn', () => {
    const all = texts(card).join('\n');
    for (const needle of [
      '<!channel>',
      '<!here>',
      '<!everyone>',
      '<@U999>',
      '<@U0ADMIN>',
      '<https://evil',
      '<!subteam',
    ])
      expect(all.includes(needle), needle).toBe(false);
    expect(all).toContain('&lt;https://evil.example|Approve&gt;');
    expect(all).toContain('a &amp; b');
  });

  it('the only links and mentions left are ours', () => {
    const mrkdwn = texts(card).slice(1).join('\n') + card.text;
    const tokens = mrkdwn.match(/<[^>]*>/g) ?? [];
    expect(new Set(tokens.map((t) => t.replace(/\^\d+\^/, '^N^')))).toEqual(
      new Set([
        '<@URITA>',
        '<!date^N^{date_short_pretty} {time}|2026-01-01 13:00 UTC>',
        '<https://approvals.example.com/inbox/run-%3C!channel%3E%2Fapproval%2F1|Full details>',
      ]),
    );
  });

  it('the hostile card, pinned', () => {
    expect(sectionTexts(card)).toMatchInlineSnapshot(`
      [
        "# Approval needed: send<!channel>",
        "*Agent*
      bot &lt;@U999&gt; (run run &lt;!everyone&gt;)",
        "*Requested by*
      <@URITA>",
        "*Tier/rule*
      approval (rule &lt;!here&gt;)",
        "*Expires*
      <!date^1767272400^{date_short_pretty} {time}|2026-01-01 13:00 UTC>",
        "*Resource*
      &lt;!subteam^S1&gt;",
        "*Agent's stated reason (unverified)*
      Click &lt;https://evil.example|Approve&gt; now &lt;!channel&gt;",
        "*Arguments*
      \`\`\`{
        "to": "&lt;@U0ADMIN&gt;",
        "link": "&lt;https://evil.example|Approve&gt;",
        "amp": "a &amp; b"
      }\`\`\`
      <https://approvals.example.com/inbox/run-%3C!channel%3E%2Fapproval%2F1|Full details>",
        "[actions appr|1]",
      ]
    `);
  });

  it('agent text appears raw only in plain_text (never parsed for mentions or links)', () => {
    const plain = texts(card, 'plain_text').slice(1);
    expect(plain.filter((t) => t.includes('<'))).toEqual([
      'Approval needed: send<!channel>',
      'Approve send<!channel>?',
    ]);
  });

  it('the header is plain_text', () => {
    expect(card.blocks[0]).toEqual({
      type: 'header',
      text: { type: 'plain_text', text: 'Approval needed: send<!channel>', emoji: false },
    });
  });

  it('a code fence inside the arguments cannot close ours', () => {
    const c = renderCard(request({ args: { x: '``` *bold* ```' } }), context);
    const args = sectionTexts(c).find((t) => t.startsWith('*Arguments*')) ?? '';
    expect(args.match(/```/g)).toHaveLength(2);
  });
});

describe('truncation', () => {
  it('long arguments are cut (escaped length bounded) and link to the full details', () => {
    const card = renderCard(request({ args: { blob: '<&>'.repeat(5000) } }), context);
    const args = sectionTexts(card).find((t) => t.startsWith('*Arguments*')) ?? '';
    expect(args.startsWith('*Arguments* (truncated)\n```')).toBe(true);
    expect(args.length).toBeLessThanOrEqual(SECTION_TEXT_MAX);
    expect(args).toContain('… (truncated)```');
    expect(args.endsWith('<https://approvals.example.com/inbox/run-1%2Fapproval%2F3|Full details>')).toBe(
      true,
    );
    // no entity cut in half
    expect(args).not.toMatch(/&(?!amp;|lt;|gt;)/);
  });

  it('every section and field stays within Slack limits', () => {
    const long = 'x'.repeat(10_000);
    const card = renderCard(
      request({ tool: long, agentId: long, rationale: long, resource: long, ruleId: long, args: long }),
      context,
    );
    for (const b of card.blocks) {
      if (b.type === 'section') {
        if (b.text) expect(b.text.text.length).toBeLessThanOrEqual(SECTION_TEXT_MAX);
        for (const f of b.fields ?? []) expect(f.text.length).toBeLessThanOrEqual(2000);
      }
      if (b.type === 'header') expect(b.text.text.length).toBeLessThanOrEqual(150);
      if (b.type === 'actions')
        for (const e of b.elements)
          if (e.type === 'button' && e.confirm) {
            expect(e.confirm.title?.text.length).toBeLessThanOrEqual(100);
            expect(e.confirm.text?.text.length).toBeLessThanOrEqual(300);
          }
    }
    expect(card.text.length).toBeLessThanOrEqual(SECTION_TEXT_MAX);
  });

  it('escapeTruncated never exceeds its budget', () => {
    expect(escapeTruncated('<<<<<', 9, '…')).toBe('&lt;&lt;…');
    expect(escapeTruncated('abc', 3)).toBe('abc');
    expect(ARGS_TEXT_MAX).toBe(1500);
  });
});

describe('helpers', () => {
  it('slackDate is absolute with an ISO fallback', () => {
    expect(slackDate(T0)).toBe('<!date^1767268800^{date_short_pretty} {time}|2026-01-01 12:00 UTC>');
  });

  it('parseActionsBlockId accepts only our block ids', () => {
    expect(parseActionsBlockId('appr|3')).toBe(3);
    for (const bad of ['appr|0', 'appr|', 'appr|1|2', 'x|1', 'appr|-1', 'appr|1e3', undefined])
      expect(parseActionsBlockId(bad)).toBeNull();
  });
});
