// `nexus snapshot create|list|rollback|export IMVU`: content-addressed snapshots of an IMVU's data
// volume, blueprint and envelope (src/compute/snapshots, gate 12). The daemon builds the OCI image
// (a signed read); the creator or a member signs its record, snapshot.create; a rollback is a
// signed snapshot.rollback after which the daemon swaps the volume with the workload stopped.
import { Command, InvalidArgumentError } from 'commander';
import type { Json } from '../../core/types.ts';
import { imvuId } from '../args.ts';
import { Ctx, receiptLine } from '../context.ts';
import { plural, table } from '../format.ts';

function digestArg(value: string): string {
  const v = value.trim().toLowerCase();
  if (/^sha256:[0-9a-f]{64}$/.test(v)) return v;
  if (/^[0-9a-f]{64}$/.test(v)) return `sha256:${v}`;
  throw new InvalidArgumentError(`expected a snapshot digest such as sha256:<64 hex digits>, got '${value}'.`);
}

interface Listed {
  digest: string;
  size: string;
  entries: number;
  data_bytes: string;
  at: string;
  entry: number;
  tag: string;
  stored: boolean;
}

export function snapshotCommand(): Command {
  const cmd = new Command('snapshot').description("snapshots of an IMVU's data volume, blueprint and envelope: create, list, rollback, export (creator or member)");
  cmd
    .command('create')
    .description('take a content-addressed (SHA-256) OCI snapshot of the IMVU and record it in the ledger (snapshot.create)')
    .argument('<imvu>', 'the IMVU (e.g. IMVU-001)', imvuId)
    .addHelpText('after', '\nExample:\n  nexus snapshot create IMVU-001 --as alice')
    .action(async (imvu: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = ctx.signer([], 'snapshot create');
      const draft = await ctx.get<{ body: { [k: string]: Json }; skipped: string[]; tag: string }>(`/v1/imvus/${imvu}/snapshots/draft`, {}, { as: signer });
      const digest = String(draft.body.digest);
      const known = await ctx.get<{ snapshots: Listed[] }>(`/v1/imvus/${imvu}/snapshots`, {}, { as: signer });
      const same = known.snapshots.find((s) => s.digest === digest);
      if (same) {
        ctx.print({ imvu, digest, unchanged: true, entry: same.entry }, () => `✅ ${imvu} is unchanged since snapshot ${digest} (ledger entry ${same.entry}); nothing recorded`);
        return;
      }
      const s = await ctx.submit('POST', `/v1/imvus/${imvu}/snapshots`, 'snapshot.create', draft.body, signer);
      const covers = draft.body.covers as { entries: number; data_bytes: string };
      ctx.print({ ...s.receipt, digest, tag: draft.tag, skipped: draft.skipped, checkpoint: s.checkpoint.size }, () => [
        `✅ snapshot ${digest} of ${imvu}: ${plural(covers.entries, 'entry', 'entries')}, ${covers.data_bytes} bytes of data (tag ${draft.tag})`,
        ...(draft.skipped.length ? [`   not included (sockets): ${draft.skipped.join(', ')}`] : []),
        `✅ ${receiptLine(s)}`,
      ]);
    });
  cmd
    .command('list')
    .description("the IMVU's recorded snapshots, oldest first")
    .argument('<imvu>', 'the IMVU (e.g. IMVU-001)', imvuId)
    .action(async (imvu: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const r = await ctx.get<{ snapshots: Listed[] }>(`/v1/imvus/${imvu}/snapshots`);
      ctx.print(r, () =>
        r.snapshots.length
          ? table(
              ['DIGEST', 'TAKEN', 'ENTRY', 'FILES', 'DATA BYTES', 'STORED'],
              r.snapshots.map((s) => [s.digest, s.at, String(s.entry), String(s.entries), s.data_bytes, s.stored ? 'yes' : 'MISSING']),
            )
          : `${imvu} has no snapshots; take one with \`nexus snapshot create ${imvu}\``,
      );
    });
  cmd
    .command('rollback')
    .description("restore the IMVU's data volume byte for byte from one of its snapshots (snapshot.rollback); the workload is stopped around the swap")
    .argument('<imvu>', 'the IMVU (e.g. IMVU-001)', imvuId)
    .argument('<digest>', 'the snapshot (sha256:..., from `nexus snapshot list`)', digestArg)
    .addHelpText('after', '\nExample:\n  nexus snapshot rollback IMVU-001 sha256:4f1c... --as alice')
    .action(async (imvu: string, digest: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = ctx.signer([], 'snapshot rollback');
      const s = await ctx.submit<{ index: number; allowed: boolean; gates: never[]; restored?: boolean; entries?: number; bytes?: number }>(
        'POST',
        `/v1/imvus/${imvu}/snapshots/rollback`,
        'snapshot.rollback',
        { imvu, digest },
        signer,
      );
      ctx.print({ ...s.receipt, checkpoint: s.checkpoint.size }, () => [
        `✅ ${imvu} rolled back to ${digest}${s.receipt.entries !== undefined ? `: ${plural(s.receipt.entries, 'entry', 'entries')}, ${s.receipt.bytes} bytes restored` : ''}`,
        `✅ ${receiptLine(s)}`,
      ]);
    });
  cmd
    .command('export')
    .description('write one snapshot as an OCI archive (skopeo inspect oci-archive:FILE; umoci unpack after untarring it)')
    .argument('<imvu>', 'the IMVU (e.g. IMVU-001)', imvuId)
    .argument('<digest>', 'the snapshot (sha256:...)', digestArg)
    .requiredOption('-o, --out <file>', 'where to write the archive')
    .addHelpText('after', '\nExample:\n  nexus snapshot export IMVU-001 sha256:4f1c... -o shop.oci.tar\n  skopeo inspect oci-archive:shop.oci.tar')
    .action(async (imvu: string, digest: string, o: { out: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = ctx.signer([], 'snapshot export');
      const { bytes } = await ctx.client.download(`/v1/imvus/${imvu}/snapshots/${digest}/export`, o.out, signer);
      ctx.print({ imvu, digest, file: o.out, bytes }, () => `✅ ${o.out}: snapshot ${digest} of ${imvu} as an OCI archive (${bytes} bytes)`);
    });
  return cmd;
}
