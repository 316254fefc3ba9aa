// bench/compute: for 1, 10 and 50 IMVUs, the time from a signed `compute.start` to the workload's
// health check passing (HTTP GET from the host to its address, through the ledger, the compute
// service, runc and the veth), and the memory each container costs; beside `runc create` + `runc
// start` of the same bundle by hand (same config.json, new id and cgroup, no veth: it counts as
// up once its namespace's /proc/PID/net/tcp shows port 8080 listening), in the same run. Not a test; writes its section
// of bench/RESULTS.md. Needs root, runc, cgroup v1, busybox-static. Run:
//   npx tsx bench/compute/run.ts            (BENCH_COMPUTE_SIZES=1,10 narrows it)
import { execFile, spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { testPlatform } from '../../src/core/testing.ts';
import { RuncDriver, CGROUP_ROOT } from '../../src/compute/fabric/runc.ts';
import { removeFilter } from '../../src/compute/fabric/network.ts';
import { spawnTotal } from '../../src/compute/fabric/commands.ts';
import { ComputeService } from '../../src/compute/service.ts';

const run = promisify(execFile);
const sizes = (process.env.BENCH_COMPUTE_SIZES ?? '1,10,50').split(',').map(Number);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const blueprint = {
  image: 'busybox',
  files: [{ path: '/www/healthz', content: 'ok\n' }],
  command: ['httpd', '-f', '-p', '8080', '-h', '/www'],
  port: 8080,
  health: { http_path: '/healthz', interval_ms: 1000 },
};

function healthy(address: string): Promise<boolean> {
  return new Promise((ok) => {
    const req = request({ host: address, port: 8080, path: '/healthz', timeout: 2000 }, (res) => {
      res.resume();
      ok(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => ok(false));
    req.end();
  });
}

async function memoryOf(cgroup: string): Promise<number> {
  const stat = await readFile(`${CGROUP_ROOT}/memory${cgroup}/memory.stat`, 'utf8').catch(() => '');
  // rss + cache of the container's own cgroup (kernel accounting, no children beyond it).
  const get = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(stat)?.[1] ?? 0);
  return get('rss') + get('cache');
}

async function rssOfPids(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const s = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    total += Number(/^VmRSS:\s+(\d+) kB/m.exec(s)?.[1] ?? 0) * 1024;
  }
  return total;
}

/** Host processes (other than the workloads' own) whose command line names one of the instance's containers. */
async function hostProcesses(tag: string): Promise<number[]> {
  const { stdout } = await run('ps', ['-eo', 'pid,args']);
  return stdout.split('\n').filter((l) => l.includes(`nexus-${tag}-`) && !l.includes(' ps ')).map((l) => Number(l.trim().split(/\s+/)[0]));
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;
const mib = (b: number) => (b / 1024 / 1024).toFixed(2);

interface Row {
  n: number;
  mode: string;
  p50: number;
  max: number;
  all: number;
  cgroupMem: number;
  hostMem: number;
  /** Processes spawned per start (runc, ip, iptables), through the chokepoint's reconcile. */
  spawns?: number;
  load: string;
}

async function viaNexus(n: number): Promise<Row> {
  const p = await testPlatform({ plan: { imvus_per_creator: 1000, cpu_cores: 1024, memory_gb: 65536 } });
  const driver = new RuncDriver({ dataDir: p.dataDir, range: `10.${100 + randomInt(28)}.${randomInt(64) * 4}.0/22`, uidBase: 1_000_000 + randomInt(20_000) * 65_536, stopGraceMs: 1000 });
  const svc = new ComputeService(p, driver, { burstCheckMs: 0, verifyEveryMs: 0, healthTickMs: 0 });
  await svc.start();
  const alice = await p.register('alice', 'creator');
  const ids: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const r = await p.as(alice, 'imvu.create', { name: `Bench${i}`, owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } });
      if (!r.allowed) throw new Error(`imvu.create refused: ${JSON.stringify(r.gates)}`);
      const id = `IMVU-${String(i + 1).padStart(3, '0')}`;
      ids.push(id);
      await p.as(alice, 'compute.deploy', { imvu: id, blueprint });
    }
    await svc.schedule();
    // Each workload's address, known before the start (so the wait below spawns nothing: it only
    // sends HTTP requests, and the processes counted are the platform's own).
    const addresses = new Map<string, string>();
    for (const id of ids) addresses.set(id, (await driver.status(id)).address!);
    const load = loadavg().map((l) => l.toFixed(1)).join(' ');
    const t0 = performance.now();
    const spawned0 = spawnTotal();
    const done = new Map<string, number>();
    // All N signed starts, then the reconcile; each IMVU's time is until its own health check passes.
    for (const id of ids) await p.as(alice, 'compute.start', { imvu: id });
    const reconciled = svc.schedule();
    const deadline = Date.now() + 20 * 60_000;
    while (done.size < n && Date.now() < deadline) {
      for (const id of ids) {
        if (done.has(id)) continue;
        if (await healthy(addresses.get(id)!)) done.set(id, performance.now() - t0);
      }
      await sleep(50);
    }
    await reconciled;
    const spawns = (spawnTotal() - spawned0) / n;
    if (done.size < n) throw new Error(`${n - done.size} workloads never became healthy`);
    const times = [...done.values()];
    await sleep(2000);
    let cg = 0;
    for (const id of ids) cg += await memoryOf(driver.cgroupPath(id));
    // Host side per container: any process that stays for it (the runc init is gone after start,
    // runc has no shim, and OOM kills are read from the cgroups: none is expected).
    const host = await rssOfPids(await hostProcesses(driver.tag));
    return { n, mode: 'nexus compute start', p50: pct(times, 0.5), max: Math.max(...times), all: Math.max(...times), cgroupMem: cg / n, hostMem: host / n, spawns, load };
  } finally {
    await svc.close();
    for (const id of await driver.deployed()) await driver.cleanup(id).catch(() => undefined);
    await removeFilter(driver.tag).catch(() => undefined);
    await p.cleanup();
  }
}

