import type { Answer, NsecData, RrsigData } from 'dns-packet';
import type { SqlReader } from '../../core/store/index.ts';
import type { AnswerSet, Zone } from '../dns-authority/zone.ts';
import { negativeTtl, SOA_TTL } from '../records/soa.ts';
import { DNSKEY_TTL_S } from '../../core/policy/gates/platform-powers.ts';
import { DnssecKeyring, type SigningKey, type ZoneKey, type ZoneKeys } from './keys.ts';
import { rrsigFields, rrsigPrefix, signBytes, signRRset, validityAround } from './sign.ts';
import { nameWire, NXNAME, rdataWire, rrWire, typeName } from './wire.ts';
import { signZone, type SignedZone } from './signed-zone.ts';
import { chainOf, type ChainLink } from './chain.ts';
import { ZONEMD } from '../zonefile/zonemd.ts';

// Online signing: the responder hands every answer for a signed zone that the rate limiter lets
// through to `secure()`, which adds
// what a validator needs when the query set the DO bit (RFC 3225, RFC 4035 3.1): the DNSKEY RRset
// at the apex, an RRSIG after every authoritative RRset in the answer, authority and additional
// sections (not after the NS of a referral nor its glue, also when the referral follows a CNAME
// into a delegated child: those belong to the child), and proof of
// what does not exist. Without DO the answer is unchanged, except that a DNSKEY query at the apex
// is answered (the key is data of the zone).
//
// Denial of existence, two modes (`denial`, per server: `--dnssec-denial`):
//
// 'nsec' (default): from the zone's NSEC chain (chain.ts), the very chain zone transfers carry
// (signed-zone.ts), so answers reveal nothing a secondary does not already serve (RFC 4035
// 3.1.3): NXDOMAIN keeps its rcode and carries the NSEC covering the name and the NSEC proving no
// wildcard at its closest encloser; NODATA the name's NSEC (an empty non-terminal: the NSEC
// covering it); an answer synthesised from a wildcard is signed as the wildcard (RFC 4035 2.2,
// Labels without the `*`) with the NSEC proving the name itself does not exist; a wildcard NODATA
// both. Why the default: a denial's signatures are then bounded by the zone's size, not by the
// names asked: once the chain's NSECs are signed a random-subdomain flood costs no signing at
// all (the signatures are cached by zone, key, owner and RDATA, not serial, so a new version of a
// zone re-signs only the NSECs that changed). The price: the zone can be walked, as its AXFR
// allows anyway to those allowed to transfer it.
//
// 'compact': compact denial, RFC 9824 ("black lies"). A name that does not exist is
// answered NOERROR/NODATA with one NSEC owned by the query name, whose next name is the name's
// immediate successor (`\000.<qname>`) and whose bitmap holds only RRSIG, NSEC and NXNAME. An
// existing name without the type (NODATA) gets the same NSEC shape with the types the name has.
// One NSEC and one signature per negative answer, no zone walking, and wildcards need no
// closest-encloser proof: an answer synthesised from a wildcard is signed as if the name existed
// (Labels = the query name's). The price: one ECDSA signature per new name (the bound of a
// random-name flood), and the NXDOMAIN rcode is not visible to validating resolvers (NXNAME in
// the bitmap tells those that know it; the EDNS CO flag is not implemented).
//
// Signatures: inception an hour back (clock skew), expiration a week ahead, cached by (zone,
// serial, key, owner, type) so a hot name is signed once, not per query; a cached signature is
// made anew after a day (six days of validity always remain), and the cache is bounded (oldest
// entries are dropped first), so memory does not grow with the names asked.
// The signatures over nonexistent names' NSEC made on the responder's quick path (`denial`) are
// kept in a cache of their own (10,000), so a random-subdomain flood does not push the signatures
// of existing names out.

/** TTL of the DNSKEY RRset: the rollover waits of gate 17 are this long (one constant for both). */
export const DNSKEY_TTL = DNSKEY_TTL_S;
const DAY = 86_400;

// ZONEMD (RFC 8976) of a signed zone: there is no signed zone file here, answers are signed as
// they go. What the ZONEMD commits to is the zone signed whole (`signZone`: DNSKEY, an RRSIG per
// RRset valid 21 days, the NSEC chain), made once per zone, serial and key set and kept
// (`materialise`): zone transfers send that copy, and a ZONEMD query is answered with its ZONEMD
// and the RRSIG over it, so the record a resolver sees is the one an AXFR of the same serial
// verifies against. The copy is made anew after `materialiseMs` (default 7 days, when the
// re-signing scheduler moves the serial anyway) and on a restart: the digest of one serial can
// then differ (new ECDSA signatures), each copy consistent with its own ZONEMD.

