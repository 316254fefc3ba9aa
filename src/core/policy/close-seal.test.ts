import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, publicKeyRaw } from '../identity/keys.ts';
import { CLOSE_SEAL_FILE, dbFileIdentity, takeCloseSeal, writeCloseSeal } from './close-seal.ts';

const ORIGIN = 'nexus.test/log';
const key = generateKeyPair().privateKey;
const raw = publicKeyRaw(key);
const state = { size: 7, root: Buffer.alloc(32, 3), projections: 'ab'.repeat(32) };

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-seal-unit-'));
  writeFileSync(join(dir, 'nexus.db'), 'not really sqlite, only a file to identify');
  return dir;
}

describe('close seal file', () => {
  it('round-trips once: the second take finds none', () => {
    const dir = dataDir();
    try {
      expect(writeCloseSeal(dir, ORIGIN, key, state)).toBeUndefined();
      const taken = takeCloseSeal(dir, ORIGIN, raw);
      expect(taken.seal).toMatchObject({ size: 7, projections: state.projections });
      expect(taken.seal!.root.equals(state.root)).toBe(true);
      expect(taken.seal!.db).toEqual(dbFileIdentity(dir));
      expect(existsSync(join(dir, CLOSE_SEAL_FILE))).toBe(false);
      expect(takeCloseSeal(dir, ORIGIN, raw)).toEqual({ reason: expect.stringMatching(/no close seal/) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is not written while a WAL holds writes, and is refused for another origin, a symlink or an oversized file', () => {
    const dir = dataDir();
    try {
      writeFileSync(join(dir, 'nexus.db-wal'), 'x');
      expect(writeCloseSeal(dir, ORIGIN, key, state)).toMatch(/nexus\.db-wal holds writes \(1 bytes\)/);
      rmSync(join(dir, 'nexus.db-wal'));
      writeCloseSeal(dir, ORIGIN, key, state);
      expect(takeCloseSeal(dir, 'other.test/log', raw).reason).toMatch(/does not verify/);
      writeCloseSeal(dir, ORIGIN, key, state);
      const text = readFileSync(join(dir, CLOSE_SEAL_FILE));
      rmSync(join(dir, CLOSE_SEAL_FILE));
      writeFileSync(join(dir, 'elsewhere'), text);
      symlinkSync(join(dir, 'elsewhere'), join(dir, CLOSE_SEAL_FILE));
      expect(takeCloseSeal(dir, ORIGIN, raw).reason).toMatch(/cannot be read/);
      writeFileSync(join(dir, CLOSE_SEAL_FILE), 'x'.repeat(5000));
      expect(takeCloseSeal(dir, ORIGIN, raw).reason).toMatch(/larger than 4096 bytes/);
      // A seal whose database is gone: a reason, not a throw (the open that follows says what is wrong).
      writeCloseSeal(dir, ORIGIN, key, state);
      rmSync(join(dir, 'nexus.db'));
      expect(takeCloseSeal(dir, ORIGIN, raw).reason).toMatch(/nexus\.db cannot be examined/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("any change to a signed seal's text is refused with a reason, never thrown, never accepted", () => {
    const dir = dataDir();
    try {
      writeCloseSeal(dir, ORIGIN, key, state);
      const good = readFileSync(join(dir, CLOSE_SEAL_FILE), 'utf8');
      fc.assert(
        // The signed text (the note's body, up to its blank line).
        fc.property(fc.nat(good.indexOf('\n\n')), fc.integer({ min: 32, max: 126 }), (at, code) => {
          const bad = good.slice(0, at) + String.fromCharCode(code) + good.slice(at + 1);
          fc.pre(bad !== good);
          writeFileSync(join(dir, CLOSE_SEAL_FILE), bad);
          const taken = takeCloseSeal(dir, ORIGIN, raw);
          expect(taken.seal).toBeUndefined();
          expect(taken.reason).toBeTruthy();
        }),
        { numRuns: 300 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
