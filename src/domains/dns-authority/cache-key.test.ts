import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cacheable } from './response-cache.ts';
import type { Transport } from './responder.ts';

// The response cache's key is written into one buffer and made one string (responder allocation
// per query); it must be the very key the piecewise construction gave, on any bytes: the same
// queries share an entry, the same ones stay apart, the same ones are not cached.

/** The key as it was built before, a string per piece (kept here as the reference). */
function referenceCacheable(msg: Buffer, transport: Transport, cookies = true): { key: string; cookie?: Buffer } | undefined {
  const len = msg.length;
  if (len < 17 || len > 512) return undefined;
  // QR = 0 and opcode QUERY; QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1.
  if ((msg[2]! & 0xf8) !== 0) return undefined;
  if (msg[4] !== 0 || msg[5] !== 1 || msg[6] !== 0 || msg[7] !== 0 || msg[8] !== 0 || msg[9] !== 0 || msg[10] !== 0) return undefined;
  const arcount = msg[11]!;
  if (arcount > 1) return undefined;
  // The question name: plain labels only (a compression pointer would make equal bytes mean different names).
  let i = 12;
  for (;;) {
    const l = msg[i]!;
    if (l === 0) break;
    if (l > 63) return undefined;
    i += l + 1;
    if (i >= len || i - 12 > 255) return undefined;
  }
  i++;
  if (i + 4 > len) return undefined;
  const qtype = (msg[i]! << 8) | msg[i + 1]!;
  if (qtype === 252 || qtype === 251) return undefined;
  i += 4;
  const t = transport === 'tcp' ? 't' : 'u';
  // Header and question, the name in lower case (label lengths are below 64: never letters).
  const qEnd = i - 4;
  let head = msg.toString('latin1', 2, i);
  for (let j = 13; j < qEnd; j++)
    if (msg[j]! >= 0x41 && msg[j]! <= 0x5a) {
      const name = Buffer.from(msg.subarray(12, qEnd));
      for (let k = 0; k < name.length; k++) if (name[k]! >= 0x41 && name[k]! <= 0x5a) name[k]! |= 0x20;
      head = msg.toString('latin1', 2, 12) + name.toString('latin1') + msg.toString('latin1', qEnd, i);
      break;
    }
  if (arcount === 0) return i === len ? { key: t + '-' + head } : undefined;
  // One OPT owned by the root, ending the message, its options whole.
  if (i + 11 > len || msg[i] !== 0 || ((msg[i + 1]! << 8) | msg[i + 2]!) !== 41) return undefined;
  const rdata = i + 11;
  if (rdata + ((msg[i + 9]! << 8) | msg[i + 10]!) !== len) return undefined;
  // The RDLENGTH is left out of the key: the OPT ends the message, so the options' bytes imply it.
  let cookie: Buffer | undefined;
  let cookieAt = len;
  for (let j = rdata; j < len; ) {
    if (j + 4 > len) return undefined;
    const code = (msg[j]! << 8) | msg[j + 1]!;
    const olen = (msg[j + 2]! << 8) | msg[j + 3]!;
    if (j + 4 + olen > len) return undefined;
    if (code === 10 && cookies) {
      if (cookie || (olen !== 8 && (olen < 16 || olen > 40))) return undefined;
      cookie = msg.subarray(j + 4, j + 4 + olen);
      cookieAt = j;
    }
    j += 4 + olen;
  }
  head += msg.toString('latin1', i, i + 9);
  if (!cookie) return { key: t + '-' + head + msg.toString('latin1', rdata) };
  const rest = msg.toString('latin1', rdata, cookieAt) + msg.toString('latin1', cookieAt + 4 + cookie.length);
  return { key: t + 'c' + head + rest, cookie };
}