export interface OnlineSignerOptions {
  /** Milliseconds a materialised signed zone (transfers, ZONEMD) is reused. Default 7 days. */
  materialiseMs?: number;
  /** Materialised signed zones kept at most. Default 1,000. */
  materialisedZones?: number;
  /** Signatures kept at most. Default 50,000 (a few MB). */
  cacheSize?: number;
  /** Signatures over nonexistent names' NSEC (`denial`) kept at most, apart from the others. Default 10,000. */
  denialCacheSize?: number;
  /** Seconds an inception lies in the past. Default 3600. */
  inceptionOffset?: number;
  /** Seconds a signature is valid from now. Default 7 days. */
  lifetime?: number;
  /** Seconds after which a cached signature is made anew. Default 1 day. */
  refresh?: number;
  /** Clock (milliseconds), for tests. */
  now?: () => number;
  /**
   * How a name or type that does not exist is proved so: 'nsec' (default) with the zone's NSEC
   * chain, the one zone transfers carry (RFC 4035 3.1.3); 'compact' with compact denial (RFC 9824).
   */
  denial?: DenialMode;
}

export type DenialMode = 'nsec' | 'compact';
export const DENIAL_MODES: readonly DenialMode[] = ['nsec', 'compact'];

/** What the quick path sends for a name that does not exist: the authority section on the wire (in pieces, to be written one after the other), its RR count and the rcode. */
export interface Denial {
  authority: readonly Buffer[];
  count: number;
  rcode: 0 | 3;
}

export interface SecureQuery {
  /** The query name: absolute, lower case, no trailing dot. */
  name: string;
  /** The name as the question spelled it (owner of synthesised answers). */
  echo: string;
  type: string;
  /** The DO bit of the query's OPT record. */
  dnssecOk: boolean;
}

interface Cached {
  sig: RrsigData;
  /** When it was made (seconds). */
  made: number;
}

/** An RR with the fields every non-OPT answer has (dns-packet's Answer union includes OPT). */
interface RR {
  name: string;
  type: string;
  ttl: number;
  data: unknown;
}
const rr = (name: string, type: string, ttl: number, data: unknown): Answer => ({ name, type, class: 'IN', ttl, data }) as Answer;
const fieldsOf = (a: Answer): RR => a as unknown as RR;

/** The type bitmap of a nonexistent name's NSEC (RRSIG, NSEC, NXNAME), as the general path encodes it. */
const NXNAME_BITMAP = rdataWire('NSEC', { nextDomain: '.', rrtypes: ['RRSIG', 'NSEC', typeName(NXNAME)] }).subarray(1);
const TYPE_NSEC = 47;
/** An NSEC or RRSIG owned by the question's name: a pointer to it (the question starts at offset 12). */
const OWNER_IS_QUESTION = Buffer.from([0xc0, 12]);

const lower = (s: string) => s.replace(/[A-Z]+/g, (c) => c.toLowerCase());
const bare = (s: string) => (s.endsWith('.') ? s.slice(0, -1) : s);

export class OnlineSigner {
  private readonly cache = new Map<string, Cached>();
  private readonly cacheSize: number;
  private readonly inceptionOffset: number;
  private readonly lifetime: number;
  private readonly refresh: number;
  private readonly now: () => number;
  /** Signatures over the NSEC of names that do not exist, made by `denial` (random-name floods land here). */
  private readonly denials = new Map<string, Cached>();
  private readonly denialCacheSize: number;
  /** Per zone: its SOA and the SOA's RRSIG on the wire, for denials (`denial`); bounded like `materialised`. */
  private readonly soaBlocks = new Map<string, { sig: RrsigData; soa: unknown; ttl: number; bytes: Buffer; serial: number; tag: number; made: number }>();
  private readonly materialised = new Map<string, { made: number; zone: SignedZone; zonemd: Answer[] }>();
  private readonly materialiseMs: number;
  private readonly materialisedZones: number;
  /**
   * Signatures over the NSECs of zones' chains (and their RRs on the wire), keyed by zone, key,
   * owner and RDATA, not by serial: a new version of a zone re-signs only the NSECs that changed.
   */
  private readonly chainSigs = new Map<string, Cached & { bytes?: Buffer }>();
  /**
   * The same entries reached from the chain's link object (kept with its compiled zone): a
   * denial finds its NSECs' signatures without building the string key. Checked for the key tag
   * and age as the map's entries are.
   */
  private readonly linkSigs = new WeakMap<ChainLink, { tag: number; entry: Cached & { bytes?: Buffer } }>();
  readonly denialMode: DenialMode;
  /** Counters for tests and metrics. */
  readonly stats = { signatures: 0, cacheHits: 0, materialised: 0 };

