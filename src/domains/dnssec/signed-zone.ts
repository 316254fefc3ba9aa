import type { Answer } from 'dns-packet';
import type { SqlReader } from '../../core/store/index.ts';
import { Zone } from '../dns-authority/zone.ts';
import { lowerAscii } from '../records/rdata.ts';
import { SOA_TTL, synthesiseSoa } from '../records/soa.ts';
import { readZoneRows } from '../registry/zone.ts';
import { NsecChain } from './chain.ts';
import type { ZoneKey, ZoneKeys } from './keys.ts';
import { DNSKEY_TTL } from './online.ts';
import { rrText } from './presentation.ts';
import { signRRset, validityAround } from './sign.ts';
import { compareNames, typeCode } from './wire.ts';
import { HASH_SHA384, SCHEME_SIMPLE, ZONEMD, zonemdAnswer, zonemdDigest } from '../zonefile/zonemd.ts';

// A whole zone signed at once, for zone transfers (AXFR) and the signed master-file export that
// `dnssec-verify` and `ldns-verify-zone` check. A transferred zone carries a real NSEC chain (chain.ts,
// the one online answers prove denials with by default) (RFC 4034 section 4,
// RFC 4035 2.3): one NSEC per owner name with authoritative data or a delegation, in canonical
// order, the last pointing back to the apex. Glue and other data below or at a delegation point
// (except NS and DS) is not authoritative: it is transferred unsigned and left out of the chain.
//
// Signature validity: inception an hour back, expiration 21 days ahead by default: longer than
// the SOA expire timer (14 days), so a secondary cut off from us lets the zone expire before its
// signatures do. A secondary that keeps refreshing a zone that never changes would still serve
// signatures past their expiration after three weeks: the serial would have to move when the
// zone is re-signed (not done yet; see src/domains/README.md).

export interface SignedZoneOptions {
  /** Clock (milliseconds). Default now. */
  now?: number;
  /** Seconds an inception lies in the past. Default 3600. */
  inceptionOffset?: number;
  /** Seconds a signature is valid. Default 21 days. */
  lifetime?: number;
}

export interface SignedZone {
  zone: string;
  imvu: string;
  serial: number;
  /** The zone's key; undefined if it has none (then `records` are the zone unsigned). */
  key?: ZoneKey;
  /**
   * Every RR of the zone: the SOA first, then owner names in canonical order (RFC 4034 6.1), at
   * each name its RRsets by type code, each authoritative RRset followed by its RRSIG. The apex
   * holds the DNSKEY; every name in the chain its NSEC (and the NSEC's RRSIG). An AXFR sends
   * these, then the SOA again.
   */
  records: Answer[];
}

/** Compiles the zone as the server answers it (an IMVU's or the platform's own), reading the projections consistently. */
export async function compileZone(db: SqlReader, zone: string): Promise<Zone> {
  const name = lowerAscii(zone.replace(/\.$/, ''));
  const read = await readZoneRows(db, name);
  if (!read) throw new Error(`zone ${name} is not hosted here`);
  return new Zone(name, read.imvu, read.serial, synthesiseSoa(name, read.serial, read.suffix), read.rows);
}

const rr = (name: string, type: string, ttl: number, data: unknown): Answer => ({ name, type, class: 'IN', ttl, data }) as Answer;

/**
 * The zone `zone` with DNSSEC records: DNSKEY, an RRSIG per authoritative RRset, and the NSEC
 * chain. `keys` is where the zone's key comes from (a `DnssecKeyring` over the data directory).
 */
export async function signedZoneRecords(db: SqlReader, zone: string, keys: ZoneKeys, opts: SignedZoneOptions = {}): Promise<SignedZone> {
  const z = await compileZone(db, zone);
  return signZone(z, await keys.forZone(z.name, z.serial), opts);
}

