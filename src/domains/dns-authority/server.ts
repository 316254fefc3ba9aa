import dgram from 'node:dgram';
import net from 'node:net';
import type { Store } from '../../core/store/index.ts';
import type { OnlineSigner } from '../dnssec/online.ts';
import { handleMessage, type Handled } from './responder.ts';
import { ResponseRateLimiter, RRL_DEFAULTS, type RrlOptions } from './rrl.ts';
import { ZoneView } from './zone-view.ts';
import { cacheKey, ResponseCache, type ResponseCacheOptions } from './response-cache.ts';
import { checkXfrOptions, XfrService, type XfrHandled, type XfrOptions } from './xfr.ts';
import { Notifier } from './notify.ts';
import { bindUdpAndTcp as bindBoth } from '../listen.ts';
import { tsigKey } from './tsig.ts';

// The authoritative server's sockets: UDP and TCP on one port. TCP carries 2-byte length-prefixed
// messages (RFC 1035 4.2.2, RFC 7766), several per connection, answered in order, with an idle
// timeout, a connection limit, a bound on queued messages and write back-pressure. Response rate
// limiting applies to UDP only: a TCP peer has proved its address with the handshake.

export interface DnsServerOptions {
  store: Store;
  /** Default 127.0.0.1. */
  address?: string;
  /** 0 (the default) picks a free port, the same for UDP and TCP. */
  port?: number;
  /** Called once per response sent for a hosted zone (answers, NXDOMAIN/NODATA, referrals). */
  onQuery?: (zone: string, imvu: string) => void;
  /** Response rate limiting per source prefix; on by default (RRL_DEFAULTS), `false` turns it off. */
  rrl?: RrlOptions | false;
  tcp?: {
    /** Default 256. */
    maxConnections?: number;
    /** Close a connection idle this long. Default 10 s. */
    idleTimeoutMs?: number;
    /** Stop reading a connection while this many of its queries wait. Default 32. */
    maxPending?: number;
  };
  /** DNSSEC online signing of the zones that have a key (`onlineSigner(store, dataDir)` from src/domains/dnssec). */
  dnssec?: OnlineSigner;
  /** Zone transfers out (AXFR/IXFR over TCP, TSIG or address allow-list) and NOTIFY; see xfr.ts. Off when unset. */
  xfr?: XfrOptions;
  /** How often the zone view looks for committed changes. Default 200 ms. */
  refreshMs?: number;
  /** UDP queries in progress at most (beyond: dropped). Default 4096. */
  maxUdpInFlight?: number;
  /** Encoded answers reused for identical queries (response-cache.ts); on by default, `false` turns it off. */
  responseCache?: ResponseCacheOptions | false;
  onError?: (err: unknown) => void;
}

export interface DnsServerStats {
  udpQueries: number;
  tcpQueries: number;
  tcpConnections: number;
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
  stats(): DnsServerStats & { rrlBuckets: number; openConnections: number; cacheHits: number; cacheMisses: number; cacheEntries: number };
  close(): Promise<void>;
}

