// `nexus quota approve`: an admin's approval of an envelope above the platform's plan, for one
// IMVU or for every IMVU of one creator (also the number of IMVUs that creator may have). The
// approval is a signed `quota.approve` entry (gate 15); the creator still decides whether to scale.
import { Command } from 'commander';
import type { Json } from '../../core/types.ts';
import { gb, imvuId, int, text } from '../args.ts';
import { Ctx, receiptLine } from '../context.ts';
import { usage } from '../errors.ts';

interface ApproveFlags {
  imvu?: string;
  creator?: string;
  cpu?: number;
  memory?: number;
  storage?: number;
  iops?: number;
  imvus?: number;
  reason: string;
}

export function quotaCommand(): Command {
  const cmd = new Command('quota').description('approvals above the platform plan (admin)');
  cmd
    .command('approve')
    .description('approve an envelope above the plan for one IMVU (--imvu) or for every IMVU of a creator (--creator); signed by an admin identity')
    .option('--imvu <id>', 'the IMVU the approval is for (e.g. IMVU-001)', imvuId)
    .option('--creator <identity>', 'the creator the approval is for (name or id): covers all its IMVUs and --imvus')
    .option('--cpu <cores>', 'CPU cores up to which scaling is approved', int(1, 1024))
    .option('--memory <GB>', 'memory in GB up to which scaling is approved', gb(1, 65536))
    .option('--storage <GB>', 'storage in GB up to which scaling is approved', gb(1, 1_000_000))
    .option('--iops <n>', 'IOPS up to which scaling is approved', int(1, 10_000_000))
    .option('--imvus <n>', 'number of IMVUs the creator may have (with --creator only)', int(1, 100_000))
    .requiredOption('--reason <text>', 'why (recorded in the ledger, e.g. a contract reference; at most 500 characters)', text(500))
    .addHelpText(
      'after',
      '\nExamples:\n  nexus quota approve --imvu IMVU-001 --cpu 64 --memory 256 --reason "render farm contract #12" --as ops\n  nexus quota approve --creator agency --imvus 50 --reason "agency account" --as ops',
    )
    .action(async (o: ApproveFlags, c: Command) => {
      const ctx = Ctx.of(c);
      if ((o.imvu === undefined) === (o.creator === undefined)) throw usage('name exactly one of --imvu or --creator');
      if (o.imvu !== undefined && o.imvus !== undefined) throw usage('--imvus applies to a creator (--creator), not to one IMVU');
      const envelope: { [k: string]: Json } = {};
      if (o.cpu !== undefined) envelope.cpu_cores = o.cpu;
      if (o.memory !== undefined) envelope.memory_gb = o.memory;
      if (o.storage !== undefined) envelope.storage_gb = o.storage;
      if (o.iops !== undefined) envelope.iops = o.iops;
      if (o.imvus !== undefined) envelope.imvus = o.imvus;
      if (Object.keys(envelope).length === 0) throw usage('name at least one limit to approve: --cpu, --memory, --storage, --iops or --imvus');
      const body: { [k: string]: Json } = { envelope, reason: o.reason };
      if (o.imvu !== undefined) body.imvu = o.imvu;
      else body.creator = await ctx.identityId(o.creator!);
      const s = await ctx.submit('POST', '/v1/commands', 'quota.approve', body, ctx.signer([], 'quota approve'));
      const what = Object.entries(envelope)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(', ');
      ctx.print({ ...s.receipt, checkpoint: s.checkpoint.size }, () => [`✅ approved above the plan for ${String(body.imvu ?? o.creator)}: ${what}`, `✅ ${receiptLine(s)}`]);
    });
  return cmd;
}
