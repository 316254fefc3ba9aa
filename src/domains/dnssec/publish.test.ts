import { createPrivateKey } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signCommand } from '../../core/identity/envelope.ts';
import { decodeEntry } from '../../core/ledger/ledger.ts';
import { verifyStore } from '../../core/policy/verify.ts';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { provisioner } from '../../imvu/provision.ts';
import { dsView } from './ds.ts';
import { dnskeyRdata, keyTag } from './keytag.ts';
import { DnssecKeyring, dnssecKeyPath, dsDigest, generateZoneKey, rawPublicKey } from './keys.ts';

// The key's life in the ledger: generated as a follow-up of imvu.create and domain.verified, the
// private half on disk (0600), the public half published by the platform (gate 17), projected
// into dnssec_keys, and replayed identically by the verifier.

describe('DNSSEC keys through the chokepoint', () => {
  let p: TestPlatform;
  let alice: Actor;
  let bob: Actor;
  const entry = async (index: number): Promise<LedgerEntry> => decodeEntry((await p.store.readEntries(index, index + 1))[0]!);

  beforeAll(async () => {
    p = await testPlatform({ provision: provisioner });
    alice = await p.register('alice', 'creator');
    bob = await p.register('bob', 'creator');
  });
  afterAll(async () => p?.cleanup());

  it('imvu.create publishes the zone key after the DKIM key; the private key is on disk (0600) and matches the ledger', async () => {
    const r = await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    expect(r.allowed).toBe(true);
    expect(r.followUps.map((f) => f.allowed)).toEqual([true, true]);
    const publish = await entry(r.followUps[1]!.index);
    const zone = 'imvu001.world';
    expect(publish.command.command).toMatchObject({ type: 'dnssec.publish', actor: p.platformId, body: { imvu: 'IMVU-001', zone, algorithm: 13, flags: 257 } });
    const publicKey = Buffer.from(String(publish.command.command.body.publicKey), 'base64');

    const path = dnssecKeyPath(p.dataDir, zone);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(rawPublicKey(createPrivateKey(readFileSync(path))).equals(publicKey)).toBe(true);

    const row = await p.store.get<{ imvu: string; public_key: string; entry: number }>('SELECT imvu, public_key, entry FROM dnssec_keys WHERE zone = ?', [zone]);
    expect(row).toEqual({ imvu: 'IMVU-001', public_key: publicKey.toString('base64'), entry: r.followUps[1]!.index });
    const tag = keyTag(dnskeyRdata(257, 13, publicKey));
    // Serial: 1 at creation, +1 DKIM record, +1 DNSKEY.
    expect((await p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', [zone]))!.serial).toBe(3);

    const key = await new DnssecKeyring(p.store, p.dataDir).forZone(zone, 3);
    expect(key).toMatchObject({ zone, imvu: 'IMVU-001', flags: 257, algorithm: 13, keyTag: tag });

    const ds = (await dsView(p.store, zone))!;
    expect(ds).toMatchObject({ zone, keyTag: tag, algorithm: 13, digestType: 2, digest: dsDigest(zone, dnskeyRdata(257, 13, publicKey)).toString('hex').toUpperCase() });
    expect(ds.ds).toBe(`${zone}. 3600 IN DS ${ds.keyTag} 13 2 ${ds.digest}`);
    expect(ds.trustAnchor).toBe(`trust-anchors { "${zone}." static-key 257 3 13 "${publicKey.toString('base64')}"; };`);
  });

  it('a claimed domain gets its own key when it is proven (domain.verified), not when it is claimed', async () => {
    const claim = await p.as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'artgallery.example' });
    expect(claim.allowed).toBe(true);
    expect(claim.followUps).toEqual([]);
    expect(await dsView(p.store, 'artgallery.example')).toBeUndefined();
    const { token } = (await p.store.get<{ token: string }>('SELECT token FROM domain_claims WHERE name = ?', ['artgallery.example']))!;
    const evidence = { name: '_nexus-challenge.artgallery.example', txt: [token] };
    const r = await p.chokepoint.submit(p.chokepoint.platformCommand('domain.verified', { imvu: 'IMVU-001', domain: 'artgallery.example', evidence }));
    expect(r.allowed).toBe(true);
    // The key, and the creator's notice of what the platform did (gate 17: every platform act is notified).
    const types = await Promise.all(r.followUps.map(async (f) => (await entry(f.index)).command.command));
    expect(types.map((c) => c.type).sort()).toEqual(['dnssec.publish', 'notify.creator']);
    expect(types.find((c) => c.type === 'dnssec.publish')).toMatchObject({ body: { imvu: 'IMVU-001', zone: 'artgallery.example' } });
    expect(await dsView(p.store, 'artgallery.example')).toMatchObject({ zone: 'artgallery.example', imvu: 'IMVU-001' });
    expect(statSync(dnssecKeyPath(p.dataDir, 'artgallery.example')).mode & 0o777).toBe(0o600);
  });

  it('only the platform publishes a zone key (gate 17), only for the IMVU that owns the zone (gate 4), only a P-256 key (gate 0)', async () => {
    await p.as(bob, 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'US-CCPA' });
    const { publicKey } = await generateZoneKey();
    const body = { imvu: 'IMVU-001', zone: 'imvu001.world', algorithm: 13, flags: 257, publicKey: publicKey.toString('base64') };
    expect(deniedBy(await p.as(alice, 'dnssec.publish', body))).toEqual([17]);
    expect(deniedBy(await p.chokepoint.submit(signCommand(p.platformKey, 'dnssec.publish', { ...body, imvu: 'IMVU-002' }, { origin: p.config.origin })))).toEqual([4, 17]);
    expect(deniedBy(await p.chokepoint.submit(signCommand(p.platformKey, 'dnssec.publish', { ...body, algorithm: 8 }, { origin: p.config.origin })))).toEqual([0]);
    expect(deniedBy(await p.chokepoint.submit(signCommand(p.platformKey, 'dnssec.publish', { ...body, publicKey: 'AAAA' }, { origin: p.config.origin })))).toEqual([0]);
    // The key in the projection did not move.
    const row = await p.store.get<{ public_key: string }>('SELECT public_key FROM dnssec_keys WHERE zone = ?', ['imvu001.world']);
    expect(row!.public_key).not.toBe(body.publicKey);
  });

  it('the verifier replays every dnssec.publish into the same projection', async () => {
    const report = await verifyStore(p.store);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('a private key on disk that does not match the ledger is never used', async () => {
    const { pem } = await generateZoneKey();
    writeFileSync(dnssecKeyPath(p.dataDir, 'imvu002.world'), pem, { mode: 0o600 });
    await expect(Promise.resolve(new DnssecKeyring(p.store, p.dataDir).forZone('imvu002.world', 3))).rejects.toThrow(/does not match the DNSKEY in the ledger/);
    expect(await new DnssecKeyring(p.store, p.dataDir).forZone('unsigned.example', 1)).toBeUndefined();
  });
});
