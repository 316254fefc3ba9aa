import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import type { Answer, RrsigAnswer, SoaAnswer } from 'dns-packet';
import { startDnsServer, type DnsServer } from './server.ts';
import { dnsFixture, decode, framed, query, udpAsk, udpExchange, type DnsFixture, type Reply } from './testing.ts';
import { ResponseVerifier, signRequest, TSIG_ERROR, tsigKey, verifyRequest, walk, parseTsig } from './tsig.ts';
import { packMessages, readZone, zonemdOf } from './xfr.ts';
import { verifyZonemd, ZONEMD } from '../zonefile/zonemd.ts';
import { toAnswer } from './journal.ts';
import { generateZoneKey, zoneKeyOf, type ZoneKey } from '../dnssec/keys.ts';
import { OnlineSigner } from '../dnssec/online.ts';
import { verifyRRset } from '../dnssec/sign.ts';

// Zone transfers over real sockets: AXFR split into messages, IXFR differences that a secondary
// can apply, access by address or TSIG, and the refusals.

const Z = 'imvu001.world';
const SECRET = Buffer.from('a transfer key of thirty-two by!').toString('base64');
const key = tsigKey({ name: 'transfer-key', secret: SECRET });

function ixfrQuery(zone: string, serial: number, id = 4242): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    questions: [{ name: zone, type: 'IXFR', class: 'IN' }],
    authorities: [{ name: zone, type: 'SOA', class: 'IN', ttl: 0, data: { mname: '.', rname: '.', serial, refresh: 0, retry: 0, expire: 0, minimum: 0 } }],
  });
}

/** Sends one query over TCP and reads messages until `done` says the transfer is complete. */
function transfer(port: number, msg: Buffer, done: (records: Answer[]) => boolean, timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const out: Buffer[] = [];
    const records: Answer[] = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`transfer: ${out.length} messages before the timeout`));
    }, timeoutMs);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        out.push(Buffer.from(m));
        const d = dnsPacket.decode(m);
        records.push(...(d.answers ?? []));
        if ((d as { rcode?: string }).rcode !== 'NOERROR' || done(records)) {
          clearTimeout(timer);
          sock.end();
          resolve(out);
        }
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.write(framed(msg));
  });
}

const soaCount = (n: number) => (rs: Answer[]) => rs.filter((r) => r.type === 'SOA').length >= n;
const answers = (msgs: Buffer[]) => msgs.flatMap((m) => dnsPacket.decode(m).answers ?? []);
const serialOf = (a: Answer) => (a as SoaAnswer).data.serial ?? -1;
/** One record as text; dns-packet's decoded CAA carries a flag copy (issuerCritical) that is dropped. */
const key2 = (a: Answer) => {
  const data = (a as { data: unknown }).data;
  const plain = a.type === 'CAA' ? { ...(data as object), issuerCritical: undefined } : data;
  return `${a.name.toLowerCase()} ${a.type} ${(a as { ttl?: number }).ttl} ${JSON.stringify(plain)}`;
};

