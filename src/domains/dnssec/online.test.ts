import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import type { Answer, NsecData, RrsigData } from 'dns-packet';
import { Zone, type AnswerSet, type RecordRow } from '../dns-authority/zone.ts';
import { synthesiseSoa } from '../records/soa.ts';
import { generateZoneKey, zoneKeyOf, type ZoneKey } from './keys.ts';
import { OnlineSigner, type SecureQuery } from './online.ts';
import { verifyRRset } from './sign.ts';

const Z = 'example.world';
const rows: RecordRow[] = [
  { name: Z, type: 'NS', value: 'ns1.world.', ttl: 3600 },
  { name: Z, type: 'MX', value: `10 mail.${Z}.`, ttl: 3600 },
  { name: `mail.${Z}`, type: 'A', value: '192.0.2.25', ttl: 3600 },
  { name: `www.${Z}`, type: 'A', value: '192.0.2.7', ttl: 120 },
  { name: `www.${Z}`, type: 'A', value: '192.0.2.8', ttl: 120 },
  { name: `www.${Z}`, type: 'AAAA', value: '2001:db8::7', ttl: 120 },
  { name: `*.wild.${Z}`, type: 'A', value: '192.0.2.9', ttl: 60 },
  { name: `a.ent.${Z}`, type: 'TXT', value: 'below an empty non-terminal', ttl: 60 },
  { name: `dangling.${Z}`, type: 'CNAME', value: `nothing.${Z}.`, ttl: 60 },
  { name: `ns1.sub.${Z}`, type: 'A', value: '192.0.2.53', ttl: 3600 },
  { name: `sub.${Z}`, type: 'NS', value: `ns1.sub.${Z}.`, ttl: 3600 },
];

let key: ZoneKey;
let clock = Date.UTC(2030, 0, 1) ;
const zoneAt = (serial: number) => new Zone(Z, 'IMVU-001', serial, synthesiseSoa(Z, serial, 'world'), rows);

beforeAll(async () => {
  const k = await generateZoneKey();
  const public_key = k.publicKey.toString('base64');
  key = zoneKeyOf(Z, { imvu: 'IMVU-001', algorithm: 13, flags: 257, public_key }, k.privateKey);
});

function signer(opts: ConstructorParameters<typeof OnlineSigner>[1] = {}) {
  // These tests describe compact denial (RFC 9824); chain.test.ts the chain denial.
  return new OnlineSigner({ forZone: (zone) => (zone === Z ? key : undefined) }, { now: () => clock, denial: 'compact', ...opts });
}

type RR = { name: string; type: string; ttl: number; data: unknown };
const fields = (a: Answer) => a as unknown as RR;

function ask(s: OnlineSigner, zone: Zone, qname: string, qtype: string, dnssecOk = true): AnswerSet {
  const name = qname.toLowerCase();
  const q: SecureQuery = { name, echo: qname, type: qtype, dnssecOk };
  const out = s.secure(zone, q, zone.lookup(name, qname, qtype));
  if (out instanceof Promise) throw new Error('the key source is synchronous here');
  // What we produce must survive the wire.
  dnsPacket.decode(dnsPacket.encode({ type: 'response', id: 1, answers: out.answers, authorities: out.authorities, additionals: out.additionals }));
  return out;
}

/** Every RRSIG in a section verifies over the RRset before it; returns the types covered. */
function verifySection(section: Answer[]): string[] {
  const covered: string[] = [];
  for (let i = 0; i < section.length; i++) {
    const rr = fields(section[i]!);
    if (rr.type !== 'RRSIG') continue;
    const sig = rr.data as RrsigData;
    const set = section.slice(0, i).map(fields).filter((x) => x.type === sig.typeCovered && x.name.toLowerCase() === rr.name.toLowerCase());
    expect(set.length, `RRset for ${rr.name} RRSIG ${sig.typeCovered}`).toBeGreaterThan(0);
    expect(rr.ttl).toBe(set[0]!.ttl);
    expect(verifyRRset(key.publicKey, sig, rr.name, set.map((x) => x.data)), `RRSIG ${rr.name} ${sig.typeCovered}`).toBe(true);
    covered.push(`${rr.name} ${sig.typeCovered}`);
  }
  return covered;
}

