import dgram from 'node:dgram';
import net from 'node:net';
import type { Store } from '../../core/store/index.ts';
import type { OnlineSigner } from '../dnssec/online.ts';
import { handleMessage, type Admission, type AnswerContext, type Handled, type Transport } from './responder.ts';
import { prefixKey, ResponseRateLimiter, RRL_DEFAULTS, type RrlOptions } from './rrl.ts';
import { ZoneView } from './zone-view.ts';
import { cacheable, ResponseCache, type Cacheable, type ResponseCacheOptions } from './response-cache.ts';
import { ServerCookies, type CookieCheck, type CookieOptions } from './cookie.ts';
import { checkXfrOptions, XfrService, type XfrHandled, type XfrOptions } from './xfr.ts';
import { Notifier } from './notify.ts';
import { bindUdpAndTcp as bindBoth } from '../listen.ts';
import { tsigKey } from './tsig.ts';
import { randomBytes } from 'node:crypto';
import { startWorkers, type WorkerSet } from './workers.ts';
import { batchedUdp, listenUdp } from './udp-batch.ts';

// The authoritative server's sockets: UDP and TCP on one port. TCP carries 2-byte length-prefixed
// messages (RFC 1035 4.2.2, RFC 7766), several per connection, answered in order, with a
// connection limit overall and per source, deadlines that trickled bytes do not move (below), a
// bound on queued messages and write back-pressure. Response rate limiting applies to UDP only,
// and not to a client that returned a valid server cookie (cookie.ts): a TCP peer has proved its
// address with the handshake, a cookie client by receiving our earlier answer at that address.

export interface DnsServerOptions {
  store: Store;
  /** The warm-up of every zone and key (`warmed`) starts once this resolves; never if it rejects. Unset: at once. */
  warmAfter?: PromiseLike<unknown>;
  /** Default 127.0.0.1. */
  address?: string;
  /** 0 (the default) picks a free port, the same for UDP and TCP. */
  port?: number;
  /** Called per response sent for a hosted zone (answers, NXDOMAIN/NODATA, referrals); `n` > 1 for a worker's batch. */
  onQuery?: (zone: string, imvu: string, n?: number) => void;
  /** Response rate limiting per source prefix; on by default (RRL_DEFAULTS), `false` turns it off. */
  rrl?: RrlOptions | false;
  tcp?: {
    /** Connections open at most; when full, the one idle longest makes room for a new one. Default 256. */
    maxConnections?: number;
    /** Connections per source address (IPv6: per `prefixV6`) at most. Default 16. */
    perSource?: number;
    /** Prefix length that groups IPv6 sources for `perSource`. Default 64. */
    prefixV6?: number;
    /** Close a connection that completes no query and writes no answer for this long (bytes alone do not count). Default 10 s. */
    idleTimeoutMs?: number;
    /** A message must be complete this long after its first byte arrived. Default 3 s. */
    messageTimeoutMs?: number;
    /** A connection reads no query after this long, and closes once its answers are written. Default 120 s. */
    lifetimeMs?: number;
    /** Stop reading a connection while this many of its queries wait. Default 32. */
    maxPending?: number;
  };
  /** DNS cookies (RFC 7873, server cookies of RFC 9018); on by default with a random secret, `false` turns them off. */
  cookies?: CookieOptions | false;
  /** DNSSEC online signing of the zones that have a key (`onlineSigner(store, dataDir)` from src/domains/dnssec). */
  dnssec?: OnlineSigner;
  /** Zone transfers out (AXFR/IXFR over TCP, TSIG or address allow-list) and NOTIFY; see xfr.ts. Off when unset. */
  xfr?: XfrOptions;
  /** How often the zone view looks for committed changes. Default 200 ms. */
  refreshMs?: number;
  /**
   * Start before the zone list is read (the daemon: at 100,000 zones the read is most of what DNS
   * adds to a start); queries that arrive meanwhile wait for it (`view.loading`), none is answered
   * from a partial list. Default false: start once it is read.
   */
  zonesInBackground?: boolean;
  /** The zone view's `sourcesKey` (zone-view.ts): the periodic full re-read of the zone list only when it moved. */
  zonesKey?: () => string;
  /** UDP queries in progress at most (beyond: dropped). Default 4096. */
  maxUdpInFlight?: number;
  /** Encoded answers reused for identical queries (response-cache.ts); on by default, `false` turns it off. */
  responseCache?: ResponseCacheOptions | false;
  onError?: (err: unknown) => void;
  /**
   * Worker processes answering on the same sockets besides this one (workers.ts): `count` more
   * processes, each with its own zone view over the database opened read-only; `dataDir` holds
   * the DNSSEC keys when `dnssec` is set. Needs a SQLite store in a file. Default: none.
   */
  workers?: { count: number; dataDir?: string };
  /** Sockets bound already (a worker's, handed over by the primary) instead of binding `port`. */
  sockets?: { udp: dgram.Socket; tcp?: net.Server };
  /** UDP read and answered in batches (recvmmsg/sendmmsg, udp-batch.ts) when the addon is built; `false`: Node's dgram, one datagram at a time. Default true. */
  udpBatch?: boolean;
}

