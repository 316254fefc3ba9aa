// FETCH data items: ENVELOPE, BODYSTRUCTURE and BODY[section]<partial> over one message's bytes
// (CRLF line ends), with their IMAP encodings (quoted strings where safe, literals otherwise).
import { countLines, header, type Address, type Header, parseAddressList, paramsOf, splitParams, type Part, resolvePart } from './mime.ts';

/** A piece of a response: text, or bytes sent as a literal. */
export type Chunk = string | { literal: Buffer };

const SAFE_QUOTED = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;

export function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

/** An IMAP string: quoted when it can be, a literal otherwise (8-bit bytes, CR/LF, long). */
export function istring(s: string | Buffer): Chunk {
  const str = typeof s === 'string' ? s : s.toString('latin1');
  if (str.length < 1024 && /^[\x20-\x7e]*$/.test(str)) return SAFE_QUOTED.test(str) ? `"${str}"` : quote(str);
  return { literal: Buffer.from(str, 'latin1') };
}

export function nstring(s: string | null | undefined): Chunk {
  return s === null || s === undefined ? 'NIL' : istring(s);
}

function addrList(list: Address[]): Chunk[] {
  if (list.length === 0) return ['NIL'];
  const out: Chunk[] = ['('];
  for (const a of list) {
    if (a.group === 'start') out.push('(NIL NIL ', nstring(a.name), ' NIL)');
    else if (a.group === 'end') out.push('(NIL NIL NIL NIL)');
    else out.push('(', nstring(a.name), ' NIL ', nstring(a.mailbox), ' ', nstring(a.host), ')');
  }
  out.push(')');
  return out;
}

export function envelope(h: Header[]): Chunk[] {
  const from = parseAddressList(header(h, 'from'));
  const sender = parseAddressList(header(h, 'sender'));
  const replyTo = parseAddressList(header(h, 'reply-to'));
  return [
    '(', nstring(header(h, 'date')), ' ', nstring(header(h, 'subject')), ' ',
    ...addrList(from), ' ', ...addrList(sender.length ? sender : from), ' ', ...addrList(replyTo.length ? replyTo : from), ' ',
    ...addrList(parseAddressList(header(h, 'to'))), ' ', ...addrList(parseAddressList(header(h, 'cc'))), ' ',
    ...addrList(parseAddressList(header(h, 'bcc'))), ' ', nstring(header(h, 'in-reply-to')), ' ',
    nstring(header(h, 'message-id')), ')',
  ];
}

function paramList(params: [string, string][]): Chunk[] {
  if (params.length === 0) return ['NIL'];
  const out: Chunk[] = ['('];
  params.forEach(([k, v], i) => out.push(i ? ' ' : '', istring(k.toUpperCase()), ' ', istring(v)));
  out.push(')');
  return out;
}

function disposition(h: Header[]): Chunk[] {
  const v = header(h, 'content-disposition');
  if (!v) return ['NIL'];
  const [main, ...rest] = splitParams(v);
  return ['(', istring((main ?? '').trim().toUpperCase()), ' ', ...paramList(paramsOf(rest)), ')'];
}

/** BODY (extensible = false) or BODYSTRUCTURE (true) of a part. */
export function bodyStructure(buf: Buffer, p: Part, ext: boolean): Chunk[] {
  if (p.children) {
    const out: Chunk[] = ['('];
    for (const c of p.children) out.push(...bodyStructure(buf, c, ext));
    out.push(' ', istring(p.subtype.toUpperCase()));
    if (ext) {
      out.push(' ', ...paramList(p.params), ' ', ...disposition(p.headers), ' ', nstring(header(p.headers, 'content-language')),
        ' ', nstring(header(p.headers, 'content-location')));
    }
    out.push(')');
    return out;
  }
  const h = p.headers;
  const size = p.end - p.bodyStart;
  const enc = (header(h, 'content-transfer-encoding') ?? '7BIT').trim().toUpperCase();
  const out: Chunk[] = [
    '(', istring(p.type.toUpperCase()), ' ', istring(p.subtype.toUpperCase()), ' ', ...paramList(p.params), ' ',
    nstring(header(h, 'content-id')), ' ', nstring(header(h, 'content-description')), ' ', istring(enc), ' ', String(size),
  ];
  if (p.msg) {
    out.push(' ', ...envelope(p.msg.headers), ' ', ...bodyStructure(buf, p.msg, ext), ' ', String(countLines(buf, p.bodyStart, p.end)));
  } else if (p.type === 'text') {
    out.push(' ', String(countLines(buf, p.bodyStart, p.end)));
  }
  if (ext) {
    out.push(' ', nstring(header(h, 'content-md5')), ' ', ...disposition(h), ' ', nstring(header(h, 'content-language')),
      ' ', nstring(header(h, 'content-location')));
  }
  out.push(')');
  return out;
}

export interface Section {
  path: number[];
  /** '' (whole part), HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME. */
  spec: '' | 'HEADER' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT' | 'TEXT' | 'MIME';
  fields: string[];
}

/** Raw header fields of buf[start, end) with their CRLFs, for HEADER.FIELDS. */
function rawFields(buf: Buffer, start: number, end: number): { name: string; raw: Buffer }[] {
  const out: { name: string; raw: Buffer }[] = [];
  let i = start;
  while (i < end) {
    let j = buf.indexOf('\r\n', i);
    while (j !== -1 && j + 2 < end && (buf[j + 2] === 32 || buf[j + 2] === 9)) j = buf.indexOf('\r\n', j + 2);
    const stop = j === -1 || j >= end ? end : j + 2;
    const colon = buf.indexOf(58, i);
    const name = colon !== -1 && colon < stop ? buf.toString('latin1', i, colon).trim().toLowerCase() : '';
    if (stop - i > 2) out.push({ name, raw: buf.subarray(i, stop) });
    i = stop;
  }
  return out;
}

/** The bytes a section names; null if the part does not exist (served as empty). */
export function sectionBytes(buf: Buffer, root: Part | null, s: Section): Buffer {
  let target: Part;
  if (s.path.length === 0) {
    if (!root) {
      // Whole message without parsing.
      if (s.spec === '') return buf;
    }
    target = root!;
  } else {
    const p = root ? resolvePart(root, s.path) : null;
    if (!p) return Buffer.alloc(0);
    target = p;
  }
  if (s.spec === '') return s.path.length === 0 ? buf : buf.subarray(target.bodyStart, target.end);
  if (s.spec === 'MIME') return buf.subarray(target.hdrStart, target.bodyStart);
  // HEADER / TEXT of a part path address the message inside a message/rfc822 part.
  const m = s.path.length === 0 ? target : target.msg;
  if (!m) return Buffer.alloc(0);
  if (s.spec === 'TEXT') return buf.subarray(m.bodyStart, m.end);
  if (s.spec === 'HEADER') return buf.subarray(m.hdrStart, m.bodyStart);
  const want = new Set(s.fields.map((f) => f.toLowerCase()));
  const hdrEnd = m.bodyStart >= m.hdrStart + 2 ? m.bodyStart - 2 : m.bodyStart;
  const picked = rawFields(buf, m.hdrStart, hdrEnd).filter((f) => want.has(f.name) === (s.spec === 'HEADER.FIELDS'));
  return Buffer.concat([...picked.map((f) => f.raw), Buffer.from('\r\n')]);
}

/** Whether a section needs the MIME structure (anything but the whole message or its header). */
export function needsStructure(s: Section): boolean {
  return s.path.length > 0 || s.spec !== '';
}
