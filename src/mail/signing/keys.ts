// Where each DKIM selector's private key lives: nexus1 (provisioned at creation) at
// keys/dkim/<IMVU>.pem as src/imvu/provision.ts writes it, a rotated selector beside it at
// keys/dkim/<IMVU>.<selector>.pem. The public halves are in the `dkim_keys` projection.
import { readFileSync } from 'node:fs';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import type { SqlReader } from '../../core/store/index.ts';
import { dkimSelectorKeyPath } from '../../imvu/provision.ts';

export const selectorKeyPath = dkimSelectorKeyPath;

export interface SigningKey {
  imvu: string;
  /** The signing domain (d=): the IMVU's primary domain, whose zone publishes the selector. */
  domain: string;
  selector: string;
  privateKey: KeyObject;
  /** The public key as published (base64 SPKI). */
  publicKey: string;
  /** The private key as PKCS#8 PEM (what the signer takes). */
  pem?: string;
}

// Private keys read once per (IMVU, selector): a selector's key never changes (a rotation makes a
// new selector), and the file is read again after a restart.
const loaded = new Map<string, { privateKey: KeyObject; pem: string }>();
const MAX_LOADED = 10_000;

/** The IMVU's active key; throws when it has none (a mail system that cannot sign must not send). */
export async function activeKey(dataDir: string, db: SqlReader, imvu: string): Promise<SigningKey> {
  const row = await db.get<{ selector: string; public_key: string; domain: string }>(
    "SELECT k.selector, k.public_key, i.domain FROM dkim_keys k JOIN imvus i ON i.id = k.imvu WHERE k.imvu = ? AND k.state = 'active'",
    [imvu],
  );
  if (!row) throw new Error(`${imvu} has no active DKIM key`);
  const path = selectorKeyPath(dataDir, imvu, row.selector);
  let k = loaded.get(path);
  if (!k) {
    const pem = readFileSync(path, 'utf8');
    k = { privateKey: createPrivateKey(pem), pem };
    if (loaded.size >= MAX_LOADED) loaded.clear();
    loaded.set(path, k);
  }
  return { imvu, domain: row.domain, selector: row.selector, privateKey: k.privateKey, pem: k.pem, publicKey: row.public_key };
}
