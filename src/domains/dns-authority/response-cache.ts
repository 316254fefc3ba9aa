import type { Handled, Transport } from './responder.ts';
import { appendCookie, badCookieForm, COOKIE_OPTION, type CookieCheck } from './cookie.ts';
import type { ZoneView } from './zone-view.ts';

// Fully encoded answers, reused for the next query that asks the same thing. Decoding the query,
// the zone lookup, the DNSSEC additions and dns-packet's encoder cost several times the rest of
// the work per query; a hit costs a map lookup and a copy.
//
// Key: the transport and the query's bytes after its ID (flags, counts, the question with its
// name's case as sent, the OPT record with its UDP size, DO bit, version and options). The
// responder's answer is a function of exactly those bytes, the transport (UDP size limit or
// TCP), the zone's contents (its serial) and the set of hosted zones (which one encloses the
// name): two queries equal in those get the same bytes back but for the ID, which is patched into
// a copy. The question's name is keyed in lower case (ASCII letters only, as DNS compares names):
// the responder writes the query's spelling only in the question (owner names equal to it are
// pointers to it, responder.ts `compressOwners`), so a hit copies the asker's question in and
// every spelling of a name (0x20 case randomisation) shares one entry. Keying on the bytes rather than on a parse
// means nothing that changes the answer can be left out of the key; the price is that queries
// differing in what the responder ignores (an EDNS option) are cached apart.
//
// DNS cookies: the one exception to "every byte". A COOKIE option is left out of the key (and its
// presence put in), and the entry holds the answer without the option, fitted with room for it:
// on a hit the client's own cookie is checked (one SipHash, cookie.ts) and appended with a server
// cookie for its address. So every client gets a correct, fresh cookie, resolvers that always
// send one (BIND does) share one entry per question, and a client that returns a valid server
// cookie is exempt from RRL on a hit as on a miss. A malformed or repeated COOKIE is not cached
// (the responder answers FORMERR).
//
// Only plain queries are cached: opcode QUERY, one uncompressed question, no records but at most
// one OPT (so never a TSIG-signed query nor a transfer, which xfr.ts handles), and only answers for
// a hosted zone (not REFUSED, FORMERR or SERVFAIL). An entry is used while the zone's serial and
// the zone set are those it was answered from (the zone view moves them within `refreshMs` of a
// commit, so a record change is served exactly as soon as before), and at most `maxAgeMs` (the
// online signer makes a signature anew after a day; a cached answer never carries one older than
// that plus `maxAgeMs`). Bounded by entries and bytes, oldest dropped first unless hit since
// (second chance, at most `MAX_SPARED` entries per answer kept: making room never stalls).
//
// Names that do not exist (`Handled.nxname`) are admitted on their second asking only: a
// random-subdomain flood asks each name once, and caching those answers cost more than making
// them (the denial is written from encoded NSEC blocks the signer keeps, online.ts `denial`) while
// they pushed out the answers that do repeat. A doorkeeper (a Bloom filter of the keys of
// such answers seen since it was last cleared, fixed size) remembers the first asking; a false
// positive only admits an answer a little early.
//
// What a hit does not skip: RRL (server.ts asks the limiter for a hit; the responder asks it for a
// miss, before signing) and metering run for every response, cached or not. Nothing the limiter
// held back on a miss (a drop, a slip) is kept: only answers.

export interface ResponseCacheOptions {
  /** Entries kept at most. Default 20,000. */
  maxEntries?: number;
  /** Bytes of responses (and keys) kept at most. Default 16 MiB. */
  maxBytes?: number;
  /** An entry answers for at most this long after it was made. Default 60 s. */
  maxAgeMs?: number;
  /** Larger responses are not cached (TCP answers can reach 64 KiB). Default 4096. */
  maxResponseBytes?: number;
  /** Clock (milliseconds), for tests. */
  now?: () => number;
}

export interface ResponseCacheStats {
  hits: number;
  misses: number;
  /** Entries dropped because their zone changed, the zone set changed or they aged out. */
  stale: number;
  /** Answers for names that do not exist not kept, their question asked once so far. */
  deferred: number;
  /** Entries dropped to make room. */
  evicted: number;
  /** Entries passed over by the eviction because they were hit since (moved behind the newest). */
  spared: number;
  entries: number;
  bytes: number;
}

