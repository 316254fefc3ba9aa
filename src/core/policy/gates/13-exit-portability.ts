import { deny, pass, isOwner, type Gate } from '../gate.ts';

// Exit needs the creator's signature and nothing else: no status (suspended included) and no
// other party's approval can stand in its way.
export const gate: Gate = {
  number: 13,
  name: 'Exit Portability',
  enforcedIn: 'src/core/policy/gates/13-exit-portability.ts (creator signature only; status never blocks)',
  guards: ['imvu.exit'],
  status: 'enforced',
  async check(ctx) {
    if (!ctx.imvu) return deny(13, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (!isOwner(ctx)) return deny(13, `exit of ${ctx.imvu.id} needs its creator's signature`);
    return pass(13, `exit by the creator accepted (status was ${ctx.imvu.status})`);
  },
};
