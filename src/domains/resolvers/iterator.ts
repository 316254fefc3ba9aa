// Iterative resolution (RFC 1034 5.3.3) from root hints: ask the closest known servers, follow
// referrals down (glue from the referring zone only, glueless name servers resolved on the side),
// chase CNAMEs, cache everything by TTL (cache.ts), and hide the full name from servers that do
// not need it (QNAME minimisation, RFC 9156: the next label only, with QTYPE A, falling back to
// the full name when a server fails the minimised query).
//
// Work is bounded per client question: upstream queries, steps (referrals and minimised steps),
// nested glueless look-ups, CNAME links, and a deadline. Past any bound the answer is SERVFAIL.
// Only data within the bailiwick of the zone a server was asked about is believed.
import type { Answer } from 'dns-packet';
import { Cache, RANK } from './cache.ts';
import { ancestor, display, isAtOrBelow, labelCount, norm, selfAndAncestors } from './names.ts';
import { queryServer, type Reply, type Server } from './upstream.ts';

export interface RootHint {
  name: string;
  address: string;
  /** Default: the resolver's upstream port (53). */
  port?: number;
}

export interface Limits {
  /** Upstream queries per client question, glueless look-ups included. Default 48. */
  maxUpstreamQueries: number;
  /** Referrals plus minimised steps per client question. Default 40. */
  maxSteps: number;
  /** Nested look-ups of name-server addresses (glueless delegations). Default 3. */
  maxDepth: number;
  /** CNAME links followed. Default 8. */
  maxCname: number;
  /** One upstream query. Default 1500 ms. */
  timeoutMs: number;
  /** A whole client question. Default 4000 ms. */
  requestTimeoutMs: number;
}

export const DEFAULT_LIMITS: Limits = { maxUpstreamQueries: 48, maxSteps: 40, maxDepth: 3, maxCname: 8, timeoutMs: 1500, requestTimeoutMs: 4000 };

/** RFC 9156 section 2.3: at most this many minimised queries, the first few one label at a time. */
const MAX_MINIMISE_COUNT = 10;
const MINIMISE_ONE_LAB = 4;

export interface IteratorOptions {
  cache: Cache;
  rootHints: RootHint[];
  /** Port of the servers learned from referrals. Default 53. */
  upstreamPort?: number;
  limits?: Partial<Limits>;
  /** Default true. */
  qnameMinimisation?: boolean;
  /** Replaces the network (tests). */
  query?: (server: Server, name: string, type: string, timeoutMs: number) => Promise<Reply>;
  /** Every upstream query, as sent (observability, tests). */
  onQuery?: (server: Server, name: string, type: string) => void;
}

export interface Resolution {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL';
  answers: Answer[];
  authorities: Answer[];
  /** Why a SERVFAIL. */
  reason?: string;
}

type Step =
  | { kind: 'answer'; chain: Answer[]; rrs: Answer[] }
  | { kind: 'cname'; chain: Answer[]; target: string }
  | { kind: 'nxdomain'; chain: Answer[]; name: string; soa?: Answer }
  | { kind: 'nodata'; chain: Answer[]; name: string; soa?: Answer }
  | { kind: 'referral'; cut: string; ns: Answer[]; glue: Answer[] }
  | { kind: 'fail'; reason: string };

type Final = Exclude<Step, { kind: 'referral' }>;

interface Budget {
  queries: number;
  steps: number;
  deadline: number;
}

export interface IteratorStats {
  upstreamQueries: number;
  upstreamFailures: number;
}

const fail = (reason: string): { kind: 'fail'; reason: string } => ({ kind: 'fail', reason });
const rdataName = (r: Answer): string => norm(String((r as { data: unknown }).data));

