import { randomBytes } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { ipv6Groups } from './rrl.ts';

// DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018: version 1, three
// reserved bytes, a 32-bit timestamp and SipHash-2-4 over client cookie | version | reserved |
// timestamp | client IP, keyed with a 16-byte server secret. A client that returns a server
// cookie we made for its address within the last hour has shown that it receives our answers at
// that address: the server exempts it from response rate limiting (server.ts, responder.ts).
//
// SipHash-2-4 is written here (32-bit halves, no BigInt: a cookie costs one short hash per
// query); siphash.test.ts checks it against the reference vectors and RFC 9018 Appendix A.

/** EDNS option code of COOKIE. */
export const COOKIE_OPTION = 10;
/** What a COOKIE option adds to a response: code, length, client cookie (8), server cookie (16). */
export const COOKIE_REPLY_BYTES = 4 + 8 + 16;
/** BADCOOKIE (RFC 7873 8): an extended rcode, 4 bits in the header and 1 << 4 in the OPT TTL. */
export const RCODE_BADCOOKIE = 23;

/** A server cookie older than this is not accepted (RFC 9018 4.3). */
const MAX_AGE = 3600;
/** Nor one dated more than this ahead (clock skew between anycast instances). */
const MAX_AHEAD = 300;
/** A valid cookie younger than this is returned as it came; older ones are renewed (RFC 9018 4.3). */
const RENEW_AFTER = 1800;

// SipHash-2-4 state: v0..v3 as (high, low) 32-bit words, indices 0/1, 2/3, 4/5, 6/7.
const V = new Uint32Array(8);

function add(a: number, b: number): void {
  const lo = V[a + 1]! + V[b + 1]!;
  V[a] = V[a]! + V[b]! + (lo > 0xffffffff ? 1 : 0);
  V[a + 1] = lo;
}

function rotl(a: number, n: number): void {
  const h = V[a]!;
  const l = V[a + 1]!;
  if (n === 32) {
    V[a] = l;
    V[a + 1] = h;
    return;
  }
  V[a] = (h << n) | (l >>> (32 - n));
  V[a + 1] = (l << n) | (h >>> (32 - n));
}

function xor(a: number, b: number): void {
  V[a]! ^= V[b]!;
  V[a + 1]! ^= V[b + 1]!;
}

function sipRound(): void {
  add(0, 2);
  rotl(2, 13);
  xor(2, 0);
  rotl(0, 32);
  add(4, 6);
  rotl(6, 16);
  xor(6, 4);
  add(0, 6);
  rotl(6, 21);
  xor(6, 0);
  add(4, 2);
  rotl(2, 17);
  xor(2, 4);
  rotl(4, 32);
}

function compress(hi: number, lo: number): void {
  V[6]! ^= hi;
  V[7]! ^= lo;
  sipRound();
  sipRound();
  V[0]! ^= hi;
  V[1]! ^= lo;
}

