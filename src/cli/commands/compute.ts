// `nexus compute`: an IMVU's workload. Mutations are signed commands (creator or member; exec the
// creator alone, recorded); status and logs are signed reads. Heavy modules load inside actions.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import type { Json } from '../../core/types.ts';
import { imvuId } from '../args.ts';
import { Ctx, receiptLine } from '../context.ts';
import { usage } from '../errors.ts';

const MAX_BLUEPRINT_BYTES = 2 * 1024 * 1024;

async function readBlueprint(file: string): Promise<{ [k: string]: Json }> {
  const text = readFileSync(file, 'utf8');
  if (text.length > MAX_BLUEPRINT_BYTES) throw usage(`${file} is larger than ${MAX_BLUEPRINT_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw usage(`${file}: not a JSON blueprint`);
  }
  const { blueprintSchema } = await import('../../compute/blueprint/schema.ts');
  const { formatZodError } = await import('../../core/policy/commands.ts');
  const parsed = blueprintSchema.safeParse(raw);
  if (!parsed.success) throw usage(`${file}: ${formatZodError(parsed.error)}`);
  return raw as { [k: string]: Json };
}

export function computeCommand(): Command {
  const cmd = new Command('compute').description("an IMVU's workload: an OCI container under runc, inside its envelope");
  cmd
    .command('deploy <imvu>')
    .description('deploy a blueprint (image or files, command, env, port, health) as the IMVU workload')
    .requiredOption('--blueprint <file>', 'the blueprint file (JSON; the schema is src/compute/blueprint/schema.ts)')
    .addHelpText('after', '\nExample:\n  nexus compute deploy IMVU-001 --blueprint web.json')
    .action(async (imvu: string, o: { blueprint: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const id = imvuId(imvu);
      const blueprint = await readBlueprint(o.blueprint);
      const s = await ctx.submit('POST', `/v1/imvus/${id}/compute/deploy`, 'compute.deploy', { imvu: id, blueprint }, ctx.signer([], `compute deploy ${id}`));
      ctx.print({ ...s.receipt, checkpoint: s.checkpoint.size }, () => [`✅ blueprint deployed to ${id}`, `✅ ${receiptLine(s)}`]);
    });
  for (const verb of ['start', 'stop', 'restart'] as const)
    cmd
      .command(`${verb} <imvu>`)
      .description(`${verb} the IMVU workload (a signed compute.${verb}, creator or member)`)
      .addHelpText('after', `\nExample:\n  nexus compute ${verb} IMVU-001`)
      .action(async (imvu: string, _o: unknown, c: Command) => {
        const ctx = Ctx.of(c);
        const id = imvuId(imvu);
        const s = await ctx.submit('POST', `/v1/imvus/${id}/compute/${verb}`, `compute.${verb}`, { imvu: id }, ctx.signer([], `compute ${verb} ${id}`));
        ctx.print({ ...s.receipt, checkpoint: s.checkpoint.size }, () => [`✅ compute.${verb} ${id}`, `✅ ${receiptLine(s)}`]);
      });
  cmd
    .command('status <imvu>')
    .description("the workload's state and address, and the kernel's limits beside the ledger's envelope")
    .addHelpText('after', '\nExample:\n  nexus compute status IMVU-001')
    .action(async (imvu: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const id = imvuId(imvu);
      const s = await ctx.get<{ state: string; address?: string; limits?: { differences: { field: string; ledger?: number; kernel?: number }[] } }>(`/v1/imvus/${id}/compute`);
      ctx.print(s as unknown as Json, () => [
        `${id}: ${s.state}${s.address ? ` at ${s.address}` : ''}`,
        s.limits && s.limits.differences.length === 0 ? 'kernel limits match the ledger' : `kernel limits differ from the ledger: ${JSON.stringify(s.limits?.differences ?? [])}`,
      ]);
    });
  cmd
    .command('logs <imvu>')
    .description("the newest output of the workload (at most 64 KiB; the platform keeps a capped, rotated log)")
    .addHelpText('after', '\nExample:\n  nexus compute logs IMVU-001')
    .action(async (imvu: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      process.stdout.write(await ctx.getText(`/v1/imvus/${imvuId(imvu)}/compute/logs`));
    });
  cmd
    .command('exec <imvu> <command...>')
    .description('run a command in the workload (the creator only; the request is recorded, the output is not)')
    .addHelpText('after', '\nExample:\n  nexus compute exec IMVU-001 -- ls -la /data')
    .action(async (imvu: string, command: string[], _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const id = imvuId(imvu);
      const s = await ctx.submit<{ index: number; allowed: boolean; gates: never[]; followUps: never[]; exec?: { code: number; stdout: string; stderr: string } }>(
        'POST',
        `/v1/imvus/${id}/compute/exec`,
        'compute.exec',
        { imvu: id, command },
        ctx.signer([], `compute exec ${id}`),
      );
      const out = (s.receipt as { exec?: { code: number; stdout: string; stderr: string } }).exec;
      process.stdout.write(out?.stdout ?? '');
      process.stderr.write(out?.stderr ?? '');
      if (out && out.code !== 0) process.exitCode = Math.min(out.code, 125);
    });
  return cmd;
}
