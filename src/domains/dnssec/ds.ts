import type { SqlReader } from '../../core/store/index.ts';
import { dnskeyRdata, keyTag } from './keytag.ts';
import { DIGEST_SHA256, dsDigest } from './keys.ts';
import { DNSKEY_TTL } from './online.ts';

// What a creator hands to the parent zone's registry (the DS record), and what a validator can be
// given directly instead (the trust anchor): both derived from the public key in the ledger
// (`dnssec_keys`), never from the private key.

export interface DsView {
  zone: string;
  /** The IMVU that owns the zone; null for the platform's own zone (the suffix). */
  imvu: string | null;
  keyTag: number;
  algorithm: number;
  /** DS digest type: 2 (SHA-256). */
  digestType: number;
  /** Hex, upper case. */
  digest: string;
  flags: number;
  /** The DNSKEY public key field in base64. */
  publicKey: string;
  /** The ledger entry that published the key. */
  entry: number;
  /** `zone. 3600 IN DS <tag> 13 2 <digest>`: what the parent publishes. */
  ds: string;
  /** `zone. 3600 IN DNSKEY 257 3 13 <key>` */
  dnskey: string;
  /** For `delv -a FILE +root=zone` or a resolver's configuration: `trust-anchors { "zone." static-key 257 3 13 "<key>"; };` */
  trustAnchor: string;
}

interface KeyRow {
  imvu: string;
  algorithm: number;
  flags: number;
  public_key: string;
  state: string;
  since: string;
  entry: number;
  [k: string]: string | number;
}

/** A key of a zone with its rollover state (`active` signs; `published` waits to; `retired` leaves). */
export interface KeyView extends DsView {
  state: string;
  /** When the key entered its state (the entry's time). */
  since: string;
}

function viewOf(name: string, row: KeyRow): KeyView {
  const flags = Number(row.flags);
  const algorithm = Number(row.algorithm);
  const rdata = dnskeyRdata(flags, algorithm, Buffer.from(row.public_key, 'base64'));
  const tag = keyTag(rdata);
  const digest = dsDigest(name, rdata).toString('hex').toUpperCase();
  return {
    zone: name,
    imvu: row.imvu === '' ? null : row.imvu,
    keyTag: tag,
    algorithm,
    digestType: DIGEST_SHA256,
    digest,
    flags,
    publicKey: row.public_key,
    entry: Number(row.entry),
    ds: `${name}. ${DNSKEY_TTL} IN DS ${tag} ${algorithm} ${DIGEST_SHA256} ${digest}`,
    dnskey: `${name}. ${DNSKEY_TTL} IN DNSKEY ${flags} 3 ${algorithm} ${row.public_key}`,
    trustAnchor: `trust-anchors { "${name}." static-key ${flags} 3 ${algorithm} "${row.public_key}"; };`,
    state: row.state,
    since: row.since,
  };
}

/** Every key of a zone (several during a rollover), in ledger order. */
export async function keyViews(db: SqlReader, zone: string): Promise<KeyView[]> {
  const name = zone.toLowerCase().replace(/\.$/, '');
  const rows = await db.all<KeyRow>('SELECT imvu, algorithm, flags, public_key, state, since, entry FROM dnssec_keys WHERE zone = ? ORDER BY entry, public_key', [name]);
  return rows.map((r) => viewOf(name, r));
}

/** The DS and DNSKEY of a zone's active key, or undefined if the zone has no DNSSEC key. */
export async function dsView(db: SqlReader, zone: string): Promise<DsView | undefined> {
  const keys = await keyViews(db, zone);
  const active = keys.find((k) => k.state === 'active');
  if (!active) return undefined;
  const { state: _state, since: _since, ...view } = active;
  return view;
}

/**
 * The platform's own zone (the DNS suffix, src/domains/registry): its DS and DNSKEY are the one
 * trust anchor a validating resolver needs for every IMVU zone below it, whose DS it serves.
 * Undefined until the platform has declared it.
 */
export async function platformZoneDsView(db: SqlReader): Promise<DsView | undefined> {
  const platform = await db.get<{ suffix: string }>('SELECT suffix FROM platform LIMIT 1');
  if (!platform) return undefined;
  const view = await dsView(db, platform.suffix);
  return view && view.imvu === null ? view : undefined;
}
