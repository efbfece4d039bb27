/**
 * Signed governance change manifests: signing, every refusal of `verifyGovernanceChange`, the audit event,
 * and the `governance approve-change` / `verify-change` commands run in process through `main()` with keys
 * made by `initSigningKey`.
 */
import { runCli } from '../test/run-cli.ts';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, test } from 'vitest';
import { initSigningKey, loadPublicKeys } from '../approval-channels/keys.ts';
import { canonicalJson, keyIdOf, parseGovernance } from '../policy/index.ts';
import {
  GovernanceChangeRefusal,
  governanceChangeEvent,
  parseGovernanceChange,
  signGovernanceChange,
  verifyGovernanceChange,
} from './governance-change.ts';
import type { GovernanceChange } from './governance-change.ts';

const V1 = 'a'.repeat(64);
const V2 = 'b'.repeat(64);
const APPROVED_AT = Date.parse('2026-03-01T12:00:00.000Z');

/** A deterministic key pair from one byte. */
function keyPair(seed: number): { secretKey: Uint8Array; publicKey: Uint8Array; keyId: string } {
  const secretKey = new Uint8Array(32).fill(seed);
  const publicKey = ed25519.getPublicKey(secretKey);
  return { secretKey, publicKey, keyId: keyIdOf(publicKey) };
}
const alice = keyPair(1);
const mallory = keyPair(2);
const trusted = new Map([[alice.keyId, alice.publicKey]]);

function manifest(over: Partial<GovernanceChange> = {}): GovernanceChange {
  return {
    agent: 'ops-assistant',
    fromVersion: V1,
    toVersion: V2,
    declares: { tools: ['crm.write'], directories: ['/srv/reports'], hosts: ['api.example.com'] },
    reason: 'CHG-42: the agent files reports',
    approvedBy: ['alice', 'bob'],
    approvedAt: new Date(APPROVED_AT).toISOString(),
    learningWindow: '72h',
    ...over,
  };
}