interface Entry {
  /** The response; for a query with a cookie, without the COOKIE option (each hit adds its client's). */
  response: Buffer;
  cookie: boolean;
  /** The empty TC version (RRL slips), made on first use. */
  truncated: Buffer | (() => Buffer) | undefined;
  rcode: number | undefined;
  zone: { name: string; imvu: string; serial: number };
  generation: number;
  made: number;
  size: number;
  /** Hit since it was last passed over for eviction (CLOCK, "second chance"). */
  hot: boolean;
}

const QTYPE_IXFR = 251;
const QTYPE_AXFR = 252;
const TYPE_OPT = 41;
/** Queries longer than this are not cached (a question is at most 259 bytes, an OPT a few dozen). */
const MAX_QUERY = 512;
/** Map entry, strings and object overhead, roughly. */
const ENTRY_OVERHEAD = 160;
/**
 * Entries hit since they were last considered that one insertion passes over at most; the next
 * one is dropped, hit or not. Unbounded, a full cache whose every entry had been hit (a hot set
 * as large as the cache) moved all of them in one insertion: 20,000 entries, 55 to 870 ms of a
 * stalled event loop (bench/RESULTS.md, "dns: tail latency at 5,000 q/s").
 */
export const MAX_SPARED = 64;

/** Where `cacheable` writes a key: at most the query's bytes. */
const scratch = Buffer.allocUnsafeSlow(MAX_QUERY);

/** A query the cache can answer: its key, and its COOKIE option's data when it has one (and cookies are on). */
export interface Cacheable {
  key: string;
  cookie?: Buffer;
}

/**
 * The cache key of a query: its transport and bytes after the ID, or undefined when the query is
 * not of the plain shape that is cached (see above). Checks only the shape; whether the query is
 * well-formed is the responder's to decide on the first (uncached) query with these bytes. With
 * `cookies` (the server answers them), a COOKIE option is left out of the key and returned apart:
 * every client's answer is the same but for its cookie, which a hit adds (a malformed or repeated
 * one is the responder's: not cached).
 */
export function cacheable(msg: Buffer, transport: Transport, cookies = true): Cacheable | undefined {
  const len = msg.length;
  if (len < 17 || len > MAX_QUERY) return undefined;
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
  if (qtype === QTYPE_AXFR || qtype === QTYPE_IXFR) return undefined;
  const qEnd = i;
  i += 4;
  let rdata = len;
  let cookie: Buffer | undefined;
  let cookieAt = len;
  if (arcount === 0) {
    if (i !== len) return undefined;
  } else {
    // One OPT owned by the root, ending the message, its options whole.
    if (i + 11 > len || msg[i] !== 0 || ((msg[i + 1]! << 8) | msg[i + 2]!) !== TYPE_OPT) return undefined;
    rdata = i + 11;
    if (rdata + ((msg[i + 9]! << 8) | msg[i + 10]!) !== len) return undefined;
    for (let j = rdata; j < len; ) {
      if (j + 4 > len) return undefined;
      const code = (msg[j]! << 8) | msg[j + 1]!;
      const olen = (msg[j + 2]! << 8) | msg[j + 3]!;
      if (j + 4 + olen > len) return undefined;
      if (code === COOKIE_OPTION && cookies) {
        if (cookie || (olen !== 8 && (olen < 16 || olen > 40))) return undefined;
        cookie = msg.subarray(j + 4, j + 4 + olen);
        cookieAt = j;
      }
      j += 4 + olen;
    }
  }
  // The key, written into `scratch` and made one flat string (a string per piece, joined, cost a
  // few hundred bytes of garbage per query): the transport, '-' or 'c' (a cookie left out), the
  // header after the ID and the question with its name in lower case (label lengths are below
  // 64: never letters), then the OPT record but its RDLENGTH (the OPT ends the message, so the
  // options' bytes imply it) and the COOKIE option.
  const k = scratch;
  k[0] = transport === 'tcp' ? 0x74 : 0x75;
  k[1] = cookie ? 0x63 : 0x2d;
  let at = 2 + msg.copy(k, 2, 2, i);
  for (let j = 13; j < qEnd; j++) if (k[j]! >= 0x41 && k[j]! <= 0x5a) k[j]! |= 0x20;
  if (arcount !== 0) {
    at += msg.copy(k, at, i, i + 9);
    at += msg.copy(k, at, rdata, cookieAt);
    if (cookie) at += msg.copy(k, at, cookieAt + 4 + cookie.length, len);
  }
  const key = k.toString('latin1', 0, at);
  return cookie ? { key, cookie } : { key };
}

