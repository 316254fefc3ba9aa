import { createHash } from 'node:crypto';
import type { Answer } from 'dns-packet';
import { canonicalRdata, compareNames, labelsOf, nameWire, rdataWire } from '../dnssec/wire.ts';

// ZONEMD, the message digest of a whole zone (RFC 8976), SIMPLE scheme. One function computes
// the digest (`zonemdDigest`): the server uses it for the ZONEMD it publishes at every zone's
// apex, and a client uses it to check a zone it received (AXFR, an export) against that record.
//
// What goes in (RFC 8976 3.3 and 3.3.1): every RR of the zone whose owner is at or below the
// origin (out-of-zone data is left out; glue and occluded data below a delegation stay in), except
// the apex ZONEMD RRset and the apex RRSIGs that cover ZONEMD. Each RR in DNSSEC canonical form
// (RFC 4034 6.2, with RFC 6840 5.1's list of types whose embedded names are lower-cased): owner
// lower-cased and uncompressed, type, class IN, the RR's TTL as it is in the zone, RDLENGTH,
// canonical RDATA. Sorted in canonical order: owner (RFC 4034 6.1), then type, then RDATA as
// octet strings; an RR that appears twice (same owner, type and RDATA) counts once. The digest is
// the hash (SHA-384 for algorithm 1, SHA-512 for 2) of the concatenation.
//
// dns-packet does not know ZONEMD (type 63): it decodes it as type 'UNKNOWN_63' with the raw RDATA
// as a Buffer, and encodes it back from the same shape. `encodeZonemd`/`decodeZonemd` convert that
// RDATA; `decodeZonemd` is meant for hostile input (exact lengths, nothing trusted).

export const ZONEMD_TYPE = 63;
/** The type name dns-packet gives ZONEMD RRs (and expects to encode them). */
export const ZONEMD: string = 'UNKNOWN_63';
/** Scheme 1: SIMPLE (RFC 8976 5.3). */
export const SCHEME_SIMPLE = 1;
/** Hash algorithm 1: SHA-384 (RFC 8976 5.3). */
export const HASH_SHA384 = 1;
/** Hash algorithm 2: SHA-512. */
export const HASH_SHA512 = 2;

const HASHES: Readonly<Record<number, { name: string; bytes: number }>> = {
  [HASH_SHA384]: { name: 'sha384', bytes: 48 },
  [HASH_SHA512]: { name: 'sha512', bytes: 64 },
};

export interface ZonemdData {
  serial: number;
  scheme: number;
  algorithm: number;
  digest: Buffer;
}

/** RDATA of a ZONEMD RR: serial (4), scheme (1), hash algorithm (1), digest. */
export function encodeZonemd(d: ZonemdData): Buffer {
  if (!Number.isInteger(d.serial) || d.serial < 0 || d.serial > 0xffffffff) throw new Error('ZONEMD: serial out of range');
  if (!Number.isInteger(d.scheme) || d.scheme < 0 || d.scheme > 255 || !Number.isInteger(d.algorithm) || d.algorithm < 0 || d.algorithm > 255)
    throw new Error('ZONEMD: scheme or algorithm out of range');
  if (d.digest.length < 12 || d.digest.length > 65535 - 6) throw new Error('ZONEMD: digest length out of range');
  const head = Buffer.alloc(6);
  head.writeUInt32BE(d.serial >>> 0, 0);
  head.writeUInt8(d.scheme, 4);
  head.writeUInt8(d.algorithm, 5);
  return Buffer.concat([head, d.digest]);
}

/**
 * Parses ZONEMD RDATA (hostile input). Throws unless it is at least 6 + 12 octets (RFC 8976 2.2.4:
 * a digest of fewer than 12 octets is malformed) and at most 65,535, and, for scheme SIMPLE with a
 * hash algorithm known here, unless the digest has exactly that hash's length (other schemes are
 * not ours to judge: RFC 8976 4 has verifiers skip them). The digest is copied.
 */
export function decodeZonemd(rdata: Uint8Array): ZonemdData {
  if (!(rdata instanceof Uint8Array)) throw new Error('ZONEMD: RDATA is not bytes');
  if (rdata.length < 18) throw new Error('ZONEMD: RDATA too short');
  if (rdata.length > 65535) throw new Error('ZONEMD: RDATA too long');
  const b = Buffer.from(rdata.buffer, rdata.byteOffset, rdata.byteLength);
  const scheme = b.readUInt8(4);
  const algorithm = b.readUInt8(5);
  const digest = Buffer.from(b.subarray(6));
  const known = scheme === SCHEME_SIMPLE ? HASHES[algorithm] : undefined;
  if (known && digest.length !== known.bytes) throw new Error(`ZONEMD: a ${known.name} digest is ${known.bytes} octets, not ${digest.length}`);
  return { serial: b.readUInt32BE(0), scheme, algorithm, digest };
}

