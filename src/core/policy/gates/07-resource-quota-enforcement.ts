import { deny, pass, type Gate } from '../gate.ts';

// The envelope is enforced by the kernel: the compute fabric gives runc the envelope as OCI
// linux.resources (src/compute/envelopes), applies every change live with `runc update` and reads
// the cgroup values back against the ledger (a difference raises an integrity alarm). Here: the
// burst policy. Only the compute service raises the CPU quota, by exactly the envelope's
// multiplier, for a running workload that is not already bursting; it lowers only a burst.
export const gate: Gate = {
  number: 7,
  name: 'Resource Quota Enforcement',
  enforcedIn: 'src/compute (cgroup cpu, memory, pids and blkio limits through runc; kernel values read back) + gates/07-resource-quota-enforcement.ts (the burst policy)',
  guards: ['imvu.create', 'imvu.scale', 'compute.burst'],
  status: 'enforced',
  async check(ctx) {
    if (ctx.command.type !== 'compute.burst') return pass(7, 'applied to the kernel by the compute fabric (runc) and read back');
    if (!ctx.imvu || !ctx.actor) return deny(7, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (!(ctx.actor.role === 'service' && ctx.actor.name === 'compute')) return deny(7, `only the compute service applies the burst policy, not ${ctx.actor.name} (${ctx.actor.role})`);
    const env = await ctx.db.get<{ burst_multiplier: number; burst_minutes: number }>('SELECT burst_multiplier, burst_minutes FROM envelopes WHERE imvu = ?', [ctx.imvu.id]);
    const w = await ctx.db.get<{ desired: string; burst_until: string }>('SELECT desired, burst_until FROM workloads WHERE imvu = ?', [ctx.imvu.id]);
    if (!env || !w) return deny(7, `${ctx.imvu.id} has no workload`);
    if (ctx.body.phase === 'lower') {
      if (w.burst_until === '') return deny(7, `${ctx.imvu.id} is not bursting: nothing to lower`);
      if (ctx.body.multiplier !== 1) return deny(7, 'lowering returns the quota to the envelope (multiplier 1)');
      return pass(7, `burst of ${ctx.imvu.id} ends (due ${w.burst_until})`);
    }
    if (ctx.imvu.status !== 'active' || w.desired !== 'running') return deny(7, `${ctx.imvu.id} is not running: no burst`);
    if (w.burst_until !== '') return deny(7, `${ctx.imvu.id} is already bursting until ${w.burst_until}`);
    if (ctx.body.multiplier !== Number(env.burst_multiplier)) return deny(7, `the burst policy of ${ctx.imvu.id} is ${env.burst_multiplier}x, not ${String(ctx.body.multiplier)}x`);
    return pass(7, `burst ${env.burst_multiplier}x for ${env.burst_minutes} minutes (the envelope's burst policy)`);
  },
};
