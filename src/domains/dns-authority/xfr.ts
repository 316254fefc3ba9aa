import { BlockList, isIP } from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Question, SoaAnswer } from 'dns-packet';
import type { Store } from '../../core/store/index.ts';
import { lowerAscii } from '../records/rdata.ts';
import { SOA_TTL, synthesiseSoa } from '../records/soa.ts';
import { servedRecords, toAnswer, ZoneJournal, type Delta, type ServedRR } from './journal.ts';
import { AA, CD, CLASSIC_UDP_PAYLOAD, handleMessage, MAX_UDP_PAYLOAD, QR, RCODE, RD, TC, type AnswerContext, type Handled, type Transport } from './responder.ts';
import {
  appendUnsignedError,
  RCODE_FORMERR,
  RCODE_NOTAUTH,
  ResponseSigner,
  TSIG_ERROR,
  TSIG_TYPE,
  tsigKey,
  tsigOverhead,
  verifyRequest,
  walk,
  type TsigKey,
  type WireLayout,
} from './tsig.ts';
import { readZoneRows } from '../registry/zone.ts';
import type { ZoneView } from './zone-view.ts';
import type { ZoneKeys } from '../dnssec/keys.ts';
import { compileZone, signZone, type SignedZone } from '../dnssec/signed-zone.ts';
import type { ZoneKey } from '../dnssec/keys.ts';
import type { Zone } from './zone.ts';
import { HASH_SHA384, SCHEME_SIMPLE, zonemdAnswer, zonemdDigest } from '../zonefile/zonemd.ts';

// Zone transfers out: AXFR (RFC 5936) and IXFR (RFC 1995) with access control by TSIG (RFC 8945)
// or source address, and TSIG on every other query that carries one (a secondary signs its SOA
// refresh queries and expects a signed answer). Sits in front of responder.ts: queries that are
// neither transfers nor signed go straight through to it unchanged.
//
// - AXFR: TCP only (REFUSED over UDP). SOA, every record, SOA, split into messages of at most
//   `maxMessageBytes`; the question in the first message only; every message signed when the
//   request was (the running MAC of RFC 8945 5.3.1).
// - IXFR: the differences since the client's serial (journal.ts, derived from the ledger); the
//   full zone in AXFR form when the serial is unknown or older than the journal; just the SOA
//   when the client is up to date. Over UDP: the SOA when up to date, otherwise the SOA with TC
//   set, so the client retries over TCP (RFC 1995 section 2).
// - Access: a request is allowed when it carries a valid TSIG with the configured key, or comes
//   from an address in `allow` (addresses or CIDR prefixes). Anything else is REFUSED; a bad
//   TSIG gets NOTAUTH with the TSIG error (BADKEY, BADSIG, BADTIME, BADTRUNC), a malformed one
//   FORMERR.

export interface XfrOptions {
  /** Source addresses (or CIDR prefixes: '10.0.0.0/8') allowed to transfer without TSIG. */
  allow?: string[];
  /** TSIG key (HMAC-SHA256): a request signed with it may transfer from any address. */
  tsig?: { name: string; secret: string; algorithm?: string };
  /** Secondaries told by NOTIFY (RFC 1996) when a zone's serial changes. Port 53 unless told. */
  notify?: { address: string; port?: number }[];
  /** Largest transfer message, bytes. Default 16,384 (at most 65,535). */
  maxMessageBytes?: number;
  /** Differences kept per zone for IXFR. Default 100. */
  journalDepth?: number;
  /** NOTIFY attempts per zone change and secondary (default 5) and the first wait (default 1 s, doubling). */
  notifyRetries?: number;
  notifyTimeoutMs?: number;
}

export interface XfrDeps {
  /** Everything that is not a transfer: the server passes responder.ts's `handleMessage` with its options. */
  answer?: (msg: Buffer, transport: Transport, ctx?: AnswerContext) => Promise<Handled>;
  /** Seconds since the epoch, for TSIG times. */
  clock?: () => number;
  /** DNSSEC keys of the zones (the online signer's): a zone with a key is transferred signed. */
  keys?: ZoneKeys;
  /** The signed copy of a zone to transfer (the online signer's `materialise`, so that its ZONEMD is the one queries get). Default: signed anew. */
  materialise?: (zone: Zone, key: ZoneKey) => SignedZone;
}