/** The key alone (see `cacheable`). */
export function cacheKey(msg: Buffer, transport: Transport, cookies = true): string | undefined {
  return cacheable(msg, transport, cookies)?.key;
}

/** Where the question's name ends in a query `cacheable` accepted (plain labels). */
function questionEnd(msg: Buffer): number {
  let i = 12;
  while (msg[i]! !== 0) i += msg[i]! + 1;
  return i + 1;
}

/** The asker's ID and question name (its spelling) patched into `out`, a copy of an entry. */
function patch(out: Buffer, msg: Buffer): Buffer {
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  // Byte by byte: Buffer#copy of a range makes a view object per call.
  for (let j = 12, end = questionEnd(msg); j < end; j++) out[j] = msg[j]!;
  return out;
}

function withId(b: Buffer, msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  b.copy(out);
  return patch(out, msg);
}

/** `b` with the COOKIE option `data` added, the ID and question patched: one copy. */
function withIdAndCookie(b: Buffer, msg: Buffer, data: Buffer): Buffer {
  return patch(appendCookie(b, data), msg);
}

/** Bits of the doorkeeper (128 KiB) and the keys it takes before it is cleared (false positives under 3.3% at 2 hashes). */
const DOOR_BITS = 1 << 20;
const DOOR_KEYS = 100_000;

/** A Bloom filter of strings (two FNV-1a hashes), cleared after DOOR_KEYS additions. */
class Doorkeeper {
  private readonly bits = new Uint32Array(DOOR_BITS >>> 5);
  private added = 0;

  /** Whether `key` was added since the last clearing; adds it. */
  seen(key: string): boolean {
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    }
    h2 ^= h2 >>> 15;
    const a = (h1 >>> 0) & (DOOR_BITS - 1);
    const b = (h2 >>> 0) & (DOOR_BITS - 1);
    const was = (this.bits[a >>> 5]! & (1 << (a & 31))) !== 0 && (this.bits[b >>> 5]! & (1 << (b & 31))) !== 0;
    if (was) return true;
    if (++this.added > DOOR_KEYS) {
      this.bits.fill(0);
      this.added = 1;
    }
    this.bits[a >>> 5]! |= 1 << (a & 31);
    this.bits[b >>> 5]! |= 1 << (b & 31);
    return false;
  }
}

/**
 * A copy of `b` in memory of its own. The responder's answers are cut from Node's shared 8 KiB
 * allocation pool: kept as they are, each cached answer of a few hundred bytes held its whole
 * block, so 20,000 entries held up to 160 MiB (the `maxBytes` counted a tenth of it), and the
 * old generation that V8 must mark grew with it.
 */
function owned(b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  b.copy(out);
  return out;
}

/** An entry's empty TC form (RRL slips), made on first use. */
function emptyOf(e: Entry): Buffer {
  if (typeof e.truncated === 'function') e.truncated = owned(e.truncated());
  return e.truncated!;
}

/**
 * A hit without a cookie: the entry's answer with the asker's ID and question, and its TC form
 * made only if a slip asks for it (a method: no closures, nor their context, per hit).
 */
class Hit implements Handled {
  readonly response: Buffer;
  readonly rcode: number | undefined;
  readonly zone: Entry['zone'];

  constructor(
    private readonly e: Entry,
    private readonly msg: Buffer,
  ) {
    this.response = withId(e.response, msg);
    this.rcode = e.rcode;
    this.zone = e.zone;
  }

  truncated(): Buffer {
    return withId(emptyOf(this.e), this.msg);
  }
}

/** A hit with a cookie: the entry's answer with the asker's ID, question and COOKIE option (closures of their own: a function apart from `get`, whose calls then make no context). */
function cookieHit(e: Entry, msg: Buffer, c: CookieCheck): Handled {
  const h: Handled = {
    response: withIdAndCookie(e.response, msg, c.reply),
    rcode: e.rcode,
    zone: e.zone,
    truncated: () => withIdAndCookie(emptyOf(e), msg, c.reply),
  };
  if (!c.valid) h.badCookie = () => withIdAndCookie(badCookieForm(emptyOf(e)), msg, c.reply);
  return h;
}

export class ResponseCache {
  private readonly map = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly maxResponseBytes: number;
  private readonly now: () => number;
  private bytes = 0;
  private counts = { hits: 0, misses: 0, stale: 0, deferred: 0, evicted: 0, spared: 0 };
  /**
   * The oldest entry's place: one iterator kept across insertions. A Map iterator skips deleted
   * entries and sees appended ones; a fresh one per step (`entries().next()`) walks again over
   * every entry deleted at the front since the table was last compacted, which made each
   * eviction cost the evictions before it.
   */
  private oldest: IterableIterator<[string, Entry]> | undefined;
  private readonly door = new Doorkeeper();

