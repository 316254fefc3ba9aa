// AUTH brute force: failures cost tokens per source prefix and per account; while either is empty
// AUTH is refused before any password is hashed (454), so guessing costs the guesser time, not us CPU.
import { sourcePrefix } from '../../api/limits.ts';

export interface FailureLimitOptions {
  /** Failures allowed in a burst. */
  burst: number;
  /** Failures forgiven per second. */
  rate: number;
  maxEntries?: number;
}

export class FailureLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly opts: FailureLimitOptions,
    private readonly now: () => number = Date.now,
  ) {}

  private bucket(key: string) {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.opts.burst, at: t };
    b.tokens = Math.min(this.opts.burst, b.tokens + ((t - b.at) / 1000) * this.opts.rate);
    b.at = t;
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > (this.opts.maxEntries ?? 65_536)) this.buckets.delete(this.buckets.keys().next().value!);
    return b;
  }

  /** Whether `key` has no failure left to spend. */
  blocked(key: string): boolean {
    return this.bucket(key).tokens < 1;
  }

  fail(key: string): void {
    const b = this.bucket(key);
    b.tokens = Math.max(0, b.tokens - 1);
  }
}

export const AUTH_LIMIT_DEFAULTS = {
  perSource: { burst: 20, rate: 0.1 },
  perAccount: { burst: 10, rate: 0.02 },
} as const;

export { sourcePrefix };
