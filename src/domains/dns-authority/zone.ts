import type { Answer } from 'dns-packet';
import { isWithin, lowerAscii, parseRecord, targetOf, type RData } from '../records/rdata.ts';
import { negativeTtl, SOA_TTL, type Soa } from '../records/soa.ts';
import { HASH_SHA384, SCHEME_SIMPLE, ZONEMD, encodeZonemd, zonemdDigest, type ZoneRR } from '../zonefile/zonemd.ts';

// One zone compiled into memory from its projection rows, and the answer algorithm of RFC 1034
// section 4.3.2 with the wildcard rules of RFC 4592. Pure and synchronous: the ZoneView decides
// when a compiled zone is stale (by its serial), this file only answers from it.

export interface RecordRow {
  name: string;
  type: string;
  value: string;
  ttl: number;
}

interface RRset {
  type: string;
  ttl: number;
  rdata: RData[];
  /** The rdata in dns-packet's shape, built once. */
  data: unknown[];
}

type Node = Map<string, RRset>;

export interface AnswerSet {
  /** 0 NOERROR or 3 NXDOMAIN (the rcode of the last name in a CNAME chain, RFC 6604). */
  rcode: 0 | 3;
  aa: boolean;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
  /** Glue of a referral: the response is truncated rather than sent without it (RFC 9471). */
  glueRequired: boolean;
  /** The delegation whose NS RRset is in authority, when the answer is (or, after a CNAME, ends in) a referral. */
  referral?: string;
}

/** Longest in-zone CNAME chain followed before the answer stops (the client restarts from there). */
export const MAX_CHAIN = 8;

/** Which single RRset a minimal answer to ANY carries (RFC 8482 section 4.1). */
const ANY_PREFERENCE = ['CNAME', 'A', 'AAAA', 'MX', 'TXT', 'SRV', 'CAA', 'NS', 'SOA'];

export function packetData(d: RData): unknown {
  switch (d.type) {
    case 'A':
    case 'AAAA':
      return d.address;
    case 'CNAME':
    case 'NS':
      return d.target;
    case 'MX':
      return { preference: d.preference, exchange: d.exchange };
    case 'SRV':
      return { priority: d.priority, weight: d.weight, port: d.port, target: d.target };
    case 'TXT':
      return d.chunks;
    case 'CAA':
      return { flags: d.flags, tag: d.tag, value: d.value };
    case 'DS':
      return { keyTag: d.keyTag, algorithm: d.algorithm, digestType: d.digestType, digest: d.digest };
  }
}

function rr(name: string, set: RRset, i: number, ttl = set.ttl): Answer {
  return { name, type: set.type, class: 'IN', ttl, data: set.data[i] } as Answer;
}

function pushSet(out: Answer[], owner: string, set: RRset): void {
  for (let i = 0; i < set.data.length; i++) out.push(rr(owner, set, i));
}

function parent(name: string): string {
  const dot = name.indexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1);
}

export class Zone {
  /** Names that own data, with their RRsets by type. The apex always owns the (synthesised) SOA. */
  private readonly nodes = new Map<string, Node>();
  /** Names that exist: owners of data and the empty non-terminals between them and the apex. */
  private readonly exists = new Set<string>();
  /** Delegation points: names below the apex that own an NS RRset. */
  private readonly cuts = new Set<string>();
  private readonly soaSet: RRset;
  readonly recordCount: number;

