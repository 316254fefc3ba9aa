import { deny, isMember, isOwner, pass, type Gate } from '../gate.ts';

// Each IMVU's workload runs in its own namespaces (user, mount, pid, network, uts, ipc, cgroup),
// with its own uid/gid range and its own /30, made by the compute fabric (src/compute/fabric);
// test/isolation proves what one workload cannot see or reach of another's. Here: only the IMVU's
// creator or members change what it runs; only its creator opens a shell in it.
export const gate: Gate = {
  number: 2,
  name: 'IMVU Isolation (Compute/Network)',
  enforcedIn: 'src/compute/fabric (namespaces, per-IMVU uid range, veth /30 and packet filter per IMVU) + gates/02-imvu-isolation.ts (who drives an IMVU\'s workload)',
  guards: ['imvu.create', 'imvu.import', 'imvu.scale', 'compute.deploy', 'compute.start', 'compute.stop', 'compute.restart', 'compute.exec'],
  status: 'enforced',
  async check(ctx) {
    const type = ctx.command.type;
    if (type === 'imvu.create' || type === 'imvu.import' || type === 'imvu.scale') return pass(2, 'the workload runs in namespaces and a uid range of its own (src/compute/fabric)');
    if (!ctx.imvu || !ctx.actor) return deny(2, `unknown IMVU ${String(ctx.body.imvu)}`);
    const who = `${ctx.actor.name} (${ctx.actor.role})`;
    if (type === 'compute.exec') {
      if (!isOwner(ctx)) return deny(2, `only the creator of ${ctx.imvu.id} opens a process in its workload; signed by ${who}`);
      return pass(2, `exec in ${ctx.imvu.id} by its creator, recorded`);
    }
    if (!isOwner(ctx) && !(await isMember(ctx, ctx.imvu.id, ctx.actor.id))) return deny(2, `only the creator or a member of ${ctx.imvu.id} drives its workload; signed by ${who}`);
    if (ctx.imvu.status !== 'active' && type !== 'compute.stop') return deny(2, `${ctx.imvu.id} is ${ctx.imvu.status}: its workload may only be stopped`);
    if (type !== 'compute.deploy' && !(await ctx.db.get('SELECT 1 AS x FROM workloads WHERE imvu = ?', [ctx.imvu.id]))) return deny(2, `${ctx.imvu.id} has no workload yet: deploy a blueprint first (nexus compute deploy)`);
    return pass(2, `${type} of ${ctx.imvu.id} by ${who}`);
  },
};
