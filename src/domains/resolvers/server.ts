// The resolver's sockets: UDP and TCP on one port, for IMVU workloads and the mail system only.
// A client outside the allow-list gets REFUSED and causes no upstream query. Identical questions
// in flight share one resolution; at most `maxInFlight` resolutions run at once (beyond: UDP
// dropped, TCP SERVFAIL). Answers carry RA, never AA.
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, OptAnswer, Packet, Question } from 'dns-packet';
import { Acl, DEFAULT_ALLOW } from './acl.ts';
import { Cache, type CacheOptions, type CacheStats } from './cache.ts';
import { Iterator, type IteratorOptions, type Limits, type Resolution, type RootHint } from './iterator.ts';
import { norm } from './names.ts';
import { bindUdpAndTcp } from '../listen.ts';

export interface ResolverOptions {
  /** Default 127.0.0.1. */
  address?: string;
  /** 0 (the default) picks a free port, the same for UDP and TCP. */
  port?: number;
  /** Client prefixes served; everyone else is REFUSED. Default 127.0.0.0/8 and ::1. */
  allow?: string[];
  rootHints: RootHint[];
  cache?: CacheOptions;
  /** Port of the servers learned from referrals. Default 53. */
  upstreamPort?: number;
  limits?: Partial<Limits>;
  /** RFC 9156. Default true. */
  qnameMinimisation?: boolean;
  /** Client questions being resolved at once. Default 1024. */
  maxInFlight?: number;
  tcp?: { maxConnections?: number; idleTimeoutMs?: number };
  /** Every upstream query, as sent. */
  onUpstreamQuery?: IteratorOptions['onQuery'];
  onError?: (err: unknown) => void;
}

export interface ResolverStats {
  queries: number;
  refused: number;
  formerr: number;
  noerror: number;
  nxdomain: number;
  servfail: number;
  /** Questions answered by a resolution already in flight for the same question. */
  coalesced: number;
  dropped: number;
  upstreamQueries: number;
  upstreamFailures: number;
  cache: CacheStats;
}

