import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as dns } from 'node:dns';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';
import { startDnsServer, type DnsServer } from './server.ts';
import { MAX_UDP_PAYLOAD } from './responder.ts';
import { decode, dnsFixture, eventually, framed, LONG_TXT, query, tcpAsk, tcpExchange, udpAsk, type DnsFixture } from './testing.ts';

// Node's own resolver (c-ares) is the client nobody here wrote; raw dns-packet exchanges show the
// flags and sections it hides.

let f: DnsFixture;
let srv: DnsServer;
let resolver: dns.Resolver;
const metered: string[] = [];
const Z = 'imvu001.world';

beforeAll(async () => {
  f = await dnsFixture();
  srv = await startDnsServer({ store: f.p.store, rrl: false, onQuery: (zone, imvu) => metered.push(`${zone} ${imvu}`) });
  resolver = new dns.Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([`127.0.0.1:${srv.port}`]);
});
afterAll(async () => {
  await srv?.close();
  await f?.p.cleanup();
});

const names = (rrs: Answer[] | undefined) => (rrs ?? []).map((a) => `${a.name} ${a.type}`);

describe("Node's resolver against the projections", () => {
  it('answers every record type of an IMVU zone created through the chokepoint', async () => {
    expect(await resolver.resolve4(Z)).toEqual([f.p.config.edgeAddress]);
    expect(await resolver.resolve4(`www.${Z}`)).toEqual(['192.0.2.7']);
    expect(await resolver.resolve6(`www.${Z}`)).toEqual(['2001:db8::7']);
    expect(await resolver.resolveMx(Z)).toEqual([{ exchange: `mail.${Z}`, priority: 10 }]);
    expect((await resolver.resolveTxt(Z)).map((c) => c.join(''))).toEqual(['v=spf1 mx -all']);
    expect(await resolver.resolveTxt(`_dmarc.${Z}`)).toEqual([[`v=DMARC1; p=reject; rua=mailto:admin@${Z}`]]);
    expect(await resolver.resolveNs(Z)).toEqual(['ns1.world']);
    expect(await resolver.resolveSrv(`_sip._tcp.${Z}`)).toEqual([{ name: `sip.${Z}`, port: 5060, priority: 10, weight: 5 }]);
    expect(await resolver.resolveCaa(Z)).toEqual([{ critical: 0, issue: 'letsencrypt.org' }]);
    expect(await resolver.resolveCname(`alias.${Z}`)).toEqual([`www.${Z}`]);
    expect(await resolver.resolve4(`stage.${Z}`)).toEqual([f.p.config.edgeAddress]);
    expect(await resolver.resolve4('imvu002.world')).toEqual([f.p.config.edgeAddress]);
  });

  it('synthesises the SOA from zones.serial', async () => {
    const { serial } = (await f.p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', [Z]))!;
    expect(await resolver.resolveSoa(Z)).toEqual({
      nsname: 'ns1.world', hostmaster: `hostmaster.${Z}`, serial, refresh: 3600, retry: 600, expire: 1209600, minttl: 300,
    });
  });

  it('splits long text into 255-byte strings', async () => {
    const [chunks] = await resolver.resolveTxt(`long.${Z}`);
    expect(chunks!.map((c) => c.length)).toEqual([255, 255, LONG_TXT.length - 510]);
    expect(chunks!.join('')).toBe(LONG_TXT);
  });

  it('tells NXDOMAIN (ENOTFOUND) from NODATA (ENODATA), and refuses foreign names', async () => {
    await expect(resolver.resolve4(`nope.${Z}`)).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(resolver.resolve6(Z)).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(resolver.resolveMx(`www.${Z}`)).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(resolver.resolve4('example.com')).rejects.toMatchObject({ code: 'EREFUSED' });
    await expect(resolver.resolve4('world')).rejects.toMatchObject({ code: 'EREFUSED' });
  });

  it('follows in-zone CNAME chains and wildcards', async () => {
    expect(await resolver.resolve4(`chain.${Z}`)).toEqual(['192.0.2.7']);
    expect(await resolver.resolve4(`anything.wild.${Z}`)).toEqual(['192.0.2.9']);
    expect(await resolver.resolve4(`x.y.z.wild.${Z}`)).toEqual(['192.0.2.9']);
    expect(await resolver.resolve4(`host.wild.${Z}`)).toEqual(['192.0.2.10']);
    expect(await resolver.resolve4(`via.cwild.${Z}`)).toEqual(['192.0.2.7']);
  });

  it('retries over TCP when the answer does not fit in UDP', async () => {
    const txt = await resolver.resolveTxt(`huge.${Z}`);
    expect(txt.map((c) => c.join('')).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => `${i}`.repeat(400)));
    expect(srv.stats().tcpQueries).toBeGreaterThan(0);
  });

  it('serves a change committed through the chokepoint within one second, and its removal', async () => {
    const t0 = Date.now();
    await f.add('fresh', 'A', '192.0.2.99');
    await eventually(async () => expect(await resolver.resolve4(`fresh.${Z}`)).toEqual(['192.0.2.99']), 1000);
    expect(Date.now() - t0).toBeLessThan(1000 + 500); // the commit itself is inside the window
    await f.remove('fresh', 'A');
    await eventually(() => expect(resolver.resolve4(`fresh.${Z}`)).rejects.toMatchObject({ code: 'ENOTFOUND' }), 1000);
  });

  it('serves a new IMVU zone within one second of its creation', async () => {
    const carol = await f.p.register('carol', 'creator');
    expect((await f.p.as(carol, 'imvu.create', { name: 'Studio', owner: carol.id, jurisdiction: 'EU-GDPR' })).allowed).toBe(true);
    await eventually(async () => expect(await resolver.resolveMx('imvu003.world')).toEqual([{ exchange: 'mail.imvu003.world', priority: 10 }]), 1000);
  });
});

