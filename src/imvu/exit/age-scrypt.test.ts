// The passphrase form of secrets.age is opened by Debian's age: `age -d` reads the passphrase from
// the terminal, so it is driven through a pseudo-terminal (python3's pty module).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encryptWithPassphrase } from './age-scrypt.ts';

const PTY = `
import os, pty, sys, time
pw, path, out_file = sys.argv[1], sys.argv[2], sys.argv[3]
pid, fd = pty.fork()
if pid == 0:
    os.execvp('age', ['age', '-d', '-o', out_file, path])
out = b''
sent = False
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
    if not sent and b'passphrase' in out.lower():
        os.write(fd, (pw + '\\n').encode())
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.WEXITSTATUS(status))
`;

function ageDecrypt(file: string, passphrase: string): { code: number | null; out: string; plain: string } {
  const outFile = `${file}.out`;
  rmSync(outFile, { force: true });
  const r = spawnSync('python3', ['-c', PTY, passphrase, file, outFile], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, plain: existsSync(outFile) ? readFileSync(outFile, 'utf8') : '' };
}

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
