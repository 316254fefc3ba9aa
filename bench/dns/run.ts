// dnsperf against our authoritative server and against NSD serving the same zones, in one run.
// Not a test: `npx tsx bench/dns/run.ts` (needs the Debian packages dnsperf and nsd).
// Writes its section of bench/RESULTS.md.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { testPlatform } from '../../src/core/testing.ts';
import { startDnsServer } from '../../src/domains/dns-authority/index.ts';
import { exportZone } from '../../src/domains/zonefile/export.ts';
import { onlineSigner } from '../../src/domains/dnssec/online.ts';
import { provisioner } from '../../src/imvu/provision.ts';

const ZONES = Number(process.env.BENCH_ZONES ?? 20);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const DNSSEC = process.env.BENCH_DNSSEC !== '0';

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
  avgMs: number;
  p50Ms: number | null;
  p99Ms: number | null;
  lost: number;
  sent: number;
}

function run(bin: string, args: string[]): Promise<string> {
  // Asynchronous: our server answers from this same process, so the event loop must stay free.
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => out.push(d));
    child.on('error', reject);
    child.on('close', () => resolve(Buffer.concat(out).toString('utf8')));
  });
}

const LATENCY_QPS = Number(process.env.BENCH_LATENCY_QPS ?? 5000);

async function dnsperf(port: number, queries: string): Promise<PerfResult> {
  const base = ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-T', '1', ...(DNSSEC ? ['-D'] : [])];
  // Throughput: as fast as the server answers.
  const out = await run('dnsperf', [...base, '-l', String(SECONDS), '-c', '8', '-q', '256']);
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  // Latency percentiles at a fixed, moderate rate; -v prints each response with its latency.
  const verbose = await run('dnsperf', [...base, '-l', '3', '-c', '4', '-q', '64', '-Q', String(LATENCY_QPS), '-v']);
  const lat: number[] = [];
  for (const m of verbose.matchAll(/^> \S+ .* ([0-9]+\.[0-9]+)$/gm)) lat.push(Number(m[1]));
  lat.sort((a, b) => a - b);
  const quantile = (q: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]! * 1000 : null);
  return {
    qps: num(/Queries per second:\s+([0-9.]+)/),
    avgMs: num(/Average Latency \(s\):\s+([0-9.]+)/) * 1000,
    p50Ms: quantile(0.5),
    p99Ms: quantile(0.99),
    lost: num(/Queries lost:\s+(\d+)/),
    sent: num(/Queries sent:\s+(\d+)/),
  };
}

async function waitUdp(port: number, name: string): Promise<void> {
  const dnsPacket = (await import('dns-packet')).default;
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      const t = setTimeout(() => (s.close(), resolve(false)), 100);
      s.on('message', () => (clearTimeout(t), s.close(), resolve(true)));
      s.send(dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'SOA', name }] }), port, '127.0.0.1');
    });
    if (ok) return;
  }
  throw new Error(`nothing answers on 127.0.0.1:${port}`);
}

// Zones get their DNSSEC keys as in the daemon (the provisioning follow-ups of imvu.create).
const p = await testPlatform({ provision: provisioner });
const signer = onlineSigner(p.store, p.dataDir);
const creator = await p.register('bench', 'creator');
const zones: string[] = [];
for (let i = 0; i < ZONES; i++) {
  await p.as(creator, 'imvu.create', { name: `Bench${i}`, owner: creator.id, jurisdiction: 'US-CCPA' });
  const zone = `imvu${String(i + 1).padStart(3, '0')}.world`;
  zones.push(zone);
  for (const [name, type, value] of [
    ['www', 'A', '192.0.2.10'],
    ['www', 'AAAA', '2001:db8::10'],
    ['shop', 'CNAME', `www.${zone}.`],
    ['_sip._tcp', 'SRV', `10 60 5060 www.${zone}.`],
  ] as const)
    await p.as(creator, 'dns.record.add', { zone, name, type, value });
}

const work = mkdtempSync(join(tmpdir(), 'nexus-dnsbench-'));
const queries = join(work, 'queries.txt');
const lines: string[] = [];
for (const z of zones) lines.push(`www.${z} A`, `www.${z} AAAA`, `${z} MX`, `${z} TXT`, `shop.${z} A`, `_sip._tcp.${z} SRV`, `nope.${z} A`, `www.${z} TXT`);
writeFileSync(queries, lines.join('\n') + '\n');

