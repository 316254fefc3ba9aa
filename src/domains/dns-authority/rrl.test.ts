import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { prefixKey, ResponseRateLimiter } from './rrl.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { provisioner } from '../../imvu/provision.ts';
import { onlineSigner, type OnlineSigner } from '../dnssec/online.ts';
import { decode, dnsFixture, eventually, query, tcpAsk, udpAsk, udpExchange, type DnsFixture } from './testing.ts';

describe('the token bucket (fake clock)', () => {
  it('allows one second of burst, then the rate; slips every slip-th limited response', () => {
    let t = 0;
    const rrl = new ResponseRateLimiter({ responsesPerSecond: 10, slip: 2 }, () => t);
    const verdicts = Array.from({ length: 20 }, () => rrl.check('192.0.2.1'));
    expect(verdicts.slice(0, 10)).toEqual(Array(10).fill('send'));
    expect(verdicts.slice(10)).toEqual(['drop', 'slip', 'drop', 'slip', 'drop', 'slip', 'drop', 'slip', 'drop', 'slip']);
    t += 500; // half a second refills five tokens
    expect(Array.from({ length: 6 }, () => rrl.check('192.0.2.200'))).toEqual(['send', 'send', 'send', 'send', 'send', 'drop']);
    // Another /24 has its own bucket.
    expect(rrl.check('192.0.3.1')).toBe('send');
    expect(rrl.stats).toMatchObject({ sent: 16, dropped: 6, slipped: 5 });
  });

  it('drops everything past the rate with slip 0, and truncates everything with slip 1', () => {
    const t = 0;
    const drop = new ResponseRateLimiter({ responsesPerSecond: 1, slip: 0 }, () => t);
    const slip = new ResponseRateLimiter({ responsesPerSecond: 1, slip: 1 }, () => t);
    expect([drop.check('10.0.0.1'), drop.check('10.0.0.2'), drop.check('10.0.0.3')]).toEqual(['send', 'drop', 'drop']);
    expect([slip.check('10.0.0.1'), slip.check('10.0.0.2'), slip.check('10.0.0.3')]).toEqual(['send', 'slip', 'slip']);
  });

  it('groups sources by prefix: IPv4 /24, IPv6 /56, IPv4-mapped as IPv4', () => {
    expect(prefixKey('198.51.100.7', 24, 56)).toBe(prefixKey('198.51.100.250', 24, 56));
    expect(prefixKey('198.51.100.7', 24, 56)).not.toBe(prefixKey('198.51.101.7', 24, 56));
    expect(prefixKey('::ffff:198.51.100.9', 24, 56)).toBe(prefixKey('198.51.100.7', 24, 56));
    expect(prefixKey('2001:db8:1:2300::1', 24, 56)).toBe(prefixKey('2001:db8:1:23ff:ffff::9', 24, 56));
    expect(prefixKey('2001:db8:1:2300::1', 24, 56)).not.toBe(prefixKey('2001:db8:1:2400::1', 24, 56));
    expect(prefixKey('198.51.100.7', 32, 56)).not.toBe(prefixKey('198.51.100.8', 32, 56));
  });

  it('keeps at most maxEntries buckets under a spray of sources', () => {
    let t = 0;
    const rrl = new ResponseRateLimiter({ responsesPerSecond: 5, maxEntries: 100, prefixV4: 32 }, () => t);
    for (let i = 0; i < 5000; i++) {
      rrl.check(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      t += 0.1;
    }
    expect(rrl.size).toBeLessThanOrEqual(100);
  });
});

describe('a bounded flood from loopback', () => {
  let f: DnsFixture;
  let srv: DnsServer;
  const metered: string[] = [];
  beforeAll(async () => {
    f = await dnsFixture();
    srv = await startDnsServer({ store: f.p.store, rrl: { responsesPerSecond: 100, slip: 2 }, onQuery: (z) => metered.push(z) });
  });
  afterAll(async () => {
    await srv?.close();
    await f?.p.cleanup();
  });

  it('is limited over UDP (drops, and TC slips that send real clients to TCP) while TCP still answers', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    try {
      sock.setRecvBufferSize(4 * 1024 * 1024);
    } catch {
      // a smaller buffer only means fewer replies counted, which the bounds below allow
    }
    let full = 0;
    let truncated = 0;
    sock.on('message', (m) => {
      const r = dnsPacket.decode(m);
      if (r.flag_tc) {
        expect(r.answers).toEqual([]);
        truncated++;
      } else full++;
    });
    const sent = 2000;
    const t0 = Date.now();
    for (let i = 0; i < sent; i++) {
      sock.send(query('www.imvu001.world', 'A', { id: i }), srv.port, '127.0.0.1');
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 1));
    }
    // While the bucket is empty, TCP is not limited.
    const tcp = await tcpAsk(srv.port, query('www.imvu001.world', 'A'));
    expect(tcp).toMatchObject({ rcode: 'NOERROR', flag_tc: false, answers: [{ data: '192.0.2.7' }] });
    await new Promise((r) => setTimeout(r, 300));
    const elapsed = (Date.now() - t0) / 1000;
    sock.close();
    const received = full + truncated;
    const stats = srv.stats();
    const udpAnswered = stats.responses - stats.rrlSlipped - 1; // less the TCP answer
    // The server sent the burst of 100 plus 100/s for the time the flood took (margin for a slow machine)...
    expect(udpAnswered).toBeLessThanOrEqual(100 + Math.ceil(100 * elapsed) + 20);
    expect(stats.rrlDropped + stats.rrlSlipped + udpAnswered).toBeLessThanOrEqual(sent);
    // (Of the queries that reached it: on a busy machine the kernel drops part of the flood.)
    expect(stats.rrlDropped).toBeGreaterThan(stats.udpQueries / 4);
    expect(stats.rrlSlipped).toBeGreaterThan(0);
    // ...and the client received no more than that: full answers are few, the rest were TC or nothing.
    expect(full).toBeGreaterThan(0);
    expect(full).toBeLessThanOrEqual(udpAnswered);
    expect(truncated).toBeLessThanOrEqual(stats.rrlSlipped);
    expect(received).toBeLessThan(sent * 0.75);
    // Metering counts answers only: the UDP ones sent in full and the TCP one, not drops or slips.
    expect(metered.length).toBe(udpAnswered + 1);
    expect(metered.length).toBe(stats.answered);
  });

  it('lets the prefix answer again once the bucket refills', async () => {
    await new Promise((r) => setTimeout(r, 1100));
    expect(await udpAsk(srv.port, query('www.imvu001.world', 'A'))).toMatchObject({ flag_tc: false, rcode: 'NOERROR' });
  });
});

