import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';

// DNSSEC's canonical forms (RFC 4034 section 6, as amended by RFC 6840 5.1): names as lower-case
// uncompressed wire labels, RDATA as dns-packet puts it on the wire with the embedded names of
// the types listed in RFC 4034 6.2 lower-cased, and the RRs of an RRset sorted by their RDATA as
// left-justified octet strings, duplicates removed. The RDATA bytes come from the same encoder
// that writes our responses, so what is signed is exactly what a validator receives.

/** RR type codes of what this server stores, answers and signs (RFC 1035, 3596, 2782, 8659, 4034). */
export const TYPE_CODE: Readonly<Record<string, number>> = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DS: 43, RRSIG: 46, NSEC: 47, DNSKEY: 48, CAA: 257,
};

/** RFC 9824 section 3.3: the pseudo-type that marks a compact-denial NSEC for a nonexistent name. */
export const NXNAME = 128;

export function typeCode(type: string): number {
  const code = TYPE_CODE[type];
  if (code !== undefined) return code;
  const m = /^(?:UNKNOWN_|TYPE)(\d{1,5})$/.exec(type);
  if (m && Number(m[1]) < 65536) return Number(m[1]);
  throw new Error(`no type code for ${type}`);
}

/** The name dns-packet uses for a type code in NSEC bitmaps (`UNKNOWN_128` for NXNAME). */
export function typeName(code: number): string {
  for (const [name, c] of Object.entries(TYPE_CODE)) if (c === code) return name;
  return `UNKNOWN_${code}`;
}

/** Labels of an absolute name without the trailing dot ('' or '.' is the root). */
export function labelsOf(name: string): string[] {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n === '' ? [] : n.split('.');
}

/** RRSIG Labels field (RFC 4034 3.1.3): the owner's labels, not counting the root nor a leading `*`. */
export function labelCount(owner: string): number {
  const labels = labelsOf(owner);
  return labels[0] === '*' ? labels.length - 1 : labels.length;
}

/** A name in canonical wire form: uncompressed, ASCII letters lower-cased (RFC 4034 6.2). */
export function nameWire(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const label of labelsOf(name)) {
    const bytes = Buffer.from(label, 'utf8');
    if (bytes.length === 0 || bytes.length > 63) throw new Error(`bad label in ${JSON.stringify(name)}`);
    for (let i = 0; i < bytes.length; i++) if (bytes[i]! >= 0x41 && bytes[i]! <= 0x5a) bytes[i]! |= 0x20;
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** RFC 4034 6.1 canonical name order: labels compared from the right as lower-cased octet strings. */
export function compareNames(a: string, b: string): number {
  const la = labelsOf(a).reverse();
  const lb = labelsOf(b).reverse();
  for (let i = 0; i < Math.min(la.length, lb.length); i++) {
    const c = Buffer.compare(nameWire(la[i]!).subarray(1, -1), nameWire(lb[i]!).subarray(1, -1));
    if (c !== 0) return c;
  }
  return la.length - lb.length;
}

interface AnswerCodec {
  encode(a: Answer): Buffer;
}
// dns-packet encodes single RRs too; its type definitions only omit the export.
const rrCodec = (dnsPacket as unknown as { answer: AnswerCodec }).answer;

const lower = (s: string) => s.replace(/[A-Z]+/g, (c) => c.toLowerCase());

/** One whole RR as dns-packet encodes it (owner uncompressed). */
export function rrWire(a: Answer): Buffer {
  return rrCodec.encode(a);
}

/** The RDATA as dns-packet encodes it (no length prefix). */
export function rdataWire(type: string, data: unknown): Buffer {
  // An RR owned by the root: 1 byte of name, then type, class, TTL, RDLENGTH (10 bytes), then RDATA.
  // dns-packet's TXT encoder replaces the strings of the array it is given by Buffers: encode a
  // copy, so that digesting or signing a record never changes the caller's record.
  const own = Array.isArray(data) ? [...(data as unknown[])] : data;
  const rr = rrCodec.encode({ name: '.', type, class: 'IN', ttl: 0, data: own } as Answer);
  return rr.subarray(11);
}

/** RDATA in canonical form: the embedded names of NS, CNAME, SOA, MX, SRV and RRSIG lower-cased (RFC 4034 6.2, RFC 6840 5.1). */
export function canonicalRdata(type: string, data: unknown): Buffer {
  switch (type) {
    case 'NS':
    case 'CNAME':
      return rdataWire(type, lower(String(data)));
    case 'MX': {
      const d = data as { preference: number; exchange: string };
      return rdataWire(type, { ...d, exchange: lower(d.exchange) });
    }
    case 'SRV': {
      const d = data as { priority: number; weight: number; port: number; target: string };
      return rdataWire(type, { ...d, target: lower(d.target) });
    }
    case 'SOA': {
      const d = data as { mname: string; rname: string };
      return rdataWire(type, { ...d, mname: lower(d.mname), rname: lower(d.rname) });
    }
    case 'RRSIG': {
      const d = data as { signersName: string };
      return rdataWire(type, { ...d, signersName: lower(d.signersName) });
    }
    default:
      return rdataWire(type, data);
  }
}

/**
 * The RRs of one RRset in canonical form and order (RFC 4034 6.3), as they enter a signature:
 * owner | type | class IN | original TTL | RDLENGTH | RDATA, sorted by RDATA, duplicates removed.
 */
export function canonicalRRset(owner: string, type: string, ttl: number, data: readonly unknown[]): Buffer {
  const head = nameWire(owner);
  const rdatas = data.map((d) => canonicalRdata(type, d)).sort(Buffer.compare);
  const parts: Buffer[] = [];
  let previous: Buffer | undefined;
  for (const rd of rdatas) {
    if (previous && previous.equals(rd)) continue;
    previous = rd;
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(typeCode(type), 0);
    fixed.writeUInt16BE(1, 2); // class IN
    fixed.writeUInt32BE(ttl >>> 0, 4);
    fixed.writeUInt16BE(rd.length, 8);
    parts.push(head, fixed, rd);
  }
  return Buffer.concat(parts);
}
