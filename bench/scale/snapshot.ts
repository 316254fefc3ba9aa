// Full against incremental verification on a copy of a built data directory (bench/scale/README.md):
//   npx tsx bench/scale/snapshot.ts --data DIR [--appends N] [--work DIR] [--profile DIR]
// On the copy: the platform records a signed ledger.snapshot, N revenue records are appended after
// it, then one full `audit verify --data --save-snapshot` (which keeps the state at the snapshot
// entry) and one `--from-snapshot` over the same log (it replays only the N entries after it).
// Runs `nexus` from dist/ (npm run build first). Prints one JSON object.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openDataDir } from '../../src/core/platform.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { serviceKeyPath } from '../../src/core/service-identity.ts';
import { arg } from './args.ts';

const source = arg('data');
const APPENDS = Number(arg('appends', '3000'));
const work = arg('work', '/tmp/nexus-snapshot-bench');
const dir = join(work, basename(source));
const snap = `${dir}.snapshot`;
const NEXUS = join(import.meta.dirname, '../../bin/nexus.js');
/** --profile DIR: a V8 CPU profile of the --from-snapshot run, written there. */
const PROFILE = process.argv.includes('--profile') ? arg('profile') : undefined;
const say = (k: string, v: unknown) => process.stderr.write(`${new Date().toISOString()} ${k} ${JSON.stringify(v)}\n`);
const load = () => loadavg().map((x) => Math.round(x * 10) / 10);

/** `nexus audit verify --data` under /usr/bin/time -v: wall seconds, peak RSS and the report. */
function verifyData(profile: string | undefined, ...extra: string[]): Record<string, unknown> {
  const loadBefore = load();
  const t = performance.now();
  const r = spawnSync('/usr/bin/time', ['-v', process.execPath, ...(profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : []), NEXUS, 'audit', 'verify', '--data', dir, '--json', ...extra], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const seconds = Math.round((performance.now() - t) / 100) / 10;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr ?? '');
  let report: Record<string, unknown> = {};
  try {
    report = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    report = { stdout: r.stdout.slice(0, 2000), stderr: (r.stderr ?? '').slice(0, 2000) };
  }
  const { ok, size, fromSnapshot, snapshotSaved, snapshotEntries, comparedRows, problems } = report;
  return { seconds, maxRssMb: rss ? Math.round(Number(rss[1]) / 1024) : -1, exit: r.status, ok, size, fromSnapshot, snapshotSaved, snapshotEntries, comparedRows, problems, loadBefore, loadAfter: load() };
}

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  rmSync(dir, { recursive: true, force: true });
  rmSync(snap, { recursive: true, force: true });
  cpSync(source, dir, { recursive: true });
  const out: Record<string, unknown> = { dataDir: source, appends: APPENDS, loadBefore: load() };

  const p = await openDataDir(dir, { parallelVerify: true });
  const t0 = performance.now();
  const signed = await p.integrity.recordSnapshot();
  out.snapshotEntry = { index: signed?.index, allowed: signed?.allowed, ms: Math.round(performance.now() - t0) };
  say('snapshotEntry', out.snapshotEntry);
  const imvus = (await p.store.all<{ id: string }>('SELECT id FROM imvus ORDER BY seq')).map((r) => r.id);
  const key = loadPrivateKey(serviceKeyPath(dir, 'payments'));
  let done = 0;
  const t1 = performance.now();
  while (done < APPENDS) {
    const n = Math.min(512, APPENDS - done);
    await Promise.all(
      Array.from({ length: n }, (_, i) => p.chokepoint.submit(signCommand(key, 'revenue.record', { imvu: imvus[(done + i) % imvus.length]!, amount: '100', currency: 'USD' }, { origin: p.config.origin }))),
    );
    done += n;
  }
  out.appendPerSecond = Math.round(APPENDS / ((performance.now() - t1) / 1000));
  await p.close();
  say('appended', { appends: APPENDS, perSecond: out.appendPerSecond });

  out.full = verifyData(undefined, '--save-snapshot', snap);
  say('full', out.full);
  out.fromSnapshot = verifyData(PROFILE, '--from-snapshot', snap);
  say('fromSnapshot', out.fromSnapshot);
  out.loadAfter = load();
  rmSync(snap, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
