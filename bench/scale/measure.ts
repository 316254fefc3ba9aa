// Measures a data directory built by bench/scale/build.ts (bench/scale/README.md):
//   npx tsx bench/scale/measure.ts --data DIR [--appends N]
// Works on a copy (DIR.measure) so the built directory stays as it was. Prints one JSON object.
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openDataDir } from '../../src/core/platform.ts';
import { openStore } from '../../src/core/store/index.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { statementFromTotals } from '../../src/core/handshake/totals.ts';
import { entriesAbout, readEntriesAt } from '../../src/core/policy/imvu-index.ts';
import { imvuSummary } from '../../src/imvu/summary.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { serviceKeyPath } from '../../src/core/service-identity.ts';
import { arg } from './args.ts';

const source = arg('data');
const APPENDS = Number(arg('appends', '3000'));
/** --quick: no `audit verify` runs (they take hours at a million entries on a busy machine). */
const QUICK = process.argv.includes('--quick');
/** Each figure as soon as it is measured (a long run can be stopped without losing the rest). */
const say = (k: string, v: unknown) => process.stderr.write(`${new Date().toISOString()} ${k} ${JSON.stringify(v)}\n`);
const dir = `${source}.measure`;
const NEXUS = join(import.meta.dirname, '../../bin/nexus.js');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function time<T>(runs: number, fn: () => Promise<T>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  return Math.round(median(ms) * 100) / 100;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/**
 * `nexus serve` on the copy: from spawn to the first answer from /health (503 "verifying" while the
 * start-up check runs, src/api/early.ts) and to the first 200 (serving). DNS on a free port.
 */
async function daemonStart(): Promise<{ answerMs: number; readyMs: number }> {
  const port = await freePort();
  const dns = await freePort();
  const t = performance.now();
  const child = spawn(process.execPath, [NEXUS, 'serve', '--data', dir, '--port', String(port), '--host', '127.0.0.1', '--dns-address', '127.0.0.1', '--dns-port', String(dns)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // No gateway: HAProxy on 443/80 is one per host, not one per measured daemon.
    env: { ...process.env, NEXUS_GATEWAY: 'false' },
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  let answerMs: number | undefined;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nexus serve exited ${child.exitCode}: ${err.slice(0, 500)}`);
      try {
        const r = await fetch(`http://127.0.0.1:${port}/health`);
        answerMs ??= Math.round(performance.now() - t);
        if (r.ok) return { answerMs, readyMs: Math.round(performance.now() - t) };
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 20));
      if (performance.now() - t > 600_000) throw new Error('no /health within 10 minutes');
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

/** `nexus audit verify --data` under /usr/bin/time -v: wall seconds and peak RSS. */
function verifyData(...extra: string[]): { seconds: number; maxRssMb: number; ok: boolean } {
  const t = performance.now();
  // /usr/bin/time writes its report to stderr, after the verifier's own output.
  const r = spawnSync('/usr/bin/time', ['-v', process.execPath, NEXUS, 'audit', 'verify', '--data', dir, '--json', ...extra], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const ok = r.status === 0;
  const out = r.stderr ?? '';
  const seconds = (performance.now() - t) / 1000;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(out);
  return { seconds: Math.round(seconds * 10) / 10, maxRssMb: rss ? Math.round(Number(rss[1]) / 1024) : -1, ok };
}

async function main(): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  cpSync(source, dir, { recursive: true });
  const built = existsSync(join(source, 'bench-build.json')) ? (JSON.parse(readFileSync(join(source, 'bench-build.json'), 'utf8')) as Record<string, unknown>) : {};
  const out: Record<string, unknown> = { dataDir: source, entries: built.entries, imvus: built.imvus, buildPerSecond: built.perSecond, loadBefore: loadavg() };

  // The first start is on a fresh copy (a new file: the close seal does not vouch for it, so every
  // projection row is scanned); the second follows the first's clean stop (the seal spares the scan).
  out.start = [await daemonStart(), await daemonStart()];
  say('start', out.start);

  // Reads, server-side (the functions the routes call, on the store), median of 20.
  const store = openStore(dir);
  const imvus = (await store.all<{ id: string }>('SELECT id FROM imvus ORDER BY seq')).map((r) => r.id);
  const one = imvus[Math.floor(imvus.length / 2)]!;
  const period = new Date().toISOString().slice(0, 7);
  out.statementMs = await time(20, () => statementFromTotals(store, one, period));
  out.imvuSummaryMs = await time(20, () => imvuSummary(store, one));
  // One IMVU's newest page (20 entries about it), as GET /v1/ledger/entries?imvu=&newest=20 reads
  // it for `audit log --imvu`: through the per-IMVU index, then the entries by index.
  const size = await store.ledgerSize();
  out.entries ??= size;
  out.imvuLogPageMs = await time(20, async () => {
    const found = await readEntriesAt(store, await entriesAbout(store, one, 0, size, 20, 'newest'));
    for (const { data } of found) decodeEntry(data);
    if (!found.length) throw new Error(`no entries about ${one}: the data directory has no per-IMVU index`);
  });
  await store.close();
  say('reads', { statementMs: out.statementMs, imvuSummaryMs: out.imvuSummaryMs, imvuLogPageMs: out.imvuLogPageMs });

  // The full verification keeps a snapshot of what it verified; after the appends, the
  // incremental one replays only those (bench/scale/README.md).
  const snap = `${dir}.snapshot`;
  rmSync(snap, { recursive: true, force: true });
  if (!QUICK) {
    // A signed ledger.snapshot at the end of the built log: --save-snapshot keeps the state it names.
    const q = await openDataDir(dir);
    await q.integrity.recordSnapshot();
    await q.close();
    const v = verifyData('--save-snapshot', snap);
    out.verify = { ...v, entriesPerSecond: Math.round(size / v.seconds) };
    say('verify', out.verify);
  }

  // Append rate: revenue records from the registered revenue source, 512 in flight.
  const p = await openDataDir(dir, { parallelVerify: true });
  const key = loadPrivateKey(serviceKeyPath(dir, 'payments'));
  const t = performance.now();
  let done = 0;
  while (done < APPENDS) {
    const n = Math.min(512, APPENDS - done);
    await Promise.all(
      Array.from({ length: n }, (_, i) => p.chokepoint.submit(signCommand(key, 'revenue.record', { imvu: imvus[(done + i) % imvus.length]!, amount: '100', currency: 'USD' }, { origin: p.config.origin }))),
    );
    done += n;
  }
  out.appendPerSecond = Math.round(APPENDS / ((performance.now() - t) / 1000));
  say('appendPerSecond', out.appendPerSecond);
  await p.close();
  if (!QUICK) out.verifyFromSnapshot = { ...verifyData('--from-snapshot', snap), newEntries: APPENDS };
  rmSync(snap, { recursive: true, force: true });
  out.loadAfter = loadavg();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
