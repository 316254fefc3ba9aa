import { describe, expect, it } from 'vitest';
import { checkAppPassword, hashAppPassword } from './app-password.ts';
import { parseAppPasswordHash } from '../../core/policy/commands.ts';

describe('app passwords', () => {
  it('hash with a fresh salt, verify, and refuse a wrong password', async () => {
    const a = await hashAppPassword('s3cret pass');
    const b = await hashAppPassword('s3cret pass');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$/);
    expect(await checkAppPassword(a, 's3cret pass')).toBe(true);
    expect(await checkAppPassword(a, 's3cret pasS')).toBe(false);
  });

  it('refuses hashes whose cost is a memory bomb or too weak', () => {
    const salt = Buffer.alloc(16).toString('base64url');
    const key = Buffer.alloc(32).toString('base64url');
    expect(parseAppPasswordHash(`scrypt$${2 ** 20}$8$1$${salt}$${key}`)).toMatch(/memory/);
    expect(parseAppPasswordHash(`scrypt$1024$8$1$${salt}$${key}`)).toMatch(/power of two >=/);
    expect(parseAppPasswordHash(`scrypt$${2 ** 15 + 1}$8$1$${salt}$${key}`)).toMatch(/power of two/);
    expect(typeof parseAppPasswordHash(`scrypt$${2 ** 15}$8$1$${salt}$${key}`)).toBe('object');
  });
});
