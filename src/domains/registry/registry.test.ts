import { createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Answer, DsData, RrsigData } from 'dns-packet';
import { decodeEntry } from '../../core/ledger/ledger.ts';
import { verifyStore } from '../../core/policy/verify.ts';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import type { Json } from '../../core/types.ts';
import { provisionDnssecKey, provisioner } from '../../imvu/provision.ts';
import { startDnsServer, type DnsServer } from '../dns-authority/server.ts';
import { decode, eventually, framed, query, tcpExchange, udpAsk, type Reply } from '../dns-authority/testing.ts';
import { readZone } from '../dns-authority/xfr.ts';
import { ZoneJournal } from '../dns-authority/journal.ts';
import { keyViews, dsView, platformZoneDsView } from '../dnssec/ds.ts';
import { dnssecKeyPath, rawPublicKey } from '../dnssec/keys.ts';
import { onlineSigner } from '../dnssec/online.ts';
import { verifyRRset } from '../dnssec/sign.ts';
import { exportZone } from '../zonefile/export.ts';
import { ensurePlatformZone, restatePlatformZone } from './declare.ts';
import { platformZoneRecords, platformZoneSerial, readZoneRows } from './zone.ts';

// The platform's own zone (the suffix `world`) as the ledger shapes it: declared by the platform
// (`platform.zone`, its key and name servers), a delegation with DS for every IMVU zone created
// through the chokepoint, a DS that follows the IMVU zone's key, a serial that moves with every
// change of it, and the attacks on it refused by the gates.

const NS1 = { name: 'ns1.world', address: '127.0.0.1' };