/** What a reply means for the question (qname, qtype) asked of a server for `zone`. */
export function classify(reply: Reply, qname: string, qtype: string, zone: string): Step {
  if (reply.rcode !== 'NOERROR' && reply.rcode !== 'NXDOMAIN') return fail(`${reply.rcode} from the server`);
  const ours = (r: Answer) => ((r as { class?: string }).class ?? 'IN') === 'IN' && isAtOrBelow(norm(r.name), zone);
  const answers = (reply.answers ?? []).filter(ours);
  const authorities = (reply.authorities ?? []).filter(ours);
  const aa = !!reply.flag_aa;

  const chain: Answer[] = [];
  let cur = qname;
  const seen = new Set<string>();
  for (;;) {
    const rrs = answers.filter((r) => norm(r.name) === cur && (qtype === 'ANY' || r.type === qtype));
    if (rrs.length > 0 && reply.rcode === 'NOERROR') return aa ? { kind: 'answer', chain, rrs } : fail('an answer without the AA flag');
    if (qtype === 'CNAME') break;
    const c = answers.find((r) => norm(r.name) === cur && r.type === 'CNAME');
    if (!c) break;
    if (seen.has(cur)) return fail(`CNAME loop at ${display(cur)}`);
    seen.add(cur);
    chain.push(c);
    cur = rdataName(c);
    // Out of this zone: the target is resolved from the top, not believed from this server.
    if (!isAtOrBelow(cur, zone)) return aa ? { kind: 'cname', chain, target: cur } : fail('a CNAME without the AA flag');
  }
  const soa = authorities.find((r) => r.type === 'SOA' && isAtOrBelow(cur, norm(r.name)));
  if (reply.rcode === 'NXDOMAIN') return aa ? { kind: 'nxdomain', chain, name: cur, soa } : fail('NXDOMAIN without the AA flag');
  if (chain.length > 0) return aa && soa ? { kind: 'nodata', chain, name: cur, soa } : { kind: 'cname', chain, target: cur };

  const ns = authorities.filter((r) => r.type === 'NS');
  if (ns.length > 0) {
    const cut = norm(ns[0]!.name);
    // A referral goes down, towards the name asked; anything else is lame.
    if (cut !== zone && isAtOrBelow(cut, zone) && isAtOrBelow(qname, cut)) {
      const set = ns.filter((r) => norm(r.name) === cut);
      const targets = new Set(set.map(rdataName));
      const glue = (reply.additionals ?? []).filter((r) => (r.type === 'A' || r.type === 'AAAA') && targets.has(norm(r.name)) && isAtOrBelow(norm(r.name), zone));
      return { kind: 'referral', cut, ns: set, glue };
    }
  }
  if (aa) return { kind: 'nodata', chain, name: cur, soa };
  return fail('lame: neither an answer nor a referral');
}

export class Iterator {
  readonly cache: Cache;
  private readonly roots: Server[];
  private readonly port: number;
  private readonly limits: Limits;
  private readonly minimise: boolean;
  private readonly send: NonNullable<IteratorOptions['query']>;
  readonly stats: IteratorStats = { upstreamQueries: 0, upstreamFailures: 0 };

  constructor(private readonly opts: IteratorOptions) {
    if (opts.rootHints.length === 0) throw new Error('the resolver needs at least one root hint');
    this.cache = opts.cache;
    this.port = opts.upstreamPort ?? 53;
    this.roots = opts.rootHints.map((h) => ({ address: h.address, port: h.port ?? this.port }));
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.minimise = opts.qnameMinimisation ?? true;
    this.send = opts.query ?? queryServer;
  }

  private budget(): Budget {
    return { queries: this.limits.maxUpstreamQueries, steps: this.limits.maxSteps, deadline: Date.now() + this.limits.requestTimeoutMs };
  }

  /** Resolves (name, type) for a client: the CNAME chain and the answer, or the denial with its SOA. */
  async resolve(qname: string, qtype: string): Promise<Resolution> {
    const r = await this.resolveWith(norm(qname), qtype, this.budget(), 0);
    const cap = (rr: Answer) => ({ ...rr, ttl: Math.min((rr as { ttl?: number }).ttl ?? 0, this.cache.maxTtl) }) as Answer;
    return { ...r, answers: r.answers.map(cap), authorities: r.authorities.map(cap) };
  }