/** The ZONEMD RR (dns-packet shape) for a zone: owner the origin, the SOA's TTL, scheme SIMPLE. */
export function zonemdAnswer(origin: string, ttl: number, data: ZonemdData): Answer {
  return { name: bare(origin), type: ZONEMD, class: 'IN', ttl, data: encodeZonemd(data) } as unknown as Answer;
}

// Type codes of the types a zone may hold (dns-packet's names) and the RFC 3597 forms.
const CODES: Readonly<Record<string, number>> = {
  A: 1, NS: 2, MD: 3, MF: 4, CNAME: 5, SOA: 6, MB: 7, MG: 8, MR: 9, NULL: 10, WKS: 11, PTR: 12, HINFO: 13, MINFO: 14,
  MX: 15, TXT: 16, RP: 17, AFSDB: 18, SIG: 24, KEY: 25, AAAA: 28, LOC: 29, NXT: 30, SRV: 33, NAPTR: 35, KX: 36, CERT: 37,
  DNAME: 39, APL: 42, DS: 43, SSHFP: 44, IPSECKEY: 45, RRSIG: 46, NSEC: 47, DNSKEY: 48, DHCID: 49, NSEC3: 50,
  NSEC3PARAM: 51, TLSA: 52, SMIMEA: 53, HIP: 55, CDS: 59, CDNSKEY: 60, OPENPGPKEY: 61, CSYNC: 62, ZONEMD: 63, SVCB: 64,
  HTTPS: 65, SPF: 99, URI: 256, CAA: 257,
};

/** The type code of a dns-packet type name ('A', 'UNKNOWN_63', 'TYPE63', 'ZONEMD'). */
export function rrTypeCode(type: string): number {
  const t = String(type).toUpperCase();
  const code = CODES[t];
  if (code !== undefined) return code;
  const m = /^(?:UNKNOWN_|TYPE)(\d{1,5})$/.exec(t);
  if (m && Number(m[1]) < 65536) return Number(m[1]);
  throw new Error(`ZONEMD: no type code for ${JSON.stringify(type)}`);
}

const lower = (s: string) => s.replace(/[A-Z]+/g, (c) => c.toLowerCase());
const bare = (s: string) => (s.endsWith('.') && s !== '.' ? s.slice(0, -1) : s);

/** Canonical RDATA (RFC 4034 6.2 as amended by RFC 6840 5.1) of an RR in dns-packet's shape. */
function canonicalRdataOf(code: number, type: string, data: unknown): Buffer {
  if (Buffer.isBuffer(data) || data instanceof Uint8Array) {
    // RDATA as raw bytes: ZONEMD and any type dns-packet does not decode (taken as they are).
    if (code === ZONEMD_TYPE) decodeZonemd(data);
    return Buffer.from(data);
  }
  if (code === ZONEMD_TYPE) return encodeZonemd(data as ZonemdData);
  switch (code) {
    case 12: // PTR
    case 39: // DNAME
      return rdataWire(type, lower(String(data)));
    case 35: {
      const d = data as { replacement: string };
      return rdataWire(type, { ...d, replacement: lower(d.replacement) });
    }
    case 17: {
      const d = data as { mbox: string; txt: string };
      return rdataWire(type, { ...d, mbox: lower(d.mbox), txt: lower(d.txt) });
    }
    default:
      return canonicalRdata(type, data);
  }
}

/** One RR as it enters a ZONEMD digest. */
interface Item {
  owner: string;
  code: number;
  ttl: number;
  rdata: Buffer;
}

/** An RR in dns-packet's shape (what `dnsPacket.decode` gives and our zones hold). */
export interface ZoneRR {
  name: string;
  type: string;
  ttl?: number;
  class?: string;
  data?: unknown;
}

export interface ZonemdOptions {
  /** Hash algorithm: 1 (SHA-384, the default) or 2 (SHA-512). */
  algorithm?: number;
}

/**
 * The ZONEMD digest (RFC 8976, SIMPLE scheme) of the zone `origin` whose RRs are `rrs`, in any
 * order, duplicates allowed, in dns-packet's shape (`dnsPacket.decode(...).answers` of an AXFR,
 * minus its closing SOA, will do; a ZONEMD as type 'UNKNOWN_63' with its RDATA as a Buffer).
 * `serial` must be the serial of the zone's SOA (the one ZONEMD's serial field carries): it is
 * checked, and a zone with no SOA, or more than one, at its apex throws. Class IN only.
 * Returns the 48-octet SHA-384 digest (64 with `{ algorithm: 2 }`).
 */