/** What the server sends for one message: one response, or a stream of them (TCP transfers). */
export interface XfrHandled extends Handled {
  /** The messages of a zone transfer, in order, each ready to frame. */
  stream?: Iterable<Buffer>;
}

export interface XfrStats {
  axfr: number;
  ixfr: number;
  ixfrIncremental: number;
  ixfrFull: number;
  refused: number;
  tsigVerified: number;
  tsigFailed: number;
  messages: number;
}

const AXFR = 252;
const IXFR = 251;
const CLASS_IN = 1;

/** A zone as one consistent read of the projections: serial, SOA and every record. */
export interface ZoneSnapshot {
  name: string;
  imvu: string;
  serial: number;
  /** The platform's DNS suffix (the SOA's MNAME is `ns1.<suffix>`). */
  suffix: string;
  soa: Answer;
  records: ServedRR[];
}

export function soaAnswer(zone: string, serial: number, suffix: string): SoaAnswer {
  const soa = synthesiseSoa(zone, serial, suffix);
  return {
    name: zone,
    type: 'SOA',
    class: 'IN',
    ttl: SOA_TTL,
    data: { ...soa, mname: soa.mname.replace(/\.$/, ''), rname: soa.rname.replace(/\.$/, '') },
  } as SoaAnswer;
}

/** Reads a zone from the projections, checking that the records belong to the serial read. */
export async function readZone(store: Store, zone: string): Promise<ZoneSnapshot | undefined> {
  const read = await readZoneRows(store, zone);
  if (!read) return undefined;
  const { serial, suffix } = read;
  return { name: zone, imvu: read.imvu, serial, suffix, soa: soaAnswer(zone, serial, suffix), records: servedRecords(zone, read.rows) };
}

// ---------------------------------------------------------------------------------------------
// Messages

interface Frame {
  id: number;
  flags: number;
  question: Question[];
}

/** Bytes one record takes in a message (dns-packet does not compress names, so this is exact). */
function rrLength(rr: Answer): number {
  return dnsPacket.encodingLength({ answers: [rr] }) - 12;
}

/**
 * Packs `records` into messages of at most `maxBytes` (each keeps `reserve` bytes for a TSIG).
 * The question goes in the first message only (RFC 5936 2.2.1). A record too big for any message
 * still goes alone in one (a message carries at least one record).
 */
export function* packMessages(frame: Frame, records: Iterable<Answer>, maxBytes: number, reserve = 0): Generator<Buffer> {
  let questions = frame.question;
  const base = () => dnsPacket.encodingLength({ questions });
  let batch: Answer[] = [];
  let size = base();
  const flush = () => {
    const msg = dnsPacket.encode({ type: 'response', id: frame.id, flags: frame.flags, questions, answers: batch });
    questions = [];
    batch = [];
    size = base();
    return msg;
  };
  for (const rr of records) {
    const len = rrLength(rr);
    if (batch.length > 0 && size + len + reserve > maxBytes) yield flush();
    batch.push(rr);
    size += len;
  }
  if (batch.length > 0) yield flush();
}

/**
 * The records of an IXFR answer (RFC 1995 section 4): new SOA, then per difference old SOA,
 * deletions, new SOA, additions; new SOA. With `zonemd` (the apex ZONEMD of the zone at a serial),
 * every difference also deletes the old serial's ZONEMD and adds the new one's (RFC 8976: the
 * ZONEMD changes with every change of the zone, serial included).
 */
export function* ixfrRecords(zone: string, suffix: string, current: Answer, deltas: readonly Delta[], zonemd?: (serial: number) => Answer): Generator<Answer> {
  yield current;
  for (const d of deltas) {
    yield soaAnswer(zone, d.from, suffix);
    if (zonemd) yield zonemd(d.from);
    for (const rr of d.deleted) yield toAnswer(rr);
    yield soaAnswer(zone, d.to, suffix);
    if (zonemd) yield zonemd(d.to);
    for (const rr of d.added) yield toAnswer(rr);
  }
  yield current;
}

