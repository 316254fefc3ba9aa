import dnsPacket from 'dns-packet';
import type { DecodedPacket, OptAnswer, Packet, Question } from 'dns-packet';
import { lowerAscii } from '../records/rdata.ts';
import type { OnlineSigner } from '../dnssec/online.ts';
import { NXNAME } from '../dnssec/wire.ts';
import type { AnswerSet } from './zone.ts';
import type { ZoneView } from './zone-view.ts';
import type { RrlVerdict } from './rrl.ts';
import { appendCookie, badCookieForm, COOKIE_OPTION, COOKIE_REPLY_BYTES, type CookieCheck, type ServerCookies } from './cookie.ts';

// One DNS message in, at most one out: parsing, the checks of RFC 1035 / 6891 / 8482, DNS cookies
// (RFC 7873, cookie.ts), the rate limiter's decision (before signing), and fitting the answer into
// the transport's size. No sockets here (see server.ts), no zone logic (zone.ts).

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

/** The UDP payload we advertise and never exceed (DNS flag day 2020: no IP fragmentation). */
export const MAX_UDP_PAYLOAD = 1232;
/** Without EDNS0 a UDP response is at most 512 bytes (RFC 1035 4.2.1). */
export const CLASSIC_UDP_PAYLOAD = 512;

/** Header flag bits, shared with the transfer path (xfr.ts). */
export const QR = 0x8000;
/** Additional records a query may carry (OPT, TSIG, SIG(0)); more is FORMERR without decoding. */
const MAX_ADDITIONAL = 3;
export const AA = dnsPacket.AUTHORITATIVE_ANSWER;
export const TC = dnsPacket.TRUNCATED_RESPONSE;
export const RD = dnsPacket.RECURSION_DESIRED;
export const CD = dnsPacket.CHECKING_DISABLED;
const DO = dnsPacket.DNSSEC_OK;

export type Transport = 'udp' | 'tcp';

/** What the rate limiter said about a response: its verdict, or 'exempt' (a valid server cookie). */
export type Admission = RrlVerdict | 'exempt';

export interface Handled {
  /** The response to send; undefined means send nothing (a response packet, a runt, an RRL drop). */
  response?: Buffer;
  /** The same response emptied and marked TC (with the client's cookie), for response-rate-limiting slips. */
  truncated?: () => Buffer;
  /** The BADCOOKIE form, for a client that sent a cookie but no valid server cookie: what a slip sends it instead of TC. */
  badCookie?: () => Buffer;
  /** Set when the response answers for a hosted zone: what metering counts (and the serial answered from, for the response cache). */
  zone?: { name: string; imvu: string; serial?: number };
  rcode?: number;
  /**
   * Set when the responder asked the rate limiter (`admit`): 'drop' (no response), 'slip'
   * (`response` is the slip), 'send' or 'exempt'. Unset: nobody asked; the server decides.
   */
  rrl?: Admission;
  /** The response and its TC form without the COOKIE option, when the query had one: the response cache keeps these. */
  uncookied?: { response: Buffer; truncated: () => Buffer };
  /**
   * The name asked does not exist in the zone (NXDOMAIN; compact denial answers it NOERROR): a
   * random-subdomain flood's answers, each asked once. The response cache keeps such an answer
   * only when its question comes a second time.
   */
  nxname?: boolean;
}

/** Per query, from the server. */
export interface AnswerContext {
  /** The client's address: server cookies are bound to it. */
  peer?: string;
  /**
   * Response rate limiting (UDP): asked once per response, after the lookup and before anything
   * is signed or encoded; not asked for a client that returned a valid server cookie.
   */
  admit?: () => RrlVerdict;
}

export interface ResponderOptions extends AnswerContext {
  /** DNSSEC online signing of the zones that have a key. */
  dnssec?: OnlineSigner;
  /** DNS cookies; without it a COOKIE option is ignored, as any unknown option. */
  cookies?: ServerCookies;
  /** false: every query through dns-packet's decoder and encoder (tests compare the two paths). Default true. */
  quick?: boolean;
}

/** The header and question of a response, before its sections are filled. */
interface Frame {
  id: number;
  flags: number;
  questions: Question[];
  opt: OptAnswer | undefined;
  /** The client's COOKIE option, checked: added last to every response to it. */
  cookie: CookieCheck | undefined;
}

