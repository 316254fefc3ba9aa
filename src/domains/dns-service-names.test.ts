import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testPlatform, type TestPlatform } from '../core/testing.ts';
import { DNS_SERVICE, startDnsService } from './dns-service.ts';

// The DNS service registers its identity `dns` the first time it starts. A creator who registered
// that name first used to keep the DNS-enabled daemon from ever starting; the name is reserved for
// the platform's services (gate 1), so the service starts whatever creators did before it.

let p: TestPlatform;
beforeEach(async () => {
  p = await testPlatform();
});
afterEach(async () => p.cleanup());

describe('the dns identity name belongs to the DNS service', () => {
  it('a creator who registers `dns` before the DNS service first runs is refused, and the service then starts', async () => {
    await expect(p.register(DNS_SERVICE, 'creator')).rejects.toThrow(/reserved for a platform service/);
    await expect(p.register(DNS_SERVICE, 'member')).rejects.toThrow(/reserved for a platform service/);
    expect(await p.store.get('SELECT 1 AS x FROM identities WHERE name = ?', [DNS_SERVICE])).toBeUndefined();
    const dns = await startDnsService({ platform: p, port: 0, meterIntervalMs: 60_000 });
    try {
      expect(dns.server.port).toBeGreaterThan(0);
      expect(await p.store.get('SELECT id, role FROM identities WHERE name = ?', [DNS_SERVICE])).toEqual({ id: dns.identity.id, role: 'service' });
    } finally {
      await dns.close();
    }
  });
});
