import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import type { OptAnswer } from 'dns-packet';
import { handleMessage, MAX_UDP_PAYLOAD } from './responder.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { ZoneView } from './zone-view.ts';
import { ServerCookies } from './cookie.ts';
import { decode, dnsFixture, framed, query, tcpExchange, udpAsk, udpExchange, type DnsFixture } from './testing.ts';

// Untrusted input: random, truncated, oversized and crafted packets get FORMERR (or another
// error rcode) or nothing, never a crash, a hang or an unbounded buffer.

let f: DnsFixture;
let view: ZoneView;
let srv: DnsServer;
const Z = 'imvu001.world';

beforeAll(async () => {
  f = await dnsFixture();
  view = await ZoneView.open(f.p.store);
  srv = await startDnsServer({ store: f.p.store, rrl: false, tcp: { idleTimeoutMs: 300, maxConnections: 8 } });
});
afterAll(async () => {
  view?.close();
  await srv?.close();
  await f?.p.cleanup();
});

const ERROR_RCODES = new Set(['FORMERR', 'NOTIMP', 'REFUSED', 'SERVFAIL', 'NXDOMAIN', 'NOERROR']);

/** The invariant for any input: nothing, or a well-formed response to it that fits the transport. */
async function checkAnswer(input: Uint8Array, transport: 'udp' | 'tcp' = 'udp'): Promise<void> {
  const msg = Buffer.from(input);
  const h = await handleMessage(view, msg, transport);
  if (msg.length < 12 || msg[2]! & 0x80) {
    expect(h.response).toBeUndefined();
    return;
  }
  expect(h.response).toBeDefined();
  const r = decode(h.response!);
  expect(r.type).toBe('response');
  expect(r.id).toBe(msg.readUInt16BE(0));
  expect(ERROR_RCODES.has(r.rcode)).toBe(true);
  expect(r.flag_ra).toBe(false);
  if (transport === 'udp') expect(h.response!.length).toBeLessThanOrEqual(MAX_UDP_PAYLOAD);
}

function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
}

async function rcodeOf(msg: Buffer): Promise<string | undefined> {
  const h = await handleMessage(view, msg, 'udp');
  return h.response ? decode(h.response).rcode : undefined;
}

describe('property: any bytes in, a well-formed response or nothing out', () => {
  it('random bytes', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 700 }), (b) => checkAnswer(b)), { numRuns: 2000 });
  });

  it('random bytes behind a plausible query header', async () => {
    const few = fc.constantFrom(0, 0, 0, 1);
    const arb = fc.tuple(fc.nat(0xffff), fc.nat(0x7fff), fc.constantFrom(1, 1, 1, 0, 2), few, few, fc.nat(4), fc.uint8Array({ maxLength: 300 }));
    await fc.assert(
      fc.asyncProperty(arb, ([id, flags, qd, an, ns, ar, tail]) => checkAnswer(Buffer.concat([header(id, flags, qd, an, ns, ar), tail]))),
      { numRuns: 2000 },
    );
  });

  it('valid queries truncated, mutated and extended', async () => {
    const base = [query(`www.${Z}`, 'A', { edns: 1232 }), query(`big.${Z}`, 'TXT'), query(`x.wild.${Z}`, 'ANY', { edns: 4096 }), query(`sub.${Z}`, 'NS')];
    const arb = fc.tuple(fc.nat(base.length - 1), fc.array(fc.tuple(fc.nat(200), fc.nat(255)), { maxLength: 6 }), fc.nat(120), fc.uint8Array({ maxLength: 40 }));
    await fc.assert(
      fc.asyncProperty(arb, async ([which, flips, cut, extra]) => {
        const m = Buffer.from(base[which]!);
        for (const [at, v] of flips) if (at < m.length) m[at] = v;
        await checkAnswer(m.subarray(0, Math.min(m.length, cut + 1)));
        await checkAnswer(Buffer.concat([m, extra]), 'tcp');
      }),
      { numRuns: 1500 },
    );
  });
});

