import dnsPacket from 'dns-packet';
import type { DecodedPacket, OptAnswer, Packet, Question } from 'dns-packet';
import { lowerAscii } from '../records/rdata.ts';
import type { OnlineSigner } from '../dnssec/online.ts';
import type { AnswerSet } from './zone.ts';
import type { ZoneView } from './zone-view.ts';

// One DNS message in, at most one out: parsing, the checks of RFC 1035 / 6891 / 8482, and fitting
// the answer into the transport's size. No sockets here (see server.ts), no zone logic (zone.ts).

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

export interface Handled {
  /** The response to send; undefined means send nothing (a response packet, a runt). */
  response?: Buffer;
  /** The same response emptied and marked TC, for response-rate-limiting slips. */
  truncated?: () => Buffer;
  /** Set when the response answers for a hosted zone: what metering counts (and the serial answered from, for the response cache). */
  zone?: { name: string; imvu: string; serial?: number };
  rcode?: number;
}

/** The header and question of a response, before its sections are filled. */
interface Frame {
  id: number;
  flags: number;
  questions: Question[];
  opt?: OptAnswer;
}

function encode(frame: Frame, rcode: number, sections: Pick<Packet, 'answers' | 'authorities' | 'additionals'> = {}, extra = 0): Buffer {
  const additionals = [...(sections.additionals ?? [])];
  if (frame.opt) additionals.push({ ...frame.opt, extendedRcode: rcode >> 4 });
  return dnsPacket.encode({
    type: 'response',
    id: frame.id,
    flags: frame.flags | extra | (rcode & 0xf),
    questions: frame.questions,
    answers: sections.answers ?? [],
    authorities: sections.authorities ?? [],
    additionals,
  });
}

function reply(frame: Frame, rcode: number): Handled {
  const response = encode(frame, rcode);
  return { response, rcode, truncated: () => encode(frame, rcode, {}, TC) };
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

export async function handleMessage(view: ZoneView, msg: Buffer, transport: Transport, dnssec?: OnlineSigner): Promise<Handled> {
  if (msg.length < 12) return {};
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  // Never answer a response: two servers answering each other's errors would loop forever.
  if (flags & QR) return {};
  const opcode = (flags >> 11) & 0xf;
  const bare: Frame = { id, flags: (opcode << 11) | (flags & (RD | CD)), questions: [] };
  // A query has one question, no answer or authority records, and at most a few additional ones
  // (OPT, TSIG). Checking the counts before decoding bounds the work per message: names may chain
  // compression pointers, so decoding thousands of records costs time quadratic in their number.
  const counts = [msg.readUInt16BE(4), msg.readUInt16BE(6), msg.readUInt16BE(8), msg.readUInt16BE(10)];
  const shaped = counts[0] === 1 && counts[1] === 0 && counts[2] === 0 && counts[3]! <= MAX_ADDITIONAL;
  if (!shaped) return reply(bare, opcode === 0 ? RCODE.FORMERR : RCODE.NOTIMP);

  let query: DecodedPacket;
  try {
    query = dnsPacket.decode(msg);
    if (dnsPacket.decode.bytes !== msg.length) throw new Error('trailing bytes after the message');
  } catch {
    return reply(bare, opcode === 0 ? RCODE.FORMERR : RCODE.NOTIMP);
  }
  const q = query.questions![0]!;
  const echo = faithful(q, msg) ? [q] : [];

  // EDNS0 (RFC 6891): at most one OPT, owned by the root.
  const opts = (query.additionals ?? []).filter((a): a is OptAnswer => a.type === 'OPT');
  if (opts.length > 1 || (opts[0] && opts[0].name !== '.')) return reply({ ...bare, questions: echo }, RCODE.FORMERR);
  const clientOpt = opts[0];
  const frame: Frame = {
    ...bare,
    questions: echo,
    opt: clientOpt && {
      name: '.',
      type: 'OPT',
      udpPayloadSize: MAX_UDP_PAYLOAD,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: clientOpt.flag_do ? DO : 0,
      flag_do: clientOpt.flag_do,
      options: [],
    },
  };
  if (clientOpt && clientOpt.ednsVersion > 0) return reply(frame, RCODE.BADVERS);
  if (opcode !== 0) return reply(frame, RCODE.NOTIMP);
  if (q.type === 'OPT') return reply(frame, RCODE.FORMERR);
  // A name that does not survive decoding (a dot or invalid UTF-8 inside a label), an unknown
  // class: nothing we host can match it, and it could not be echoed faithfully.
  if (echo.length === 0 || q.class !== 'IN') return reply(frame, RCODE.REFUSED);
  // Zone transfers are not offered (yet): refuse rather than pretend.
  if (q.type === 'AXFR' || q.type === 'IXFR') return reply(frame, RCODE.REFUSED);

  const name = q.name === '.' ? '' : lowerAscii(q.name);
  let info = view.enclosing(name);
  if (!info) return reply(frame, RCODE.REFUSED);
  // The DS of a zone is the parent's data (RFC 4035 3.1.4.1): at a zone's apex it is answered from
  // the zone above when that one is hosted here too (the platform's zone for every IMVU zone).
  if (q.type === 'DS' && info.name === name) {
    const dot = name.indexOf('.');
    const parent = dot > 0 ? view.enclosing(name.slice(dot + 1)) : undefined;
    if (parent) info = parent;
  }
  let zone;
  try {
    zone = await view.zone(info);
  } catch {
    return reply(frame, RCODE.SERVFAIL);
  }
  if (!zone) return reply(frame, RCODE.REFUSED);

  let set = zone.lookup(name, q.name, q.type);
  // DNSSEC (src/domains/dnssec/online.ts): signatures and denial proofs when the query set DO.
  if (dnssec) {
    try {
      const secured = dnssec.secure(zone, { name, echo: q.name, type: q.type, dnssecOk: !!clientOpt?.flag_do }, set);
      set = secured instanceof Promise ? await secured : secured;
    } catch {
      return reply(frame, RCODE.SERVFAIL);
    }
  }
  const limit =
    transport === 'tcp' ? 65535 : clientOpt ? Math.min(MAX_UDP_PAYLOAD, Math.max(CLASSIC_UDP_PAYLOAD, clientOpt.udpPayloadSize)) : CLASSIC_UDP_PAYLOAD;
  const response = fit(frame, set.rcode, set, limit);
  return {
    response,
    rcode: set.rcode,
    zone: { name: zone.name, imvu: zone.imvu, serial: zone.serial },
    truncated: () => encode(frame, set.rcode, {}, (set.aa ? AA : 0) | TC),
  };
}

