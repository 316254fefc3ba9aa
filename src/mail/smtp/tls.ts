// The certificate the SMTP servers offer with STARTTLS and on 465: the platform's (--tls-cert /
// --tls-key), or else a self-signed one made once at first start under DATA/keys/tls/, so that
// STARTTLS is always offered (opportunistic TLS between MTAs does not check the name).
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
  /** Where it came from: 'configured' or the self-signed files' directory. */
  source: string;
}

export async function ensureMailTls(dataDir: string, configured?: { cert: string | Buffer; key: string | Buffer }, name = 'localhost'): Promise<TlsPair> {
  if (configured) return { cert: Buffer.from(configured.cert), key: Buffer.from(configured.key), source: 'configured' };
  const dir = join(dataDir, 'keys', 'tls');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  if (!existsSync(cert) || !existsSync(key)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const cn = /^[a-z0-9.-]{1,253}$/i.test(name) ? name : 'localhost';
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
      '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`, '-keyout', key, '-out', cert,
    ], { timeout: 30_000 });
  }
  chmodSync(key, 0o600);
  return { cert: readFileSync(cert), key: readFileSync(key), source: dir };
}