export interface Resolver {
  address: string;
  port: number;
  readonly cache: Cache;
  stats(): ResolverStats;
  close(): Promise<void>;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const QR = 0x8000;
const RD = dnsPacket.RECURSION_DESIRED;
const RA = dnsPacket.RECURSION_AVAILABLE;
const TC = dnsPacket.TRUNCATED_RESPONSE;
const MAX_UDP = 1232;
const CLASSIC_UDP = 512;

export async function startResolver(opts: ResolverOptions): Promise<Resolver> {
  const address = opts.address ?? '127.0.0.1';
  const acl = new Acl(opts.allow ?? DEFAULT_ALLOW);
  const cache = new Cache(opts.cache);
  const iterator = new Iterator({
    cache,
    rootHints: opts.rootHints,
    ...(opts.upstreamPort !== undefined ? { upstreamPort: opts.upstreamPort } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.qnameMinimisation !== undefined ? { qnameMinimisation: opts.qnameMinimisation } : {}),
    ...(opts.onUpstreamQuery ? { onQuery: opts.onUpstreamQuery } : {}),
  });
  const maxInFlight = opts.maxInFlight ?? 1024;
  const onError = opts.onError ?? (() => undefined);
  const s = { queries: 0, refused: 0, formerr: 0, noerror: 0, nxdomain: 0, servfail: 0, coalesced: 0, dropped: 0 };
  const inflight = new Map<string, Promise<Resolution>>();
  let closed = false;

  const resolveShared = (name: string, type: string): Promise<Resolution> | undefined => {
    const key = `${norm(name)}|${type}`;
    const running = inflight.get(key);
    if (running) {
      s.coalesced++;
      return running;
    }
    if (inflight.size >= maxInFlight) return undefined;
    const p = iterator.resolve(name, type).finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  };

  /** One message in, at most one out. */
  const handle = async (msg: Buffer, from: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> => {
    if (msg.length < 12) return undefined;
    const id = msg.readUInt16BE(0);
    const flags = msg.readUInt16BE(2);
    if (flags & QR) return undefined; // never answer a response
    s.queries++;
    const opcode = (flags >> 11) & 0xf;
    const head = { id, flags: (opcode << 11) | (flags & RD) | RA };
    const reply = (rcode: number, questions: Question[] = [], sections: Pick<Packet, 'answers' | 'authorities'> = {}, opt?: OptAnswer, extra = 0) =>
      dnsPacket.encode({
        type: 'response',
        id: head.id,
        flags: head.flags | extra | rcode,
        questions,
        answers: sections.answers ?? [],
        authorities: sections.authorities ?? [],
        additionals: opt ? [opt] : [],
      });
    const shaped = msg.readUInt16BE(4) === 1 && msg.readUInt16BE(6) === 0 && msg.readUInt16BE(8) === 0 && msg.readUInt16BE(10) <= 3;
    let query: DecodedPacket | undefined;
    if (shaped) {
      try {
        query = dnsPacket.decode(msg);
        if (dnsPacket.decode.bytes !== msg.length) query = undefined;
      } catch {
        query = undefined;
      }
    }
    const q = query?.questions?.[0];
    if (!acl.allows(from)) {
      s.refused++;
      return reply(RCODE.REFUSED, q ? [q] : []);
    }
    if (!query || !q) {
      s.formerr++;
      return reply(opcode === 0 ? RCODE.FORMERR : RCODE.NOTIMP);
    }
    const clientOpt = (query.additionals ?? []).find((a): a is OptAnswer => a.type === 'OPT');
    const opt: OptAnswer | undefined = clientOpt && { name: '.', type: 'OPT', udpPayloadSize: MAX_UDP, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
    if (opcode !== 0) return reply(RCODE.NOTIMP, [q], {}, opt);
    if (q.class !== 'IN' || q.type === 'AXFR' || q.type === 'IXFR' || q.type === 'OPT') {
      s.refused++;
      return reply(RCODE.REFUSED, [q], {}, opt);
    }
    const pending = resolveShared(q.name, q.type);
    if (!pending) {
      s.dropped++;
      return transport === 'tcp' ? reply(RCODE.SERVFAIL, [q], {}, opt) : undefined;
    }
    const r = await pending;
    if (r.rcode === 'NOERROR') s.noerror++;
    else if (r.rcode === 'NXDOMAIN') s.nxdomain++;
    else s.servfail++;
    let out: Buffer;
    try {
      out = reply(RCODE[r.rcode], [q], { answers: r.answers, authorities: r.authorities }, opt);
    } catch (err) {
      onError(err);
      s.servfail++;
      return reply(RCODE.SERVFAIL, [q], {}, opt);
    }
    const limit = transport === 'tcp' ? 65535 : clientOpt ? Math.min(MAX_UDP, Math.max(CLASSIC_UDP, clientOpt.udpPayloadSize)) : CLASSIC_UDP;
    return out.length <= limit ? out : reply(RCODE[r.rcode], [q], {}, opt, TC);
  };

  const { udp, tcp, port } = await bindUdpAndTcp(address, opts.port ?? 0);
  udp.on('error', onError);
  udp.on('message', (msg, rinfo) => {
    handle(msg, rinfo.address, 'udp').then(
      (out) => {
        if (!out || closed) return;
        try {
          udp.send(out, rinfo.port, rinfo.address, (err) => err && onError(err));
        } catch (err) {
          onError(err); // closed while resolving
        }
      },
      (err: unknown) => onError(err),
    );
  });

  const conns = new Set<net.Socket>();
  tcp.maxConnections = opts.tcp?.maxConnections ?? 128;
  tcp.on('error', onError);
  tcp.on('connection', (sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setTimeout(opts.tcp?.idleTimeoutMs ?? 10_000, () => sock.destroy());
    const from = sock.remoteAddress ?? '';
    let buf: Buffer = Buffer.alloc(0);
    let chain = Promise.resolve();
    let queued = 0;
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (len < 12 || ++queued > 16) {
          sock.destroy();
          return;
        }
        // Answered in order, one at a time per connection.
        chain = chain.then(async () => {
          const out = await handle(msg, from, 'tcp').catch((err: unknown) => (onError(err), undefined));
          queued--;
          if (!out || sock.destroyed) return;
          const framed = Buffer.allocUnsafe(out.length + 2);
          framed.writeUInt16BE(out.length, 0);
          out.copy(framed, 2);
          sock.write(framed);
        });
      }
      buf = Buffer.from(buf);
    });
  });

  let closing: Promise<void> | undefined;
  return {
    address,
    port,
    cache,
    stats: () => ({ ...s, ...iterator.stats, cache: cache.stats() }),
    close: () =>
      (closing ??= (async () => {
        closed = true;
        for (const c of conns) c.destroy();
        await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
      })()),
  };
}
