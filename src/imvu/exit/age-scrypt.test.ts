// The passphrase form of secrets.age is opened by Debian's age: `age -d` reads the passphrase from
// the terminal, so it is driven through a pseudo-terminal (python3's pty module).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encryptWithPassphrase } from './age-scrypt.ts';
import { ageDecryptWithPassphrase as ageDecrypt } from '../../../test/exit/age-pty.ts';

const hasAge = spawnSync('age', ['--version']).status === 0;

describe.skipIf(!hasAge)('age scrypt recipient', () => {
  it('is opened by age -d with the passphrase, across chunk boundaries, and refused with another', () => {
    const dir = mkdtempSync(join(tmpdir(), 'age-scrypt-'));
    try {
      for (const size of [0, 10, 64 * 1024, 64 * 1024 + 1, 200_000]) {
        const plain = Buffer.from(Array.from({ length: size }, (_, i) => String.fromCharCode(97 + (i % 26))).join(''));
        const file = join(dir, `s${size}.age`);
        writeFileSync(file, encryptWithPassphrase(plain, 'correct horse battery staple', 12));
        const r = ageDecrypt(file, 'correct horse battery staple');
        expect(r.code, r.out.slice(0, 300)).toBe(0);
        expect(r.plain).toBe(plain.toString());
      }
      const wrong = ageDecrypt(join(dir, 's10.age'), 'wrong passphrase');
      expect(wrong.code).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
