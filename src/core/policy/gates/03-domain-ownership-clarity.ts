import { deny, pass, isOwner, isMember, type Gate, type GateContext } from '../gate.ts';
import { challengeName, challengeToken, imvuDomainsFor, MAX_PENDING_CLAIMS, publicSuffixRefusal, registryRefusal } from '../naming.ts';
import { checkTransfer } from './import.ts';

async function claimConflict(ctx: GateContext, name: string): Promise<string | undefined> {
  const exact = await ctx.db.get<{ imvu: string }>('SELECT imvu FROM domains WHERE name = ?', [name]);
  if (exact) return `domain ${name} already belongs to ${exact.imvu}`;
  // A domain must not sit inside, or contain, another IMVU's domain: either would let one IMVU
  // answer for names the other owns.
  const labels = name.split('.');
  for (let i = 1; i < labels.length - 1; i++) {
    const parent = labels.slice(i).join('.');
    const row = await ctx.db.get<{ imvu: string }>('SELECT imvu FROM domains WHERE name = ?', [parent]);
    if (row) return `domain ${name} lies inside ${parent}, which belongs to ${row.imvu}`;
  }
  const child = await ctx.db.get<{ name: string; imvu: string }>(
    'SELECT d.name AS name, d.imvu AS imvu FROM domain_ancestors a JOIN domains d ON d.name = a.name WHERE a.ancestor = ? ORDER BY d.name LIMIT 1',
    [name],
  );
  if (child) return `domain ${name} contains ${child.name}, which belongs to ${child.imvu}`;
  return undefined;
}

/** Why nobody may hold `name`: the registry's names under the platform suffix, or a public suffix. */
function unclaimable(ctx: GateContext, name: string): string | undefined {
  const own = ctx.imvu ? { imvu: ctx.imvu.id, primary: ctx.imvu.domain } : undefined;
  const refused = registryRefusal(name, ctx.platform!.suffix, own) ?? publicSuffixRefusal(name);
  if (refused) return refused;
  // The proof lives at _nexus-challenge.<name>, which must itself be a DNS name (253 characters at most).
  if (challengeName(name).length > 253) return `${name} is too long to carry its proof at ${challengeName('…')} (253 characters at most)`;
  return undefined;
}

async function creatorOrMember(ctx: GateContext): Promise<boolean> {
  return isOwner(ctx) || !!(ctx.actor && ctx.imvu && (await isMember(ctx, ctx.imvu.id, ctx.actor.id)));
}

export const gate: Gate = {
  number: 3,
  name: 'Domain Ownership Clarity',
  enforcedIn: 'src/core/policy/gates/03-domain-ownership-clarity.ts (domain registry: one IMVU per domain, registry names reserved, control proved by DNS)',
  guards: ['imvu.create', 'domain.claim', 'domain.verify', 'domain.verified', 'domain.release', 'domain.transfer', 'imvu.import'],
  status: 'enforced',
  async check(ctx) {
    if (!ctx.platform) return deny(3, 'the platform has no genesis entry');
    if (ctx.command.type === 'imvu.create') {
      const { primary } = await imvuDomainsFor(ctx.db, ctx.platform);
      const conflict = await claimConflict(ctx, primary);
      return conflict ? deny(3, conflict) : pass(3, `${primary} is free and will belong to the new IMVU only`);
    }
    if (ctx.command.type === 'imvu.import') {
      const zone = String((ctx.body.zone as { name?: unknown }).name);
      const conflict = await claimConflict(ctx, zone);
      return conflict ? deny(3, conflict) : pass(3, `${zone} is free and will belong to the imported IMVU only`);
    }
    const name = String(ctx.body.domain);
    if (!ctx.imvu) return deny(3, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (ctx.command.type === 'domain.transfer') {
      const refused = unclaimable(ctx, name) ?? (await claimConflict(ctx, name));
      return refused ? deny(3, refused) : checkTransfer(ctx);
    }
    const type = ctx.command.type;

    if (type === 'domain.verified') {
      // Recorded by the platform after its own lookup; replay checks the evidence it recorded.
      if (ctx.actor?.role !== 'platform') return deny(3, 'domain.verified is recorded by the platform after its own DNS lookup, not by anyone else');
      const claim = await ctx.db.get<{ entry: number; expires_at: string }>('SELECT entry, expires_at FROM domain_claims WHERE name = ? AND imvu = ?', [name, ctx.imvu.id]);
      if (!claim) return deny(3, `${ctx.imvu.id} has no pending claim of ${name}`);
      if (claim.expires_at <= ctx.at) return deny(3, `the claim of ${name} by ${ctx.imvu.id} lapsed at ${claim.expires_at}`);
      const evidence = ctx.body.evidence as { name: string; txt: string[] };
      const want = challengeName(name);
      if (evidence.name !== want) return deny(3, `the evidence is for ${evidence.name}, not for ${want}`);
      const token = challengeToken(ctx.platform.origin, claim.entry, ctx.imvu.id, name);
      if (!evidence.txt.includes(token)) return deny(3, `the TXT records at ${want} do not hold the token of claim entry ${claim.entry}`);
      const refused = unclaimable(ctx, name) ?? (await claimConflict(ctx, name));
      return refused ? deny(3, refused) : pass(3, `${ctx.imvu.id} proved control of ${name} (TXT at ${want})`);
    }

    if (!(await creatorOrMember(ctx))) return deny(3, `only the creator or a member of ${ctx.imvu.id} may ${type === 'domain.claim' ? 'claim' : type === 'domain.verify' ? 'verify' : 'release'} its domains`);
    if (type === 'domain.verify') return pass(3, `${ctx.actor?.name} asks the platform to look up ${challengeName(name)}`);
    if (type === 'domain.release') {
      const row = await ctx.db.get<{ imvu: string; kind: string }>('SELECT imvu, kind FROM domains WHERE name = ?', [name]);
      if (row?.kind === 'primary') return deny(3, `${name} is the primary domain of ${row.imvu}, allocated by the registry; it cannot be released`);
      return pass(3, `${ctx.actor?.name} releases ${name} of ${ctx.imvu.id}`);
    }

    // domain.claim
    const refused = unclaimable(ctx, name) ?? (await claimConflict(ctx, name));
    if (refused) return deny(3, refused);
    const pending = await ctx.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM domain_claims WHERE imvu = ? AND expires_at > ?', [ctx.imvu.id, ctx.at]);
    if ((pending?.n ?? 0) >= MAX_PENDING_CLAIMS)
      return deny(3, `${ctx.imvu.id} already has ${MAX_PENDING_CLAIMS} claims pending proof; prove or release some first`);
    return pass(3, `${name} is claimed by ${ctx.imvu.id} pending proof of control (TXT at ${challengeName(name)}); not served until proven`);
  },
};
