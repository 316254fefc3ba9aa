import type { Handled, Transport } from './responder.ts';
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
// a copy. The question's case is echoed because it is part of the key (a client randomising case,
// as 0x20 does, misses and is answered as before). Keying on the bytes rather than on a parse
// means nothing that changes the answer can be left out of the key; the price is that queries
// differing in what the responder ignores (an EDNS option) are cached apart.
//
// Only plain queries are cached: opcode QUERY, one uncompressed question, no records but at most
// one OPT (so never a TSIG-signed query nor a transfer, which xfr.ts handles), and only answers for
// a hosted zone (not REFUSED, FORMERR or SERVFAIL). An entry is used while the zone's serial and
// the zone set are those it was answered from (the zone view moves them within `refreshMs` of a
// commit, so a record change is served exactly as soon as before), and at most `maxAgeMs` (the
// online signer makes a signature anew after a day; a cached answer never carries one older than
// that plus `maxAgeMs`). Bounded by entries and bytes, oldest dropped first unless hit since.
//
// What a hit does not skip: RRL and metering run in server.ts for every response, cached or not.

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
  entries: number;
  bytes: number;
}

interface Entry {
  response: Buffer;
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
 * The cache key of a query: its transport and bytes after the ID, or undefined when the query is
 * not of the plain shape that is cached (see above). Checks only the shape; whether the query is
 * well-formed is the responder's to decide on the first (uncached) query with these bytes.
 */
export function cacheKey(msg: Buffer, transport: Transport): string | undefined {
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
  i += 4;
  if (arcount === 0) {
    if (i !== len) return undefined;
  } else {
    // One OPT owned by the root, ending the message.
    if (i + 11 > len || msg[i] !== 0 || ((msg[i + 1]! << 8) | msg[i + 2]!) !== TYPE_OPT) return undefined;
    if (i + 11 + ((msg[i + 9]! << 8) | msg[i + 10]!) !== len) return undefined;
  }
  return (transport === 'tcp' ? 't' : 'u') + msg.toString('latin1', 2);
}

function withId(b: Buffer, id: number): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  b.copy(out);
  out[0] = id >>> 8;
  out[1] = id & 0xff;
  return out;
}

export class ResponseCache {
  private readonly map = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly maxResponseBytes: number;
  private readonly now: () => number;
  private bytes = 0;
  private counts = { hits: 0, misses: 0, stale: 0 };

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

  /** The answer to `msg` (whose key is `key`) from the cache, with `msg`'s ID; undefined on a miss. */
  get(key: string, msg: Buffer): Handled | undefined {
    const e = this.map.get(key);
    if (!e) {
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
    const id = (msg[0]! << 8) | msg[1]!;
    return {
      response: withId(e.response, id),
      rcode: e.rcode,
      zone: e.zone,
      truncated: () => {
        if (typeof e.truncated === 'function') e.truncated = e.truncated();
        return withId(e.truncated!, id);
      },
    };
  }

  /**
   * Keeps the responder's answer to a query with this key. `generation` is the zone view's
   * generation when the query arrived (before the answer was computed): an answer computed across
   * a change of the zone set is not kept.
   */
  set(key: string, h: Handled, generation: number): void {
    const z = h.zone;
    if (!h.response || !z || z.serial === undefined || h.response.length > this.maxResponseBytes) return;
    // Answered from the zone set and serial the index holds now, or not at all.
    if (generation !== this.view.generation || this.view.serialOf(z.name) !== z.serial) return;
    const old = this.map.get(key);
    if (old) this.drop(key, old);
    const size = h.response.length + key.length + ENTRY_OVERHEAD;
    const e: Entry = {
      response: h.response,
      truncated: h.truncated,
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
      const [k, oldest] = this.map.entries().next().value!;
      if (oldest.hot && spared < this.map.size) {
        oldest.hot = false;
        this.map.delete(k);
        this.map.set(k, oldest);
        spared++;
        continue;
      }
      this.drop(k, oldest);
    }
  }

  clear(): void {
    this.map.clear();
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
