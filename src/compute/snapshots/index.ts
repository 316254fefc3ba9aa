// Snapshots of an IMVU (gate 12): take, list, roll back, export. The slow part (reading and
// hashing the data volume, unpacking a layer) runs outside the chokepoint; the record
// (snapshot.create, snapshot.rollback) is a signed command through it. A rollback unpacks the
// verified snapshot beside the live volume while the workload still runs, and only once the signed
// rollback is allowed stops the workload, swaps the two directories (two renames) and starts it.
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../../core/durable.ts';
import type { SqlReader } from '../../core/store/index.ts';
import type { Json } from '../../core/types.ts';
import type { Receipt } from '../../core/policy/chokepoint.ts';
import { imvuDir } from '../../mail/maildir/paths.ts';
import { createSnapshot, SnapshotInvalid, verifySnapshot, type SnapshotSummary } from './oci.ts';
import { unpackTree } from './tree.ts';

export { createSnapshot, exportSnapshot, listLayout, SnapshotInvalid, tagOf, verifySnapshot, type SnapshotSummary } from './oci.ts';

/** DATA/imvus/<IMVU>/snapshots: the IMVU's OCI image layout. */
export function snapshotLayout(dataDir: string, imvu: string): string {
  return join(imvuDir(dataDir, imvu), 'snapshots');
}

/**
 * DATA/imvus/<IMVU>/compute/volume/data: the workload's writable data volume, inside the volume's
 * own filesystem mounted at compute/volume (src/compute/fabric/volume.ts), so a rollback stages
 * and swaps beside it on the same filesystem.
 */
export function dataVolume(dataDir: string, imvu: string): string {
  return join(imvuDir(dataDir, imvu), 'compute', 'volume', 'data');
}

/** What stops and starts an IMVU's workload around a rollback (the compute driver). */
export interface WorkloadControl {
  stop(imvu: string): Promise<unknown>;
  start(imvu: string): Promise<unknown>;
}

/** The body of the `snapshot.create` that records `s`. */
export function createBody(s: SnapshotSummary): { [k: string]: Json } {
  const covers: { [k: string]: Json } = {
    layer: s.layer,
    entries: s.entries,
    data_bytes: String(s.dataBytes),
    envelope: {
      cpu_cores: Number(s.envelope.cpu_cores),
      memory_gb: Number(s.envelope.memory_gb),
      storage_gb: Number(s.envelope.storage_gb),
      iops: Number(s.envelope.iops),
    },
  };
  if (s.blueprint) covers.blueprint = s.blueprint;
  return { imvu: s.imvu, digest: s.digest, size: String(s.size), covers };
}

/** The envelope in force for `imvu` (what a snapshot records). */
export async function envelopeOf(db: SqlReader, imvu: string): Promise<Record<string, number>> {
  const row = await db.get<Record<string, number>>('SELECT cpu_cores, memory_gb, storage_gb, iops FROM envelopes WHERE imvu = ?', [imvu]);
  if (!row) throw new Error(`unknown IMVU ${imvu}`);
  return { cpu_cores: Number(row.cpu_cores), memory_gb: Number(row.memory_gb), storage_gb: Number(row.storage_gb), iops: Number(row.iops) };
}

/** Takes a snapshot of `imvu` from the platform's data directory: the blobs only, not the record. */
export async function takeSnapshot(dataDir: string, db: SqlReader, imvu: string, blueprint?: string): Promise<SnapshotSummary> {
  return createSnapshot(snapshotLayout(dataDir, imvu), {
    imvu,
    dataDir: dataVolume(dataDir, imvu),
    envelope: await envelopeOf(db, imvu),
    ...(blueprint !== undefined ? { blueprint } : {}),
  });
}

export interface RecordedSnapshot {
  digest: string;
  size: string;
  layer: string;
  entries: number;
  data_bytes: string;
  blueprint: string | null;
  envelope: string;
  at: string;
  entry: number;
  [k: string]: string | number | null;
}

/** The snapshots recorded for `imvu`, oldest first. */
export async function recordedSnapshots(db: SqlReader, imvu: string): Promise<RecordedSnapshot[]> {
  return db.all<RecordedSnapshot>('SELECT digest, size, layer, entries, data_bytes, blueprint, envelope, at, entry FROM snapshots WHERE imvu = ? ORDER BY entry', [imvu]);
}

export interface RollbackResult {
  receipt: Receipt;
  /** False when the rollback was refused: nothing was stopped and the volume is untouched. */
  restored: boolean;
  entries?: number;
  bytes?: number;
}

/**
 * Rolls `imvu` back to snapshot `digest`: verifies it, unpacks it into a staging directory beside
 * the volume, then `submit`s the signed `snapshot.rollback`. Only if the chokepoint allows it is
 * the workload stopped, the volume swapped for the staged one and the workload started again; the
 * old volume is removed last. A refusal or an error before the swap leaves the volume as it was.
 */
export async function rollback(dataDir: string, imvu: string, digest: string, control: WorkloadControl, submit: () => Promise<Receipt>): Promise<RollbackResult> {
  const layout = snapshotLayout(dataDir, imvu);
  const v = await verifySnapshot(layout, digest);
  if (v.imvu !== imvu) throw new SnapshotInvalid(`snapshot ${digest} is of ${v.imvu || 'no IMVU'}, not of ${imvu}`);
  const volume = dataVolume(dataDir, imvu);
  const parent = join(volume, '..');
  await mkdir(parent, { recursive: true, mode: 0o700 });
  const staging = join(parent, `.restore-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { mode: 0o700 });
  let swapped = false;
  try {
    const { entries, bytes } = await unpackTree(createReadStream(v.layerPath), staging, v.root);
    // The layer was read again while unpacking: make sure it is still the verified one.
    await verifySnapshot(layout, digest);
    const receipt = await submit();
    if (!receipt.allowed) return { receipt, restored: false };
    await control.stop(imvu);
    try {
      const old = join(parent, `.replaced-${randomBytes(6).toString('hex')}`);
      const hadVolume = existsSync(volume);
      if (hadVolume) await rename(volume, old);
      try {
        await rename(staging, volume);
      } catch (err) {
        if (hadVolume) await rename(old, volume);
        throw err;
      }
      swapped = true;
      fsyncDir(parent);
      if (hadVolume) await rm(old, { recursive: true, force: true });
    } finally {
      await control.start(imvu);
    }
    return { receipt, restored: true, entries, bytes };
  } finally {
    if (!swapped) await rm(staging, { recursive: true, force: true });
  }
}
