import { deny, pass, isOwner, type Gate } from '../gate.ts';
import { ENVELOPE_FIELDS } from '../commands.ts';

export const gate: Gate = {
  number: 15,
  name: 'No Silent Throttling',
  enforcedIn: 'src/core/policy/gates/15-no-silent-throttling.ts (envelope decreases need the creator; denial notifies the creator)',
  guards: ['imvu.scale', 'imvu.suspend', 'imvu.resume'],
  status: 'enforced',
  async check(ctx) {
    if (!ctx.imvu) return deny(15, `unknown IMVU ${String(ctx.body.imvu)}`);
    const role = ctx.actor?.role;
    if (ctx.command.type !== 'imvu.scale') {
      if (role !== 'admin' && role !== 'platform') return deny(15, `only an admin or the platform may ${ctx.command.type.slice(5)} an IMVU`);
      if (ctx.command.type === 'imvu.suspend' && ctx.imvu.status === 'exited') return deny(15, `${ctx.imvu.id} has exited`);
      return pass(15, `${ctx.command.type} by ${ctx.actor?.name} is recorded and the creator is notified`);
    }
    const env = await ctx.db.get<Record<string, number>>('SELECT * FROM envelopes WHERE imvu = ?', [ctx.imvu.id]);
    if (!env) return deny(15, `${ctx.imvu.id} has no envelope`);
    const changes = ENVELOPE_FIELDS.filter((f) => typeof ctx.body[f] === 'number');
    if (changes.length === 0) return deny(15, 'scale names no envelope field to change');
    const decreases = changes.filter((f) => (ctx.body[f] as number) < (env[f] ?? 0));
    if (decreases.length > 0 && !isOwner(ctx)) {
      const what = decreases.map((f) => `${f} ${env[f]} -> ${String(ctx.body[f])}`).join(', ');
      return deny(15, `decrease of ${ctx.imvu.id} (${what}) needs its creator's signature; ${ctx.actor?.name} (${role}) alone cannot throttle it`);
    }
    if (!isOwner(ctx) && role !== 'admin' && role !== 'platform') return deny(15, `only the creator, an admin or the platform may scale ${ctx.imvu.id}`);
    return pass(15, decreases.length ? 'decrease signed by the creator' : 'increase only');
  },
};
