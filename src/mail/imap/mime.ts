// A small MIME structure parser that keeps byte offsets: BODY[n.m], BODYSTRUCTURE and ENVELOPE all
// address ranges of the stored message, so nothing is decoded or re-serialised. Input is hostile:
// nesting depth and part count are bounded; past the bound a part is served as an opaque leaf.

export const MAX_DEPTH = 24;
export const MAX_PARTS = 2000;

export interface Header {
  /** Lower-case name. */
  name: string;
  /** Unfolded raw value (without the name and colon). */
  value: string;
}

export interface Part {
  hdrStart: number;
  bodyStart: number;
  end: number;
  headers: Header[];
  type: string;
  subtype: string;
  params: [string, string][];
  /** Children of a multipart. */
  children?: Part[];
  /** The message inside a message/rfc822 part. */
  msg?: Part;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Header fields of buf[start, end): unfolded, in order. */
export function parseHeaders(buf: Buffer, start: number, end: number): Header[] {
  const text = buf.toString('latin1', start, end);
  const out: Header[] = [];
  for (const raw of text.split(/\r\n(?![ \t])/)) {
    const i = raw.indexOf(':');
    if (i <= 0) continue;
    const name = raw.slice(0, i).trim().toLowerCase();
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) continue;
    out.push({ name, value: raw.slice(i + 1).replace(/\r\n/g, '').trim() });
  }
  return out;
}

export function header(h: Header[], name: string): string | undefined {
  return h.find((x) => x.name === name)?.value;
}

/** `type/subtype; a=b; c="d"` into its pieces (lower-case type, subtype and parameter names). */
export function parseContentType(v: string | undefined): { type: string; subtype: string; params: [string, string][] } {
  if (!v) return { type: 'text', subtype: 'plain', params: [['charset', 'us-ascii']] };
  const [main, ...rest] = splitParams(v);
  const m = /^\s*([^\s/;]+)\s*\/\s*([^\s;]+)/.exec(main ?? '');
  const type = m ? m[1]!.toLowerCase() : 'text';
  const subtype = m ? m[2]!.toLowerCase() : 'plain';
  return { type, subtype, params: paramsOf(rest) };
}

export function splitParams(v: string): string[] {
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === '"' && v[i - 1] !== '\\') q = !q;
    if (c === ';' && !q) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export function paramsOf(rest: string[]): [string, string][] {
  const params: [string, string][] = [];
  for (const p of rest) {
    const i = p.indexOf('=');
    if (i <= 0) continue;
    let val = p.slice(i + 1).trim();
    if (val.startsWith('"') && val.endsWith('"') && val.length >= 2) val = val.slice(1, -1).replace(/\\(.)/g, '$1');
    params.push([p.slice(0, i).trim().toLowerCase(), val]);
    if (params.length >= 64) break;
  }
  return params;
}

/** Parse the message buf[start, end) (a message or an embedded message/rfc822). */
export function parseMessage(buf: Buffer, start = 0, end = buf.length): Part {
  const budget = { parts: 0 };
  return parsePart(buf, start, end, 0, budget, null);
}

function parsePart(buf: Buffer, start: number, end: number, depth: number, budget: { parts: number }, defaultType: string | null): Part {
  budget.parts++;
  let bodyStart: number;
  let hdrEnd: number;
  if (buf[start] === 13 && buf[start + 1] === 10) {
    // No header at all: the body starts after the empty line.
    hdrEnd = start;
    bodyStart = Math.min(start + 2, end);
  } else {
    const i = buf.indexOf(CRLFCRLF, start);
    if (i === -1 || i + 4 > end) {
      hdrEnd = end;
      bodyStart = end;
    } else {
      hdrEnd = i + 2;
      bodyStart = i + 4;
    }
  }
  const headers = parseHeaders(buf, start, hdrEnd);
  const ctHeader = header(headers, 'content-type');
  let ct = parseContentType(ctHeader);
  if (!ctHeader && defaultType === 'message/rfc822') ct = { type: 'message', subtype: 'rfc822', params: [] };
  const part: Part = { hdrStart: start, bodyStart, end, headers, ...ct };
  const deep = depth >= MAX_DEPTH || budget.parts >= MAX_PARTS;
  if (ct.type === 'multipart') {
    const boundary = ct.params.find(([k]) => k === 'boundary')?.[1];
    if (!boundary || deep) {
      // A multipart we will not descend into is served as an opaque leaf.
      part.type = 'application';
      part.subtype = 'octet-stream';
      return part;
    }
    const ranges = splitMultipart(buf, bodyStart, end, boundary);
    const childDefault = ct.subtype === 'digest' ? 'message/rfc822' : null;
    part.children = ranges.slice(0, MAX_PARTS).map(([s, e]) => parsePart(buf, s, e, depth + 1, budget, childDefault));
    if (part.children.length === 0) {
      // RFC 3501 wants at least one part: an empty text part stands in.
      part.children = [{ hdrStart: bodyStart, bodyStart, end: bodyStart, headers: [], type: 'text', subtype: 'plain', params: [] }];
    }
  } else if (ct.type === 'message' && ct.subtype === 'rfc822' && !deep) {
    part.msg = parsePart(buf, bodyStart, end, depth + 1, budget, null);
  }
  return part;
}

