/**
 * Where the CLI finds the local stack: the Temporal frontend (`--address`, `TEMPORAL_ADDRESS`),
 * the namespace and the state directory of `agent-runtime dev` with its vote-signing keys.
 * @module
 */
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { PUBLIC_KEY_FILE, SECRET_KEY_FILE } from '../approval-channels/keys.ts';
import { AgentRuntimeError } from '../policy/index.ts';
import { findProjectRoot } from '../worker/temporal/binary.ts';

/** The dev server's gRPC frontend unless told otherwise. */
export const DEFAULT_ADDRESS = '127.0.0.1:7233';
export const DEFAULT_NAMESPACE = 'default';

/** The project root (the `agent-runtime` package), or the working directory outside it. */
export function projectRoot(): string {
  return findProjectRoot() ?? process.cwd();
}

/** `<project root>/.agent-runtime`: Temporal's database, keys, audit log and workspace of `dev`. */
export function defaultStateDir(): string {
  return join(projectRoot(), '.agent-runtime');
}

/** The vote-signing key files of a state directory. */
export function keyFiles(stateDir = defaultStateDir()): { secretKeyFile: string; publicKeyFile: string } {
  return {
    secretKeyFile: join(stateDir, 'keys', SECRET_KEY_FILE),
    publicKeyFile: join(stateDir, 'keys', PUBLIC_KEY_FILE),
  };
}

/** A Temporal frontend and namespace. */
export interface Target {
  readonly address: string;
  readonly namespace: string;
}

/** Options first, then `TEMPORAL_ADDRESS` / `TEMPORAL_NAMESPACE`, then the defaults. */
export function resolveTarget(
  values: { address?: string | undefined; namespace?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): Target {
  return {
    address: values.address ?? (env.TEMPORAL_ADDRESS || DEFAULT_ADDRESS),
    namespace: values.namespace ?? (env.TEMPORAL_NAMESPACE || DEFAULT_NAMESPACE),
  };
}

/** Connects, runs `use` with the connection and closes it; an unreachable server is one clear error. */
export async function withConnection<T>(
  target: Target,
  use: (connection: Connection) => Promise<T>,
): Promise<T> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: target.address, connectTimeout: '5s' });
  } catch (error) {
    throw new AgentRuntimeError(
      'CLI_TEMPORAL_UNREACHABLE',
      `cannot reach Temporal at ${target.address} (${(error as Error).message.split('\n')[0] ?? ''}); is \`agent-runtime dev\` running?`,
    );
  }
  try {
    return await use(connection);
  } finally {
    await connection.close();
  }
}

/** {@link withConnection} with a client of `target.namespace`. */
export function withClient<T>(target: Target, use: (client: Client) => Promise<T>): Promise<T> {
  return withConnection(target, (connection) => use(new Client({ connection, namespace: target.namespace })));
}
