// SEARCH keys (RFC 3501 6.4.4, plus CONDSTORE's MODSEQ) parsed into a tree and evaluated per
// message. Header and body keys read the message; everything else uses the index.
import { ParseError, type Reader } from './parser.ts';
import type { Message } from '../maildir/store.ts';
import { parseHeaders } from './mime.ts';

export type SearchKey =
  | { k: 'all' }
  | { k: 'flag'; flag: string; set: boolean }
  | { k: 'new' } | { k: 'old' } | { k: 'recent' }
  | { k: 'seq'; set: [number, number][] }
  | { k: 'uid'; set: [number, number][] }
  | { k: 'larger' | 'smaller'; n: number }
  | { k: 'date'; field: 'internal' | 'sent'; op: 'before' | 'on' | 'since'; day: number }
  | { k: 'header'; name: string; value: string }
  | { k: 'body' | 'text'; value: string }
  | { k: 'modseq'; n: bigint }
  | { k: 'not'; a: SearchKey }
  | { k: 'or'; a: SearchKey; b: SearchKey }
  | { k: 'and'; list: SearchKey[] };

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/** A search date (d-Mon-yyyy) as the UTC day number. */
export function parseDay(s: string): number {
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(s);
  const mon = m ? MONTHS.indexOf(m[2]!.toLowerCase()) : -1;
  if (!m || mon < 0) throw new ParseError(`bad date ${s}`);
  return Math.floor(Date.UTC(Number(m[3]), mon, Number(m[1])) / 86_400_000);
}

const FLAG_KEYS: Record<string, [string, boolean]> = {
  ANSWERED: ['\\Answered', true], UNANSWERED: ['\\Answered', false], DELETED: ['\\Deleted', true], UNDELETED: ['\\Deleted', false],
  DRAFT: ['\\Draft', true], UNDRAFT: ['\\Draft', false], FLAGGED: ['\\Flagged', true], UNFLAGGED: ['\\Flagged', false],
  SEEN: ['\\Seen', true], UNSEEN: ['\\Seen', false],
};

export function parseSearch(r: Reader, depth = 0): SearchKey {
  const list: SearchKey[] = [];
  for (;;) {
    list.push(parseKey(r, depth));
    if (list.length > 200) throw new ParseError('too many search keys');
    if (r.done || r.peek() === ')') break;
    r.sp();
  }
  return list.length === 1 ? list[0]! : { k: 'and', list };
}

function parseKey(r: Reader, depth: number): SearchKey {
  if (depth > 32) throw new ParseError('search nested too deeply');
  if (r.tryExpect('(')) {
    const k = parseSearch(r, depth + 1);
    r.expect(')');
    return k;
  }
  const c = r.peek();
  if (/[0-9*$]/.test(c)) return { k: 'seq', set: r.seqSet() };
  const word = r.atom().toUpperCase();
  const arg = (): string => {
    r.sp();
    return r.astring();
  };
  if (FLAG_KEYS[word]) return { k: 'flag', flag: FLAG_KEYS[word]![0], set: FLAG_KEYS[word]![1] };
  switch (word) {
    case 'ALL': return { k: 'all' };
    case 'NEW': return { k: 'new' };
    case 'OLD': return { k: 'old' };
    case 'RECENT': return { k: 'recent' };
    case 'KEYWORD': return { k: 'flag', flag: arg(), set: true };
    case 'UNKEYWORD': return { k: 'flag', flag: arg(), set: false };
    case 'UID': r.sp(); return { k: 'uid', set: r.seqSet() };
    case 'LARGER': case 'SMALLER': r.sp(); return { k: word === 'LARGER' ? 'larger' : 'smaller', n: r.number() };
    case 'BEFORE': case 'ON': case 'SINCE':
      return { k: 'date', field: 'internal', op: word.toLowerCase() as 'before', day: parseDay(arg()) };
    case 'SENTBEFORE': case 'SENTON': case 'SENTSINCE':
      return { k: 'date', field: 'sent', op: word.slice(4).toLowerCase() as 'before', day: parseDay(arg()) };
    case 'FROM': case 'TO': case 'CC': case 'BCC': case 'SUBJECT':
      return { k: 'header', name: word.toLowerCase(), value: arg() };
    case 'HEADER': {
      const name = arg();
      return { k: 'header', name: name.toLowerCase(), value: arg() };
    }
    case 'BODY': return { k: 'body', value: arg() };
    case 'TEXT': return { k: 'text', value: arg() };
    case 'NOT': r.sp(); return { k: 'not', a: parseKey(r, depth + 1) };
    case 'OR': {
      r.sp();
      const a = parseKey(r, depth + 1);
      r.sp();
      return { k: 'or', a, b: parseKey(r, depth + 1) };
    }
    case 'MODSEQ': {
      r.sp();
      // Optional entry name and type: MODSEQ "/flags/\\Seen" all 123
      if (r.peek() === '"') {
        r.string();
        r.sp();
        r.atom();
        r.sp();
      }
      return { k: 'modseq', n: r.bigNumber() };
    }
    default: throw new ParseError(`unknown search key ${word}`);
  }
}

