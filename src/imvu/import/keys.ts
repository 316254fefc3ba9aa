// The private keys of a re-imported IMVU, installed from its verified exit archive (staged by the
// daemon under DATA/imports/<archive sha256>/verified/<IMVU>/): the DNSSEC keys in BIND's private key
// format, so the zone keeps signing with the keys whose DS the parent holds, and the DKIM key, so
// mail keeps verifying under the published selector. Run by the chokepoint's provision hook inside
// the import's write transaction: a key missing or not matching the public key the entry records
// fails the import as a whole.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dnssecKeyPath, rawPublicKey } from '../../domains/dnssec/keys.ts';
import { dnskeyRdata, keyTag } from '../../domains/dnssec/keytag.ts';
import { dkimKeyPath, writeSecretFile } from '../provision.ts';
import { stagingDir } from './paths.ts';

/** An ECDSA P-256 private key from BIND's private key file and the DNSKEY public key field it must match. */
export function bindPrivateKeyToKeyObject(text: string, publicKey: Buffer): KeyObject {
  if (!/^Algorithm: 13\b/m.test(text)) throw new Error('not an algorithm 13 (ECDSAP256SHA256) key');
  const d = /^PrivateKey: ([A-Za-z0-9+/=]+)\s*$/m.exec(text)?.[1];
  if (!d || Buffer.from(d, 'base64').length !== 32) throw new Error('no 32-octet PrivateKey field');
  const key = createPrivateKey({
    key: { kty: 'EC', crv: 'P-256', d: Buffer.from(d, 'base64').toString('base64url'), x: publicKey.subarray(0, 32).toString('base64url'), y: publicKey.subarray(32).toString('base64url') },
    format: 'jwk',
  });
  if (!rawPublicKey(key).equals(publicKey)) throw new Error('the private key does not match the DNSKEY');
  return key;
}

export interface ImportedKeys {
  imvu: string;
  archive: string;
  zone: { name: string; dnssec: { flags: number; publicKey: string }[] };
  dkim: { selector: string; publicKey: string; state: string }[];
}

/** Writes the DNSSEC keys of `zone` (and, for the IMVU's primary zone, its DKIM key) from the staged archive. */
export function installImportedKeys(dataDir: string, k: ImportedKeys, withDkim: boolean): void {
  const root = join(stagingDir(dataDir, k.archive), 'verified', k.imvu);
  if (!existsSync(root)) throw new Error(`the verified archive ${k.archive} is not staged here`);
  for (const key of k.zone.dnssec) {
    const pub = Buffer.from(key.publicKey, 'base64');
    const tag = keyTag(dnskeyRdata(key.flags, 13, pub));
    const file = join(root, 'domains', 'dnssec', `K${k.zone.name}.+013+${String(tag).padStart(5, '0')}.private`);
    if (!existsSync(file)) throw new Error(`the archive holds no private key for ${k.zone.name}'s DNSKEY ${tag}`);
    const priv = bindPrivateKeyToKeyObject(readFileSync(file, 'utf8'), pub);
    writeSecretFile(dnssecKeyPath(dataDir, k.zone.name, pub), priv.export({ type: 'pkcs8', format: 'pem' }) as string);
  }
  const active = k.dkim.find((d) => d.state === 'active');
  if (withDkim && active) {
    const file = join(root, 'mail', 'dkim', 'private.key');
    if (!existsSync(file)) throw new Error('the archive holds no DKIM private key');
    const priv = createPrivateKey({ key: readFileSync(file) });
    if ((createPublicKey(priv).export({ type: 'spki', format: 'der' }) as Buffer).toString('base64') !== active.publicKey)
      throw new Error(`the archive's DKIM private key is not the key of selector ${active.selector}`);
    const pem = priv.export({ type: 'pkcs8', format: 'pem' }) as string;
    writeSecretFile(dkimKeyPath(dataDir, k.imvu), pem);
  }
}
