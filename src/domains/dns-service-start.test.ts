import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testPlatform, type TestPlatform } from '../core/testing.ts';
import { query, udpAsk } from './dns-authority/testing.ts';
import { startDnsService } from './dns-service.ts';

// The DNS service's start reads the zone list once: the platform zone it declares at start is
// taken in as a committed change (a second full read of every zone doubled the zone view's share
// of a start at 100,000 IMVUs), and is answered as soon as the service has started.

let p: TestPlatform;
beforeEach(async () => {
  p = await testPlatform();
});
afterEach(async () => p.cleanup());

const soa = async (port: number, name: string) => (await udpAsk(port, query(name, 'SOA'))).rcode;

describe('DNS service start', () => {
  it('serves the platform zone it declares on its first start, with one read of the zone list', async () => {
    const suffix = (await p.store.get<{ suffix: string }>('SELECT suffix FROM platform'))!.suffix;
    const dns = await startDnsService({ platform: p, port: 0, meterIntervalMs: 60_000 });
    try {
      expect(await soa(dns.server.port, suffix)).toBe('NOERROR');
      const { refreshes, partial } = dns.server.view.stats;
      expect(refreshes - partial).toBe(1);
    } finally {
      await dns.close();
    }
  });

  it('a later start reads the zone list once and serves what was created while it was stopped', async () => {
    await (await startDnsService({ platform: p, port: 0, meterIntervalMs: 60_000 })).close();
    const alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    const dns = await startDnsService({ platform: p, port: 0, meterIntervalMs: 60_000 });
    try {
      expect(await soa(dns.server.port, 'imvu001.world')).toBe('NOERROR');
      const { refreshes, partial } = dns.server.view.stats;
      expect(refreshes - partial).toBe(1);
    } finally {
      await dns.close();
    }
  });
});
