import type { CommandType } from '../../types.ts';
import { deny, pass, type GateContext } from '../gate.ts';
import type { GateResult } from '../../types.ts';

// The platform's powers over an IMVU, enumerated. The platform key signs follow-ups on its own
// (provisioning, notifications, key rollovers); a hostile operator holds that key, so what it may
// sign about an IMVU is a closed list, each entry checked against the ledger and timed by entry
// times (`at`, which never go back), never by the wall clock. Anything else the platform signs
// about an IMVU is refused, and every allowed one is notified to the creator (chokepoint.ts).

/** TTL of a zone's DNSKEY RRset (src/domains/dnssec serves it): a new key waits this long before it signs, an old one this long before it goes. */
export const DNSKEY_TTL_S = 3600;
/** TTL of a DKIM key record: a new selector waits this long before mail is signed with it. */
export const DKIM_TTL_S = 3600;
/** A retired DKIM selector stays published this long, so mail signed before the switch (queued, retried) still verifies. */
export const DKIM_RETIRE_S = 7 * 86_400;
/** At most one notice of refused attempts per (IMVU, source identity) per this interval. */
export const REFUSAL_NOTICE_INTERVAL_MS = 10 * 60 * 1000;

/** DKIM selectors the platform provisions: nexus1 at creation, nexus2 at the first rotation, ... */
const DKIM_SELECTOR = /^nexus([1-9]\d{0,8})$/;

/** What the platform may do to an IMVU, and nothing else. */
export const PLATFORM_POWERS: Readonly<Partial<Record<CommandType, string>>> = {
  'notify.creator': "notify the IMVU's creator (refusal notices at most once per source identity per interval)",
  'dkim.publish': 'publish the DKIM key provisioned at creation (nexus1), or the next selector of a rotation beside the active one',
  'dkim.activate': `sign with the new DKIM selector once it has been published for ${DKIM_TTL_S}s`,
  'dkim.remove': `remove a retired DKIM selector ${DKIM_RETIRE_S}s after it was retired`,
  'dnssec.publish': "publish a zone's first DNSSEC key, or a new key beside the active one (rollover)",
  'dnssec.activate': `sign with the new DNSSEC key once it has been in the DNSKEY RRset for ${DNSKEY_TTL_S}s`,
  'dnssec.remove': `remove a retired DNSSEC key ${DNSKEY_TTL_S}s after it was retired`,
  'dnssec.resign': 'move the serial of an unchanged signed zone so secondaries fetch fresh signatures',
  'quota.approve': 'approve an envelope above the plan (the creator still decides to scale)',
  'imvu.exit.ready': "record the finished exit archive of an exiting IMVU (its digest, for the creator's confirmation)",
  'imvu.exit.expire': 'end an exit the creator has not confirmed, a week after its archive was ready (gate 13 times it)',
  'imvu.purge': 'release an exited IMVU after the 30-day grace, delete its data after the 90-day retention (gate 13 times both)',
  'acme.challenge': "publish (then remove) the DNS-01 challenge TXT at _acme-challenge.<name> for a certificate the gateway orders for the IMVU's own names (gate 4 checks the zone and the names)",
  'certificate.issued': "record the certificate the gateway serves for the IMVU's own names (serial, SHA-256 fingerprint, validity, issuer)",
  'domain.verified': "record the proof of control of a domain the IMVU claimed: the challenge TXT found, checked against the claim's token by gate 3",
};

interface KeyRow {
  state: string;
  since: string;
  [k: string]: string | number;
}

const seconds = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 1000;

/** The IMVU a command touches: the one it names, or the owner of the zone it names. */
export async function imvuTouched(ctx: GateContext): Promise<{ id: string; owner: string; status: string } | undefined> {
  if (ctx.imvu) return ctx.imvu;
  if (typeof ctx.body.zone !== 'string') return undefined;
  return ctx.db.get<{ id: string; owner: string; status: string }>('SELECT i.id AS id, i.owner AS owner, i.status AS status FROM zones z JOIN imvus i ON i.id = z.imvu WHERE z.name = ?', [
    ctx.body.zone,
  ]);
}

