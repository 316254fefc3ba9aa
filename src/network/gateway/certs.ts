// Key material of the gateway: the platform's local CA (certificates when no ACME CA is
// configured, so everything works offline), per-IMVU certificates for the names it serves, and
// the ES256 key that signs route tokens (HAProxy verifies with its public half).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
}

const execFileAsync = promisify(execFile);

/** openssl without holding the event loop (a certificate per new IMVU is two runs, tens of milliseconds). */
async function opensslAsync(args: string[], cwd: string): Promise<void> {
  await execFileAsync('openssl', args, { cwd, timeout: 30_000 });
}

export interface LocalCa {
  key: string;
  cert: string;
}

/** The platform CA in `dir` (created once: EC P-256, ten years). */
export function ensureLocalCa(dir: string): LocalCa {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = join(dir, 'ca.key');
  const cert = join(dir, 'ca.pem');
  if (!existsSync(key) || !existsSync(cert)) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '3650', '-subj', '/CN=nexus platform CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  }
  return { key, cert };
}

/**
 * A certificate for `hosts` signed by the local CA, written as one PEM (certificate, then key)
 * at `out`, which HAProxy loads. Valid `days` days.
 */
export async function issueLocal(ca: LocalCa, hosts: string[], out: string, days = 90): Promise<void> {
  if (!hosts.length) throw new Error('a certificate needs at least one name');
  for (const h of hosts) if (!/^[a-z0-9*]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(h)) throw new Error(`not a host name: ${h}`);
  const work = `${out}.work`;
  mkdirSync(work, { recursive: true, mode: 0o700 });
  try {
    writeFileSync(join(work, 'ext'), `subjectAltName=${hosts.map((h) => `DNS:${h}`).join(',')}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
    await opensslAsync(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'k.pem', '-out', 'r.csr', '-subj', `/CN=${hosts[0]}`], work);
    // A random 128-bit serial (positive: top bit clear) instead of the CA's serial file, which
    // issuances running side by side would race on.
    const serial = randomBytes(16);
    serial[0]! &= 0x7f;
    await opensslAsync(['x509', '-req', '-in', 'r.csr', '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${serial.toString('hex')}`, '-out', 'c.pem', '-days', String(days), '-extfile', 'ext'], work);
    writeFileSync(out, readFileSync(join(work, 'c.pem'), 'utf8') + readFileSync(join(work, 'k.pem'), 'utf8'), { mode: 0o600 });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The gateway's token key (ES256) in `dir`: private PEM (0600) and the public PEM HAProxy reads. */
export function ensureTokenKey(dir: string): { key: KeyObject; publicPem: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const priv = join(dir, 'token.key');
  const pub = join(dir, 'token.pub.pem');
  if (!existsSync(priv)) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
  }
  const key = createPrivateKey(readFileSync(priv));
  if (!existsSync(pub)) writeFileSync(pub, key.export({ type: 'pkcs8', format: 'pem' }));
  return { key, publicPem: pub };
}