const results: Record<string, PerfResult | string> = {};
let nsd: ChildProcess | undefined;
const ours = await startDnsServer({ store: p.store, rrl: false, ...(DNSSEC ? { dnssec: signer } : {}) });
try {
  await waitUdp(ours.port, zones[0]!);
  results.nexus = await dnsperf(ours.port, queries);
  console.log('nexus', results.nexus);

  if (have('nsd')) {
    const port = await freePort();
    const conf = [
      'server:',
      `  ip-address: 127.0.0.1@${port}`,
      `  zonesdir: "${work}"`,
      '  username: ""',
      '  chroot: ""',
      `  pidfile: "${work}/nsd.pid"`,
      `  xfrdfile: "${work}/xfrd.state"`,
      `  zonelistfile: "${work}/zone.list"`,
      '  database: ""',
      `  logfile: "${work}/nsd.log"`,
      '  server-count: 1',
      // NSD rate-limits responses by default; ours runs with RRL off here too.
      '  rrl-ratelimit: 0',
      '  rrl-whitelist-ratelimit: 0',
      'remote-control:',
      '  control-enable: no',
    ];
    for (const z of zones) {
      writeFileSync(join(work, `${z}.zone`), await exportZone(p.store, z, DNSSEC ? { dnssec: signer.keys } : {}));
      conf.push('zone:', `  name: ${z}`, `  zonefile: "${z}.zone"`);
    }
    writeFileSync(join(work, 'nsd.conf'), conf.join('\n') + '\n');
    nsd = spawn('nsd', ['-d', '-c', join(work, 'nsd.conf')], { stdio: 'ignore' });
    await waitUdp(port, zones[0]!);
    results.nsd = await dnsperf(port, queries);
    console.log('nsd', results.nsd);
  } else results.nsd = 'nsd not installed';
} finally {
  nsd?.kill('SIGTERM');
  await ours.close();
  await p.cleanup();
  rmSync(work, { recursive: true, force: true });
}

const fmt = (r: PerfResult | string | undefined) =>
  typeof r === 'object'
    ? `${Math.round(r.qps).toLocaleString('en-US')} | ${r.avgMs.toFixed(3)} | ${r.p50Ms?.toFixed(3) ?? 'n/a'} | ${r.p99Ms?.toFixed(3) ?? 'n/a'} | ${r.lost}/${r.sent}`
    : `${r ?? 'n/a'} | | | |`;
const ratio = typeof results.nexus === 'object' && typeof results.nsd === 'object' ? ((results.nexus.qps / results.nsd.qps) * 100).toFixed(0) + '%' : 'n/a';
const nsdVersion = have('nsd') ? (execFileSync('nsd', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0] ?? '') : '';
const section = `## dns (bench/dns, ${new Date().toISOString().slice(0, 10)})

dnsperf (1 thread, 8 clients, 256 outstanding, ${SECONDS} s, ${DNSSEC ? 'DO bit set: signed answers' : 'no DO bit'}) against each server on 127.0.0.1, one after the other in the same run, ${ZONES} zones,
a mix of A, AAAA, MX, TXT, CNAME, SRV, NODATA and NXDOMAIN queries. ${cpus().length} cores shared by dnsperf and the server; Node ${process.version}; ${nsdVersion.trim() || 'NSD'} with server-count 1.

| server | queries/s | avg latency ms (at full rate) | p50 ms | p99 ms (at ${LATENCY_QPS.toLocaleString('en-US')} qps) | lost/sent |
| --- | --- | --- | --- | --- | --- |
| nexus (one Node process) | ${fmt(results.nexus)} |
| NSD | ${fmt(results.nsd)} |

nexus reaches ${ratio} of NSD's rate. Target: 40,000 queries/s for a signed zone (CoreDNS publishes 33,669 qps on 2 vCPUs).
`;
const file = join(import.meta.dirname, '..', 'RESULTS.md');
let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n\n';
const re = /## dns \(bench\/dns[\s\S]*?(?=\n## |$)/;
text = re.test(text) ? text.replace(re, section) : text.trimEnd() + '\n\n' + section;
writeFileSync(file, text);
console.log(section);