  private async resolveWith(qname: string, qtype: string, budget: Budget, depth: number): Promise<Resolution> {
    const answers: Answer[] = [];
    let name = qname;
    for (let link = 0; link <= this.limits.maxCname; link++) {
      const step = await this.lookup(name, qtype, budget, depth);
      if (step.kind !== 'fail') answers.push(...step.chain);
      switch (step.kind) {
        case 'answer':
          return { rcode: 'NOERROR', answers: [...answers, ...step.rrs], authorities: [] };
        case 'cname':
          name = step.target;
          continue;
        case 'nxdomain':
          return { rcode: 'NXDOMAIN', answers, authorities: step.soa ? [step.soa] : [] };
        case 'nodata':
          return { rcode: 'NOERROR', answers, authorities: step.soa ? [step.soa] : [] };
        case 'fail':
          return { rcode: 'SERVFAIL', answers: [], authorities: [], reason: step.reason };
      }
    }
    return { rcode: 'SERVFAIL', answers: [], authorities: [], reason: `more than ${this.limits.maxCname} CNAME links` };
  }

  /** From the cache if it can, otherwise by iteration. */
  private async lookup(name: string, type: string, budget: Budget, depth: number): Promise<Final> {
    if (type !== 'ANY') {
      const neg = this.cache.getNegative(name, type);
      if (neg) return neg.rcode === 'NXDOMAIN' ? { kind: 'nxdomain', chain: [], name, soa: neg.soa } : { kind: 'nodata', chain: [], name, soa: neg.soa };
      const rrs = this.cache.getRRset(name, type);
      if (rrs) return { kind: 'answer', chain: [], rrs };
      if (type !== 'CNAME') {
        const c = this.cache.getRRset(name, 'CNAME');
        if (c?.[0]) return { kind: 'cname', chain: [c[0]], target: rdataName(c[0]) };
      }
    }
    return this.iterate(name, type, budget, depth);
  }

  /** The deepest zone cut with cached name-server addresses at or above `name`, else the root hints. */
  private closest(name: string): { zone: string; servers: Server[] } {
    for (const z of selfAndAncestors(name)) {
      if (z === '') break;
      const ns = this.cache.getRRset(z, 'NS', RANK.glue);
      if (!ns) continue;
      const servers = this.cachedAddresses(ns);
      if (servers.length > 0) return { zone: z, servers };
    }
    return { zone: '', servers: this.roots };
  }

  private cachedAddresses(ns: Answer[]): Server[] {
    const out: Server[] = [];
    for (const type of ['A', 'AAAA'])
      for (const r of ns) for (const a of this.cache.getRRset(rdataName(r), type, RANK.glue) ?? []) out.push({ address: String((a as { data: unknown }).data), port: this.port });
    return out;
  }

  /** Addresses of a delegation's name servers: glue or cache, else resolved (glueless), bounded by depth. */
  private async addresses(cut: string, ns: Answer[], budget: Budget, depth: number): Promise<Server[]> {
    const known = this.cachedAddresses(ns);
    if (known.length > 0 || depth >= this.limits.maxDepth) return known;
    for (const r of ns.slice(0, 4)) {
      const target = rdataName(r);
      // A name server inside the zone it serves needs glue; without it, asking would go in circles.
      if (isAtOrBelow(target, cut)) continue;
      const res = await this.resolveWith(target, 'A', budget, depth + 1);
      const found = res.answers.filter((a) => a.type === 'A').map((a) => ({ address: String((a as { data: unknown }).data), port: this.port }));
      if (found.length > 0) return found;
      if (budget.queries <= 0 || Date.now() >= budget.deadline) break;
    }
    return [];
  }

