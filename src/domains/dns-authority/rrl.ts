import { isIPv4, isIPv6 } from 'node:net';

// Response rate limiting against reflection and amplification: one token bucket per source
// prefix (IPv4 /24, IPv6 /56 by default), refilled at `responsesPerSecond` and holding one
// second's worth. Past the rate a response is dropped, except every `slip`-th one, which is sent
// empty with TC set so that a real client behind a spoofed-looking prefix retries over TCP (where
// the handshake proves its address and no limit applies). As BIND's and Knot's RRL, minus the
// per-name classification: the bucket is per prefix only.

export interface RrlOptions {
  responsesPerSecond: number;
  /** Every slip-th limited response is truncated instead of dropped; 0 drops them all. Default 2. */
  slip?: number;
  /** Prefix length that groups IPv4 sources. Default 24. */
  prefixV4?: number;
  /** Prefix length that groups IPv6 sources. Default 56. */
  prefixV6?: number;
  /** Buckets kept at most (idle full buckets are forgotten first). Default 65,536. */
  maxEntries?: number;
  /** Clock (milliseconds), for tests. */
  now?: () => number;
}

export const RRL_DEFAULTS = { responsesPerSecond: 200, slip: 2, prefixV4: 24, prefixV6: 56, maxEntries: 65_536 } as const;

export type RrlVerdict = 'send' | 'drop' | 'slip';

interface Bucket {
  tokens: number;
  at: number;
  limited: number;
}

function v4(address: string, bits: number): string | undefined {
  const parts = address.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) n = n * 256 + Number(p);
  const mask = bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
  return `4:${(n & mask) >>> 0}/${bits}`;
}

/** The eight 16-bit groups of an IPv6 address (zone index ignored), or undefined if it is not one. */
export function ipv6Groups(address: string): number[] | undefined {
  const addr = address.replace(/%.*$/, '');
  const halves = addr.split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    for (const part of s.split(':')) {
      if (part.includes('.')) {
        const o = part.split('.').map(Number);
        out.push(((o[0]! << 8) | o[1]!) & 0xffff, ((o[2]! << 8) | o[3]!) & 0xffff);
      } else out.push(parseInt(part, 16) & 0xffff);
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return undefined;
  return [...head, ...new Array<number>(fill).fill(0), ...tail];
}

/** The bucket key of a source address: its prefix. IPv4-mapped IPv6 counts as IPv4. */
export function prefixKey(address: string, prefixV4: number, prefixV6: number): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return v4(mapped[1]!, prefixV4) ?? address;
  if (isIPv4(address)) return v4(address, prefixV4) ?? address;
  if (!isIPv6(address.replace(/%.*$/, ''))) return address;
  const g = ipv6Groups(address);
  if (!g) return address;
  let bits = prefixV6;
  const kept: string[] = [];
  for (const group of g) {
    if (bits <= 0) break;
    const take = Math.min(16, bits);
    kept.push(((group >> (16 - take)) << (16 - take)).toString(16));
    bits -= take;
  }
  return `6:${kept.join(':')}/${prefixV6}`;
}

export class ResponseRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly rate: number;
  private readonly capacity: number;
  private readonly slip: number;
  private readonly prefixV4: number;
  private readonly prefixV6: number;
  private readonly maxEntries: number;
  private lastSweep = 0;
  private lastAddress = '';
  private lastKey = '';
  readonly stats = { sent: 0, dropped: 0, slipped: 0 };

  private readonly now: () => number;

  constructor(opts: RrlOptions, now?: () => number) {
    this.now = now ?? opts.now ?? (() => performance.now());
    if (!(opts.responsesPerSecond > 0)) throw new Error('rrl.responsesPerSecond must be positive');
    this.rate = opts.responsesPerSecond / 1000;
    this.capacity = Math.max(1, opts.responsesPerSecond);
    this.slip = Math.max(0, Math.floor(opts.slip ?? RRL_DEFAULTS.slip));
    this.prefixV4 = opts.prefixV4 ?? RRL_DEFAULTS.prefixV4;
    this.prefixV6 = opts.prefixV6 ?? RRL_DEFAULTS.prefixV6;
    this.maxEntries = Math.max(16, opts.maxEntries ?? RRL_DEFAULTS.maxEntries);
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Takes one response's token for `address`: send it, drop it, or slip it (send it truncated). */
  check(address: string): RrlVerdict {
    const t = this.now();
    // The last source's key again without parsing it (a flood comes from few sources, each
    // parse cost a regex, a split and strings per response).
    if (address !== this.lastAddress) {
      this.lastKey = prefixKey(address, this.prefixV4, this.prefixV6);
      this.lastAddress = address;
    }
    const key = this.lastKey;
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxEntries) this.evict(t);
      b = { tokens: this.capacity, at: t, limited: 0 };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.capacity, b.tokens + (t - b.at) * this.rate);
      b.at = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      this.stats.sent++;
      return 'send';
    }
    b.limited++;
    if (this.slip > 0 && b.limited % this.slip === 0) {
      this.stats.slipped++;
      return 'slip';
    }
    this.stats.dropped++;
    return 'drop';
  }

  /** Forgets buckets that have refilled (idle ones), then the oldest, to stay under maxEntries. */
  private evict(t: number): void {
    if (t - this.lastSweep >= 1000) {
      this.lastSweep = t;
      for (const [k, b] of this.buckets) if (b.tokens + (t - b.at) * this.rate >= this.capacity) this.buckets.delete(k);
    }
    for (const k of this.buckets.keys()) {
      if (this.buckets.size < this.maxEntries) break;
      this.buckets.delete(k);
    }
  }
}
