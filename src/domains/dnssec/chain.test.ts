import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import type { Answer, NsecData, RrsigData } from 'dns-packet';
import { Zone, type AnswerSet, type RecordRow } from '../dns-authority/zone.ts';
import { synthesiseSoa } from '../records/soa.ts';
import { canonicalKey, chainOf } from './chain.ts';
import { generateZoneKey, zoneKeyOf, type ZoneKey } from './keys.ts';
import { OnlineSigner } from './online.ts';
import { verifyRRset } from './sign.ts';
import { signZone } from './signed-zone.ts';
import { compareNames, labelCount, labelsOf } from './wire.ts';

// Online denial from the zone's NSEC chain (RFC 4035 3.1.3), checked by a validator written here
// from RFC 4035 5.3 and 5.4 against a model of the zone computed from its rows alone (which names
// exist, which are delegations, which a wildcard answers for): every RRSIG verifies (a wildcard
// expansion's over the wildcard's name), every NSEC served is the one the zone transfer carries,
// and every negative or wildcard answer carries the proof a validator needs.

const Z = 'example.world';
let key: ZoneKey;

beforeAll(async () => {
  const k = await generateZoneKey();
  key = zoneKeyOf(Z, { imvu: 'IMVU-001', algorithm: 13, flags: 257, public_key: k.publicKey.toString('base64') }, k.privateKey);
});

const zoneOf = (rows: RecordRow[], serial = 1) => new Zone(Z, 'IMVU-001', serial, synthesiseSoa(Z, serial, 'world'), rows);
const signer = () => new OnlineSigner({ forZone: (zone) => (zone === Z ? key : undefined) });

type RR = { name: string; type: string; ttl: number; data: unknown };
const f = (a: Answer) => a as unknown as RR;
const parent = (n: string) => n.slice(n.indexOf('.') + 1);
const within = (n: string, z: string) => n === z || n.endsWith('.' + z);

/** RFC 4035 5.4: `nsec` (owner `o`, next `n`) covers `name`: it lies strictly between them in canonical order (the last NSEC wraps round). */
function covers(o: string, n: string, name: string): boolean {
  const after = compareNames(o, name) < 0;
  const before = compareNames(name, n) < 0;
  return compareNames(o, n) < 0 ? after && before : after || before;
}

/** The zone as its rows say, without the code under test. */
function model(rows: RecordRow[]) {
  const owners = new Map<string, Set<string>>([[Z, new Set(['SOA', 'NS'])]]);
  for (const r of rows) {
    const o = r.name.toLowerCase();
    if (!owners.has(o)) owners.set(o, new Set());
    owners.get(o)!.add(r.type);
  }
  const exists = new Set<string>();
  for (const o of owners.keys()) for (let n = o; ; n = parent(n)) {
    exists.add(n);
    if (n === Z) break;
  }
  const cuts = [...owners].filter(([o, t]) => o !== Z && t.has('NS')).map(([o]) => o);
  // The topmost delegation at or above the name: everything below it is the child's.
  const cutAbove = (name: string) => cuts.filter((c) => within(name, c)).sort((a, b) => a.length - b.length)[0];
  const encloser = (name: string) => {
    let n = name;
    while (!exists.has(n)) n = parent(n);
    return n;
  };
  return { owners, exists, cutAbove, encloser };
}

