import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SqlReader } from '../../core/store/index.ts';
import { ALGORITHM_ECDSAP256SHA256, CSK_FLAGS, dnskeyRdata, keyTag } from './keytag.ts';
import { nameWire } from './wire.ts';
import { generatePrivateKey } from '../../core/keygen.ts';

// Zone signing keys. ECDSA P-256 keys used as combined signing keys (CSK: flags 257, they sign
// the DNSKEY RRset and every other RRset): one key means one DS at the parent and one signature
// per RRset. The platform holds the private keys under `<dataDir>/keys/dnssec/` (PKCS#8, 0600);
// the public keys are recorded in the ledger by platform-signed `dnssec.publish` entries, whose
// projection (`dnssec_keys`) is what the signer trusts: a private key on disk that does not match
// the ledger is never used.
//
// A key is replaced only by a timed rollover (gate 17, src/core/policy/gates/platform-powers.ts):
// the new key is published beside the active one (state `published`), after the DNSKEY TTL it
// becomes `active` and the old one `retired`, and after another TTL the retired key is removed.
// The DNSKEY RRset holds every key of the zone and is signed by each of them whose private half is
// here, so a resolver that trusts either key's DS validates at every step; every other RRset is
// signed by the active key only.

export const DNSSEC_KEY_DIR = join('keys', 'dnssec');
/** DS digest type 2: SHA-256 (RFC 4509). */
export const DIGEST_SHA256 = 2;

// One label is enough: the platform's own zone may be a top-level suffix such as `world`.
const ZONE_RE = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/;

/**
 * Where a zone's private key lives in a data directory: `<zone>.pem` for the key provisioned with
 * the zone, `<zone>.<id>.pem` for a rollover key (`id`: the first 16 hex digits of SHA-256 of the
 * DNSKEY public key field), so the keys of a rollover sit side by side.
 */