describe('flags and sections (raw packets)', () => {
  it('sets AA, clears RA, echoes RD and the id, and keeps the question spelled as asked', async () => {
    const r = await udpAsk(srv.port, query(`WwW.ImVu001.WORLD`, 'A', { id: 4242 }));
    expect(r).toMatchObject({ id: 4242, type: 'response', flag_aa: true, flag_ra: false, flag_rd: true, rcode: 'NOERROR' });
    expect(r.questions).toEqual([{ name: 'WwW.ImVu001.WORLD', type: 'A', class: 'IN' }]);
    expect(r.answers).toMatchObject([{ name: 'WwW.ImVu001.WORLD', type: 'A', data: '192.0.2.7' }]);
    const norec = await udpAsk(srv.port, query(`www.${Z}`, 'A', { rd: false }));
    expect(norec).toMatchObject({ flag_rd: false, flag_aa: true, flag_ra: false });
  });

  it('puts the SOA in the authority section of NXDOMAIN and NODATA, with TTL min(SOA TTL, minimum)', async () => {
    const nx = await udpAsk(srv.port, query(`nope.${Z}`, 'A'));
    expect(nx).toMatchObject({ rcode: 'NXDOMAIN', flag_aa: true, answers: [] });
    expect(nx.authorities).toMatchObject([{ name: Z, type: 'SOA', ttl: 300, data: { mname: 'ns1.world', rname: `hostmaster.${Z}`, minimum: 300 } }]);
    const nodata = await udpAsk(srv.port, query(`www.${Z}`, 'MX'));
    expect(nodata).toMatchObject({ rcode: 'NOERROR', flag_aa: true, answers: [] });
    expect(names(nodata.authorities)).toEqual([`${Z} SOA`]);
    const soa = await udpAsk(srv.port, query(Z, 'SOA'));
    expect(soa.answers).toMatchObject([{ type: 'SOA', ttl: 3600 }]);
  });

  it('treats empty non-terminals as existing names (NODATA, not NXDOMAIN)', async () => {
    expect(await udpAsk(srv.port, query(`ent.wild.${Z}`, 'A'))).toMatchObject({ rcode: 'NOERROR', answers: [] });
    expect(await udpAsk(srv.port, query(`_tcp.${Z}`, 'SRV'))).toMatchObject({ rcode: 'NOERROR', answers: [] });
    expect(await udpAsk(srv.port, query(`wild.${Z}`, 'A'))).toMatchObject({ rcode: 'NOERROR', answers: [] });
  });

  it('applies wildcards only to names that do not exist (RFC 4592)', async () => {
    const syn = await udpAsk(srv.port, query(`Foo.Wild.${Z}`, 'TXT'));
    expect(syn).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
    expect(syn.answers).toMatchObject([{ name: `Foo.Wild.${Z}`, type: 'TXT' }]);
    // The wildcard owns A and TXT: another type is NODATA, not NXDOMAIN.
    expect(await udpAsk(srv.port, query(`foo.wild.${Z}`, 'MX'))).toMatchObject({ rcode: 'NOERROR', answers: [] });
    // host.wild exists: it does not match, and neither do names below it (closest encloser host.wild).
    expect(await udpAsk(srv.port, query(`host.wild.${Z}`, 'TXT'))).toMatchObject({ rcode: 'NOERROR', answers: [] });
    expect(await udpAsk(srv.port, query(`x.host.wild.${Z}`, 'A'))).toMatchObject({ rcode: 'NXDOMAIN' });
    // Below the empty non-terminal ent.wild the closest encloser is ent.wild: no *.ent.wild, NXDOMAIN.
    expect(await udpAsk(srv.port, query(`x.ent.wild.${Z}`, 'A'))).toMatchObject({ rcode: 'NXDOMAIN' });
    // The literal wildcard name answers as itself.
    expect((await udpAsk(srv.port, query(`*.wild.${Z}`, 'A'))).answers).toMatchObject([{ name: `*.wild.${Z}`, data: '192.0.2.9' }]);
  });

  it('answers CNAME chains with every link, NXDOMAIN for a dangling target, and stops at loops and other zones', async () => {
    const chain = await udpAsk(srv.port, query(`chain.${Z}`, 'A'));
    expect(names(chain.answers)).toEqual([`chain.${Z} CNAME`, `alias.${Z} CNAME`, `www.${Z} A`]);
    expect(chain.flag_aa).toBe(true);
    const dangling = await udpAsk(srv.port, query(`dangling.${Z}`, 'A'));
    expect(dangling).toMatchObject({ rcode: 'NXDOMAIN' });
    expect(names(dangling.answers)).toEqual([`dangling.${Z} CNAME`]);
    expect(names(dangling.authorities)).toEqual([`${Z} SOA`]);
    const away = await udpAsk(srv.port, query(`away.${Z}`, 'A'));
    expect(away).toMatchObject({ rcode: 'NOERROR', answers: [{ type: 'CNAME', data: 'www.example.org' }], authorities: [] });
    const loop = await udpAsk(srv.port, query(`loop1.${Z}`, 'A'));
    expect(names(loop.answers)).toEqual([`loop1.${Z} CNAME`, `loop2.${Z} CNAME`]);
    const asked = await udpAsk(srv.port, query(`alias.${Z}`, 'CNAME'));
    expect(names(asked.answers)).toEqual([`alias.${Z} CNAME`]);
    const wild = await udpAsk(srv.port, query(`q.cwild.${Z}`, 'AAAA'));
    expect(names(wild.answers)).toEqual([`q.cwild.${Z} CNAME`, `www.${Z} AAAA`]);
  });

  it('refers delegations without AA: NS in authority, glue in additional', async () => {
    for (const qname of [`sub.${Z}`, `deep.below.sub.${Z}`]) {
      const r = await udpAsk(srv.port, query(qname, 'A'));
      expect(r).toMatchObject({ rcode: 'NOERROR', flag_aa: false, answers: [] });
      expect(r.authorities!.map((a) => `${a.name} ${a.type} ${String((a as { data: unknown }).data)}`).sort()).toEqual([`sub.${Z} NS ns.imvu002.world`, `sub.${Z} NS ns1.sub.${Z}`]);
      expect(r.additionals!.filter((a) => a.type !== 'OPT').map((a) => `${a.name} ${a.type} ${String((a as { data: unknown }).data)}`)).toEqual([
        `ns1.sub.${Z} A 192.0.2.53`,
        `ns1.sub.${Z} AAAA 2001:db8::53`,
      ]);
    }
    // A query for the glue name itself is a referral too: the data below the cut is not ours.
    expect(await udpAsk(srv.port, query(`ns1.sub.${Z}`, 'A'))).toMatchObject({ flag_aa: false, answers: [] });
    // DS at the cut is answered by the parent side: authoritative NODATA.
    expect(await udpAsk(srv.port, query(`sub.${Z}`, 'DS'))).toMatchObject({ flag_aa: true, rcode: 'NOERROR', answers: [] });
  });

  it('adds in-zone addresses of MX and SRV targets to the additional section', async () => {
    const mx = await udpAsk(srv.port, query(Z, 'MX'));
    expect(names(mx.additionals)).toEqual([`mail.${Z} A`]);
    const srv2 = await udpAsk(srv.port, query(`_sip._tcp.${Z}`, 'SRV'));
    expect(names(srv2.additionals)).toEqual([`sip.${Z} A`]);
  });

  it('refuses names it is not authoritative for, without AA and without recursion', async () => {
    for (const name of ['example.com', 'world', '.', 'imvu001.world.evil']) {
      const r = await udpAsk(srv.port, query(name, 'A'));
      expect(r).toMatchObject({ rcode: 'REFUSED', flag_aa: false, flag_ra: false, answers: [] });
    }
    expect(await udpAsk(srv.port, query(Z, 'AXFR'))).toMatchObject({ rcode: 'REFUSED' });
  });

  it('answers ANY minimally: one RRset (RFC 8482)', async () => {
    const apex = await udpAsk(srv.port, query(Z, 'ANY'));
    expect(new Set(apex.answers!.map((a) => a.type)).size).toBe(1);
    expect(apex).toMatchObject({ flag_aa: true, flag_tc: false });
    const www = await udpAsk(srv.port, query(`www.${Z}`, 'ANY'));
    expect(names(www.answers)).toEqual([`www.${Z} A`]);
    const cname = await udpAsk(srv.port, query(`alias.${Z}`, 'ANY'));
    expect(names(cname.answers)).toEqual([`alias.${Z} CNAME`]);
    expect(await udpAsk(srv.port, query(`nope.${Z}`, 'ANY'))).toMatchObject({ rcode: 'NXDOMAIN' });
  });

  it('echoes EDNS0, respects the client buffer size, truncates, and gives the full answer over TCP', async () => {
    const plain = await udpAsk(srv.port, query(`big.${Z}`, 'TXT'));
    expect(plain).toMatchObject({ flag_tc: true, answers: [] });
    expect(plain.size).toBeLessThanOrEqual(512);
    expect(plain.additionals).toEqual([]); // no OPT without EDNS in the query
    const edns = await udpAsk(srv.port, query(`big.${Z}`, 'TXT', { edns: 1232 }));
    expect(edns).toMatchObject({ flag_tc: false, flag_aa: true });
    expect(edns.answers).toHaveLength(4);
    expect(edns.additionals).toMatchObject([{ type: 'OPT', udpPayloadSize: MAX_UDP_PAYLOAD, ednsVersion: 0 }]);
    const small = await udpAsk(srv.port, query(`big.${Z}`, 'TXT', { edns: 700 }));
    expect(small).toMatchObject({ flag_tc: true, answers: [] });
    expect(small.additionals).toMatchObject([{ type: 'OPT' }]);
    // A client claiming more than we send still gets at most MAX_UDP_PAYLOAD bytes.
    const greedy = await udpAsk(srv.port, query(`huge.${Z}`, 'TXT', { edns: 65000 }));
    expect(greedy.flag_tc).toBe(true);
    expect(greedy.size).toBeLessThanOrEqual(MAX_UDP_PAYLOAD);
    // Below 512 counts as 512 (RFC 6891 6.2.5).
    expect((await udpAsk(srv.port, query(`www.${Z}`, 'A', { edns: 100 }))).flag_tc).toBe(false);
    const tcp = await tcpAsk(srv.port, query(`huge.${Z}`, 'TXT'));
    expect(tcp).toMatchObject({ flag_tc: false, flag_aa: true });
    expect(tcp.answers).toHaveLength(8);
    expect(tcp.size).toBeGreaterThan(3200);
  });

  it('copies the DO bit and answers BADVERS to EDNS versions it does not speak', async () => {
    const r = await udpAsk(srv.port, query(`www.${Z}`, 'A', { edns: 1232, do: true }));
    expect(r.additionals).toMatchObject([{ type: 'OPT', flag_do: true }]);
    const pkt = dnsPacket.encode({
      type: 'query', id: 9, questions: [{ name: Z, type: 'A' }],
      additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 1, flags: 0, flag_do: false, options: [] }],
    });
    const bad = await udpAsk(srv.port, pkt);
    expect(bad.answers).toEqual([]);
    expect(bad.additionals).toMatchObject([{ type: 'OPT', extendedRcode: 1, ednsVersion: 0 }]); // 16 = BADVERS
  });

  it('answers several pipelined queries on one TCP connection, in order', async () => {
    const ids = [11, 12, 13];
    const replies = await tcpExchange(srv.port, framed(query(`www.${Z}`, 'A', { id: 11 }), query(`nope.${Z}`, 'A', { id: 12 }), query(Z, 'MX', { id: 13 })), 3);
    const decoded = replies.map((r) => decode(r));
    expect(decoded.map((d) => d.id)).toEqual(ids);
    expect(decoded.map((d) => d.rcode)).toEqual(['NOERROR', 'NXDOMAIN', 'NOERROR']);
  });

  it('answers a long pipelined run in order when misses (started together) and cache hits alternate', async () => {
    await tcpAsk(srv.port, query(`www.${Z}`, 'A'));
    const qs = Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? query(`miss${i}-${Date.now()}.${Z}`, 'A', { id: 100 + i }) : query(`www.${Z}`, 'A', { id: 100 + i })));
    const replies = (await tcpExchange(srv.port, framed(...qs), qs.length)).map((r) => decode(r));
    expect(replies.map((d) => d.id)).toEqual(qs.map((_, i) => 100 + i));
    expect(replies.map((d) => d.rcode)).toEqual(qs.map((_, i) => (i % 2 === 0 ? 'NXDOMAIN' : 'NOERROR')));
  });

  it('meters every answered query once, under the zone and its IMVU, and never a refused one', async () => {
    const before = metered.length;
    for (let i = 0; i < 7; i++) await udpAsk(srv.port, query(`www.${Z}`, 'A'));
    await udpAsk(srv.port, query('nope.imvu002.world', 'A'));
    await tcpAsk(srv.port, query(Z, 'TXT'));
    await udpAsk(srv.port, query('example.com', 'A'));
    expect(metered.slice(before)).toEqual([...Array(7).fill(`${Z} IMVU-001`), 'imvu002.world IMVU-002', `${Z} IMVU-001`]);
  });
});