  constructor(
    readonly keys: ZoneKeys,
    opts: OnlineSignerOptions = {},
  ) {
    this.cacheSize = opts.cacheSize ?? 50_000;
    this.denialCacheSize = opts.denialCacheSize ?? 10_000;
    this.inceptionOffset = opts.inceptionOffset ?? 3600;
    this.lifetime = opts.lifetime ?? 7 * DAY;
    this.refresh = Math.min(opts.refresh ?? DAY, this.lifetime / 2);
    this.now = opts.now ?? Date.now;
    this.materialiseMs = opts.materialiseMs ?? 7 * DAY * 1000;
    this.materialisedZones = opts.materialisedZones ?? 1000;
    this.denialMode = opts.denial ?? 'nsec';
  }

  /**
   * The zone signed whole with `key` (for transfers and the ZONEMD), made once per zone, serial
   * and key set and reused for `materialiseMs`.
   */
  materialise(zone: Zone, key: ZoneKey): SignedZone {
    return this.materialised_(zone, key).zone;
  }

  private materialised_(zone: Zone, key: ZoneKey): { zone: SignedZone; zonemd: Answer[] } {
    const id = `${zone.name}\t${zone.serial}\t${key.keySigners.map((k) => k.keyTag).join(',')}\t${key.dnskeys.length}`;
    const now = this.now();
    const hit = this.materialised.get(id);
    if (hit && now - hit.made < this.materialiseMs && now >= hit.made) return hit;
    const signed = signZone(zone, key, { now });
    // The apex ZONEMD and the RRSIG over it, as the signed zone holds them.
    const zonemd = signed.records.filter((a) => {
      const f = fieldsOf(a);
      return f.name === zone.name && (f.type === ZONEMD || (f.type === 'RRSIG' && (f.data as RrsigData).typeCovered === ZONEMD));
    });
    const entry = { made: now, zone: signed, zonemd };
    this.stats.materialised++;
    this.materialised.delete(id);
    if (this.materialised.size >= this.materialisedZones) this.materialised.delete(this.materialised.keys().next().value!);
    this.materialised.set(id, entry);
    return entry;
  }

  /**
   * The answer to send for `q` in `zone`, given what the zone's lookup found. Synchronous when
   * the zone's key is cached (every query after the first one for a serial), a promise otherwise.
   * Throws if the zone has a key the platform cannot use (the responder answers SERVFAIL).
   */
  secure(zone: Zone, q: SecureQuery, set: AnswerSet): AnswerSet | Promise<AnswerSet> {
    // DNSKEY and ZONEMD at the apex depend on the key: answered here with DO or without.
    const dnskeyQuery = (q.type === 'DNSKEY' || q.type === ZONEMD) && q.name === zone.name;
    if (!q.dnssecOk && !dnskeyQuery) return set;
    const key = this.keys.forZone(zone.name, zone.serial);
    if (key instanceof Promise) return key.then((k) => (k ? this.apply(zone, k, q, set) : set));
    return key ? this.apply(zone, key, q, set) : set;
  }

  private apply(zone: Zone, key: ZoneKey, q: SecureQuery, set: AnswerSet): AnswerSet {
    if (q.type === 'DNSKEY' && q.name === zone.name) {
      // Every key of the zone (a rollover publishes two), signed by each key held here.
      const answers: Answer[] = key.dnskeys.map((d) => rr(q.echo, 'DNSKEY', DNSKEY_TTL, d));
      if (q.dnssecOk) answers.push(...this.dnskeySignatures(zone, key, q.echo));
      return { rcode: 0, aa: true, answers, authorities: [], additionals: [], glueRequired: false };
    }
    if (q.type === ZONEMD && q.name === zone.name) {
      // The signed zone's digest (not the unsigned one the compiled zone holds), with its RRSIG.
      const answers = this.materialised_(zone, key)
        .zonemd.filter((a) => q.dnssecOk || fieldsOf(a).type === ZONEMD)
        .map((a) => ({ ...a, name: q.echo }) as Answer);
      return { rcode: 0, aa: true, answers, authorities: [], additionals: [], glueRequired: false };
    }
    if (!set.aa) return this.referral(zone, key, set);
    if ((q.type === 'NSEC' || q.type === 'RRSIG') && (this.denialMode === 'nsec' ? chainOf(zone).at(q.name) : zone.typesAt(q.name)) !== undefined) return this.meta(zone, key, q);
    if (this.denialMode === 'nsec') return this.applyChain(zone, key, q, set);

    // A CNAME into a delegated child: the CNAME signed, the child's NS and glue as in a referral.
    if (set.referral) return { ...this.referral(zone, key, set), answers: this.signSection(zone, key, set.answers) };
    const out: AnswerSet = { ...set, answers: this.signSection(zone, key, set.answers), authorities: [], additionals: this.signSection(zone, key, set.additionals) };
    const soaAnswer = set.authorities.find((a) => a.type === 'SOA');
    if (!soaAnswer) {
      out.authorities = this.signSection(zone, key, set.authorities);
      return out;
    }
    // A negative answer: for the query name, or for the name the CNAME chain ends at.
    const soa = fieldsOf(soaAnswer);
    const lastCname = [...set.answers].reverse().find((a) => a.type === 'CNAME');
    const denied = lastCname ? lower(bare(String(fieldsOf(lastCname).data))) : q.name;
    const nsec = this.nsecFor(zone, denied);
    out.rcode = 0;
    out.authorities = [soaAnswer, this.rrsigFor(zone, key, soa.name, 'SOA', soa.ttl, SOA_TTL, [soa.data])];
    if (nsec) out.authorities.push(rr(denied, 'NSEC', nsec.ttl, nsec.data), this.rrsigFor(zone, key, denied, 'NSEC', nsec.ttl, nsec.ttl, [nsec.data]));
    return out;
  }

