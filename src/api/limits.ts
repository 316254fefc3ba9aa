// Admission before any expensive work: token buckets per source address and per identity, and
// the count of refused anonymous attempts that the platform summarises into the ledger.
import { isIPv4 } from 'node:net';

/** The source prefix attempts are counted by: IPv4 /24, IPv6 /56 (IPv4-mapped IPv6 counts as IPv4). */
export function sourcePrefix(address: string): string {
  const a = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (isIPv4(a)) return `${a.split('.').slice(0, 3).join('.')}.0/24`;
  const halves = a.toLowerCase().replace(/%.*$/, '').split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = [...head, ...new Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail];
  const g = groups.map((x) => parseInt(x, 16) || 0);
  return `${g.slice(0, 3).map((x) => x.toString(16)).join(':')}:${(g[3]! & 0xff00).toString(16)}::/56`;
}

export interface BucketOptions {
  /** Tokens added per second. */
  rate: number;
  /** Tokens a bucket holds at most (the burst). */
  burst: number;
  /** Buckets kept at most; the least recently used goes first. */
  maxEntries?: number;
}

/** Token buckets by key. take() answers undefined (go on) or the milliseconds until a token is back. */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly opts: BucketOptions,
    private readonly now: () => number = Date.now,
  ) {}

  take(key: string): number | undefined {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.opts.burst, at: t };
    this.buckets.delete(key);
    b.tokens = Math.min(this.opts.burst, b.tokens + ((t - b.at) / 1000) * this.opts.rate);
    b.at = t;
    this.buckets.set(key, b);
    if (this.buckets.size > (this.opts.maxEntries ?? 65_536)) this.buckets.delete(this.buckets.keys().next().value!);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil(((1 - b.tokens) / this.opts.rate) * 1000));
  }
}

export interface NoiseCount {
  source: string;
  reason: string;
  count: number;
}

/** Pairs (source prefix, reason) kept per interval; the rest fold into source `other`. */
export const MAX_NOISE_SOURCES = 256;

/** Refused anonymous attempts of one interval, counted in memory and drained into one summary. */
export class NoiseCounter {
  private counts = new Map<string, NoiseCount>();
  private since: string;
  constructor(private readonly now: () => Date = () => new Date()) {
    this.since = this.now().toISOString();
  }

  add(source: string, reason: string): void {
    let key = `${source} ${reason}`;
    if (!this.counts.has(key) && this.counts.size >= MAX_NOISE_SOURCES) {
      source = 'other';
      key = `${source} ${reason}`;
    }
    const c = this.counts.get(key) ?? { source, reason, count: 0 };
    c.count++;
    this.counts.set(key, c);
  }

  /** The interval's counts (sorted, so the summary is canonical), and a new interval begins. */
  drain(): { from: string; to: string; counts: NoiseCount[] } | undefined {
    const to = this.now().toISOString();
    const from = this.since;
    this.since = to;
    if (this.counts.size === 0) return undefined;
    const counts = [...this.counts.values()].sort((a, b) => (a.source === b.source ? (a.reason < b.reason ? -1 : 1) : a.source < b.source ? -1 : 1));
    this.counts = new Map();
    return { from, to, counts };
  }
}
