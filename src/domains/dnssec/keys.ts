import { createHash, createPrivateKey, createPublicKey, generateKeyPair as generateKeyPairCb, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SqlReader } from '../../core/store/index.ts';
import { ALGORITHM_ECDSAP256SHA256, CSK_FLAGS, dnskeyRdata, keyTag } from './keytag.ts';
import { nameWire } from './wire.ts';

// Zone signing keys. One ECDSA P-256 key per zone, used as a combined signing key (CSK: flags
// 257, it signs the DNSKEY RRset and every other RRset): one key means one DS at the parent, one
// signature per RRset and nothing to roll in step. The platform holds the private key under
// `<dataDir>/keys/dnssec/<zone>.pem` (PKCS#8, 0600); the public key is recorded in the ledger by a
// platform-signed `dnssec.publish` entry, whose projection (`dnssec_keys`) is what the signer
// trusts: a private key on disk that does not match the ledger is never used.

export const DNSSEC_KEY_DIR = join('keys', 'dnssec');
/** DS digest type 2: SHA-256 (RFC 4509). */
export const DIGEST_SHA256 = 2;

const generateKeyPair = promisify(generateKeyPairCb);
// One label is enough: the platform's own zone may be a top-level suffix such as `world`.
const ZONE_RE = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/;

/** Where a zone's private key lives in a data directory. */
export function dnssecKeyPath(dataDir: string, zone: string): string {
  if (!ZONE_RE.test(zone)) throw new Error(`not a zone name: ${zone}`);
  return join(dataDir, DNSSEC_KEY_DIR, `${zone}.pem`);
}

/** The DNSKEY public key field of a P-256 key: x || y, 64 octets (RFC 6605 section 4). */
export function rawPublicKey(key: KeyObject): Buffer {
  const jwk = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' });
  if (jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new Error('not an ECDSA P-256 key');
  return Buffer.concat([Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
}

/** A P-256 public key object from the DNSKEY public key field. */
export function publicKeyFromRaw(raw: Buffer): KeyObject {
  if (raw.length !== 64) throw new Error(`a P-256 DNSKEY public key has 64 octets, not ${raw.length}`);
  return createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: raw.subarray(0, 32).toString('base64url'), y: raw.subarray(32).toString('base64url') },
    format: 'jwk',
  });
}

/** Generates a zone's key pair (off the event loop). */
export async function generateZoneKey(): Promise<{ privateKey: KeyObject; publicKey: Buffer; pem: string }> {
  const { privateKey } = await generateKeyPair('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicKey: rawPublicKey(privateKey), pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** The DS digest: SHA-256(owner name in canonical wire form || DNSKEY RDATA) (RFC 4034 5.1.4, RFC 4509). */
export function dsDigest(zone: string, dnskey: Buffer): Buffer {
  return createHash('sha256').update(nameWire(zone)).update(dnskey).digest();
}

export interface ZoneKey {
  zone: string;
  imvu: string;
  algorithm: number;
  flags: number;
  keyTag: number;
  /** The DNSKEY public key field (64 octets). */
  publicKey: Buffer;
  privateKey: KeyObject;
  /** The DNSKEY RDATA in dns-packet's shape. */
  dnskey: { flags: number; algorithm: number; key: Buffer };
}

/** Where the signers get a zone's key. */
export interface ZoneKeys {
  /**
   * The key of `zone` as of its SOA serial (every `dnssec.publish` bumps the serial, so a key
   * cached for a serial is exact), or undefined if the zone has none (it is served unsigned).
   */
  forZone(zone: string, serial?: number): ZoneKey | undefined | Promise<ZoneKey | undefined>;
}

interface KeyRow {
  imvu: string;
  algorithm: number;
  flags: number;
  public_key: string;
  [k: string]: string | number;
}

/** Builds a ZoneKey from a `dnssec_keys` row and the private key, refusing a pair that does not match. */
export function zoneKeyOf(zone: string, row: KeyRow, privateKey: KeyObject): ZoneKey {
  const publicKey = Buffer.from(row.public_key, 'base64');
  if (Number(row.algorithm) !== ALGORITHM_ECDSAP256SHA256) throw new Error(`zone ${zone}: algorithm ${row.algorithm} is not supported`);
  if (!rawPublicKey(privateKey).equals(publicKey)) throw new Error(`zone ${zone}: the private key on disk does not match the DNSKEY in the ledger`);
  const flags = Number(row.flags);
  const dnskey = { flags, algorithm: ALGORITHM_ECDSAP256SHA256, key: publicKey };
  return { zone, imvu: row.imvu, algorithm: ALGORITHM_ECDSAP256SHA256, flags, keyTag: keyTag(dnskeyRdata(flags, ALGORITHM_ECDSAP256SHA256, publicKey)), publicKey, privateKey, dnskey };
}

/**
 * Zone keys of a data directory: public halves from the `dnssec_keys` projection, private halves
 * from `<dataDir>/keys/dnssec/`. Cached per zone and serial; the private key file is read again
 * only when the published key changes.
 */
export class DnssecKeyring implements ZoneKeys {
  private readonly cache = new Map<string, { serial: number; key: ZoneKey | undefined }>();
  private readonly loading = new Map<string, Promise<ZoneKey | undefined>>();

  constructor(
    private readonly db: SqlReader,
    private readonly dataDir: string,
  ) {}

  forZone(zone: string, serial?: number): ZoneKey | undefined | Promise<ZoneKey | undefined> {
    const hit = this.cache.get(zone);
    if (hit && serial !== undefined && hit.serial === serial) return hit.key;
    const key = `${zone} ${serial ?? ''}`;
    let p = this.loading.get(key);
    if (!p) {
      p = this.load(zone, serial, hit?.key).finally(() => this.loading.delete(key));
      this.loading.set(key, p);
    }
    return p;
  }

  private async load(zone: string, serial: number | undefined, previous: ZoneKey | undefined): Promise<ZoneKey | undefined> {
    const row = await this.db.get<KeyRow>('SELECT imvu, algorithm, flags, public_key FROM dnssec_keys WHERE zone = ?', [zone]);
    let key: ZoneKey | undefined;
    if (row) {
      key =
        previous && previous.publicKey.toString('base64') === row.public_key && previous.flags === Number(row.flags) && previous.imvu === row.imvu
          ? previous
          : zoneKeyOf(zone, row, createPrivateKey(readFileSync(dnssecKeyPath(this.dataDir, zone))));
    }
    if (serial !== undefined) this.cache.set(zone, { serial, key });
    return key;
  }
}

export { ALGORITHM_ECDSAP256SHA256, CSK_FLAGS, dnskeyRdata, keyTag };
