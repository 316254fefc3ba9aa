import { verifyZonemd, ZONEMD } from '../zonefile/zonemd.ts';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Answer, NsecData, RrsigData } from 'dns-packet';
import { Zone, type RecordRow } from '../dns-authority/zone.ts';
import { synthesiseSoa } from '../records/soa.ts';
import { generateZoneKey, zoneKeyOf, type ZoneKey } from './keys.ts';
import { rrText } from './presentation.ts';
import { signZone } from './signed-zone.ts';
import { verifyRRset } from './sign.ts';
import { compareNames } from './wire.ts';

const Z = 'example.world';
const rows: RecordRow[] = [
  { name: Z, type: 'NS', value: 'ns1.world.', ttl: 3600 },
  { name: `www.${Z}`, type: 'A', value: '192.0.2.8', ttl: 120 },
  { name: `www.${Z}`, type: 'A', value: '192.0.2.7', ttl: 120 },
  { name: `WWW.${Z}`, type: 'TXT', value: 'say "hi"', ttl: 120 },
  { name: `*.wild.${Z}`, type: 'A', value: '192.0.2.9', ttl: 60 },
  { name: `a.ent.${Z}`, type: 'MX', value: `10 Mail.${Z}.`, ttl: 60 },
  { name: `ns1.sub.${Z}`, type: 'A', value: '192.0.2.53', ttl: 3600 },
  { name: `sub.${Z}`, type: 'NS', value: `ns1.sub.${Z}.`, ttl: 3600 },
  { name: `sub.${Z}`, type: 'TXT', value: 'occluded by the delegation', ttl: 3600 },
];
type RR = { name: string; type: string; ttl: number; data: unknown };
const f = (a: Answer) => a as unknown as RR;

let key: ZoneKey;
beforeAll(async () => {
  const k = await generateZoneKey();
  key = zoneKeyOf(Z, { imvu: 'IMVU-001', algorithm: 13, flags: 257, public_key: k.publicKey.toString('base64') }, k.privateKey);
});