/** UDP source ports never answered: 0, echo, daytime, chargen, time, kpasswd. */
const SUSPICIOUS_PORTS = new Set([0, 7, 13, 19, 37, 464]);

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
  const view = await ZoneView.open(opts.store, { refreshMs: opts.refreshMs, onError, onSerialChange: notifier && ((z) => notifier.notify(z.name, z.serial)) });
  const answer = (msg: Buffer, t: 'udp' | 'tcp') => handleMessage(view, msg, t, opts.dnssec);
  const xfr = opts.xfr ? new XfrService(view, opts.store, opts.xfr, { answer, keys: opts.dnssec?.keys }) : undefined;
  const respond = (msg: Buffer, t: 'udp' | 'tcp', peer: string): Promise<XfrHandled> => (xfr ? xfr.handle(msg, t, peer) : answer(msg, t));
  const limiter = opts.rrl === false ? undefined : new ResponseRateLimiter(opts.rrl ?? RRL_DEFAULTS);
  const cache = opts.responseCache === false ? undefined : new ResponseCache(view, opts.responseCache);
  /** The answer from the cache, or the responder's (then kept in the cache when it may be). TCP's; UDP does the same inline. */
  const cachedOrRespond = (msg: Buffer, t: 'udp' | 'tcp', peer: string): XfrHandled | Promise<XfrHandled> => {
    const key = cache && cacheKey(msg, t);
    if (key === undefined) return respond(msg, t, peer);
    const hit = cache!.get(key, msg);
    if (hit) return hit;
    // The zone set as the query found it: an answer computed across a change of it is not kept.
    const generation = view.generation;
    return respond(msg, t, peer).then((h) => {
      cache!.set(key, h, generation);
      return h;
    });
  };
  const maxConnections = opts.tcp?.maxConnections ?? 256;
  const idleTimeoutMs = opts.tcp?.idleTimeoutMs ?? 10_000;
  const maxPending = opts.tcp?.maxPending ?? 32;
  const maxUdpInFlight = opts.maxUdpInFlight ?? 4096;
  const s: DnsServerStats = {
    udpQueries: 0, tcpQueries: 0, tcpConnections: 0, responses: 0, answered: 0,
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
    bound = await bindBoth(address, opts.port ?? 0);
  } catch (err) {
    view.close();
    throw err;
  }
  const { udp, tcp, port } = bound;
  try {
    udp.setRecvBufferSize(4 * 1024 * 1024);
  } catch {
    // The kernel's limit applies; the default buffer still works.
  }

  // UDP
  let udpInFlight = 0;
  const sent = (err: Error | null) => {
    if (err) s.errors++;
  };
  /** Rate limiting, the send and metering of one UDP answer, from the cache or the responder. */
  const sendUdp = (h: Handled, rinfo: dgram.RemoteInfo) => {
    if (!h.response) {
      s.ignored++;
      return;
    }
    let out = h.response;
    let counts = true;
    const verdict = limiter?.check(rinfo.address) ?? 'send';
    if (verdict === 'drop' || (verdict === 'slip' && !h.truncated)) {
      s.rrlDropped++;
      return;
    }
    if (verdict === 'slip') {
      s.rrlSlipped++;
      out = h.truncated!();
      counts = false;
    }
    s.responses++;
    udp.send(out, rinfo.port, rinfo.address, sent);
    if (counts) meter(h);
  };
  udp.on('error', fail);
  udp.on('message', (msg, rinfo) => {
    s.udpQueries++;
    // Spoofed sources on echo/chargen-style ports would turn an answer into a loop (as BIND does).
    if (SUSPICIOUS_PORTS.has(rinfo.port)) {
      s.ignored++;
      return;
    }
    // A cache hit is answered now, without a promise, even when too many misses are in progress:
    // a flood of names asked once does not shut out the names asked often.
    const key = cache && cacheKey(msg, 'udp');
    if (key !== undefined) {
      const hit = cache!.get(key, msg);
      if (hit) {
        sendUdp(hit, rinfo);
        return;
      }
    }
    if (udpInFlight >= maxUdpInFlight) {
      s.busyDropped++;
      return;
    }
    udpInFlight++;
    const generation = view.generation;
    respond(msg, 'udp', rinfo.address)
      .then((h) => {
        if (key !== undefined) cache!.set(key, h, generation);
        sendUdp(h, rinfo);
      })
      .catch(fail)
      .finally(() => udpInFlight--);
  });

  // TCP
  const conns = new Set<net.Socket>();
  tcp.maxConnections = maxConnections;
  tcp.on('error', fail);
  tcp.on('connection', (sock) => {
    s.tcpConnections++;
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setNoDelay(true);
    sock.setTimeout(idleTimeoutMs, () => sock.destroy());
    let partial: Buffer = Buffer.alloc(0);
    const queue: Buffer[] = [];
    let pumping = false;

    const pump = async () => {
      if (pumping) return;
      pumping = true;
      try {
        while (queue.length > 0 && !sock.destroyed) {
          const msg = queue.shift()!;
          s.tcpQueries++;
          const h = await cachedOrRespond(msg, 'tcp', sock.remoteAddress ?? '');
          if (sock.destroyed) break;
          if (!h.response) {
            s.ignored++;
            continue;
          }
          s.responses++;
          meter(h);
          // A zone transfer is several messages: the rest follow the first, in order.
          for (const out of messages(h.response, h.stream)) {
            if (sock.destroyed) break;
            if (!sock.write(frame(out))) {
              // The peer does not read: wait for it (the idle timeout ends a peer that never does).
              await new Promise<void>((resolve) => {
                const done = () => {
                  sock.off('drain', done);
                  sock.off('close', done);
                  resolve();
                };
                sock.on('drain', done);
                sock.on('close', done);
              });
            }
          }
          if (sock.isPaused() && queue.length < maxPending) sock.resume();
        }
      } catch (err) {
        fail(err);
        sock.destroy();
      } finally {
        pumping = false;
      }
      if (queue.length < maxPending && sock.isPaused() && !sock.destroyed) sock.resume();
    };

    sock.on('data', (chunk: Buffer) => {
      let buf = partial.length > 0 ? Buffer.concat([partial, chunk]) : chunk;
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
      }
      // At most one incomplete message (< 64 KiB) is kept between reads.
      partial = buf.length > 0 ? Buffer.from(buf) : Buffer.alloc(0);
      if (queue.length >= maxPending) sock.pause();
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
    stats: () => {
      const c = cache?.stats();
      return { ...s, rrlBuckets: limiter?.size ?? 0, openConnections: conns.size, cacheHits: c?.hits ?? 0, cacheMisses: c?.misses ?? 0, cacheEntries: c?.entries ?? 0 };
    },
    close() {
      closing ??= (async () => {
        view.close();
        await notifier?.close();
        for (const c of conns) c.destroy();
        await Promise.all([
          new Promise<void>((resolve) => udp.close(() => resolve())),
          new Promise<void>((resolve) => tcp.close(() => resolve())),
        ]);
      })();
      return closing;
    },
  };
}
