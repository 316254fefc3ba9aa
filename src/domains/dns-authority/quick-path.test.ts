import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import type { Answer, NsecData, RrsigData } from 'dns-packet';
import { provisioner } from '../../imvu/provision.ts';
import { onlineSigner, type OnlineSigner } from '../dnssec/online.ts';
import { verifyRRset } from '../dnssec/sign.ts';
import { ServerCookies } from './cookie.ts';
import { handleMessage, type Transport } from './responder.ts';
import { decode, dnsFixture, query, queryCode, type DnsFixture } from './testing.ts';
import { ZoneView } from './zone-view.ts';
import { chainOf } from '../dnssec/chain.ts';
import fc from 'fast-check';

// The responder's quick path (a plain query read without dns-packet, a signed denial of a name
// that does not exist written on the wire from the signer's encoded records) gives the bytes the
// general path (dns-packet's decoder and encoder, `secure`) gives for the same query, for every
// shape of query; and a denial signed on the quick path verifies.

const Z = 'imvu001.world';

describe('the quick path answers as the general path does', () => {
  let f: DnsFixture;
  let view: ZoneView;
  let signer: OnlineSigner;
  let compact: OnlineSigner;
  const cookies = new ServerCookies({ secret: Buffer.alloc(16, 3), now: () => 1_700_000_000_000 });

  beforeAll(async () => {
    f = await dnsFixture({ provision: provisioner });
    view = await ZoneView.open(f.p.store, { refreshMs: 100 });
    signer = onlineSigner(f.p.store, f.p.dataDir);
    compact = onlineSigner(f.p.store, f.p.dataDir, { denial: 'compact' });
  });
  afterAll(async () => {
    view?.close();
    await f?.p.cleanup();
  });

  const names = [
    `nothing.${Z}`, `NoThInG.${Z.toUpperCase()}`, `a.b.c.deep.${Z}`, `x.ent.wild.${Z}`, `x.host.wild.${Z}`, `x.www.${Z}`, `_x._tcp.${Z}`,
    `www.${Z}`, `WWW.${Z}`, Z, `ent.wild.${Z}`, `x.wild.${Z}`, `dangling.${Z}`, `x.sub.${Z}`, `sub.${Z}`, `alias.${Z}`,
    `nothing.imvu002.world`, 'example.org', 'world', `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(50)}.${Z}`,
    `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(46)}.${Z}`, `a*b.${Z}`, `*.${Z}`, `-.${Z}`,
  ];
  const types = ['A', 'AAAA', 'TXT', 'MX', 'ANY', 'DS', 'NSEC', 'RRSIG', 'DNSKEY', 'SOA', 'NS', 'CAA', 'SRV', 'PTR'];
  const shapes: [string, (name: string, type: string) => Buffer][] = [
    ['DO, 1232', (n, t) => query(n, t, { id: 11, edns: 1232, do: true })],
    ['DO, 4096', (n, t) => query(n, t, { id: 12, edns: 4096, do: true })],
    ['DO, 512, no RD', (n, t) => query(n, t, { id: 13, edns: 512, do: true, rd: false })],
    ['EDNS without DO', (n, t) => query(n, t, { id: 14, edns: 1232 })],
    ['no EDNS', (n, t) => query(n, t, { id: 15 })],
    ['DO with a client cookie', (n, t) => query(n, t, { id: 16, edns: 1232, do: true, cookie: Buffer.alloc(8, 9) })],
  ];

  async function both(msg: Buffer, t: Transport, s = signer): Promise<[Buffer | undefined, Buffer | undefined]> {
    // The general path first: the quick one then finds the same signatures in the signer's cache.
    const general = await handleMessage(view, msg, t, { dnssec: s, cookies, peer: '192.0.2.1', quick: false });
    const quick = await handleMessage(view, msg, t, { dnssec: s, cookies, peer: '192.0.2.1' });
    return [general.response, quick.response];
  }

  it.each(['nsec', 'compact'] as const)('byte for byte, over every name, type, EDNS shape and transport (%s denial)', async (mode) => {
    const s = mode === 'nsec' ? signer : compact;
    let compared = 0;
    for (const name of names)
      for (const type of types)
        for (const [what, make] of shapes)
          for (const t of ['udp', 'tcp'] as const) {
            const [general, quick] = await both(make(name, type), t, s);
            expect(quick?.toString('hex'), `${name} ${type} ${what} ${t}`).toBe(general?.toString('hex'));
            compared++;
          }
    expect(compared).toBe(names.length * types.length * shapes.length * 2);
  }, 240_000);

  it.each(['nsec', 'compact'] as const)('byte for byte on random names: any printable label, any case, under a hosted zone or not (property, %s denial)', async (mode) => {
    const s = mode === 'nsec' ? signer : compact;
    // Printable ASCII but the dot, as the quick reader takes; a few other bytes it leaves to dns-packet.
    const unit = fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 0x21, max: 0x7e }).filter((c) => c !== 0x2e) }, { weight: 1, arbitrary: fc.constantFrom(0x20, 0xe9, 0x00) });
    const label = fc.array(unit, { minLength: 1, maxLength: 20 }).map((cs) => Buffer.from(cs));
    const suffix = fc.constantFrom(`${Z}`, `wild.${Z}`, `ent.wild.${Z}`, `www.${Z}`, `sub.${Z}`, 'imvu002.world', 'world', 'example.org');
    const upper = (b: Buffer, flips: number) => Buffer.from(b.map((c, i) => ((flips >> i % 30) & 1 && c >= 0x61 && c <= 0x7a ? c - 0x20 : c)));
    const wire = (labels: Buffer[]) => Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(label, { maxLength: 3 }),
        suffix,
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.constantFrom(...types),
        fc.constantFrom(...shapes),
        fc.constantFrom('udp', 'tcp'),
        async (labels, zone, flips, type, [what, make], t) => {
          // A query for the suffix, its name replaced by the random labels before it, in the random case.
          const base = make(zone, type);
          const zoneWire = wire(zone.split('.').map((l) => Buffer.from(l)));
          const name = upper(Buffer.concat([wire(labels).subarray(0, -1), zoneWire]), flips);
          const msg = Buffer.concat([base.subarray(0, 12), name, base.subarray(12 + zoneWire.length)]);
          const [general, quick] = await both(msg, t as Transport, s);
          expect(quick?.toString('hex'), `${msg.toString('hex')} ${what} ${t}`).toBe(general?.toString('hex'));
        },
      ),
      { numRuns: 400 },
    );
  }, 240_000);

  it('byte for byte for odd queries: unknown types, NXNAME, other classes, versions, opcodes, options, trailing bytes', async () => {
    const odd: Buffer[] = [
      queryCode(`nothing.${Z}`, 128, { edns: 1232, do: true }),
      queryCode(`nothing.${Z}`, 65, { edns: 1232, do: true }),
      queryCode(`nothing.${Z}`, 253),
      query(`nothing.${Z}`, 'AXFR'),
    ];
    const chaos = query(`nothing.${Z}`, 'A', { edns: 1232, do: true });
    chaos.writeUInt16BE(3, chaos.length - 11 - 2);
    odd.push(chaos);
    const v1 = query(`nothing.${Z}`, 'A', { edns: 1232, do: true });
    v1[v1.length - 5] = 1;
    odd.push(v1);
    const notify = query(`nothing.${Z}`, 'SOA');
    notify[2]! |= 4 << 3;
    odd.push(notify, Buffer.concat([query(`nothing.${Z}`, 'A'), Buffer.from([0])]), query(`nothing.${Z}`, 'A').subarray(0, 20));
    const dotted = query(`ab.${Z}`, 'A', { edns: 1232, do: true });
    dotted[13] = 0x2e;
    const space = query(`ab.${Z}`, 'A', { edns: 1232, do: true });
    space[13] = 0x20;
    const high = query(`ab.${Z}`, 'A', { edns: 1232, do: true });
    high[13] = 0xe9;
    odd.push(dotted, space, high);
    // Two cookies, a malformed one, an unknown option beside a cookie.
    const opt = (options: { code: number; data: Buffer }[]) =>
      dnsPacket.encode({
        type: 'query',
        id: 5,
        questions: [{ name: `nothing.${Z}`, type: 'A' }],
        additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK, options } as unknown as Answer],
      });
    odd.push(
      opt([{ code: 10, data: Buffer.alloc(8, 1) }, { code: 10, data: Buffer.alloc(8, 2) }]),
      opt([{ code: 10, data: Buffer.alloc(5, 1) }]),
      opt([{ code: 65001, data: Buffer.from('x') }, { code: 10, data: Buffer.alloc(8, 1) }]),
    );
    for (const msg of odd)
      for (const t of ['udp', 'tcp'] as const) {
        const [general, quick] = await both(msg, t);
        expect(quick?.toString('hex'), msg.toString('hex')).toBe(general?.toString('hex'));
      }
  });

  it('a flood of names asked once does not push the signatures of existing names out of the signer', async () => {
    const small = onlineSigner(f.p.store, f.p.dataDir, { cacheSize: 100, denialCacheSize: 50, denial: 'compact' });
    const ask = (name: string, type: string) => handleMessage(view, query(name, type, { edns: 1232, do: true }), 'udp', { dnssec: small });
    for (const [n, t] of [[`www.${Z}`, 'A'], [`www.${Z}`, 'AAAA'], [Z, 'MX'], [`_sip._tcp.${Z}`, 'SRV']] as const) await ask(n, t);
    // The SOA's signature, which every denial carries, made once.
    await ask(`first.${Z}`, 'A');
    const before = small.stats.signatures;
    for (let i = 0; i < 500; i++) await ask(`flood${i}.${Z}`, 'A');
    // One signature per flooded name, and the cache holds the 50 latest only.
    expect(small.stats.signatures).toBe(before + 500);
    expect(small.cachedSignatures).toBeLessThanOrEqual(150);
    const after = small.stats.signatures;
    for (const [n, t] of [[`www.${Z}`, 'A'], [`www.${Z}`, 'AAAA'], [Z, 'MX'], [`_sip._tcp.${Z}`, 'SRV']] as const) await ask(n, t);
    expect(small.stats.signatures).toBe(after);
  });

  it('a denial signed on the quick path is the compact denial of RFC 9824 and its signatures verify', async () => {
    const signer = compact;
    const zone = (await view.zone(view.enclosing(Z)!))!;
    const key = (await signer.keys.forZone(Z, zone.serial))!;
    for (let i = 0; i < 20; i++) {
      const owner = `Fresh${i}-${Date.now()}.${Z}`;
      const before = signer.stats.signatures;
      const h = await handleMessage(view, query(owner, 'AAAA', { edns: 1232, do: true }), 'udp', { dnssec: signer });
      expect(signer.stats.signatures).toBe(before + 1);
      const r = decode(h.response!);
      expect(r.rcode).toBe('NOERROR');
      expect(r.flags! & dnsPacket.AUTHORITATIVE_ANSWER).toBeTruthy();
      expect(r.answers).toEqual([]);
      const auth = r.authorities as unknown as { name: string; type: string; ttl: number; data: unknown }[];
      expect(auth.map((a) => a.type)).toEqual(['SOA', 'RRSIG', 'NSEC', 'RRSIG']);
      expect(auth[2]!.name).toBe(owner);
      const nsec = auth[2]!.data as NsecData;
      expect(nsec.nextDomain).toBe(`\u0000.${owner.toLowerCase()}`);
      expect(nsec.rrtypes).toEqual(['RRSIG', 'NSEC', 'UNKNOWN_128']);
      const sig = auth[3]!.data as RrsigData;
      expect(sig.typeCovered).toBe('NSEC');
      expect(sig.labels).toBe(3);
      expect(verifyRRset(key.publicKey, sig, owner.toLowerCase(), [nsec])).toBe(true);
      expect(verifyRRset(key.publicKey, auth[1]!.data as RrsigData, Z, [auth[0]!.data])).toBe(true);
      // The same name again: the cached signature, no new one.
      await handleMessage(view, query(owner.toUpperCase(), 'A', { edns: 1232, do: true }), 'udp', { dnssec: signer });
      expect(signer.stats.signatures).toBe(before + 1);
    }
  });

  it('chain denial (the default): a flood of new names costs no signature once the chain is signed, and the answer is NXDOMAIN with the covering and wildcard NSECs', async () => {
    const zone = (await view.zone(view.enclosing(Z)!))!;
    const key = (await signer.keys.forZone(Z, zone.serial))!;
    // A flood of random names: at most one signature per NSEC of the chain (and the SOA's), however many names.
    const links = chainOf(zone).links.length;
    const start = signer.stats.signatures;
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-';
    for (let i = 0; i < 600; i++) {
      let label = '';
      for (let j = 0; j < 1 + (i % 9); j++) label += alphabet[(i * 7 + j * 13 + ((i * j) % 11)) % alphabet.length];
      await handleMessage(view, query(`${label}x${i}.${Z}`, 'A', { edns: 1232, do: true }), 'udp', { dnssec: signer });
    }
    expect(signer.stats.signatures - start).toBeLessThanOrEqual(links + 1);
    // Names in one gap of the chain: signed once, then none at all.
    await handleMessage(view, query(`fresh-warm.${Z}`, 'A', { edns: 1232, do: true }), 'udp', { dnssec: signer });
    const before = signer.stats.signatures;
    for (let i = 0; i < 200; i++) {
      const owner = `Fresh${i}-${Date.now()}.${Z}`;
      const h = await handleMessage(view, query(owner, 'AAAA', { edns: 1232, do: true }), 'udp', { dnssec: signer });
      const r = decode(h.response!);
      expect(r.rcode).toBe('NXDOMAIN');
      expect(r.flags! & dnsPacket.AUTHORITATIVE_ANSWER).toBeTruthy();
      const auth = r.authorities as unknown as { name: string; type: string; ttl: number; data: unknown }[];
      expect(auth.slice(0, 2).map((a) => a.type)).toEqual(['SOA', 'RRSIG']);
      const nsecs = auth.filter((a) => a.type === 'NSEC');
      expect(nsecs.length).toBeGreaterThanOrEqual(1);
      for (const n of nsecs) {
        const sig = auth.find((a) => a.type === 'RRSIG' && a.name === n.name && (a.data as RrsigData).typeCovered === 'NSEC')!.data as RrsigData;
        expect(verifyRRset(key.publicKey, sig, n.name, [n.data])).toBe(true);
        // Chain NSECs, never one owned by the asked name.
        expect(n.name).not.toBe(owner.toLowerCase());
        expect((n.data as NsecData).rrtypes).not.toContain('UNKNOWN_128');
      }
    }
    expect(signer.stats.signatures).toBe(before);
  }, 120_000);
});
