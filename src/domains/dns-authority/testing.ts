// Test helpers for the DNS server: a platform with IMVUs and records made through the chokepoint,
// and raw DNS exchanges over UDP and TCP with dns-packet (for what Node's resolver cannot show).
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet } from 'dns-packet';
import { testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';

export interface DnsFixture {
  p: TestPlatform;
  alice: Actor;
  bob: Actor;
  /** Adds a record through the chokepoint (as alice, in imvu001.world unless told) and fails loudly if refused. */
  add(name: string, type: string, value: string, opts?: { zone?: string; ttl?: number; as?: Actor }): Promise<void>;
  remove(name: string, type: string, value?: string, opts?: { zone?: string; as?: Actor }): Promise<void>;
}

/** A long text that needs three character-strings. */
export const LONG_TXT = 'k=' + 'abcdefghij'.repeat(60);

/** IMVU-001 (alice, imvu001.world) with every case the server must handle; IMVU-002 (bob) plain. */
export async function dnsFixture(opts: Parameters<typeof testPlatform>[0] = {}): Promise<DnsFixture> {
  const p = await testPlatform(opts);
  const alice = await p.register('alice', 'creator');
  const bob = await p.register('bob', 'creator');
  for (const [who, name] of [[alice, 'Gallery'], [bob, 'Shop']] as const) {
    const r = await p.as(who, 'imvu.create', { name, owner: who.id, jurisdiction: 'US-CCPA' });
    if (!r.allowed) throw new Error(`imvu.create refused: ${JSON.stringify(r.gates)}`);
  }
  const f: DnsFixture = {
    p,
    alice,
    bob,
    async add(name, type, value, opts = {}) {
      const body: Record<string, string | number> = { zone: opts.zone ?? 'imvu001.world', name, type, value };
      if (opts.ttl !== undefined) body.ttl = opts.ttl;
      const r = await p.as(opts.as ?? alice, 'dns.record.add', body);
      if (!r.allowed) throw new Error(`add ${name} ${type} ${value} refused: ${JSON.stringify(r.gates.filter((g) => g.status === 'deny'))}`);
    },
    async remove(name, type, value, opts = {}) {
      const body: Record<string, string> = { zone: opts.zone ?? 'imvu001.world', name, type };
      if (value !== undefined) body.value = value;
      const r = await p.as(opts.as ?? alice, 'dns.record.remove', body);
      if (!r.allowed) throw new Error(`remove ${name} ${type} refused: ${JSON.stringify(r.gates.filter((g) => g.status === 'deny'))}`);
    },
  };
  const z = 'imvu001.world';
  const records: [string, string, string, number?][] = [
    ['www', 'A', '192.0.2.7'],
    ['www', 'AAAA', '2001:db8::7'],
    ['alias', 'CNAME', `www.${z}.`],
    ['chain', 'CNAME', `alias.${z}.`],
    ['dangling', 'CNAME', `nothing.${z}.`],
    ['away', 'CNAME', 'www.example.org.'],
    ['loop1', 'CNAME', `loop2.${z}.`],
    ['loop2', 'CNAME', `loop1.${z}.`],
    ['*.wild', 'A', '192.0.2.9'],
    ['*.wild', 'TXT', 'wildcard text'],
    ['host.wild', 'A', '192.0.2.10'],
    ['a.ent.wild', 'A', '192.0.2.11'],
    ['*.cwild', 'CNAME', `www.${z}.`],
    // Delegation: the glue comes first (gate 4 refuses names below an existing cut).
    ['ns1.sub', 'A', '192.0.2.53'],
    ['ns1.sub', 'AAAA', '2001:db8::53'],
    ['sub', 'NS', `ns1.sub.${z}.`],
    ['sub', 'NS', 'ns.imvu002.world.'],
    ['_sip._tcp', 'SRV', `10 5 5060 sip.${z}.`],
    ['sip', 'A', '192.0.2.60'],
    ['@', 'CAA', '0 issue "letsencrypt.org"'],
    ['long', 'TXT', LONG_TXT],
    ['short-ttl', 'A', '192.0.2.70', 60],
  ];
  // A name whose TXT RRset is ~1 KB: over 512 bytes, under 1232.
  for (let i = 0; i < 4; i++) records.push(['big', 'TXT', `${i}`.repeat(200)]);
  // ~3.2 KB: over any UDP size we send; only TCP carries it.
  for (let i = 0; i < 8; i++) records.push(['huge', 'TXT', `${i}`.repeat(400)]);
  for (const [name, type, value, ttl] of records) await f.add(name, type, value, ttl === undefined ? {} : { ttl });
  return f;
}

export function query(name: string, type: string, opts: { id?: number; rd?: boolean; edns?: number | false; do?: boolean; cookie?: Buffer } = {}): Buffer {
  const packet: Packet = {
    type: 'query',
    id: opts.id ?? Math.floor(Math.random() * 65536),
    flags: opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as never, class: 'IN' }],
  };
  if (opts.edns !== undefined && opts.edns !== false)
    packet.additionals = [
      {
        name: '.', type: 'OPT', udpPayloadSize: opts.edns, extendedRcode: 0, ednsVersion: 0, flags: opts.do ? dnsPacket.DNSSEC_OK : 0, flag_do: !!opts.do,
        options: opts.cookie ? [{ code: 10, data: opts.cookie } as never] : [],
      },
    ];
  return dnsPacket.encode(packet);
}