const NO_QUESTIONS: Question[] = [];
/** The OPT record of our responses (RFC 6891): our UDP size, the DO bit echoed. */
const ourOpt = (dnssecOk: boolean): OptAnswer =>
  Object.freeze({ name: '.', type: 'OPT', udpPayloadSize: MAX_UDP_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: dnssecOk ? DO : 0, flag_do: dnssecOk, options: Object.freeze([]) }) as unknown as OptAnswer;
const OUR_OPT = ourOpt(false);
const OUR_OPT_DO = ourOpt(true);

function encode(frame: Frame, rcode: number, sections: Pick<Packet, 'answers' | 'authorities' | 'additionals'> = {}, extra = 0): Buffer {
  const additionals = [...(sections.additionals ?? [])];
  if (frame.opt) additionals.push({ ...frame.opt, extendedRcode: rcode >> 4 });
  return compressOwners(dnsPacket.encode({
    type: 'response',
    id: frame.id,
    flags: frame.flags | extra | (rcode & 0xf),
    questions: frame.questions,
    answers: sections.answers ?? [],
    authorities: sections.authorities ?? [],
    additionals,
  }));
}

const POINTER_TO_QUESTION = Buffer.from([0xc0, 12]);

const lowerByte = (c: number) => (c >= 0x41 && c <= 0x5a ? c | 0x20 : c);

/** Whether the name at `pos` is the question's name (`q`, lower case), ASCII case aside. */
function sameName(b: Buffer, pos: number, q: Uint8Array): boolean {
  if (b.length < pos + q.length) return false;
  for (let j = 0; j < q.length; j++) if (lowerByte(b[pos + j]!) !== q[j]) return false;
  return true;
}

/**
 * The message with every RR owner that is the question's name (ASCII case aside, as DNS compares
 * names) replaced by a pointer to the question (RFC 1035 4.1.4; dns-packet does not compress).
 * Besides the bytes saved, the question is then the one place the query's spelling (its case)
 * appears, and the rest of the response depends on the name only: the response cache answers
 * every spelling of a name from one entry by copying the asker's question in. Names inside RDATA
 * are never touched (RRSIG and NSEC must not be compressed, RFC 4034 6.2).
 */
export function compressOwners(b: Buffer): Buffer {
  if (b.length < 17 || b.readUInt16BE(4) !== 1) return b;
  let i = 12;
  while (i < b.length && b[i]! !== 0) i += b[i]! + 1;
  const qEnd = i + 1;
  // The root (one byte) gains nothing from a 2-byte pointer.
  if (qEnd - 12 <= 2 || qEnd + 4 > b.length) return b;
  const qname = Uint8Array.from(b.subarray(12, qEnd), lowerByte);
  const rrs = b.readUInt16BE(6) + b.readUInt16BE(8) + b.readUInt16BE(10);
  const parts: Buffer[] = [];
  let from = 0;
  let pos = qEnd + 4;
  for (let k = 0; k < rrs && pos < b.length; k++) {
    if (sameName(b, pos, qname)) {
      parts.push(b.subarray(from, pos), POINTER_TO_QUESTION);
      pos += qname.length;
      from = pos;
    } else {
      // Our encoder writes whole names: labels up to the root (a pointer ends one too).
      while (pos < b.length && b[pos]! !== 0 && b[pos]! < 0xc0) pos += b[pos]! + 1;
      pos += pos < b.length && b[pos]! >= 0xc0 ? 2 : 1;
    }
    if (pos + 10 > b.length) return b;
    pos += 10 + b.readUInt16BE(pos + 8);
  }
  if (parts.length === 0) return b;
  parts.push(b.subarray(from));
  return Buffer.concat(parts);
}

/** Re-encoding the decoded question gives back the bytes received: the name and class survived. */
function faithful(q: Question, msg: Buffer): boolean {
  try {
    const enc = dnsPacket.encode({ id: 0, questions: [q] });
    return msg.length >= enc.length && msg.subarray(12, enc.length).equals(enc.subarray(12));
  } catch {
    return false;
  }
}