/** The apex ZONEMD of an unsigned zone: SHA-384 over its SOA and records (RFC 8976, SIMPLE). */
export function zonemdOf(zone: string, serial: number, suffix: string, records: readonly ServedRR[]): Answer {
  const soa = soaAnswer(zone, serial, suffix);
  const digest = zonemdDigest(zone, serial, [soa, ...records.map(toAnswer)] as { name: string; type: string }[]);
  return zonemdAnswer(zone, SOA_TTL, { serial, scheme: SCHEME_SIMPLE, algorithm: HASH_SHA384, digest });
}

/**
 * The apex ZONEMD of the zone at each serial an IXFR's differences pass through: the current
 * records, and each older state found by undoing the differences from the newest back.
 */
export function zonemdsAlong(zone: string, suffix: string, current: { serial: number; records: readonly ServedRR[] }, deltas: readonly Delta[]): Map<number, Answer> {
  const key = (r: ServedRR) => `${r.owner} ${r.type} ${r.ttl} ${JSON.stringify(r.data)}`;
  const state = new Map(current.records.map((r) => [key(r), r]));
  const out = new Map<number, Answer>([[current.serial, zonemdOf(zone, current.serial, suffix, [...state.values()])]]);
  for (let i = deltas.length - 1; i >= 0; i--) {
    const d = deltas[i]!;
    for (const r of d.added) state.delete(key(r));
    for (const r of d.deleted) state.set(key(r), r);
    out.set(d.from, zonemdOf(zone, d.from, suffix, [...state.values()]));
  }
  return out;
}

export function* axfrRecords(snap: ZoneSnapshot): Generator<Answer> {
  yield snap.soa;
  yield zonemdOf(snap.name, snap.serial, snap.suffix, snap.records);
  for (const rr of snap.records) yield toAnswer(rr);
  yield snap.soa;
}

// ---------------------------------------------------------------------------------------------
// The service

export class XfrService {
  readonly journal: ZoneJournal;
  readonly stats: XfrStats = { axfr: 0, ixfr: 0, ixfrIncremental: 0, ixfrFull: 0, refused: 0, tsigVerified: 0, tsigFailed: 0, messages: 0 };
  private readonly key?: TsigKey;
  private readonly allow?: BlockList;
  private readonly maxBytes: number;

  private readonly answer: (msg: Buffer, transport: Transport, ctx?: AnswerContext) => Promise<Handled>;
  private readonly clock: () => number;
  private readonly keys?: ZoneKeys;
  private readonly materialise: (zone: Zone, key: ZoneKey) => SignedZone;

  constructor(
    private readonly view: ZoneView,
    private readonly store: Store,
    opts: XfrOptions,
    deps: XfrDeps = {},
  ) {
    this.answer = deps.answer ?? ((msg, transport, ctx) => handleMessage(view, msg, transport, ctx));
    this.clock = deps.clock ?? (() => Math.floor(Date.now() / 1000));
    this.keys = deps.keys;
    this.materialise = deps.materialise ?? ((zone, key) => signZone(zone, key));
    const checked = checkXfrOptions(opts);
    this.key = checked.key;
    this.allow = checked.allow;
    this.maxBytes = Math.min(65535, Math.max(512, opts.maxMessageBytes ?? 16384));
    this.journal = new ZoneJournal(store, { depth: opts.journalDepth });
  }

