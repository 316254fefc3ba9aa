import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parsePrefix, prefixHolds, prefixesOverlap, rangeCapacity, rangesOverlap, seqOfAddress, workloadNet, type Prefix } from './addresses.ts';

describe('workload addresses', () => {
  it('gives IMVU 1 the second /30 of the range', () => {
    expect(workloadNet(1)).toEqual({ subnet: '10.96.0.4/30', hostAddress: '10.96.0.5', workloadAddress: '10.96.0.6', prefixLength: 30 });
  });
  it('refuses a sequence outside the range and malformed ranges', () => {
    expect(() => workloadNet(64, '10.0.0.0/24')).toThrow(/does not fit/);
    expect(() => workloadNet(0)).toThrow();
    expect(() => workloadNet(1, '10.0.0.1/24')).toThrow(/host bits/);
    expect(() => workloadNet(1, 'ten/8')).toThrow(/IPv4 prefix/);
  });
  it('holds 100,000 IMVUs in the default range, each /30 distinct and mapped back', () => {
    expect(rangeCapacity()).toBeGreaterThanOrEqual(100_000);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: rangeCapacity() }), (seq) => {
        const n = workloadNet(seq);
        return seqOfAddress(n.workloadAddress) === seq && seqOfAddress(n.hostAddress) === seq;
      }),
    );
    expect(seqOfAddress('127.0.0.1')).toBeUndefined();
    expect(seqOfAddress('10.96.0.2')).toBeUndefined();
  });
});

const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const text = (p: Prefix) => `${dotted(p.base)}/${p.bits}`;

/** Prefixes of length `min`..30 whose first address lies in 10.0.0.0/`universe`. */
const prefixIn = (universe: number, min: number) =>
  fc.tuple(fc.integer({ min: 0, max: 2 ** (32 - universe) - 1 }), fc.integer({ min, max: 30 })).map(([offset, bits]) => {
    const size = 2 ** (32 - bits);
    const base = 0x0a000000 + offset - (offset % size);
    return { base, size, bits };
  });

describe('compute range overlap', () => {
  it('is symmetric, and true exactly when some address lies in both (every address of a /20 tried)', () => {
    const universe = 20;
    const all = Array.from({ length: 2 ** (32 - universe) }, (_, i) => dotted(0x0a000000 + i));
    fc.assert(
      fc.property(prefixIn(universe, universe), prefixIn(universe, universe), (a, b) => {
        const both = all.some((x) => prefixHolds(a, x) && prefixHolds(b, x));
        return rangesOverlap(text(a), text(b)) === rangesOverlap(text(b), text(a)) && rangesOverlap(text(a), text(b)) === both;
      }),
      { numRuns: 300 },
    );
  });

  it('across the whole of 10.0.0.0/8: overlapping ranges share the later first address, disjoint ones share none', () => {
    fc.assert(
      fc.property(prefixIn(8, 8), prefixIn(8, 8), fc.integer({ min: 0x0a000000, max: 0x0affffff }), (a, b, x) => {
        const overlap = prefixesOverlap(a, b);
        expect(prefixesOverlap(b, a)).toBe(overlap);
        if (overlap) expect(prefixHolds(a, dotted(Math.max(a.base, b.base))) && prefixHolds(b, dotted(Math.max(a.base, b.base)))).toBe(true);
        else expect(prefixHolds(a, dotted(x)) && prefixHolds(b, dotted(x))).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  it('examples: the default range and the ranges inside it or beside it', () => {
    expect(rangesOverlap('10.96.0.0/11', '10.96.0.0/11')).toBe(true);
    expect(rangesOverlap('10.96.0.0/11', '10.127.255.252/30')).toBe(true);
    expect(rangesOverlap('10.101.7.0/24', '10.96.0.0/11')).toBe(true);
    expect(rangesOverlap('10.96.0.0/11', '10.128.0.0/11')).toBe(false);
    expect(rangesOverlap('10.100.1.0/24', '10.100.2.0/24')).toBe(false);
    expect(parsePrefix('10.96.0.5/30')).toEqual({ base: 0x0a600004, size: 4, bits: 30 });
    expect(parsePrefix('10.96.0.5')).toEqual({ base: 0x0a600005, size: 1, bits: 32 });
    expect(parsePrefix('default')).toBeUndefined();
  });
});