describe('verifyGovernanceChange', () => {
  test('a manifest signed by a trusted key verifies and comes back as signed', () => {
    const signed = signGovernanceChange(manifest(), alice.secretKey, alice.keyId);
    expect(signed.keyId).toBe(alice.keyId);
    expect(signed.signature).toMatch(/^[0-9a-f]{128}$/);
    expect(verifyGovernanceChange(signed, trusted)).toEqual({
      ok: true,
      change: manifest(),
      keyId: alice.keyId,
    });
    // it survives a JSON round trip (the audit log and the CLI file)
    expect(verifyGovernanceChange(JSON.parse(JSON.stringify(signed)), trusted).ok).toBe(true);
  });

  test('a forged signature (random bytes under the trusted key id) is refused', () => {
    const signed = signGovernanceChange(manifest(), alice.secretKey, alice.keyId);
    const forged = {
      ...signed,
      signature: signed.signature.replace(/^../, (b) => (b === '00' ? '01' : '00')),
    };
    expect(verifyGovernanceChange(forged, trusted)).toMatchObject({
      ok: false,
      code: GovernanceChangeRefusal.badSignature,
    });
    expect(verifyGovernanceChange({ ...signed, signature: 'f'.repeat(128) }, trusted)).toMatchObject({
      ok: false,
      code: GovernanceChangeRefusal.badSignature,
    });
  });

  test("a manifest signed by another key and labelled with the trusted key's id is refused", () => {
    const byMallory = signGovernanceChange(manifest(), mallory.secretKey, mallory.keyId);
    expect(verifyGovernanceChange({ ...byMallory, keyId: alice.keyId }, trusted)).toMatchObject({
      ok: false,
      code: GovernanceChangeRefusal.badSignature,
    });
    // a trust map that binds the id to the wrong public key verifies nothing either
    const wrong = new Map([[alice.keyId, mallory.publicKey]]);
    const byAlice = signGovernanceChange(manifest(), alice.secretKey, alice.keyId);
    expect(verifyGovernanceChange(byAlice, wrong)).toMatchObject({
      code: GovernanceChangeRefusal.badSignature,
    });
  });

  test('an unknown key is refused before any signature check', () => {
    const byMallory = signGovernanceChange(manifest(), mallory.secretKey, mallory.keyId);
    expect(verifyGovernanceChange(byMallory, trusted)).toEqual({
      ok: false,
      code: GovernanceChangeRefusal.unknownKey,
      message: `no trusted key ${mallory.keyId}`,
    });
  });

  test('tampering with what the manifest declares, who approved it or its window breaks the signature', () => {
    const signed = signGovernanceChange(manifest(), alice.secretKey, alice.keyId);
    const tampered: GovernanceChange[] = [
      {
        ...signed.change,
        declares: { ...signed.change.declares, hosts: ['api.example.com', 'evil.example'] },
      },
      { ...signed.change, declares: { tools: ['crm.write', 'fs.write'] } },
      { ...signed.change, approvedBy: ['alice'] },
      { ...signed.change, learningWindow: '14d' },
      { ...signed.change, toVersion: 'c'.repeat(64) },
    ];
    for (const change of tampered)
      expect(verifyGovernanceChange({ ...signed, change }, trusted)).toMatchObject({
        ok: false,
        code: GovernanceChangeRefusal.badSignature,
      });
  });

  test('a signature over the bare canonical JSON (no domain) does not verify: no cross-protocol replay', () => {
    const change = manifest();
    const signature = bytesToHex(ed25519.sign(utf8ToBytes(canonicalJson(change)), alice.secretKey));
    expect(verifyGovernanceChange({ change, keyId: alice.keyId, signature }, trusted)).toMatchObject({
      code: GovernanceChangeRefusal.badSignature,
    });
  });

  test('an invalid manifest is refused with every problem and its path', () => {
    const signed = signGovernanceChange(manifest(), alice.secretKey, alice.keyId);
    const change = {
      ...signed.change,
      declares: { tools: [], directories: ['/srv/../etc'], hosts: ['API.example.com'] },
      approvedBy: [],
      approvedAt: 'yesterday',
      learningWindow: '15d',
      extra: true,
    };
    const result = verifyGovernanceChange({ ...signed, change }, trusted);
    expect(result.ok).toBe(false);
    expect(result).toMatchObject({ code: GovernanceChangeRefusal.invalid });
    expect(!result.ok && result.message.split('; ')).toMatchInlineSnapshot(`
      [
        "invalid governance change: declares.directories[0]: expected a normalised absolute directory such as /srv/reports (no trailing slash, . or ..)",
        "declares.hosts[0]: expected a lower-case host[:port] such as api.example.com",
        "approvedBy: at least one approver",
        "approvedAt: Invalid ISO datetime",
        "learningWindow: expected a duration such as 72h, at most 14d",
        "(root): Unrecognized key: "extra"",
      ]
    `);
  });

  test('a manifest that declares nothing, the root directory, duplicates or no version change is invalid', () => {
    const problems = (over: Record<string, unknown>): string => {
      try {
        parseGovernanceChange({ ...manifest(), ...over });
      } catch (error) {
        expect(error).toMatchObject({ code: GovernanceChangeRefusal.invalid });
        return (error as Error).message;
      }
      throw new Error('expected the manifest to be refused');
    };
    expect(problems({ declares: { tools: [] } })).toBe(
      'invalid governance change: declares: declare at least one tool, directory or host',
    );
    expect(problems({ declares: { directories: ['/'] } })).toBe(
      'invalid governance change: declares.directories[0]: declaring / would excuse every path',
    );
    expect(problems({ approvedBy: ['alice', 'alice'] })).toBe(
      'invalid governance change: approvedBy: duplicate entries',
    );
    expect(problems({ toVersion: V1 })).toBe(
      'invalid governance change: toVersion: fromVersion and toVersion are the same',
    );
    expect(problems({ learningWindow: 'soon' })).toBe(
      'invalid governance change: learningWindow: expected a duration such as 72h, at most 14d',
    );
  });

  test('a malformed envelope is refused without looking further', () => {
    for (const value of [null, 'x', {}, { change: manifest(), keyId: 'alice', signature: 'ab' }])
      expect(verifyGovernanceChange(value, trusted)).toMatchObject({
        ok: false,
        code: GovernanceChangeRefusal.malformed,
      });
  });

  test('with a clock: refused once the learning window has passed, or when approved in the future', () => {
    const signed = signGovernanceChange(manifest(), alice.secretKey, alice.keyId);
    const end = APPROVED_AT + 72 * 3_600_000;
    expect(verifyGovernanceChange(signed, trusted, { nowMs: end - 1 }).ok).toBe(true);
    expect(verifyGovernanceChange(signed, trusted, { nowMs: end })).toEqual({
      ok: false,
      code: GovernanceChangeRefusal.expired,
      message: 'the learning window of 72h from 2026-03-01T12:00:00.000Z has passed',
    });
    // five minutes of clock skew are tolerated, more is not
    expect(verifyGovernanceChange(signed, trusted, { nowMs: APPROVED_AT - 5 * 60_000 }).ok).toBe(true);
    expect(verifyGovernanceChange(signed, trusted, { nowMs: APPROVED_AT - 5 * 60_000 - 1 })).toMatchObject({
      code: GovernanceChangeRefusal.notYetValid,
    });
  });

  test('signing refuses an invalid manifest and a key id that is not the key', () => {
    expect(() => signGovernanceChange(manifest({ approvedBy: [] }), alice.secretKey, alice.keyId)).toThrow(
      'invalid governance change: approvedBy: at least one approver',
    );
    expect(() => signGovernanceChange(manifest(), alice.secretKey, mallory.keyId)).toThrow(
      `key id ${mallory.keyId} does not belong to the secret key`,
    );
  });

  test('governanceChangeEvent: a cli event about the agent, carrying the signed manifest as attrs', () => {
    const signed = signGovernanceChange(manifest(), alice.secretKey, alice.keyId);
    const event = governanceChangeEvent(signed);
    expect(event).toEqual({
      source: 'cli',
      agent: 'ops-assistant',
      run: null,
      step: null,
      kind: 'governance.change',
      attrs: { change: signed.change, keyId: alice.keyId, signature: signed.signature },
      id: `governance.change:${signed.signature.slice(0, 32)}`,
    });
    expect(verifyGovernanceChange(event.attrs, trusted).ok).toBe(true);
  });
});

