import { deny, pass, isMember, isOwner, type Gate } from '../gate.ts';

// Snapshots are content-addressed OCI images built outside the chokepoint (src/compute/snapshots);
// what passes here is their record. A snapshot is taken and rolled back by the creator or a
// member; a rollback names a snapshot recorded for the same IMVU, so no IMVU can be rolled onto
// another's data. Its bytes are verified (every digest recomputed) by whoever restores it, before
// the command is signed and again before the data is swapped: a verifier replaying the log has the
// records, not the blobs. The envelope a snapshot claims is the one in force when it is recorded.
export const gate: Gate = {
  number: 12,
  name: 'Immutable Snapshots',
  enforcedIn: 'src/core/policy/gates/12-immutable-snapshots.ts (who, which IMVU, recorded digest) + src/compute/snapshots (digests recomputed)',
  guards: ['snapshot.create', 'snapshot.rollback', 'imvu.exit'],
  status: 'enforced',
  async check(ctx) {
    if (!ctx.imvu || !ctx.actor) return deny(12, `unknown IMVU ${String(ctx.body.imvu)}`);
    const imvu = ctx.imvu;
    if (ctx.command.type === 'imvu.exit') {
      // Exit is never blocked here (gate 13): the snapshots recorded stay exportable after it.
      const n = await ctx.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM snapshots WHERE imvu = ?', [imvu.id]);
      return pass(12, `${Number(n?.n ?? 0)} recorded snapshot(s) of ${imvu.id} stay exportable (nexus snapshot export)`);
    }
    if (!isOwner(ctx) && !(await isMember(ctx, imvu.id, ctx.actor.id)))
      return deny(12, `only the creator or a member of ${imvu.id} takes or rolls back its snapshots; signed by ${ctx.actor.name} (${ctx.actor.role})`);
    const digest = String(ctx.body.digest);
    if (ctx.command.type === 'snapshot.rollback') {
      const snap = await ctx.db.get<{ entry: number }>('SELECT entry FROM snapshots WHERE imvu = ? AND digest = ?', [imvu.id, digest]);
      if (!snap) return deny(12, `no snapshot ${digest} is recorded for ${imvu.id}`);
      return pass(12, `rolls ${imvu.id} back to snapshot ${digest} (ledger entry ${snap.entry})`);
    }
    const env = (ctx.body.covers as { envelope: Record<string, number> }).envelope;
    const cur = await ctx.db.get<Record<string, number>>('SELECT cpu_cores, memory_gb, storage_gb, iops FROM envelopes WHERE imvu = ?', [imvu.id]);
    const differs = cur ? Object.keys(env).find((k) => Number(cur[k]) !== env[k]) : 'envelope';
    if (differs) return deny(12, `the snapshot claims ${differs} ${String(env[differs])}, but the envelope of ${imvu.id} in force is ${String(cur?.[differs])}`);
    return pass(12, `snapshot ${digest} of ${imvu.id} recorded`);
  },
};