  /**
   * `apply` with denials from the zone's NSEC chain (RFC 4035 3.1.3): a name's NSEC for NODATA;
   * for NXDOMAIN the NSEC covering the name and the one proving there is no wildcard at its
   * closest encloser; for an answer synthesised from a wildcard the RRSIG of the wildcard (its
   * Labels field tells the validator, RFC 4035 5.3.4) and the NSEC proving the name itself does
   * not exist; for a NODATA from a wildcard, both.
   */
  private applyChain(zone: Zone, key: ZoneKey, q: SecureQuery, set: AnswerSet): AnswerSet {
    const chain = chainOf(zone);
    const proofs: ChainLink[] = [];
    const prove = (link: ChainLink) => {
      if (!proofs.includes(link)) proofs.push(link);
    };
    // A name with no data of its own, answered from a wildcard: no closer match exists.
    const expanded = (name: string) => {
      if (zone.wildcardOf(name)) prove(chain.covering(name));
    };
    const answers = this.signSection(zone, key, set.answers, expanded);
    if (set.referral) return { ...this.referral(zone, key, set), answers: [...answers, ...this.proofRRs(zone, key, proofs)] };
    const out: AnswerSet = { ...set, answers, authorities: [], additionals: this.signSection(zone, key, set.additionals) };
    const soaAnswer = set.authorities.find((a) => a.type === 'SOA');
    if (!soaAnswer) {
      out.authorities = [...this.signSection(zone, key, set.authorities), ...this.proofRRs(zone, key, proofs)];
      return out;
    }
    const soa = fieldsOf(soaAnswer);
    const lastCname = [...set.answers].reverse().find((a) => a.type === 'CNAME');
    const denied = lastCname ? lower(bare(String(fieldsOf(lastCname).data))) : q.name;
    if (zone.has(denied)) {
      // NODATA at a name of the zone: its own NSEC; an empty non-terminal has none, the NSEC
      // covering it (whose next name lies below it) proves it owns nothing.
      prove(chain.covering(denied));
    } else {
      // The name does not exist (NXDOMAIN), or a wildcard answers for it without the type: the
      // NSEC covering the name, and the wildcard's own NSEC (NODATA) or the one covering it.
      prove(chain.covering(denied));
      prove(chain.covering(`*.${zone.closestEncloser(denied)}`));
    }
    out.authorities = [soaAnswer, this.rrsigFor(zone, key, soa.name, 'SOA', soa.ttl, SOA_TTL, [soa.data]), ...this.proofRRs(zone, key, proofs)];
    return out;
  }

  /** NSECs of the chain, each followed by its RRSIG. */
  private proofRRs(zone: Zone, key: ZoneKey, links: readonly ChainLink[]): Answer[] {
    const out: Answer[] = [];
    const ttl = negativeTtl();
    for (const link of links) out.push(rr(link.name, 'NSEC', ttl, link.data), rr(link.name, 'RRSIG', ttl, this.chainSignature(zone, key, link).sig));
    return out;
  }

