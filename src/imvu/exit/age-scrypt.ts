// age v1 encryption to a passphrase (https://age-encryption.org/v1, C2SP age): one `scrypt`
// recipient stanza (salt, log2 of the work factor; the file key wrapped with ChaCha20-Poly1305
// under scrypt(passphrase, "age-encryption.org/v1/scrypt" || salt, N, r=8, p=1)), the header MAC
// (HMAC-SHA256 under HKDF(file key, "", "header")), then the payload: a 16-byte nonce and 64 KiB
// chunks sealed with ChaCha20-Poly1305 under HKDF(file key, nonce, "payload"), each nonce an
// 11-byte big-endian counter and a last-chunk flag. `age -d` opens it with the passphrase.
import { createCipheriv, createHmac, hkdfSync, randomBytes, scryptSync } from 'node:crypto';

const CHUNK = 64 * 1024;
const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

function seal(key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

/** The age file of `plain` for `passphrase`; `logN` is the scrypt work factor (age's default 18). */
export function encryptWithPassphrase(plain: Buffer, passphrase: string, logN = 18): Buffer {
  if (!passphrase) throw new Error('an empty passphrase protects nothing');
  if (!Number.isInteger(logN) || logN < 10 || logN > 22) throw new Error('the scrypt work factor must be 10..22');
  const fileKey = randomBytes(16);
  const salt = randomBytes(16);
  const wrapKey = scryptSync(Buffer.from(passphrase, 'utf8'), Buffer.concat([Buffer.from('age-encryption.org/v1/scrypt'), salt]), 32, {
    N: 2 ** logN,
    r: 8,
    p: 1,
    maxmem: 128 * 2 ** logN * 8 + 16 * 1024 * 1024,
  });
  const body = seal(wrapKey, Buffer.alloc(12), fileKey);
  const header = `age-encryption.org/v1\n-> scrypt ${b64(salt)} ${logN}\n${b64(body)}\n---`;
  const macKey = Buffer.from(hkdfSync('sha256', fileKey, Buffer.alloc(0), 'header', 32));
  const mac = createHmac('sha256', macKey).update(header).digest();
  const nonce = randomBytes(16);
  const payloadKey = Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
  const chunks: Buffer[] = [Buffer.from(`${header} ${b64(mac)}\n`), nonce];
  const count = Math.max(1, Math.ceil(plain.length / CHUNK));
  for (let i = 0; i < count; i++) {
    const n = Buffer.alloc(12);
    n.writeUIntBE(i, 5, 6);
    if (i === count - 1) n[11] = 1;
    chunks.push(seal(payloadKey, n, plain.subarray(i * CHUNK, (i + 1) * CHUNK)));
  }
  return Buffer.concat(chunks);
}
