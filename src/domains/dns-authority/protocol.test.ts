import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Answer, RrsigData } from 'dns-packet';
import { provisioner } from '../../imvu/provision.ts';
import { onlineSigner } from '../dnssec/online.ts';
import { verifyRRset } from '../dnssec/sign.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { decode, dnsFixture, framed, query, queryCode, tcpExchange, udpAsk, type DnsFixture } from './testing.ts';

// Queries the protocol rules say are errors (RFC 9824 3.5 NXNAME; the meta-types TKEY, TSIG,
// MAILB, MAILA) and a CNAME into a delegated child (RFC 1034 4.3.2 step 3b), over real sockets,
// signed (DO) and unsigned.

const Z = 'imvu001.world';
let f: DnsFixture;
let srv: DnsServer;

beforeAll(async () => {
  f = await dnsFixture({ provision: provisioner });
  // `sub` is delegated to ns1.sub (glue A and AAAA) and ns.imvu002.world (see testing.ts).
  await f.add('tochild', 'CNAME', `www.sub.${Z}.`);
  await f.add('tocut', 'CNAME', `sub.${Z}.`);
  await f.add('hop', 'CNAME', `tochild.${Z}.`);
  srv = await startDnsServer({ store: f.p.store, rrl: false, dnssec: onlineSigner(f.p.store, f.p.dataDir) });
});
afterAll(async () => {
  await srv?.close();
  await f?.p.cleanup();
});

const tcpAsk = async (msg: Buffer) => decode((await tcpExchange(srv.port, framed(msg), 1))[0]!);
const rrs = (section: Answer[] | undefined) => (section ?? []).map((a) => `${a.name} ${a.type}`);

describe('meta-types in the question', () => {
  it('NXNAME (128) is FORMERR, for names that exist and names that do not, with and without DO, over UDP and TCP', async () => {
    for (const name of [`www.${Z}`, `nope.${Z}`, Z])
      for (const opts of [{}, { edns: 1232 }, { edns: 1232, do: true }]) {
        const msg = queryCode(name, 128, opts);
        const u = await udpAsk(srv.port, msg);
        expect(u, `${name} ${JSON.stringify(opts)}`).toMatchObject({ rcode: 'FORMERR', answers: [], authorities: [] });
        expect((await tcpAsk(msg)).rcode).toBe('FORMERR');
      }
  });

  it('TKEY (249) and TSIG (250) are FORMERR; MAILB (253) and MAILA (254) are NOTIMP', async () => {
    for (const [code, rcode] of [[249, 'FORMERR'], [250, 'FORMERR'], [253, 'NOTIMP'], [254, 'NOTIMP']] as const)
      for (const opts of [{}, { edns: 1232, do: true }]) {
        const r = await udpAsk(srv.port, queryCode(`www.${Z}`, code, opts));
        expect(r, `type ${code}`).toMatchObject({ rcode, answers: [], authorities: [] });
        if ('edns' in opts) expect(r.additionals).toMatchObject([{ type: 'OPT' }]);
      }
    // What stays as it was: ANY (one RRset, RFC 8482), and transfers refused without `xfr`.
    expect(await udpAsk(srv.port, query(`www.${Z}`, 'ANY'))).toMatchObject({ rcode: 'NOERROR', answers: [{ type: 'A' }] });
    expect(await tcpAsk(query(Z, 'AXFR'))).toMatchObject({ rcode: 'REFUSED' });
  });
});

describe('a CNAME into a delegated child', () => {
  it('comes with the referral: the child NS in authority, the glue in additional, AA for the CNAME', async () => {
    for (const ask of [(m: Buffer) => udpAsk(srv.port, m), tcpAsk]) {
      const r = await ask(query(`tochild.${Z}`, 'A', { edns: 1232 }));
      expect(r).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
      expect(rrs(r.answers)).toEqual([`tochild.${Z} CNAME`]);
      expect(rrs(r.authorities)).toEqual([`sub.${Z} NS`, `sub.${Z} NS`]);
      expect(r.authorities!.map((a) => (a as { data: string }).data).sort()).toEqual([`ns.imvu002.world`, `ns1.sub.${Z}`]);
      expect(rrs(r.additionals)).toEqual([`ns1.sub.${Z} A`, `ns1.sub.${Z} AAAA`, '. OPT']);
    }
    // The target being the cut itself, and a chain that reaches the child after two links.
    expect(rrs((await udpAsk(srv.port, query(`tocut.${Z}`, 'AAAA'))).authorities)).toEqual([`sub.${Z} NS`, `sub.${Z} NS`]);
    const chain = await udpAsk(srv.port, query(`hop.${Z}`, 'TXT'));
    expect(rrs(chain.answers)).toEqual([`hop.${Z} CNAME`, `tochild.${Z} CNAME`]);
    expect(rrs(chain.authorities)).toEqual([`sub.${Z} NS`, `sub.${Z} NS`]);
  });

  it('signed (DO): the CNAME with its RRSIG, the NS and glue unsigned, and the signed proof that the child has no DS', async () => {
    const keyReply = await udpAsk(srv.port, query(Z, 'DNSKEY', { edns: 1232, do: true }));
    const dnskey = keyReply.answers!.find((a) => a.type === 'DNSKEY') as { data: { key: Buffer } };
    const r = await tcpAsk(query(`tochild.${Z}`, 'A', { edns: 1232, do: true }));
    expect(r).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
    expect(rrs(r.answers)).toEqual([`tochild.${Z} CNAME`, `tochild.${Z} RRSIG`]);
    expect(rrs(r.authorities)).toEqual([`sub.${Z} NS`, `sub.${Z} NS`, `sub.${Z} NSEC`, `sub.${Z} RRSIG`]);
    expect(rrs(r.additionals)).toEqual([`ns1.sub.${Z} A`, `ns1.sub.${Z} AAAA`, '. OPT']);
    const sigs = [...r.answers!, ...r.authorities!].filter((a) => a.type === 'RRSIG').map((a) => (a as { data: RrsigData }).data);
    expect(sigs.map((s) => s.typeCovered)).toEqual(['CNAME', 'NSEC']);
    const cname = r.answers!.filter((a) => a.type === 'CNAME').map((a) => (a as { data: unknown }).data);
    expect(verifyRRset(dnskey.data.key, sigs[0]!, `tochild.${Z}`, cname)).toBe(true);
    const nsec = r.authorities!.find((a) => a.type === 'NSEC') as { data: { rrtypes: string[] } };
    expect(nsec.data.rrtypes).toEqual(['NS', 'RRSIG', 'NSEC']);
    expect(verifyRRset(dnskey.data.key, sigs[1]!, `sub.${Z}`, [nsec.data])).toBe(true);
  });
});
