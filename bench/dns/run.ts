// dnsperf against our authoritative server and against NSD serving the same zones, in one run:
// signed zones queried with the DO bit, then unsigned zones without it (BENCH_DNSSEC=1 or 0 for
// one of the two only); our server with and without its response cache. About 90 s by default.
// Not a test: `npx tsx bench/dns/run.ts` (needs the Debian packages dnsperf and nsd).
// Writes its section of bench/RESULTS.md.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
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

async function dnsperf(port: number, queries: string, signed: boolean): Promise<PerfResult> {
  const base = ['-s', '127.0.0.1', '-p', String(port), '-d', queries, '-T', '1', ...(signed ? ['-D'] : [])];
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

type Mode = 'signed' | 'unsigned';
const MODES: Mode[] = process.env.BENCH_DNSSEC === '0' ? ['unsigned'] : process.env.BENCH_DNSSEC === '1' ? ['signed'] : ['signed', 'unsigned'];
/** Rows per mode: our server with its response cache, without it (every answer computed: random names, 0x20 case), and NSD. */
type Row = 'nexus' | 'nexus-nocache' | 'nsd';
const results: Record<Mode, Partial<Record<Row, PerfResult | string>>> = { signed: {}, unsigned: {} };
const cacheStats: Partial<Record<Mode, string>> = {};

async function nsdServe(mode: Mode): Promise<{ port: number; child: ChildProcess }> {
  const dir = join(work, mode);
  mkdirSync(dir);
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
    '  server-count: 1',
    // NSD rate-limits responses by default; ours runs with RRL off here too.
    '  rrl-ratelimit: 0',
    '  rrl-whitelist-ratelimit: 0',
    'remote-control:',
    '  control-enable: no',
  ];
  for (const z of zones) {
    writeFileSync(join(dir, `${z}.zone`), await exportZone(p.store, z, mode === 'signed' ? { dnssec: signer.keys } : {}));
    conf.push('zone:', `  name: ${z}`, `  zonefile: "${z}.zone"`);
  }
  writeFileSync(join(dir, 'nsd.conf'), conf.join('\n') + '\n');
  const child = spawn('nsd', ['-d', '-c', join(dir, 'nsd.conf')], { stdio: 'ignore' });
  return { port, child };
}

let nsd: ChildProcess | undefined;
try {
  for (const mode of MODES) {
    const signed = mode === 'signed';
    for (const cache of [true, false]) {
      const ours = await startDnsServer({ store: p.store, rrl: false, ...(signed ? { dnssec: signer } : {}), ...(cache ? {} : { responseCache: false }) });
      try {
        await waitUdp(ours.port, zones[0]!);
        const r = await dnsperf(ours.port, queries, signed);
        results[mode][cache ? 'nexus' : 'nexus-nocache'] = r;
        console.log(mode, cache ? 'nexus' : 'nexus (no response cache)', r);
        if (cache) {
          const st = ours.stats();
          cacheStats[mode] = `${((st.cacheHits / Math.max(1, st.cacheHits + st.cacheMisses)) * 100).toFixed(2)}% of ${(st.cacheHits + st.cacheMisses).toLocaleString('en-US')} lookups hit, ${st.cacheEntries} entries`;
        }
      } finally {
        await ours.close();
      }
    }
    if (have('nsd')) {
      const served = await nsdServe(mode);
      nsd = served.child;
      await waitUdp(served.port, zones[0]!);
      results[mode].nsd = await dnsperf(served.port, queries, signed);
      console.log(mode, 'nsd', results[mode].nsd);
      nsd.kill('SIGTERM');
      await new Promise((r) => nsd!.once('close', r));
      nsd = undefined;
    } else results[mode].nsd = 'nsd not installed';
  }
} finally {
  nsd?.kill('SIGTERM');
  await p.cleanup();
  rmSync(work, { recursive: true, force: true });
}

const fmt = (r: PerfResult | string | undefined) =>
  typeof r === 'object'
    ? `${Math.round(r.qps).toLocaleString('en-US')} | ${r.avgMs.toFixed(3)} | ${r.p50Ms?.toFixed(3) ?? 'n/a'} | ${r.p99Ms?.toFixed(3) ?? 'n/a'} | ${r.lost}/${r.sent}`
    : `${r ?? 'n/a'} | | | |`;
const ratio = (a: PerfResult | string | undefined, b: PerfResult | string | undefined) =>
  typeof a === 'object' && typeof b === 'object' ? ((a.qps / b.qps) * 100).toFixed(0) + '%' : 'n/a';
const label: Record<Mode, string> = { signed: 'signed zones, DO bit set (signed answers)', unsigned: 'unsigned zones, no DO bit' };
const rows = MODES.flatMap((m) => [
  `| ${label[m]} | nexus (one Node process) | ${fmt(results[m].nexus)} |`,
  `| ${label[m]} | nexus, response cache off | ${fmt(results[m]['nexus-nocache'])} |`,
  `| ${label[m]} | NSD | ${fmt(results[m].nsd)} |`,
]);
const summary = MODES.map(
  (m) =>
    `- ${label[m]}: nexus reaches ${ratio(results[m].nexus, results[m].nsd)} of NSD's rate (${ratio(results[m]['nexus-nocache'], results[m].nsd)} with the response cache off); response cache: ${cacheStats[m] ?? 'n/a'}.`,
);
const nsdVersion = have('nsd') ? (execFileSync('nsd', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0] ?? '') : '';
const section = `## dns (bench/dns, ${new Date().toISOString().slice(0, 10)})

dnsperf (1 thread, 8 clients, 256 outstanding, ${SECONDS} s) against each server on 127.0.0.1, one after the other in the same run, ${ZONES} zones,
a mix of A, AAAA, MX, TXT, CNAME, SRV, NODATA and NXDOMAIN queries (${lines.length} distinct questions, repeated). ${cpus().length} cores shared by dnsperf and the server;
Node ${process.version}; ${nsdVersion.trim() || 'NSD'} with server-count 1. Signed: our server signs online (ECDSA P-256, compact denial), NSD serves our signed export.
"Response cache off" is the same server with \`responseCache: false\`: every answer decoded, looked up, signed from the signature cache and encoded, as for
names asked once (random subdomains) or case-randomised (0x20) questions.

| zones / queries | server | queries/s | avg latency ms (at full rate) | p50 ms | p99 ms (at ${LATENCY_QPS.toLocaleString('en-US')} qps) | lost/sent |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

${summary.join('\n')}

Target: 40,000 queries/s for a signed zone (CoreDNS publishes 33,669 qps on 2 vCPUs).
`;
const file = join(import.meta.dirname, '..', 'RESULTS.md');
let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n\n';
const re = /## dns \(bench\/dns[\s\S]*?(?=\n## |$)/;
text = re.test(text) ? text.replace(re, section) : text.trimEnd() + '\n\n' + section;
writeFileSync(file, text);
console.log(section);
