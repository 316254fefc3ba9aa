// DNS for mail authentication through the project's own iterative resolver (src/domains/resolvers),
// shaped like node:dns/promises resolve(), which is what mailauth calls: TXT as arrays of strings,
// MX as {exchange, priority}, errors with ENOTFOUND (NXDOMAIN), ENODATA (no such type) and ESERVFAIL.
import type { Answer } from 'dns-packet';
import { Cache, Iterator, type Limits, type RootHint } from '../../domains/resolvers/index.ts';

export interface MailResolverOptions {
  rootHints: RootHint[];
  /** Port of the servers learned from referrals. Default 53. */
  upstreamPort?: number;
  limits?: Partial<Limits>;
  /** Cached records (by TTL), shared by every look-up of this resolver. Default 4096. */
  cacheEntries?: number;
}

export type MailResolver = (name: string, rrtype: string) => Promise<unknown[]>;

const TYPES = new Set(['A', 'AAAA', 'TXT', 'MX', 'PTR', 'CNAME', 'NS']);

function dnsError(code: string, name: string, type: string, why?: string): Error {
  const err = new Error(`${type} ${name}: ${code}${why ? ` (${why})` : ''}`) as NodeJS.ErrnoException & { hostname?: string };
  err.code = code;
  err.hostname = name;
  return err;
}

function shape(a: Answer): unknown {
  const data = (a as { data?: unknown }).data;
  switch (a.type) {
    case 'TXT':
      return (Array.isArray(data) ? data : [data]).map((p) => (Buffer.isBuffer(p) ? p.toString('utf8') : String(p ?? '')));
    case 'MX': {
      const mx = data as { preference?: number; exchange?: string };
      return { exchange: String(mx.exchange ?? '').replace(/\.$/, ''), priority: mx.preference ?? 0 };
    }
    default:
      return typeof data === 'string' ? data.replace(/\.$/, '') : data;
  }
}

export function mailResolver(opts: MailResolverOptions): MailResolver {
  if (opts.rootHints.length === 0) throw new Error('mail authentication needs at least one root hint');
  const iterator = new Iterator({
    cache: new Cache({ maxEntries: opts.cacheEntries ?? 4096 }),
    rootHints: opts.rootHints,
    ...(opts.upstreamPort !== undefined ? { upstreamPort: opts.upstreamPort } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  return async (name, rrtype) => {
    const type = rrtype.toUpperCase();
    if (!TYPES.has(type)) throw dnsError('ENOTIMP', name, type);
    const qname = name.replace(/\.$/, '').toLowerCase();
    if (qname.length === 0 || qname.length > 253) throw dnsError('EBADNAME', name, type);
    const r = await iterator.resolve(qname, type);
    if (r.rcode === 'NXDOMAIN') throw dnsError('ENOTFOUND', name, type);
    if (r.rcode === 'SERVFAIL') throw dnsError('ESERVFAIL', name, type, r.reason);
    const rrs = r.answers.filter((a) => a.type === type);
    if (rrs.length === 0) throw dnsError('ENODATA', name, type);
    return rrs.map(shape);
  };
}