export function zonemdDigest(origin: string, serial: number, rrs: Iterable<ZoneRR>, opts: ZonemdOptions = {}): Buffer {
  const hash = HASHES[opts.algorithm ?? HASH_SHA384];
  if (!hash) throw new Error(`ZONEMD: unsupported hash algorithm ${String(opts.algorithm)}`);
  const apex = lower(bare(origin));
  const apexLabels = labelsOf(apex);
  const items: Item[] = [];
  let soaSerial: number | undefined;
  let soas = 0;
  for (const rr of rrs) {
    if (rr.class !== undefined && rr.class !== 'IN') throw new Error(`ZONEMD: class ${rr.class} is not IN`);
    const owner = lower(bare(rr.name));
    const labels = labelsOf(owner);
    // Out-of-zone data is not part of the zone (RFC 8976 3.3.1.1).
    if (labels.length < apexLabels.length || labels.slice(labels.length - apexLabels.length).join('.') !== apexLabels.join('.')) continue;
    const code = rrTypeCode(rr.type);
    if (owner === apex && code === ZONEMD_TYPE) continue;
    if (owner === apex && code === 46 && rrTypeCode((rr.data as { typeCovered: string }).typeCovered) === ZONEMD_TYPE) continue;
    const ttl = rr.ttl ?? 0;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0xffffffff) throw new Error(`ZONEMD: bad TTL on ${owner}`);
    const rdata = canonicalRdataOf(code, rr.type, rr.data);
    if (code === 6 && owner === apex) {
      soas++;
      soaSerial = rdata.readUInt32BE(rdata.length - 20);
    }
    items.push({ owner, code, ttl, rdata });
  }
  if (soas === 0) throw new Error(`ZONEMD: zone ${apex} has no SOA at its apex`);
  if (soas > 1 && new Set(items.filter((i) => i.code === 6 && i.owner === apex).map((i) => i.rdata.toString('hex'))).size > 1)
    throw new Error(`ZONEMD: zone ${apex} has more than one SOA`);
  if (soaSerial !== serial >>> 0) throw new Error(`ZONEMD: the SOA's serial is ${String(soaSerial)}, not ${serial}`);
  items.sort((a, b) => compareNames(a.owner, b.owner) || a.code - b.code || Buffer.compare(a.rdata, b.rdata) || a.ttl - b.ttl);
  const h = createHash(hash.name);
  let previous: Item | undefined;
  for (const it of items) {
    // Duplicates (same owner, type, RDATA) count once, with the smallest TTL (sorted first).
    if (previous && previous.owner === it.owner && previous.code === it.code && previous.rdata.equals(it.rdata)) continue;
    previous = it;
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(it.code, 0);
    fixed.writeUInt16BE(1, 2);
    fixed.writeUInt32BE(it.ttl >>> 0, 4);
    fixed.writeUInt16BE(it.rdata.length, 8);
    h.update(nameWire(it.owner));
    h.update(fixed);
    h.update(it.rdata);
  }
  return h.digest();
}

export type ZonemdCheck = { ok: true; serial: number; digest: Buffer } | { ok: false; reason: string };

/**
 * Checks a zone against its own apex ZONEMD (RFC 8976 4): the apex has at least one ZONEMD with
 * scheme SIMPLE and a hash known here (SHA-384 or SHA-512), at most one per (scheme, hash), with
 * the SOA's serial, and its digest equals `zonemdDigest` over `rrs`. Does not check signatures.
 */
export function verifyZonemd(origin: string, rrs: readonly ZoneRR[]): ZonemdCheck {
  const apex = lower(bare(origin));
  const found: ZonemdData[] = [];
  let soa: number | undefined;
  try {
    for (const rr of rrs) {
      if (lower(bare(rr.name)) !== apex) continue;
      const code = rrTypeCode(rr.type);
      if (code === ZONEMD_TYPE) found.push(Buffer.isBuffer(rr.data) || rr.data instanceof Uint8Array ? decodeZonemd(rr.data) : decodeZonemd(encodeZonemd(rr.data as ZonemdData)));
      if (code === 6) soa = (rr.data as { serial: number }).serial;
    }
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
  if (found.length === 0) return { ok: false, reason: 'no ZONEMD at the apex' };
  if (soa === undefined) return { ok: false, reason: 'no SOA at the apex' };
  const usable = found.filter((z) => z.scheme === SCHEME_SIMPLE && HASHES[z.algorithm]);
  if (usable.length === 0) return { ok: false, reason: 'no ZONEMD with a supported scheme and hash algorithm' };
  const pairs = new Set(found.map((z) => `${z.scheme}/${z.algorithm}`));
  if (pairs.size !== found.length) return { ok: false, reason: 'more than one ZONEMD with the same scheme and hash algorithm' };
  for (const z of usable) {
    if (z.serial !== soa) continue;
    let digest: Buffer;
    try {
      digest = zonemdDigest(apex, soa, rrs, { algorithm: z.algorithm });
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
    if (digest.equals(z.digest)) return { ok: true, serial: soa, digest };
  }
  return { ok: false, reason: usable.some((z) => z.serial === soa) ? 'the digest does not match the zone' : 'no ZONEMD with the SOA serial' };
}

/** ZONEMD RDATA in presentation form: serial, scheme, hash algorithm, digest in hex. */
export function zonemdText(rdata: Uint8Array): string {
  const d = decodeZonemd(rdata);
  return `${d.serial} ${d.scheme} ${d.algorithm} ${d.digest.toString('hex').toUpperCase()}`;
}