describe('agent-runtime governance approve-change / verify-change', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const ops = join(root, 'examples/ops-staging/governance.yaml');

  const run = (...argv: string[]) => runCli(argv);

  async function setup(): Promise<{ dir: string; secret: string; pub: string; keyId: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'ar-change-'));
    const files = await initSigningKey(join(dir, 'keys'));
    return { dir, secret: files.secretKeyFile, pub: files.publicKeyFile, keyId: files.keyId };
  }

  test('approve-change prints a signed manifest that verify-change (and the library) accept', async () => {
    const { dir, secret, pub, keyId } = await setup();
    const before = Date.now();
    const approved = await run(
      'governance',
      'approve-change',
      '--agent',
      'ops-assistant',
      '--from',
      V1,
      '--to',
      V2,
      '--declare-tools',
      'crm.write, ticket.close',
      '--declare-hosts',
      'api.example.com',
      '--reason',
      'CHG-42',
      '--as',
      'alice',
      '--as',
      'bob',
      '--key',
      secret,
      '--window',
      '48h',
    );
    expect(approved.stderr).toBe('');
    expect(approved.code).toBe(0);
    const signed = JSON.parse(approved.stdout) as { change: GovernanceChange; keyId: string };
    expect({ ...signed.change, approvedAt: '<now>' }).toEqual({
      agent: 'ops-assistant',
      fromVersion: V1,
      toVersion: V2,
      declares: { tools: ['crm.write', 'ticket.close'], hosts: ['api.example.com'] },
      reason: 'CHG-42',
      approvedBy: ['alice', 'bob'],
      approvedAt: '<now>',
      learningWindow: '48h',
    });
    expect(Date.parse(signed.change.approvedAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(signed.keyId).toBe(keyId);
    expect(verifyGovernanceChange(signed, await loadPublicKeys([pub])).ok).toBe(true);

    const file = join(dir, 'change.json');
    await writeFile(file, approved.stdout);
    const verified = await run('governance', 'verify-change', file, '--trust', pub);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    expect(verified.stdout.replaceAll(dir, '<dir>').replaceAll(signed.change.approvedAt, '<at>'))
      .toMatch(`<dir>/change.json: valid: agent ops-assistant, ${V1} → ${V2}
signed by ${keyId}, approved by alice, bob at <at>
learning window 48h (until `);
    expect(verified.stdout).toContain('declares tools crm.write, ticket.close; hosts api.example.com\n');
  });

  test('verify-change refuses a tampered file and a key it does not trust (exit 1, code on stderr)', async () => {
    const { dir, secret, pub } = await setup();
    const other = await initSigningKey(join(dir, 'other'));
    const out = join(dir, 'change.json');
    const approved = await run(
      'governance',
      'approve-change',
      '--agent',
      'ops-assistant',
      '--from',
      V1,
      '--to',
      V2,
      '--declare-dirs',
      '/srv/reports',
      '--reason',
      'r',
      '--as',
      'alice',
      '--key',
      secret,
      '--out',
      out,
    );
    expect(approved.code).toBe(0);
    expect(approved.stdout.replaceAll(dir, '<dir>')).toMatch(
      /^<dir>\/change\.json: change for ops-assistant a{64} → b{64}, signed by ed25519:[0-9a-f]{16}\n$/,
    );
    const signed = JSON.parse(await readFile(out, 'utf8')) as { change: GovernanceChange };
    expect(signed.change.learningWindow).toBe('72h');

    const untrusted = await run('governance', 'verify-change', out, '--trust', other.publicKeyFile);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr.replaceAll(dir, '<dir>')).toMatch(
      /^<dir>\/change\.json: GOVERNANCE_CHANGE_UNKNOWN_KEY: no trusted key ed25519:[0-9a-f]{16}\n$/,
    );

    signed.change.declares = { directories: ['/srv'] };
    await writeFile(out, JSON.stringify(signed));
    const tampered = await run('governance', 'verify-change', out, '--trust', pub);
    expect(tampered.code).toBe(1);
    expect(tampered.stderr.replaceAll(dir, '<dir>')).toBe(
      '<dir>/change.json: GOVERNANCE_CHANGE_BAD_SIGNATURE: the signature does not verify\n',
    );

    await writeFile(out, '{not json');
    const broken = await run('governance', 'verify-change', out, '--trust', pub);
    expect(broken.code).toBe(1);
    expect(broken.stderr.replaceAll(dir, '<dir>')).toMatch(
      /^agent-runtime: <dir>\/change\.json: not valid JSON/,
    );
  });

  test('--from-file/--to-file compute the policy versions and the agent as the rest of the CLI does', async () => {
    const { dir, secret } = await setup();
    const text = await readFile(ops, 'utf8');
    const newer = join(dir, 'new.yaml');
    await writeFile(newer, text.replace('Keeps the staging environment healthy', 'Keeps staging healthy'));
    const approved = await run(
      'governance',
      'approve-change',
      '--from-file',
      ops,
      '--to-file',
      newer,
      '--declare-tools',
      'fs.write',
      '--reason',
      'r',
      '--as',
      'alice',
      '--key',
      secret,
    );
    expect(approved.stderr).toBe('');
    const { change } = JSON.parse(approved.stdout) as { change: GovernanceChange };
    const old = parseGovernance(text, ops);
    const next = parseGovernance(await readFile(newer, 'utf8'), newer);
    if (!old.ok || !next.ok) throw new Error('the example should parse');
    expect(change.agent).toBe('ops-assistant');
    expect(change.fromVersion).toBe(old.policyVersion);
    expect(change.toVersion).toBe(next.policyVersion);
    const validated = await run('governance', 'validate', newer);
    expect(validated.stdout).toContain(`policyVersion ${change.toVersion}`);

    const mismatch = await run(
      'governance',
      'approve-change',
      '--agent',
      'someone-else',
      '--from-file',
      ops,
      '--to',
      V2,
      '--declare-tools',
      'fs.write',
      '--reason',
      'r',
      '--as',
      'alice',
      '--key',
      secret,
    );
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr.split('\n')[0]).toBe(
      'agent-runtime: --agent and the governance files name different agents: someone-else, ops-assistant',
    );
  });

  test('a bad command line names the option (exit 2); a missing key file exits 1', async () => {
    const { dir, secret } = await setup();
    const base = ['governance', 'approve-change', '--agent', 'a', '--from', V1, '--to', V2, '--reason', 'r'];
    const first = async (...argv: string[]): Promise<[number, string]> => {
      const result = await run(...argv);
      return [result.code, result.stderr.split('\n')[0]!];
    };
    expect(await first(...base, '--as', 'p', '--key', secret, '--declare-tools', 'x', '--window', '15d'))
      .toMatchInlineSnapshot(`
        [
          2,
          "agent-runtime: --window: expected a duration such as 72h, at most 14d",
        ]
      `);
    expect(await first(...base, '--as', 'p', '--key', secret)).toMatchInlineSnapshot(`
      [
        2,
        "agent-runtime: --declare-tools/--declare-dirs/--declare-hosts: declare at least one tool, directory or host",
      ]
    `);
    expect(await first(...base, '--as', 'p', '--key', secret, '--declare-dirs', '/srv,/srv/../etc'))
      .toMatchInlineSnapshot(`
        [
          2,
          "agent-runtime: --declare-dirs[1]: expected a normalised absolute directory such as /srv/reports (no trailing slash, . or ..)",
        ]
      `);
    expect(await first(...base, '--key', secret, '--declare-tools', 'x')).toEqual([
      2,
      'agent-runtime: --as is required (once per approver)',
    ]);
    expect(await first(...base.slice(0, 6), '--as', 'p', '--key', secret, '--reason', 'r')).toEqual([
      2,
      'agent-runtime: give exactly one of --to and --to-file',
    ]);
    const missing = await first(...base, '--as', 'p', '--declare-tools', 'x', '--key', join(dir, 'nope.key'));
    expect(missing[0]).toBe(1);
    expect(missing[1].replaceAll(dir, '<dir>')).toBe(
      'agent-runtime: <dir>/nope.key: cannot read (ENOENT); run agent-runtime keys init',
    );
  });
});