/** Gate 17's check of a platform-signed command that touches an IMVU; undefined when it touches none. */
export async function checkPlatformPower(ctx: GateContext): Promise<GateResult | undefined> {
  const type = ctx.command.type;
  const imvu = await imvuTouched(ctx);
  if (!imvu) return undefined;
  if (!PLATFORM_POWERS[type]) return deny(17, `${type} on ${imvu.id} is not one of the platform's enumerated powers over an IMVU`);
  const b = ctx.body;
  switch (type) {
    case 'notify.creator': {
      if (b.recipient !== imvu.owner) return deny(17, `notices about ${imvu.id} go to its creator ${imvu.owner}, not to ${String(b.recipient)}`);
      if (typeof b.source !== 'string') return pass(17, `notice to the creator of ${imvu.id}`);
      const last = await ctx.db.get<{ at: string; entry: number }>('SELECT at, entry FROM notifications WHERE imvu = ? AND source = ? ORDER BY entry DESC LIMIT 1', [imvu.id, b.source]);
      if (last && Date.parse(ctx.at) - Date.parse(last.at) < REFUSAL_NOTICE_INTERVAL_MS)
        return deny(17, `refusals by ${b.source} about ${imvu.id} were last notified at ${last.at} (entry ${last.entry}); the next notice is due ${REFUSAL_NOTICE_INTERVAL_MS / 1000}s after it`);
      return pass(17, `one notice of refused attempts by ${b.source} for this interval`);
    }
    case 'dkim.publish':
    case 'dkim.activate':
    case 'dkim.remove':
      return dkimStep(ctx, imvu.id);
    case 'dnssec.publish':
    case 'dnssec.activate':
    case 'dnssec.remove':
      return dnssecStep(ctx, imvu.id);
    case 'certificate.issued': {
      const names = await imvuNames(ctx, imvu.id);
      const foreign = (b.names as string[]).find((n) => !names.has(n));
      if (foreign) return deny(17, `${foreign} is not a name of ${imvu.id}: a certificate it serves names only its own`);
      return pass(17, `certificate ${String(b.serial)} for ${(b.names as string[]).join(', ')}`);
    }
    default:
      return pass(17, `${type}: ${PLATFORM_POWERS[type]}`);
  }
}

/** The names an IMVU answers for over HTTPS: its domains (primary and verified custom) and its stage name. */
export async function imvuNames(ctx: GateContext, imvu: string): Promise<Set<string>> {
  const rows = await ctx.db.all<{ name: string }>('SELECT name FROM domains WHERE imvu = ?', [imvu]);
  const stage = await ctx.db.get<{ stage_domain: string }>('SELECT stage_domain FROM imvus WHERE id = ?', [imvu]);
  return new Set([...rows.map((r) => r.name), ...(stage ? [stage.stage_domain] : [])]);
}

