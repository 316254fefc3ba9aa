// Daemon start alone (bench/scale/README.md):
//   npx tsx bench/scale/start.ts --data DIR [--runs N] [--profile PROFDIR] [--tamper] [--baseline NEXUS_JS]
// Works on a copy (DIR.start) so the built directory stays as it was. Spawns the built CLI
// (`node bin/nexus.js serve`, as bench/scale/measure.ts does) N times and prints, for each run, the
// time from spawn to the first answer from /health (503 "verifying") and to the first 200, with
// the load average and the CPU time the daemon had used when it answered 200. --profile: the daemon runs under `node --cpu-prof` (one .cpuprofile per run in
// PROFDIR, written when it exits on SIGTERM). --tamper: before the last run, one `routes` row is
// edited with SQL (the daemon stopped), so that run also pays the replay and repair.
// --baseline: another build's bin/nexus.js (e.g. the code before a change); each run then starts
// it and this tree's daemon one after the other, on the same copy, at the same load.
import { spawn } from 'node:child_process';
import { cpSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { arg } from './args.ts';

const source = arg('data');
const RUNS = Number(arg('runs', '3'));
const PROFILE = process.argv.includes('--profile') ? arg('profile') : undefined;
const TAMPER = process.argv.includes('--tamper');
const dir = `${source}.start`;
const NEXUS = join(import.meta.dirname, '../../bin/nexus.js');
const BASELINE = process.argv.includes('--baseline') ? arg('baseline') : undefined;

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
 * CPU time (user + system, ms) the process has used so far, from /proc: on a shared machine the
 * wall time to ready is mostly waiting for a core; this is what start-up itself costs.
 */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat (utime, stime), in clock ticks of 10 ms; f starts at field 3.
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function daemonStart(nexus: string): Promise<{ answerMs: number; readyMs: number; cpuMs: number; load: number[] }> {
  const port = await freePort();
  const dns = await freePort();
  const t = performance.now();
  const node = PROFILE ? ['--cpu-prof', '--cpu-prof-dir', PROFILE] : [];
  const child = spawn(process.execPath, [...node, nexus, 'serve', '--data', dir, '--port', String(port), '--host', '127.0.0.1', '--dns-address', '127.0.0.1', '--dns-port', String(dns)], {
    // The daemon's log lines, for what start did (a replay, an alarm): DIR.start.log.
    stdio: ['ignore', openSync(`${dir}.log`, 'a'), 'pipe'],
    env: { ...process.env, NEXUS_GATEWAY: 'false' },
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let answerMs: number | undefined;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nexus serve exited ${child.exitCode}: ${err.slice(0, 500)}`);
      try {
        const r = await fetch(`http://127.0.0.1:${port}/health`);
        answerMs ??= Math.round(performance.now() - t);
        if (r.ok) return { answerMs, readyMs: Math.round(performance.now() - t), cpuMs: cpuMs(child.pid!), load: loadavg().map((x) => Math.round(x * 100) / 100) };
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 10));
      if (performance.now() - t > 600_000) throw new Error('no /health within 10 minutes');
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

rmSync(dir, { recursive: true, force: true });
cpSync(source, dir, { recursive: true });
const runs = [];
for (let i = 0; i < RUNS; i++) {
  if (TAMPER && i === RUNS - 1) {
    const db = new Database(join(dir, 'nexus.db'));
    db.prepare("UPDATE routes SET policy = '{}' WHERE rowid = (SELECT MIN(rowid) FROM routes)").run();
    db.close();
  }
  const r: Record<string, unknown> = {};
  // A tampered copy is repaired by the first daemon that opens it: the baseline goes second then.
  const order: [string, string][] = BASELINE ? (TAMPER && i === RUNS - 1 ? [['current', NEXUS], ['baseline', BASELINE]] : [['baseline', BASELINE], ['current', NEXUS]]) : [['current', NEXUS]];
  for (const [name, bin] of order) r[name] = await daemonStart(bin);
  process.stderr.write(`${new Date().toISOString()} start ${JSON.stringify(r)}\n`);
  runs.push(r);
}
process.stdout.write(JSON.stringify({ dataDir: source, runs, tampered: TAMPER }) + '\n');
rmSync(dir, { recursive: true, force: true });