async function byHand(n: number): Promise<Row> {
  // One bundle made by the driver, then copied N times with a new container id and cgroup path.
  const p = await testPlatform();
  const driver = new RuncDriver({ dataDir: p.dataDir, range: `10.${100 + randomInt(28)}.${randomInt(256)}.0/24`, uidBase: 1_000_000 + randomInt(20_000) * 65_536 });
  const root = `/run/nexus-bench-${driver.tag}`;
  const ids: string[] = [];
  try {
    const { envelopeResources } = await import('../../src/compute/envelopes/resources.ts');
    await driver.deploy({ imvu: 'IMVU-001', seq: 1, blueprint, resources: envelopeResources({ cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 100, burst_multiplier: 2, burst_minutes: 5 }, undefined) });
    const src = join(driver.computeDir('IMVU-001'), 'bundle');
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as { linux: { cgroupsPath: string }; mounts: { destination: string; source: string }[] };
    const bundles: string[] = [];
    for (let i = 0; i < n; i++) {
      const b = join(p.dataDir, `hand-${i}`);
      cpSync(join(src, 'config.json'), join(b, 'config.json.orig'), { force: true });
      const c = structuredClone(config);
      c.linux.cgroupsPath = `/nexus-bench-${driver.tag}/c${i}`;
      writeFileSync(join(b, 'config.json'), JSON.stringify(c));
      bundles.push(b);
      ids.push(`bench-${driver.tag}-${i}`);
    }
    const load = loadavg().map((l) => l.toFixed(1)).join(' ');
    const t0 = performance.now();
    const done = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      // The container inherits runc create's stdio: /dev/null, so nothing here waits on its pipes.
      await new Promise<void>((ok, fail) => {
        const c = spawn('runc', ['--root', root, 'create', '--bundle', bundles[i]!, ids[i]!], { stdio: 'ignore' });
        c.on('error', fail);
        c.on('exit', (code) => (code === 0 ? ok() : fail(new Error(`runc create exit ${code}`))));
      });
      await run('runc', ['--root', root, 'start', ids[i]!], { timeout: 120_000 });
    }
    const deadline = Date.now() + 20 * 60_000;
    while (done.size < n && Date.now() < deadline) {
      for (const id of ids) {
        if (done.has(id)) continue;
        // Listening on 8080 in its own network namespace (no veth to probe it over): the init's /proc/PID/net/tcp.
        const state = await run('runc', ['--root', root, 'state', id], { timeout: 30_000 }).then((r) => JSON.parse(r.stdout) as { pid: number }, () => undefined);
        const tcp = state ? (await Promise.all(['tcp', 'tcp6'].map((f) => readFile(`/proc/${state.pid}/net/${f}`, 'utf8').catch(() => '')))).join('\n') : '';
        if (/^\s*\d+: [0-9A-F]+:1F90 [0-9A-F]+:0000 0A /m.test(tcp)) done.set(id, performance.now() - t0);
      }
      await sleep(50);
    }
    if (done.size < n) throw new Error(`${n - done.size} hand-made containers never became healthy`);
    const times = [...done.values()];
    await sleep(2000);
    let cg = 0;
    for (let i = 0; i < n; i++) cg += await memoryOf(`/nexus-bench-${driver.tag}/c${i}`);
    return { n, mode: 'runc create+start by hand', p50: pct(times, 0.5), max: Math.max(...times), all: Math.max(...times), cgroupMem: cg / n, hostMem: 0, load };
  } finally {
    for (const id of ids) await run('runc', ['--root', root, 'delete', '--force', id]).catch(() => undefined);
    await run('rmdir', [root]).catch(() => undefined);
    for (const ctrl of ['cpu', 'cpuacct', 'memory', 'pids', 'blkio', 'cpuset', 'devices', 'freezer', 'systemd']) if (existsSync(`${CGROUP_ROOT}/${ctrl}/nexus-bench-${driver.tag}`)) await run('rmdir', [`${CGROUP_ROOT}/${ctrl}/nexus-bench-${driver.tag}`]).catch(() => undefined);
    for (const id of await driver.deployed()) await driver.cleanup(id).catch(() => undefined);
    await driver.close();
    await removeFilter(driver.tag).catch(() => undefined);
    await p.cleanup();
  }
}