/** Body ranges of a multipart body: between `--boundary` lines, the CRLF before each belonging to the delimiter. */
function splitMultipart(buf: Buffer, start: number, end: number, boundary: string): [number, number][] {
  const delim = Buffer.from(`--${boundary}`, 'latin1');
  const out: [number, number][] = [];
  let partStart = -1;
  let pos = start;
  while (pos < end) {
    const i = buf.indexOf(delim, pos);
    if (i === -1 || i >= end) break;
    const atLineStart = i === start || (buf[i - 1] === 10 && buf[i - 2] === 13);
    if (!atLineStart) {
      pos = i + 1;
      continue;
    }
    const after = i + delim.length;
    const closing = buf[after] === 45 && buf[after + 1] === 45;
    // The rest of the delimiter line (transport padding) up to CRLF.
    let eol = buf.indexOf(10, after);
    if (eol === -1 || eol >= end) eol = end - 1;
    // "--b1" must not match "--b10": only "--" or white space may follow the boundary.
    if (!closing && !/^[ \t]*\r?$/.test(buf.toString('latin1', after, Math.max(after, eol)))) {
      pos = after;
      continue;
    }
    if (partStart !== -1) {
      const partEnd = i === start ? i : i - 2;
      out.push([partStart, Math.max(partStart, partEnd)]);
      if (out.length >= MAX_PARTS) return out;
    }
    if (closing) return out;
    partStart = Math.min(eol + 1, end);
    pos = partStart;
  }
  if (partStart !== -1) out.push([partStart, end]);
  return out;
}

/** Resolve a section part number path (1-based) to a part; null if there is none. */
export function resolvePart(root: Part, path: number[]): Part | null {
  let cur = root;
  for (let i = 0; i < path.length; i++) {
    const n = path[i]!;
    if (i > 0 && cur.msg) cur = cur.msg;
    if (cur.children) {
      const c = cur.children[n - 1];
      if (!c) return null;
      cur = c;
    } else if (n !== 1) return null;
  }
  return cur;
}

export function countLines(buf: Buffer, start: number, end: number): number {
  let n = 0;
  for (let i = buf.indexOf(10, start); i !== -1 && i < end; i = buf.indexOf(10, i + 1)) n++;
  // A last line without CRLF still counts.
  if (end > start && buf[end - 1] !== 10) n++;
  return n;
}

// ---- Addresses (ENVELOPE) ----

export interface Address {
  name: string | null;
  mailbox: string | null;
  host: string | null;
  /** Group start (name set, mailbox/host null) or end (all null) markers. */
  group?: 'start' | 'end';
}

/** RFC 5322 address list, tolerant of what real mail contains; comments dropped. */
export function parseAddressList(v: string | undefined): Address[] {
  if (!v) return [];
  const tokens = tokenize(v.slice(0, 16384));
  const out: Address[] = [];
  let i = 0;
  const one = (stop: Set<string>): Address | null => {
    const words: string[] = [];
    let angle: string | null = null;
    while (i < tokens.length && !stop.has(tokens[i]!.t)) {
      const tok = tokens[i]!;
      if (tok.t === '<') {
        i++;
        let a = '';
        while (i < tokens.length && tokens[i]!.t !== '>') a += tokens[i++]!.v;
        i++;
        angle = a;
      } else {
        words.push(tok.v);
        i++;
      }
    }
    if (angle === null && words.length === 0) return null;
    const spec = angle ?? words.join('');
    const name = angle !== null && words.length ? words.join(' ') : null;
    const route = spec.lastIndexOf(':');
    const addr = route >= 0 ? spec.slice(route + 1) : spec;
    const at = addr.lastIndexOf('@');
    return at >= 0
      ? { name, mailbox: addr.slice(0, at), host: addr.slice(at + 1) }
      : { name, mailbox: addr, host: null };
  };
  while (i < tokens.length && out.length < 1000) {
    // A group: phrase ':' list ';'
    const colon = tokens.slice(i).findIndex((t) => t.t === ':' || t.t === ',' || t.t === '<');
    if (colon >= 0 && tokens[i + colon]!.t === ':') {
      out.push({ name: tokens.slice(i, i + colon).map((t) => t.v).join(' '), mailbox: null, host: null, group: 'start' });
      i += colon + 1;
      while (i < tokens.length && tokens[i]!.t !== ';') {
        const a = one(new Set([',', ';']));
        if (a) out.push(a);
        if (tokens[i]?.t === ',') i++;
      }
      i++;
      out.push({ name: null, mailbox: null, host: null, group: 'end' });
    } else {
      const a = one(new Set([',']));
      if (a) out.push(a);
    }
    if (tokens[i]?.t === ',') i++;
  }
  return out;
}

function tokenize(v: string): { t: string; v: string }[] {
  const out: { t: string; v: string }[] = [];
  let i = 0;
  while (i < v.length) {
    const c = v[i]!;
    if (c === ' ' || c === '\t') {
      i++;
    } else if (c === '(') {
      let depth = 0;
      for (; i < v.length; i++) {
        if (v[i] === '\\') i++;
        else if (v[i] === '(') depth++;
        else if (v[i] === ')' && --depth === 0) break;
      }
      i++;
    } else if (c === '"') {
      let s = '';
      i++;
      for (; i < v.length && v[i] !== '"'; i++) {
        if (v[i] === '\\' && i + 1 < v.length) i++;
        s += v[i];
      }
      i++;
      out.push({ t: 'w', v: s });
    } else if ('<>,:;'.includes(c)) {
      out.push({ t: c, v: c });
      i++;
    } else {
      let s = '';
      while (i < v.length && !' \t()"<>,:;'.includes(v[i]!)) s += v[i++];
      out.push({ t: 'w', v: s });
    }
  }
  return out;
}