  /** Is `address` on the allow-list? (IPv4-mapped IPv6 addresses count as IPv4.) */
  allowed(address: string): boolean {
    if (!this.allow) return false;
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    if (v4) return this.allow.check(v4, 'ipv4');
    const family = isIP(address);
    return family !== 0 && this.allow.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** `ctx` (the client's address, the rate limiter) goes to the responder with everything that is not a transfer. */
  async handle(msg: Buffer, transport: Transport, peer: string, ctx: AnswerContext = { peer }): Promise<XfrHandled> {
    // Responses, runts and anything malformed: the responder decides (nothing, or FORMERR).
    if (msg.length < 12 || msg.readUInt16BE(2) & QR) return this.answer(msg, transport, ctx);
    let layout: WireLayout;
    try {
      layout = walk(msg);
    } catch {
      return this.answer(msg, transport, ctx);
    }
    const opcode = (msg.readUInt16BE(2) >> 11) & 0xf;
    const qtype = layout.qdcount === 1 ? layout.qtype : undefined;
    const transfer = opcode === 0 && (qtype === AXFR || qtype === IXFR);
    const signed = layout.lastAdditional?.type === TSIG_TYPE || layout.types.includes(TSIG_TYPE);
    if (!transfer && !signed) return this.answer(msg, transport, ctx);

    let body = msg;
    let sign: (() => ResponseSigner) | undefined;
    if (signed) {
      const checked = this.checkTsig(msg, layout);
      if (!('stripped' in checked)) return checked;
      body = checked.stripped;
      sign = checked.sign;
    }
    if (!transfer) return this.signed(await this.answer(body, transport, ctx), body, transport, sign!);
    return this.transfer(body, transport, peer, qtype === AXFR ? 'AXFR' : 'IXFR', sign, ctx);
  }

  /** Verifies the request's TSIG: a signer factory and the stripped message, or the error response. */
  private checkTsig(msg: Buffer, layout: WireLayout): { stripped: Buffer; sign: () => ResponseSigner } | XfrHandled {
    const opcode = (msg.readUInt16BE(2) >> 11) & 0xf;
    const frame = {
      id: msg.readUInt16BE(0),
      flags: QR | (opcode << 11) | (msg.readUInt16BE(2) & (RD | CD)),
      // The question as received (a client matches the answer to it), unless its name is
      // compressed: a pointer would point elsewhere in our answer.
      question: layout.qdcount === 1 && !compressed(msg, 12) ? msg.subarray(12, layout.answersAt) : Buffer.alloc(0),
    };
    const bare = (rcode: number) => {
      const head = Buffer.alloc(12);
      head.writeUInt16BE(frame.id, 0);
      head.writeUInt16BE(frame.flags | rcode, 2);
      head.writeUInt16BE(frame.question.length ? 1 : 0, 4);
      return Buffer.concat([head, frame.question]);
    };
    const check = verifyRequest(msg, layout, this.key ? [this.key] : [], this.clock());
    if (check.ok) {
      this.stats.tsigVerified++;
      const { key, tsig } = check;
      return { stripped: check.stripped, sign: () => new ResponseSigner(key, tsig.mac, tsig.originalId, this.clock) };
    }
    this.stats.tsigFailed++;
    if (check.rcode === RCODE_FORMERR) return { response: bare(RCODE.FORMERR), rcode: RCODE.FORMERR };
    if (check.error === TSIG_ERROR.BADTIME) {
      // Signed, with the request's time (so the client can verify it) and ours in Other Data (5.2.3).
      const now = Buffer.alloc(6);
      const t = this.clock();
      now.writeUInt16BE(Math.floor(t / 2 ** 32) & 0xffff, 0);
      now.writeUInt32BE(t % 2 ** 32 >>> 0, 2);
      const signer = new ResponseSigner(check.key!, check.tsig.mac, check.tsig.originalId, this.clock);
      return { response: signer.sign(bare(RCODE_NOTAUTH), check.error, now, check.tsig.timeSigned), rcode: RCODE_NOTAUTH };
    }
    // BADKEY, BADSIG, BADTRUNC: unsigned (MAC size 0): we cannot, or must not, sign with the key.
    return { response: appendUnsignedError(bare(RCODE_NOTAUTH), check.tsig, check.error), rcode: RCODE_NOTAUTH };
  }

  /** Signs an ordinary response to a signed query; over UDP, falls back to the signed TC form if the TSIG makes it too big. */
  private signed(h: Handled, query: Buffer, transport: Transport, sign: () => ResponseSigner): XfrHandled {
    if (!h.response) return h;
    const signedTruncated = h.truncated && (() => sign().sign(h.truncated!()));
    let response = sign().sign(h.response);
    if (transport === 'udp' && response.length > udpLimit(query) && signedTruncated) response = signedTruncated();
    // The unsigned forms made for the cache and for slips do not apply to a signed exchange.
    return { ...h, response, truncated: signedTruncated, badCookie: undefined, uncookied: undefined };
  }

  private async transfer(body: Buffer, transport: Transport, peer: string, kind: 'AXFR' | 'IXFR', sign?: () => ResponseSigner, ctx?: AnswerContext): Promise<XfrHandled> {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(body);
    } catch {
      return this.answer(body, transport, ctx);
    }
    const q = query.questions![0]!;
    const frame: Frame = { id: query.id!, flags: QR | AA | ((query.flags ?? 0) & (RD | CD)), question: [q] };
    const signer = sign?.();
    const finish = (msgs: Buffer[]): XfrHandled => {
      const out = signer ? msgs.map((m) => signer.sign(m)) : msgs;
      return { response: out[0], stream: out.slice(1) };
    };
    const error = (rcode: number): XfrHandled => {
      if (rcode === RCODE.REFUSED) this.stats.refused++;
      const msg = dnsPacket.encode({ type: 'response', id: frame.id, flags: (frame.flags & ~AA) | rcode, questions: [q] });
      return { ...finish([msg]), rcode };
    };

    // Access first: an unauthorised client learns nothing, not even whether the zone exists.
    if (!signer && !this.allowed(peer)) return error(RCODE.REFUSED);
    if (kind === 'AXFR' && transport === 'udp') return error(RCODE.REFUSED);
    const classIn = (q.class as unknown) === 'IN' || (q.class as unknown) === CLASS_IN;
    // AXFR: no answer or authority records; IXFR: exactly the client's SOA in authority (RFC 1995 3).
    const counts = [query.answers?.length ?? 0, query.authorities?.length ?? 0];
    const soa = query.authorities?.[0];
    if (counts[0] !== 0 || (kind === 'AXFR' ? counts[1] !== 0 : counts[1] !== 1 || soa?.type !== 'SOA')) return error(RCODE.FORMERR);
    if (!classIn) return error(RCODE.REFUSED);
    const name = lowerAscii(q.name.replace(/\.$/, ''));
    const info = this.view.enclosing(name);
    // We transfer whole zones only: a name that is not the apex of one of ours is not a zone here.
    if (!info || info.name !== name) return error(RCODE_NOTAUTH);
    if (kind === 'IXFR' && lowerAscii((soa!.name ?? '').replace(/\.$/, '')) !== name) return error(RCODE.FORMERR);

    let snap: ZoneSnapshot | undefined;
    try {
      snap = await readZone(this.store, info.name);
    } catch {
      return error(RCODE.SERVFAIL);
    }
    if (!snap) return error(RCODE_NOTAUTH);
    const zoneTag = { name: snap.name, imvu: snap.imvu };
    const reserve = this.key ? tsigOverhead(this.key) : 0;

    // A zone with a DNSSEC key goes out signed: DNSKEY, RRSIGs and the NSEC chain (src/domains/dnssec).
    let signedZone: Answer[] | undefined;
    try {
      if (this.keys && (await this.keys.forZone(snap.name, snap.serial))) {
        // The compiled zone the server answers from when it is at the serial read, else compiled now.
        const viewed = await this.view.zone(info);
        const z = viewed && viewed.serial === snap.serial ? viewed : await compileZone(this.store, snap.name);
        const key = await this.keys.forZone(z.name, z.serial);
        if (key) {
          const s = this.materialise(z, key);
          signedZone = [...s.records, s.records[0]!];
        }
      }
    } catch {
      // A key we cannot use (its private half missing, say): no transfer rather than an unsigned one.
      return error(RCODE.SERVFAIL);
    }
    const full = () => signedZone ?? axfrRecords(snap);

    if (kind === 'AXFR') {
      this.stats.axfr++;
      return { ...this.stream(frame, full(), reserve, signer), zone: zoneTag };
    }

    this.stats.ixfr++;
    const clientSerial = ((soa as SoaAnswer).data.serial ?? 0) >>> 0;
    let plan;
    try {
      plan = await this.journal.plan(snap.name, clientSerial, { serial: snap.serial, records: snap.records });
    } catch {
      plan = { kind: 'full' as const, serial: snap.serial, reason: 'journal unavailable' };
    }
    if (plan.kind === 'uptodate') return { ...finish(packOne(frame, [snap.soa])), zone: zoneTag };
    if (transport === 'udp') {
      // Not up to date: the current SOA with TC, so the client comes back over TCP.
      const msg = dnsPacket.encode({ type: 'response', id: frame.id, flags: frame.flags | TC, questions: [q], answers: [snap.soa] });
      return { ...finish([msg]), zone: zoneTag };
    }
    if (plan.kind === 'deltas' && !signedZone) {
      this.stats.ixfrIncremental++;
      const zonemds = zonemdsAlong(snap.name, snap.suffix, snap, plan.deltas);
      const zonemd = (serial: number) => zonemds.get(serial)!;
      return { ...this.stream(frame, ixfrRecords(snap.name, snap.suffix, snap.soa, plan.deltas, zonemd), reserve, signer), zone: zoneTag };
    }
    this.stats.ixfrFull++;
    return { ...this.stream(frame, full(), reserve, signer), zone: zoneTag };
  }

  /** The first message as `response` and the rest as a lazily built, lazily signed stream. */
  private stream(frame: Frame, records: Iterable<Answer>, reserve: number, signer?: ResponseSigner): XfrHandled {
    const it = packMessages(frame, records, this.maxBytes, reserve);
    const first = it.next();
    const stats = this.stats;
    stats.messages++;
    const response = signer ? signer.sign(first.value as Buffer) : (first.value as Buffer);
    const rest = function* () {
      for (const m of it) {
        stats.messages++;
        yield signer ? signer.sign(m) : m;
      }
    };
    return { response, stream: rest() };
  }
}

/** Parses and checks the options (the server calls it before it opens anything): throws on a bad key, address or target. */
export function checkXfrOptions(opts: XfrOptions): { key?: TsigKey; allow?: BlockList } {
  const key = opts.tsig ? tsigKey(opts.tsig) : undefined;
  let allow: BlockList | undefined;
  if (opts.allow?.length) {
    allow = new BlockList();
    for (const a of opts.allow) {
      const [addr, bits, extra] = a.split('/');
      const family = isIP(addr!);
      const max = family === 6 ? 128 : 32;
      if (!family || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max)))
        throw new Error(`xfr.allow: ${a} is not an address or prefix`);
      const type = family === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) allow.addAddress(addr!, type);
      else allow.addSubnet(addr!, Number(bits), type);
    }
  }
  for (const t of opts.notify ?? []) {
    if (!isIP(t.address)) throw new Error(`xfr.notify: ${t.address} is not an IP address`);
    if (t.port !== undefined && !(Number.isInteger(t.port) && t.port > 0 && t.port < 65536)) throw new Error(`xfr.notify: bad port ${t.port}`);
  }
  return { key, allow };
}

function packOne(frame: Frame, answers: Answer[]): Buffer[] {
  return [dnsPacket.encode({ type: 'response', id: frame.id, flags: frame.flags, questions: frame.question, answers })];
}

/** The UDP size a query allows (as responder.ts computes it). */
function udpLimit(query: Buffer): number {
  try {
    const opt = (dnsPacket.decode(query).additionals ?? []).find((a): a is OptAnswer => a.type === 'OPT');
    return opt ? Math.min(MAX_UDP_PAYLOAD, Math.max(CLASSIC_UDP_PAYLOAD, opt.udpPayloadSize)) : CLASSIC_UDP_PAYLOAD;
  } catch {
    return CLASSIC_UDP_PAYLOAD;
  }
}

/** Does the name at `off` use a compression pointer? (The message was walked: the name is well formed.) */
function compressed(msg: Buffer, off: number): boolean {
  for (let p = off; p < msg.length && msg[p] !== 0; p += 1 + msg[p]!) if ((msg[p]! & 0xc0) !== 0) return true;
  return false;
}