  /** The signature over one NSEC of the chain, from the cache while the NSEC (owner and RDATA) and the key are the same. */
  private chainSignature(zone: Zone, key: SigningKey, link: ChainLink): Cached & { bytes?: Buffer } {
    const now = Math.floor(this.now() / 1000);
    const memo = this.linkSigs.get(link);
    if (memo && memo.tag === key.keyTag && now - memo.entry.made < this.refresh && now >= memo.entry.made) {
      this.stats.cacheHits++;
      return memo.entry;
    }
    const cacheKey = `${zone.name}\t${key.keyTag}\t${link.name}\t${link.rdata.toString('latin1')}`;
    const hit = this.chainSigs.get(cacheKey);
    if (hit && now - hit.made < this.refresh && now >= hit.made) {
      this.stats.cacheHits++;
      this.linkSigs.set(link, { tag: key.keyTag, entry: hit });
      return hit;
    }
    const ttl = negativeTtl();
    const sig = signRRset(key, link.name, 'NSEC', ttl, [link.data], validityAround(now * 1000, this.inceptionOffset, this.lifetime));
    this.stats.signatures++;
    const entry = { sig, made: now };
    this.chainSigs.delete(cacheKey);
    if (this.chainSigs.size >= this.cacheSize) this.chainSigs.delete(this.chainSigs.keys().next().value!);
    this.chainSigs.set(cacheKey, entry);
    this.linkSigs.set(link, { tag: key.keyTag, entry });
    return entry;
  }

  /** The NSEC of a chain link and its RRSIG on the wire (owner uncompressed), kept with the cached signature. */
  private chainBytes(zone: Zone, key: SigningKey, link: ChainLink): Buffer {
    const entry = this.chainSignature(zone, key, link);
    if (entry.bytes) return entry.bytes;
    const ttl = negativeTtl();
    const sigRdata = Buffer.concat([rrsigPrefix(entry.sig), entry.sig.signature]);
    const out = Buffer.allocUnsafe(2 * (link.wire.length + 10) + link.rdata.length + sigRdata.length);
    putRr(out, putRr(out, 0, link.wire, TYPE_NSEC, ttl, link.rdata), link.wire, 46, ttl, sigRdata);
    return (entry.bytes = out);
  }

  /**
   * The authority section of the compact denial for a name that does not exist (`name` lower
   * case, in `zone`, whose lookup found nothing: NXDOMAIN), already on the wire: the SOA and its
   * RRSIG (kept encoded per zone, serial and signature), then the NSEC owned by the question's
   * name (a pointer to offset 12) and its RRSIG, the same records `secure` gives and the
   * responder would encode with dns-packet, without building them as objects: random names (the
   * common flood) cost one signature and a few copies. The NSEC's signature is cached as
   * `secure`'s are (a repeated name is signed once). Undefined when the zone is unsigned, the
   * name exists, or has no successor (255 octets): the general path answers then.
   */
  denial(zone: Zone, name: string, soa: Answer): Denial | undefined | Promise<Denial | undefined> {
    const key = this.keys.forZone(zone.name, zone.serial);
    if (key instanceof Promise) return key.then((k) => (k ? this.denialWith(zone, k, name, soa) : undefined));
    return key ? this.denialWith(zone, key, name, soa) : undefined;
  }

  private denialWith(zone: Zone, key: ZoneKey, name: string, soaAnswer: Answer): Denial | undefined {
    if (zone.typesAt(name) !== undefined) return undefined;
    if (this.denialMode === 'nsec') {
      // The NSEC covering the name, then the one proving no wildcard at its closest encloser,
      // each with its RRSIG, as encoded once per chain NSEC and signature: no signing, no
      // encoding per query once the chain's NSECs are signed.
      const chain = chainOf(zone);
      const cover = chain.covering(name);
      const wild = chain.wildcardCover(zone.closestEncloser(name));
      // The encoded blocks as kept (the message writes them out): no copy joining them.
      const block = this.soaBlock(zone, key, soaAnswer);
      const authority = wild !== cover ? [block, this.chainBytes(zone, key, cover), this.chainBytes(zone, key, wild)] : [block, this.chainBytes(zone, key, cover)];
      return { authority, count: wild !== cover ? 6 : 4, rcode: 3 };
    }
    let owner: Buffer;
    try {
      owner = nameWire(name);
    } catch {
      return undefined;
    }
    if (owner.length + 2 > 255) return undefined;
    const block = this.soaBlock(zone, key, soaAnswer);
    const ttl = negativeTtl();
    // NSEC RDATA: next name `\000.<name>`, then the bitmap (RRSIG, NSEC, NXNAME).
    const rdata = Buffer.allocUnsafe(2 + owner.length + NXNAME_BITMAP.length);
    rdata[0] = 1;
    rdata[1] = 0;
    owner.copy(rdata, 2);
    NXNAME_BITMAP.copy(rdata, 2 + owner.length);
    const sig = this.nsecSignature(zone, key, name, owner, ttl, rdata);
    const sigRdata = Buffer.concat([rrsigPrefix(sig), sig.signature]);
    const out = Buffer.allocUnsafe(block.length + 2 * 12 + rdata.length + sigRdata.length);
    putRr(out, putRr(out, block.copy(out, 0), OWNER_IS_QUESTION, TYPE_NSEC, ttl, rdata), OWNER_IS_QUESTION, 46, ttl, sigRdata);
    return { authority: [out], count: 4, rcode: 0 };
  }

