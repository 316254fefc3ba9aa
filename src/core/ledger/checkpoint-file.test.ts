import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateKeyPair, publicKeyRaw } from '../identity/keys.ts';
import { CHECKPOINT_FILE, CheckpointFileWriter, MAX_CHECKPOINT_FILE_BYTES, checkpointFileKeyName, formatCheckpointFile, parseCheckpointFile, readCheckpointFile } from './checkpoint-file.ts';
import { openNote, parseCheckpoint } from './checkpoint.ts';
import { DIGEST_TABLES, applyChange, emptyDigest, type ProjectionDigests } from '../store/digest.ts';

const ORIGIN = 'nexus.local/test';
const { privateKey } = generateKeyPair();
const pub = publicKeyRaw(privateKey);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function digests(): ProjectionDigests {
  return new Map(DIGEST_TABLES.map((t, i) => [t, i % 2 ? applyChange(emptyDigest(), t, 1, `'${t}'`) : emptyDigest()]));
}

describe('the checkpoint file', () => {
  it('round-trips size, root and every table digest, signed under its own key name', () => {
    const root = randomBytes(32);
    const text = formatCheckpointFile(ORIGIN, 42, root, digests(), privateKey);
    const f = parseCheckpointFile(text, ORIGIN, pub);
    expect(f.size).toBe(42);
    expect(f.rootHash.equals(root)).toBe(true);
    expect([...f.digests.keys()]).toEqual([...DIGEST_TABLES]);
    expect(f.digests.get(DIGEST_TABLES[1]!)!.rows).toBe(1);
    // Not a checkpoint of the log itself: a verifier of the log's key name does not accept it.
    expect(() => openNote(text, [{ name: ORIGIN, publicKeyRaw: pub }])).toThrow(/no verifiable signature/);
    expect(parseCheckpoint(openNote(text, [{ name: checkpointFileKeyName(ORIGIN), publicKeyRaw: pub }]).text).size).toBe(42);
  });

  it('refuses another key, another origin, edited lines and unknown tables', () => {
    const text = formatCheckpointFile(ORIGIN, 7, randomBytes(32), digests(), privateKey);
    expect(() => parseCheckpointFile(text, ORIGIN, publicKeyRaw(generateKeyPair().privateKey))).toThrow(/no verifiable signature/);
    expect(() => parseCheckpointFile(text, 'nexus.local/other', pub)).toThrow(/no verifiable signature/);
    const edited = text.replace(/nexus-projection records \d+/, 'nexus-projection records 12345');
    expect(edited).not.toBe(text);
    expect(() => parseCheckpointFile(edited, ORIGIN, pub)).toThrow(/invalid signature/);
    const odd = formatCheckpointFile(ORIGIN, 7, randomBytes(32), new Map([['records', emptyDigest()]]), privateKey).replace('nexus-projection records', 'nexus-projection recordz');
    expect(() => parseCheckpointFile(odd, ORIGIN, pub)).toThrow();
  });

  it('any bytes: a clear error, never a crash or a half-accepted file', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (s) => {
        try {
          parseCheckpointFile(s, ORIGIN, pub);
          return false;
        } catch (err) {
          return err instanceof Error && err.message.length > 0;
        }
      }),
    );
    expect(() => parseCheckpointFile('x'.repeat(MAX_CHECKPOINT_FILE_BYTES + 1), ORIGIN, pub)).toThrow(/larger than/);
  });

  it('is written durably in place (mode 0600, no temporary left) and read back bounded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-cpfile-'));
    dirs.push(dir);
    expect(readCheckpointFile(dir)).toBeUndefined();
    const w = new CheckpointFileWriter(dir);
    const a = formatCheckpointFile(ORIGIN, 1, randomBytes(32), digests(), privateKey);
    const b = formatCheckpointFile(ORIGIN, 2, randomBytes(32), digests(), privateKey);
    await Promise.all([w.write(a), w.write(b)]);
    expect(readCheckpointFile(dir)).toBe(b);
    expect(statSync(join(dir, CHECKPOINT_FILE)).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dir, `${CHECKPOINT_FILE}.tmp`))).toBe(false);
    writeFileSync(join(dir, CHECKPOINT_FILE), 'x'.repeat(MAX_CHECKPOINT_FILE_BYTES + 10));
    expect(() => readCheckpointFile(dir)).toThrow(/larger than/);
    rmSync(join(dir, CHECKPOINT_FILE));
    // A symlink planted in its place is not followed.
    writeFileSync(join(dir, 'elsewhere'), a);
    symlinkSync(join(dir, 'elsewhere'), join(dir, CHECKPOINT_FILE));
    expect(() => readCheckpointFile(dir)).toThrow(/ELOOP|symbolic/);
  });
});
