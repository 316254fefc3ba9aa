// Our MX against a stock Postfix (Debian package) on this machine, in the same run, with Postfix's
// own load generator `smtp-source` (issue 11 item 10). Both acknowledge a message only once it is
// on disk: ours after the Maildir copy is fsynced (file and directory), Postfix after its queue
// file is fsynced (its delivery into the Maildir follows, asynchronously). Ours also evaluates
// SPF, DKIM, DMARC and ARC with mailauth on every message; the stock Postfix checks nothing.
// Throughput: smtp-source's wall time for N messages over S sessions. Latency: while the load
// runs, a probe (Python's smtplib, one connection) times each MAIL..DATA transaction; p50/p99.
// Run: npx tsx bench/mail/run.ts   (env: BENCH_SIZES=1024,32768 BENCH_MESSAGES=2000 BENCH_SESSIONS=10 BENCH_PROFILE=1)
import { execFile, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { startPostfix } from '../../test/support/postfix.ts';

const exec = promisify(execFile);
const SIZES = (process.env.BENCH_SIZES ?? '1024,32768').split(',').map(Number);
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 2000);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 10);
const PROBES = Number(process.env.BENCH_PROBES ?? 200);
const RCPT = 'creator@imvu001.world';

const PROBE = `
import smtplib, sys, time
port, size, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = ('x' * 76 + '\\r\\n') * max(1, size // 78)
msg = 'From: probe@good.test\\r\\nTo: ${RCPT}\\r\\nSubject: probe\\r\\n\\r\\n' + body
s = smtplib.SMTP('127.0.0.1', port, timeout=120)
s.ehlo('probe.good.test')
out = []
for i in range(n):
    t = time.perf_counter()
    s.sendmail('probe@good.test', ['${RCPT}'], msg)
    out.append((time.perf_counter() - t) * 1000)
s.quit()
print(' '.join('%.3f' % x for x in out))
`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function load(port: number, size: number): Promise<{ seconds: number; rate: number; p50: number; p99: number; load: string }> {
  const before = loadavg()[0]!.toFixed(1);
  const probe = exec('/usr/bin/python3', ['-c', PROBE, String(port), String(size), String(PROBES)], { maxBuffer: 1 << 24, timeout: 900_000 });
  const t = performance.now();
  await exec('/usr/sbin/smtp-source', ['-s', String(SESSIONS), '-m', String(MESSAGES), '-l', String(size), '-f', 'load@good.test', '-t', RCPT, '-M', 'client.good.test', `127.0.0.1:${port}`], { timeout: 900_000 });
  const seconds = (performance.now() - t) / 1000;
  const lat = (await probe).stdout.trim().split(' ').map(Number);
  return { seconds, rate: MESSAGES / seconds, p50: pct(lat, 50), p99: pct(lat, 99), load: `${before} → ${loadavg()[0]!.toFixed(1)}` };
}

function countFiles(dir: string): number {
  let n = 0;
  for (const sub of ['new', 'cur']) {
    try {
      n += readdirSync(join(dir, sub)).length;
    } catch {
      // not there yet
    }
  }
  return n;
}

async function startOurs(): Promise<{ port: number; dataDir: string; stop(): Promise<void> }> {
  const args = [...(process.env.BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', 'bench/mail/profiles'] : []), '--import', 'tsx', join(import.meta.dirname, 'mx-server.ts')];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '4' } });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (c) => reject(new Error(`mx-server exited ${c}`)));
  });
  const [, port, dataDir] = line.split(' ');
  return {
    port: Number(port),
    dataDir: dataDir!,
    stop: () => new Promise((r) => (child.once('exit', () => r()), child.kill('SIGTERM'))),
  };
}

const rows: string[] = [];
const ours = await startOurs();
const postfix = await startPostfix({ domains: ['imvu001.world'] });
try {
  for (const size of SIZES) {
    // Alternate, so that both see the same machine: ours, Postfix, per size.
    const a = await load(ours.port, size);
    const b = await load(postfix.port, size);
    const ourBox = join(ours.dataDir, 'imvus', 'IMVU-001', 'mail');
    rows.push(`| ${size} B | nexus MX | ${a.rate.toFixed(0)} | ${a.p50.toFixed(1)} | ${a.p99.toFixed(1)} | ${a.load} |`);
    rows.push(`| ${size} B | Postfix 3.7 | ${b.rate.toFixed(0)} | ${b.p50.toFixed(1)} | ${b.p99.toFixed(1)} | ${b.load} |`);
    rows.push(`| ${size} B | ratio | ${(a.rate / b.rate).toFixed(2)} | | | |`);
    console.log(rows.slice(-3).join('\n'), ourBox);
  }
  // Everything acknowledged is stored: ours at once, Postfix once its queue has drained.
  const expected = SIZES.length * (MESSAGES + PROBES);
  const pf = postfix.maildir;
  for (let i = 0; i < 600 && countFiles(pf) < expected; i++) await new Promise((r) => setTimeout(r, 100));
  console.log(`stored: Postfix ${countFiles(pf)} of ${expected}`);
} finally {
  await postfix.stop();
  await ours.stop();
}
console.log(['| size | server | messages/s | p50 ms | p99 ms | load average (1 min) |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n'));