/** Query types the quick reader names itself (as dns-packet names them); any other goes to dns-packet's decoder. */
const QUICK_TYPES: ReadonlyMap<number, string> = new Map([
  [1, 'A'], [2, 'NS'], [5, 'CNAME'], [6, 'SOA'], [12, 'PTR'], [15, 'MX'], [16, 'TXT'], [28, 'AAAA'], [33, 'SRV'],
  [43, 'DS'], [46, 'RRSIG'], [47, 'NSEC'], [48, 'DNSKEY'], [255, 'ANY'], [257, 'CAA'],
]);
const TYPE_OPT = 41;

/** Where `quickQuery` writes a question's name (at most 255 bytes). */
const nameScratch = Buffer.allocUnsafeSlow(256);

/** A plain query as the quick reader found it: the question, the OPT record, and where the question ends. */
interface QuickQuery {
  q: Question;
  opt?: OptAnswer;
  /** Offset just past the question (name, type, class): the bytes 12..end are echoed as received. */
  end: number;
}

/**
 * The common query read without dns-packet (its decoder and the re-encoding that checks a name
 * survived it cost more than the rest of a denial): header counts 1/0/0/0-1, a question of plain
 * labels of printable ASCII without dots (what dns-packet decodes and re-encodes to the same
 * bytes), class IN, a type in QUICK_TYPES, and at most an OPT record owned by the root, of
 * version 0, ending the message with whole options. Anything else is undefined: dns-packet's
 * decoder and the checks after it decide, as before.
 */
function quickQuery(msg: Buffer): QuickQuery | undefined {
  const len = msg.length;
  if (len < 17 || msg[4] !== 0 || msg[5] !== 1 || msg[6] !== 0 || msg[7] !== 0 || msg[8] !== 0 || msg[9] !== 0 || msg[10] !== 0 || msg[11]! > 1) return undefined;
  let i = 12;
  for (;;) {
    const l = msg[i]!;
    if (l === 0) break;
    if (l > 63 || i + 1 + l >= len || i + l - 12 > 253) return undefined;
    for (let j = i + 1; j <= i + l; j++) {
      const c = msg[j]!;
      if (c < 0x21 || c > 0x7e || c === 0x2e) return undefined;
    }
    i += l + 1;
  }
  // The name made one string: its bytes after the first length, every later length a dot (a
  // string per label, joined, was garbage per query).
  let name = '.';
  if (i > 12) {
    const n = i - 13;
    msg.copy(nameScratch, 0, 13, i);
    for (let j = msg[12]!; j < n; ) {
      const l = nameScratch[j]!;
      nameScratch[j] = 0x2e;
      j += l + 1;
    }
    name = nameScratch.toString('latin1', 0, n);
  }
  i++;
  if (i + 4 > len) return undefined;
  const type = QUICK_TYPES.get((msg[i]! << 8) | msg[i + 1]!);
  if (!type || msg[i + 2] !== 0 || msg[i + 3] !== 1) return undefined;
  const end = i + 4;
  const q: Question = { name, type: type as Question['type'], class: 'IN' };
  if (msg[11] === 0) return end === len ? { q, end } : undefined;
  // The OPT record: root owner, type 41, then UDP size, extended rcode, version, flags, RDLENGTH.
  const o = end;
  if (o + 11 > len || msg[o] !== 0 || ((msg[o + 1]! << 8) | msg[o + 2]!) !== TYPE_OPT || msg[o + 6] !== 0) return undefined;
  const rdata = o + 11;
  if (rdata + ((msg[o + 9]! << 8) | msg[o + 10]!) !== len) return undefined;
  const options: { code: number; data: Buffer }[] = [];
  for (let j = rdata; j < len; ) {
    if (j + 4 > len) return undefined;
    const olen = (msg[j + 2]! << 8) | msg[j + 3]!;
    if (j + 4 + olen > len) return undefined;
    options.push({ code: (msg[j]! << 8) | msg[j + 1]!, data: msg.subarray(j + 4, j + 4 + olen) });
    j += 4 + olen;
  }
  const flags = (msg[o + 7]! << 8) | msg[o + 8]!;
  const opt = {
    name: '.',
    type: 'OPT',
    udpPayloadSize: (msg[o + 3]! << 8) | msg[o + 4]!,
    extendedRcode: msg[o + 5]!,
    ednsVersion: 0,
    flags,
    flag_do: (flags & DO) !== 0,
    options,
  } as unknown as OptAnswer;
  return { q, opt, end };
}