const label = fc.oneof(
  { weight: 8, arbitrary: fc.string({ unit: fc.constantFrom(...'abcXYZ019-_*'), minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', 'Q'), minLength: 60, maxLength: 70 }) },
);
const option = fc.record({
  code: fc.constantFrom(10, 10, 3, 8, 12, 65001),
  data: fc.oneof(fc.constantFrom(8, 16, 24, 40, 7, 41, 0).map((n) => Buffer.alloc(n, 0xab)), fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b))),
});
const opt = fc.record({
  owner: fc.constantFrom(0, 0, 0, 1),
  type: fc.constantFrom(41, 41, 41, 1),
  size: fc.integer({ min: 0, max: 0xffff }),
  rest: fc.uint8Array({ minLength: 4, maxLength: 4 }),
  options: fc.array(option, { maxLength: 3 }),
  rdlengthSkew: fc.constantFrom(0, 0, 0, 0, 0, 0, 0, 0, 1, -1, 5),
});
const queryBytes = fc
  .record({
    id: fc.integer({ min: 0, max: 0xffff }),
    flags: fc.oneof(fc.constantFrom(0x0100, 0x0000, 0x0110), fc.integer({ min: 0, max: 0xffff })),
    counts: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 4 }) }),
    labels: fc.array(label, { maxLength: 5 }),
    qtype: fc.constantFrom(1, 28, 16, 15, 255, 251, 252, 46),
    qclass: fc.constantFrom(1, 1, 3),
    opt: fc.option(opt),
    trailing: fc.oneof({ weight: 8, arbitrary: fc.constant(new Uint8Array(0)) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 3 }) }),
    cut: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }),
  })
  .map((r) => {
    const name = Buffer.concat([...r.labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
    const counts = r.counts ?? [1, 0, 0, r.opt ? 1 : 0];
    const head = Buffer.alloc(12);
    head.writeUInt16BE(r.id, 0);
    head.writeUInt16BE(r.flags, 2);
    counts.forEach((c, i) => head.writeUInt16BE(c, 4 + 2 * i));
    const q = Buffer.alloc(4);
    q.writeUInt16BE(r.qtype, 0);
    q.writeUInt16BE(r.qclass, 2);
    const parts = [head, name, q];
    if (r.opt) {
      const opts = Buffer.concat(r.opt.options.map((o) => {
        const h = Buffer.alloc(4);
        h.writeUInt16BE(o.code, 0);
        h.writeUInt16BE(o.data.length, 2);
        return Buffer.concat([h, o.data]);
      }));
      const o = Buffer.alloc(11);
      o[0] = r.opt.owner;
      o.writeUInt16BE(r.opt.type, 1);
      o.writeUInt16BE(r.opt.size, 3);
      Buffer.from(r.opt.rest).copy(o, 5);
      o.writeUInt16BE(Math.max(0, opts.length + r.opt.rdlengthSkew), 9);
      parts.push(o, opts);
    }
    parts.push(Buffer.from(r.trailing));
    const msg = Buffer.concat(parts);
    return r.cut === null ? msg : msg.subarray(0, r.cut % (msg.length + 1));
  });

describe('cacheable: the key written in one piece', () => {
  it('is the key and cookie the piecewise construction gave, for any query bytes, transport and cookie setting', () => {
    fc.assert(
      fc.property(queryBytes, fc.constantFrom<Transport>('udp', 'tcp'), fc.boolean(), (msg, t, cookies) => {
        expect(cacheable(msg, t, cookies)).toEqual(referenceCacheable(msg, t, cookies));
      }),
      { numRuns: 5000 },
    );
  });

  it('takes plain queries with and without a cookie (the generator reaches both)', () => {
    let plain = 0;
    let withCookie = 0;
    fc.assert(
      fc.property(queryBytes, (msg) => {
        const c = cacheable(msg, 'udp');
        if (c && c.cookie) withCookie++;
        else if (c) plain++;
      }),
      { numRuns: 2000 },
    );
    expect(plain).toBeGreaterThan(50);
    expect(withCookie).toBeGreaterThan(5);
  });
});
