import { describe, expect, it } from 'vitest';
import type { Answer } from 'dns-packet';
import { Cache, RANK } from './cache.ts';
import { Acl, AclError } from './acl.ts';

const a = (name: string, ip: string, ttl: number) => ({ name, type: 'A', class: 'IN', ttl, data: ip }) as Answer;
const soa = (zone: string, ttl: number, minimum: number) =>
  ({ name: zone, type: 'SOA', class: 'IN', ttl, data: { mname: 'ns.x', rname: 'h.x', serial: 1, refresh: 1, retry: 1, expire: 1, minimum } }) as Answer;
const ttls = (rrs: Answer[] | undefined) => rrs?.map((r) => (r as { ttl: number }).ttl);

function clocked(opts: ConstructorParameters<typeof Cache>[0] = {}) {
  let now = 1_000_000;
  const cache = new Cache({ ...opts, now: () => now });
  return { cache, tick: (s: number) => (now += s * 1000) };
}

describe('resolver cache', () => {
  it('honours the smallest TTL of an RRset, counts it down, and forgets it when it runs out', () => {
    const { cache, tick } = clocked();
    cache.putRRset('www.example', 'A', [a('www.example', '192.0.2.1', 300), a('www.example', '192.0.2.2', 100)], RANK.answer);
    expect(ttls(cache.getRRset('www.example', 'A'))).toEqual([100, 100]);
    tick(40);
    expect(ttls(cache.getRRset('www.example', 'A'))).toEqual([60, 60]);
    tick(60);
    expect(cache.getRRset('www.example', 'A')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('caps TTLs at maxTtl and does not cache TTL 0', () => {
    const { cache } = clocked({ maxTtl: 600 });
    cache.putRRset('a.example', 'A', [a('a.example', '192.0.2.1', 86400)], RANK.answer);
    expect(ttls(cache.getRRset('a.example', 'A'))).toEqual([600]);
    cache.putRRset('z.example', 'A', [a('z.example', '192.0.2.1', 0)], RANK.answer);
    expect(cache.getRRset('z.example', 'A')).toBeUndefined();
  });

  it('answers clients only from answer-ranked data; glue never replaces an answer', () => {
    const { cache } = clocked();
    cache.putRRset('ns.example', 'A', [a('ns.example', '192.0.2.53', 300)], RANK.glue);
    expect(cache.getRRset('ns.example', 'A')).toBeUndefined();
    expect(cache.getRRset('ns.example', 'A', RANK.glue)).toBeDefined();
    cache.putRRset('ns.example', 'A', [a('ns.example', '192.0.2.54', 300)], RANK.answer);
    cache.putRRset('ns.example', 'A', [a('ns.example', '203.0.113.66', 300)], RANK.glue);
    expect(cache.getRRset('ns.example', 'A')?.map((r) => (r as { data: unknown }).data)).toEqual(['192.0.2.54']);
  });

  it('negative answers for min(SOA TTL, MINIMUM) capped at maxNegativeTtl; NXDOMAIN covers the names below', () => {
    const { cache, tick } = clocked({ maxNegativeTtl: 900 });
    cache.putNegative('nope.example', undefined, soa('example', 3600, 300));
    cache.putNegative('www.example', 'MX', soa('example', 120, 3600));
    cache.putNegative('big.example', undefined, soa('example', 86400, 86400));
    expect(cache.getNegative('nope.example', 'A')).toMatchObject({ rcode: 'NXDOMAIN', soa: { ttl: 300 } });
    expect(cache.getNegative('a.b.nope.example', 'TXT')).toMatchObject({ rcode: 'NXDOMAIN' });
    expect(cache.getNegative('www.example', 'MX')).toMatchObject({ rcode: 'NOERROR', soa: { ttl: 120 } });
    expect(cache.getNegative('www.example', 'A')).toBeUndefined();
    expect(cache.getNegative('big.example', 'A')?.soa).toMatchObject({ ttl: 900 });
    tick(121);
    expect(cache.getNegative('www.example', 'MX')).toBeUndefined();
    expect(cache.getNegative('nope.example', 'A')?.soa).toMatchObject({ ttl: 179 });
    // Without an SOA there is no negative TTL: nothing is cached.
    cache.putNegative('x.example', undefined, undefined);
    expect(cache.getNegative('x.example', 'A')).toBeUndefined();
  });

  it('evicts the least recently used entry when full', () => {
    const { cache } = clocked({ maxEntries: 2 });
    cache.putRRset('one', 'A', [a('one', '192.0.2.1', 60)], RANK.answer);
    cache.putRRset('two', 'A', [a('two', '192.0.2.2', 60)], RANK.answer);
    cache.getRRset('one', 'A');
    cache.putRRset('three', 'A', [a('three', '192.0.2.3', 60)], RANK.answer);
    expect(cache.getRRset('two', 'A')).toBeUndefined();
    expect(cache.getRRset('one', 'A')).toBeDefined();
    expect(cache.stats()).toMatchObject({ entries: 2, evictions: 1 });
  });
});

describe('resolver ACL', () => {
  it('matches IPv4 and IPv6 prefixes, IPv4-mapped sources as IPv4, and rejects bad rules', () => {
    const acl = new Acl(['127.0.0.0/8', '10.1.0.0/16', 'fd00::/8', '192.0.2.7']);
    for (const ok of ['127.0.0.1', '127.255.0.9', '10.1.200.3', 'fd12::1', '::ffff:10.1.0.1', '192.0.2.7']) expect(acl.allows(ok), ok).toBe(true);
    for (const no of ['10.2.0.1', '192.0.2.8', '::1', 'fe80::1', '8.8.8.8', '::ffff:8.8.8.8', 'garbage', '']) expect(acl.allows(no), no).toBe(false);
    expect(() => new Acl(['10.0.0.0/33'])).toThrow(AclError);
    expect(() => new Acl(['example.com/8'])).toThrow(/not an address or CIDR prefix/);
  });
});
