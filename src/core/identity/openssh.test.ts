import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from './keys.ts';
import { sshPrivateKey, sshPublicKey } from './openssh.ts';

const has = (cmd: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
};

describe('OpenSSH forms of an identity key', () => {
  it('ssh-keygen derives the same public key from the private key file, and age round-trips with them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-ssh-'));
    try {
      const { privateKey } = generateKeyPair();
      const file = join(dir, 'id');
      writeFileSync(file, sshPrivateKey(privateKey, 'alice'), { mode: 0o600 });
      const pub = sshPublicKey(privateKey);
      if (has('ssh-keygen')) expect(execFileSync('ssh-keygen', ['-y', '-f', file]).toString().trim().split(' ').slice(0, 2).join(' ')).toBe(pub);
      expect(has('age'), 'age (Debian package age) must be installed').toBe(true);
      const sealed = execFileSync('age', ['-r', pub], { input: 'secret\n' });
      expect(execFileSync('age', ['-d', '-i', file], { input: sealed }).toString()).toBe('secret\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