  /** The SOA and its RRSIG on the wire: one encoding per zone while the signature is the cached one. */
  private soaBlock(zone: Zone, key: ZoneKey, soaAnswer: Answer): Buffer {
    const soa = fieldsOf(soaAnswer);
    let block = this.soaBlocks.get(zone.name);
    // The same serial, SOA, key and a signature still young enough: as `rrsigFor` would find it, without its key string.
    const now = Math.floor(this.now() / 1000);
    if (block && block.serial === zone.serial && block.tag === key.keyTag && block.soa === soa.data && block.ttl === soa.ttl && now - block.made < this.refresh && now >= block.made) {
      this.stats.cacheHits++;
      return block.bytes;
    }
    const entry = this.rrsigEntry(zone, key, lower(bare(soa.name)), 'SOA', SOA_TTL, [soa.data]);
    const soaSig = rr(soa.name, 'RRSIG', soa.ttl, entry.sig);
    if (!block || block.sig !== entry.sig || block.soa !== soa.data || block.ttl !== soa.ttl || block.serial !== zone.serial || block.tag !== key.keyTag) {
      block = { sig: entry.sig, soa: soa.data, ttl: soa.ttl, bytes: Buffer.concat([rrWire(soaAnswer), rrWire(soaSig)]), serial: zone.serial, tag: key.keyTag, made: entry.made };
      this.soaBlocks.delete(zone.name);
      if (this.soaBlocks.size >= this.materialisedZones) this.soaBlocks.delete(this.soaBlocks.keys().next().value!);
      this.soaBlocks.set(zone.name, block);
    }
    return block.bytes;
  }

  /** The RRSIG over a nonexistent name's NSEC: from the signature cache (shared with `secure`), else signed from the wire bytes. */
  private nsecSignature(zone: Zone, key: SigningKey, name: string, owner: Buffer, ttl: number, rdata: Buffer): RrsigData {
    const cacheKey = `${zone.name}\t${zone.serial}\t${key.keyTag}\t${name}\tNSEC`;
    const now = Math.floor(this.now() / 1000);
    const fresh = (c: Cached | undefined) => c && now - c.made < this.refresh && now >= c.made;
    const hit = this.cache.get(cacheKey) ?? this.denials.get(cacheKey);
    if (hit && fresh(hit)) {
      this.stats.cacheHits++;
      return hit.sig;
    }
    const validity = validityAround(now * 1000, this.inceptionOffset, this.lifetime);
    const fields = rrsigFields(key, name, 'NSEC', ttl, validity);
    // RFC 4034 3.1.8.1: the RRSIG RDATA without its signature, then the RR in canonical form.
    const prefix = rrsigPrefix(fields);
    const data = Buffer.allocUnsafe(prefix.length + owner.length + 10 + rdata.length);
    let at = prefix.copy(data, 0);
    at += owner.copy(data, at);
    data.writeUInt16BE(TYPE_NSEC, at);
    data.writeUInt16BE(1, at + 2);
    data.writeUInt32BE(ttl >>> 0, at + 4);
    data.writeUInt16BE(rdata.length, at + 8);
    rdata.copy(data, at + 10);
    const sig: RrsigData = { ...fields, signature: signBytes(key, data) };
    this.stats.signatures++;
    // Kept apart from the other signatures: a flood of names asked once churns this cache only,
    // not the signatures of the names that exist.
    this.denials.delete(cacheKey);
    if (this.denials.size >= this.denialCacheSize) this.denials.delete(this.denials.keys().next().value!);
    this.denials.set(cacheKey, { sig, made: now });
    return sig;
  }

  /** A referral: the child's NS and glue stay unsigned; the DS (or the NSEC proving there is none) is signed (RFC 4035 3.1.4). */
  private referral(zone: Zone, key: ZoneKey, set: AnswerSet): AnswerSet {
    const ns = set.authorities.find((a) => a.type === 'NS');
    if (!ns) return set;
    const cut = lower(bare(ns.name));
    const authorities = [...set.authorities];
    const ds = zone.rrset(cut, 'DS');
    if (ds) {
      for (const d of ds.data) authorities.push(rr(ns.name, 'DS', ds.ttl, d));
      authorities.push(this.rrsigFor(zone, key, ns.name, 'DS', ds.ttl, ds.ttl, ds.data));
    } else {
      authorities.push(...this.nsecRRs(zone, key, ns.name, cut));
    }
    return { ...set, authorities };
  }

