import type { GateResult } from '../../types.ts';
import { deny, pass, isMember, type Gate, type GateContext } from '../gate.ts';
import { absoluteName, isWithin } from '../naming.ts';
import { imvuNames } from './platform-powers.ts';

const LABEL = /^(\*|_?[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?|[a-z0-9])$/;

/**
 * The platform's own zone (`platform.zone`, platform only by gate 17) is the DNS suffix and nothing
 * else, and its name servers lie inside it but outside every IMVU's domain, present (`domains`)
 * or future (`imvuNNN.<suffix>`, naming.ts): an IMVU must never answer for the name servers.
 */
async function platformZone(ctx: GateContext): Promise<GateResult> {
  const suffix = ctx.platform?.suffix;
  const zone = String(ctx.body.zone);
  if (zone !== suffix) return deny(4, `the platform's own zone is ${suffix ?? '(none)'}, not ${zone}`);
  for (const { name } of ctx.body.nameservers as { name: string }[]) {
    if (!isWithin(name, zone) || name === zone) return deny(4, `name server ${name} is not inside the platform's zone ${zone}`);
    const labels = name.slice(0, -zone.length - 1).split('.');
    if (/^imvu\d+$/.test(labels[labels.length - 1]!)) return deny(4, `name server ${name} lies in a name kept for IMVU domains (imvuNNN.${zone})`);
    for (let i = 0; i < labels.length; i++) {
      const owner = [...labels.slice(i), zone].join('.');
      const d = await ctx.db.get<{ imvu: string }>('SELECT imvu FROM domains WHERE name = ?', [owner]);
      if (d) return deny(4, `name server ${name} lies in ${owner}, which belongs to ${d.imvu}`);
    }
  }
  return pass(4, `the platform's own zone ${zone}`);
}

/**
 * The platform's DNS-01 challenge (platform only, gate 17): each record at `_acme-challenge.<name>`
 * for a name of this IMVU, in the IMVU's own zone that encloses it most closely, never below a
 * delegation in that zone. So the platform can answer a certificate order for an IMVU's names and
 * nothing else, and every record it served is in the ledger.
 */
async function acmeChallenge(ctx: GateContext): Promise<GateResult> {
  const imvu = String(ctx.body.imvu);
  const names = await imvuNames(ctx, imvu);
  const zones = (await ctx.db.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ?', [imvu])).map((z) => z.name);
  for (const r of ctx.body.records as { zone: string; name: string }[]) {
    const host = r.name.slice('_acme-challenge.'.length);
    if (!names.has(host)) return deny(4, `${host} is not a name of ${imvu}`);
    const closest = zones.filter((z) => isWithin(host, z)).sort((a, b) => b.length - a.length)[0];
    if (closest !== r.zone) return deny(4, `${r.name} lies in ${closest ?? 'no zone'} of ${imvu}, not in ${r.zone}`);
    const cuts = await ctx.db.all<{ name: string }>("SELECT DISTINCT name FROM records WHERE zone = ? AND type = 'NS' AND name <> ?", [r.zone, r.zone]);
    const cut = cuts.find((c) => isWithin(r.name, c.name));
    if (cut) return deny(4, `${r.name} lies below the delegation ${cut.name}`);
  }
  return pass(4, `DNS-01 challenge for ${(ctx.body.records as { name: string }[]).length} name(s) of ${imvu} in its own zone`);
}

export const gate: Gate = {
  number: 4,
  name: 'DNS Authority Scoping',
  enforcedIn: 'src/core/policy/gates/04-dns-authority-scoping.ts (zone owner or members, names inside the zone)',
  guards: ['dns.record.add', 'dns.record.remove', 'dnssec.publish', 'dnssec.resign', 'platform.zone', 'acme.challenge'],
  status: 'enforced',
  async check(ctx) {
    if (ctx.command.type === 'platform.zone') return platformZone(ctx);
    if (ctx.command.type === 'acme.challenge') return acmeChallenge(ctx);
    const zone = String(ctx.body.zone);
    const z = await ctx.db.get<{ imvu: string }>('SELECT imvu FROM zones WHERE name = ?', [zone]);
    if (!z) {
      const pending = await ctx.db.get<{ imvu: string }>('SELECT imvu FROM domain_claims WHERE name = ? AND expires_at > ? LIMIT 1', [zone, ctx.at]);
      return deny(4, pending ? `zone ${zone} is claimed but not proven yet (nexus domain verify): it is not hosted until then` : `zone ${zone} is not hosted here`);
    }
    // A zone's DNSSEC key is published by the platform (gate 17 checks the signer) for the IMVU that owns the zone.
    if (ctx.command.type === 'dnssec.publish')
      return z.imvu === ctx.body.imvu ? pass(4, `DNSSEC key of ${zone} (${z.imvu})`) : deny(4, `zone ${zone} belongs to ${z.imvu}, not ${String(ctx.body.imvu)}`);
    // A re-signature (platform only, gate 17) moves the serial of a zone that is signed.
    if (ctx.command.type === 'dnssec.resign')
      return (await ctx.db.get('SELECT 1 AS x FROM dnssec_keys WHERE zone = ?', [zone]))
        ? pass(4, `re-signing ${zone} (${z.imvu})`)
        : deny(4, `zone ${zone} has no DNSSEC key`);
    const imvu = await ctx.db.get<{ owner: string }>('SELECT owner FROM imvus WHERE id = ?', [z.imvu]);
    const actor = ctx.actor?.id ?? '';
    if (imvu?.owner !== actor && !(await isMember(ctx, z.imvu, actor)))
      return deny(4, `${ctx.actor?.name ?? actor} is neither the creator nor a member of ${z.imvu}, which owns zone ${zone}`);
    const name = absoluteName(String(ctx.body.name), zone);
    if (!isWithin(name, zone)) return deny(4, `${name} is outside zone ${zone}`);
    const labels = name.slice(0, name.length - zone.length).replace(/\.$/, '').split('.').filter(Boolean);
    if (labels.some((l) => !LABEL.test(l))) return deny(4, `${name} is not a valid DNS name`);
    // No record may shadow a name another IMVU owns, nor sit below a delegation of this zone.
    // The domains `name` lies within are `name` and its ancestors: one indexed lookup each.
    const all = name.split('.');
    for (let i = 0; i < all.length; i++) {
      const d = await ctx.db.get<{ name: string; imvu: string }>('SELECT name, imvu FROM domains WHERE name = ? AND imvu <> ?', [all.slice(i).join('.'), z.imvu]);
      if (d) return deny(4, `${name} belongs to ${d.imvu} (${d.name})`);
    }
    const cuts = await ctx.db.all<{ name: string }>("SELECT DISTINCT name FROM records WHERE zone = ? AND type = 'NS' AND name <> ?", [zone, zone]);
    for (const c of cuts) {
      if (name === c.name || !isWithin(name, c.name)) continue;
      // Glue: an address record for a name server the delegation itself names.
      const type = String(ctx.body.type);
      const glue =
        (type === 'A' || type === 'AAAA') &&
        (await ctx.db.get("SELECT 1 AS x FROM records WHERE zone = ? AND name = ? AND type = 'NS' AND value = ?", [zone, c.name, `${name}.`]));
      if (!glue) return deny(4, `${name} lies below the delegation ${c.name}`);
    }
    return pass(4, `${ctx.actor?.name} may change ${name} in ${zone} (${z.imvu})`);
  },
};
