// Proof of control of a claimed domain. The gates cannot do network I/O (a decision must be the same
// on replay), so the look-up happens here, outside the chokepoint: the creator's `domain.verify` is
// recorded first (who asked), then the platform's own recursive resolver (src/domains/resolvers,
// from the configured root hints) looks up the TXT records at `_nexus-challenge.<domain>`, and if
// one holds the claim's token the platform records `domain.verified` with what it found. Gate 3
// checks that evidence against the token again, so replay needs no DNS.
import type { Answer } from 'dns-packet';
import type { Receipt } from '../core/policy/chokepoint.ts';
import { MAX_EVIDENCE_RECORDS, MAX_EVIDENCE_TXT } from '../core/policy/commands.ts';
import { challengeName } from '../core/policy/naming.ts';
import type { OpenPlatform } from '../core/platform.ts';
import { Cache, Iterator, type Limits, type RootHint } from '../domains/resolvers/index.ts';

export interface ChallengeAnswer {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL';
  /** Each TXT record at the name (after any CNAME), its strings joined. */
  txt: string[];
  /** Why a SERVFAIL. */
  reason?: string;
}

/** Looks up the TXT records at a challenge name. */
export type ChallengeLookup = (name: string) => Promise<ChallengeAnswer>;

export interface ChallengeResolverOptions {
  rootHints: RootHint[];
  /** Port of the servers learned from referrals. Default 53. */
  upstreamPort?: number;
  limits?: Partial<Limits>;
}

function txtOf(rr: Answer): string {
  const data = (rr as { data?: unknown }).data;
  const parts = Array.isArray(data) ? data : [data];
  return parts.map((p) => (Buffer.isBuffer(p) ? p.toString('utf8') : String(p ?? ''))).join('');
}

/**
 * A look-up through the project's iterative resolver, from the root hints. Each look-up starts with
 * an empty cache: a creator who has just published the record must not be answered from an earlier
 * negative answer.
 */
export function challengeResolver(opts: ChallengeResolverOptions): ChallengeLookup {
  if (opts.rootHints.length === 0) throw new Error('domain proofs need at least one root hint');
  return async (name) => {
    const iterator = new Iterator({
      cache: new Cache({ maxEntries: 512 }),
      rootHints: opts.rootHints,
      ...(opts.upstreamPort !== undefined ? { upstreamPort: opts.upstreamPort } : {}),
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
    const r = await iterator.resolve(name, 'TXT');
    return { rcode: r.rcode, txt: r.answers.filter((a) => a.type === 'TXT').map(txtOf), ...(r.reason ? { reason: r.reason } : {}) };
  };
}

export interface ProofResult {
  /** True when the platform recorded `domain.verified` and it was allowed. */
  proven: boolean;
  /** The challenge the claimant must publish. */
  challenge: { name: string; value: string; expires: string };
  /** TXT records found at the challenge name. */
  found: string[];
  /** Why not proven. */
  reason?: string;
  /** The platform's `domain.verified`, when one was submitted. */
  receipt?: Receipt;
}

/** The TXT answer as recorded: the matching record first, at most MAX_EVIDENCE_RECORDS, each bounded. */
function evidenceOf(found: string[], token: string): string[] {
  const others = found.filter((t) => t !== token);
  return [token, ...others].slice(0, MAX_EVIDENCE_RECORDS).map((t) => t.slice(0, MAX_EVIDENCE_TXT));
}

/**
 * Looks up the challenge of `imvu`'s pending claim of `domain` and, when the token is there, records
 * the platform's `domain.verified`. Throws only if the claim does not exist (the caller checked).
 */
export async function proveDomain(platform: Pick<OpenPlatform, 'store' | 'chokepoint'>, imvu: string, domain: string, lookup: ChallengeLookup): Promise<ProofResult> {
  const claim = await platform.store.get<{ token: string; expires_at: string }>('SELECT token, expires_at FROM domain_claims WHERE name = ? AND imvu = ?', [domain, imvu]);
  if (!claim) throw new Error(`${imvu} has no pending claim of ${domain}`);
  const name = challengeName(domain);
  const challenge = { name, value: claim.token, expires: claim.expires_at };
  let answer: ChallengeAnswer;
  try {
    answer = await lookup(name);
  } catch (err) {
    answer = { rcode: 'SERVFAIL', txt: [], reason: (err as Error).message };
  }
  if (answer.rcode === 'SERVFAIL') return { proven: false, challenge, found: [], reason: `the look-up of ${name} TXT failed (${answer.reason ?? 'SERVFAIL'}); try again later` };
  if (!answer.txt.includes(claim.token)) {
    const what = answer.rcode === 'NXDOMAIN' ? `${name} does not exist` : answer.txt.length === 0 ? `${name} has no TXT record` : `no TXT record at ${name} is "${claim.token}"`;
    return { proven: false, challenge, found: answer.txt, reason: `${what}; ${domain} stays pending until ${claim.expires_at}` };
  }
  const body = { imvu, domain, evidence: { name, txt: evidenceOf(answer.txt, claim.token) } };
  const receipt = await platform.chokepoint.submit(platform.chokepoint.platformCommand('domain.verified', body));
  if (!receipt.allowed) {
    const why = receipt.gates.find((g) => g.status === 'deny');
    return { proven: false, challenge, found: answer.txt, receipt, reason: `the token was found but the proof was refused: gate ${why?.gate}: ${why?.reason ?? 'denied'}` };
  }
  return { proven: true, challenge, found: answer.txt, receipt };
}