describe('rate limiting before DNSSEC signing', () => {
  let f: DnsFixture;
  let srv: DnsServer;
  let signer: OnlineSigner;
  const RATE = 20;
  beforeAll(async () => {
    f = await dnsFixture({ provision: provisioner });
    // Compact denial: every answer to a new name costs a signature (the chain denial, the default, signs
    // each NSEC of the zone once whatever the names), so the limiter's place before signing shows here.
    signer = onlineSigner(f.p.store, f.p.dataDir, { denial: 'compact' });
    // A stopped clock: the bucket never refills, so a source is allowed exactly its burst (RATE
    // answers), however long the flood takes. Sources are told apart per address (/32).
    srv = await startDnsServer({ store: f.p.store, dnssec: signer, cookies: false, rrl: { responsesPerSecond: RATE, slip: 2, prefixV4: 32, now: () => 0 } });
    // The warm-up signs the zones' RRsets ahead: done before the flood's signatures are counted.
    await srv.warmed;
  });
  afterAll(async () => {
    await srv?.close();
    await f?.p.cleanup();
  });

  it('a flood of DO queries for distinct names costs signatures for the allowed answers only, and another source is still answered', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const replies: Buffer[] = [];
    sock.on('message', (m) => replies.push(m));
    const before = signer.stats.signatures;
    const sent = 400;
    try {
      // In batches the kernel's socket buffer holds, each counted in before the next is sent.
      for (let i = 0; i < sent; i += 50) {
        for (let j = i; j < i + 50; j++) sock.send(query(`flood-${j}.imvu001.world`, 'A', { id: j, edns: 1232, do: true }), srv.port, '127.0.0.1');
        await eventually(async () => expect(srv.stats().udpQueries).toBe(i + 50), 5000);
      }
      await eventually(async () => expect(srv.stats().rrlDropped + srv.stats().rrlSlipped + srv.stats().answered).toBe(sent), 5000);
    } finally {
      sock.close();
    }
    // Each answer is a compact denial: one NSEC signature of its own, plus the SOA's (made once).
    const signatures = signer.stats.signatures - before;
    expect(signatures).toBeGreaterThan(0);
    expect(signatures).toBeLessThanOrEqual(RATE + 1);
    const st = srv.stats();
    expect(st.answered).toBe(RATE);
    expect(st.rrlDropped + st.rrlSlipped).toBe(sent - RATE);
    // The slips are empty, TC, and say NOERROR as the signed answer would (compact denial).
    const slips = replies.map((m) => decode(m)).filter((r) => r.flag_tc);
    expect(slips.length).toBeGreaterThan(0);
    for (const r of slips) expect(r).toMatchObject({ rcode: 'NOERROR', answers: [], authorities: [] });
    // Another source (127.0.0.2) has its own allowance: a full signed answer.
    const other = decode((await udpExchange(srv.port, query('www.imvu001.world', 'A', { edns: 1232, do: true }), 2000, '127.0.0.2'))!);
    expect(other).toMatchObject({ rcode: 'NOERROR', flag_tc: false });
    expect(other.answers!.map((a) => a.type)).toEqual(['A', 'RRSIG']);
  });
});
