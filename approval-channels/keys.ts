/**
 * The vote-signing key: created once by `agent-runtime keys init`, held only by the approval
 * service. Workers and workflows get the public key file. Keep the directory outside every tool
 * root: the agent's tools must never be able to read it.
 * @module
 */
import type { Stats } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { z } from 'zod';
import { AgentRuntimeError, keyIdOf } from '../policy/index.ts';

export const SECRET_KEY_FILE = 'vote-signing.key';
export const PUBLIC_KEY_FILE = 'vote-signing.pub';

const SecretKeyFile = z.strictObject({
  kty: z.literal('Ed25519'),
  use: z.literal('agent-runtime-vote-signing'),
  keyId: z.string(),
  secretKey: z.string().regex(/^[0-9a-f]{64}$/),
});
const PublicKeyFile = z.strictObject({
  kty: z.literal('Ed25519'),
  use: z.literal('agent-runtime-vote-signing'),
  keyId: z.string(),
  publicKey: z.string().regex(/^[0-9a-f]{64}$/),
});

/** A key file is missing, malformed, too readable, or would be overwritten. */
export class KeyFileError extends AgentRuntimeError {}

/** Paths and id of a signing key pair. */
export interface KeyPairFiles {
  readonly keyId: string;
  readonly secretKeyFile: string;
  readonly publicKeyFile: string;
}

/**
 * Creates a new Ed25519 key pair in `dir` (secret key mode 0600, directory 0700). Refuses to
 * replace an existing key unless `force` (rotation is a deliberate act: old votes stop verifying).
 */
export async function initSigningKey(
  dir: string,
  options: { readonly force?: boolean; readonly randomSecretKey?: () => Uint8Array } = {},
): Promise<KeyPairFiles> {
  const secretKeyFile = join(dir, SECRET_KEY_FILE);
  const publicKeyFile = join(dir, PUBLIC_KEY_FILE);
  if (!options.force && (await exists(secretKeyFile))) {
    throw new KeyFileError(
      'KEY_EXISTS',
      `${secretKeyFile} already exists (use --force to replace it; votes signed with it stop verifying)`,
    );
  }
  const secretKey = (options.randomSecretKey ?? ed25519.utils.randomSecretKey)();
  const publicKey = ed25519.getPublicKey(secretKey);
  const keyId = keyIdOf(publicKey);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const common = { kty: 'Ed25519', use: 'agent-runtime-vote-signing', keyId } as const;
  await writeFile(
    secretKeyFile,
    `${JSON.stringify({ ...common, secretKey: bytesToHex(secretKey) }, null, 2)}\n`,
    { mode: 0o600 },
  );
  await chmod(secretKeyFile, 0o600);
  await writeFile(
    publicKeyFile,
    `${JSON.stringify({ ...common, publicKey: bytesToHex(publicKey) }, null, 2)}\n`,
    { mode: 0o644 },
  );
  return { keyId, secretKeyFile, publicKeyFile };
}

/** Loads the secret key; refuses a file other users can read. */
export async function loadSecretKey(
  file: string,
): Promise<{ readonly keyId: string; readonly secretKey: Uint8Array }> {
  const info = await statOrThrow(file);
  if ((info.mode & 0o077) !== 0) {
    throw new KeyFileError(
      'KEY_TOO_READABLE',
      `${file} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${file}`,
    );
  }
  const parsed = SecretKeyFile.safeParse(await readJson(file));
  if (!parsed.success)
    throw new KeyFileError('KEY_MALFORMED', `${file} is not an agent-runtime vote-signing key`);
  const secretKey = hexToBytes(parsed.data.secretKey);
  const keyId = keyIdOf(ed25519.getPublicKey(secretKey));
  if (keyId !== parsed.data.keyId)
    throw new KeyFileError('KEY_MALFORMED', `${file}: keyId does not match the key`);
  return { keyId, secretKey };
}

/** Loads public keys (one file each) into the `keyId → key` map that `verifyVote` takes. */
export async function loadPublicKeys(files: readonly string[]): Promise<ReadonlyMap<string, Uint8Array>> {
  const keys = new Map<string, Uint8Array>();
  for (const file of files) {
    const parsed = PublicKeyFile.safeParse(await readJson(file));
    if (!parsed.success)
      throw new KeyFileError('KEY_MALFORMED', `${file} is not an agent-runtime vote-signing public key`);
    const publicKey = hexToBytes(parsed.data.publicKey);
    if (keyIdOf(publicKey) !== parsed.data.keyId)
      throw new KeyFileError('KEY_MALFORMED', `${file}: keyId does not match the key`);
    keys.set(parsed.data.keyId, publicKey);
  }
  return keys;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

async function statOrThrow(file: string): Promise<Stats> {
  try {
    return await stat(file);
  } catch (error) {
    throw new KeyFileError(
      'KEY_MISSING',
      `${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'}); run agent-runtime keys init`,
    );
  }
}

async function readJson(file: string): Promise<unknown> {
  await statOrThrow(file);
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    throw new KeyFileError('KEY_MALFORMED', `${file} is not valid JSON`);
  }
}
