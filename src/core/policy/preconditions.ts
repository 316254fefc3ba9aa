import { isIP } from 'node:net';
import { identityIdFromPublicKey } from '../identity/keys.ts';
import type { GateContext } from './gate.ts';
import { absoluteName } from './naming.ts';
import { parseAppPasswordHash } from './commands.ts';

/** What an exited IMVU still accepts: the last steps of its exit (purge, gate 13) and notices to its creator. */
export const AFTER_EXIT: ReadonlySet<string> = new Set(['imvu.purge', 'notify.creator']);

async function exitedZoneOwner(ctx: GateContext, zone: string): Promise<string | undefined> {
  const row = await ctx.db.get<{ id: string }>("SELECT i.id AS id FROM zones z JOIN imvus i ON i.id = z.imvu WHERE z.name = ? AND i.status = 'exited'", [zone]);
  return row?.id;
}

// Facts a command must be consistent with before any gate weighs it (reported as gate 0):
// the things it names exist, the names it creates are free, values are well-formed.
export async function preconditions(ctx: GateContext): Promise<string | undefined> {
  const b = ctx.body;
  const type = ctx.command.type;
  // Whatever IMVU a command names must exist (the body schemas say which commands name one).
  if (typeof b.imvu === 'string' && !ctx.imvu) return `unknown IMVU ${b.imvu}`;
  // An exited IMVU takes no command but those of the exit process: no DNS change to its zones, no
  // usage (it is no longer metered), no suspension, no resumption.
  const exited = ctx.imvu?.status === 'exited' ? ctx.imvu.id : typeof b.zone === 'string' ? await exitedZoneOwner(ctx, b.zone) : undefined;
  if (exited && !AFTER_EXIT.has(type)) return `${exited} has exited: it accepts only ${[...AFTER_EXIT].join(', ')}`;
  switch (type) {
    case 'quota.approve': {
      if (typeof b.creator !== 'string') return undefined;
      const who = await ctx.db.get<{ role: string; name: string }>('SELECT role, name FROM identities WHERE id = ?', [b.creator]);
      if (!who) return `unknown identity ${b.creator}`;
      return who.role === 'creator' ? undefined : `${who.name} is a ${who.role} identity, not a creator`;
    }
    case 'identity.register': {
      const id = identityIdFromPublicKey(Buffer.from(String(b.publicKey), 'base64'));
      if (await ctx.db.get('SELECT 1 AS x FROM identities WHERE id = ?', [id])) return `identity ${id} is already registered`;
      if (await ctx.db.get('SELECT 1 AS x FROM identities WHERE name = ?', [String(b.name)])) return `identity name '${String(b.name)}' is taken`;
      return keyInUse(ctx, String(b.publicKey));
    }
    case 'identity.rotate': {
      const me = ctx.actor;
      if (!me || me.id !== b.identity) return undefined; // gate 1 says why
      if (b.publicKey === me.public_key) return `the new key is ${me.name}'s current key: nothing to rotate`;
      const used = await keyInUse(ctx, String(b.publicKey));
      if (used) return used;
      const id = identityIdFromPublicKey(Buffer.from(String(b.publicKey), 'base64'));
      if (await ctx.db.get('SELECT 1 AS x FROM identities WHERE id = ?', [id])) return `the new key is the key of identity ${id}`;
      return undefined;
    }
    case 'identity.revoke': {
      const target = await ctx.db.get<{ name: string; role: string; public_key: string }>('SELECT name, role, public_key FROM identities WHERE id = ?', [String(b.identity)]);
      if (!target) return `unknown identity ${String(b.identity)}`;
      if (target.role === 'platform') return 'the platform identity cannot be revoked';
      const gone = await ctx.db.get<{ entry: number }>("SELECT entry FROM retired_keys WHERE public_key = ? AND why = 'revoked'", [target.public_key]);
      if (gone) return `${target.name} was already revoked (ledger entry ${gone.entry}): no change`;
      return undefined;
    }
    case 'imvu.create': {
      const taken = await ctx.db.get<{ id: string }>('SELECT id FROM imvus WHERE lower(name) = lower(?)', [String(b.name)]);
      if (taken) return `IMVU name '${String(b.name)}' is taken (${taken.id})`;
      return undefined;
    }
    case 'domain.claim': {
      const mine = await ctx.db.get<{ expires_at: string }>('SELECT expires_at FROM domain_claims WHERE name = ? AND imvu = ?', [String(b.domain), ctx.imvu!.id]);
      if (mine && mine.expires_at > ctx.at) return `${ctx.imvu!.id} already claimed ${String(b.domain)}; it is pending proof until ${mine.expires_at}`;
      return undefined;
    }
    case 'domain.verify':
    case 'domain.verified': {
      const domain = String(b.domain);
      const owner = await ctx.db.get<{ imvu: string }>('SELECT imvu FROM domains WHERE name = ?', [domain]);
      if (owner?.imvu === ctx.imvu!.id) return `${domain} is already a proven domain of ${ctx.imvu!.id}`;
      if (owner) return `${domain} belongs to ${owner.imvu}, which proved control of it first`;
      const claim = await ctx.db.get<{ expires_at: string }>('SELECT expires_at FROM domain_claims WHERE name = ? AND imvu = ?', [domain, ctx.imvu!.id]);
      if (!claim) return `${ctx.imvu!.id} has no pending claim of ${domain}; claim it first`;
      if (claim.expires_at <= ctx.at) return `the claim of ${domain} by ${ctx.imvu!.id} lapsed at ${claim.expires_at}; claim it again`;
      return undefined;
    }
    case 'domain.release': {
      const domain = String(b.domain);
      const held = await ctx.db.get<{ kind: string }>('SELECT kind FROM domains WHERE name = ? AND imvu = ?', [domain, ctx.imvu!.id]);
      const claimed = await ctx.db.get('SELECT 1 AS x FROM domain_claims WHERE name = ? AND imvu = ?', [domain, ctx.imvu!.id]);
      if (!held && !claimed) return `${domain} is not a domain of ${ctx.imvu!.id}`;
      if (held?.kind === 'primary') return undefined; // never released: gate 3 says why
      // Releasing a domain must not strand mail: its mailboxes go first, each by its own command.
      // Only this IMVU can have mailboxes at a domain it holds (mailbox.add), so its own are searched.
      const box = await ctx.db.get<{ address: string }>("SELECT address FROM mailboxes WHERE imvu = ? AND address LIKE ? ESCAPE '\\' LIMIT 1", [ctx.imvu!.id, '%@' + domain.replace(/[\\%_]/g, (c) => '\\' + c)]);
      if (box) return `${domain} still has mailboxes (such as ${box.address}); remove them first (nexus mail mailbox rm)`;
      return undefined;
    }
    case 'snapshot.create': {
      const seen = await ctx.db.get<{ entry: number }>('SELECT entry FROM snapshots WHERE imvu = ? AND digest = ?', [ctx.imvu!.id, String(b.digest)]);
      if (seen) return `snapshot ${String(b.digest)} of ${ctx.imvu!.id} is already recorded (ledger entry ${seen.entry}): nothing changed since`;
      return undefined;
    }
    case 'member.add': {
      if (ctx.imvu && (await ctx.db.get('SELECT 1 AS x FROM members WHERE imvu = ? AND identity = ?', [ctx.imvu.id, String(b.identity)])))
        return `${String(b.identity)} is already a member of ${ctx.imvu.id}: no change`;
      return undefined;
    }
    case 'mailbox.add': {
      const address = String(b.address);
      const domain = address.slice(address.indexOf('@') + 1);
      if (!(await ctx.db.get('SELECT 1 AS x FROM domains WHERE name = ? AND imvu = ?', [domain, ctx.imvu!.id])))
        return `${domain} is not a domain of ${ctx.imvu!.id}`;
      if (await ctx.db.get('SELECT 1 AS x FROM mailboxes WHERE address = ?', [address])) return `mailbox ${address} exists`;
      return undefined;
    }
    case 'mailbox.remove':
      if (!(await ctx.db.get('SELECT 1 AS x FROM mailboxes WHERE address = ? AND imvu = ?', [String(b.address), ctx.imvu!.id])))
        return `no mailbox ${String(b.address)} in ${ctx.imvu!.id}`;
      return undefined;
    case 'mail.password.set': {
      const parsed = parseAppPasswordHash(String(b.hash));
      if (typeof parsed === 'string') return parsed;
      if (!(await ctx.db.get('SELECT 1 AS x FROM mailboxes WHERE address = ? AND imvu = ?', [String(b.address), ctx.imvu!.id])))
        return `no mailbox ${String(b.address)} in ${ctx.imvu!.id}`;
      return undefined;
    }
    case 'dkim.rotate': {
      const keys = await ctx.db.all<{ selector: string; state: string }>('SELECT selector, state FROM dkim_keys WHERE imvu = ? ORDER BY entry', [ctx.imvu!.id]);
      if (!keys.some((k) => k.state === 'active')) return `${ctx.imvu!.id} has no active DKIM key to rotate`;
      if (keys.length > 1) return `a DKIM rotation of ${ctx.imvu!.id} is under way (${keys.map((k) => `${k.selector} ${k.state}`).join(', ')}); the next one starts when it is done`;
      return undefined;
    }
    case 'mail.password.revoke':
      if (!(await ctx.db.get('SELECT 1 AS x FROM mail_passwords WHERE address = ? AND imvu = ?', [String(b.address), ctx.imvu!.id])))
        return `no app password for ${String(b.address)} in ${ctx.imvu!.id}`;
      return undefined;
    case 'dns.record.add':
      return recordValueProblem(String(b.type), String(b.value), absoluteName(String(b.name), String(b.zone)), String(b.zone), ctx);
    case 'dns.record.remove': {
      const name = absoluteName(String(b.name), String(b.zone));
      const params = [String(b.zone), name, String(b.type)];
      const extra = b.value === undefined ? '' : ' AND value = ?';
      if (b.value !== undefined) params.push(String(b.value));
      if (!(await ctx.db.get(`SELECT 1 AS x FROM records WHERE zone = ? AND name = ? AND type = ?${extra}`, params)))
        return `no ${String(b.type)} record at ${name}${b.value === undefined ? '' : ` with value ${String(b.value)}`}`;
      return undefined;
    }
  }
  return undefined;
}

