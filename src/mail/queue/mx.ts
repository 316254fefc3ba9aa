// Where mail for a domain goes (RFC 5321 5.1): its MX hosts by preference, else the domain itself
// (implicit MX); a null MX (RFC 7505, `0 .`) or NXDOMAIN refuses for good; SERVFAIL is temporary.
// Looked up through the project's own iterative resolver (src/domains/resolvers).
import type { Answer } from 'dns-packet';
import { isIPv4 } from 'node:net';
import { Cache, Iterator, type Limits, type RootHint } from '../../domains/resolvers/index.ts';

export interface MxHost {
  host: string;
  preference: number;
  addresses: string[];
}

export type MxResult = { kind: 'hosts'; hosts: MxHost[] } | { kind: 'permanent'; reason: string } | { kind: 'temporary'; reason: string };

export type MxLookup = (domain: string) => Promise<MxResult>;

export interface MxResolverOptions {
  rootHints: RootHint[];
  /** Port of the servers learned from referrals. Default 53. */
  upstreamPort?: number;
  limits?: Partial<Limits>;
  /** Shared cache (default: one of 4096 entries for this resolver). */
  cache?: Cache;
}

const MAX_HOSTS = 10;

export function mxResolver(opts: MxResolverOptions): MxLookup {
  if (opts.rootHints.length === 0) throw new Error('MX look-ups need at least one root hint');
  const cache = opts.cache ?? new Cache({ maxEntries: 4096 });
  const iterator = new Iterator({
    cache,
    rootHints: opts.rootHints,
    ...(opts.upstreamPort !== undefined ? { upstreamPort: opts.upstreamPort } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
  const addresses = async (host: string): Promise<string[]> => {
    if (isIPv4(host)) return [host];
    const r = await iterator.resolve(host, 'A');
    return r.answers.filter((a) => a.type === 'A').map((a) => String((a as { data: unknown }).data));
  };
  return async (domain) => {
    const mx = await iterator.resolve(domain, 'MX');
    if (mx.rcode === 'NXDOMAIN') return { kind: 'permanent', reason: `550 5.1.2 domain ${domain} does not exist` };
    if (mx.rcode === 'SERVFAIL') return { kind: 'temporary', reason: `451 4.4.3 MX look-up of ${domain} failed: ${mx.reason ?? 'SERVFAIL'}` };
    const records = mx.answers
      .filter((a): a is Answer & { data: { preference: number; exchange: string } } => a.type === 'MX')
      .map((a) => ({ preference: a.data.preference, host: a.data.exchange.replace(/\.$/, '').toLowerCase() }));
    if (records.some((r) => r.host === '' && r.preference === 0)) return { kind: 'permanent', reason: `556 5.1.10 ${domain} accepts no mail (null MX)` };
    const list = records.length > 0 ? records.sort((a, b) => a.preference - b.preference).slice(0, MAX_HOSTS) : [{ preference: 0, host: domain.toLowerCase() }];
    const hosts: MxHost[] = [];
    for (const r of list) {
      const a = await addresses(r.host);
      if (a.length > 0) hosts.push({ ...r, addresses: a });
    }
    if (hosts.length === 0) return { kind: 'temporary', reason: `451 4.4.4 no address for the mail hosts of ${domain}` };
    return { kind: 'hosts', hosts };
  };
}
