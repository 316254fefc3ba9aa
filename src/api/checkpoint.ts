// The platform's signed checkpoints as the API serves them: the note the platform signed, followed
// by every witness cosignature the daemon holds for that exact checkpoint (C2SP signed-note: extra
// signature lines, which a verifier that does not know a witness ignores). Every route that serves
// a checkpoint goes through servedCheckpoint().
import { parseCheckpoint, splitNote, MAX_SIGNATURES } from '../core/ledger/checkpoint.ts';
import type { ApiContext } from './routes.ts';

export interface ServedCheckpoint {
  size: number;
  /** The signed note with the cosignature lines appended. */
  note: string;
  /** How many cosignatures were appended. */
  cosignatures: number;
}

/**
 * The checkpoint of tree size `size` (default: the newest) with its cosignatures, or undefined
 * when the ledger holds no checkpoint of that size.
 */
export async function servedCheckpoint(ctx: Pick<ApiContext, 'platform' | 'witnesses'>, size?: number): Promise<ServedCheckpoint | undefined> {
  let note: string | undefined;
  if (size === undefined) {
    const latest = await ctx.platform.store.latestCheckpoint();
    note = latest?.note ?? (await ctx.platform.chokepoint.ledger.checkpoint());
  } else {
    note = await ctx.platform.store.checkpointAt(size);
  }
  if (note === undefined) return undefined;
  const { text, sigs } = splitNote(note);
  const cp = parseCheckpoint(text);
  const lines = (ctx.witnesses?.cosignaturesFor(cp.size, cp.rootHash) ?? []).filter((l) => !sigs.some((s) => s.line === l)).slice(0, MAX_SIGNATURES - sigs.length);
  return { size: cp.size, note: note + lines.map((l) => `${l}\n`).join(''), cosignatures: lines.length };
}

/**
 * The newest checkpoint that at least `min` of the witnesses with these key IDs cosigned (and that
 * is still the ledger's checkpoint of that size), with all its cosignatures; the newest checkpoint
 * when there is none.
 */
export async function cosignedCheckpoint(ctx: Pick<ApiContext, 'platform' | 'witnesses'>, keyIds: string[], min: number): Promise<ServedCheckpoint | undefined> {
  const size = ctx.witnesses?.newestCosignedBy(keyIds, min);
  if (size !== undefined) {
    const at = await servedCheckpoint(ctx, size);
    if (at && at.cosignatures >= min) return at;
  }
  return servedCheckpoint(ctx);
}