  private async iterate(name: string, type: string, budget: Budget, depth: number): Promise<Final> {
    let { zone, servers } = this.closest(name);
    let known = labelCount(zone);
    const total = labelCount(name);
    let minimise = this.minimise;
    let minimised = 0;
    for (;;) {
      if (budget.steps-- <= 0) return fail(`work limit: more than ${this.limits.maxSteps} steps`);
      let qname = name;
      let qtype = type;
      if (minimise && known + 1 < total && minimised < MAX_MINIMISE_COUNT) {
        const add = minimised < MINIMISE_ONE_LAB ? 1 : Math.max(1, Math.ceil((total - known) / (MAX_MINIMISE_COUNT - minimised)));
        qname = ancestor(name, Math.min(total, known + add));
        if (qname !== name) {
          qtype = 'A';
          minimised++;
        }
      }
      const isMinimised = qname !== name;
      const step = await this.ask(servers, qname, qtype, zone, budget);
      if (step.kind === 'fail') {
        // Some servers mishandle minimised names (RFC 9156 "relaxed" mode): ask the full name instead.
        if (isMinimised && !/^work limit|^timed out/.test(step.reason)) {
          minimise = false;
          continue;
        }
        return step;
      }
      if (step.kind === 'referral') {
        this.cacheReferral(step);
        const next = await this.addresses(step.cut, step.ns, budget, depth);
        if (next.length === 0) return fail(`no address for the name servers of ${display(step.cut)}`);
        zone = step.cut;
        servers = next;
        known = labelCount(zone);
        continue;
      }
      this.remember(step, qtype);
      if (!isMinimised) return step;
      // An NXDOMAIN above the name covers the name too (RFC 8020).
      if (step.kind === 'nxdomain' && step.chain.length === 0) return { ...step, name };
      // The ancestor exists (data, no data, or an alias): one label more, same servers.
      known = labelCount(qname);
    }
  }

  private async ask(servers: Server[], qname: string, qtype: string, zone: string, budget: Budget): Promise<Step> {
    let last: Step = fail(`no servers for ${display(zone)}`);
    for (const s of servers.slice(0, 6)) {
      if (budget.queries <= 0) return fail(`work limit: more than ${this.limits.maxUpstreamQueries} upstream queries`);
      const left = budget.deadline - Date.now();
      if (left <= 0) return fail('timed out');
      budget.queries--;
      this.stats.upstreamQueries++;
      this.opts.onQuery?.(s, qname, qtype);
      let reply: Reply;
      try {
        reply = await this.send(s, qname, qtype, Math.min(this.limits.timeoutMs, left));
      } catch (err) {
        this.stats.upstreamFailures++;
        last = fail(`${s.address}:${s.port}: ${(err as Error).message}`);
        continue;
      }
      const step = classify(reply, qname, qtype, zone);
      if (step.kind !== 'fail') return step;
      this.stats.upstreamFailures++;
      last = fail(`${s.address}:${s.port} for ${display(qname)}: ${step.reason}`);
    }
    return last;
  }

  private cacheReferral(step: Extract<Step, { kind: 'referral' }>): void {
    this.cache.putRRset(step.cut, 'NS', step.ns, RANK.referral);
    for (const [key, rrs] of group(step.glue)) {
      const [n, t] = key.split('|') as [string, string];
      this.cache.putRRset(n, t, rrs, RANK.glue);
    }
  }

  private remember(step: Final, qtype: string): void {
    if (step.kind === 'fail') return;
    for (const c of step.chain) this.cache.putRRset(norm(c.name), 'CNAME', [c], RANK.answer);
    if (qtype === 'ANY') return;
    if (step.kind === 'answer') for (const [key, rrs] of group(step.rrs)) this.cache.putRRset(key.split('|')[0]!, key.split('|')[1]!, rrs, RANK.answer);
    else if (step.kind === 'nxdomain') this.cache.putNegative(step.name, undefined, step.soa);
    else if (step.kind === 'nodata') this.cache.putNegative(step.name, qtype, step.soa);
  }
}

function group(rrs: Answer[]): Map<string, Answer[]> {
  const out = new Map<string, Answer[]>();
  for (const r of rrs) {
    const key = `${norm(r.name)}|${r.type}`;
    const list = out.get(key);
    if (list) list.push(r);
    else out.set(key, [r]);
  }
  return out;
}
