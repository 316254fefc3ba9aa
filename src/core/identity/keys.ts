import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, chmodSync, openSync, fsyncSync, closeSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import type { IdentityId } from '../types.ts';

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function generateKeyPair(): KeyPair {
  return generateKeyPairSync('ed25519');
}

const rawOf = new WeakMap<KeyObject, Buffer>();

/**
 * The raw 32 bytes of a key's public half. Cached per KeyObject (KeyObjects are immutable): every
 * signCommand needs it for the actor id, and deriving and exporting it was ~15% of a signing
 * sender's main thread. A copy is returned so that a caller cannot change the cached bytes.
 */
export function publicKeyRaw(key: KeyObject): Buffer {
  let raw = rawOf.get(key);
  if (!raw) {
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    raw = pub.export({ format: 'der', type: 'spki' }).subarray(-32);
    rawOf.set(key, raw);
  }
  return Buffer.from(raw);
}

const keyCache = new Map<string, KeyObject>();

/** publicKeyFromRaw for a base64 key, cached: identities are immutable and key parsing costs ~75 µs. */
export function cachedPublicKey(base64: string): KeyObject {
  let key = keyCache.get(base64);
  if (!key) {
    key = publicKeyFromRaw(Buffer.from(base64, 'base64'));
    if (keyCache.size >= 10_000) keyCache.clear();
    keyCache.set(base64, key);
  }
  return key;
}

export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new Error(`an Ed25519 public key is 32 bytes, got ${raw.length}`);
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' });
}

function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/**
 * Self-certifying id: whoever presents the key can prove the id, nobody can claim another's.
 * 160 bits of SHA-256 keeps ids short enough to type while collisions stay out of reach.
 */
export function identityIdFromPublicKey(raw: Uint8Array): IdentityId {
  if (raw.length !== 32) throw new Error(`an Ed25519 public key is 32 bytes, got ${raw.length}`);
  return 'nx1' + base32(createHash('sha256').update(raw).digest().subarray(0, 20));
}

export function isIdentityId(s: unknown): s is IdentityId {
  return typeof s === 'string' && /^nx1[a-z2-7]{32}$/.test(s);
}

/** Writes a private key as PKCS#8 PEM, mode 0600 from the first byte, durably. */
export function savePrivateKey(path: string, key: KeyObject): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  chmodSync(tmp, 0o600);
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
}

export function loadPrivateKey(path: string): KeyObject {
  const key = createPrivateKey(readFileSync(path));
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${path} is not an Ed25519 private key`);
  return key;
}