describe('signing a whole zone (for AXFR and the signed export)', () => {
  it('SOA first, DNSKEY at the apex, an NSEC chain in canonical order closing at the apex, glue and occluded data unsigned', () => {
    const z = new Zone(Z, 'IMVU-001', 9, synthesiseSoa(Z, 9, 'world'), rows);
    const now = Date.UTC(2030, 0, 1);
    const s = signZone(z, key, { now });
    const rrs = s.records.map(f);
    expect(rrs[0]).toMatchObject({ name: Z, type: 'SOA' });
    expect(rrs.filter((r) => r.type === 'DNSKEY')).toEqual([{ name: Z, type: 'DNSKEY', class: 'IN', ttl: 3600, data: key.dnskey }]);

    const nsecs = rrs.filter((r) => r.type === 'NSEC');
    const chain = nsecs.map((r) => r.name);
    expect(chain).toEqual([Z, `a.ent.${Z}`, `sub.${Z}`, `*.wild.${Z}`, `www.${Z}`]);
    expect([...chain].sort(compareNames)).toEqual(chain);
    expect(nsecs.map((r) => (r.data as NsecData).nextDomain)).toEqual([...chain.slice(1), Z]);
    const bitmap = (name: string) => (nsecs.find((r) => r.name === name)!.data as NsecData).rrtypes;
    expect(bitmap(Z)).toEqual(['NS', 'SOA', 'DNSKEY', 'UNKNOWN_63', 'RRSIG', 'NSEC']);
    expect(bitmap(`sub.${Z}`)).toEqual(['NS', 'RRSIG', 'NSEC']);
    expect(bitmap(`www.${Z}`)).toEqual(['A', 'TXT', 'RRSIG', 'NSEC']);

    // Every RRSIG verifies; exactly the authoritative RRsets and the NSECs are signed.
    const sigs = rrs.filter((r) => r.type === 'RRSIG');
    for (const sig of sigs) {
      const d = sig.data as RrsigData;
      const set = rrs.filter((r) => r.name === sig.name && r.type === d.typeCovered);
      expect(verifyRRset(key.publicKey, d, sig.name, set.map((r) => r.data)), `${sig.name} ${d.typeCovered}`).toBe(true);
      expect(d.inception).toBe(now / 1000 - 3600);
      expect(d.expiration).toBe(now / 1000 + 21 * 86400);
    }
    const signed = new Set(sigs.map((r) => `${r.name} ${(r.data as RrsigData).typeCovered}`));
    for (const unsigned of [`sub.${Z} NS`, `sub.${Z} TXT`, `ns1.sub.${Z} A`]) expect(signed.has(unsigned), unsigned).toBe(false);
    for (const want of [`${Z} SOA`, `${Z} NS`, `${Z} DNSKEY`, `${Z} NSEC`, `*.wild.${Z} A`, `a.ent.${Z} MX`, `www.${Z} A`, `sub.${Z} NSEC`]) expect(signed.has(want), want).toBe(true);
    expect((sigs.find((r) => r.name === `*.wild.${Z}`)!.data as RrsigData).labels).toBe(3);
    // Glue is transferred, unsigned and outside the chain.
    expect(rrs.some((r) => r.name === `ns1.sub.${Z}` && r.type === 'A')).toBe(true);
    expect(chain).not.toContain(`ns1.sub.${Z}`);
    // The apex ZONEMD: over the signed zone as listed here (RFC 8976), and signed itself.
    expect(verifyZonemd(Z, s.records)).toMatchObject({ ok: true, serial: 9 });
    expect(signed.has(`${Z} ${ZONEMD}`)).toBe(true);
    expect(rrs.filter((r) => r.type === ZONEMD)).toHaveLength(1);
  });

  it('presentation lines for the DNSSEC types', () => {
    const z = new Zone(Z, 'IMVU-001', 9, synthesiseSoa(Z, 9, 'world'), rows);
    const lines = signZone(z, key, { now: Date.UTC(2030, 0, 1) }).records.map(rrText);
    expect(lines[0]).toBe(`${Z}.\t3600\tIN\tSOA\tns1.world. hostmaster.${Z}. 9 3600 600 1209600 300`);
    expect(lines).toContain(`${Z}.\t3600\tIN\tDNSKEY\t257 3 13 ${key.publicKey.toString('base64')}`);
    expect(lines).toContain(`${Z}.\t300\tIN\tNSEC\ta.ent.${Z}. NS SOA RRSIG NSEC DNSKEY ZONEMD`);
    expect(lines.find((l) => l.includes('RRSIG\tSOA'))).toMatch(new RegExp(`^${Z}\\.\\t3600\\tIN\\tRRSIG\\tSOA 13 2 3600 20300122000000 20291231230000 ${key.keyTag} ${Z}\\. [A-Za-z0-9+/]{86}==$`));
    expect(lines).toContain(`www.${Z}.\t120\tIN\tTXT\t"say \\"hi\\""`);
    expect(lines.find((l) => l.includes('\tZONEMD\t'))).toMatch(new RegExp(`^${Z}\\.\\t3600\\tIN\\tZONEMD\\t9 1 1 [0-9A-F]{96}$`));
  });

  it('without a key: the zone unsigned', () => {
    const z = new Zone(Z, 'IMVU-001', 9, synthesiseSoa(Z, 9, 'world'), rows);
    const s = signZone(z, undefined);
    expect(s.key).toBeUndefined();
    expect(s.records.map((a) => a.type).filter((t) => ['RRSIG', 'NSEC', 'DNSKEY'].includes(t))).toEqual([]);
    // Its ZONEMD is the compiled zone's own (the digest of the unsigned zone).
    expect(verifyZonemd(Z, s.records)).toMatchObject({ ok: true });
    expect((s.records.find((a) => a.type === ZONEMD) as unknown as { data: Buffer }).data).toEqual(z.zonemd);
  });
});