export interface DnsServerStats {
  udpQueries: number;
  tcpQueries: number;
  tcpConnections: number;
  /** TCP connections closed at once: over the per-source limit, or every slot busy. */
  tcpRefused: number;
  /** Idle TCP connections closed to make room for a new one. */
  tcpEvicted: number;
  /** TCP connections closed by a deadline (idle, incomplete message). */
  tcpTimeouts: number;
  responses: number;
  answered: number;
  rrlDropped: number;
  rrlSlipped: number;
  busyDropped: number;
  ignored: number;
  errors: number;
}

export interface DnsServer {
  address: string;
  port: number;
  readonly view: ZoneView;
  /** Zone transfers and NOTIFY, when `xfr` was given. */
  readonly xfr?: XfrService;
  readonly notifier?: Notifier;
  /** The server cookie keeper, unless cookies are off. */
  readonly cookies?: ServerCookies;
  /** The worker processes, when `workers` was given. */
  readonly workers?: WorkerSet;
  /** Resolves once every zone hosted at the start is compiled and its key read (in every process). */
  readonly warmed: Promise<void>;
  /** How UDP is read: batched in every process, or Node's dgram in at least one and why (the addon is missing, or `udpBatch: false`). */
  readonly udp: UdpMode;
  stats(): DnsServerStats & { rrlBuckets: number; openConnections: number; cacheHits: number; cacheMisses: number; cacheEntries: number; udpBatches: number; udpStale: number; udpSendDropped: number; udpTruncated: number };
  close(): Promise<void>;
}

export type UdpMode = { mode: 'batched' } | { mode: 'dgram'; reason: string };

/** UDP source ports never answered: 0, echo, daytime, chargen, time, kpasswd. */
const SUSPICIOUS_PORTS = new Set([0, 7, 13, 19, 37, 464]);

/** A TCP query's answer in progress, and whether it is done (then awaiting it costs no write). */
class Pending {
  settled = false;
  constructor(readonly promise: Promise<XfrHandled>) {
    // Also marks a rejection as handled: a connection closed before its turn never awaits it.
    promise.then(
      () => (this.settled = true),
      () => (this.settled = true),
    );
  }
}

/** The first message, then the rest of a zone transfer's, produced one at a time as they are written. */
function* messages(first: Buffer, rest?: Iterable<Buffer>): Generator<Buffer> {
  yield first;
  if (rest) yield* rest;
}

function frame(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(msg.length + 2);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}

/** What the UDP path needs from the server (`udpAnswerer`). */
export interface UdpAnswererOptions {
  view: ZoneView;
  /** The responder (or the transfer service in front of it); default: `handleMessage` with `dnssec` and `cookies`. */
  respond?: (msg: Buffer, t: Transport, ctx: AnswerContext) => Promise<XfrHandled>;
  dnssec?: OnlineSigner;
  cookies?: ServerCookies;
  cache?: ResponseCache;
  limiter?: ResponseRateLimiter;
  /** Cache misses in progress at most (beyond: dropped). Default 4096. */
  maxInFlight?: number;
  stats?: Pick<DnsServerStats, 'rrlDropped' | 'rrlSlipped' | 'ignored' | 'responses' | 'busyDropped'>;
  meter?: (h: Handled) => void;
  onError?: (err: unknown) => void;
}

/**
 * The cache's answer to a query with a COOKIE option from `peer`, with the option its cookie calls
 * for; undefined on a miss. The cookie is checked (one SipHash) only when there is an entry to answer from.
 */