/** A query for a type code dns-packet has no name for (NXNAME 128, MAILB 253, ...). */
export function queryCode(name: string, code: number, opts: Parameters<typeof query>[2] = {}): Buffer {
  const q = query(name, 'A', opts);
  // The QTYPE follows the question name, which starts at 12 and ends at its root label.
  let i = 12;
  while (q[i] !== 0) i += q[i]! + 1;
  q.writeUInt16BE(code, i + 1);
  return q;
}

/** The COOKIE option of a response, if it has one. */
export function cookieOf(reply: Buffer): Buffer | undefined {
  const opt = (dnsPacket.decode(reply).additionals ?? []).find((a) => a.type === 'OPT') as { options?: { code: number; data?: Buffer }[] } | undefined;
  return opt?.options?.find((o) => o.code === 10)?.data;
}

/** The whole rcode of a response: the header's 4 bits and the OPT record's extended bits. */
export function fullRcode(reply: Buffer): number {
  const opt = (dnsPacket.decode(reply).additionals ?? []).find((a) => a.type === 'OPT') as { extendedRcode?: number } | undefined;
  return ((opt?.extendedRcode ?? 0) << 4) | (reply.readUInt16BE(2) & 0xf);
}

/** Sends one UDP datagram (from `from`, another loopback address, when given) and returns the raw reply, or undefined after `timeoutMs`. */
export function udpExchange(port: number, msg: Buffer, timeoutMs = 1000, from?: string): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    if (from) sock.bind(0, from);
    const timer = setTimeout(() => {
      sock.close();
      resolve(undefined);
    }, timeoutMs);
    sock.on('message', (reply) => {
      clearTimeout(timer);
      sock.close();
      resolve(reply);
    });
    sock.send(msg, port, '127.0.0.1');
  });
}

/** A decoded reply with the fields dns-packet decodes but its types omit. */
export type Reply = DecodedPacket & { rcode: string; opcode: string; size: number };

export function decode(buf: Buffer): Reply {
  return { ...(dnsPacket.decode(buf) as DecodedPacket & { rcode: string; opcode: string }), size: buf.length };
}

export async function udpAsk(port: number, msg: Buffer): Promise<Reply> {
  const reply = await udpExchange(port, msg, 2000);
  if (!reply) throw new Error('no UDP reply');
  return decode(reply);
}

/** Writes raw bytes to a TCP connection (from `from`, when given) and collects `count` length-prefixed replies. */
export function tcpExchange(port: number, data: Buffer, count: number, timeoutMs = 2000, from?: string): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', ...(from ? { localAddress: from } : {}) });
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`TCP: ${out.length} of ${count} replies before the timeout`));
    }, timeoutMs);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= count) {
        clearTimeout(timer);
        sock.end();
        resolve(out);
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      if (out.length < count) reject(new Error(`TCP: closed after ${out.length} of ${count} replies`));
    });
    sock.write(data);
  });
}

export function framed(...msgs: Buffer[]): Buffer {
  return Buffer.concat(msgs.map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m])));
}

export async function tcpAsk(port: number, msg: Buffer): Promise<Reply> {
  const [reply] = await tcpExchange(port, framed(msg), 1);
  return decode(reply!);
}

/** Resolves when `check` passes, polling every 25 ms; rejects after `ms`. */
export async function eventually<T>(check: () => Promise<T>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}
