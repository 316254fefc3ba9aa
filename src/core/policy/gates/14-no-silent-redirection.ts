import { deny, pass, isOwner, type Gate } from '../gate.ts';

export const gate: Gate = {
  number: 14,
  name: 'No Silent Redirection',
  enforcedIn: 'src/core/policy/gates/14-no-silent-redirection.ts (route changes need the creator; denial notifies the creator)',
  guards: ['route.set'],
  status: 'enforced',
  async check(ctx) {
    if (!ctx.imvu) return deny(14, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (!isOwner(ctx))
      return deny(14, `route change for ${ctx.imvu.id} needs its creator's signature; ${ctx.actor?.name} (${ctx.actor?.role}) alone cannot redirect its traffic`);
    return pass(14, 'route change signed by the creator');
  },
};