  /** Queries for the DNSSEC meta types at an existing name: its NSEC, or every RRSIG it has. */
  private meta(zone: Zone, key: ZoneKey, q: SecureQuery): AnswerSet {
    const nsec = this.nsecFor(zone, q.name);
    const answers: Answer[] = [];
    if (!nsec) return { rcode: 0, aa: true, answers, authorities: [], additionals: [], glueRequired: false };
    if (q.type === 'NSEC') {
      answers.push(...this.nsecRRs(zone, key, q.echo, q.name));
    } else {
      for (const type of nsec.data.rrtypes) {
        if (type === 'RRSIG') continue;
        if (type === 'NSEC') answers.push(this.nsecRRs(zone, key, q.echo, q.name)[1]!);
        else if (type === 'DNSKEY') answers.push(...this.dnskeySignatures(zone, key, q.echo));
        else if (type === ZONEMD && q.name === zone.name)
          answers.push(...this.materialised_(zone, key).zonemd.filter((a) => fieldsOf(a).type === 'RRSIG').map((a) => ({ ...a, name: q.echo }) as Answer));
        else {
          const set = zone.rrset(q.name, type);
          if (set && set.data.length > 0) answers.push(this.rrsigFor(zone, key, q.echo, type, set.ttl, set.ttl, set.data));
        }
      }
    }
    return { rcode: 0, aa: true, answers, authorities: [], additionals: [], glueRequired: false };
  }

  /** The NSEC of `name` (lower case) and its RRSIG, owned by `owner` (as spelled); none if it has none. */
  private nsecRRs(zone: Zone, key: ZoneKey, owner: string, name: string): Answer[] {
    if (this.denialMode === 'nsec') {
      const link = chainOf(zone).at(name);
      if (!link) return [];
      const ttl = negativeTtl();
      return [rr(owner, 'NSEC', ttl, link.data), rr(owner, 'RRSIG', ttl, this.chainSignature(zone, key, link).sig)];
    }
    const nsec = this.nsecFor(zone, name);
    return nsec ? [rr(owner, 'NSEC', nsec.ttl, nsec.data), this.rrsigFor(zone, key, owner, 'NSEC', nsec.ttl, nsec.ttl, [nsec.data])] : [];
  }

  /**
   * The compact-denial NSEC owned by `name`: next name `\000.<name>`, bitmap the types the name
   * has (at a delegation point only NS and DS; DNSKEY at the apex) plus RRSIG and NSEC, or for a
   * name that does not exist RRSIG, NSEC and NXNAME. Undefined for a name too long to have a
   * successor one label longer (255 octets).
   */
  private nsecFor(zone: Zone, name: string): { ttl: number; data: NsecData } | undefined {
    if (this.denialMode === 'nsec') {
      const link = chainOf(zone).at(name);
      return link && { ttl: negativeTtl(), data: link.data };
    }
    if (nameWire(name).length + 2 > 255) return undefined;
    const types = zone.typesAt(name);
    let rrtypes: string[];
    if (types === undefined) rrtypes = ['RRSIG', 'NSEC', typeName(NXNAME)];
    else {
      const at = zone.delegationOf(name) === name ? types.filter((t) => t === 'NS' || t === 'DS') : types;
      rrtypes = [...at, ...(name === zone.name ? ['DNSKEY'] : []), 'RRSIG', 'NSEC'];
    }
    // RFC 9077: the TTL of an NSEC is the lesser of the SOA's TTL and its MINIMUM field.
    return { ttl: negativeTtl(), data: { nextDomain: `\u0000.${name}`, rrtypes } };
  }

  /**
   * The RRs of a section with an RRSIG after each RRset (RRsets are contiguous in our answers).
   * With `expanded` (chain denial): an RRset a wildcard answers for is signed as the wildcard's
   * (RFC 4035 2.2, Labels without the `*`), and `expanded` is told its owner (the proof that no
   * closer name exists goes with it). Without it (compact denial), as if the name existed.
   */
  private signSection(zone: Zone, key: ZoneKey, rrs: Answer[], expanded?: (name: string) => void): Answer[] {
    if (rrs.length === 0) return rrs;
    const groups = new Map<string, Answer[]>();
    for (const a of rrs) {
      const k = `${lower(bare(a.name))} ${a.type}`;
      const g = groups.get(k);
      if (g) g.push(a);
      else groups.set(k, [a]);
    }
    const out: Answer[] = [];
    for (const g of groups.values()) {
      const first = fieldsOf(g[0]!);
      const name = lower(bare(first.name));
      const wildcard = expanded && zone.wildcardOf(name);
      if (wildcard) expanded(name);
      out.push(...g, this.rrsigFor(zone, key, first.name, first.type, first.ttl, first.type === 'SOA' ? SOA_TTL : first.ttl, g.map((a) => fieldsOf(a).data), wildcard || undefined));
    }
    return out;
  }

