// The resolver against a loopback hierarchy of our own authoritative servers (root and TLDs from
// test/support/fixed-zone-server.ts, the IMVU zones from the real Nexus server; see
// test/support/dns-hierarchy.ts). Node's resolver (c-ares) is the client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { promises as dns } from 'node:dns';
import dnsPacket from 'dns-packet';
import type { DnsServer } from '../dns-authority/server.ts';
import { dnsFixture, decode, query, type DnsFixture, type Reply } from '../dns-authority/testing.ts';
import type { FixedZoneServer, SeenQuery } from '../../../test/support/fixed-zone-server.ts';
import { startHierarchy, type Hierarchy } from '../../../test/support/dns-hierarchy.ts';
import { startResolver, type Resolver } from './server.ts';

let f: DnsFixture;
let h: Hierarchy;
let root: FixedZoneServer;
let tld: FixedZoneServer;
let nexus: DnsServer;
let resolver: Resolver;
let client: dns.Resolver;
let clock = Date.now();
const upstream: { address: string; name: string; type: string }[] = [];

const names = (log: SeenQuery[], from = 0) => log.slice(from).map((q) => `${q.name} ${q.type}`);
const mark = () => ({ root: root.log.length, tld: tld.log.length, nexus: nexus.stats().udpQueries + nexus.stats().tcpQueries, up: upstream.length });
const since = (m: ReturnType<typeof mark>) => ({
  root: names(root.log, m.root),
  tld: names(tld.log, m.tld),
  nexus: nexus.stats().udpQueries + nexus.stats().tcpQueries - m.nexus,
  up: upstream.length - m.up,
});

/** One raw UDP exchange with the resolver from `source` (an address on lo). */
function ask(msg: Buffer, source = '127.0.0.1'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('no reply from the resolver'));
    }, 8000);
    sock.on('message', (buf) => {
      clearTimeout(timer);
      sock.close();
      resolve(decode(buf));
    });
    sock.bind(0, source, () => sock.send(msg, resolver.port, '127.0.0.1'));
  });
}

beforeAll(async () => {
  f = await dnsFixture();
  await f.add('alias2', 'CNAME', 'www.imvu002.world.');
  await f.add('www', 'A', '192.0.2.77', { zone: 'imvu002.world', as: f.bob });
  h = await startHierarchy(f.p.store);
  ({ root, tld, nexus } = h);
  resolver = await startResolver({
    address: '127.0.0.1',
    port: 0,
    allow: ['127.0.0.1/32', '10.0.0.0/8'],
    rootHints: h.rootHints,
    upstreamPort: h.port,
    cache: { maxEntries: 1000, maxTtl: 600, now: () => clock },
    limits: { timeoutMs: 300 },
    onUpstreamQuery: (s, name, type) => upstream.push({ address: s.address, name, type }),
  });
  client = new dns.Resolver({ timeout: 8000, tries: 1 });
  client.setServers([`127.0.0.1:${resolver.port}`]);
}, 30_000);

afterAll(async () => {
  await resolver?.close();
  await h?.close();
  await f?.p.cleanup();
});

