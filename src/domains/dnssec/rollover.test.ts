import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DNSKEY_TTL_S } from '../../core/policy/gates/platform-powers.ts';
import { verifyStore } from '../../core/policy/verify.ts';
import { deniedBy, testPlatform, type TestPlatform } from '../../core/testing.ts';
import { provisioner } from '../../imvu/provision.ts';
import { eventually } from '../dns-authority/testing.ts';
import { startDnsService, type DnsService } from '../dns-service.ts';
import { keyViews } from './ds.ts';
import { dnssecKeyPath } from './keys.ts';
import { advanceRollovers, startRollover } from './rollover.ts';

// The daemon's DNS service advances rollovers on its own once their wait is over (by entry
// times: the platform clock here runs ahead of the wall clock), and never before.

let p: TestPlatform | undefined;
let dns: DnsService | undefined;
afterEach(async () => {
  await dns?.close();
  await p?.cleanup();
  dns = p = undefined;
});

describe('DNSSEC rollover steps', () => {
  it('the DNS service activates the new key after the DNSKEY TTL and removes the old one a TTL later', async () => {
    let offset = 0;
    p = await testPlatform({ provision: provisioner, clock: () => new Date(Date.now() + offset) });
    const alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    const zone = 'imvu001.world';
    dns = await startDnsService({ platform: p, port: 0, resignCheckMs: 50, resignAfterMs: 7 * 86_400_000 });
    const states = async () => (await keyViews(p!.store, zone)).map((k) => k.state);

    expect((await startRollover(p, zone)).allowed).toBe(true);
    const [first, second] = await keyViews(p.store, zone);
    // Nothing is due yet: the service leaves it alone, and a step taken by hand is refused.
    await new Promise((r) => setTimeout(r, 300));
    expect(await states()).toEqual(['active', 'published']);
    expect(await advanceRollovers(p)).toEqual([]);
    expect(deniedBy(await p.chokepoint.submit(p.chokepoint.platformCommand('dnssec.activate', { imvu: 'IMVU-001', zone, publicKey: second!.publicKey })))).toEqual([17]);

    // An hour of platform time later (an entry carries the new time), the service switches keys.
    offset += DNSKEY_TTL_S * 1000;
    await p.register('bob', 'creator');
    await eventually(async () => expect(await states()).toEqual(['retired', 'active']), 5000);
    offset += DNSKEY_TTL_S * 1000;
    await p.register('carol', 'creator');
    await eventually(async () => expect(await states()).toEqual(['active']), 5000);
    expect((await keyViews(p.store, zone))[0]!.publicKey).toBe(second!.publicKey);
    // The old key's private half is gone (deleted once its removal is committed); the new one stays.
    await eventually(async () => expect(existsSync(dnssecKeyPath(p!.dataDir, zone))).toBe(false), 5000);
    expect(existsSync(dnssecKeyPath(p.dataDir, zone, Buffer.from(second!.publicKey, 'base64')))).toBe(true);
    expect(first!.publicKey).not.toBe(second!.publicKey);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('a rollover key the gates refuse leaves no private key behind', async () => {
    p = await testPlatform({ provision: provisioner });
    const alice = await p.register('alice', 'creator');
    await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    expect((await startRollover(p, 'imvu001.world')).allowed).toBe(true);
    // A second rollover while one is in progress is refused (gate 17), and its key file removed.
    const again = await startRollover(p, 'imvu001.world');
    expect(deniedBy(again)).toEqual([17]);
    const files = (await keyViews(p.store, 'imvu001.world')).map((k) => dnssecKeyPath(p!.dataDir, 'imvu001.world', Buffer.from(k.publicKey, 'base64')));
    expect(files.filter((f) => existsSync(f))).toHaveLength(1); // only the standby key has its own file
    await expect(startRollover(p, 'unknown.example')).rejects.toThrow(/no active DNSSEC key/);
  });
});