const rows: Row[] = [];
for (const n of sizes) {
  for (const f of [viaNexus, byHand]) {
    const r = await f(n);
    rows.push(r);
    console.log(`${String(n).padStart(3)} ${r.mode.padEnd(28)} healthy p50 ${(r.p50 / 1000).toFixed(2)} s, last ${(r.max / 1000).toFixed(2)} s; cgroup memory ${mib(r.cgroupMem)} MiB/container, host-side ${mib(r.hostMem)} MiB/container; spawns/start ${r.spawns?.toFixed(1) ?? '-'}; load ${r.load}`);
  }
}

const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
const section = [
  `## compute (bench/compute, ${when} UTC)`,
  '',
  'Time from the start to the workload\'s health check passing (busybox httpd, GET /healthz), memory per',
  'container: the container cgroup\'s own rss+cache (kernel accounting), and host-side the RSS of any host',
  'process that stays per container (none: runc exits after start, OOM kills are read from the memory',
  'cgroups on one timer), and the processes (runc, ip) spawned per start.',
  '"nexus" = N signed `compute.start` through the chokepoint, then the compute service (runc create, netns',
  'attach, veth /30 + iptables, runc start), probed over the veth from the host; "by hand" = `runc create` +',
  '`runc start` of the same config.json one after the other (new id and cgroup, no veth), up once port 8080',
  'listens in its network namespace (/proc/PID/net/tcp; there is no veth to send a request over).',
  `Machine: ${(await run('nproc')).stdout.trim()} cores, shared with other engineers' test runs (load average 1/5/15 min at the start of each row).`,
  '',
  '| IMVUs | how | health passing, p50 | last one healthy | cgroup memory / container | host-side / container | spawns / start | load avg |',
  '| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |',
  ...rows.map((r) => `| ${r.n} | ${r.mode} | ${(r.p50 / 1000).toFixed(2)} s | ${(r.max / 1000).toFixed(2)} s | ${mib(r.cgroupMem)} MiB | ${r.spawns === undefined ? '-' : `${mib(r.hostMem)} MiB`} | ${r.spawns === undefined ? '2 (create, start)' : r.spawns.toFixed(1)} | ${r.load} |`),
  '',
].join('\n');
const file = join(import.meta.dirname, '..', 'RESULTS.md');
const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n';
const re = /## compute \(bench\/compute[^\n]*\n[\s\S]*?(?=\n## |$)/;
writeFileSync(file, re.test(text) ? text.replace(re, section.trimEnd() + '\n') : `${text.trimEnd()}\n\n${section}`);
console.log(section);