describe('iterative resolution from root hints', () => {
  it('root → TLD → the Nexus server, with minimised names: the root sees `world`, the TLD `imvu001.world`', async () => {
    const m = mark();
    expect(await client.resolve4('www.imvu001.world', { ttl: true })).toEqual([{ address: '192.0.2.7', ttl: 600 }]); // 3600 capped at maxTtl
    const seen = since(m);
    expect(seen.root).toEqual(['world A']);
    expect(seen.tld).toEqual(['imvu001.world A']);
    expect(seen.nexus).toBe(1);
    // Nobody above the zone learned the full name or the type asked.
    expect([...root.log, ...tld.log].some((q) => q.name.includes('www'))).toBe(false);
  });

  it('a second question is answered from the cache: no query anywhere, the TTL counts down', async () => {
    clock += 10_000;
    const m = mark();
    expect(await client.resolve4('www.imvu001.world', { ttl: true })).toEqual([{ address: '192.0.2.7', ttl: 590 }]);
    expect(since(m)).toEqual({ root: [], tld: [], nexus: 0, up: 0 });
    // Another name in the same zone goes straight to the Nexus server (the delegation is cached).
    const m2 = mark();
    expect(await client.resolve6('www.imvu001.world')).toEqual(['2001:db8::7']);
    expect(since(m2)).toMatchObject({ root: [], tld: [], nexus: 1 });
  });

  it('NXDOMAIN is cached from the SOA (RFC 2308), for names below it too (RFC 8020), until its TTL runs out', async () => {
    const m = mark();
    const first = await ask(query('nope.imvu001.world', 'A'));
    expect(first.rcode).toBe('NXDOMAIN');
    expect((first.flags ?? 0) & dnsPacket.RECURSION_AVAILABLE).toBeTruthy();
    expect(first.authorities?.map((a) => `${a.name} ${a.type} ${(a as { ttl: number }).ttl}`)).toEqual(['imvu001.world SOA 300']);
    expect(since(m).nexus).toBe(1);

    clock += 100_000;
    const m2 = mark();
    await expect(client.resolve4('nope.imvu001.world')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(client.resolveTxt('deeper.nope.imvu001.world')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    const again = await ask(query('nope.imvu001.world', 'MX'));
    expect(again.rcode).toBe('NXDOMAIN');
    expect((again.authorities?.[0] as { ttl: number }).ttl).toBe(200);
    expect(since(m2)).toEqual({ root: [], tld: [], nexus: 0, up: 0 });

    clock += 201_000; // past the negative TTL: asked again
    const m3 = mark();
    await expect(client.resolve4('nope.imvu001.world')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(since(m3).nexus).toBe(1);
  });

  it('NODATA is cached per type', async () => {
    const m = mark();
    await expect(client.resolveMx('www.imvu001.world')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(client.resolveMx('www.imvu001.world')).rejects.toMatchObject({ code: 'ENODATA' });
    expect(since(m).nexus).toBe(1);
  });

  it('chases a CNAME into another zone whose delegation has no glue (its name server resolved on the side)', async () => {
    const m = mark();
    const r = await ask(query('alias2.imvu001.world', 'A'));
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers?.map((a) => `${a.name} ${a.type} ${String((a as { data: unknown }).data)}`)).toEqual(['alias2.imvu001.world CNAME www.imvu002.world', 'www.imvu002.world A 192.0.2.77']);
    const seen = since(m);
    // The TLD was asked for the imvu002.world delegation (NS ns.other.test, no glue), then the
    // root and TLD for ns.other.test, one label at a time; then the Nexus server for the alias and the target.
    expect(seen.tld).toEqual(['imvu002.world A', 'other.test A', 'ns.other.test A']);
    expect(seen.root).toEqual(['test A']);
    expect(seen.nexus).toBe(2);
    expect(await client.resolve4('alias2.imvu001.world')).toEqual(['192.0.2.77']);
  });

  it('retries over TCP when an authoritative answer is truncated; the client gets it over TCP too', async () => {
    const txt = await client.resolveTxt('huge.imvu001.world');
    expect(txt.map((c) => c.join('')).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => `${i}`.repeat(400)));
    expect(nexus.stats().tcpQueries).toBeGreaterThan(0);
  });
});

describe('bounded work', () => {
  it('a cycle of glueless delegations ends in SERVFAIL within the query budget', async () => {
    const m = mark();
    const started = Date.now();
    const r = await ask(query('www.loop.world', 'A'));
    expect(r.rcode).toBe('SERVFAIL');
    expect(since(m).up).toBeLessThanOrEqual(48);
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it('a server that never answers: SERVFAIL after the upstream timeout, not a hang', async () => {
    const started = Date.now();
    await expect(client.resolve4('www.dead.world')).rejects.toMatchObject({ code: 'ESERVFAIL' });
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it('an in-zone CNAME loop is SERVFAIL', async () => {
    const r = await ask(query('loop1.imvu001.world', 'A'));
    expect(r.rcode).toBe('SERVFAIL');
  });
});

describe('access control', () => {
  it('refuses a client outside the allow-list (source 127.0.0.2), asking nobody upstream', async () => {
    const m = mark();
    const r = await ask(query('refused-name.imvu001.world', 'A'), '127.0.0.2');
    expect(r.rcode).toBe('REFUSED');
    expect(r.answers).toEqual([]);
    const outsider = new dns.Resolver({ timeout: 3000, tries: 1 });
    outsider.setLocalAddress('127.0.0.2');
    outsider.setServers([`127.0.0.1:${resolver.port}`]);
    await expect(outsider.resolve4('www.imvu001.world')).rejects.toMatchObject({ code: 'EREFUSED' });
    expect(since(m)).toEqual({ root: [], tld: [], nexus: 0, up: 0 });
    // The same question from an allowed address is answered.
    expect((await ask(query('www.imvu001.world', 'A'), '127.0.0.1')).rcode).toBe('NOERROR');
    expect(resolver.stats().refused).toBeGreaterThanOrEqual(2);
  });
});