  /** The DNSKEY RRset's signatures: one per key of the zone held here, so either key's DS validates during a rollover. */
  private dnskeySignatures(zone: Zone, key: ZoneKey, owner: string): Answer[] {
    return key.keySigners.map((k) => this.rrsigFor(zone, k, owner, 'DNSKEY', DNSKEY_TTL, DNSKEY_TTL, key.dnskeys));
  }

  /**
   * An RRSIG RR for an RRset (`ttl` as served, `originalTtl` as signed), from the cache when it
   * can be. `signedAs`: the wildcard the RRset was synthesised from, whose name is signed.
   */
  private rrsigFor(zone: Zone, key: SigningKey, owner: string, type: string, ttl: number, originalTtl: number, data: readonly unknown[], signedAs?: string): Answer {
    return rr(owner, 'RRSIG', ttl, this.rrsigEntry(zone, key, signedAs ?? lower(bare(owner)), type, originalTtl, data).sig);
  }

  /** The cached signature over the RRset of `name` (lower case, as signed) and `type`, made when there is none young enough. */
  private rrsigEntry(zone: Zone, key: SigningKey, name: string, type: string, originalTtl: number, data: readonly unknown[]): Cached {
    const cacheKey = `${zone.name}\t${zone.serial}\t${key.keyTag}\t${name}\t${type}`;
    const now = Math.floor(this.now() / 1000);
    let hit = this.cache.get(cacheKey);
    if (hit && now - hit.made < this.refresh && now >= hit.made) {
      this.stats.cacheHits++;
    } else {
      const sig = signRRset(key, name, type, originalTtl, data, validityAround(now * 1000, this.inceptionOffset, this.lifetime));
      hit = { sig, made: now };
      this.stats.signatures++;
      this.cache.delete(cacheKey);
      if (this.cache.size >= this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(cacheKey, hit);
    }
    return hit;
  }

  /**
   * Signs ahead what answers from `zone` carry: every authoritative RRset (a delegation's DS, not
   * its NS nor glue) and, with chain denial, every NSEC of the chain, into the caches the answers
   * read. The server calls it per zone while it warms up, so the first question for each name
   * costs no signing (a realistic mix asks thousands of names across the zones once each at
   * first: signing them then was most of the work). Stops at 80% of each cache so that warming
   * many zones never pushes out what is already there; answers sign the rest as they come. Only
   * when the zone's key is loaded (the warm-up loads it first). Returns the signatures made.
   */
  warm(zone: Zone): number {
    const key = this.keys.forZone(zone.name, zone.serial);
    if (!key || key instanceof Promise) return 0;
    const before = this.stats.signatures;
    const room = Math.floor(this.cacheSize * 0.8);
    for (const [name, sets] of zone.owners()) {
      const cut = zone.delegationOf(name);
      if (cut && cut !== name) continue;
      for (const set of sets.values()) {
        if (this.cache.size >= room) return this.stats.signatures - before;
        if (set.type === ZONEMD || (cut === name && set.type !== 'DS') || set.data.length === 0) continue;
        this.rrsigEntry(zone, key, name, set.type, set.type === 'SOA' ? SOA_TTL : set.ttl, set.data);
      }
    }
    if (this.denialMode === 'nsec')
      for (const link of chainOf(zone).links) {
        if (this.chainSigs.size >= room) break;
        this.chainBytes(zone, key, link);
      }
    return this.stats.signatures - before;
  }

  get cachedSignatures(): number {
    return this.cache.size + this.denials.size;
  }
}

/** An online signer over a data directory's keys (`<dataDir>/keys/dnssec/`, `dnssec_keys`). */
export function onlineSigner(db: SqlReader, dataDir: string, opts: OnlineSignerOptions = {}): OnlineSigner {
  return new OnlineSigner(new DnssecKeyring(db, dataDir), opts);
}

/** Writes one RR of class IN (owner as wire bytes, possibly a compression pointer) at `at`; returns the offset after it. */
function putRr(out: Buffer, at: number, owner: Buffer, type: number, ttl: number, data: Buffer): number {
  at += owner.copy(out, at);
  out.writeUInt16BE(type, at);
  out.writeUInt16BE(1, at + 2);
  out.writeUInt32BE(ttl, at + 4);
  out.writeUInt16BE(data.length, at + 8);
  at += 10;
  return at + data.copy(out, at);
}