function validate(rows: RecordRow[], zone: Zone, qname: string, qtype: string, out: AnswerSet): void {
  const m = model(rows);
  const sections = [out.answers, out.authorities, out.additionals];
  // The NSECs the zone transfer carries: the only ones an online answer may show.
  const transferred = new Map<string, NsecData>();
  for (const a of signZone(zone, key).records) if (a.type === 'NSEC') transferred.set(f(a).name, f(a).data as NsecData);
  for (const section of sections) {
    const rrs = section.map(f);
    for (const r of rrs) {
      if (r.type === 'NSEC') expect(r.data, `NSEC of ${r.name}`).toEqual(transferred.get(r.name));
      if (r.type !== 'RRSIG') continue;
      const sig = r.data as RrsigData;
      const set = rrs.filter((x) => x.type === sig.typeCovered && x.name === r.name).map((x) => x.data);
      expect(set.length).toBeGreaterThan(0);
      expect(verifyRRset(key.publicKey, sig, r.name, set), `RRSIG ${r.name} ${sig.typeCovered}`).toBe(true);
    }
  }
  const nsecs = out.authorities.map(f).filter((r) => r.type === 'NSEC') as { name: string; data: NsecData }[];
  const covering = (name: string) => nsecs.find((n) => covers(n.name, n.data.nextDomain, name));
  const own = (name: string) => nsecs.find((n) => n.name === name);

  const cut = m.cutAbove(qname);
  if (cut && !(cut === qname && qtype === 'DS')) {
    // A referral: the DS of the cut, or its NSEC proving there is none (an insecure delegation).
    expect(out.aa).toBe(false);
    const hasDs = m.owners.get(cut)!.has('DS');
    if (!hasDs) {
      const n = own(cut);
      expect(n, `NSEC at the cut ${cut}`).toBeDefined();
      expect(n!.data.rrtypes).toContain('NS');
      expect(n!.data.rrtypes).not.toContain('DS');
      expect(n!.data.rrtypes).not.toContain('SOA');
    }
    return;
  }
  expect(out.aa).toBe(true);
  const ce = m.encloser(qname);
  const wildcard = `*.${ce}`;
  const exists = m.exists.has(qname);
  const source = exists ? qname : m.owners.has(wildcard) ? wildcard : undefined;
  const types = source ? m.owners.get(source) : undefined;
  if (!exists && !types && !m.exists.has(wildcard)) {
    // NXDOMAIN: an NSEC covering the name, whose owner or next name shows the closest encloser,
    // and one covering the wildcard at that encloser.
    expect(out.rcode).toBe(3);
    const c = covering(qname);
    expect(c, `NSEC covering ${qname}`).toBeDefined();
    const common = (a: string, b: string) => {
      const la = labelsOf(a).reverse();
      const lb = labelsOf(b).reverse();
      let i = 0;
      while (i < la.length && i < lb.length && la[i] === lb[i]) i++;
      return la.slice(0, i).reverse().join('.');
    };
    // The longer of the two common ancestors, counted in labels (a leading `*` counts: `*.zone` can be the encloser).
    const shown = [common(qname, c!.name), common(qname, c!.data.nextDomain)].sort((a, b) => labelsOf(b).length - labelsOf(a).length)[0];
    expect(shown).toBe(ce);
    expect(covering(wildcard), `NSEC covering ${wildcard}`).toBeDefined();
    return;
  }
  expect(out.rcode).toBe(0);
  const answered = out.answers.map(f).filter((r) => r.type !== 'RRSIG');
  if (answered.length > 0) {
    // A positive answer. From a wildcard: signed as the wildcard, with the proof the name itself does not exist.
    const sig = out.answers.map(f).find((r) => r.type === 'RRSIG')!.data as RrsigData;
    if (!exists) {
      expect(sig.labels).toBe(labelCount(wildcard));
      expect(covering(qname), `NSEC covering the expanded ${qname}`).toBeDefined();
    } else expect(sig.labels).toBe(labelCount(qname));
    return;
  }
  // NODATA.
  if (exists && m.owners.has(qname)) {
    const n = own(qname);
    expect(n, `NSEC of ${qname}`).toBeDefined();
    expect(n!.data.rrtypes).not.toContain(qtype);
    expect(n!.data.rrtypes).not.toContain('CNAME');
  } else if (exists) {
    // An empty non-terminal: the NSEC covering it, whose next name is below it.
    const n = covering(qname);
    expect(n, `NSEC covering the empty non-terminal ${qname}`).toBeDefined();
    expect(within(n!.data.nextDomain, qname) && n!.data.nextDomain !== qname).toBe(true);
  } else {
    // A wildcard without the type: the name covered, and the wildcard's NSEC (or, for a wildcard
    // that is itself an empty non-terminal, the NSEC covering it).
    expect(covering(qname), `NSEC covering ${qname}`).toBeDefined();
    if (m.owners.has(wildcard)) expect(own(wildcard)?.data.rrtypes).not.toContain(qtype);
    else expect(covering(wildcard)).toBeDefined();
  }
}

