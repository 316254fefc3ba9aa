import { deny, pass, isMember, isOwner, type Gate } from '../gate.ts';
import { RESERVED_IDENTITY_NAMES } from '../naming.ts';
import { verifyRotationProof } from '../../identity/rotation.ts';

/** Roles whose identities the platform registers, and so may also revoke. */
const PLATFORM_REGISTERED = new Set(['admin', 'service']);

// The signature, known-identity, nonce and time checks run in the chokepoint before any gate
// (they need the raw envelope). What remains here is binding the proved identity to what the
// command claims to act for: the owner it names, or the IMVU whose resources it touches.
export const gate: Gate = {
  number: 1,
  name: 'Identity Binding',
  enforcedIn: 'src/core/policy/chokepoint.ts (Ed25519 signature, known identity, unused nonce, time window) + gates/01-identity-binding.ts',
  guards: 'all',
  status: 'enforced',
  async check(ctx) {
    const who = ctx.actor ? `${ctx.actor.name} (${ctx.actor.role})` : ctx.command.actor;
    const type = ctx.command.type;
    if (type === 'identity.register') {
      const selfSigned = ctx.command.actor !== ctx.platform?.id;
      const role = String(ctx.body.role);
      if (selfSigned && role !== 'creator' && role !== 'member')
        return deny(1, `a ${role} identity is registered by the platform, not by itself`);
      // Names of platform services and roles: taking one first would keep that service from starting.
      const name = String(ctx.body.name);
      if (RESERVED_IDENTITY_NAMES.includes(name) && (selfSigned || role !== 'service'))
        return deny(1, `the identity name '${name}' is reserved for a platform service: only the platform registers it, as a service identity`);
      return pass(1, selfSigned ? 'self-registration proved by the new key' : 'registered by the platform');
    }
    if (type === 'identity.rotate') {
      if (!ctx.actor || ctx.actor.id !== ctx.body.identity) return deny(1, `an identity rotates only its own key; signed by ${who} for ${String(ctx.body.identity)}`);
      if (ctx.actor.role === 'platform') return deny(1, 'the platform key is not rotated by a command');
      if (!ctx.platform) return deny(1, 'the ledger has no platform genesis entry');
      const claim = { origin: ctx.platform.origin, identity: ctx.actor.id, from: ctx.actor.public_key, to: String(ctx.body.publicKey) };
      if (!verifyRotationProof(claim, ctx.body.proof)) return deny(1, 'the proof is not a signature by the new key over this rotation (platform, identity, old key, new key)');
      return pass(1, `signed by ${who}'s current key and proven by the new key`);
    }
    if (type === 'identity.revoke') {
      const target = await ctx.db.get<{ name: string; role: string }>('SELECT name, role FROM identities WHERE id = ?', [String(ctx.body.identity)]);
      if (!target || !ctx.actor) return deny(1, `unknown identity ${String(ctx.body.identity)}`);
      if (ctx.actor.id === ctx.body.identity) return pass(1, `${who} revokes its own key`);
      // Nobody but a creator or member itself revokes it: revocation would silence its consent and
      // its exit (gate 13), which no admin and not the platform may do.
      if (ctx.actor.role === 'platform' && PLATFORM_REGISTERED.has(target.role)) return pass(1, `the platform revokes ${target.role} ${target.name}, which it registered`);
      return deny(1, `${target.name} (${target.role}) is revoked by itself${PLATFORM_REGISTERED.has(target.role) ? ' or by the platform, which registered it' : ' only'}; signed by ${who}`);
    }
    if (type === 'imvu.create') {
      if (!ctx.actor || ctx.body.owner !== ctx.actor.id) return deny(1, `an IMVU is created by its owner's own signature; signed by ${who}`);
      if (ctx.actor.role !== 'creator') return deny(1, `the owner of an IMVU must be a creator identity, not ${ctx.actor.role}`);
      return pass(1, `owner ${ctx.actor.name} bound by signature`);
    }
    if (type === 'member.add' || type === 'mailbox.remove') {
      if (!ctx.imvu) return deny(1, `unknown IMVU ${String(ctx.body.imvu)}`);
      if (!isOwner(ctx)) return deny(1, `only the creator of ${ctx.imvu.id} may do this; signed by ${who}`);
    }
    if (type === 'member.add') {
      const target = await ctx.db.get<{ role: string; name: string }>('SELECT role, name FROM identities WHERE id = ?', [String(ctx.body.identity)]);
      if (!target) return deny(1, `unknown identity ${String(ctx.body.identity)}`);
      // Infrastructure identities never join an IMVU: a metering service that became a member
      // could no longer report its usage (gate 6), which would switch billing off.
      if (target.role !== 'creator' && target.role !== 'member')
        return deny(1, `${target.name} is a ${target.role} identity; only creators and members can be members of an IMVU`);
    }
    if (type === 'mailbox.add' || type === 'mail.password.set' || type === 'mail.password.revoke') {
      if (!ctx.imvu) return deny(1, `unknown IMVU ${String(ctx.body.imvu)}`);
      if (!isOwner(ctx) && !(ctx.actor && (await isMember(ctx, ctx.imvu.id, ctx.actor.id))))
        return deny(1, `only the creator or a member of ${ctx.imvu.id} may ${type === 'mailbox.add' ? 'add mailboxes' : 'set or revoke app passwords'}; signed by ${who}`);
    }
    if (type === 'dkim.rotate') {
      if (!ctx.imvu) return deny(1, `unknown IMVU ${String(ctx.body.imvu)}`);
      if (!isOwner(ctx) && !(ctx.actor && (await isMember(ctx, ctx.imvu.id, ctx.actor.id))))
        return deny(1, `only the creator or a member of ${ctx.imvu.id} may ask for a new DKIM key; signed by ${who}`);
    }
    return pass(1, `signed by ${who}`);
  },
};