/** Signs a compiled zone with `key` (or lists it unsigned without one). Pure apart from the clock and ECDSA's randomness. */
export function signZone(z: Zone, key: ZoneKey | undefined, opts: SignedZoneOptions = {}): SignedZone {
  const validity = validityAround(opts.now ?? Date.now(), opts.inceptionOffset ?? 3600, opts.lifetime ?? 21 * 86_400);
  const owners = [...z.owners()].sort((a, b) => compareNames(a[0], b[0]));
  // Owners in the NSEC chain: the apex, names with authoritative data, delegation points.
  const chain = key ? new NsecChain(z) : undefined;
  const records: Answer[] = [];
  let soa: Answer | undefined;
  const sign = (owner: string, type: string, ttl: number, data: readonly unknown[]) => {
    if (key) records.push(rr(owner, 'RRSIG', ttl, signRRset(key, owner, type, ttl, data, validity)));
  };
  // Where the apex ZONEMD goes: it is computed last, over everything else (RFC 8976 3).
  let zonemdAt = -1;
  for (const [name, sets] of owners) {
    const cut = z.delegationOf(name);
    const authoritative = !cut;
    const delegation = cut === name;
    const types = [...sets.keys()];
    if (name === z.name && key) types.push('DNSKEY');
    types.sort((a, b) => typeCode(a) - typeCode(b));
    for (const type of types) {
      if (type === 'DNSKEY') {
        // Every key of the zone, the RRset signed by each key held here (a rollover has two).
        for (const d of key!.dnskeys) records.push(rr(name, 'DNSKEY', DNSKEY_TTL, d));
        for (const signer of key!.keySigners) records.push(rr(name, 'RRSIG', DNSKEY_TTL, signRRset(signer, name, 'DNSKEY', DNSKEY_TTL, key!.dnskeys, validity)));
        continue;
      }
      if (type === ZONEMD && name === z.name) {
        zonemdAt = records.length;
        continue;
      }
      const set = sets.get(type)!;
      const at = type === 'SOA' ? (soa = rr(name, 'SOA', SOA_TTL, set.data[0])) : undefined;
      if (!at) for (const d of set.data) records.push(rr(name, type, set.ttl, d));
      if (authoritative || (delegation && type === 'DS')) sign(name, type, type === 'SOA' ? SOA_TTL : set.ttl, set.data);
    }
    const link = chain?.at(name);
    if (link) {
      records.push(rr(name, 'NSEC', chain!.ttl, link.data));
      sign(name, 'NSEC', chain!.ttl, [link.data]);
    }
  }
  if (!soa) throw new Error(`zone ${z.name} has no SOA`);
  if (zonemdAt >= 0) {
    // The digest of the zone as it is here, signatures and NSEC chain included, then its own RRSIG.
    const digest = zonemdDigest(z.name, z.serial, [soa, ...records]);
    const zonemd = zonemdAnswer(z.name, SOA_TTL, { serial: z.serial, scheme: SCHEME_SIMPLE, algorithm: HASH_SHA384, digest });
    const added: Answer[] = [zonemd];
    if (key) added.push(rr(z.name, 'RRSIG', SOA_TTL, signRRset(key, z.name, ZONEMD, SOA_TTL, [(zonemd as unknown as { data: Buffer }).data], validity)));
    records.splice(zonemdAt, 0, ...added);
  }
  return { zone: z.name, imvu: z.imvu, serial: z.serial, ...(key ? { key } : {}), records: [soa, ...records] };
}

/** The signed zone as a BIND master file (`nexus dns export --signed`, `dnssec-verify`, `ldns-verify-zone`). */
export async function signedZoneText(db: SqlReader, zone: string, keys: ZoneKeys, opts: SignedZoneOptions = {}): Promise<string> {
  const s = await signedZoneRecords(db, zone, keys, opts);
  const lines = [
    `; zone ${s.zone} of ${s.imvu}, serial ${s.serial}, exported from the Nexus projections`,
    s.key ? `; signed with DNSKEY ${s.key.keyTag} (algorithm ${s.key.algorithm}, flags ${s.key.flags}); NSEC chain` : '; this zone has no DNSSEC key: unsigned',
    `$ORIGIN ${s.zone}.`,
    `$TTL ${SOA_TTL}`,
    ...s.records.map(rrText),
  ];
  return lines.join('\n') + '\n';
}
