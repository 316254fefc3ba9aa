import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { rangeCapacity, seqOfAddress, workloadNet } from './addresses.ts';

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
