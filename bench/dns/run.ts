// dnsperf against our authoritative server, NSD serving the pre-signed export of the same zones,
// and Knot signing the same zones online (mod-onlinesign, ECDSA P-256 as ours), in one run:
// 1,000 signed zones, every query with the DO bit, four workloads over UDP and TCP, each at
// saturation (queries/s) and at a fixed offered load (p50 and p99 latency).
//   npx tsx bench/dns/run.ts          (needs the Debian packages dnsperf, nsd and knot)
// Writes its section of bench/RESULTS.md. Environment: BENCH_ZONES (1000), BENCH_SECONDS (5, per
// saturation run), BENCH_LATENCY_QPS (5000), BENCH_LATENCY_SECONDS (10), BENCH_WORKERS (2: our processes, NSD's server-count,
// Knot's UDP and TCP workers), BENCH_DATA (a data directory kept between runs; made on first use),
// BENCH_NODE_FLAGS (node options for our server), BENCH_SERVERS (nexus,nexus-dgram,nsd,knot; nexus-dgram is ours reading UDP through Node's dgram,
// one datagram per system call, as before batched UDP), BENCH_WORKLOADS, BENCH_TRANSPORTS.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { exportZone } from '../../src/domains/zonefile/export.ts';
import { onlineSigner } from '../../src/domains/dnssec/online.ts';
import { HOT_ZONES, prepare } from './setup.ts';

const ZONES = Number(process.env.BENCH_ZONES ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LATENCY_QPS = Number(process.env.BENCH_LATENCY_QPS ?? 5000);
// 10 s: at 5,000 q/s a 3 s window's p99 is its 150th-slowest answer, so one pause of a few ms decides it;
// 50,000 answers give every server's tail a steadier reading.
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 10);
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP ?? 3);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
// Extra flags for our server's node processes (its workers inherit them), e.g. V8's GC options.
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const list = (v: string | undefined, all: string[]) => (v ? v.split(',').filter((x) => all.includes(x)) : all);
const SERVERS = list(process.env.BENCH_SERVERS, ['nexus', 'nexus-dgram', 'nsd', 'knot']) as Server[];
const WORKLOADS = list(process.env.BENCH_WORKLOADS, ['hot', 'mix', 'random', 'case']) as Workload[];
const TRANSPORTS = list(process.env.BENCH_TRANSPORTS, ['udp', 'tcp']) as Transport[];
type Server = 'nexus' | 'nexus-dgram' | 'nsd' | 'knot';
type Workload = 'hot' | 'mix' | 'random' | 'case';
type Transport = 'udp' | 'tcp';

function have(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const { port } = s.address();
  s.close();
  return port;
}

interface PerfResult {
  qps: number;
  /** The first window at the fixed load, straight after the saturation run. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** The second window at the fixed load, after the first: the server has run at that load for LATENCY_SECONDS. */
  p50SteadyMs: number | null;
  p99SteadyMs: number | null;
  /** CPU time the hypervisor took from this VM (/proc/stat steal) during each window: the mean and the worst second, in %. */
  steal: [string, string];
  /** Answers per CPU-second of the server's processes during the saturation run: what a core gives it, whatever share the shared machine left it. */
  perCpu: number;
  /** Answered at the fixed load (a server that falls behind shows here). */
  fixedQps: number;
  lost: number;
  sent: number;
  rssMiB: number;
  load: string;
}

/** dnsperf's pids while it runs: not the server's CPU when the server is this process. */
const running = new Set<number>();

function run(bin: string, args: string[]): Promise<string> {
  // Asynchronous: our server answers from this same process, so the event loop must stay free.
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid) running.add(child.pid);
    child.on('exit', () => child.pid && running.delete(child.pid));
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => out.push(d));
    child.on('error', reject);
    child.on('close', () => resolve(Buffer.concat(out).toString('utf8')));
  });
}

/** The pids of a process and its descendants (NSD forks its servers, ours may have workers). */
function tree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const visit = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) visit(c);
  };
  visit(pid);
  return out;
}