export function dnssecKeyPath(dataDir: string, zone: string, publicKey?: Buffer): string {
  if (!ZONE_RE.test(zone)) throw new Error(`not a zone name: ${zone}`);
  const id = publicKey ? `.${createHash('sha256').update(publicKey).digest('hex').slice(0, 16)}` : '';
  return join(dataDir, DNSSEC_KEY_DIR, `${zone}${id}.pem`);
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
  // On the key thread (src/core/keygen.ts), as DKIM keys: never on libuv's pool.
  const privateKey = await generatePrivateKey('p256');
  return { privateKey, publicKey: rawPublicKey(privateKey), pem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** The DS digest: SHA-256(owner name in canonical wire form || DNSKEY RDATA) (RFC 4034 5.1.4, RFC 4509). */
export function dsDigest(zone: string, dnskey: Buffer): Buffer {
  return createHash('sha256').update(nameWire(zone)).update(dnskey).digest();
}

/** One key of a zone with its private half. */
export interface SigningKey {
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

/** A zone's keys as the signers use them: the active key signs, `dnskeys` is the DNSKEY RRset. */
export interface ZoneKey extends SigningKey {
  /** Every DNSKEY the zone publishes (active, standby and retired keys), in ledger order. */
  dnskeys: { flags: number; algorithm: number; key: Buffer }[];
  /** The keys that sign the DNSKEY RRset: every key of the zone whose private half is here (the active one first). */
  keySigners: SigningKey[];
}

/** Where the signers get a zone's key. */
export interface ZoneKeys {
  /**
   * The keys of `zone` as of its SOA serial (every change of its keys bumps the serial, so keys
   * cached for a serial are exact), or undefined if the zone has none (it is served unsigned).
   */
  forZone(zone: string, serial?: number): ZoneKey | undefined | Promise<ZoneKey | undefined>;
}

export interface KeyRow {
  imvu: string;
  algorithm: number;
  flags: number;
  public_key: string;
  state?: string;
  [k: string]: string | number | undefined;
}

/** Builds a SigningKey from a `dnssec_keys` row and the private key, refusing a pair that does not match. */
export function signingKeyOf(zone: string, row: KeyRow, privateKey: KeyObject): SigningKey {
  const publicKey = Buffer.from(row.public_key, 'base64');
  if (Number(row.algorithm) !== ALGORITHM_ECDSAP256SHA256) throw new Error(`zone ${zone}: algorithm ${row.algorithm} is not supported`);
  if (!rawPublicKey(privateKey).equals(publicKey)) throw new Error(`zone ${zone}: the private key on disk does not match the DNSKEY in the ledger`);
  const flags = Number(row.flags);
  const dnskey = { flags, algorithm: ALGORITHM_ECDSAP256SHA256, key: publicKey };
  return { zone, imvu: row.imvu, algorithm: ALGORITHM_ECDSAP256SHA256, flags, keyTag: keyTag(dnskeyRdata(flags, ALGORITHM_ECDSAP256SHA256, publicKey)), publicKey, privateKey, dnskey };
}

/** A zone with one key: the row's key signs everything and is the whole DNSKEY RRset. */
export function zoneKeyOf(zone: string, row: KeyRow, privateKey: KeyObject): ZoneKey {
  const key = signingKeyOf(zone, row, privateKey);
  return { ...key, dnskeys: [key.dnskey], keySigners: [key] };
}

/** The zone's keys from its rows (ledger order) and the private halves found for them; the active key's private half is required. */
export function zoneKeysOf(zone: string, rows: KeyRow[], privateKeyOf: (row: KeyRow) => KeyObject | undefined): ZoneKey | undefined {
  const active = rows.find((r) => (r.state ?? 'active') === 'active');
  if (!active) return undefined;
  const activePrivate = privateKeyOf(active);
  if (!activePrivate) throw new Error(`zone ${zone}: no private key on disk for the active DNSKEY`);
  const key = signingKeyOf(zone, active, activePrivate);
  const dnskeys = rows.map((r) => ({ flags: Number(r.flags), algorithm: Number(r.algorithm), key: Buffer.from(r.public_key, 'base64') }));
  const others: SigningKey[] = [];
  for (const r of rows) {
    if (r === active) continue;
    const priv = privateKeyOf(r);
    // A standby or retired key without its private half is still published; it just does not sign the DNSKEY RRset.
    if (priv) others.push(signingKeyOf(zone, r, priv));
  }
  return { ...key, dnskeys, keySigners: [key, ...others] };
}

/**
 * The private half of a row's key: its own file (`<zone>.<id>.pem`), else the zone's first key
 * file (`<zone>.pem`) if that holds this key. A file that holds another key is returned only for
 * the active key (so the signer refuses the mismatch loudly); undefined when there is none.
 */
export function readPrivateKey(dataDir: string, zone: string, row: KeyRow): KeyObject | undefined {
  const publicKey = Buffer.from(row.public_key, 'base64');
  let mismatch: KeyObject | undefined;
  for (const path of [dnssecKeyPath(dataDir, zone, publicKey), dnssecKeyPath(dataDir, zone)]) {
    let pem: Buffer;
    try {
      pem = readFileSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    const key = createPrivateKey(pem);
    if (rawPublicKey(key).equals(publicKey)) return key;
    mismatch ??= key;
  }
  return (row.state ?? 'active') === 'active' ? mismatch : undefined;
}

/**
 * Zone keys of a data directory: public halves from the `dnssec_keys` projection, private halves
 * from `<dataDir>/keys/dnssec/`. Cached per zone and serial; the private key files are read again
 * only when the published keys change.
 */
export class DnssecKeyring implements ZoneKeys {
  private readonly cache = new Map<string, { serial: number; key: ZoneKey | undefined; rows: string }>();
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
      p = this.load(zone, serial, hit).finally(() => this.loading.delete(key));
      this.loading.set(key, p);
    }
    return p;
  }

  private async load(zone: string, serial: number | undefined, previous: { key: ZoneKey | undefined; rows: string } | undefined): Promise<ZoneKey | undefined> {
    const rows = await this.db.all<KeyRow & { [k: string]: string | number }>('SELECT imvu, algorithm, flags, public_key, state FROM dnssec_keys WHERE zone = ? ORDER BY entry, public_key', [zone]);
    const fingerprint = JSON.stringify(rows);
    const key = previous && previous.rows === fingerprint ? previous.key : zoneKeysOf(zone, rows, (r) => readPrivateKey(this.dataDir, zone, r));
    if (serial !== undefined) this.cache.set(zone, { serial, key, rows: fingerprint });
    return key;
  }
}

export { ALGORITHM_ECDSAP256SHA256, CSK_FLAGS, dnskeyRdata, keyTag };
