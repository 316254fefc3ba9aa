// `age -d` with a passphrase reads it from the terminal: driven through a pseudo-terminal
// (python3's pty module), the plaintext written to a file.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';

const PTY = `
import os, pty, sys
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

export function ageDecryptWithPassphrase(file: string, passphrase: string): { code: number | null; out: string; plain: string } {
  const outFile = `${file}.out`;
  rmSync(outFile, { force: true });
  const r = spawnSync('python3', ['-c', PTY, passphrase, file, outFile], { encoding: 'utf8', timeout: 60_000 });
  const plain = existsSync(outFile) ? readFileSync(outFile, 'utf8') : '';
  rmSync(outFile, { force: true });
  return { code: r.status, out: r.stdout, plain };
}
