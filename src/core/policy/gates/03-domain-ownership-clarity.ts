import { deny, pass, isOwner, isMember, type Gate, type GateContext } from '../gate.ts';
import { imvuDomainsFor, isWithin } from '../naming.ts';

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
  const child = await ctx.db.get<{ name: string; imvu: string }>("SELECT name, imvu FROM domains WHERE name LIKE ? ESCAPE '\\' LIMIT 1", [
    '%.' + name.replace(/[\\%_]/g, (c) => '\\' + c),
  ]);
  if (child) return `domain ${name} contains ${child.name}, which belongs to ${child.imvu}`;
  return undefined;
}

export const gate: Gate = {
  number: 3,
  name: 'Domain Ownership Clarity',
  enforcedIn: 'src/core/policy/gates/03-domain-ownership-clarity.ts (domain registry: one IMVU per domain)',
  guards: ['imvu.create', 'domain.claim'],
  status: 'enforced',
  async check(ctx) {
    if (ctx.command.type === 'imvu.create') {
      if (!ctx.platform) return deny(3, 'the platform has no genesis entry');
      const { primary } = await imvuDomainsFor(ctx.db, ctx.platform);
      const conflict = await claimConflict(ctx, primary);
      return conflict ? deny(3, conflict) : pass(3, `${primary} is free and will belong to the new IMVU only`);
    }
    const name = String(ctx.body.domain);
    if (!ctx.imvu) return deny(3, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (!isOwner(ctx) && !(ctx.actor && (await isMember(ctx, ctx.imvu.id, ctx.actor.id))))
      return deny(3, `only the creator or a member of ${ctx.imvu.id} may claim domains for it`);
    const conflict = await claimConflict(ctx, name);
    if (conflict) return deny(3, conflict);
    // Names at, under or above the platform suffix are the platform's: its own zone, its name
    // servers, and the IMVU domains imvu.create hands out.
    const suffix = ctx.platform?.suffix;
    if (suffix && (isWithin(name, suffix) || isWithin(suffix, name)))
      return deny(3, `${name} is ${isWithin(name, suffix) ? 'under' : 'above'} the platform suffix ${suffix}, whose names only the platform assigns`);
    return pass(3, `${name} is unclaimed`);
  },
};