describe("the platform's own zone", () => {
  let p: TestPlatform;
  let alice: Actor;
  let bob: Actor;

  const ns = async (zone: string) =>
    (await p.store.all<{ value: string }>("SELECT value FROM records WHERE zone = ? AND name = ? AND type = 'NS' ORDER BY value", [zone, zone])).map((r) => r.value);
  const serialOf = async (zone: string) => (await p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', [zone]))!.serial;
  const records = async () => (await platformZoneRecords(p.store, 'world')).map((r) => `${r.name} ${r.type} ${r.value}`);
  const dsOf = async (zone: string) => {
    const v = (await dsView(p.store, zone))!;
    return `${zone} DS ${v.keyTag} 13 2 ${v.digest}`;
  };
  const platformZoneBody = async (over: Record<string, Json> = {}) => {
    const key = (await platformZoneDsView(p.store))!;
    return { zone: 'world', nameservers: [NS1], algorithm: 13, flags: 257, publicKey: key.publicKey, ...over };
  };
  const asPlatform = (type: 'platform.zone', body: { [k: string]: Json }) => p.chokepoint.submit(p.chokepoint.platformCommand(type, body));

  beforeAll(async () => {
    p = await testPlatform({ provision: provisioner });
    alice = await p.register('alice', 'creator');
    bob = await p.register('bob', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  });
  afterAll(async () => p?.cleanup());

  it('is not hosted until the platform declares it; an IMVU zone names ns1.<suffix> meanwhile', async () => {
    expect(await readZoneRows(p.store, 'world')).toBeUndefined();
    expect(await platformZoneSerial(p.store, 'world')).toBeUndefined();
    expect(await ns('imvu001.world')).toEqual(['ns1.world.']);
  });

  it('the platform declares it once: its key on disk (0600), the public half in a platform-signed platform.zone entry', async () => {
    const r = (await ensurePlatformZone(p, [NS1]))!;
    expect(r.allowed).toBe(true);
    const e = decodeEntry((await p.store.readEntries(r.index, r.index + 1))[0]!);
    expect(e.command.command).toMatchObject({ type: 'platform.zone', actor: p.platformId, body: { zone: 'world', nameservers: [NS1], algorithm: 13, flags: 257 } });
    const path = dnssecKeyPath(p.dataDir, 'world');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(rawPublicKey(createPrivateKey(readFileSync(path))).toString('base64')).toBe(e.command.command.body.publicKey);
    expect(await platformZoneDsView(p.store)).toMatchObject({ zone: 'world', imvu: null, flags: 257, entry: r.index });
    // Nothing changed: nothing is recorded.
    const size = await p.store.ledgerSize();
    expect(await ensurePlatformZone(p, [NS1])).toBeUndefined();
    expect(await ensurePlatformZone(p)).toBeUndefined();
    expect(await p.store.ledgerSize()).toBe(size);
  });

  it('holds the name servers with their addresses and a delegation with DS for every IMVU zone', async () => {
    expect((await p.as(bob, 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'EU-GDPR' })).allowed).toBe(true);
    const got = await records();
    expect(got).toEqual(['world NS ns1.world.', 'ns1.world A 127.0.0.1', 'imvu001.world NS ns1.world.', await dsOf('imvu001.world'), 'imvu002.world NS ns1.world.', await dsOf('imvu002.world')]);
    const rows = (await readZoneRows(p.store, 'world'))!;
    expect(rows).toMatchObject({ name: 'world', imvu: '', suffix: 'world', serial: await platformZoneSerial(p.store, 'world') });
  });

  it("a new key of an IMVU zone (a rollover's published key) is a new DS beside the old one; its serial moves; another zone's record change does not move it", async () => {
    const before = (await platformZoneSerial(p.store, 'world'))!;
    const oldDs = await dsOf('imvu001.world');
    const bobDs = await dsOf('imvu002.world');
    expect((await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.7' })).allowed).toBe(true);
    expect(await platformZoneSerial(p.store, 'world')).toBe(before);

    const next = await provisionDnssecKey(p.dataDir, 'IMVU-001', 'imvu001.world');
    const r = await p.chokepoint.submit(p.chokepoint.platformCommand(next.type, next.body));
    expect(r.allowed).toBe(true);
    // Published beside the active key: either DS validates while the rollover runs.
    const keys = await keyViews(p.store, 'imvu001.world');
    expect(keys.map((k) => k.state)).toEqual(['active', 'published']);
    const newDs = `imvu001.world DS ${keys[1]!.keyTag} 13 2 ${keys[1]!.digest}`;
    expect(newDs).not.toBe(oldDs);
    const got = await records();
    expect(got).toContain(newDs);
    expect(got).toContain(oldDs);
    expect(got).toContain(bobDs);
    expect(await platformZoneSerial(p.store, 'world')).toBe(r.index);
    expect(r.index).toBeGreaterThan(before);
  });

  it('new name servers: the zone serves them, every IMVU zone names them (serial +1), and a new IMVU gets them', async () => {
    const serials = [await serialOf('imvu001.world'), await serialOf('imvu002.world')];
    const servers = [NS1, { name: 'ns2.world', address: '2001:db8::53' }];
    const r = (await ensurePlatformZone(p, [{ name: 'NS2.world.', address: '2001:DB8:0:0::53' }, NS1]))!;
    expect(r.allowed).toBe(true);
    expect(decodeEntry((await p.store.readEntries(r.index, r.index + 1))[0]!).command.command.body.nameservers).toEqual(servers);
    expect(await records()).toEqual(expect.arrayContaining(['world NS ns1.world.', 'world NS ns2.world.', 'ns2.world AAAA 2001:db8::53', 'imvu002.world NS ns2.world.']));
    expect(await ns('imvu001.world')).toEqual(['ns1.world.', 'ns2.world.']);
    expect(await ns('imvu002.world')).toEqual(['ns1.world.', 'ns2.world.']);
    expect([await serialOf('imvu001.world'), await serialOf('imvu002.world')]).toEqual(serials.map((s) => s + 1));
    expect(await platformZoneSerial(p.store, 'world')).toBe(r.index);

    expect((await p.as(alice, 'imvu.create', { name: 'Studio', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect(await ns('imvu003.world')).toEqual(['ns1.world.', 'ns2.world.']);
    expect(await records()).toContain(await dsOf('imvu003.world'));

    // Back to one: the other name disappears from every IMVU zone.
    expect((await ensurePlatformZone(p, [NS1]))!.allowed).toBe(true);
    for (const z of ['imvu001.world', 'imvu002.world', 'imvu003.world']) expect(await ns(z)).toEqual(['ns1.world.']);
    // The zone transfer journal replays the same records (a signed zone goes out whole anyway).
    const journal = new ZoneJournal(p.store);
    for (const z of ['imvu001.world', 'imvu003.world']) {
      const snap = (await readZone(p.store, z))!;
      // 'signed zone' is decided only after the replay was found equal to the projection.
      expect(await journal.plan(z, 1, { serial: snap.serial, records: snap.records })).toMatchObject({ kind: 'full', reason: 'signed zone' });
    }
  });

  it('re-stating it unchanged moves only its serial (how it is re-signed for secondaries)', async () => {
    const before = (await platformZoneSerial(p.store, 'world'))!;
    const content = await records();
    const imvuSerial = await serialOf('imvu001.world');
    const r = await restatePlatformZone(p);
    expect(r.allowed).toBe(true);
    expect(await platformZoneSerial(p.store, 'world')).toBe(r.index);
    expect(r.index).toBeGreaterThan(before);
    expect(await records()).toEqual(content);
    expect(await serialOf('imvu001.world')).toBe(imvuSerial);
  });

  it('attack: a creator declares the platform zone with their own key and name server: refused by gate 17, nothing changes', async () => {
    const before = await records();
    const r = await p.as(alice, 'platform.zone', await platformZoneBody({ nameservers: [{ name: 'ns1.world', address: '203.0.113.66' }] }));
    expect(deniedBy(r)).toEqual([17]);
    expect(await records()).toEqual(before);
  });

  it('attack: name servers inside an IMVU domain (present or future) or outside the suffix, another zone: refused by gate 4', async () => {
    for (const [over, why] of [
      [{ nameservers: [{ name: 'ns1.imvu001.world', address: '192.0.2.1' }] }, /lies in a name kept for IMVU domains/],
      [{ nameservers: [{ name: 'imvu900.world', address: '192.0.2.1' }] }, /kept for IMVU domains/],
      [{ nameservers: [{ name: 'ns1.example.org', address: '192.0.2.1' }] }, /not inside the platform's zone world/],
      [{ zone: 'imvu001.world' }, /the platform's own zone is world, not imvu001\.world/],
    ] as const) {
      const r = await asPlatform('platform.zone', await platformZoneBody(over as Record<string, Json>));
      // Gate 4 refuses it; when it names an IMVU's zone, gate 17 too (not one of the platform's powers over an IMVU).
      expect(deniedBy(r)).toContain(4);
      expect(r.gates.find((g) => g.gate === 4)!.reason).toMatch(why);
    }
  });

  it('a body that is not in its one canonical form is refused (gate 0): nothing is normalised', async () => {
    const cases: Record<string, Json>[] = [
      { nameservers: [{ name: 'NS1.world', address: '127.0.0.1' }] },
      { nameservers: [{ name: 'ns1.world.', address: '127.0.0.1' }] },
      { nameservers: [{ name: 'ns1.world', address: '2001:DB8::1' }] },
      { nameservers: [{ name: 'ns1.world', address: '127.000.0.1' }] },
      { nameservers: [{ name: 'ns2.world', address: '127.0.0.1' }, NS1] },
      { nameservers: [NS1, NS1] },
      { nameservers: [] },
      { zone: 'World' },
      { flags: 256 },
    ];
    for (const over of cases) {
      const r = await asPlatform('platform.zone', await platformZoneBody(over));
      expect(deniedBy(r), JSON.stringify(over)).toEqual([0]);
    }
  });

  it('attack: a creator claims a name under the suffix (the name server, a future IMVU domain): refused by gate 3', async () => {
    for (const domain of ['ns1.world', 'evil.world', 'imvu999.world', 'www.ns1.world']) {
      const r = await p.as(alice, 'domain.claim', { imvu: 'IMVU-001', domain });
      expect(deniedBy(r), domain).toEqual([3]);
      expect(r.gates.find((g) => g.gate === 3)!.reason).toMatch(/reserved platform name|allocated by the registry/);
    }
    expect(await p.store.get('SELECT 1 AS x FROM zones WHERE name = ?', ['ns1.world'])).toBeUndefined();
  });

  it('exports as a master file with its SOA, NS, glue and DS', async () => {
    const text = await exportZone(p.store, 'world');
    const serial = (await platformZoneSerial(p.store, 'world'))!;
    expect(text).toContain(`world.\t3600\tIN\tSOA\tns1.world. hostmaster.world. ${serial} 3600 600 1209600 300`);
    expect(text).toContain('; zone world of the platform');
    expect(text).toContain('world.\t3600\tIN\tNS\tns1.world.');
    expect(text).toContain('ns1.world.\t3600\tIN\tA\t127.0.0.1');
    const ds = (await dsView(p.store, 'imvu002.world'))!;
    expect(text).toContain(`imvu002.world.\t3600\tIN\tDS\t${ds.keyTag} 13 2 ${ds.digest}`);
  });

  it('the verifier replays every entry to the same projections', async () => {
    const report = await verifyStore(p.store);
    expect(report.problems).toEqual([]);
  });

  describe('served by the authoritative server, signed with the platform key', () => {
    let srv: DnsServer;
    let key: Buffer;
    const ask = (name: string, type: string, dnssecOk = true): Promise<Reply> => udpAsk(srv.port, query(name, type, { edns: 1232, do: dnssecOk, rd: false }));
    const rr = <T>(r: Reply, type: string, section: 'answers' | 'authorities' | 'additionals' = 'answers') =>
      (r[section] ?? []).filter((a) => a.type === type) as (Answer & { data: T })[];
    // Every RRset of `type` in the section (one per owner: a chain denial holds several NSECs) verifies with its RRSIG.
    const verified = (r: Reply, type: string, section: 'answers' | 'authorities' = 'answers') => {
      const sigs = rr<RrsigData>(r, 'RRSIG', section).filter((s) => s.data.typeCovered === type);
      expect(sigs.length, `${type} RRSIG`).toBeGreaterThan(0);
      for (const sig of sigs) {
        expect(sig.data.signersName).toBe('world');
        const set = (r[section] ?? []).filter((a) => a.type === type && a.name === sig.name).map((a) => (a as { data: unknown }).data);
        expect(verifyRRset(key, sig.data, sig.name, set)).toBe(true);
      }
    };

    beforeAll(async () => {
      srv = await startDnsServer({ store: p.store, rrl: false, dnssec: onlineSigner(p.store, p.dataDir) });
      key = Buffer.from((await platformZoneDsView(p.store))!.publicKey, 'base64');
    });
    afterAll(async () => srv?.close());

    it('answers SOA, NS (with the address) and DNSKEY at the apex, and the name server address, authoritatively', async () => {
      const soa = await ask('world', 'SOA');
      expect(soa).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
      expect(rr<{ serial: number }>(soa, 'SOA')[0]!.data.serial).toBe(await platformZoneSerial(p.store, 'world'));
      verified(soa, 'SOA');
      const nsr = await ask('world', 'NS');
      expect(rr(nsr, 'NS').map((a) => a.data)).toEqual(['ns1.world']);
      expect(rr(nsr, 'A', 'additionals').map((a) => a.data)).toEqual(['127.0.0.1']);
      verified(nsr, 'NS');
      const dnskey = await ask('world', 'DNSKEY');
      expect(rr<{ key: Buffer }>(dnskey, 'DNSKEY')[0]!.data.key.equals(key)).toBe(true);
      verified(dnskey, 'DNSKEY');
      const a = await ask('ns1.world', 'A');
      expect(a).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
      expect(rr(a, 'A').map((x) => x.data)).toEqual(['127.0.0.1']);
      verified(a, 'A');
    });

    it("answers an IMVU zone's DS from the platform zone, signed with the platform key, equal to the IMVU key's DS", async () => {
      const r = await ask('imvu002.world', 'DS');
      expect(r).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
      const ds = (await dsView(p.store, 'imvu002.world'))!;
      expect(rr<DsData>(r, 'DS').map((d) => `${d.data.keyTag} ${d.data.algorithm} ${d.data.digestType} ${d.data.digest.toString('hex').toUpperCase()}`)).toEqual([
        `${ds.keyTag} 13 2 ${ds.digest}`,
      ]);
      verified(r, 'DS');
      // The IMVU zone itself still answers its own apex.
      const nsr = await ask('imvu002.world', 'NS');
      expect(rr(nsr, 'NS').map((a) => a.data)).toEqual(['ns1.world']);
      expect(rr<RrsigData>(nsr, 'RRSIG')[0]!.data.signersName).toBe('imvu002.world');
    });

    it('a name under the suffix that is not delegated does not exist: NXDOMAIN, and with DO a signed denial', async () => {
      expect(await ask('nothing.world', 'A', false)).toMatchObject({ rcode: 'NXDOMAIN', flag_aa: true });
      const r = await ask('imvu999.world', 'A');
      // Denied from the zone's NSEC chain (the default): NXDOMAIN, an NSEC whose span covers the
      // name (owner before it, next after it in the chain), signed.
      expect(r).toMatchObject({ rcode: 'NXDOMAIN' });
      const nsec = rr<{ nextDomain: string; rrtypes: string[] }>(r, 'NSEC', 'authorities');
      expect(nsec.length).toBeGreaterThan(0);
      expect(nsec.some((n) => n.name !== 'imvu999.world')).toBe(true);
      expect(nsec.every((n) => !n.data.rrtypes.includes('UNKNOWN_128'))).toBe(true); // no NXNAME: not compact denial
      verified(r, 'NSEC', 'authorities');
      verified(r, 'SOA', 'authorities');
    });

    it('transfers (AXFR) signed like any signed zone: DNSKEY, the delegations with their signed DS, an NSEC chain', async () => {
      const xfr = await startDnsServer({ store: p.store, rrl: false, dnssec: onlineSigner(p.store, p.dataDir), xfr: { allow: ['127.0.0.1'] } });
      try {
        const [raw] = await tcpExchange(xfr.port, framed(query('world', 'AXFR', { rd: false })), 1, 5000);
        const rrs = decode(raw!).answers ?? [];
        expect([rrs[0]!.type, rrs[rrs.length - 1]!.type]).toEqual(['SOA', 'SOA']);
        expect((rrs[0] as { data: { serial: number } }).data.serial).toBe(await platformZoneSerial(p.store, 'world'));
        const has = (name: string, type: string) => rrs.some((r) => r.name === name && r.type === type);
        const expected: [string, string][] = [['world', 'DNSKEY'], ['world', 'NS'], ['ns1.world', 'A'], ['imvu001.world', 'NS'], ['imvu001.world', 'DS'], ['imvu001.world', 'NSEC']];
        for (const [name, type] of expected)
          expect(has(name, type), `${name} ${type}`).toBe(true);
        const sigs = rrs.filter((r) => r.type === 'RRSIG') as (Answer & { data: RrsigData })[];
        const dsSig = sigs.find((r) => r.name === 'imvu001.world' && r.data.typeCovered === 'DS')!;
        const ds = rrs.filter((r) => r.name === 'imvu001.world' && r.type === 'DS').map((r) => (r as { data: unknown }).data);
        expect(verifyRRset(key, dsSig.data, 'imvu001.world', ds)).toBe(true);
        // The delegation's NS is the child's: not signed here.
        expect(sigs.some((r) => r.name === 'imvu001.world' && r.data.typeCovered === 'NS')).toBe(false);
      } finally {
        await xfr.close();
      }
    });

    it('a new IMVU is delegated as soon as it is created: the serial moves and its DS is served', async () => {
      const before = rr<{ serial: number }>(await ask('world', 'SOA'), 'SOA')[0]!.data.serial;
      expect((await p.as(bob, 'imvu.create', { name: 'Market', owner: bob.id, jurisdiction: 'EU-GDPR' })).allowed).toBe(true);
      const r = await eventually(async () => {
        const reply = await ask('imvu004.world', 'DS');
        expect(rr(reply, 'DS')).toHaveLength(1);
        return reply;
      }, 5000);
      verified(r, 'DS');
      expect(rr<{ serial: number }>(await ask('world', 'SOA'), 'SOA')[0]!.data.serial).toBeGreaterThan(before);
    });
  });
});