  constructor(
    private readonly view: ZoneView,
    opts: ResponseCacheOptions = {},
  ) {
    this.maxEntries = opts.maxEntries ?? 20_000;
    this.maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
    this.maxAgeMs = opts.maxAgeMs ?? 60_000;
    this.maxResponseBytes = opts.maxResponseBytes ?? 4096;
    this.now = opts.now ?? Date.now;
  }

  /**
   * The answer to `msg` (whose key is `key`) from the cache, with `msg`'s ID and, for a query with
   * a cookie, the COOKIE option that `cookie()` (asked only then) says to answer with; undefined on a miss.
   */
  get(key: string, msg: Buffer, cookie?: () => CookieCheck | undefined): Handled | undefined {
    const e = this.map.get(key);
    const c = e?.cookie ? cookie?.() : undefined;
    if (!e || (e.cookie && !c)) {
      this.counts.misses++;
      return undefined;
    }
    const now = this.now();
    if (e.generation !== this.view.generation || this.view.serialOf(e.zone.name) !== e.zone.serial || now - e.made >= this.maxAgeMs || now < e.made) {
      this.drop(key, e);
      this.counts.stale++;
      this.counts.misses++;
      return undefined;
    }
    this.counts.hits++;
    e.hot = true;
    return c ? cookieHit(e, msg, c) : new Hit(e, msg);
  }

  /**
   * Keeps the responder's answer to a query with this key. `generation` is the zone view's
   * generation when the query arrived (before the answer was computed): an answer computed across
   * a change of the zone set is not kept.
   */
  set(key: string, h: Handled, generation: number): void {
    const z = h.zone;
    // A query with a cookie is kept without it (`uncookied`); a key says which it was.
    const cookie = key.charCodeAt(1) === 0x63; /* 'c' */
    const plain = cookie ? h.uncookied : h.uncookied ? undefined : h.response && { response: h.response, truncated: h.truncated };
    // Nothing the rate limiter held back (its slip is not the answer), nothing outside a hosted
    // zone, nor an answer from this cache (its `truncated` is a method of its own).
    if (h.rrl === 'drop' || h.rrl === 'slip' || h instanceof Hit) return;
    if (!plain || !z || z.serial === undefined || plain.response.length > this.maxResponseBytes) return;
    // A hit patches the asker's question in: the answer must carry it (it does, for a hosted zone).
    if (plain.response.length < 17 || plain.response.readUInt16BE(4) !== 1) return;
    // Answered from the zone set and serial the index holds now, or not at all.
    if (generation !== this.view.generation || this.view.serialOf(z.name) !== z.serial) return;
    // A name that does not exist: kept from its second asking on (random names come once).
    if (h.nxname && !this.door.seen(key)) {
      this.counts.deferred++;
      return;
    }
    const old = this.map.get(key);
    if (old) this.drop(key, old);
    const size = plain.response.length + key.length + ENTRY_OVERHEAD;
    const e: Entry = {
      response: owned(plain.response),
      cookie,
      truncated: plain.truncated,
      rcode: h.rcode,
      zone: { name: z.name, imvu: z.imvu, serial: z.serial },
      generation,
      made: this.now(),
      size,
      hot: false,
    };
    this.map.set(key, e);
    this.bytes += size;
    // Oldest first, but an entry hit since it was last considered goes round once more: a flood
    // of names asked once (random subdomains, 0x20-randomised case) does not push out hot answers.
    let spared = 0;
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      let next = this.oldest?.next();
      if (!next || next.done) next = (this.oldest = this.map.entries()).next();
      if (next.done) break;
      const [k, oldest] = next.value;
      if (oldest.hot && spared < MAX_SPARED) {
        oldest.hot = false;
        this.map.delete(k);
        this.map.set(k, oldest);
        spared++;
        continue;
      }
      this.drop(k, oldest);
      this.counts.evicted++;
    }
    this.counts.spared += spared;
  }

  clear(): void {
    this.map.clear();
    this.oldest = undefined;
    this.bytes = 0;
  }

  stats(): ResponseCacheStats {
    return { ...this.counts, entries: this.map.size, bytes: this.bytes };
  }

  private drop(key: string, e: Entry): void {
    this.map.delete(key);
    this.bytes -= e.size;
  }
}
