import { deny, pass, isMember, type Gate } from '../gate.ts';

// The policy half of metering: only infrastructure service identities may report usage, and
// never for an IMVU they belong to. The hooks that produce the numbers live in each service.
export const gate: Gate = {
  number: 6,
  name: 'Revenue Metering',
  enforcedIn: 'src/core/policy/gates/06-revenue-metering.ts (who may report); metering hooks in each service',
  guards: ['usage.report', 'revenue.record'],
  status: 'enforced',
  async check(ctx) {
    const role = ctx.actor?.role;
    if (!ctx.imvu) return deny(6, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (ctx.command.type === 'revenue.record') {
      if (role !== 'service' && role !== 'platform') return deny(6, `revenue is recorded only by a service or the platform, not by a ${role}`);
      return pass(6, `revenue recorded by ${ctx.actor?.name}`);
    }
    if (role !== 'service') return deny(6, `usage is metered by the infrastructure: a ${role} identity cannot report usage`);
    const actor = ctx.actor?.id ?? '';
    if (ctx.imvu.owner === actor || (await isMember(ctx, ctx.imvu.id, actor))) return deny(6, `${ctx.imvu.id} cannot report its own usage`);
    const period = ctx.body.period as { start: string; end: string };
    if (!(Date.parse(period.start) < Date.parse(period.end))) return deny(6, 'usage period must end after it starts');
    return pass(6, `metered by service ${ctx.actor?.name}`);
  },
};