/**
 * A NOERROR response with AA set and only an authority section (`count` RRs, on the wire), the
 * question copied from the query's bytes (12..`qEnd`, as received: the owner pointers of the
 * authority records point at it) and the OPT record our responses carry: what `encode` gives
 * for the same sections, without dns-packet.
 */
function denialMessage(msg: Buffer, qEnd: number, frame: Frame, authority: readonly Buffer[], count: number, rcode: number): Buffer {
  const opt = frame.opt ? 11 : 0;
  let size = qEnd + opt;
  for (const b of authority) size += b.length;
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16BE(frame.id, 0);
  out.writeUInt16BE(QR | frame.flags | AA | rcode, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(count, 8);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  // Byte by byte: Buffer#copy of a range makes a view object per call.
  for (let j = 12; j < qEnd; j++) out[j] = msg[j]!;
  let at = qEnd;
  for (const b of authority) at += b.copy(out, at);
  if (frame.opt) {
    // Root owner, type OPT, our UDP size, extended rcode 0, version 0, the DO bit echoed, no options.
    out[at] = 0;
    out.writeUInt16BE(41, at + 1);
    out.writeUInt16BE(frame.opt.udpPayloadSize, at + 3);
    out.writeUInt32BE(frame.opt.flags ?? 0, at + 5);
    out.writeUInt16BE(0, at + 9);
    at += 11;
  }
  return out;
}

/** Fits the answer within `limit` bytes: optional additional data goes first, then TC (RFC 2181 9). */
function fit(frame: Frame, rcode: number, set: AnswerSet, limit: number): Buffer {
  const sections = { answers: set.answers, authorities: set.authorities, additionals: set.additionals };
  const full = encode(frame, rcode, sections, set.aa ? AA : 0);
  if (full.length <= limit) return full;
  if (set.additionals.length > 0 && !set.glueRequired) {
    const lean = encode(frame, rcode, { answers: set.answers, authorities: set.authorities }, set.aa ? AA : 0);
    if (lean.length <= limit) return lean;
  }
  return encode(frame, rcode, {}, (set.aa ? AA : 0) | TC);
}


/** Meta-types a query may not ask for (RFC 9824 3.5 NXNAME; TKEY and TSIG live only in additional data). */
const FORMERR_TYPES = new Set(['OPT', `UNKNOWN_${NXNAME}`, 'TKEY', 'TSIG']);
/** MAILB (253) and MAILA (254): obsolete meta-queries (RFC 1035 3.2.3, RFC 2505), not implemented. */
const NOTIMP_TYPES = new Set(['UNKNOWN_253', 'UNKNOWN_254']);

/** The rate limiter's verdict for this response, or 'exempt' for a client that proved its address with a server cookie. */
function admission(frame: Frame, opts: ResponderOptions): Admission | undefined {
  if (!opts.admit) return undefined;
  return frame.cookie?.valid ? 'exempt' : opts.admit();
}

/** A response the rate limiter held back: nothing, or the slip (empty with TC, or BADCOOKIE for a client that sent a cookie). */
function limited(frame: Frame, verdict: 'drop' | 'slip', empty: Buffer): Handled {
  if (verdict === 'drop') return { rrl: 'drop' };
  const c = frame.cookie;
  return { rrl: 'slip', response: c ? appendCookie(c.valid ? empty : badCookieForm(empty), c.reply) : empty };
}

/** The Handled of a response to send: with the client's COOKIE option added last, when it sent one. */
function finish(frame: Frame, plain: Buffer, empty: () => Buffer, rcode: number, zone: Handled['zone'], rrl: Admission | undefined, nxname?: boolean): Handled {
  const c = frame.cookie;
  // Every field written at once, in one order (no spread of a partial object: a copy per answer).
  const h: Handled = { response: plain, truncated: empty, rcode, zone, rrl };
  if (nxname) h.nxname = true;
  if (!c) return h;
  h.response = appendCookie(plain, c.reply);
  h.truncated = () => appendCookie(empty(), c.reply);
  h.uncookied = { response: plain, truncated: empty };
  if (!c.valid) h.badCookie = () => appendCookie(badCookieForm(empty()), c.reply);
  return h;
}

function reply(frame: Frame, rcode: number, opts?: ResponderOptions, verdict = opts && admission(frame, opts)): Handled {
  const empty = () => encode(frame, rcode, {}, TC);
  if (verdict === 'drop' || verdict === 'slip') return limited(frame, verdict, empty());
  return finish(frame, encode(frame, rcode), empty, rcode, undefined, verdict);
}

/**
 * One query in, at most one response out. With `admit` (the server's UDP rate limiter), the
 * limiter decides after the zone lookup and before DNSSEC signing and encoding: a response it
 * drops or slips costs no signature.
 */
export async function handleMessage(view: ZoneView, msg: Buffer, transport: Transport, opts: ResponderOptions = {}): Promise<Handled> {
  if (msg.length < 12) return {};
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  // Never answer a response: two servers answering each other's errors would loop forever.
  if (flags & QR) return {};
  const opcode = (flags >> 11) & 0xf;
  // One frame, filled in as the query is read (its fields all present from the start: one shape).
  const frame: Frame = { id, flags: (opcode << 11) | (flags & (RD | CD)), questions: NO_QUESTIONS, opt: undefined, cookie: undefined };
  // A query has one question, no answer or authority records, and at most a few additional ones
  // (OPT, TSIG). Checking the counts before decoding bounds the work per message: names may chain
  // compression pointers, so decoding thousands of records costs time quadratic in their number.
  const shaped = msg.readUInt16BE(4) === 1 && msg.readUInt16BE(6) === 0 && msg.readUInt16BE(8) === 0 && msg.readUInt16BE(10) <= MAX_ADDITIONAL;
  if (!shaped) return reply(frame, opcode === 0 ? RCODE.FORMERR : RCODE.NOTIMP, opts);

  const quick = opcode === 0 && opts.quick !== false ? quickQuery(msg) : undefined;
  let q: Question;
  let echo: Question[];
  let clientOpt: OptAnswer | undefined;
  if (quick) {
    q = quick.q;
    echo = [q];
    clientOpt = quick.opt;
  } else {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
      if (dnsPacket.decode.bytes !== msg.length) throw new Error('trailing bytes after the message');
    } catch {
      return reply(frame, opcode === 0 ? RCODE.FORMERR : RCODE.NOTIMP, opts);
    }
    q = query.questions![0]!;
    echo = faithful(q, msg) ? [q] : [];
    // EDNS0 (RFC 6891): at most one OPT, owned by the root.
    const opts0 = (query.additionals ?? []).filter((a): a is OptAnswer => a.type === 'OPT');
    frame.questions = echo;
    if (opts0.length > 1 || (opts0[0] && opts0[0].name !== '.')) return reply(frame, RCODE.FORMERR, opts);
    clientOpt = opts0[0];
  }
  frame.questions = echo;
  // Ours, shared (nothing writes to it: `encode` copies it).
  frame.opt = clientOpt && (clientOpt.flag_do ? OUR_OPT_DO : OUR_OPT);
  // DNS cookies (RFC 7873): one COOKIE option at most, 8 or 16..40 bytes, else FORMERR.
  if (clientOpt && opts.cookies) {
    // dns-packet's option type names only the codes it decodes; every option keeps its bytes in `data`.
    let found: { code: number; data?: Buffer } | undefined;
    for (const o of (clientOpt.options ?? []) as unknown as { code: number; data?: Buffer }[]) {
      if (o.code !== COOKIE_OPTION) continue;
      if (found) return reply(frame, RCODE.FORMERR, opts);
      found = o;
    }
    if (found) {
      const data = found.data ?? Buffer.alloc(0);
      const check = opts.cookies.check(data, opts.peer ?? '');
      if (check === 'malformed') return reply(frame, RCODE.FORMERR, opts);
      frame.cookie = check;
    }
  }
  if (clientOpt && clientOpt.ednsVersion > 0) return reply(frame, RCODE.BADVERS, opts);
  if (opcode !== 0) return reply(frame, RCODE.NOTIMP, opts);
  if (FORMERR_TYPES.has(q.type)) return reply(frame, RCODE.FORMERR, opts);
  if (NOTIMP_TYPES.has(q.type)) return reply(frame, RCODE.NOTIMP, opts);
  // A name that does not survive decoding (a dot or invalid UTF-8 inside a label), an unknown
  // class: nothing we host can match it, and it could not be echoed faithfully.
  if (echo.length === 0 || q.class !== 'IN') return reply(frame, RCODE.REFUSED, opts);
  // Zone transfers are xfr.ts's (when configured); here they are refused.
  if (q.type === 'AXFR' || q.type === 'IXFR') return reply(frame, RCODE.REFUSED, opts);

  const name = q.name === '.' ? '' : lowerAscii(q.name);
  let info = view.enclosing(name);
  if (!info) return reply(frame, RCODE.REFUSED, opts);
  // The DS of a zone is the parent's data (RFC 4035 3.1.4.1): at a zone's apex it is answered from
  // the zone above when that one is hosted here too (the platform's zone for every IMVU zone).
  if (q.type === 'DS' && info.name === name) {
    const dot = name.indexOf('.');
    const parent = dot > 0 ? view.enclosing(name.slice(dot + 1)) : undefined;
    if (parent) info = parent;
  }
  let zone;
  try {
    // Compiled already (the common case): no await, which would cost a promise and a turn per query.
    const z = view.zone(info);
    zone = z instanceof Promise ? await z : z;
  } catch {
    return reply(frame, RCODE.SERVFAIL, opts);
  }
  if (!zone) return reply(frame, RCODE.REFUSED, opts);

  const found = zone.lookup(name, q.name, q.type);
  const dnssecOk = !!clientOpt?.flag_do;
  const { dnssec } = opts;
  // Rate limiting before any signature is made: a flood beyond the rate buys no signing.
  const verdict = admission(frame, opts);
  if (verdict === 'drop' || verdict === 'slip') {
    // The slip carries the rcode the full answer would: compact denial says NOERROR in a signed zone.
    let rcode = found.rcode;
    if (rcode !== RCODE.NOERROR && dnssec && dnssecOk && dnssec.denialMode === 'compact') {
      try {
        if (await dnssec.keys.forZone(zone.name, zone.serial)) rcode = RCODE.NOERROR;
      } catch {
        // a key the platform cannot use: the full answer would be SERVFAIL; the slip says what it found
      }
    }
    return limited(frame, verdict, encode(frame, rcode, {}, (found.aa ? AA : 0) | TC));
  }
  const room = transport === 'tcp' ? 65535 : clientOpt ? Math.min(MAX_UDP_PAYLOAD, Math.max(CLASSIC_UDP_PAYLOAD, clientOpt.udpPayloadSize)) : CLASSIC_UDP_PAYLOAD;
  // The COOKIE option is added after fitting: its room is kept free.
  const limit = room - (frame.cookie ? COOKIE_REPLY_BYTES : 0);
  // A signed denial of a name that does not exist (random-subdomain floods): written on the wire
  // directly from the question's bytes and the signer's encoded records (`denial`), no dns-packet.
  if (quick && dnssec && dnssecOk && found.rcode === RCODE.NXDOMAIN && found.aa && found.answers.length === 0 && !found.referral && found.authorities.length === 1) {
    let denial;
    try {
      const d = dnssec.denial(zone, name, found.authorities[0]!);
      denial = d instanceof Promise ? await d : d;
    } catch {
      return reply(frame, RCODE.SERVFAIL, opts, verdict);
    }
    if (denial) {
      const out = denialMessage(msg, quick.end, frame, denial.authority, denial.count, denial.rcode);
      const rcode = denial.rcode;
      if (out.length <= limit) {
        return finish(frame, out, () => encode(frame, rcode, {}, AA | TC), rcode, zone, verdict, true);
      }
    }
  }
  let set = found;
  // DNSSEC (src/domains/dnssec/online.ts): signatures and denial proofs when the query set DO.
  if (dnssec) {
    try {
      const secured = dnssec.secure(zone, { name, echo: q.name, type: q.type, dnssecOk }, set);
      set = secured instanceof Promise ? await secured : secured;
    } catch {
      return reply(frame, RCODE.SERVFAIL, opts, verdict);
    }
  }
  const final = set;
  // The compiled zone is the Handled's `zone` (its name, IMVU and serial): the response cache copies what it keeps.
  return finish(frame, fit(frame, final.rcode, final, limit), () => encode(frame, final.rcode, {}, (final.aa ? AA : 0) | TC), final.rcode, zone, verdict, found.rcode === RCODE.NXDOMAIN && found.answers.length === 0);
}