function cachedWithCookie(cache: ResponseCache, cookies: ServerCookies | undefined, c: Cacheable, msg: Buffer, peer: string): { hit: Handled; exempt: boolean } | undefined {
  let check: CookieCheck | undefined;
  const hit = cache.get(c.key, msg, () => {
    const r = c.cookie && cookies?.check(c.cookie, peer);
    check = r === 'malformed' ? undefined : r;
    return check;
  });
  return hit && { hit, exempt: !!check?.valid };
}

/**
 * One UDP datagram's handling, sockets aside (the server's, and bench/dns/micro.ts's): the
 * response cache, else the responder (which asks the rate limiter before signing), then the rate
 * limiter for a cached answer, the send and metering. Returns a promise only while a cache miss
 * is in progress.
 */
export function udpAnswerer(o: UdpAnswererOptions): <T>(msg: Buffer, peer: string, send: (out: Buffer, to: T | undefined) => void, to?: T) => Promise<void> | undefined {
  const { view, cache, cookies, limiter } = o;
  const respond = o.respond ?? ((msg: Buffer, t: Transport, ctx: AnswerContext) => handleMessage(view, msg, t, { dnssec: o.dnssec, cookies, peer: ctx.peer, admit: ctx.admit }));
  const maxInFlight = o.maxInFlight ?? 4096;
  const s = o.stats ?? { rrlDropped: 0, rrlSlipped: 0, ignored: 0, responses: 0, busyDropped: 0 };
  const meter = o.meter ?? (() => undefined);
  const fail = o.onError ?? (() => undefined);
  let inFlight = 0;
  /**
   * Rate limiting, the send and metering of one UDP answer, from the cache or the responder. The
   * responder has asked the limiter already (before signing) when `h.rrl` is set; otherwise (a
   * cache hit, a transfer's answer) it is asked here, unless `exempt` (a valid server cookie).
   */
  const sendUdp = <T>(h: Handled, peer: string, send: (out: Buffer, to: T | undefined) => void, to: T | undefined, exempt = false) => {
    if (h.rrl === 'drop') {
      s.rrlDropped++;
      return;
    }
    if (!h.response) {
      s.ignored++;
      return;
    }
    let out = h.response;
    let verdict: Admission | undefined = h.rrl;
    if (verdict === undefined) {
      verdict = exempt ? 'exempt' : (limiter?.check(peer) ?? 'send');
      const slip = h.badCookie ?? h.truncated;
      if (verdict === 'drop' || (verdict === 'slip' && !slip)) {
        s.rrlDropped++;
        return;
      }
      // Called on `h`: a cache hit's `truncated` is a method.
      if (verdict === 'slip') out = h.badCookie ? h.badCookie() : h.truncated!();
    }
    if (verdict === 'slip') s.rrlSlipped++;
    s.responses++;
    send(out, to);
    if (verdict !== 'slip') meter(h);
  };
  const cookieHit = (c: Cacheable, msg: Buffer, peer: string) => cachedWithCookie(cache!, cookies, c, msg, peer);
  /** A cache miss: the responder, then the cache and the send (a function apart, so that a hit makes none of its closures). */
  const miss = <T>(msg: Buffer, peer: string, send: (out: Buffer, to: T | undefined) => void, to: T | undefined, c: Cacheable | undefined): Promise<void> => {
    inFlight++;
    const generation = view.generation;
    // One promise and two closures per miss (a then/catch/finally chain made three of each).
    return respond(msg, 'udp', { peer, admit: limiter && (() => limiter.check(peer)) }).then(
      (h) => {
        inFlight--;
        try {
          if (c) cache!.set(c.key, h, generation);
          sendUdp(h, peer, send, to);
        } catch (err) {
          fail(err);
        }
      },
      (err: unknown) => {
        inFlight--;
        fail(err);
      },
    );
  };
  return (msg, peer, send, to) => {
    // A cache hit is answered now, without a promise, even when too many misses are in progress:
    // a flood of names asked once does not shut out the names asked often.
    const c = cache && cacheable(msg, 'udp', !!cookies);
    if (c) {
      if (!c.cookie) {
        const hit = cache!.get(c.key, msg);
        if (hit) {
          sendUdp(hit, peer, send, to);
          return undefined;
        }
      } else {
        const found = cookieHit(c, msg, peer);
        if (found) {
          sendUdp(found.hit, peer, send, to, found.exempt);
          return undefined;
        }
      }
    }
    if (inFlight >= maxInFlight) {
      s.busyDropped++;
      return undefined;
    }
    return miss(msg, peer, send, to, c);
  };
}

