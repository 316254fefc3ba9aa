import { createHmac, timingSafeEqual } from 'node:crypto';

// TSIG (RFC 8945) with HMAC-SHA256: verifying a signed request, signing a response and every
// message of a multi-message response (zone transfers) with the running MAC, and the error answers
// of section 5.2. dns-packet has no TSIG codec (it treats type 250 as opaque data), so the one
// record is read and written here by hand, and the message is walked on the wire to find where
// the TSIG record starts: the MAC covers the bytes before it, with ARCOUNT decremented and the
// original ID put back (section 4.3.3).

export const TSIG_TYPE = 250;
const CLASS_ANY = 255;
export const HMAC_SHA256 = 'hmac-sha256';
/** Default fudge we sign with, seconds (RFC 8945 section 10 recommends 300). */
export const DEFAULT_FUDGE = 300;
const MAC_LEN = 32;

/** TSIG error codes (RFC 8945 section 3, RFC 6895). */
export const TSIG_ERROR = { NOERROR: 0, BADSIG: 16, BADKEY: 17, BADTIME: 18, BADTRUNC: 22 } as const;
export const RCODE_NOTAUTH = 9;
export const RCODE_FORMERR = 1;

export interface TsigKey {
  /** Key name, lower case, no trailing dot. */
  name: string;
  algorithm: typeof HMAC_SHA256;
  secret: Buffer;
}

/** A key from the server options: `{ name, secret }` with the secret in base64 (as in `dig -y` and knot.conf). */
export function tsigKey(cfg: { name: string; secret: string; algorithm?: string }): TsigKey {
  const algorithm = (cfg.algorithm ?? HMAC_SHA256).toLowerCase().replace(/\.$/, '');
  if (algorithm !== HMAC_SHA256) throw new Error(`TSIG algorithm ${cfg.algorithm} is not supported (only hmac-sha256)`);
  const name = cfg.name.toLowerCase().replace(/\.$/, '');
  if (!name || name.length > 253 || name.split('.').some((l) => l.length === 0 || l.length > 63)) throw new Error(`bad TSIG key name ${JSON.stringify(cfg.name)}`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(cfg.secret)) throw new Error('TSIG secret must be base64');
  const secret = Buffer.from(cfg.secret, 'base64');
  if (secret.length < 16) throw new Error('TSIG secret is too short (at least 16 bytes)');
  return { name, algorithm: HMAC_SHA256, secret };
}

// ---------------------------------------------------------------------------------------------
// Wire helpers

