import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from './server.ts';
import { RCODE_BADCOOKIE } from './cookie.ts';
import { cookieOf, decode, dnsFixture, framed, fullRcode, query, tcpExchange, udpExchange, type DnsFixture } from './testing.ts';

// DNS cookies on the wire (RFC 7873, RFC 9018): what a client gets back for its cookie, over UDP
// and TCP, from the responder and from the response cache; FORMERR for a malformed COOKIE; and
// the point of it all: a client that returns our server cookie is not rate limited, one without
// is (and one with a client cookie alone is slipped BADCOOKIE, carrying the cookie to retry with).

const Z = 'imvu001.world';
const run = promisify(execFile);
const hasDig = spawnSync('dig', ['-v']).status === 0;

let f: DnsFixture;
let srv: DnsServer;

beforeAll(async () => {
  f = await dnsFixture();
  srv = await startDnsServer({ store: f.p.store, rrl: false });
});
afterAll(async () => {
  await srv?.close();
  await f?.p.cleanup();
});

const udp = async (port: number, msg: Buffer, from = '127.0.0.1') => {
  const r = await udpExchange(port, msg, 2000, from);
  if (!r) throw new Error('no UDP reply');
  return r;
};
const tcp = async (port: number, msg: Buffer, from = '127.0.0.1') => (await tcpExchange(port, framed(msg), 1, 2000, from))[0]!;

/** A query whose OPT carries `options` (raw option bytes) after the given ones. */
function withRawOptions(name: string, raw: Buffer): Buffer {
  const q = query(name, 'A', { edns: 1232 });
  const opt = q.subarray(q.length - 11);
  const head = Buffer.from(opt);
  head.writeUInt16BE(raw.length, 9);
  return Buffer.concat([q.subarray(0, q.length - 11), head, raw]);
}
const option = (code: number, data: Buffer) => Buffer.concat([Buffer.from([code >> 8, code & 0xff, data.length >> 8, data.length & 0xff]), data]);

describe('server cookies on the wire', () => {
  it('answers a client cookie with a server cookie (version 1, now, bound to the address), over UDP and TCP', async () => {
    const client = randomBytes(8);
    for (const ask of [udp, tcp]) {
      const reply = await ask(srv.port, query(`www.${Z}`, 'A', { edns: 1232, cookie: client }));
      expect(decode(reply)).toMatchObject({ rcode: 'NOERROR', answers: [{ data: '192.0.2.7' }] });
      const cookie = cookieOf(reply)!;
      expect(cookie).toHaveLength(24);
      expect(cookie.subarray(0, 8).equals(client)).toBe(true);
      expect([...cookie.subarray(8, 12)]).toEqual([1, 0, 0, 0]);
      expect(Math.abs(cookie.readUInt32BE(12) - Date.now() / 1000)).toBeLessThan(60);
      expect(srv.cookies!.check(cookie, '127.0.0.1')).toMatchObject({ valid: true });
      expect(srv.cookies!.check(cookie, '127.0.0.9')).toMatchObject({ valid: false });
      // Sent back, it is valid: the same cookie is returned while it is young.
      const again = await ask(srv.port, query(`www.${Z}`, 'A', { edns: 1232, cookie }));
      expect(cookieOf(again)!.equals(cookie)).toBe(true);
    }
    // Errors carry it too (REFUSED outside our zones); no OPT, no cookie.
    const refused = await udp(srv.port, query('example.com', 'A', { edns: 1232, cookie: client }));
    expect(decode(refused).rcode).toBe('REFUSED');
    expect(cookieOf(refused)!.subarray(0, 8).equals(client)).toBe(true);
    expect(cookieOf(await udp(srv.port, query(`www.${Z}`, 'A')))).toBeUndefined();
  });

  it('FORMERR for a malformed COOKIE option (RFC 7873 5.2.2): too short, 9..15 bytes, too long, or two of them', async () => {
    for (const n of [0, 7, 9, 15, 41]) {
      const msg = withRawOptions(`www.${Z}`, option(10, randomBytes(n)));
      expect(decode(await udp(srv.port, msg)).rcode, `length ${n}`).toBe('FORMERR');
      expect(decode(await tcp(srv.port, msg)).rcode, `length ${n}`).toBe('FORMERR');
    }
    const two = withRawOptions(`www.${Z}`, Buffer.concat([option(10, randomBytes(8)), option(10, randomBytes(8))]));
    expect(decode(await udp(srv.port, two)).rcode).toBe('FORMERR');
    // Well-formed lengths are answered; a server cookie that is not ours gets a fresh one.
    for (const n of [8, 16, 24, 40]) {
      const sent = randomBytes(n);
      const reply = await udp(srv.port, withRawOptions(`www.${Z}`, Buffer.concat([option(65001, Buffer.from('x')), option(10, sent)])));
      expect(decode(reply).rcode, `length ${n}`).toBe('NOERROR');
      const back = cookieOf(reply)!;
      expect(back.subarray(0, 8).equals(sent.subarray(0, 8))).toBe(true);
      expect(srv.cookies!.check(back, '127.0.0.1')).toMatchObject({ valid: true });
    }
  });

  it('from the response cache: every client gets its own cookie with the shared answer', async () => {
    const hits = srv.stats().cacheHits;
    const clients = ['127.0.0.5', '127.0.0.6', '127.0.0.5', '127.0.0.6'].map((from) => ({ from, cookie: randomBytes(8) }));
    for (const { from, cookie } of clients) {
      const reply = await udp(srv.port, query(`alias.${Z}`, 'A', { edns: 1232, cookie }), from);
      expect(decode(reply).answers!.map((a) => a.type)).toEqual(['CNAME', 'A']);
      const back = cookieOf(reply)!;
      expect(back.subarray(0, 8).equals(cookie)).toBe(true);
      expect(srv.cookies!.check(back, from)).toMatchObject({ valid: true });
      expect(srv.cookies!.check(back, from === '127.0.0.5' ? '127.0.0.6' : '127.0.0.5')).toMatchObject({ valid: false });
    }
    expect(srv.stats().cacheHits - hits).toBeGreaterThanOrEqual(3);
  });

  it.skipIf(!hasDig)('dig +cookie sees its cookie answered and accepted ("good"), and sends it back', async () => {
    const dig = async (...args: string[]) => (await run('dig', ['@127.0.0.1', '-p', String(srv.port), '+time=2', '+tries=1', ...args])).stdout;
    const first = await dig('+cookie', `www.${Z}`, 'A');
    expect(first).toContain('status: NOERROR');
    const m = /; COOKIE: ([0-9a-f]{48}) \(good\)/.exec(first);
    expect(m, first).not.toBeNull();
    const second = await dig(`+cookie=${m![1]}`, `www.${Z}`, 'A');
    expect(second).toMatch(/; COOKIE: [0-9a-f]{48} \(good\)/);
    expect(srv.cookies!.check(Buffer.from(m![1]!, 'hex'), '127.0.0.1')).toMatchObject({ valid: true });
  });
});

