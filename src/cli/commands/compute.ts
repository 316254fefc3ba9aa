// `nexus compute`: an IMVU's workload. Mutations are signed commands (creator or member; exec the
// creator alone, recorded); status and logs are signed reads. Heavy modules load inside actions.
import { Command } from 'commander';
import type { Json } from '../../core/types.ts';
import { imvuId } from '../args.ts';
import { Ctx, receiptLine } from '../context.ts';
import { usage } from '../errors.ts';

async function readBlueprint(file: string): Promise<{ [k: string]: Json }> {
  // YAML (JSON is YAML too), size-capped, aliases capped, checked by the same schema the chokepoint uses.
  const { loadBlueprintFile, BlueprintError } = await import('../../compute/blueprint/loader.ts');
  try {
    return (await loadBlueprintFile(file)).blueprint as unknown as { [k: string]: Json };
  } catch (err) {
    if (err instanceof BlueprintError) throw usage(err.message);
    throw usage(`${file}: ${(err as Error).message}`);
  }
}

export function computeCommand(): Command {
  const cmd = new Command('compute').description("an IMVU's workload: an OCI container under runc, inside its envelope");
  cmd
    .command('deploy <imvu>')
    .description('deploy a blueprint (image or files, command, env, port, health) as the IMVU workload')
    .requiredOption('--blueprint <file>', 'the blueprint file (YAML or JSON; the schema is src/compute/blueprint/schema.ts)')
    .addHelpText(
      'after',
      `
Example:
  nexus compute deploy IMVU-001 --blueprint web.yaml

web.yaml:
  image: busybox                 # or oci:/path/to/layout:tag (unpacked by umoci)
  files:
    - { path: /www/index.html, content: "hello\\n" }
  command: [httpd, -f, -p, "8080", -h, /www]
  port: 8080
  health: { http_path: /index.html, interval_ms: 5000, retries: 3 }
  restart: always                # or never`,
    )
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
      const s = await ctx.get<{
        state: string;
        address?: string;
        health?: { state: string; failures: number; restarts: number; lastCheck?: string; lastError?: string };
        limits?: { differences: { field: string; ledger?: number; kernel?: number }[] };
      }>(`/v1/imvus/${id}/compute`);
      const h = s.health;
      ctx.print(s as unknown as Json, () => [
        `${id}: ${s.state}${s.address ? ` at ${s.address}` : ''}`,
        ...(h ? [`health: ${h.state}${h.failures ? `, ${h.failures} failure${h.failures > 1 ? 's' : ''} in a row` : ''}${h.lastError ? ` (${h.lastError})` : ''}; restarted ${h.restarts} time${h.restarts === 1 ? '' : 's'} by its restart policy${h.lastCheck ? `; last check ${h.lastCheck}` : ''}`] : []),
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
    .addHelpText('after', "\nThe command's stdout and stderr are written as they came; the exit code is the command's (at most 125).\n\nExample:\n  nexus compute exec IMVU-001 -- ls -la /data")
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