const le32 = (b: Uint8Array, i: number): number => (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;

/** SipHash-2-4 of `msg` under a 16-byte key: the 8 output bytes (the reference's little-endian order). */
export function siphash24(key: Uint8Array, msg: Uint8Array): Buffer {
  if (key.length !== 16) throw new Error('siphash24: the key is 16 bytes');
  const k0l = le32(key, 0);
  const k0h = le32(key, 4);
  const k1l = le32(key, 8);
  const k1h = le32(key, 12);
  V[0] = k0h ^ 0x736f6d65;
  V[1] = k0l ^ 0x70736575;
  V[2] = k1h ^ 0x646f7261;
  V[3] = k1l ^ 0x6e646f6d;
  V[4] = k0h ^ 0x6c796765;
  V[5] = k0l ^ 0x6e657261;
  V[6] = k1h ^ 0x74656462;
  V[7] = k1l ^ 0x79746573;
  const len = msg.length;
  const whole = len - (len % 8);
  for (let i = 0; i < whole; i += 8) compress(le32(msg, i + 4), le32(msg, i));
  // The last block: the remaining bytes, and the length's low byte as the top byte.
  let lo = 0;
  let hi = (len & 0xff) << 24;
  for (let i = whole; i < len; i++) {
    const shift = (i - whole) * 8;
    if (shift < 32) lo |= msg[i]! << shift;
    else hi |= msg[i]! << (shift - 32);
  }
  compress(hi >>> 0, lo >>> 0);
  V[5]! ^= 0xff;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32LE((V[1]! ^ V[3]! ^ V[5]! ^ V[7]!) >>> 0, 0);
  out.writeUInt32LE((V[0]! ^ V[2]! ^ V[4]! ^ V[6]!) >>> 0, 4);
  return out;
}

/** The client's address as the hash covers it: 4 bytes for IPv4 (and IPv4-mapped IPv6), 16 for IPv6. */
export function addressBytes(address: string): Buffer | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const v4 = mapped ? mapped[1]! : address;
  if (isIPv4(v4)) return Buffer.from(v4.split('.').map(Number));
  const groups = isIPv6(address.replace(/%.*$/, '')) ? ipv6Groups(address) : undefined;
  if (!groups) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

export interface CookieOptions {
  /** The server secret, 16 bytes (share it between the servers of an anycast set). Default: random at start. */
  secret?: Buffer;
  /** The secret used before the current one: its cookies are still accepted (RFC 9018 5, rollover). */
  previous?: Buffer;
  /** Clock (milliseconds), for tests. */
  now?: () => number;
}

/** What a well-formed COOKIE option says, checked against the source address. */
export interface CookieCheck {
  /** The client sent a server cookie we made for this address within the hour. */
  valid: boolean;
  /** The COOKIE option data to answer with: the client cookie and a (fresh or still young) server cookie. */
  reply: Buffer;
}

export class ServerCookies {
  private readonly secret: Buffer;
  private readonly previous: Buffer | undefined;
  private readonly now: () => number;
  /** Counters for tests and metrics. */
  readonly stats = { valid: 0, invalid: 0, clientOnly: 0, malformed: 0 };

  constructor(opts: CookieOptions = {}) {
    this.secret = opts.secret ?? randomBytes(16);
    this.previous = opts.previous;
    if (this.secret.length !== 16 || (this.previous && this.previous.length !== 16)) throw new Error('cookies.secret and cookies.previous are 16 bytes');
    this.now = opts.now ?? Date.now;
  }

  /**
   * Checks the data of a COOKIE option from `peer`: 'malformed' (the query gets FORMERR, RFC 7873
   * 5.2.2) for a length other than 8 or 16..40, else whether its server cookie is valid and what
   * to answer with.
   */
  check(data: Buffer, peer: string): CookieCheck | 'malformed' {
    const n = data.length;
    if (n !== 8 && (n < 16 || n > 40)) {
      this.stats.malformed++;
      return 'malformed';
    }
    const client = data.subarray(0, 8);
    const ip = addressBytes(peer);
    const now = Math.floor(this.now() / 1000) >>> 0;
    if (n === 8) this.stats.clientOnly++;
    else if (ip && n === 24 && data[8] === 1) {
      const stamp = data.readUInt32BE(12);
      // Serial number arithmetic on the 32-bit timestamp (RFC 1982), as RFC 9018 4.3 asks.
      const age = (now - stamp) | 0;
      if (age <= MAX_AGE && age >= -MAX_AHEAD) {
        const input = Buffer.concat([data.subarray(0, 16), ip]);
        const hash = data.subarray(16, 24);
        const mine = siphash24(this.secret, input).equals(hash);
        if (mine || (this.previous && siphash24(this.previous, input).equals(hash))) {
          this.stats.valid++;
          // Young and made with the current secret: returned as it came (no second hash).
          return { valid: true, reply: mine && age < RENEW_AFTER && age >= 0 && data[9] === 0 && data[10] === 0 && data[11] === 0 ? data : this.make(client, ip, now) };
        }
      }
      this.stats.invalid++;
    } else this.stats.invalid++;
    return { valid: false, reply: ip ? this.make(client, ip, now) : Buffer.from(client) };
  }

  /** Client cookie | server cookie (version 1, reserved 0, timestamp, hash) for `ip` at `now` (seconds). */
  make(client: Buffer, ip: Buffer, now: number): Buffer {
    const out = Buffer.alloc(24);
    client.copy(out, 0, 0, 8);
    out[8] = 1;
    out.writeUInt32BE(now >>> 0, 12);
    siphash24(this.secret, Buffer.concat([out.subarray(0, 16), ip])).copy(out, 16);
    return out;
  }
}

// Wire helpers. The responder puts the OPT record last in every response it builds, with no
// options: a COOKIE option is appended to that record, so the cache can keep one answer for
// every client and add each client's own cookie on the way out.

function optAtEnd(msg: Buffer): boolean {
  const n = msg.length;
  return n >= 23 && msg[n - 11] === 0 && msg.readUInt16BE(n - 10) === 41 && msg.readUInt16BE(n - 2) === 0;
}

/** `msg` (ending with an option-less OPT record) with a COOKIE option carrying `data`. */
export function appendCookie(msg: Buffer, data: Buffer): Buffer {
  if (!optAtEnd(msg)) throw new Error('appendCookie: the message does not end with an empty OPT record');
  const out = Buffer.allocUnsafe(msg.length + 4 + data.length);
  msg.copy(out);
  const at = msg.length;
  out.writeUInt16BE(4 + data.length, at - 2);
  out.writeUInt16BE(COOKIE_OPTION, at);
  out.writeUInt16BE(data.length, at + 2);
  data.copy(out, at + 4);
  return out;
}

/**
 * The BADCOOKIE form of an empty response (the TC form the responder makes for RRL slips): the
 * same question and OPT, AA and TC cleared, rcode 23 (7 in the header, 1 in the OPT's extended
 * rcode). Still without the cookie: `appendCookie` adds it.
 */
export function badCookieForm(empty: Buffer): Buffer {
  if (!optAtEnd(empty)) throw new Error('badCookieForm: the message does not end with an empty OPT record');
  const out = Buffer.from(empty);
  const flags = out.readUInt16BE(2);
  out.writeUInt16BE((flags & ~(0x0400 | 0x0200 | 0x000f)) | (RCODE_BADCOOKIE & 0xf), 2);
  out[out.length - 6] = RCODE_BADCOOKIE >> 4;
  return out;
}