function ask(s: OnlineSigner, zone: Zone, qname: string, qtype: string): AnswerSet {
  const out = s.secure(zone, { name: qname, echo: qname, type: qtype, dnssecOk: true }, zone.lookup(qname, qname, qtype));
  if (out instanceof Promise) throw new Error('synchronous key source');
  dnsPacket.decode(dnsPacket.encode({ type: 'response', id: 1, answers: out.answers, authorities: out.authorities, additionals: out.additionals }));
  return out;
}

const fixed: RecordRow[] = [
  { name: Z, type: 'NS', value: 'ns1.world.', ttl: 3600 },
  { name: `www.${Z}`, type: 'A', value: '192.0.2.7', ttl: 120 },
  { name: `*.wild.${Z}`, type: 'A', value: '192.0.2.9', ttl: 60 },
  { name: `a.ent.${Z}`, type: 'TXT', value: 'below an empty non-terminal', ttl: 60 },
  { name: `sub.${Z}`, type: 'NS', value: `ns1.sub.${Z}.`, ttl: 3600 },
  { name: `ns1.sub.${Z}`, type: 'A', value: '192.0.2.53', ttl: 3600 },
  { name: `zzz.${Z}`, type: 'TXT', value: 'last in the chain', ttl: 60 },
];

describe('online denial from the NSEC chain', () => {
  it('canonical sort keys are those built a character at a time (property: any string, ASCII or not, with dots anywhere)', () => {
    // The key as it was built before (kept here as the reference).
    const reference = (name: string): string => {
      const n = name.endsWith('.') ? name.slice(0, -1) : name;
      const labels = n === '' ? [] : n.split('.');
      let key = '';
      for (let i = labels.length - 1; i >= 0; i--) {
        for (const c0 of Buffer.from(labels[i]!, 'utf8')) key += String.fromCharCode((c0 >= 0x41 && c0 <= 0x5a ? c0 | 0x20 : c0) + 1);
        key += '\u0000';
      }
      return key;
    };
    const unit = fc.oneof(fc.constantFrom(...'aZ9-_*.'), fc.constantFrom('\u007f', '\u00e9', '\u00ff', '\u4e16', '\u0000', '@', '['));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit, maxLength: 40 }), fc.string({ unit: fc.constantFrom('a', 'B', '.'), minLength: 500, maxLength: 700 })), (name) => {
        expect(canonicalKey(name)).toBe(reference(name));
      }),
      { numRuns: 5000 },
    );
  });

  it('canonical sort keys order names as RFC 4034 6.1 does (property)', () => {
    const label = fc.stringMatching(/^[a-zA-Z0-9*_-]{1,6}$/);
    const name = fc.array(label, { minLength: 0, maxLength: 4 }).map((l) => [...l, 'example'].join('.'));
    fc.assert(
      fc.property(name, name, (a, b) => {
        const k = canonicalKey(a) < canonicalKey(b) ? -1 : canonicalKey(a) > canonicalKey(b) ? 1 : 0;
        expect(k).toBe(Math.sign(compareNames(a, b)));
      }),
      { numRuns: 2000 },
    );
  });

  it('the chain is the one the zone transfer carries, and a name not in it is covered by its predecessor', () => {
    const zone = zoneOf(fixed);
    const chain = chainOf(zone);
    const axfr = signZone(zone, key).records.filter((a) => a.type === 'NSEC').map((a) => [f(a).name, f(a).data]);
    expect(chain.links.map((l) => [l.name, l.data])).toEqual(axfr);
    expect(chain.covering(`b.${Z}`).name).toBe(Z);
    expect(chain.covering(`f.${Z}`).name).toBe(`a.ent.${Z}`);
    expect(chain.covering(`f.${Z}`).data.nextDomain).toBe(`sub.${Z}`);
    expect(chain.covering(`zzzz.${Z}`).name).toBe(`zzz.${Z}`);
    expect(chain.covering(`zzzz.${Z}`).data.nextDomain).toBe(Z);
    // Glue below the cut is not in the chain.
    expect(chain.at(`ns1.sub.${Z}`)).toBeUndefined();
  });

  it('NXDOMAIN, NODATA, empty non-terminal, wildcard answer and wildcard NODATA, insecure delegation, the apex: each with its proof', () => {
    const zone = zoneOf(fixed);
    const s = signer();
    const cases: [string, string][] = [
      [`nope.${Z}`, 'A'], [`a.b.nope.${Z}`, 'AAAA'], [`zzzz.${Z}`, 'A'], [`www.${Z}`, 'TXT'], [`ent.${Z}`, 'A'], [`x.wild.${Z}`, 'A'],
      [`x.y.wild.${Z}`, 'A'], [`x.wild.${Z}`, 'TXT'], [`wild.${Z}`, 'A'], [`sub.${Z}`, 'DS'], [`x.sub.${Z}`, 'A'], [Z, 'TXT'], [Z, 'A'],
      [`x.a.ent.${Z}`, 'A'], [`*.wild.${Z}`, 'TXT'],
    ];
    for (const [q, t] of cases) validate(fixed, zone, q, t, ask(s, zone, q, t));
    const nx = ask(s, zone, `nope.${Z}`, 'A');
    expect(nx.rcode).toBe(3);
    expect(nx.authorities.map((a) => a.type)).toEqual(['SOA', 'RRSIG', 'NSEC', 'RRSIG', 'NSEC', 'RRSIG']);
    const wild = ask(s, zone, `x.wild.${Z}`, 'A');
    expect((f(wild.answers[1]!).data as RrsigData).labels).toBe(3);
  });

  it('any zone, any name and type (property): a validator accepts the answer against the zone as its rows say', () => {
    const label = fc.constantFrom('a', 'b', 'c', 'd', '*', 'x-1');
    const qlabel = fc.constantFrom('a', 'b', 'c', 'd', 'e', '*', 'z', 'x-1');
    const owner = fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => [...l, Z].join('.'));
    const row = fc.tuple(owner, fc.constantFrom('A', 'TXT', 'NS', 'DS')).map(([name, type]): RecordRow | undefined => {
      if ((type === 'NS' || type === 'DS') && name.startsWith('*')) return undefined;
      const value = type === 'A' ? '192.0.2.1' : type === 'TXT' ? 'x' : type === 'NS' ? 'ns.example.net.' : '12345 13 2 ' + 'ab'.repeat(32);
      return { name, type, value, ttl: 300 };
    });
    const s = signer();
    let serial = 1;
    fc.assert(
      fc.property(fc.array(row, { minLength: 0, maxLength: 10 }), fc.array(qlabel, { minLength: 0, maxLength: 4 }), fc.constantFrom('A', 'TXT', 'MX', 'DS', 'NS'), (raw, labels, qtype) => {
        // DS only where there is a delegation (the NS of the same name).
        const rows0 = raw.filter((r): r is RecordRow => !!r);
        const rows = rows0.filter((r) => r.type !== 'DS' || rows0.some((n) => n.name === r.name && n.type === 'NS'));
        // A new serial per zone: signatures are cached per zone and serial.
        const zone = zoneOf(rows, serial++);
        const qname = [...labels, Z].join('.');
        validate(rows, zone, qname, qtype, ask(s, zone, qname, qtype));
      }),
      { numRuns: 150 },
    );
  }, 120_000);

  // RFC 4592 2.2.1 and 4.2: a wildcard that exists only as an empty non-terminal (a record at
  // x-1.*.zone) still matches names at the zone's apex level (b.zone: NODATA, the NSEC covering
  // the wildcard shows it exists and owns nothing), but not its own subdomains: a.*.zone has
  // `*.zone` as its closest encloser and no `*.*.zone`, so it is NXDOMAIN, proved by the NSEC
  // whose next name (x-1.*.zone) shows the encloser and which also covers `*.*.zone`.
  it('a wildcard that is only an empty non-terminal (a record at x-1.*.zone): NODATA beside it, NXDOMAIN below it', () => {
    const rows: RecordRow[] = [{ name: `x-1.*.${Z}`, type: 'A', value: '192.0.2.1', ttl: 300 }];
    const zone = zoneOf(rows, 1);
    const s = signer();
    const below = ask(s, zone, `a.*.${Z}`, 'A');
    expect(below.rcode).toBe(3);
    validate(rows, zone, `a.*.${Z}`, 'A', below);
    const beside = ask(s, zone, `b.${Z}`, 'A');
    expect(beside.rcode).toBe(0);
    expect(beside.answers).toEqual([]);
    validate(rows, zone, `b.${Z}`, 'A', beside);
    for (const [q, t] of [[`*.${Z}`, 'A'], [`x-1.*.${Z}`, 'TXT'], [`x-1.*.${Z}`, 'A'], [`c.d.${Z}`, 'TXT'], [`*.*.${Z}`, 'A']] as const) validate(rows, zone, q, t, ask(s, zone, q, t));
  });

  it('warming signs ahead every RRSIG the answers carry: none made when they are asked, and each still validates', () => {
    const zone = zoneOf(fixed, 7);
    const s = signer();
    expect(s.warm(zone)).toBeGreaterThan(chainOf(zone).links.length);
    const before = s.stats.signatures;
    const cases: [string, string][] = [
      [`nope.${Z}`, 'A'], [`a.b.nope.${Z}`, 'AAAA'], [`zzzz.${Z}`, 'A'], [`www.${Z}`, 'A'], [`www.${Z}`, 'TXT'], [`ent.${Z}`, 'A'], [`x.wild.${Z}`, 'A'],
      [`x.y.wild.${Z}`, 'A'], [`x.wild.${Z}`, 'TXT'], [`wild.${Z}`, 'A'], [`sub.${Z}`, 'DS'], [`x.sub.${Z}`, 'A'], [Z, 'TXT'], [Z, 'NS'], [Z, 'SOA'],
      [`a.ent.${Z}`, 'TXT'], [`*.wild.${Z}`, 'TXT'], [`zzz.${Z}`, 'TXT'],
    ];
    for (const [q, t] of cases) validate(fixed, zone, q, t, ask(s, zone, q, t));
    expect(s.stats.signatures).toBe(before);
    // Warming again makes nothing new.
    expect(s.warm(zone)).toBe(0);
  });

  it('a new version of the zone re-signs only the NSECs that changed', () => {
    const s = signer();
    const v1 = zoneOf(fixed, 1);
    const names = [`nope.${Z}`, `b.${Z}`, `x.sub.${Z}`, `zzzz.${Z}`, `c.${Z}`, `y.${Z}`];
    for (const n of names) ask(s, v1, n, 'A');
    // Serial 2 adds one name: its NSEC and its predecessor's change; the SOA's signature is new.
    const v2 = zoneOf([...fixed, { name: `m.${Z}`, type: 'A', value: '192.0.2.77', ttl: 60 }], 2);
    const before = s.stats.signatures;
    for (const n of names) ask(s, v2, n, 'A');
    const made = s.stats.signatures - before;
    // SOA (serial 2) + at most the changed NSECs (m's predecessor and m itself).
    expect(made).toBeLessThanOrEqual(3);
    expect(made).toBeGreaterThanOrEqual(1);
  });
});