/** CPU time (user + system, every thread) of a process and its descendants, seconds; dnsperf is not among them. */
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
function cpuTree(pid: number, skip: Set<number>): number {
  let ticks = 0;
  for (const p of tree(pid)) {
    if (skip.has(p)) continue;
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').slice(0, 4096);
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      // Fields 14 and 15 (utime, stime), counted from the state (field 3) at index 0.
      ticks += Number(rest[11]) + Number(rest[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / TICKS;
}

/** Resident memory of a process and its descendants (NSD forks its servers), MiB. */
function rssTree(pid: number): number {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone meanwhile
    }
  }
  let kib = 0;
  const visit = (p: number) => {
    try {
      kib += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
    for (const c of children.get(p) ?? []) visit(c);
  };
  visit(pid);
  return kib / 1024;
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

/** The machine's CPU time in ticks, and the part of it the hypervisor gave to others (steal). */
function cpuTimes(): { total: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
}

async function dnsperf(port: number, queries: string, transport: Transport, pid: number): Promise<PerfResult> {
  const base = ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-T', '1', '-D', '-m', transport];
  // Warm-up, not measured: every server has met the workload's names once (our caches fill, a
  // first signature per RRset is made), as a server that has been running a while has.
  await run('dnsperf', [...base, '-l', String(WARMUP_SECONDS), '-c', '8', '-q', '256']);
  const loadBefore = load();
  // Saturation: as fast as the server answers, 8 clients (TCP: 8 connections), 256 outstanding.
  const cpu0 = cpuTree(pid, running);
  const pending = run('dnsperf', [...base, '-l', String(SECONDS), '-c', '8', '-q', '256']);
  // dnsperf is our child too when the server is this process: its CPU is left out (its pid is known now).
  const out = await pending;
  const cpu = cpuTree(pid, running) - cpu0;
  const num = (re: RegExp, text = out) => Number(re.exec(text)?.[1] ?? NaN);
  const rssMiB = rssTree(pid);
  // Latency at a fixed offered load; -v prints each response with its latency. Two windows one
  // after the other: the first begins as the flood ends (a server that collects garbage pays for
  // the flood's here), the second after LATENCY_SECONDS at the fixed load (the server in steady
  // state at that load). The table gives both.
  const window = async () => {
    const seconds: number[] = [];
    let last = cpuTimes();
    const tick = setInterval(() => {
      const now = cpuTimes();
      seconds.push((100 * (now.steal - last.steal)) / Math.max(1, now.total - last.total));
      last = now;
    }, 1000);
    const start = cpuTimes();
    const out = await run('dnsperf', [...base, '-l', String(LATENCY_SECONDS), '-c', '4', '-q', '256', '-Q', String(LATENCY_QPS), '-v']);
    const lat: number[] = [];
    for (const m of out.matchAll(/^> \S+ .* ([0-9]+\.[0-9]+)$/gm)) lat.push(Number(m[1]));
    lat.sort((a, b) => a - b);
    const quantile = (q: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]! * 1000 : null);
    clearInterval(tick);
    const end = cpuTimes();
    const steal = `${((100 * (end.steal - start.steal)) / Math.max(1, end.total - start.total)).toFixed(1)} (${Math.max(0, ...seconds).toFixed(0)})`;
    return { out, p50: quantile(0.5), p99: quantile(0.99), steal };
  };
  const first = await window();
  const steady = await window();
  const verbose = first.out;
  return {
    qps: num(/Queries per second:\s+([0-9.]+)/),
    perCpu: num(/Queries completed:\s+(\d+)/) / cpu,
    p50Ms: first.p50,
    p99Ms: first.p99,
    p50SteadyMs: steady.p50,
    p99SteadyMs: steady.p99,
    steal: [first.steal, steady.steal],
    fixedQps: num(/Queries per second:\s+([0-9.]+)/, verbose),
    lost: num(/Queries lost:\s+(\d+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    rssMiB,
    load: `${loadBefore} / ${load()}`,
  };
}

async function waitUdp(port: number, name: string): Promise<void> {
  const dnsPacket = (await import('dns-packet')).default;
  for (let i = 0; i < 600; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      const t = setTimeout(() => (s.close(), resolve(false)), 100);
      s.on('message', (m) => (clearTimeout(t), s.close(), resolve((dnsPacket.decode(m) as { rcode?: string }).rcode === 'NOERROR')));
      s.send(dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'SOA', name }] }), port, '127.0.0.1');
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers for ${name} on 127.0.0.1:${port}`);
}

const work = mkdtempSync(join(tmpdir(), 'nexus-dnsbench-'));
const dataDir = process.env.BENCH_DATA ?? join(work, 'data');
mkdirSync(dataDir, { recursive: true });
const { platform: p, zones } = await prepare(dataDir, ZONES);
const signer = onlineSigner(p.store, p.dataDir);

// Workloads. Questions that exist: per zone www A/AAAA, apex MX/TXT, a CNAME, an SRV, and a NODATA
// (www TXT). Files are long enough that no name repeats within a saturation run of the fastest peer.
const LINES = Number(process.env.BENCH_LINES ?? 400_000);
const hotQuestions = (z: string) => [`www.${z} A`, `www.${z} AAAA`, `${z} MX`, `${z} TXT`, `shop.${z} A`, `_sip._tcp.${z} SRV`, `nope.${z} A`, `www.${z} TXT`];
// What imvu.create puts in every zone, and a NODATA.
const existing = (z: string) => [`${z} A`, `${z} MX`, `${z} TXT`, `${z} NS`, `mail.${z} A`, `_dmarc.${z} TXT`, `nexus1._domainkey.${z} TXT`, `mail.${z} AAAA`];
const allExisting = zones.flatMap(existing);
const pick = <T>(a: readonly T[]) => a[Math.floor(Math.random() * a.length)]!;
const randomName = () => `${randomBytes(6).toString('hex')}.${pick(zones)} ${Math.random() < 0.5 ? 'A' : 'AAAA'}`;
const randomCase = (line: string) => {
  const [name, type] = line.split(' ');
  return `${[...name!].map((c) => (Math.random() < 0.5 ? c.toUpperCase() : c)).join('')} ${type}`;
};
const files: Record<Workload, { path: string; what: string }> = {
  hot: { path: join(work, 'hot.txt'), what: "today's hot set: 160 questions (8 per zone of the first 20) asked over and over" },
  mix: { path: join(work, 'mix.txt'), what: `realistic mix: half existing questions drawn from all ${allExisting.length.toLocaleString('en-US')} (8 per zone: apex A, MX, TXT, NS, mail A, _dmarc TXT, DKIM TXT, a NODATA), half nonexistent names, each asked once` },
  random: { path: join(work, 'random.txt'), what: 'random nonexistent names (a random label under a random zone), each asked once' },
  case: { path: join(work, 'case.txt'), what: 'existing questions with each letter’s case randomised (0x20), drawn from all zones' },
};
writeFileSync(files.hot.path, zones.slice(0, HOT_ZONES).flatMap(hotQuestions).join('\n') + '\n');
const gen = (f: () => string) => Array.from({ length: LINES }, f).join('\n') + '\n';
writeFileSync(files.mix.path, gen(() => (Math.random() < 0.5 ? pick(allExisting) : randomName())));
writeFileSync(files.random.path, gen(randomName));
writeFileSync(files.case.path, gen(() => randomCase(pick(allExisting))));

interface Serving {
  port: number;
  pid: number;
  stop(): Promise<void>;
  note?: () => string;
}

async function nexusServe(udp: 'batched' | 'dgram' = 'batched'): Promise<Serving> {
  // Its own process (bench/dns/serve.ts), as NSD and Knot run: its CPU time and memory are its own.
  const proc = spawn(process.execPath, [...NODE_FLAGS, '--import', 'tsx', join(import.meta.dirname, 'serve.ts'), p.dataDir, '0', String(WORKERS)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_UDP: udp } });
  const lines: string[] = [];
  let buf = '';
  const ready = new Promise<{ port: number; udp: { mode: string; reason?: string } }>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (line.startsWith('{"port"')) resolve(JSON.parse(line) as { port: number; udp: { mode: string; reason?: string } });
      }
    });
    proc.once('exit', (code) => reject(new Error(`bench/dns/serve.ts exited (code ${code})`)));
  });
  const { port, udp: mode } = await ready;
  // A batched run that fell back to dgram would measure the wrong thing under the right name.
  if (mode.mode !== udp) throw new Error(`our server reads UDP through ${mode.mode}, not ${udp}: ${mode.reason ?? ''}`);
  await waitUdp(port, zones[0]!);
  let stats: Record<string, number> | undefined;
  return {
    port,
    pid: proc.pid!,
    stop: async () => {
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await new Promise((r) => proc.once('close', r));
      const last = lines.find((l) => l.startsWith('{"stats"'));
      if (last) stats = (JSON.parse(last) as { stats: Record<string, number> }).stats;
    },
    note: () =>
      stats
        ? `UDP ${udp}; response cache ${stats.cacheHits!.toLocaleString('en-US')} hits / ${stats.cacheMisses!.toLocaleString('en-US')} misses, ${stats.cacheEntries} entries at the end (every process)`
        : 'no statistics',
  };
}

async function child(bin: string, args: string[], port: number, dir: string): Promise<Serving> {
  const proc: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const err: Buffer[] = [];
  proc.stderr!.on('data', (d: Buffer) => err.length < 100 && err.push(d));
  try {
    await waitUdp(port, zones[zones.length - 1]!);
  } catch (e) {
    proc.kill('SIGTERM');
    throw new Error(`${bin}: ${(e as Error).message}\n${Buffer.concat(err).toString()}\n${readdirSync(dir).join(' ')}`);
  }
  return {
    port,
    pid: proc.pid!,
    stop: async () => {
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await new Promise((r) => proc.once('close', r));
    },
  };
}

async function nsdServe(): Promise<Serving> {
  const dir = join(work, 'nsd');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = [
    'server:',
    `  ip-address: 127.0.0.1@${port}`,
    `  zonesdir: "${dir}"`,
    '  username: ""',
    '  chroot: ""',
    `  pidfile: "${dir}/nsd.pid"`,
    `  xfrdfile: "${dir}/xfrd.state"`,
    `  zonelistfile: "${dir}/zone.list"`,
    '  database: ""',
    `  logfile: "${dir}/nsd.log"`,
    `  server-count: ${WORKERS}`,
    // NSD rate-limits responses by default; ours runs with RRL off here too.
    '  rrl-ratelimit: 0',
    '  rrl-whitelist-ratelimit: 0',
    'remote-control:',
    '  control-enable: no',
  ];
  for (const z of zones) {
    if (!existsSync(join(dir, `${z}.zone`))) writeFileSync(join(dir, `${z}.zone`), await exportZone(p.store, z, { dnssec: signer.keys }));
    conf.push('zone:', `  name: ${z}`, `  zonefile: "${z}.zone"`);
  }
  writeFileSync(join(dir, 'nsd.conf'), conf.join('\n') + '\n');
  return child('nsd', ['-d', '-c', join(dir, 'nsd.conf')], port, dir);
}

async function knotServe(): Promise<Serving> {
  const dir = join(work, 'knot');
  mkdirSync(join(dir, 'zones'), { recursive: true });
  const port = await freePort();
  const conf = [
    'server:',
    `  rundir: "${dir}"`,
    `  listen: 127.0.0.1@${port}`,
    `  udp-workers: ${WORKERS}`,
    `  tcp-workers: ${WORKERS}`,
    '  background-workers: 1',
    'log:',
    '  - target: stderr',
    '    any: warning',
    'database:',
    `  storage: "${dir}"`,
    'policy:',
    // The same algorithm as ours (13, ECDSA P-256), one combined signing key.
    '  - id: ecdsa',
    '    algorithm: ecdsap256sha256',
    '    single-type-signing: on',
    'mod-onlinesign:',
    '  - id: sign',
    '    policy: ecdsa',
    'template:',
    '  - id: default',
    `    storage: "${join(dir, 'zones')}"`,
    '    file: "%s.zone"',
    '    module: mod-onlinesign/sign',
    '    zonefile-sync: -1',
    '    journal-content: none',
    'zone:',
  ];
  for (const z of zones) {
    const f = join(dir, 'zones', `${z}.zone`);
    if (!existsSync(f)) writeFileSync(f, await exportZone(p.store, z));
    conf.push(`  - domain: ${z}`);
  }
  writeFileSync(join(dir, 'knot.conf'), conf.join('\n') + '\n');
  return child('knotd', ['-c', join(dir, 'knot.conf')], port, dir);
}

const serve: Record<Server, () => Promise<Serving>> = { nexus: () => nexusServe(), 'nexus-dgram': () => nexusServe('dgram'), nsd: nsdServe, knot: knotServe };
const results: Partial<Record<Server, Partial<Record<`${Workload}/${Transport}`, PerfResult | string>>>> = {};
const notes: string[] = [];
const started = new Date();
try {
  for (const server of SERVERS) {
    results[server] = {};
    if ((server === 'nsd' && !have('nsd')) || (server === 'knot' && !have('knotd'))) {
      notes.push(`${server}: not installed`);
      continue;
    }
    const s = await serve[server]();
    try {
      for (const w of WORKLOADS)
        for (const t of TRANSPORTS) {
          const r = await dnsperf(s.port, files[w].path, t, s.pid);
          results[server][`${w}/${t}`] = r;
          console.log(server, w, t, JSON.stringify(r));
        }
    } finally {
      await s.stop();
    }
    if (s.note) notes.push(`${server}: ${s.note()}`);
  }
} finally {
  await p.close();
  rmSync(work, { recursive: true, force: true });
}

const n = (x: number) => Math.round(x).toLocaleString('en-US');
const ms = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
const ratio = (a: PerfResult | string | undefined, b: PerfResult | string | undefined, f: (r: PerfResult) => number = (r) => r.qps) =>
  typeof a === 'object' && typeof b === 'object' ? `${(f(a) / f(b)).toFixed(2)}x` : 'n/a';
const rows: string[] = [];
for (const w of WORKLOADS)
  for (const t of TRANSPORTS)
    for (const server of SERVERS) {
      const r = results[server]?.[`${w}/${t}`];
      const ours = results[server]?.[`${w}/${t}`];
      if (typeof r !== 'object') continue;
      const vs = (f?: (r: PerfResult) => number) => (server.startsWith('nexus') ? `${ratio(ours, results.nsd?.[`${w}/${t}`], f)} / ${ratio(ours, results.knot?.[`${w}/${t}`], f)}` : '');
      rows.push(`| ${w} | ${t} | ${server} | ${n(r.qps)} | ${vs()} | ${n(r.perCpu)} | ${vs((x) => x.perCpu)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${ms(r.p50SteadyMs)} | ${ms(r.p99SteadyMs)} | ${r.steal[0]} / ${r.steal[1]} | ${n(r.fixedQps)} | ${r.lost}/${r.sent} | ${r.rssMiB.toFixed(0)} | ${r.load} |`);
    }
const version = (bin: string, args: string[]) => {
  try {
    return execFileSync('sh', ['-c', `${bin} ${args.join(' ')} 2>&1`], { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch (e) {
    return String((e as { stderr?: string }).stderr ?? '').split('\n')[0]!.trim();
  }
};
const section = `## dns (bench/dns, ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC)

${ZONES.toLocaleString('en-US')} signed zones; every query with the DO bit (signed answers). dnsperf 2.10 (1 thread, 8 clients, 256 outstanding, ${SECONDS} s at
saturation after ${WARMUP_SECONDS} s of warm-up; two windows of ${LATENCY_SECONDS} s at a fixed ${n(LATENCY_QPS)} queries/s for p50/p99: the first
straight after the flood, the second after it, in steady state) against each server on 127.0.0.1, one after the other in the same run.
${cpus().length} cores shared by dnsperf and the server, so a server's saturation rate is what dnsperf leaves it; each server has ${WORKERS} workers
(ours: processes sharing the sockets, bench/dns/serve.ts; NSD: server-count; Knot: udp-workers and tcp-workers). RRL off everywhere.
NSD serves our pre-signed export; Knot signs our unsigned export online (mod-onlinesign, its own ECDSA P-256 key, compact denial: one signature per new name).
Ours proves denials ${process.env.BENCH_DENIAL === 'compact' ? 'with compact denial (BENCH_DENIAL=compact)' : "from the zone's NSEC chain (the default; its NSECs signed once each)"}.
Node ${process.version}${NODE_FLAGS.length ? ` (our server with ${NODE_FLAGS.join(' ')})` : ''}; ${version('nsd', ['-v'])}; ${version('knotd', ['-V'])}. Load: the 1, 5 and 15-minute load averages before / after each saturation run
(the machine is shared: other work ran during this one, so the figures are under load).

Workloads:
${WORKLOADS.map((w) => `- ${w}: ${files[w].what}`).join('\n')}

| workload | transport | server | queries/s (saturation) | nexus vs NSD / Knot | answers per CPU-second | nexus vs NSD / Knot per CPU | p50 ms | p99 ms (at ${n(LATENCY_QPS)} q/s, right after saturation) | p50 ms steady | p99 ms steady (the next ${LATENCY_SECONDS} s) | steal % (worst second), first / steady window | answered q/s at ${n(LATENCY_QPS)} | lost/sent (saturation) | RSS MiB | load |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

${notes.map((x) => `- ${x}`).join('\n')}
`;
const file = join(import.meta.dirname, '..', 'RESULTS.md');
let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n\n';
if (process.env.BENCH_WRITE !== '0') {
  text = text.trimEnd() + '\n\n' + section;
  writeFileSync(file, text);
}
console.log(section);
