/**
 * `agent-runtime audit export` and `audit verify --file`: a real SQLite chain with signed
 * checkpoints in a state directory laid out as `agent-runtime dev` leaves it, exported to NDJSON,
 * tampered with line by line, and verified offline with the public key only.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { initSigningKey, loadSecretKey } from '../approval-channels/keys.ts';
import { main } from '../cli/main.ts';
import { AUDIT_EXPORT_FORMAT, ed25519Signer, openSqliteAuditStore } from './index.ts';

let stateDir: string;
let exportFile: string;
let otherKey: string;

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on('data', (c: Buffer) => out.push(c.toString()));
  stderr.on('data', (c: Buffer) => err.push(c.toString()));
  const code = await main(argv, { stdout, stderr });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const lines = async (): Promise<string[]> => (await readFile(exportFile, 'utf8')).trimEnd().split('\n');
let variant = 0;
/** Writes `edited` as a new export file and verifies it. */
async function verifyLines(edited: readonly string[], ...extra: string[]) {
  const file = join(stateDir, `variant-${++variant}.ndjson`);
  await writeFile(file, `${edited.join('\n')}\n`);
  return cli('audit', 'verify', '--file', file, '--state-dir', stateDir, ...extra);
}
const recordIndex = (all: readonly string[], seq: number): number =>
  all.findIndex((l) => l.startsWith('{"type":"record"') && JSON.parse(l).seq === seq);

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ar-audit-export-'));
  const keys = await initSigningKey(join(stateDir, 'keys', 'audit'));
  otherKey = (await initSigningKey(join(stateDir, 'other-key'))).publicKeyFile;
  const store = await openSqliteAuditStore({
    file: join(stateDir, 'audit', 'chain.db'),
    autoCheckpoint: {
      signer: ed25519Signer((await loadSecretKey(keys.secretKeyFile)).secretKey),
      everyAppends: 4,
    },
  });
  for (let i = 1; i <= 10; i++) {
    await store.append('default', {
      source: 'workflow',
      agent: 'a',
      run: 'r',
      step: i,
      kind: 'decision',
      attrs: { i, tier: 'autonomous' },
    });
  }
  await store.close();
  exportFile = join(stateDir, 'export.ndjson');
});

afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

describe('audit export', () => {
  test('a header, every record in seq order, each checkpoint after the record it signs', async () => {
    const result = await cli('audit', 'export', '--state-dir', stateDir, '--out', exportFile);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toBe(`exported 10 records and 2 checkpoints of default to ${exportFile}\n`);
    const all = (await lines()).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(all[0]).toEqual({
      type: 'header',
      format: AUDIT_EXPORT_FORMAT,
      stream: 'default',
      keyIds: [expect.stringMatching(/^ed25519:[0-9a-f]{16}$/)],
      exportedAt: expect.any(String),
    });
    expect(all.slice(1).map((l) => `${l['type']}:${l['seq']}`)).toEqual([
      'record:1',
      'record:2',
      'record:3',
      'record:4',
      'checkpoint:4',
      'record:5',
      'record:6',
      'record:7',
      'record:8',
      'checkpoint:8',
      'record:9',
      'record:10',
    ]);
    // to stdout when no --out; an existing --out is never overwritten
    const piped = await cli('audit', 'export', '--state-dir', stateDir);
    const withoutTime = (text: string): string => text.replace(/"exportedAt":"[^"]+"/, '');
    expect(withoutTime(piped.stdout)).toBe(withoutTime(`${(await lines()).join('\n')}\n`));
    expect(piped.stderr).toBe('exported 10 records and 2 checkpoints of default\n');
    const again = await cli('audit', 'export', '--state-dir', stateDir, '--out', exportFile);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('cannot create (EEXIST)');
  });
});