export function needsContent(k: SearchKey): boolean {
  switch (k.k) {
    case 'header': case 'body': case 'text': return true;
    case 'date': return k.field === 'sent';
    case 'not': return needsContent(k.a);
    case 'or': return needsContent(k.a) || needsContent(k.b);
    case 'and': return k.list.some(needsContent);
    default: return false;
  }
}

export function usesModseq(k: SearchKey): boolean {
  switch (k.k) {
    case 'modseq': return true;
    case 'not': return usesModseq(k.a);
    case 'or': return usesModseq(k.a) || usesModseq(k.b);
    case 'and': return k.list.some(usesModseq);
    default: return false;
  }
}

export interface SearchContext {
  seq: number;
  msg: Message;
  maxSeq: number;
  maxUid: number;
  /** The message (CRLF), when a key needs it. */
  content?: Buffer;
}

function inSet(set: [number, number][], n: number, max: number): boolean {
  for (const [a0, b0] of set) {
    const a = a0 === 0 ? max : a0;
    const b = b0 === 0 ? max : b0;
    if (n >= Math.min(a, b) && n <= Math.max(a, b)) return true;
  }
  return false;
}

export function matches(k: SearchKey, c: SearchContext): boolean {
  switch (k.k) {
    case 'all': return true;
    case 'flag': return c.msg.flags.has(k.flag) === k.set;
    case 'new': return false;
    case 'recent': return false;
    case 'old': return true;
    case 'seq': return inSet(k.set, c.seq, c.maxSeq);
    case 'uid': return inSet(k.set, c.msg.uid, c.maxUid);
    case 'larger': return c.msg.size > k.n;
    case 'smaller': return c.msg.size < k.n;
    case 'modseq': return c.msg.modseq >= k.n;
    case 'date': {
      let t = c.msg.internalDate;
      if (k.field === 'sent') {
        const d = headerOf(c, 'date');
        t = d ? Date.parse(d) : NaN;
        if (Number.isNaN(t)) return false;
      }
      const day = Math.floor(t / 86_400_000);
      return k.op === 'before' ? day < k.day : k.op === 'on' ? day === k.day : day >= k.day;
    }
    case 'header': {
      const v = headerOf(c, k.name);
      return v !== undefined && v.toLowerCase().includes(k.value.toLowerCase());
    }
    case 'body': case 'text': {
      const buf = c.content;
      if (!buf) return false;
      const split = buf.indexOf('\r\n\r\n');
      const hay = (k.k === 'body' && split >= 0 ? buf.subarray(split + 4) : buf).toString('latin1').toLowerCase();
      return hay.includes(Buffer.from(k.value, 'utf8').toString('latin1').toLowerCase());
    }
    case 'not': return !matches(k.a, c);
    case 'or': return matches(k.a, c) || matches(k.b, c);
    case 'and': return k.list.every((x) => matches(x, c));
  }
}

function headerOf(c: SearchContext, name: string): string | undefined {
  if (!c.content) return undefined;
  const split = c.content.indexOf('\r\n\r\n');
  const hs = parseHeaders(c.content, 0, split >= 0 ? split + 2 : c.content.length);
  const found = hs.filter((h) => h.name === name);
  return found.length ? found.map((h) => h.value).join('\n') : undefined;
}