/** A name in canonical wire form (RFC 4034 6.2: lower case, uncompressed); one character per byte, as readName gives them. */
export function nameWire(name: string): Buffer {
  const n = name.replace(/\.$/, '');
  if (n === '') return Buffer.from([0]);
  const parts: Buffer[] = [];
  for (const label of n.split('.')) {
    const b = Buffer.from(label.replace(/[A-Z]+/g, (c) => c.toLowerCase()), 'latin1');
    if (b.length === 0 || b.length > 63) throw new Error(`bad label in ${name}`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Reads a (possibly compressed) name at `off`: the name in lower case (one character per byte) and the offset after it. */
export function readName(msg: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = [];
  let end = -1;
  let p = off;
  let total = 0;
  for (let jumps = 0; ; ) {
    if (p >= msg.length) throw new Error('name runs past the message');
    const len = msg[p]!;
    if (len === 0) {
      if (end < 0) end = p + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (p + 1 >= msg.length) throw new Error('truncated pointer');
      if (end < 0) end = p + 2;
      const target = ((len & 0x3f) << 8) | msg[p + 1]!;
      // Pointers must go backwards; a bounded number of jumps stops loops.
      if (target >= p || ++jumps > 64) throw new Error('bad compression pointer');
      p = target;
      continue;
    }
    if (len & 0xc0) throw new Error('unknown label type');
    if (p + 1 + len > msg.length) throw new Error('label runs past the message');
    total += len + 1;
    if (total > 255) throw new Error('name too long');
    const label = msg.toString('latin1', p + 1, p + 1 + len);
    // A dot inside a label cannot be told from a separator in text: no key or algorithm has one.
    if (label.includes('.')) throw new Error('dot inside a label');
    labels.push(label.replace(/[A-Z]+/g, (c) => c.toLowerCase()));
    p += 1 + len;
  }
  return { name: labels.join('.'), end };
}

/** The offset after the name at `off`, without building it. */
export function skipName(msg: Buffer, off: number): number {
  let p = off;
  for (let n = 0; n < 128; n++) {
    if (p >= msg.length) throw new Error('name runs past the message');
    const len = msg[p]!;
    if (len === 0) return p + 1;
    if ((len & 0xc0) === 0xc0) {
      if (p + 2 > msg.length) throw new Error('truncated pointer');
      return p + 2;
    }
    if (len & 0xc0) throw new Error('unknown label type');
    p += 1 + len;
  }
  throw new Error('too many labels');
}

/** Where things are in a message: the question's type, and the last additional record's start and type. */
export interface WireLayout {
  qdcount: number;
  /** Type of the first question, if there is one. */
  qtype?: number;
  /** Class of the first question. */
  qclass?: number;
  /** Offset of the first answer record (after the questions). */
  answersAt: number;
  /** Offset and type of the last record of the additional section, if any. */
  lastAdditional?: { at: number; type: number };
  /** Types of every record in the message, in order (at most a handful in a query). */
  types: number[];
}

/** Walks the message's sections on the wire (bounded by its length); throws if it is malformed. */
export function walk(msg: Buffer): WireLayout {
  if (msg.length < 12) throw new Error('short message');
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  let p = 12;
  const layout: WireLayout = { qdcount: qd, answersAt: 0, types: [] };
  for (let i = 0; i < qd; i++) {
    p = skipName(msg, p);
    if (p + 4 > msg.length) throw new Error('truncated question');
    if (i === 0) {
      layout.qtype = msg.readUInt16BE(p);
      layout.qclass = msg.readUInt16BE(p + 2);
    }
    p += 4;
  }
  layout.answersAt = p;
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    const at = p;
    p = skipName(msg, p);
    if (p + 10 > msg.length) throw new Error('truncated record');
    const type = msg.readUInt16BE(p);
    const rdlen = msg.readUInt16BE(p + 8);
    p += 10 + rdlen;
    if (p > msg.length) throw new Error('record data runs past the message');
    layout.types.push(type);
    if (i === total - 1 && ar > 0) layout.lastAdditional = { at, type };
  }
  if (p !== msg.length) throw new Error('trailing bytes');
  return layout;
}

// ---------------------------------------------------------------------------------------------
// The TSIG record

export interface TsigRecord {
  /** Offset of the TSIG record in the message (the MAC covers the bytes before it). */
  at: number;
  keyName: string;
  algorithm: string;
  /** Seconds since the epoch (48 bits). */
  timeSigned: number;
  fudge: number;
  mac: Buffer;
  originalId: number;
  error: number;
  other: Buffer;
}

function readU48(b: Buffer, off: number): number {
  return b.readUInt16BE(off) * 2 ** 32 + b.readUInt32BE(off + 2);
}

function writeU48(n: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt16BE(Math.floor(n / 2 ** 32) & 0xffff, 0);
  b.writeUInt32BE(n % 2 ** 32 >>> 0, 2);
  return b;
}

/** Parses the TSIG record at `at` (the last additional record). Throws on malformed data. */
export function parseTsig(msg: Buffer, at: number): TsigRecord {
  const { name: keyName, end } = readName(msg, at);
  if (msg.readUInt16BE(end) !== TSIG_TYPE) throw new Error('not a TSIG record');
  if (msg.readUInt16BE(end + 2) !== CLASS_ANY || msg.readUInt32BE(end + 4) !== 0) throw new Error('TSIG class must be ANY and TTL 0');
  const rdlen = msg.readUInt16BE(end + 8);
  const rd = end + 10;
  const stop = rd + rdlen;
  const { name: algorithm, end: a } = readName(msg, rd);
  if (a + 10 > stop) throw new Error('truncated TSIG');
  const timeSigned = readU48(msg, a);
  const fudge = msg.readUInt16BE(a + 6);
  const macSize = msg.readUInt16BE(a + 8);
  const m = a + 10;
  if (m + macSize + 6 > stop) throw new Error('truncated TSIG MAC');
  const mac = Buffer.from(msg.subarray(m, m + macSize));
  const originalId = msg.readUInt16BE(m + macSize);
  const error = msg.readUInt16BE(m + macSize + 2);
  const otherLen = msg.readUInt16BE(m + macSize + 4);
  const o = m + macSize + 6;
  if (o + otherLen !== stop) throw new Error('TSIG length mismatch');
  return { at, keyName, algorithm, timeSigned, fudge, mac, originalId, error, other: Buffer.from(msg.subarray(o, stop)) };
}

/** The message as the MAC sees it: without the TSIG record, ARCOUNT one less, the original ID. */
function unsignedPart(msg: Buffer, tsig: Pick<TsigRecord, 'at' | 'originalId'>): Buffer {
  const out = Buffer.from(msg.subarray(0, tsig.at));
  out.writeUInt16BE(tsig.originalId, 0);
  out.writeUInt16BE(out.readUInt16BE(10) - 1, 10);
  return out;
}

interface Vars {
  timeSigned: number;
  fudge: number;
  error: number;
  other: Buffer;
}

/** TSIG variables (RFC 8945 4.3.3): key name, class, TTL, algorithm, time, fudge, error, other. */
function variables(key: TsigKey, v: Vars): Buffer {
  const fixed = Buffer.alloc(6);
  fixed.writeUInt16BE(CLASS_ANY, 0);
  fixed.writeUInt32BE(0, 2);
  const tail = Buffer.alloc(6);
  tail.writeUInt16BE(v.error, 0);
  tail.writeUInt16BE(v.other.length, 2);
  return Buffer.concat([nameWire(key.name), fixed, nameWire(key.algorithm), timers(v), tail.subarray(0, 4), v.other]);
}

function timers(v: Pick<Vars, 'timeSigned' | 'fudge'>): Buffer {
  const f = Buffer.alloc(2);
  f.writeUInt16BE(v.fudge, 0);
  return Buffer.concat([writeU48(v.timeSigned), f]);
}

function withLength(mac: Buffer): Buffer {
  const l = Buffer.alloc(2);
  l.writeUInt16BE(mac.length, 0);
  return Buffer.concat([l, mac]);
}

function hmac(key: TsigKey, parts: Buffer[]): Buffer {
  const h = createHmac('sha256', key.secret);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** The TSIG record's wire bytes. */
export function tsigRecord(key: Pick<TsigKey, 'name'> & { algorithm: string }, v: Vars & { mac: Buffer; originalId: number }): Buffer {
  const alg = nameWire(key.algorithm);
  const rd = Buffer.alloc(alg.length + 10 + v.mac.length + 6 + v.other.length);
  let p = alg.copy(rd, 0);
  writeU48(v.timeSigned).copy(rd, p);
  rd.writeUInt16BE(v.fudge, p + 6);
  rd.writeUInt16BE(v.mac.length, p + 8);
  p += 10;
  p += v.mac.copy(rd, p);
  rd.writeUInt16BE(v.originalId, p);
  rd.writeUInt16BE(v.error, p + 2);
  rd.writeUInt16BE(v.other.length, p + 4);
  v.other.copy(rd, p + 6);
  const head = Buffer.alloc(10);
  head.writeUInt16BE(TSIG_TYPE, 0);
  head.writeUInt16BE(CLASS_ANY, 2);
  head.writeUInt32BE(0, 4);
  head.writeUInt16BE(rd.length, 8);
  return Buffer.concat([nameWire(key.name), head, rd]);
}

/** Appends a TSIG record to `msg` (ARCOUNT + 1). */
function append(msg: Buffer, record: Buffer): Buffer {
  const out = Buffer.concat([msg, record]);
  out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  return out;
}

/** Size of the TSIG record we add to a response signed with `key` (for fitting messages). */
export function tsigOverhead(key: TsigKey, otherLen = 0): number {
  return nameWire(key.name).length + 10 + nameWire(key.algorithm).length + 10 + MAC_LEN + 6 + otherLen;
}

// ---------------------------------------------------------------------------------------------
// Requests

export type RequestCheck =
  | { ok: true; tsig: TsigRecord; key: TsigKey; stripped: Buffer }
  /** FORMERR: a TSIG that is not last, not alone, malformed, or a MAC too short to be one. */
  | { ok: false; rcode: typeof RCODE_FORMERR; tsig?: TsigRecord }
  /** NOTAUTH with a TSIG error: BADKEY/BADSIG/BADTRUNC unsigned, BADTIME signed (section 5.2). */
  | { ok: false; rcode: typeof RCODE_NOTAUTH; error: number; tsig: TsigRecord; key?: TsigKey };

/**
 * Checks the TSIG of a request that carries one (it must be the last additional record).
 * `keys` are the keys we know; `now` in seconds. The stripped message (without the TSIG, ARCOUNT
 * adjusted, ID as received) is what the rest of the server handles.
 */
export function verifyRequest(msg: Buffer, layout: WireLayout, keys: readonly TsigKey[], now: number): RequestCheck {
  const last = layout.lastAdditional;
  // Exactly one TSIG, and it is the last record of the message (section 5.1).
  if (!last || last.type !== TSIG_TYPE || layout.types.filter((t) => t === TSIG_TYPE).length !== 1) return { ok: false, rcode: RCODE_FORMERR };
  let tsig: TsigRecord;
  try {
    tsig = parseTsig(msg, last.at);
  } catch {
    return { ok: false, rcode: RCODE_FORMERR };
  }
  const key = keys.find((k) => k.name === tsig.keyName && k.algorithm === tsig.algorithm);
  if (!key) return { ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADKEY, tsig };
  // Section 5.2.2.1: a MAC longer than the hash, or shorter than max(10, half the hash), is FORMERR.
  if (tsig.mac.length > MAC_LEN || tsig.mac.length < Math.max(10, MAC_LEN / 2)) return { ok: false, rcode: RCODE_FORMERR, tsig };
  const expected = hmac(key, [unsignedPart(msg, tsig), variables(key, tsig)]);
  if (!timingSafeEqual(expected.subarray(0, tsig.mac.length), tsig.mac)) return { ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADSIG, tsig };
  // We accept only full-length MACs (our local minimum), after the MAC is known to be right.
  if (tsig.mac.length < MAC_LEN) return { ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADTRUNC, tsig, key };
  if (Math.abs(now - tsig.timeSigned) > tsig.fudge) return { ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADTIME, tsig, key };
  const stripped = Buffer.from(msg.subarray(0, tsig.at));
  stripped.writeUInt16BE(stripped.readUInt16BE(10) - 1, 10);
  return { ok: true, tsig, key, stripped };
}

/** Signs a request (for NOTIFY, and for tests acting as a client). Returns the message and its MAC. */
export function signRequest(msg: Buffer, key: TsigKey, now: number, fudge = DEFAULT_FUDGE): { message: Buffer; mac: Buffer } {
  const v: Vars = { timeSigned: now, fudge, error: 0, other: Buffer.alloc(0) };
  const mac = hmac(key, [msg, variables(key, v)]);
  return { message: append(msg, tsigRecord(key, { ...v, mac, originalId: msg.readUInt16BE(0) })), mac };
}

// ---------------------------------------------------------------------------------------------
// Responses

/**
 * Signs the messages of one response (a single answer, or every message of a zone transfer) with
 * the running MAC (RFC 8945 5.3 and 5.3.1): the first message's digest covers the request MAC, the
 * message and all TSIG variables; each later one covers the previous MAC, the message and the
 * timers only. Every message is signed (none are left unsigned).
 */
export class ResponseSigner {
  private prior: Buffer;
  private first = true;

  constructor(
    private readonly key: TsigKey,
    requestMac: Buffer,
    private readonly originalId: number,
    private readonly clock: () => number = () => Math.floor(Date.now() / 1000),
    private readonly fudge = DEFAULT_FUDGE,
  ) {
    this.prior = requestMac;
  }

  sign(msg: Buffer, error = 0, other: Buffer = Buffer.alloc(0), timeSigned?: number): Buffer {
    const v: Vars = { timeSigned: timeSigned ?? this.clock(), fudge: this.fudge, error, other };
    const body = Buffer.from(msg);
    body.writeUInt16BE(this.originalId, 0);
    const mac = this.first
      ? hmac(this.key, [withLength(this.prior), body, variables(this.key, v)])
      : hmac(this.key, [withLength(this.prior), body, timers(v)]);
    this.first = false;
    this.prior = mac;
    return append(msg, tsigRecord(this.key, { ...v, mac, originalId: this.originalId }));
  }
}

/** An unsigned TSIG error record (BADKEY, BADSIG, BADTRUNC: MAC size 0) appended to `msg`. */
export function appendUnsignedError(msg: Buffer, tsig: TsigRecord, error: number): Buffer {
  // The key and algorithm named in the request, even if unknown to us: the client matches them.
  const rec = tsigRecord({ name: tsig.keyName, algorithm: tsig.algorithm }, {
    timeSigned: tsig.timeSigned,
    fudge: tsig.fudge,
    error,
    other: Buffer.alloc(0),
    mac: Buffer.alloc(0),
    originalId: tsig.originalId,
  });
  return append(msg, rec);
}

/**
 * Verifies the messages of a signed response stream (what a client does; used by our tests and to
 * check acknowledgements of NOTIFY). Throws on a bad or missing MAC.
 */
export class ResponseVerifier {
  private prior: Buffer;
  private first = true;

  constructor(
    private readonly key: TsigKey,
    requestMac: Buffer,
  ) {
    this.prior = requestMac;
  }

  /** Verifies one message and returns its TSIG record. */
  verify(msg: Buffer): TsigRecord {
    const layout = walk(msg);
    const last = layout.lastAdditional;
    if (!last || last.type !== TSIG_TYPE) throw new Error('response is not signed');
    const tsig = parseTsig(msg, last.at);
    if (tsig.keyName !== this.key.name || tsig.algorithm !== this.key.algorithm) throw new Error(`signed with another key (${tsig.keyName})`);
    const body = unsignedPart(msg, tsig);
    const expected = this.first
      ? hmac(this.key, [withLength(this.prior), body, variables(this.key, tsig)])
      : hmac(this.key, [withLength(this.prior), body, timers(tsig)]);
    if (tsig.mac.length !== MAC_LEN || !timingSafeEqual(expected, tsig.mac)) throw new Error('bad TSIG MAC on the response');
    this.first = false;
    this.prior = tsig.mac;
    return tsig;
  }
}