/** A key serves one identity, once: never another identity's current key, never a key retired by anyone. */
async function keyInUse(ctx: GateContext, publicKey: string): Promise<string | undefined> {
  const holder = await ctx.db.get<{ name: string }>('SELECT name FROM identities WHERE public_key = ?', [publicKey]);
  if (holder) return `that key is already ${holder.name}'s current key`;
  const retired = await ctx.db.get<{ why: string; entry: number }>('SELECT why, entry FROM retired_keys WHERE public_key = ?', [publicKey]);
  if (retired) return `that key was ${retired.why} at ledger entry ${retired.entry}; a key is never used again`;
  return undefined;
}

const HOST = /^(?=.{1,254}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+$/i;

async function recordValueProblem(type: string, value: string, name: string, zone: string, ctx: GateContext): Promise<string | undefined> {
  const ok = (() => {
    switch (type) {
      case 'A':
        return isIP(value) === 4;
      case 'AAAA':
        return isIP(value) === 6;
      case 'CNAME':
      case 'NS':
        return HOST.test(value);
      case 'MX': {
        const m = /^(\d{1,5}) (\S+)$/.exec(value);
        return !!m && Number(m[1]) <= 65535 && HOST.test(m[2]!);
      }
      case 'SRV': {
        const m = /^(\d{1,5}) (\d{1,5}) (\d{1,5}) (\S+)$/.exec(value);
        return !!m && [m[1], m[2], m[3]].every((n) => Number(n) <= 65535) && (m[4] === '.' || HOST.test(m[4]!));
      }
      case 'CAA':
        return /^\d{1,3} [a-z0-9]{1,15} "[^"]*"$/i.test(value);
      case 'TXT':
        return value.length <= 2048;
      default:
        return false;
    }
  })();
  if (!ok) {
    const hint: Record<string, string> = {
      A: 'an IPv4 address',
      AAAA: 'an IPv6 address',
      CNAME: 'a fully qualified name ending in a dot',
      NS: 'a fully qualified name ending in a dot',
      MX: "'PREFERENCE host.' such as '10 mail.example.world.'",
      SRV: "'PRIORITY WEIGHT PORT target.'",
      CAA: "'FLAGS TAG \"value\"' such as '0 issue \"letsencrypt.org\"'",
    };
    return `invalid ${type} value '${value}': expected ${hint[type] ?? 'a valid value'}`;
  }
  if (type === 'CNAME' && name === zone) return 'a CNAME cannot sit at the zone apex';
  const here = await ctx.db.all<{ type: string; value: string }>('SELECT type, value FROM records WHERE zone = ? AND name = ?', [zone, name]);
  if (type === 'CNAME' && here.length > 0) return `${name} already has records; a CNAME must stand alone`;
  if (here.some((r) => r.type === 'CNAME')) return `${name} is a CNAME; it cannot have other records`;
  if (here.some((r) => r.type === type && r.value === value)) return `${name} ${type} ${value} exists`;
  return undefined;
}