export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const address = opts.address ?? '127.0.0.1';
  const onError = opts.onError ?? (() => undefined);
  if (opts.xfr) checkXfrOptions(opts.xfr);
  const notifier = opts.xfr?.notify?.length
    ? new Notifier({
        targets: opts.xfr.notify,
        tsig: opts.xfr.tsig ? tsigKey(opts.xfr.tsig) : undefined,
        source: address,
        retries: opts.xfr.notifyRetries,
        timeoutMs: opts.xfr.notifyTimeoutMs,
        onError,
      })
    : undefined;
  // Workers share the secret: a server cookie made by one process is valid at every other.
  const cookieOpts = opts.cookies === false ? undefined : opts.workers ? { ...opts.cookies, secret: opts.cookies?.secret ?? randomBytes(16) } : opts.cookies;
  const cookies = opts.cookies === false ? undefined : new ServerCookies(cookieOpts);
  const view = await ZoneView.open(opts.store, { refreshMs: opts.refreshMs, background: opts.zonesInBackground, sourcesKey: opts.zonesKey, onError, onSerialChange: notifier && ((z) => notifier.notify(z.name, z.serial)) });
  let closingNow = false;
  // Every zone compiled and its key read now, in the background, rather than by the first query
  // for it: 1,000 zones cost a cold start of seconds, paid once here, not in the answers' latency.
  // `warmAfter`: not before the daemon's start-up is done (a query meanwhile compiles its zone).
  const warmed = (async () => {
    if (opts.warmAfter && !(await Promise.resolve(opts.warmAfter).then(() => true, () => false))) return;
    if (view.loading) await view.loading;
    for (const name of view.zoneNames()) {
      if (closingNow) return;
      const info = view.enclosing(name);
      try {
        const z = info && (await view.zone(info));
        if (z && opts.dnssec) {
          await opts.dnssec.keys.forZone(z.name, z.serial);
          // Its RRsets and NSECs signed now, not by the first question for each name.
          opts.dnssec.warm(z);
        }
      } catch {
        // the query for it will answer SERVFAIL, as without warming
      }
      await new Promise((r) => setImmediate(r));
    }
  })();
  const answer = (msg: Buffer, t: Transport, ctx?: AnswerContext) => handleMessage(view, msg, t, { dnssec: opts.dnssec, cookies, peer: ctx?.peer, admit: ctx?.admit });
  const xfr = opts.xfr ? new XfrService(view, opts.store, opts.xfr, { answer, keys: opts.dnssec?.keys, materialise: opts.dnssec && ((z, k) => opts.dnssec!.materialise(z, k)) }) : undefined;
  const respondNow = (msg: Buffer, t: Transport, ctx: AnswerContext): Promise<XfrHandled> => (xfr ? xfr.handle(msg, t, ctx.peer ?? '', ctx) : answer(msg, t, ctx));
  // Every answer that is not from the cache (empty until the view is loaded) comes through here.
  const respond = (msg: Buffer, t: Transport, ctx: AnswerContext): Promise<XfrHandled> => (view.loading ? view.loading.then(() => respondNow(msg, t, ctx)) : respondNow(msg, t, ctx));
  const limiter = opts.rrl === false ? undefined : new ResponseRateLimiter(opts.rrl ?? RRL_DEFAULTS);
  const cache = opts.responseCache === false ? undefined : new ResponseCache(view, opts.responseCache);
  const fromCache = (c: Cacheable, msg: Buffer, peer: string) => cachedWithCookie(cache!, cookies, c, msg, peer);
  /** The answer from the cache, or the responder's (then kept in the cache when it may be). TCP's; UDP does the same inline. */
  const cachedOrRespond = (msg: Buffer, t: Transport, peer: string): XfrHandled | Promise<XfrHandled> => {
    const c = cache && cacheable(msg, t, !!cookies);
    if (!c) return respond(msg, t, { peer });
    // Without a cookie, no closure for its check (`fromCache`).
    const found = c.cookie ? fromCache(c, msg, peer)?.hit : cache!.get(c.key, msg);
    if (found) return found;
    // The zone set as the query found it: an answer computed across a change of it is not kept.
    const generation = view.generation;
    return respond(msg, t, { peer }).then((h) => {
      cache!.set(c.key, h, generation);
      return h;
    });
  };
  const maxConnections = opts.tcp?.maxConnections ?? 256;
  const maxPerSource = opts.tcp?.perSource ?? 16;
  const sourcePrefixV6 = opts.tcp?.prefixV6 ?? 64;
  const idleTimeoutMs = opts.tcp?.idleTimeoutMs ?? 10_000;
  const messageTimeoutMs = opts.tcp?.messageTimeoutMs ?? 3_000;
  const lifetimeMs = opts.tcp?.lifetimeMs ?? 120_000;
  const maxPending = opts.tcp?.maxPending ?? 32;
  const maxUdpInFlight = opts.maxUdpInFlight ?? 4096;
  const s: DnsServerStats = {
    udpQueries: 0, tcpQueries: 0, tcpConnections: 0, tcpRefused: 0, tcpEvicted: 0, tcpTimeouts: 0, responses: 0, answered: 0,
    rrlDropped: 0, rrlSlipped: 0, busyDropped: 0, ignored: 0, errors: 0,
  };
  const fail = (err: unknown) => {
    s.errors++;
    onError(err);
  };
  const meter = (h: Handled) => {
    if (!h.zone) return;
    s.answered++;
    if (!opts.onQuery) return;
    try {
      opts.onQuery(h.zone.name, h.zone.imvu);
    } catch (err) {
      fail(err);
    }
  };

  let bound;
  try {
    // A worker without the TCP listener (the primary keeps it) gets one that never listens.
    bound = opts.sockets ? { udp: opts.sockets.udp, tcp: opts.sockets.tcp ?? net.createServer(), port: opts.sockets.udp.address().port } : await bindBoth(address, opts.port ?? 0);
  } catch (err) {
    view.close();
    throw err;
  }
  const { udp, tcp, port } = bound;
  let workers: WorkerSet | undefined;
  if (opts.workers && opts.workers.count > 0 && !opts.sockets) {
    const dbPath = (opts.store as { path?: string }).path;
    if (opts.store.kind !== 'sqlite' || !dbPath || dbPath === ':memory:') throw new Error('DNS workers need the SQLite store in a file');
    if (opts.dnssec && !opts.workers.dataDir) throw new Error('DNS workers sign online with the keys of workers.dataDir');
    try {
      workers = await startWorkers(
        opts.workers.count,
        {
          dbPath,
          dataDir: opts.dnssec ? opts.workers.dataDir : undefined,
          ...(opts.dnssec ? { denial: opts.dnssec.denialMode } : {}),
          address,
          rrl: opts.rrl,
          tcp: opts.tcp,
          cookies: cookieOpts?.secret ? { secret: cookieOpts.secret, ...(cookieOpts.previous ? { previous: cookieOpts.previous } : {}) } : false,
          refreshMs: opts.refreshMs,
          maxUdpInFlight: opts.maxUdpInFlight,
          udpBatch: opts.udpBatch,
          responseCache: opts.responseCache === false ? false : opts.responseCache && { maxEntries: opts.responseCache.maxEntries, maxBytes: opts.responseCache.maxBytes, maxAgeMs: opts.responseCache.maxAgeMs, maxResponseBytes: opts.responseCache.maxResponseBytes },
          tcp_shared: !opts.xfr,
        },
        { udp, tcp },
        {
          onQuery: (zone, imvu, n) => {
            try {
              opts.onQuery?.(zone, imvu, n);
            } catch (err) {
              fail(err);
            }
          },
          onError: fail,
        },
      );
    } catch (err) {
      view.close();
      udp.close();
      tcp.close();
      throw err;
    }
  }
  try {
    udp.setRecvBufferSize(4 * 1024 * 1024);
  } catch {
    // The kernel's limit applies; the default buffer still works.
  }

  // UDP: batched (udp-batch.ts) or through Node's dgram. In the dgram mode the answer is sent with
  // no callback: Node then sends at once (uv_udp_try_send) with no request object and no call back
  // into JavaScript, which cost as much as a signature per answer; a send that fails later is the
  // socket's 'error' event (counted by `fail`).
  const onDatagram = udpAnswerer({ view, respond, cache, cookies, limiter, maxInFlight: maxUdpInFlight, stats: s, meter, onError: fail });
  udp.on('error', fail);
  const udpIn = listenUdp(
    udp,
    (msg, address, sourcePort, send, to) => {
      s.udpQueries++;
      // Spoofed sources on echo/chargen-style ports would turn an answer into a loop (as BIND does).
      if (SUSPICIOUS_PORTS.has(sourcePort)) {
        s.ignored++;
        return;
      }
      void onDatagram(msg, address, send, to);
    },
    { batched: opts.udpBatch !== false, onError: fail },
  );
  const batched = batchedUdp();
  const mine: UdpMode = udpIn.mode === 'batched' ? { mode: 'batched' } : { mode: 'dgram', reason: opts.udpBatch === false ? 'udpBatch is false' : batched.available ? 'the socket has no descriptor to read' : batched.reason };
  // One process reading through dgram is enough to say so: it answers its share of the datagrams.
  const worker = workers?.udp.findIndex((m) => m.mode === 'dgram') ?? -1;
  const udpMode: UdpMode = mine.mode === 'dgram' || worker < 0 ? mine : { mode: 'dgram', reason: `DNS worker ${worker + 1}: ${(workers!.udp[worker] as { reason: string }).reason}` };

  // TCP. A connection costs a slot, so a client that holds one without asking anything loses it:
  // per source address (IPv6 per prefix) at most `perSource` connections; a message must be
  // complete within `messageTimeoutMs` of its first byte; a connection that completes no query
  // (and writes no answer) for `idleTimeoutMs` is closed, bytes trickling in or not; none lives
  // past `lifetimeMs` (it stops reading then, and closes once its answers are written). When every
  // slot is taken, the connection idle longest (none of its queries in progress) makes room.
  interface Conn {
    sock: net.Socket;
    source: string;
    /** When it last completed a query or wrote an answer (performance.now()). */
    progress: number;
    busy(): boolean;
  }
  const conns = new Set<Conn>();
  const perSource = new Map<string, number>();
  const evictIdle = (): boolean => {
    let victim: Conn | undefined;
    for (const c of conns) if (!c.busy() && (!victim || c.progress < victim.progress)) victim = c;
    if (!victim) return false;
    s.tcpEvicted++;
    victim.sock.destroy();
    conns.delete(victim);
    return true;
  };
  tcp.on('error', fail);
  tcp.on('connection', (sock) => {
    sock.on('error', () => sock.destroy());
    const remote = sock.remoteAddress;
    if (!remote) {
      sock.destroy();
      return;
    }
    const source = prefixKey(remote, 32, sourcePrefixV6);
    const held = perSource.get(source) ?? 0;
    if (held >= maxPerSource || (conns.size >= maxConnections && !evictIdle())) {
      s.tcpRefused++;
      sock.destroy();
      return;
    }
    s.tcpConnections++;
    perSource.set(source, held + 1);
    let partial: Buffer = Buffer.alloc(0);
    const queue: Buffer[] = [];
    let pumping = false;
    let ending = false;
    const conn: Conn = { sock, source, progress: performance.now(), busy: () => pumping || queue.length > 0 };
    conns.add(conn);
    const timeout = () => {
      s.tcpTimeouts++;
      sock.destroy();
    };
    const idle = setTimeout(timeout, idleTimeoutMs);
    let message: NodeJS.Timeout | undefined;
    const lifetime = setTimeout(() => {
      // Read nothing more; what is queued is answered, then the connection ends.
      ending = true;
      sock.pause();
      if (message) clearTimeout(message);
      if (!conn.busy()) sock.end();
    }, lifetimeMs);
    const progressed = () => {
      conn.progress = performance.now();
      idle.refresh();
    };
    sock.on('close', () => {
      clearTimeout(idle);
      clearTimeout(lifetime);
      if (message) clearTimeout(message);
      // Every accepted connection closes once (an evicted one too: it left `conns` already).
      conns.delete(conn);
      const n = (perSource.get(source) ?? 1) - 1;
      if (n > 0) perSource.set(source, n);
      else perSource.delete(source);
    });
    sock.setNoDelay(true);

    const start = (msg: Buffer): XfrHandled | Pending => {
      s.tcpQueries++;
      const r = cachedOrRespond(msg, 'tcp', remote);
      return r instanceof Promise ? new Pending(r) : r;
    };
    const pump = async () => {
      if (pumping) return;
      pumping = true;
      // Answers written while no query waits on the responder go out together (the socket corked:
      // one writev for a run of cached answers instead of a write each); uncorked before any wait.
      let corked = false;
      const flush = () => {
        if (!corked) return;
        corked = false;
        sock.uncork();
      };
      const drained = () => {
        flush();
        // The peer does not read: wait for it (the idle timeout ends a peer that never does).
        return new Promise<void>((resolve) => {
          const done = () => {
            sock.off('drain', done);
            sock.off('close', done);
            resolve();
          };
          sock.on('drain', done);
          sock.on('close', done);
        });
      };
      try {
        while (queue.length > 0 && !sock.destroyed) {
          // Every query read so far is started at once (at most maxPending): misses are looked up
          // and signed side by side, and their answers still go out in order, corked together
          // when they are ready, instead of one uncork and one write per miss.
          const started = queue.splice(0, queue.length).map(start);
          for (const r of started) {
            // A cache hit is answered without a turn through a promise; a miss not finished yet
            // sends what is written first.
            let h: XfrHandled;
            if (r instanceof Pending) {
              if (!r.settled) flush();
              h = await r.promise;
            } else h = r;
            if (sock.destroyed) break;
            if (!h.response) {
              s.ignored++;
              continue;
            }
            s.responses++;
            meter(h);
            if (!h.stream) {
              if (!corked) {
                sock.cork();
                corked = true;
              }
              if (!sock.write(frame(h.response))) await drained();
              progressed();
            } else {
              flush();
              // A zone transfer is several messages: the rest follow the first, in order.
              for (const out of messages(h.response, h.stream)) {
                if (sock.destroyed) break;
                if (!sock.write(frame(out))) await drained();
                progressed();
              }
            }
          }
          if (!ending && sock.isPaused() && queue.length < maxPending) resume();
        }
      } catch (err) {
        fail(err);
        sock.destroy();
      } finally {
        flush();
        pumping = false;
      }
      if (ending) {
        if (queue.length === 0 && !sock.destroyed) sock.end();
      } else if (queue.length < maxPending && sock.isPaused() && !sock.destroyed) resume();
    };
    /** The deadline of the message begun in `partial`, from its first byte; not moved by more bytes. */
    const armMessage = (fresh: boolean) => {
      if (partial.length === 0 || ending) {
        if (message) clearTimeout(message);
        message = undefined;
      } else if (fresh || !message) {
        if (message) clearTimeout(message);
        message = setTimeout(timeout, messageTimeoutMs);
      }
    };
    const resume = () => {
      sock.resume();
      // Our own back-pressure paused the reading: the message deadline starts again.
      armMessage(true);
    };

    sock.on('data', (chunk: Buffer) => {
      if (ending) return;
      let buf = partial.length > 0 ? Buffer.concat([partial, chunk]) : chunk;
      let completed = false;
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < 12) {
          // Not a DNS message: the framing cannot be trusted any more.
          sock.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        queue.push(Buffer.from(buf.subarray(2, 2 + len)));
        buf = buf.subarray(2 + len);
        completed = true;
      }
      // At most one incomplete message (< 64 KiB) is kept between reads.
      partial = buf.length > 0 ? Buffer.from(buf) : Buffer.alloc(0);
      if (completed) progressed();
      if (queue.length >= maxPending) {
        sock.pause();
        if (message) clearTimeout(message);
        message = undefined;
      } else armMessage(completed);
      void pump();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    view,
    xfr,
    notifier,
    cookies,
    workers,
    warmed: Promise.all([warmed, workers?.warmed]).then(() => undefined),
    udp: udpMode,
    stats: () => {
      const c = cache?.stats();
      const u = udpIn.stats();
      const mine: Record<string, number> = { ...s, rrlBuckets: limiter?.size ?? 0, openConnections: conns.size, cacheHits: c?.hits ?? 0, cacheMisses: c?.misses ?? 0, cacheEntries: c?.entries ?? 0, udpBatches: u.batches, udpStale: u.stale, udpSendDropped: u.dropped, udpTruncated: u.truncated };
      // Every process's counts: the workers' as they last reported them (a few times a second).
      for (const [k, v] of Object.entries(workers?.stats() ?? {})) mine[k] = (mine[k] ?? 0) + v;
      return mine as unknown as ReturnType<DnsServer['stats']>;
    },
    close() {
      closingNow = true;
      closing ??= (async () => {
        await workers?.close();
        udpIn.close();
        view.close();
        await notifier?.close();
        for (const c of conns) c.sock.destroy();
        await Promise.all([
          new Promise<void>((resolve) => udp.close(() => resolve())),
          new Promise<void>((resolve) => tcp.close(() => resolve())),
        ]);
      })();
      return closing;
    },
  };
}
