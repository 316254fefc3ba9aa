// An identity's Ed25519 key in OpenSSH's formats: the public key line (`ssh-ed25519 AAAA...`) and
// the unencrypted private key file (PROTOCOL.key, "openssh-key-v1"). age encrypts to the first and
// `age -d -i FILE` decrypts with the second, so the key a creator already holds opens the secrets
// of their exit archive without any other key to keep.
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';

function field(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

const ED25519 = Buffer.from('ssh-ed25519');

function rawKeys(key: KeyObject): { seed: Buffer; pub: Buffer } {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || !jwk.x) throw new Error('not an Ed25519 key');
  const pub = Buffer.from(jwk.x, 'base64url');
  const seed = jwk.d ? Buffer.from(jwk.d, 'base64url') : Buffer.alloc(0);
  return { seed, pub };
}

/** `ssh-ed25519 <base64> [comment]` of a public (or private) Ed25519 key. */
export function sshPublicKey(key: KeyObject | Buffer, comment?: string): string {
  const pub = Buffer.isBuffer(key) ? key : rawKeys(key.type === 'private' ? createPublicKey(key) : key).pub;
  if (pub.length !== 32) throw new Error('an Ed25519 public key has 32 bytes');
  const line = `ssh-ed25519 ${Buffer.concat([field(ED25519), field(pub)]).toString('base64')}`;
  return comment ? `${line} ${comment}` : line;
}

/** The private key as an unencrypted OpenSSH private key file (write it with mode 0600). */
export function sshPrivateKey(key: KeyObject, comment = ''): string {
  const { seed, pub } = rawKeys(key);
  if (seed.length !== 32) throw new Error('not an Ed25519 private key');
  const check = randomBytes(4);
  let section = Buffer.concat([check, check, field(ED25519), field(pub), field(Buffer.concat([seed, pub])), field(Buffer.from(comment))]);
  const pad: number[] = [];
  for (let i = 1; (section.length + pad.length) % 8 !== 0; i++) pad.push(i);
  section = Buffer.concat([section, Buffer.from(pad)]);
  const publicBlob = Buffer.concat([field(ED25519), field(pub)]);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), field(Buffer.from('none')), field(Buffer.from('none')), field(Buffer.alloc(0)), Buffer.from([0, 0, 0, 1]), field(publicBlob), field(section)]);
  const b64 = body.toString('base64').match(/.{1,70}/g)!.join('\n');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`;
}
