// A tiny authoritative DNS server over fixed zones (UDP only, dns-packet), for what the Nexus
// server does not serve: the root and top-level zones of a loopback hierarchy that delegates IMVU
// zones to the real Nexus authoritative server. It logs every question it receives, so tests can
// see what a resolver asked (QNAME minimisation, caching).
//
// Lookup: the deepest zone enclosing the name; a delegation (NS below the apex, at or above the
// name) is a referral with glue and no AA; otherwise an AA answer, a CNAME (not chased), NODATA
// or NXDOMAIN with the SOA in authority (its TTL the negative TTL, RFC 2308 3).
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket } from 'dns-packet';

export interface FixedRecord {
  name: string;
  type: 'A' | 'AAAA' | 'NS' | 'CNAME' | 'SOA' | 'TXT' | 'MX';
  ttl?: number;
  data: unknown;
}

export interface FixedZone {
  /** '' for the root. */
  origin: string;
  records: FixedRecord[];
}

export interface SeenQuery {
  name: string;
  type: string;
  from: string;
}

export interface FixedZoneServer {
  address: string;
  port: number;
  /** Every question received, in order. */
  log: SeenQuery[];
  close(): Promise<void>;
}

const lower = (n: string) => (n === '.' ? '' : n.replace(/\.$/, '').toLowerCase());
const under = (name: string, zone: string) => zone === '' || name === zone || name.endsWith('.' + zone);

export function soa(origin: string, minimum = 60): FixedRecord {
  return {
    name: origin,
    type: 'SOA',
    ttl: 3600,
    data: { mname: `ns.${origin || 'root'}.`, rname: `hostmaster.${origin || 'root'}.`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  };
}

function answerFor(zones: FixedZone[], name: string, type: string): { rcode: number; aa: boolean; answers: Answer[]; authorities: Answer[]; additionals: Answer[] } {
  const zone = zones.filter((z) => under(name, z.origin)).sort((a, b) => b.origin.length - a.origin.length)[0];
  if (!zone) return { rcode: 5, aa: false, answers: [], authorities: [], additionals: [] };
  const rr = (r: FixedRecord): Answer => ({ name: r.name === '' ? '.' : r.name, type: r.type, ttl: r.ttl ?? 300, class: 'IN', data: r.data }) as Answer;
  const at = (n: string) => zone.records.filter((r) => lower(r.name) === n);
  const soaRR = zone.records.find((r) => r.type === 'SOA')!;
  const negative = { ...rr(soaRR), ttl: Math.min(soaRR.ttl ?? 300, (soaRR.data as { minimum: number }).minimum) } as Answer;
  // Delegations, closest to the apex first.
  const labels = name === '' ? [] : name.split('.');
  const apexLabels = zone.origin === '' ? 0 : zone.origin.split('.').length;
  for (let n = apexLabels + 1; n <= labels.length; n++) {
    const cut = labels.slice(labels.length - n).join('.');
    const ns = at(cut).filter((r) => r.type === 'NS');
    if (ns.length === 0) continue;
    const targets = ns.map((r) => lower(String(r.data)));
    const glue = zone.records.filter((r) => (r.type === 'A' || r.type === 'AAAA') && targets.includes(lower(r.name)));
    return { rcode: 0, aa: false, answers: [], authorities: ns.map(rr), additionals: glue.map(rr) };
  }
  const here = at(name);
  if (here.length > 0) {
    const exact = here.filter((r) => r.type === type);
    if (exact.length > 0) return { rcode: 0, aa: true, answers: exact.map(rr), authorities: [], additionals: [] };
    const cname = here.filter((r) => r.type === 'CNAME');
    if (cname.length > 0) return { rcode: 0, aa: true, answers: cname.map(rr), authorities: [], additionals: [] };
    return { rcode: 0, aa: true, answers: [], authorities: [negative], additionals: [] };
  }
  const emptyNonTerminal = zone.records.some((r) => lower(r.name).endsWith('.' + name) || (name === '' && r.name !== ''));
  if (emptyNonTerminal) return { rcode: 0, aa: true, answers: [], authorities: [negative], additionals: [] };
  return { rcode: 3, aa: true, answers: [], authorities: [negative], additionals: [] };
}

export async function startFixedZoneServer(opts: { address: string; port: number; zones: FixedZone[] }): Promise<FixedZoneServer> {
  const zones = opts.zones.map((z) => ({ origin: lower(z.origin), records: z.records }));
  const log: SeenQuery[] = [];
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(opts.port, opts.address, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  sock.on('message', (msg, rinfo) => {
    let q: DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (q.type !== 'query' || !question) return;
    const name = lower(question.name);
    log.push({ name, type: question.type, from: rinfo.address });
    const a = answerFor(zones, name, question.type);
    const opt = (q.additionals ?? []).some((r) => r.type === 'OPT')
      ? [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as Answer]
      : [];
    const out = dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: (a.aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | a.rcode,
      questions: [question],
      answers: a.answers,
      authorities: a.authorities,
      additionals: [...a.additionals, ...opt],
    });
    sock.send(out, rinfo.port, rinfo.address);
  });
  return {
    address: opts.address,
    port: (sock.address() as { port: number }).port,
    log,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
