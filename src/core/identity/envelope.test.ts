import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, identityIdFromPublicKey, isIdentityId, loadPrivateKey, publicKeyRaw, savePrivateKey } from './keys.ts';
import { commandSigningBytes, signCommand, verifyCommandSignature } from './envelope.ts';

describe('identities', () => {
  it('derives a stable self-certifying id from the public key', () => {
    const { privateKey, publicKey } = generateKeyPair();
    const id = identityIdFromPublicKey(publicKeyRaw(privateKey));
    expect(id).toBe(identityIdFromPublicKey(publicKeyRaw(publicKey)));
    expect(isIdentityId(id)).toBe(true);
    expect(identityIdFromPublicKey(publicKeyRaw(generateKeyPair().publicKey))).not.toBe(id);
  });

  it('exports a key once for its raw public bytes, and hands out copies of the same bytes', () => {
    const { privateKey, publicKey } = generateKeyPair();
    const expected = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    // export() lives on the public KeyObject class (createPublicKey of a private key is one too).
    const exportSpy = vi.spyOn(Object.getPrototypeOf(publicKey) as typeof publicKey, 'export');
    try {
      const first = publicKeyRaw(privateKey);
      for (let i = 0; i < 5; i++) expect(publicKeyRaw(privateKey).equals(expected)).toBe(true);
      // signCommand derives the actor from the key on every command: no export after the first.
      for (let i = 0; i < 5; i++) signCommand(privateKey, 'identity.register', {}, { origin: 'test.world' });
      expect(exportSpy).toHaveBeenCalledTimes(1);
      first.fill(0);
      expect(publicKeyRaw(privateKey).equals(expected)).toBe(true);
    } finally {
      exportSpy.mockRestore();
    }
  });

  it('saves private keys with mode 0600 and loads them back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-keys-'));
    try {
      const { privateKey } = generateKeyPair();
      const file = join(dir, 'sub', 'alice.key');
      savePrivateKey(file, privateKey);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(publicKeyRaw(loadPrivateKey(file)).equals(publicKeyRaw(privateKey))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('signed commands', () => {
  const { privateKey, publicKey } = generateKeyPair();

  it('binds actor, nonce and time, and signs canonical bytes (key order does not matter)', () => {
    const s = signCommand(privateKey, 'dns.record.add', { zone: 'a.world', name: 'www', type: 'A', value: '192.0.2.1' }, { origin: 'nexus.test/envelope' });
    expect(s.command.actor).toBe(identityIdFromPublicKey(publicKeyRaw(publicKey)));
    expect(s.command.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(verifyCommandSignature(s, publicKey)).toBe(true);
    const reordered = { ...s, command: { body: s.command.body, ts: s.command.ts, nonce: s.command.nonce, origin: s.command.origin, actor: s.command.actor, type: s.command.type, v: 1 as const } };
    expect(commandSigningBytes(reordered.command).equals(commandSigningBytes(s.command))).toBe(true);
    expect(verifyCommandSignature(reordered, publicKey)).toBe(true);
  });

  it('rejects any change to a signed command, and other keys', () => {
    const s = signCommand(privateKey, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 4 }, { origin: 'nexus.test/envelope' });
    fc.assert(
      fc.property(fc.constantFrom('type', 'actor', 'nonce', 'ts', 'body'), fc.string({ minLength: 1, maxLength: 8 }), (field, junk) => {
        const cmd = { ...s.command, [field]: field === 'body' ? { ...s.command.body, cpu_cores: junk } : s.command[field as 'nonce'] + junk };
        expect(verifyCommandSignature({ command: cmd as typeof s.command, sig: s.sig }, publicKey)).toBe(false);
      }),
    );
    expect(verifyCommandSignature(s, generateKeyPair().publicKey)).toBe(false);
    expect(verifyCommandSignature({ ...s, sig: 'not base64 at all' }, publicKey)).toBe(false);
    expect(verifyCommandSignature({ ...s, sig: '' }, publicKey)).toBe(false);
  });
});