const types = (a: Answer[]) => a.map((x) => x.type);

describe('online signing', () => {
  it('without DO the answer is the lookup unchanged', () => {
    const zone = zoneAt(1);
    const set = zone.lookup(`www.${Z}`, `www.${Z}`, 'A');
    expect(signer().secure(zone, { name: `www.${Z}`, echo: `www.${Z}`, type: 'A', dnssecOk: false }, set)).toBe(set);
    const nx = zone.lookup(`nope.${Z}`, `nope.${Z}`, 'A');
    expect(signer().secure(zone, { name: `nope.${Z}`, echo: `nope.${Z}`, type: 'A', dnssecOk: false }, nx)).toBe(nx);
  });

  it('DNSKEY at the apex: answered with or without DO, signed with DO', () => {
    const zone = zoneAt(1);
    const plain = ask(signer(), zone, Z, 'DNSKEY', false);
    expect(types(plain.answers)).toEqual(['DNSKEY']);
    expect(fields(plain.answers[0]!).data).toEqual({ flags: 257, algorithm: 13, key: key.publicKey });
    const signed = ask(signer(), zone, Z, 'DNSKEY');
    expect(types(signed.answers)).toEqual(['DNSKEY', 'RRSIG']);
    expect(verifySection(signed.answers)).toEqual([`${Z} DNSKEY`]);
  });

  it('positive answer: an RRSIG after the RRset, valid from an hour ago for a week, the served TTL', () => {
    const out = ask(signer(), zoneAt(1), `WwW.${Z}`, 'A');
    expect(types(out.answers)).toEqual(['A', 'A', 'RRSIG']);
    expect(verifySection(out.answers)).toEqual([`WwW.${Z} A`]);
    const sig = fields(out.answers[2]!).data as RrsigData;
    const now = clock / 1000;
    expect(sig).toMatchObject({ algorithm: 13, labels: 3, originalTTL: 120, keyTag: key.keyTag, signersName: Z, inception: now - 3600, expiration: now + 7 * 86400 });
    expect(out.aa).toBe(true);
    expect(out.authorities).toEqual([]);
  });

  it('additional data (the MX target address) is signed too', () => {
    const out = ask(signer(), zoneAt(1), Z, 'MX');
    expect(types(out.answers)).toEqual(['MX', 'RRSIG']);
    expect(types(out.additionals)).toEqual(['A', 'RRSIG']);
    verifySection(out.answers);
    verifySection(out.additionals);
  });

  it('a wildcard expansion is signed as the query name (Labels = its labels): no closest-encloser proof needed', () => {
    const out = ask(signer(), zoneAt(1), `x.y.wild.${Z}`, 'A');
    expect(types(out.answers)).toEqual(['A', 'RRSIG']);
    expect((fields(out.answers[1]!).data as RrsigData).labels).toBe(5);
    verifySection(out.answers);
  });

  it('NXDOMAIN becomes NODATA with one NSEC: next name \\000.<qname>, bitmap RRSIG NSEC NXNAME (RFC 9824)', () => {
    const out = ask(signer(), zoneAt(1), `nope.${Z}`, 'A');
    expect(out.rcode).toBe(0);
    expect(out.answers).toEqual([]);
    expect(types(out.authorities)).toEqual(['SOA', 'RRSIG', 'NSEC', 'RRSIG']);
    const soaSig = fields(out.authorities[1]!);
    expect(soaSig.ttl).toBe(300);
    expect((soaSig.data as RrsigData).originalTTL).toBe(3600);
    const nsec = fields(out.authorities[2]!);
    expect(nsec).toMatchObject({ name: `nope.${Z}`, ttl: 300 });
    expect((nsec.data as NsecData).nextDomain).toBe(`\u0000.nope.${Z}`);
    expect((nsec.data as NsecData).rrtypes).toEqual(['RRSIG', 'NSEC', 'UNKNOWN_128']);
    expect(verifySection(out.authorities)).toEqual([`${Z} SOA`, `nope.${Z} NSEC`]);
    // On the wire: the successor's first label is one zero octet; the bitmap has window 0 (RRSIG, NSEC) and TYPE128.
    const wire = dnsPacket.encode({ type: 'response', id: 1, authorities: [out.authorities[2]!] });
    expect(wire.includes(Buffer.from(`\x01\x00\x04nope\x07example\x05world\x00`, 'latin1'))).toBe(true);
    const back = dnsPacket.decode(wire).authorities![0] as { data: NsecData };
    expect(back.data.rrtypes).toEqual(['RRSIG', 'NSEC', 'UNKNOWN_128']);
  });

  it('NODATA: the NSEC lists the types the name has; at the apex with SOA, NS and DNSKEY; at an empty non-terminal none', () => {
    const s = signer();
    const www = ask(s, zoneAt(1), `www.${Z}`, 'MX');
    expect((fields(www.authorities[2]!).data as NsecData).rrtypes).toEqual(['A', 'AAAA', 'RRSIG', 'NSEC']);
    const apex = ask(s, zoneAt(1), Z, 'AAAA');
    expect(new Set((fields(apex.authorities[2]!).data as NsecData).rrtypes)).toEqual(new Set(['SOA', 'NS', 'MX', 'DNSKEY', 'UNKNOWN_63', 'RRSIG', 'NSEC']));
    const ent = ask(s, zoneAt(1), `ent.${Z}`, 'A');
    expect((fields(ent.authorities[2]!).data as NsecData).rrtypes).toEqual(['RRSIG', 'NSEC']);
    const wildNodata = ask(s, zoneAt(1), `q.wild.${Z}`, 'TXT');
    expect((fields(wildNodata.authorities[2]!).data as NsecData).rrtypes).toEqual(['A', 'RRSIG', 'NSEC']);
    for (const o of [www, apex, ent, wildNodata]) expect(verifySection(o.authorities)).toHaveLength(2);
  });

  it('a CNAME to a missing name: the CNAME signed, the NSEC for the target', () => {
    const out = ask(signer(), zoneAt(1), `dangling.${Z}`, 'A');
    expect(out.rcode).toBe(0);
    expect(types(out.answers)).toEqual(['CNAME', 'RRSIG']);
    verifySection(out.answers);
    expect(fields(out.authorities[2]!)).toMatchObject({ name: `nothing.${Z}`, type: 'NSEC' });
    verifySection(out.authorities);
  });

  it('referral: NS and glue unsigned, the NSEC proving no DS at the cut signed; a DS query at the cut is NODATA', () => {
    const out = ask(signer(), zoneAt(1), `host.sub.${Z}`, 'A');
    expect(out.aa).toBe(false);
    expect(types(out.authorities)).toEqual(['NS', 'NSEC', 'RRSIG']);
    expect((fields(out.authorities[1]!).data as NsecData).rrtypes).toEqual(['NS', 'RRSIG', 'NSEC']);
    expect(types(out.additionals)).toEqual(['A']);
    expect(verifySection(out.authorities)).toEqual([`sub.${Z} NSEC`]);
    const ds = ask(signer(), zoneAt(1), `sub.${Z}`, 'DS');
    expect(ds.aa).toBe(true);
    expect((fields(ds.authorities[2]!).data as NsecData).rrtypes).toEqual(['NS', 'RRSIG', 'NSEC']);
  });

  it('NSEC and RRSIG queries at an existing name', () => {
    const nsec = ask(signer(), zoneAt(1), `www.${Z}`, 'NSEC');
    expect(types(nsec.answers)).toEqual(['NSEC', 'RRSIG']);
    verifySection(nsec.answers);
    const sigs = ask(signer(), zoneAt(1), `www.${Z}`, 'RRSIG');
    expect(sigs.answers.map((a) => (fields(a).data as RrsigData).typeCovered).sort()).toEqual(['A', 'AAAA', 'NSEC']);
  });

  it('signatures are cached per zone, serial, name and type; made anew after a day, a serial change, or eviction', () => {
    const s = signer({ cacheSize: 3 });
    const a1 = ask(s, zoneAt(1), `www.${Z}`, 'A');
    expect(s.stats.signatures).toBe(1);
    const a2 = ask(s, zoneAt(1), `WWW.${Z}`, 'A');
    expect(s.stats).toEqual({ signatures: 1, cacheHits: 1, materialised: 0 });
    expect(fields(a2.answers[2]!).data).toBe(fields(a1.answers[2]!).data);
    ask(s, zoneAt(2), `www.${Z}`, 'A');
    expect(s.stats.signatures).toBe(2);
    clock += 86_400_000;
    const later = ask(s, zoneAt(2), `www.${Z}`, 'A');
    expect(s.stats.signatures).toBe(3);
    expect((fields(later.answers[2]!).data as RrsigData).inception).toBe(clock / 1000 - 3600);
    for (let i = 0; i < 10; i++) ask(s, zoneAt(2), `n${i}.${Z}`, 'A');
    expect(s.cachedSignatures).toBeLessThanOrEqual(3);
  });

  it('any name and type (property): the answer encodes, every RRSIG verifies, a negative answer carries its NSEC', () => {
    const s = signer();
    const zone = zoneAt(1);
    const label = fc.oneof(
      fc.constantFrom('www', 'wild', 'ent', 'a', 'sub', 'mail', 'dangling', '*', 'x'),
      fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/),
    );
    const qtypes = ['A', 'AAAA', 'MX', 'TXT', 'NS', 'SOA', 'CNAME', 'DS', 'DNSKEY', 'NSEC', 'RRSIG', 'CAA', 'SRV', 'ANY'];
    fc.assert(
      fc.property(fc.array(label, { minLength: 0, maxLength: 4 }), fc.constantFrom(...qtypes), fc.boolean(), (labels, qtype, dnssecOk) => {
        const qname = [...labels, Z].join('.');
        const out = ask(s, zone, qname, qtype, dnssecOk);
        if (!dnssecOk) return;
        // (An RRSIG query's answer holds the signatures alone.)
        if (qtype !== 'RRSIG') verifySection(out.answers);
        verifySection(out.authorities);
        if (out.aa) verifySection(out.additionals);
        expect(out.rcode).toBe(0);
        if (out.aa && out.authorities.some((a) => a.type === 'SOA')) expect(types(out.authorities)).toEqual(['SOA', 'RRSIG', 'NSEC', 'RRSIG']);
      }),
      { numRuns: 300 },
    );
  });

  it('a zone without a key is served unsigned; a key that cannot be loaded throws (the responder answers SERVFAIL)', async () => {
    const none = new OnlineSigner({ forZone: async () => undefined });
    const zone = zoneAt(1);
    const set = zone.lookup(`www.${Z}`, `www.${Z}`, 'A');
    expect(await none.secure(zone, { name: `www.${Z}`, echo: `www.${Z}`, type: 'A', dnssecOk: true }, set)).toBe(set);
    const broken = new OnlineSigner({
      forZone: () => {
        throw new Error('the private key on disk does not match');
      },
    });
    expect(() => broken.secure(zone, { name: `www.${Z}`, echo: `www.${Z}`, type: 'A', dnssecOk: true }, set)).toThrow(/does not match/);
  });
});