describe('audit verify --file', () => {
  test('an intact export verifies with the public key alone', async () => {
    expect(await cli('audit', 'verify', '--file', exportFile, '--state-dir', stateDir)).toEqual({
      code: 0,
      stdout: 'ok: 10 records (last seq 10), 2 signed checkpoints\n',
      stderr: '',
    });
    const json = await cli('audit', 'verify', '--file', exportFile, '--state-dir', stateDir, '--json');
    expect(JSON.parse(json.stdout)).toEqual({
      stream: 'default',
      checkpoints: 2,
      ok: true,
      count: 10,
      lastSeq: 10,
    });
  });

  test('edited, deleted, reordered, truncated and forged: the first broken record is named, exit 1', async () => {
    const all = await lines();
    const edit = (seq: number, change: (r: Record<string, unknown>) => void): string[] => {
      const copy = [...all];
      const i = recordIndex(copy, seq);
      const record = JSON.parse(copy[i]!) as Record<string, unknown>;
      change(record);
      copy[i] = JSON.stringify(record);
      return copy;
    };
    const edited = await verifyLines(edit(3, (r) => (r['attrs'] = { i: 3, tier: 'forged' })));
    expect(edited).toMatchObject({ code: 1, stdout: 'BROKEN at seq 3: edited\n' });

    const deleted = all.filter((_, i) => i !== recordIndex(all, 6));
    expect((await verifyLines(deleted)).stdout).toBe('BROKEN at seq 7: broken_link\n');

    const swapped = [...all];
    const [a, b] = [recordIndex(all, 2), recordIndex(all, 3)];
    [swapped[a], swapped[b]] = [all[b]!, all[a]!];
    expect((await verifyLines(swapped)).stdout).toBe('BROKEN at seq 3: reordered\n');

    // the tail cut away, its checkpoint kept
    const truncated = all.filter((_, i) => ![7, 8, 9, 10].map((s) => recordIndex(all, s)).includes(i));
    expect((await verifyLines(truncated)).stdout).toBe('BROKEN at seq 7: truncated\n');

    // checkpoint 4 carrying checkpoint 8's (valid, but other) signature
    const signatureOf = (seq: number): string =>
      JSON.parse(all.find((l) => l.startsWith('{"type":"checkpoint"') && JSON.parse(l).seq === seq)!)
        .signature;
    const forged = all.map((l) => l.replace(signatureOf(4), signatureOf(8)));
    expect(forged).not.toEqual(all);
    expect((await verifyLines(forged)).stdout).toBe('BROKEN at seq 4: bad_checkpoint\n');
    // re-signing with an untrusted key is no better than no signature
    expect((await verifyLines(all, '--key', otherKey)).stdout).toBe('BROKEN at seq 4: bad_checkpoint\n');
  });

  test('an export of a tampered store says exactly what verifying the store says', async () => {
    const copyDir = await mkdtemp(join(tmpdir(), 'ar-audit-export-copy-'));
    try {
      const { cp } = await import('node:fs/promises');
      await cp(stateDir, copyDir, { recursive: true });
      const db = new DatabaseSync(join(copyDir, 'audit', 'chain.db'));
      db.prepare(`UPDATE audit_records SET attrs = '{"i":5,"tier":"forged"}' WHERE seq = 5`).run();
      db.prepare(`DELETE FROM audit_records WHERE seq = 9`).run();
      db.close();
      const fromStore = await cli('audit', 'verify', '--state-dir', copyDir);
      const out = join(copyDir, 'tampered.ndjson');
      expect((await cli('audit', 'export', '--state-dir', copyDir, '--out', out)).code).toBe(0);
      const fromFile = await cli('audit', 'verify', '--file', out, '--state-dir', copyDir);
      expect(fromStore).toEqual({ code: 1, stdout: 'BROKEN at seq 5: edited\n', stderr: '' });
      expect(fromFile).toEqual(fromStore);
    } finally {
      await rm(copyDir, { recursive: true, force: true });
    }
  });

  test('a malformed export is one clear error naming file:line', async () => {
    const all = await lines();
    const broken = [...all];
    broken[3] = '{"type":"record","seq":';
    const result = await verifyLines(broken);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^agent-runtime: .*variant-\d+\.ndjson:4: not valid JSON/);
    const noHeader = await verifyLines(all.slice(1));
    expect(noHeader.stderr).toMatch(/:1: expected the header line of an audit export\n$/);
    const extraKey = [...all];
    extraKey[2] = extraKey[2]!.replace('{"type":"record",', '{"type":"record","note":"x",');
    expect((await verifyLines(extraKey)).stderr).toMatch(
      /:3: record line: \(root\): Unrecognized key: "note"/,
    );
    const missing = await cli(
      'audit',
      'verify',
      '--file',
      join(stateDir, 'nope.ndjson'),
      '--state-dir',
      stateDir,
    );
    expect(missing.stderr).toContain('cannot read (ENOENT)');
  });
});