describe('AXFR and IXFR', () => {
  let f: DnsFixture;
  let open: DnsServer; // allow-list 127.0.0.1, small messages
  let keyed: DnsServer; // TSIG only
  let closed: DnsServer; // xfr configured with nothing allowed

  beforeAll(async () => {
    f = await dnsFixture();
    open = await startDnsServer({ store: f.p.store, rrl: false, xfr: { allow: ['127.0.0.0/8'], maxMessageBytes: 1024 } });
    keyed = await startDnsServer({ store: f.p.store, rrl: false, xfr: { tsig: { name: 'transfer-key', secret: SECRET }, maxMessageBytes: 1024 } });
    closed = await startDnsServer({ store: f.p.store, rrl: false, xfr: { allow: ['192.0.2.0/24'] } });
  });
  afterAll(async () => {
    await Promise.all([open?.close(), keyed?.close(), closed?.close()]);
    await f?.p.cleanup();
  });

  it('AXFR over TCP: SOA, every record once, SOA; split into messages within the size, the question only in the first', async () => {
    const msgs = await transfer(open.port, query(Z, 'AXFR', { rd: false }), soaCount(2));
    expect(msgs.length).toBeGreaterThan(3);
    for (const m of msgs) expect(m.length).toBeLessThanOrEqual(1024);
    const decoded = msgs.map((m) => decode(m));
    expect(decoded[0]!.questions).toEqual([{ name: Z, type: 'AXFR', class: 'IN' }]);
    for (const d of decoded.slice(1)) expect(d.questions).toEqual([]);
    for (const d of decoded) expect(d).toMatchObject({ id: decoded[0]!.id, rcode: 'NOERROR', flag_aa: true, flag_qr: true });
    const rs = answers(msgs);
    const snap = (await readZone(f.p.store, Z))!;
    expect(rs[0]!.type).toBe('SOA');
    expect(rs[rs.length - 1]!.type).toBe('SOA');
    expect(serialOf(rs[0]!)).toBe(snap.serial);
    // Every record, and the apex ZONEMD (RFC 8976) whose digest is that of the zone transferred.
    const zonemd = rs.filter((r) => r.type === ZONEMD);
    expect(zonemd).toHaveLength(1);
    expect(rs.slice(1, -1).filter((r) => r.type !== ZONEMD).map(key2).sort()).toEqual(snap.records.map((r) => key2(toAnswer(r))).sort());
    expect(verifyZonemd(Z, rs.slice(0, -1))).toMatchObject({ ok: true, serial: snap.serial });
    // The zone's interesting corners travel too: the delegation, its glue, wildcards.
    const names = new Set(rs.map((r) => `${r.name} ${r.type}`));
    for (const n of [`sub.${Z} NS`, `ns1.sub.${Z} A`, `*.wild.${Z} A`, `long.${Z} TXT`]) expect(names).toContain(n);
  });

  it('AXFR: REFUSED over UDP even to an allowed address, to a client not allowed, and when nothing is configured; NOTAUTH for a name that is not a zone apex', async () => {
    expect(await udpAsk(open.port, query(Z, 'AXFR'))).toMatchObject({ rcode: 'REFUSED' });
    const [refused] = await transfer(closed.port, query(Z, 'AXFR'), () => true);
    expect(decode(refused!)).toMatchObject({ rcode: 'REFUSED', answers: [] });
    const [noKey] = await transfer(keyed.port, query(Z, 'AXFR'), () => true);
    expect(decode(noKey!).rcode).toBe('REFUSED');
    const [notApex] = await transfer(open.port, query(`www.${Z}`, 'AXFR'), () => true);
    expect(decode(notApex!).rcode).toBe('NOTAUTH');
    const [foreign] = await transfer(open.port, query('example.com', 'AXFR'), () => true);
    expect(decode(foreign!).rcode).toBe('NOTAUTH');
    // An unauthorised client learns nothing about which zones exist.
    const [foreignRefused] = await transfer(closed.port, query('example.com', 'AXFR'), () => true);
    expect(decode(foreignRefused!).rcode).toBe('REFUSED');
    // Without the xfr option at all, transfers stay refused.
    const plain = await startDnsServer({ store: f.p.store, rrl: false });
    try {
      const [r] = await transfer(plain.port, query(Z, 'AXFR'), () => true);
      expect(decode(r!).rcode).toBe('REFUSED');
    } finally {
      await plain.close();
    }
  });

  it('TSIG: a signed AXFR is served from any address and every message carries the running MAC; bad keys get NOTAUTH', async () => {
    const req = signRequest(query(Z, 'AXFR', { rd: false, id: 777 }), key, Math.floor(Date.now() / 1000));
    const msgs = await transfer(keyed.port, req.message, soaCount(2));
    expect(msgs.length).toBeGreaterThan(3);
    const v = new ResponseVerifier(key, req.mac);
    for (const m of msgs) {
      expect(m.length).toBeLessThanOrEqual(1024);
      expect(v.verify(m)).toMatchObject({ error: 0, originalId: 777 });
    }
    expect(answers(msgs).filter((a) => a.type !== 'TSIG' && a.type !== 'SOA' && a.type !== ZONEMD).length).toBe((await readZone(f.p.store, Z))!.records.length);

    const wrong = tsigKey({ name: 'transfer-key', secret: Buffer.from('not the transfer key, not at all').toString('base64') });
    const bad = signRequest(query(Z, 'AXFR', { id: 778 }), wrong, Math.floor(Date.now() / 1000));
    const [badSig] = await transfer(keyed.port, bad.message, () => true);
    const r = decode(badSig!);
    expect(r.rcode).toBe('NOTAUTH');
    expect(parseTsig(badSig!, walk(badSig!).lastAdditional!.at)).toMatchObject({ error: TSIG_ERROR.BADSIG, mac: Buffer.alloc(0) });
    const stranger = tsigKey({ name: 'stranger', secret: SECRET });
    const unknown = signRequest(query(Z, 'AXFR'), stranger, Math.floor(Date.now() / 1000));
    const [badKey] = await transfer(keyed.port, unknown.message, () => true);
    expect(parseTsig(badKey!, walk(badKey!).lastAdditional!.at).error).toBe(TSIG_ERROR.BADKEY);
    // Stale: NOTAUTH/BADTIME, signed so the client can trust it, with our clock in Other Data.
    const stale = signRequest(query(Z, 'AXFR'), key, Math.floor(Date.now() / 1000) - 3600);
    const [badTime] = await transfer(keyed.port, stale.message, () => true);
    const t = new ResponseVerifier(key, stale.mac).verify(badTime!);
    expect(t.error).toBe(TSIG_ERROR.BADTIME);
    expect(Math.abs(t.other.readUIntBE(0, 6) - Date.now() / 1000)).toBeLessThan(5);
  });

  it('TSIG on ordinary queries (a secondary signs its SOA checks): the answer is signed; over UDP too', async () => {
    const req = signRequest(query(Z, 'SOA', { rd: false, edns: 1232 }), key, Math.floor(Date.now() / 1000));
    const reply = (await udpExchange(keyed.port, req.message))!;
    expect(new ResponseVerifier(key, req.mac).verify(reply).error).toBe(0);
    const d = decode(reply);
    expect(d).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
    expect(d.answers!.map((a) => a.type)).toEqual(['SOA']);
    expect(d.additionals!.map((a) => a.type)).toEqual(['OPT', 'TSIG']);
  });

  it('IXFR over TCP: the differences since the client serial, which turn the old zone into the new one', async () => {
    const before = (await readZone(f.p.store, Z))!;
    await f.add('ixfr-one', 'A', '192.0.2.201');
    await f.add('www', 'A', '192.0.2.8', { ttl: 120 }); // changes the TTL of the whole www A RRset
    await f.remove('alias', 'CNAME');
    const after = (await readZone(f.p.store, Z))!;
    expect(after.serial).toBe(before.serial + 3);
    const msgs = await transfer(open.port, ixfrQuery(Z, before.serial), (rs) => rs.length > 1 && rs[rs.length - 1]!.type === 'SOA' && serialOf(rs[rs.length - 1]!) === after.serial && rs.filter((r) => r.type === 'SOA').length >= 8);
    const rs = answers(msgs);
    expect(serialOf(rs[0]!)).toBe(after.serial);
    // Apply the differences as a secondary would (RFC 1995 section 4), ZONEMD included.
    const zone = new Map<string, Answer>([...before.records.map(toAnswer), zonemdOf(Z, before.serial, before.suffix, before.records)].map((a) => [key2(a), a]));
    let i = 1;
    const soas: number[] = [];
    while (i < rs.length - 1) {
      soas.push(serialOf(rs[i]!));
      i++;
      for (; rs[i]!.type !== 'SOA'; i++) expect(zone.delete(key2(rs[i]!))).toBe(true);
      soas.push(serialOf(rs[i]!));
      i++;
      for (; rs[i]!.type !== 'SOA'; i++) zone.set(key2(rs[i]!), rs[i]!);
    }
    expect(soas).toEqual([before.serial, before.serial + 1, before.serial + 1, before.serial + 2, before.serial + 2, before.serial + 3]);
    // One ZONEMD, the new serial's, and it verifies over the zone the secondary now holds.
    expect([...zone.values()].filter((a) => a.type === ZONEMD)).toHaveLength(1);
    expect([...zone.keys()].filter((k) => !k.includes(` ${ZONEMD} `)).sort()).toEqual(after.records.map((r) => key2(toAnswer(r))).sort());
    expect(verifyZonemd(Z, [after.soa, ...zone.values()])).toMatchObject({ ok: true, serial: after.serial });
  });

  it('IXFR: just the SOA when up to date; the whole zone (AXFR form) from an unknown serial; UDP gets SOA, or SOA with TC', async () => {
    const now = (await readZone(f.p.store, Z))!;
    const [upToDate] = await transfer(open.port, ixfrQuery(Z, now.serial), () => true);
    expect(answers([upToDate!]).map((a) => `${a.type} ${serialOf(a)}`)).toEqual([`SOA ${now.serial}`]);
    const full = await transfer(open.port, ixfrQuery(Z, 0), soaCount(2));
    const rs = answers(full);
    expect(rs.length).toBe(now.records.length + 3); // SOA, ZONEMD, records, SOA
    expect(decode(full[0]!).questions![0]!.type).toBe('IXFR');

    const udpUpToDate = decode((await udpExchange(open.port, ixfrQuery(Z, now.serial)))!);
    expect(udpUpToDate).toMatchObject({ rcode: 'NOERROR', flag_tc: false });
    expect(udpUpToDate.answers!.map((a) => a.type)).toEqual(['SOA']);
    const udpBehind: Reply = decode((await udpExchange(open.port, ixfrQuery(Z, now.serial - 1)))!);
    expect(udpBehind).toMatchObject({ rcode: 'NOERROR', flag_tc: true });
    expect(udpBehind.answers!.map((a) => serialOf(a))).toEqual([now.serial]);
    // Not allowed: REFUSED on either transport; malformed (no SOA in authority): FORMERR.
    expect(decode((await udpExchange(closed.port, ixfrQuery(Z, 1)))!).rcode).toBe('REFUSED');
    const [noSoa] = await transfer(open.port, query(Z, 'IXFR'), () => true);
    expect(decode(noSoa!).rcode).toBe('FORMERR');
    expect(open.xfr!.stats).toMatchObject({ ixfrIncremental: 1 });
  });

  it('a zone with a DNSSEC key is transferred signed (DNSKEY, RRSIGs, NSEC chain), by AXFR and by IXFR; others unsigned', async () => {
    const { privateKey, publicKey } = await generateZoneKey();
    const zk: ZoneKey = zoneKeyOf(Z, { imvu: 'IMVU-001', algorithm: 13, flags: 257, public_key: publicKey.toString('base64') }, privateKey);
    const signer = new OnlineSigner({ forZone: (zone) => (zone === Z ? zk : undefined) });
    const srv = await startDnsServer({ store: f.p.store, rrl: false, dnssec: signer, xfr: { allow: ['127.0.0.1'] } });
    try {
      const rs = answers(await transfer(srv.port, query(Z, 'AXFR'), soaCount(2)));
      const types = rs.map((r) => r.type);
      expect(types[0]).toBe('SOA');
      expect(types[types.length - 1]).toBe('SOA');
      expect(types.filter((t) => t === 'DNSKEY')).toHaveLength(1);
      const nsec = rs.filter((r) => r.type === 'NSEC');
      expect(nsec.length).toBeGreaterThan(10);
      // The chain closes on the apex.
      expect(nsec.some((r) => (r as { data: { nextDomain: string } }).data.nextDomain === Z)).toBe(true);
      const soa = rs[0]!;
      const sig = rs.find((r) => r.type === 'RRSIG' && (r as { data: { typeCovered: string } }).data.typeCovered === 'SOA')!;
      expect(verifyRRset(publicKey, (sig as RrsigAnswer).data, Z, [(soa as SoaAnswer).data])).toBe(true);
      // IXFR of a signed zone: the whole signed zone.
      const now = (await readZone(f.p.store, Z))!;
      const ixfr = answers(await transfer(srv.port, ixfrQuery(Z, now.serial - 1), soaCount(2)));
      expect(ixfr.filter((r) => r.type === 'DNSKEY')).toHaveLength(1);
      expect(ixfr.length).toBe(rs.length);
      // ZONEMD (RFC 8976) over the signed zone (DNSKEY, RRSIGs, NSEC included), signed itself; the
      // same copy goes out to every transfer of the serial, and a ZONEMD query gets the same record.
      expect(verifyZonemd(Z, rs.slice(0, -1))).toMatchObject({ ok: true, serial: now.serial });
      const zm = rs.find((r) => r.type === ZONEMD) as unknown as { data: Buffer };
      const zmSig = rs.find((r) => r.type === 'RRSIG' && (r as RrsigAnswer).data.typeCovered === ZONEMD) as RrsigAnswer;
      expect(verifyRRset(publicKey, zmSig.data, Z, [zm.data])).toBe(true);
      expect(ixfr.find((r) => r.type === ZONEMD)).toEqual(zm);
      const asked = decode((await udpExchange(srv.port, query(Z, ZONEMD, { edns: 1232, do: true })))!);
      expect(asked.answers!.map((a) => a.type)).toEqual([ZONEMD, 'RRSIG']);
      expect((asked.answers![0] as unknown as { data: Buffer }).data).toEqual(zm.data);
      const plainAsk = decode((await udpExchange(srv.port, query(Z, ZONEMD, { edns: 1232 })))!);
      expect(plainAsk.answers!.map((a) => (a as unknown as { data: Buffer }).data)).toEqual([zm.data]);
      // Bob's zone has no key here: plain.
      const plain = answers(await transfer(srv.port, query('imvu002.world', 'AXFR'), soaCount(2)));
      expect(plain.some((r) => r.type === 'RRSIG' || r.type === 'NSEC' || r.type === 'DNSKEY')).toBe(false);
    } finally {
      await srv.close();
    }
  });

  it('hostile input: random bytes and mangled signed transfer requests never throw, never answer a response, stay bounded', async () => {
    const xfr = keyed.xfr!;
    const now = Math.floor(Date.now() / 1000);
    const valid = [
      signRequest(query(Z, 'AXFR'), key, now).message,
      signRequest(ixfrQuery(Z, 3), key, now).message,
      signRequest(query(Z, 'SOA', { edns: 1232 }), key, now).message,
      ixfrQuery(Z, 3),
    ];
    const drain = (h: { response?: Buffer; stream?: Iterable<Buffer> }) => {
      const out = h.response ? [h.response, ...(h.stream ?? [])] : [];
      for (const m of out) {
        expect(m.length).toBeLessThanOrEqual(65535);
        dnsPacket.decode(m); // every answer is a well-formed message
      }
      return out;
    };
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.constantFrom<'udp' | 'tcp'>('udp', 'tcp'), async (bytes, t) => {
        drain(await xfr.handle(Buffer.from(bytes), t, '127.0.0.1'));
      }),
      { numRuns: Number(process.env.XFR_FUZZ_RUNS ?? 400) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...valid),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        fc.constantFrom<'udp' | 'tcp'>('udp', 'tcp'),
        async (msg, flips, cut, t) => {
          const m = Buffer.from(msg);
          for (const [at, v] of flips) m.writeUInt8(v, at % m.length);
          const mangled = cut % 3 === 0 ? m.subarray(0, cut % m.length) : m;
          const out = drain(await xfr.handle(mangled, t, '192.0.2.1'));
          // A request whose TSIG no longer verifies never gets data out of a zone (only errors or the
          // SOA of a plain query). Some changes keep it valid: the message id (the original id is
          // inside the MAC), the case of the key's name (names compare case-insensitively).
          let intact = false;
          try {
            intact = verifyRequest(mangled, walk(mangled), [key], Math.floor(Date.now() / 1000)).ok;
          } catch {
            intact = false;
          }
          if (!intact && mangled.length >= 12 && !(mangled.readUInt16BE(2) & 0x8000))
            for (const o of out) expect(dnsPacket.decode(o).answers!.length).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: Number(process.env.XFR_FUZZ_RUNS ?? 400) },
    );
    // Responses (QR set) are never answered, signed or not.
    const asResponse = Buffer.from(valid[0]!);
    asResponse.writeUInt16BE(asResponse.readUInt16BE(2) | 0x8000, 2);
    expect((await xfr.handle(asResponse, 'udp', '127.0.0.1')).response).toBeUndefined();
  });

  it('refuses bad transfer options before it opens anything', async () => {
    const store = f.p.store;
    await expect(startDnsServer({ store, xfr: { allow: ['not-an-address'] } })).rejects.toThrow(/xfr.allow/);
    await expect(startDnsServer({ store, xfr: { allow: ['10.0.0.0/33'] } })).rejects.toThrow(/xfr.allow/);
    await expect(startDnsServer({ store, xfr: { tsig: { name: 'k', secret: 'c2hvcnQ=' } } })).rejects.toThrow(/too short/);
    await expect(startDnsServer({ store, xfr: { notify: [{ address: 'secondary.example' }] } })).rejects.toThrow(/xfr.notify/);
    await expect(startDnsServer({ store, xfr: { notify: [{ address: '127.0.0.1', port: 70000 }] } })).rejects.toThrow(/bad port/);
  });

  it('packs records into messages: every one within the limit, in order, an oversized record alone', () => {
    const frame = { id: 1, flags: 0x8400, question: [{ name: Z, type: 'AXFR' as const, class: 'IN' as const }] };
    const rrs: Answer[] = [...Array(100).keys()].map((i) => ({ name: `host${i}.${Z}`, type: 'A', class: 'IN', ttl: 60, data: `192.0.2.${i}` }));
    rrs.splice(50, 0, { name: `big.${Z}`, type: 'TXT', class: 'IN', ttl: 60, data: ['x'.repeat(255), 'y'.repeat(255), 'z'.repeat(255)] });
    const msgs = [...packMessages(frame, rrs, 600, 100)];
    const back = msgs.flatMap((m) => dnsPacket.decode(m).answers!);
    expect(back.map((a) => a.name)).toEqual(rrs.map((a) => a.name));
    const big = msgs.find((m) => dnsPacket.decode(m).answers!.some((a) => a.type === 'TXT'))!;
    expect(dnsPacket.decode(big).answers).toHaveLength(1);
    for (const m of msgs) if (m !== big) expect(m.length + 100).toBeLessThanOrEqual(600);
    expect(dnsPacket.decode(msgs[0]!).questions).toHaveLength(1);
    expect(msgs.slice(1).every((m) => dnsPacket.decode(m).questions!.length === 0)).toBe(true);
  });
});
