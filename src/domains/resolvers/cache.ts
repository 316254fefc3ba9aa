// The resolver's cache: RRsets and negative answers, each until its TTL runs out (capped), least
// recently used first out when full.
//
// - Positive: one entry per (name, type), TTL = the smallest TTL of the RRset, capped at maxTtl.
//   Entries carry a rank (RFC 2181 5.4.1): data from an authoritative answer outranks NS records
//   of a referral, which outrank glue. Clients are answered only from answer-ranked data; glue
//   only ever tells the resolver where to send a query. Lower-ranked data never replaces higher.
// - Negative (RFC 2308): NXDOMAIN per name, NODATA per (name, type), kept for min(SOA TTL, SOA
//   MINIMUM) capped at maxNegativeTtl, and answered with that SOA. An NXDOMAIN also covers every
//   name below it (RFC 8020).
// - TTLs handed out are the remaining time, not the original TTL.
import type { Answer } from 'dns-packet';
import { selfAndAncestors } from './names.ts';

export const RANK = { glue: 0, referral: 1, answer: 2 } as const;
export type Rank = (typeof RANK)[keyof typeof RANK];

export interface CacheOptions {
  /** Default 10,000 entries (RRsets and negative answers). */
  maxEntries?: number;
  /** Cap on positive TTLs, seconds. Default 86,400 (1 day). */
  maxTtl?: number;
  /** Cap on negative TTLs, seconds. Default 3,600 (RFC 2308 suggests 1-3 hours). */
  maxNegativeTtl?: number;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
}

interface Positive {
  kind: 'rrset';
  expires: number;
  rank: Rank;
  rrs: Answer[];
}

interface Negative {
  kind: 'nxdomain' | 'nodata';
  expires: number;
  soa: Answer;
}

type Entry = Positive | Negative;

export interface NegativeHit {
  rcode: 'NXDOMAIN' | 'NOERROR';
  /** The SOA with its remaining TTL, for the authority section. */
  soa: Answer;
}

export interface CacheStats {
  entries: number;
  hits: number;
  misses: number;
  evictions: number;
}

type SoaData = { minimum: number };

export class Cache {
  private readonly map = new Map<string, Entry>();
  private readonly maxEntries: number;
  readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly now: () => number;
  private readonly counts = { hits: 0, misses: 0, evictions: 0 };

  constructor(opts: CacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.maxTtl = opts.maxTtl ?? 86_400;
    this.maxNegativeTtl = opts.maxNegativeTtl ?? 3_600;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.map.size;
  }

  stats(): CacheStats {
    return { entries: this.map.size, ...this.counts };
  }

  clear(): void {
    this.map.clear();
  }

  private set(key: string, e: Entry): void {
    this.map.delete(key);
    this.map.set(key, e);
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
      this.counts.evictions++;
    }
  }

  /** A live entry (refreshed as most recently used), or undefined (expired ones are removed). */
  private live(key: string): Entry | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.map.delete(key);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, e);
    return e;
  }

  private remaining(expires: number): number {
    return Math.max(0, Math.floor((expires - this.now()) / 1000));
  }

  /** Stores an RRset (all records of one name and type). TTL 0 is not cached. */
  putRRset(name: string, type: string, rrs: Answer[], rank: Rank): void {
    if (rrs.length === 0) return;
    const ttl = Math.min(this.maxTtl, ...rrs.map((r) => ('ttl' in r && typeof r.ttl === 'number' ? r.ttl : 0)));
    if (!(ttl > 0)) return;
    const key = `${name}|${type}`;
    const old = this.map.get(key);
    if (old && old.kind === 'rrset' && old.expires > this.now() && old.rank > rank) return;
    // A positive answer replaces a cached NODATA for the same (name, type), and an NXDOMAIN for the name.
    if (rank === RANK.answer) this.map.delete(`${name}|NX`);
    this.set(key, { kind: 'rrset', expires: this.now() + ttl * 1000, rank, rrs: rrs.map((r) => ({ ...r })) });
  }

  /** The RRset with its remaining TTL, if one of at least `minRank` is cached. */
  getRRset(name: string, type: string, minRank: Rank = RANK.answer): Answer[] | undefined {
    const e = this.live(`${name}|${type}`);
    if (!e || e.kind !== 'rrset' || e.rank < minRank) {
      if (minRank === RANK.answer) this.counts.misses++;
      return undefined;
    }
    if (minRank === RANK.answer) this.counts.hits++;
    const ttl = this.remaining(e.expires);
    return e.rrs.map((r) => ({ ...r, ttl }) as Answer);
  }

  private negativeTtl(soa: Answer): number {
    const data = (soa as { data?: SoaData }).data;
    const ttl = Math.min((soa as { ttl?: number }).ttl ?? 0, data?.minimum ?? 0);
    return Math.min(this.maxNegativeTtl, ttl);
  }

  /**
   * Stores a negative answer: NXDOMAIN (`type` undefined) or NODATA for `type`. Without an SOA
   * there is nothing to time it by, so nothing is cached (RFC 2308 5).
   */
  putNegative(name: string, type: string | undefined, soa: Answer | undefined): void {
    if (!soa || soa.type !== 'SOA') return;
    const ttl = this.negativeTtl(soa);
    if (!(ttl > 0)) return;
    const entry: Negative = { kind: type === undefined ? 'nxdomain' : 'nodata', expires: this.now() + ttl * 1000, soa: { ...soa } };
    if (type === undefined) this.set(`${name}|NX`, entry);
    else {
      const key = `${name}|${type}`;
      const old = this.map.get(key);
      // Authoritative data is not overwritten by a denial that raced with it.
      if (old && old.kind === 'rrset' && old.expires > this.now() && old.rank === RANK.answer) return;
      this.set(key, entry);
    }
  }

  /** A cached NXDOMAIN for `name` or an ancestor of it (RFC 8020), or a NODATA for (name, type). */
  getNegative(name: string, type: string): NegativeHit | undefined {
    const nodata = this.map.get(`${name}|${type}`);
    if (nodata && nodata.kind === 'nodata') {
      const e = this.live(`${name}|${type}`) as Negative | undefined;
      if (e) return this.negativeHit('NOERROR', e);
    }
    for (const n of selfAndAncestors(name)) {
      if (n === '') break;
      const e = this.map.has(`${n}|NX`) ? (this.live(`${n}|NX`) as Negative | undefined) : undefined;
      if (e) return this.negativeHit('NXDOMAIN', e);
    }
    return undefined;
  }

  private negativeHit(rcode: NegativeHit['rcode'], e: Negative): NegativeHit {
    this.counts.hits++;
    return { rcode, soa: { ...e.soa, ttl: this.remaining(e.expires) } as Answer };
  }
}
