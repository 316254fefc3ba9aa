import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { prefixKey, ResponseRateLimiter } from './rrl.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { dnsFixture, query, tcpAsk, udpAsk, type DnsFixture } from './testing.ts';

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
    expect(stats.rrlDropped).toBeGreaterThan(sent / 4);
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
