/**
 * Built-in observer rules, as YAML (the same format operators write), each with positive and negative
 * fixtures that CI runs (`rules.test.ts`).
 * @module
 */
import { parseRules } from './schema.ts';
import type { Rule } from './schema.ts';

/** The built-in rule document. */
export const BUILTIN_RULES_YAML = String.raw`
# (a) the seed's example: a burst of reads in a directory this agent never touched before
- id: fs-read-burst-new-directory
  description: At least 15 fs.read executions within 5 minutes in a directory the agent never accessed before.
  severity: high
  mode: enforce
  match:
    and:
      - { field: kind, eq: execution.started }
      - { field: attrs.tool, eq: fs.read }
  correlate: { type: first_seen, groupBy: [agent], field: attrs.resource, transform: dirname, threshold: 15, window: 5m }
  intervene: { action: freeze, tools: [fs.read], ttl: 30m }
  fixtures:
    positive:
      - { kind: execution.started, after: 10s, repeat: 15, attrs: { tool: fs.read, resource: '/srv/hr/payroll/{{i}}.csv' } }
    negative:
      # the directory was known before the burst
      - { kind: execution.started, attrs: { tool: fs.read, resource: /srv/docs/index.md } }
      - { kind: execution.started, after: 6m, repeat: 15, attrs: { tool: fs.read, resource: '/srv/docs/{{i}}.md' } }
      # a burst in a new directory, but only 14 reads
      - { kind: execution.started, repeat: 14, attrs: { tool: fs.read, resource: '/srv/new/{{i}}.md' } }

# (b) stated intent vs executed action
- id: intent-action-mismatch
  description: The model proposed one set of tools, and the run then decided on a tool it did not propose.
  severity: high
  mode: shadow
  match: { field: kind, in: [model.call, decision] }
  correlate:
    type: sequence
    groupBy: [run]
    window: 10m
    steps:
      - match: { field: kind, eq: model.call }
        capture: { as: proposed, field: attrs.proposed.tool }
      - match: { field: kind, eq: decision }
        relation: { field: attrs.tool, op: notIn, capture: proposed }
  intervene: { action: alert }
  fixtures:
    positive:
      - { kind: model.call, attrs: { proposed: [{ tool: crm.lookup, rationale: look up the customer }] } }
      - { kind: decision, step: 1, attrs: { tool: billing.refund, tier: preapproved } }
    negative:
      - kind: model.call
        attrs: { proposed: [{ tool: crm.lookup, rationale: look up }, { tool: ticket.reply, rationale: answer }] }
      - { kind: decision, step: 1, attrs: { tool: crm.lookup, tier: autonomous } }
      - { kind: decision, step: 2, attrs: { tool: ticket.reply, tier: preapproved } }

# (c) probing: a burst of denials
- id: denial-burst
  description: At least 5 prohibited decisions within 2 minutes in one run.
  severity: high
  mode: shadow
  match:
    and:
      - { field: kind, eq: decision }
      - { field: attrs.tier, eq: prohibited }
  correlate: { type: count, groupBy: [run], window: 2m, threshold: 5 }
  intervene: { action: conservative, ttl: 1h }
  fixtures:
    positive:
      - { kind: decision, after: 10s, repeat: 5, attrs: { tool: fs.write, tier: prohibited } }
    negative:
      - { kind: decision, after: 40s, repeat: 5, attrs: { tool: fs.write, tier: prohibited } }
      - { kind: decision, repeat: 5, attrs: { tool: fs.write, tier: autonomous } }

# (c) argument walking: amounts just under the small-refund limit (5000 cents, examples/support-finance)
- id: refund-walking-under-limit
  description: At least 3 billing.refund amounts within 5% under the 5000-cent small-refund limit within an hour.
  severity: medium
  mode: shadow
  match:
    and:
      - { field: kind, eq: decision }
      - { field: attrs.tool, eq: billing.refund }
      - { field: attrs.args.amountCents, gte: 4750 }
      - { field: attrs.args.amountCents, lte: 5000 }
  correlate: { type: count, groupBy: [agent], window: 1h, threshold: 3 }
  intervene: { action: alert }
  fixtures:
    positive:
      - { kind: decision, after: 5m, attrs: { tool: billing.refund, args: { amountCents: 4990 } } }
      - { kind: decision, after: 5m, attrs: { tool: billing.refund, args: { amountCents: 4900 } } }
      - { kind: decision, after: 5m, attrs: { tool: billing.refund, args: { amountCents: 4800 } } }
    negative:
      - { kind: decision, attrs: { tool: billing.refund, args: { amountCents: 4990 } } }
      - { kind: decision, attrs: { tool: billing.refund, args: { amountCents: 1200 } } }
      - { kind: decision, attrs: { tool: billing.refund, args: { amountCents: 5100 } } }
      - { kind: decision, attrs: { tool: crm.lookup, args: { amountCents: 4900 } } }

# (c) argument walking: a refund split into pre-approved pieces that together pass the limit
- id: refund-split-over-limit
  description: Pre-approved billing.refund amounts for one agent summing above the 5000-cent limit within an hour.
  severity: medium
  mode: shadow
  match:
    and:
      - { field: kind, eq: decision }
      - { field: attrs.tool, eq: billing.refund }
      - { field: attrs.tier, eq: preapproved }
  correlate: { type: sum, groupBy: [agent], window: 1h, field: attrs.args.amountCents, threshold: 5001, minCount: 2 }
  intervene: { action: alert }
  fixtures:
    positive:
      - { kind: decision, attrs: { tool: billing.refund, tier: preapproved, args: { amountCents: 3000 } } }
      - { kind: decision, after: 10m, attrs: { tool: billing.refund, tier: preapproved, args: { amountCents: 2500 } } }
    negative:
      - { kind: decision, attrs: { tool: billing.refund, tier: preapproved, args: { amountCents: 3000 } } }
      - { kind: decision, attrs: { tool: billing.refund, tier: approval, args: { amountCents: 20000 } } }
      - { kind: decision, after: 61m, attrs: { tool: billing.refund, tier: preapproved, args: { amountCents: 2500 } } }

# (d) untrusted content then egress
- id: untrusted-output-then-egress
  description: An http.request result (untrusted content) followed by an egress call in the same run within 10 minutes.
  severity: high
  mode: shadow
  match: { field: kind, in: [execution.result, decision] }
  correlate:
    type: sequence
    groupBy: [run]
    window: 10m
    steps:
      - match:
          and:
            - { field: kind, eq: execution.result }
            - { field: attrs.tool, eq: http.request }
            - { field: attrs.ok, eq: true }
      - match:
          and:
            - { field: kind, eq: decision }
            - { field: attrs.tier, ne: prohibited }
            - or:
                - and:
                    - { field: attrs.tool, eq: http.request }
                    - { field: attrs.args.method, in: [POST, PUT, PATCH, post, put, patch] }
                - { field: attrs.tool, matches: '^(?:email|mail|smtp|gmail)\.send' }
  intervene: { action: conservative, ttl: 1h }
  fixtures:
    positive:
      - { kind: execution.result, step: 1, attrs: { tool: http.request, ok: true } }
      - { kind: decision, step: 2, after: 2m, attrs: { tool: email.send, tier: preapproved } }
    negative:
      - { kind: execution.result, step: 1, attrs: { tool: http.request, ok: true } }
      - { kind: decision, step: 2, attrs: { tool: http.request, tier: autonomous, args: { method: GET } } }
      - { kind: decision, step: 3, after: 11m, attrs: { tool: email.send, tier: preapproved } }
      - { kind: decision, step: 4, run: run-2, attrs: { tool: http.request, tier: preapproved, args: { method: POST } } }

# (d) planted instructions in tool output: the run goes conservative before it can act on them
- id: injected-instructions-in-tool-output
  description: A tool result whose content carries prompt-injection signals (override instructions, fake role markers, exfiltration requests).
  severity: high
  mode: enforce
  match:
    and:
      - { field: kind, eq: execution.result }
      - { field: attrs.ok, eq: true }
      - { field: attrs.content.signals.0, exists: true }
  intervene: { action: conservative, ttl: 1h }
  fixtures:
    positive:
      - { kind: execution.result, step: 1, attrs: { tool: http.request, ok: true, content: { sha256: ab, chars: 900, signals: [override_instructions, exfiltration] } } }
    negative:
      - { kind: execution.result, step: 1, attrs: { tool: http.request, ok: true, content: { sha256: ab, chars: 900, signals: [] } } }
      - { kind: execution.result, step: 2, attrs: { tool: http.request, ok: false, code: HTTP_STATUS } }

# (e) tool rate off the agent's baseline
- id: tool-rate-off-baseline
  description: A tool executed at more than 3 times the agent's baseline rate for its policy version (5-minute window).
  severity: medium
  mode: shadow
  match: { field: kind, eq: execution.started }
  correlate:
    type: baseline_deviation
    groupBy: [agent, attrs.tool]
    window: 5m
    metric: toolRatePerMin
    key: attrs.tool
    factor: 3
    minSamples: 30
    minCount: 10
  intervene: { action: alert }
  fixtures:
    baselines:
      agent-1: { v1: { samples: 120, toolRatePerMin: { crm.lookup: 0.5 } } }
    positive:
      - { kind: run.started, attrs: { policyVersion: v1 } }
      - { kind: execution.started, after: 5s, repeat: 10, attrs: { tool: crm.lookup } }
    negative:
      - { kind: run.started, attrs: { policyVersion: v1 } }
      - { kind: execution.started, after: 40s, repeat: 10, attrs: { tool: crm.lookup } }
      # no baseline for this policy version
      - { kind: run.started, run: run-2, attrs: { policyVersion: v2 } }
      - { kind: execution.started, run: run-2, repeat: 10, attrs: { tool: crm.lookup } }

# (f) governance change, then a privileged action
- id: governance-change-then-privileged-action
  description: A policy update followed by an approval-tier decision in the same run within 10 minutes.
  severity: critical
  mode: shadow
  match:
    or:
      - { field: kind, eq: policy.updated }
      - and:
          - { field: kind, eq: decision }
          - { field: attrs.tier, eq: approval }
  correlate:
    type: sequence
    groupBy: [run]
    window: 10m
    steps:
      - match: { field: kind, eq: policy.updated }
      - match: { field: kind, eq: decision }
  intervene: { action: conservative, ttl: 1h }
  fixtures:
    positive:
      - { kind: policy.updated, attrs: { phase: applied, from: v1, to: v2 } }
      - { kind: decision, step: 1, after: 2m, attrs: { tool: billing.refund, tier: approval } }
    negative:
      - { kind: policy.updated, attrs: { phase: applied, from: v1, to: v2 } }
      - { kind: decision, step: 1, after: 1m, attrs: { tool: billing.refund, tier: preapproved } }
      - { kind: decision, step: 2, after: 10m, attrs: { tool: billing.refund, tier: approval } }

# (h) system metrics (the observer scrapes Prometheus endpoints): approvals piling up
- id: approval-backlog
  description: More than 25 approval requests pending at once (a scraped agent_runtime_approvals_pending sample).
  severity: medium
  mode: shadow
  match:
    and:
      - { field: kind, eq: metric.sample }
      - { field: attrs.name, eq: agent_runtime_approvals_pending }
      - { field: attrs.value, gt: 25 }
  intervene: { action: alert }
  fixtures:
    positive:
      - { kind: metric.sample, attrs: { job: workers, name: agent_runtime_approvals_pending, value: 40 } }
    negative:
      - { kind: metric.sample, attrs: { job: workers, name: agent_runtime_approvals_pending, value: 3 } }
      - { kind: metric.sample, attrs: { job: workers, name: agent_runtime_decisions_total, value: 4000 } }

# (g) audit gaps
- id: audit-seq-gap
  description: An audit event whose seq skips numbers (events lost or removed from the stream).
  severity: high
  mode: shadow
  match: { field: seq, gte: 1 }
  correlate: { type: seq_gap, groupBy: [] }
  intervene: { action: alert }
  fixtures:
    positive:
      - { kind: run.started }
      - { kind: decision, attrs: { tool: crm.lookup } }
      - { kind: decision, seq: 5, attrs: { tool: crm.lookup } }
    negative:
      - { kind: run.started }
      - { kind: decision, attrs: { tool: crm.lookup } }
      - { kind: decision, seq: 2, attrs: { tool: crm.lookup } }
      - { kind: run.finished }
`;

/** Parses and compiles the built-in rules (throws `ObserverRuleError` if the document is broken). */
export function builtinRules(): Rule[] {
  return parseRules(BUILTIN_RULES_YAML);
}