describe('property: EDNS options and cookies from anyone', () => {
  it('any options in the OPT record: FORMERR for a malformed COOKIE, else an answer whose cookie echoes the client part', async () => {
    const cookies = new ServerCookies();
    const opt = fc.tuple(fc.constantFrom(10, 10, 10, 12, 65001), fc.uint8Array({ maxLength: 48 }));
    await fc.assert(
      fc.asyncProperty(fc.array(opt, { maxLength: 3 }), fc.boolean(), fc.boolean(), async (options, tcp, limitIt) => {
        const raw = Buffer.concat(options.map(([code, data]) => Buffer.concat([Buffer.from([code >> 8, code & 0xff, data.length >> 8, data.length & 0xff]), data])));
        const q = query(`www.${Z}`, 'A', { edns: 1232, do: true });
        const head = Buffer.from(q.subarray(q.length - 11));
        head.writeUInt16BE(raw.length, 9);
        const msg = Buffer.concat([q.subarray(0, q.length - 11), head, raw]);
        const admit = limitIt ? () => 'slip' as const : undefined;
        const h = await handleMessage(view, msg, tcp ? 'tcp' : 'udp', { cookies, peer: '192.0.2.1', admit });
        const r = decode(h.response!);
        const cookieOpts = options.filter(([code]) => code === 10);
        const malformed = cookieOpts.length > 1 || cookieOpts.some(([, d]) => d.length !== 8 && (d.length < 16 || d.length > 40));
        const sent = cookieOpts[0]?.[1];
        const back = (r.additionals?.find((a) => a.type === 'OPT') as { options?: { code: number; data: Buffer }[] } | undefined)?.options?.find((o) => o.code === 10)?.data;
        if (malformed) expect(r.rcode).toBe('FORMERR');
        else if (sent) expect(back && Buffer.from(sent.subarray(0, 8)).equals(back.subarray(0, 8))).toBe(true);
        else expect(back).toBeUndefined();
        if (!tcp) expect(h.response!.length).toBeLessThanOrEqual(MAX_UDP_PAYLOAD);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('crafted packets', () => {
  it('answers FORMERR to compression-pointer loops and forward pointers', async () => {
    const tail = Buffer.from([0, 1, 0, 1]);
    // Question name = pointer to itself; pointer to a pointer to it; forward pointer.
    expect(await rcodeOf(Buffer.concat([header(1, 0, 1), Buffer.from([0xc0, 12]), tail]))).toBe('FORMERR');
    expect(await rcodeOf(Buffer.concat([header(1, 0, 1), Buffer.from([1, 97, 0xc0, 14]), tail]))).toBe('FORMERR');
    expect(await rcodeOf(Buffer.concat([header(1, 0, 1), Buffer.from([0xc0, 20]), tail, Buffer.from([1, 97, 0])]))).toBe('FORMERR');
    // A pointer into the header, which is "prior data": legal wire format but the name is junk, so not ours.
    expect(await rcodeOf(Buffer.concat([header(1, 0, 1), Buffer.from([0xc0, 4]), tail]))).toMatch(/FORMERR|REFUSED/);
  });

  it('answers FORMERR to labels longer than 63 and names longer than 255 bytes', async () => {
    const tail = Buffer.from([0, 1, 0, 1]);
    const label64 = Buffer.concat([Buffer.from([64]), Buffer.alloc(64, 97), Buffer.from([0])]);
    expect(await rcodeOf(Buffer.concat([header(2, 0, 1), label64, tail]))).toBe('FORMERR');
    const label63 = Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 97)]);
    const long = Buffer.concat([label63, label63, label63, label63, label63, Buffer.from([0])]);
    expect(await rcodeOf(Buffer.concat([header(3, 0, 1), long, tail]))).toBe('FORMERR');
    // Extended label types (0x40, 0x80) are not supported: FORMERR.
    expect(await rcodeOf(Buffer.concat([header(4, 0, 1), Buffer.from([0x41, 0]), tail]))).toBe('FORMERR');
  });

  it('refuses names that do not survive decoding (a dot inside a label) rather than misreading them', async () => {
    const label = (s: string) => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
    const name = Buffer.concat([label('www.imvu001'), label('world'), Buffer.from([0])]);
    expect(await rcodeOf(Buffer.concat([header(5, 0, 1), name, Buffer.from([0, 1, 0, 1])]))).toBe('REFUSED');
    // An unknown class is refused too.
    const q = query(`www.${Z}`, 'A');
    q.writeUInt16BE(77, q.length - 2);
    expect(await rcodeOf(q)).toBe('REFUSED');
  });

  it('refuses to decode messages shaped unlike a query (compression chains across thousands of records)', async () => {
    // 5,000 answer records whose owner names each point at the previous one: decoding them all
    // walks a chain that grows with every record (quadratic). The counts alone give FORMERR.
    const n = 5000;
    const parts = [header(10, 0, 1, n), Buffer.from([1, 97, 0, 0, 1, 0, 1])];
    let prev = 12;
    for (let i = 0, off = 19; i < n; i++, off += 12) {
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc000 | prev, 0);
      rr.writeUInt16BE(1, 2);
      rr.writeUInt16BE(1, 4);
      prev = off;
      parts.push(rr);
    }
    const chain = Buffer.concat(parts);
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) expect(await rcodeOf(chain)).toBe('FORMERR');
    expect(performance.now() - t0).toBeLessThan(500); // decoding would take ~30 ms per message
    expect(await rcodeOf(Buffer.concat([header(11, 0, 1, 0, 0, 4), Buffer.from([1, 97, 0, 0, 1, 0, 1])]))).toBe('FORMERR');
    expect(await rcodeOf(Buffer.concat([header(12, 0, 1, 0, 1, 0), Buffer.from([1, 97, 0, 0, 1, 0, 1])]))).toBe('FORMERR');
  });

  it('FORMERR for QDCOUNT other than 1, trailing bytes and two OPTs; NOTIMP for other opcodes; silence for responses', async () => {
    expect(await rcodeOf(header(6, 0, 0))).toBe('FORMERR');
    const two = dnsPacket.encode({ type: 'query', id: 7, questions: [{ name: Z, type: 'A' }, { name: Z, type: 'MX' }] });
    expect(await rcodeOf(two)).toBe('FORMERR');
    expect(await rcodeOf(Buffer.concat([query(Z, 'A'), Buffer.from([1, 2, 3])]))).toBe('FORMERR');
    const opt: OptAnswer = { name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
    expect(await rcodeOf(dnsPacket.encode({ type: 'query', id: 8, questions: [{ name: Z, type: 'A' }], additionals: [opt, opt] }))).toBe('FORMERR');
    const status = query(Z, 'A');
    status.writeUInt16BE(2 << 11, 2); // opcode STATUS
    expect(await rcodeOf(status)).toBe('NOTIMP');
    const update = query(Z, 'SOA');
    update.writeUInt16BE(5 << 11, 2); // opcode UPDATE
    expect(await rcodeOf(update)).toBe('NOTIMP');
    const response = dnsPacket.encode({ type: 'response', id: 9, questions: [{ name: Z, type: 'A' }] });
    expect(await rcodeOf(response)).toBeUndefined();
    expect(await rcodeOf(Buffer.alloc(11))).toBeUndefined();
  });
});

describe('on real sockets', () => {
  it('survives a bounded flood of hostile datagrams and keeps answering; memory stays bounded', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const junk = fc.sample(fc.uint8Array({ minLength: 0, maxLength: 1400 }), { numRuns: 500, seed: 42 }).map((b) => Buffer.from(b));
    junk.push(Buffer.alloc(65000, 0xff), Buffer.concat([query(Z, 'A'), Buffer.alloc(4000)]));
    const flood = async (rounds: number) => {
      for (let round = 0; round < rounds; round++) {
        for (const j of junk) sock.send(j, srv.port, '127.0.0.1');
        await new Promise((r) => setTimeout(r, 5));
      }
      const ok = await udpAsk(srv.port, query(`www.${Z}`, 'A'));
      expect(ok.answers).toMatchObject([{ data: '192.0.2.7' }]);
    };
    await flood(4); // warm up: code paths compiled, caches filled
    gc();
    const before = process.memoryUsage().heapUsed;
    await flood(12); // ~6,000 hostile datagrams
    await new Promise((r) => setTimeout(r, 50));
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    sock.close();
    expect(srv.stats().udpQueries).toBeGreaterThan(3000); // the flood did arrive
    expect(grown).toBeLessThan(8 * 1024 * 1024);
    expect(srv.stats().errors).toBe(0);
  });

  it('TCP: FORMERR per bad frame on a kept connection, closes on broken framing, idle peers and extra connections', async () => {
    const garbage = Buffer.alloc(40, 0x41);
    garbage.writeUInt16BE(0x1234, 0);
    garbage.writeUInt16BE(0, 2); // a query, opcode QUERY; the rest is junk
    const [bad, good] = await tcpExchange(srv.port, framed(garbage, query(`www.${Z}`, 'A', { id: 77 })), 2);
    expect(decode(bad!)).toMatchObject({ id: 0x1234, rcode: 'FORMERR' });
    expect(decode(good!)).toMatchObject({ id: 77, rcode: 'NOERROR' });
    // A 64 KiB frame of junk: FORMERR, nothing buffered past it.
    const big = Buffer.alloc(65535, 0x7f);
    big.writeUInt16BE(0xbeef, 0);
    big.writeUInt16BE(0, 2);
    expect(decode((await tcpExchange(srv.port, framed(big), 1))[0]!)).toMatchObject({ id: 0xbeef, rcode: 'FORMERR' });

    const closed = (sock: net.Socket) =>
      new Promise<number>((resolve) => {
        const t0 = Date.now();
        sock.on('close', () => resolve(Date.now() - t0));
        sock.on('error', () => undefined);
      });
    // Framing that cannot be a DNS message: closed at once.
    const runt = net.connect(srv.port, '127.0.0.1');
    runt.write(Buffer.from([0, 3, 1, 2, 3]));
    expect(await closed(runt)).toBeLessThan(2000);
    // A peer that sends half a length prefix and stalls: closed by the idle timeout (300 ms here).
    const slow = net.connect(srv.port, '127.0.0.1');
    slow.write(Buffer.from([0]));
    const idle = await closed(slow);
    expect(idle).toBeGreaterThanOrEqual(250);
    expect(idle).toBeLessThan(5000);
    await new Promise((r) => setTimeout(r, 20));
    expect(srv.stats().openConnections).toBe(0);
  });

  it('TCP: no more than maxConnections stay open; the server closes the rest', async () => {
    const small = await startDnsServer({ store: f.p.store, rrl: false, tcp: { maxConnections: 4 } });
    try {
      let closedByServer = 0;
      const socks = Array.from({ length: 10 }, () => {
        const s = net.connect(small.port, '127.0.0.1');
        s.on('error', () => undefined);
        s.on('close', () => closedByServer++);
        return s;
      });
      const deadline = Date.now() + 5000;
      while (closedByServer < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(closedByServer).toBe(6);
      expect(small.stats().openConnections).toBe(4);
      // Four stay open (every slot idle: each newcomer took the slot of the one idle longest).
      const open = socks.filter((s) => !s.destroyed);
      expect(open).toHaveLength(4);
      for (const s of socks) s.destroy();
    } finally {
      await small.close();
    }
  });

  it('still answers after all of it, over UDP and TCP', async () => {
    expect((await udpAsk(srv.port, query(Z, 'SOA'))).rcode).toBe('NOERROR');
    const reply = await udpExchange(srv.port, query(`nope.${Z}`, 'A'));
    expect(decode(reply!).rcode).toBe('NXDOMAIN');
    const [tcp] = await tcpExchange(srv.port, framed(query(Z, 'MX')), 1);
    expect(decode(tcp!).answers).toHaveLength(1);
  });
});