describe('cookies and response rate limiting', () => {
  let limited: DnsServer;
  beforeAll(async () => {
    // A stopped clock: each source may have exactly 5 answers; every limited one is slipped.
    limited = await startDnsServer({ store: f.p.store, rrl: { responsesPerSecond: 5, slip: 1, prefixV4: 32, now: () => 0 } });
  });
  afterAll(async () => {
    await limited?.close();
  });

  /** Sends `n` queries one after another from `from`; every one gets a reply (slip 1 never drops). */
  async function flood(from: string, n: number, make: (i: number) => Buffer): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) out.push(await udp(limited.port, make(i), from));
    return out;
  }
  const full = (r: Buffer) => !decode(r).flag_tc && fullRcode(r) === 0 && decode(r).answers!.length > 0;

  it('a flood from a source that returns a valid server cookie is answered in full; without one it is slipped', async () => {
    // 127.0.0.2 learns its cookie over TCP (not rate limited), then floods with it: the same name
    // (answered from the cache) and distinct names (through the responder).
    const client = randomBytes(8);
    const cookie = cookieOf(await tcp(limited.port, query(`www.${Z}`, 'A', { edns: 1232, cookie: client }), '127.0.0.2'))!;
    const same = await flood('127.0.0.2', 40, (i) => query(`www.${Z}`, 'A', { id: i, edns: 1232, cookie }));
    const distinct = await flood('127.0.0.2', 40, (i) => query(`n${i}.wild.${Z}`, 'A', { id: i, edns: 1232, cookie }));
    expect(same.every(full)).toBe(true);
    expect(distinct.every(full)).toBe(true);
    for (const r of [...same, ...distinct]) expect(cookieOf(r)!.subarray(0, 8).equals(client)).toBe(true);

    // 127.0.0.3 floods the same way without a cookie: 5 answers, the rest TC slips.
    const plain = await flood('127.0.0.3', 40, (i) => query(`www.${Z}`, 'A', { id: i, edns: 1232 }));
    expect(plain.filter(full)).toHaveLength(5);
    expect(plain.filter((r) => decode(r).flag_tc)).toHaveLength(35);
  });

  it('a client cookie alone, past the rate, gets BADCOOKIE with a server cookie; retried with it, the query is answered', async () => {
    const client = randomBytes(8);
    const replies = await flood('127.0.0.4', 12, (i) => query(`n${i}.wild.${Z}`, 'A', { id: i, edns: 1232, cookie: client }));
    expect(replies.filter(full)).toHaveLength(5);
    const bad = replies.filter((r) => fullRcode(r) === RCODE_BADCOOKIE);
    expect(bad).toHaveLength(7);
    for (const r of bad) expect(decode(r)).toMatchObject({ flag_tc: false, flag_aa: false, answers: [], authorities: [] });
    const cookie = cookieOf(bad[0]!)!;
    expect(cookie.subarray(0, 8).equals(client)).toBe(true);
    const retry = await udp(limited.port, query(`n0.wild.${Z}`, 'A', { edns: 1232, cookie }), '127.0.0.4');
    expect(full(retry)).toBe(true);
    // A cookie made for another address does not exempt: 127.0.0.4's cookie used from 127.0.0.3.
    const stolen = await udp(limited.port, query(`www.${Z}`, 'A', { edns: 1232, cookie }), '127.0.0.3');
    expect(fullRcode(stolen)).toBe(RCODE_BADCOOKIE);
  });
});