  constructor(
    readonly name: string,
    readonly imvu: string,
    readonly serial: number,
    readonly soa: Soa,
    rows: Iterable<RecordRow>,
  ) {
    const soaData = { ...soa, mname: soa.mname.replace(/\.$/, ''), rname: soa.rname.replace(/\.$/, '') };
    this.soaSet = { type: 'SOA', ttl: SOA_TTL, rdata: [], data: [soaData] };
    this.nodes.set(name, new Map([['SOA', this.soaSet]]));
    this.exists.add(name);
    let count = 0;
    const unique = new Set<string>();
    for (const row of rows) {
      const owner = lowerAscii(row.name);
      if (!isWithin(owner, name) || (row.type === 'CNAME' && owner === name)) continue;
      const data = parseRecord(row.type, row.value);
      if (!data) continue;
      let node = this.nodes.get(owner);
      if (!node) this.nodes.set(owner, (node = new Map()));
      let set = node.get(row.type);
      if (!set) node.set(row.type, (set = { type: row.type, ttl: row.ttl >>> 0, rdata: [], data: [] }));
      // RFC 2181 5.2: one TTL per RRset; serve the smallest one stored.
      set.ttl = Math.min(set.ttl, row.ttl >>> 0);
      const packet = packetData(data);
      const key = `${owner} ${row.type} ${JSON.stringify(packet)}`;
      if (unique.has(key)) continue;
      unique.add(key);
      set.rdata.push(data);
      set.data.push(packet);
      count++;
      for (let n = owner; n !== name && !this.exists.has(n); n = parent(n)) this.exists.add(n);
      if (row.type === 'NS' && owner !== name) this.cuts.add(owner);
    }
    this.recordCount = count;
    // The apex ZONEMD (RFC 8976): the digest of the zone as compiled here, unsigned. A signed zone
    // is served with the digest of its signed form instead (src/domains/dnssec/signed-zone.ts).
    const digest = zonemdDigest(name, serial, this.unsignedRecords());
    const zonemd = encodeZonemd({ serial, scheme: SCHEME_SIMPLE, algorithm: HASH_SHA384, digest });
    this.nodes.get(name)!.set(ZONEMD, { type: ZONEMD, ttl: SOA_TTL, rdata: [], data: [zonemd] });
  }

  /** Every RR of the zone as compiled (without the apex ZONEMD), in dns-packet's shape. */
  private unsignedRecords(): ZoneRR[] {
    const out: ZoneRR[] = [];
    for (const [owner, sets] of this.nodes)
      for (const set of sets.values()) if (set.type !== ZONEMD || owner !== this.name) for (const d of set.data) out.push({ name: owner, type: set.type, class: 'IN', ttl: set.ttl, data: d });
    return out;
  }

  /** The apex ZONEMD of the zone as compiled (unsigned): its RDATA. */
  get zonemd(): Buffer {
    return this.nodes.get(this.name)!.get(ZONEMD)!.data[0] as Buffer;
  }

  /**
   * Answers `qname` (absolute, lower case, no trailing dot, inside this zone) for `qtype`;
   * `echo` is the name as the question spelled it, used as the owner of the answer.
   */
  lookup(qname: string, echo: string, qtype: string): AnswerSet {
    const res: AnswerSet = { rcode: 0, aa: true, answers: [], authorities: [], additionals: [], glueRequired: false };
    const cut = this.cutAbove(qname, qtype);
    if (cut) return this.referral(cut, res);
    let name = qname;
    let owner = echo;
    // Made at the first CNAME: most lookups follow none.
    let seen: Set<string> | undefined;
    for (let hop = 0; ; hop++) {
      const node = this.find(name);
      if (node === 'nxdomain') {
        res.rcode = 3;
        return this.negative(res);
      }
      if (node === 'nodata') return this.negative(res);
      if (qtype === 'ANY') {
        const type = ANY_PREFERENCE.find((t) => node.has(t)) ?? node.keys().next().value!;
        pushSet(res.answers, owner, node.get(type)!);
        return res;
      }
      const set = node.get(qtype);
      if (set) {
        pushSet(res.answers, owner, set);
        this.addAdditional(set, res);
        return res;
      }
      const cname = node.get('CNAME');
      if (!cname) return this.negative(res);
      pushSet(res.answers, owner, cname);
      (seen ??= new Set()).add(name);
      const target = targetOf(cname.rdata[0]!)!;
      // Follow the chain only inside this zone, not round a loop. A target at or below a delegation
      // in this zone is the child's to answer: the CNAME comes with the child's referral, its NS
      // in authority and their addresses in additional (RFC 1034 4.3.2 step 3b). AA stays set:
      // it speaks for the CNAME, our data.
      if (hop + 1 >= MAX_CHAIN || seen.has(target) || !isWithin(target, this.name)) return res;
      const cut = this.cutAbove(target, qtype);
      if (cut) return this.referral(cut, res, true);
      name = target;
      owner = (cname.data[0] as string).replace(/\.$/, '');
    }
  }

  /** The topmost delegation point at or above `name` (strictly below the apex), if any. */
  private cutAbove(name: string, qtype: string): string | undefined {
    if (this.cuts.size === 0 || name === this.name) return undefined;
    let i = name.length - this.name.length - 1;
    while (i > 0) {
      const j = name.lastIndexOf('.', i - 1);
      const candidate = name.slice(j + 1);
      // A DS query at the cut itself belongs to the parent side (RFC 4035 3.1.4.1).
      if (this.cuts.has(candidate) && !(candidate === name && qtype === 'DS')) return candidate;
      i = j;
    }
    return undefined;
  }