async function dkimStep(ctx: GateContext, imvu: string): Promise<GateResult> {
  const selector = String(ctx.body.selector);
  const keys = await ctx.db.all<KeyRow & { selector: string }>('SELECT selector, state, since FROM dkim_keys WHERE imvu = ? ORDER BY entry', [imvu]);
  const key = keys.find((k) => k.selector === selector);
  switch (ctx.command.type) {
    case 'dkim.publish': {
      const n = DKIM_SELECTOR.exec(selector);
      if (key) return deny(17, `DKIM selector ${selector} of ${imvu} is already published; a key is never replaced in place`);
      if (keys.length === 0)
        return selector === 'nexus1' ? pass(17, `the DKIM key provisioned for ${imvu}`) : deny(17, `the DKIM key provisioned for ${imvu} has selector nexus1, not ${selector}`);
      const active = keys.filter((k) => k.state === 'active');
      if (keys.length !== 1 || active.length !== 1) return deny(17, `a DKIM rotation of ${imvu} is in progress (${keys.map((k) => `${k.selector} ${k.state}`).join(', ')})`);
      const current = DKIM_SELECTOR.exec(active[0]!.selector);
      const next = `nexus${current ? Number(current[1]) + 1 : 1}`;
      if (!n || selector !== next) return deny(17, `a DKIM rotation of ${imvu} publishes selector ${next} beside ${active[0]!.selector}, not ${selector}`);
      return pass(17, `DKIM rotation of ${imvu}: ${selector} published beside ${active[0]!.selector}`);
    }
    case 'dkim.activate': {
      if (!key || key.state !== 'published') return deny(17, `DKIM selector ${selector} of ${imvu} is not a published standby key`);
      const waited = seconds(key.since, ctx.at);
      if (waited < DKIM_TTL_S) return deny(17, `DKIM selector ${selector} was published at ${key.since}: it may sign from ${DKIM_TTL_S}s later (${Math.floor(waited)}s so far)`);
      return pass(17, `DKIM rotation of ${imvu}: ${selector} signs from now on`);
    }
    default: {
      if (!key || key.state !== 'retired') return deny(17, `DKIM selector ${selector} of ${imvu} is not retired; only a retired selector is removed`);
      const waited = seconds(key.since, ctx.at);
      if (waited < DKIM_RETIRE_S) return deny(17, `DKIM selector ${selector} was retired at ${key.since}: it stays published ${DKIM_RETIRE_S}s (${Math.floor(waited)}s so far)`);
      return pass(17, `DKIM rotation of ${imvu}: retired selector ${selector} removed`);
    }
  }
}

async function dnssecStep(ctx: GateContext, imvu: string): Promise<GateResult> {
  const zone = String(ctx.body.zone);
  const publicKey = String(ctx.body.publicKey);
  const owner = await ctx.db.get<{ imvu: string }>('SELECT imvu FROM zones WHERE name = ?', [zone]);
  if (!owner || owner.imvu !== imvu) return deny(17, `zone ${zone} does not belong to ${imvu}`);
  const keys = await ctx.db.all<KeyRow & { public_key: string }>('SELECT public_key, state, since FROM dnssec_keys WHERE zone = ? ORDER BY entry', [zone]);
  const key = keys.find((k) => k.public_key === publicKey);
  switch (ctx.command.type) {
    case 'dnssec.publish': {
      if (key) return deny(17, `this DNSSEC key of ${zone} is already published`);
      if (keys.length === 0) return pass(17, `the first DNSSEC key of ${zone}`);
      if (keys.length !== 1 || keys[0]!.state !== 'active') return deny(17, `a DNSSEC rollover of ${zone} is in progress (${keys.map((k) => k.state).join(', ')} keys)`);
      return pass(17, `DNSSEC rollover of ${zone}: new key published beside the active one, signed by it`);
    }
    case 'dnssec.activate': {
      if (!key || key.state !== 'published') return deny(17, `this DNSSEC key of ${zone} is not a published standby key`);
      const waited = seconds(key.since, ctx.at);
      if (waited < DNSKEY_TTL_S)
        return deny(17, `the new DNSSEC key of ${zone} was published at ${key.since}: it may sign from ${DNSKEY_TTL_S}s (the DNSKEY TTL) later (${Math.floor(waited)}s so far)`);
      return pass(17, `DNSSEC rollover of ${zone}: the new key signs, the old one stays in the DNSKEY RRset`);
    }
    default: {
      if (!key || key.state !== 'retired') return deny(17, `this DNSSEC key of ${zone} is not retired; only a retired key is removed`);
      const waited = seconds(key.since, ctx.at);
      if (waited < DNSKEY_TTL_S) return deny(17, `the old DNSSEC key of ${zone} was retired at ${key.since}: it stays ${DNSKEY_TTL_S}s (${Math.floor(waited)}s so far)`);
      return pass(17, `DNSSEC rollover of ${zone}: retired key removed`);
    }
  }
}
