import { chmod, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { actionDigest, signVote, verifyVote } from '../policy/index.ts';
import { initSigningKey, loadPublicKeys, loadSecretKey } from './keys.ts';

const dir = () => mkdtemp(join(tmpdir(), 'ar-keys-'));

describe('vote-signing key files', () => {
  test('init writes a 0600 secret and a public key that verifies its votes', async () => {
    const d = await dir();
    const files = await initSigningKey(join(d, 'keys'));
    expect((await stat(files.secretKeyFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(d, 'keys'))).mode & 0o777).toBe(0o700);
    const { secretKey, keyId } = await loadSecretKey(files.secretKeyFile);
    expect(keyId).toBe(files.keyId);
    const publicKeys = await loadPublicKeys([files.publicKeyFile]);
    const digest = actionDigest({ tool: 't', args: {}, resource: null, policyVersion: 'v' });
    const vote = signVote(
      { workflowId: 'w', step: 1, actionDigest: digest, decision: 'approve', approver: 'a', expiresAt: 10 },
      secretKey,
    );
    expect(
      verifyVote(vote, { publicKeys, nowMs: 0, expect: { workflowId: 'w', step: 1, actionDigest: digest } })
        .ok,
    ).toBe(true);
    // the public file carries no secret
    expect(await readFile(files.publicKeyFile, 'utf8')).not.toContain('secretKey');
  });

  test('init refuses to replace a key unless forced', async () => {
    const d = await dir();
    const first = await initSigningKey(d);
    await expect(initSigningKey(d)).rejects.toMatchObject({ code: 'KEY_EXISTS' });
    const second = await initSigningKey(d, { force: true });
    expect(second.keyId).not.toBe(first.keyId);
  });

  test('a secret key readable by others is refused', async () => {
    const d = await dir();
    const files = await initSigningKey(d);
    await chmod(files.secretKeyFile, 0o644);
    await expect(loadSecretKey(files.secretKeyFile)).rejects.toMatchObject({ code: 'KEY_TOO_READABLE' });
  });

  test('missing, corrupted and mismatched key files are refused with clear errors', async () => {
    const d = await dir();
    await expect(loadSecretKey(join(d, 'nope.key'))).rejects.toMatchObject({ code: 'KEY_MISSING' });
    const files = await initSigningKey(d);
    const pub = JSON.parse(await readFile(files.publicKeyFile, 'utf8')) as Record<string, string>;
    await writeFile(files.publicKeyFile, JSON.stringify({ ...pub, keyId: 'ed25519:0000000000000000' }));
    await expect(loadPublicKeys([files.publicKeyFile])).rejects.toMatchObject({ code: 'KEY_MALFORMED' });
    await writeFile(files.secretKeyFile, 'not json', { mode: 0o600 });
    await expect(loadSecretKey(files.secretKeyFile)).rejects.toMatchObject({ code: 'KEY_MALFORMED' });
  });
});