  /** The node that answers for `name`: its own, a wildcard's (RFC 4592), or none. */
  private find(name: string): Node | 'nodata' | 'nxdomain' {
    const own = this.nodes.get(name);
    if (own) return own;
    if (this.exists.has(name)) return 'nodata'; // an empty non-terminal
    let encloser = parent(name);
    while (encloser !== this.name && !this.exists.has(encloser)) encloser = parent(encloser);
    const source = '*.' + encloser;
    const wild = this.nodes.get(source);
    if (wild) return wild;
    return this.exists.has(source) ? 'nodata' : 'nxdomain';
  }

  private negative(res: AnswerSet): AnswerSet {
    res.authorities.push(rr(this.name, this.soaSet, 0, negativeTtl()));
    return res;
  }

  private referral(cut: string, res: AnswerSet, afterCname = false): AnswerSet {
    if (!afterCname) res.aa = false;
    const ns = this.nodes.get(cut)!.get('NS')!;
    res.referral = cut;
    pushSet(res.authorities, cut, ns);
    const done = new Set<string>();
    for (const d of ns.rdata) {
      const target = targetOf(d)!;
      if (done.has(target) || !isWithin(target, this.name)) continue;
      done.add(target);
      const below = isWithin(target, cut);
      const node = this.nodes.get(target);
      // Glue below the cut is required; an address elsewhere in this zone is a courtesy.
      if (!below && this.cutAbove(target, 'A')) continue;
      for (const t of ['A', 'AAAA']) {
        const set = node?.get(t);
        if (!set) continue;
        pushSet(res.additionals, target, set);
        if (below) res.glueRequired = true;
      }
    }
    return res;
  }

  /** Addresses of in-zone targets of NS, MX and SRV answers (RFC 1035 3.3, RFC 2782), if they fit. */
  private addAdditional(set: RRset, res: AnswerSet): void {
    if (set.type !== 'NS' && set.type !== 'MX' && set.type !== 'SRV') return;
    const done = new Set<string>();
    for (const d of set.rdata) {
      const target = targetOf(d);
      if (!target || done.has(target) || !isWithin(target, this.name) || this.cutAbove(target, 'A')) continue;
      done.add(target);
      const node = this.nodes.get(target);
      for (const t of ['A', 'AAAA']) {
        const s = node?.get(t);
        if (s) pushSet(res.additionals, target, s);
      }
    }
  }

  // Read-only views for the DNSSEC signers (src/domains/dnssec).

  /** Types of the node answering for `name` (its own, a wildcard's, [] for an empty non-terminal); undefined if it does not exist. */
  typesAt(name: string): string[] | undefined {
    if (!isWithin(name, this.name)) return undefined;
    const node = this.find(name);
    if (node === 'nxdomain') return undefined;
    return node === 'nodata' ? [] : [...node.keys()];
  }

  /** Whether `name` exists: owns data or is an empty non-terminal (a name a wildcard answers for does not). */
  has(name: string): boolean {
    return this.exists.has(name);
  }

  /** The closest encloser of `name` (RFC 4592 3.3.1): `name` itself if it exists, else its longest existing ancestor. */
  closestEncloser(name: string): string {
    let n = name;
    while (n !== this.name && !this.exists.has(n) && isWithin(n, this.name)) n = parent(n);
    return n;
  }

  /** The wildcard (`*.<closest encloser>`) whose data answers for `name`, when `name` does not exist and one does. */
  wildcardOf(name: string): string | undefined {
    if (this.exists.has(name) || !isWithin(name, this.name)) return undefined;
    const source = '*.' + this.closestEncloser(name);
    return this.nodes.has(source) ? source : undefined;
  }

  /** One RRset of the node answering for `name`, as served. */
  rrset(name: string, type: string): { ttl: number; data: readonly unknown[] } | undefined {
    if (!isWithin(name, this.name)) return undefined;
    const node = this.find(name);
    return typeof node === 'string' ? undefined : node.get(type);
  }

  /** The delegation point at or above `name` (strictly below the apex), if any. */
  delegationOf(name: string): string | undefined {
    return this.cutAbove(name, 'A');
  }

  /** Every owner name with its RRsets. */
  owners(): IterableIterator<[string, ReadonlyMap<string, { type: string; ttl: number; data: readonly unknown[] }>]> {
    return this.nodes.entries();
  }
}
