// Snapshot throughput (src/compute/snapshots): create (read, tar, SHA-256, fsync), verify (every
// digest recomputed), unpack (what a rollback stages) and export (the OCI archive) of one data
// volume. `BENCH_SNAPSHOT_MB` (default 256) of data in `BENCH_SNAPSHOT_FILES` (default 2000) files.
// Prints a Markdown table for bench/RESULTS.md.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createSnapshot, exportSnapshot, verifySnapshot } from '../../src/compute/snapshots/oci.ts';
import { unpackTree } from '../../src/compute/snapshots/tree.ts';

const MB = Number(process.env.BENCH_SNAPSHOT_MB ?? 256);
const FILES = Number(process.env.BENCH_SNAPSHOT_FILES ?? 2000);

async function time<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, (performance.now() - t) / 1000];
}

const dir = await mkdtemp(join(tmpdir(), 'nexus-bench-snap-'));
try {
  const data = join(dir, 'data');
  const per = Math.floor((MB * 1024 * 1024) / FILES);
  for (let i = 0; i < FILES; i++) {
    const sub = join(data, `d${i % 50}`);
    if (i < 50) await mkdir(sub, { recursive: true });
    await writeFile(join(sub, `f${i}`), randomBytes(per));
  }
  const layout = join(dir, 'layout');
  const envelope = { cpu_cores: 2, memory_gb: 4, storage_gb: 50, iops: 100 };
  const [snap, create] = await time(() => createSnapshot(layout, { imvu: 'IMVU-001', dataDir: data, envelope }));
  const [, again] = await time(() => createSnapshot(layout, { imvu: 'IMVU-001', dataDir: data, envelope }));
  const [v, verify] = await time(() => verifySnapshot(layout, snap.digest));
  const stage = join(dir, 'stage');
  await mkdir(stage);
  const [, unpack] = await time(() => unpackTree(createReadStream(v.layerPath), stage, v.root));
  const [, exp] = await time(() => exportSnapshot(layout, snap.digest, createWriteStream(join(dir, 'out.tar'))));
  const mb = snap.size / 1024 / 1024;
  const row = (what: string, s: number) => `| ${what} | ${s.toFixed(2)} | ${(mb / s).toFixed(0)} |`;
  console.log(`${FILES} files, ${mb.toFixed(0)} MiB of blobs; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
  console.log('| Step | Seconds | MiB/s |\n|:---|---:|---:|');
  for (const [w, s] of [['create (read, tar, SHA-256, fsync)', create], ['create again (same digest)', again], ['verify (every digest recomputed)', verify], ['unpack (rollback staging, fsync per file)', unpack], ['export (OCI archive)', exp]] as const) console.log(row(w, s));
} finally {
  await rm(dir, { recursive: true, force: true });
}
