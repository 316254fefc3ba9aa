import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceOf, envelopeResources, PIDS_PER_CORE, type Envelope } from '../../src/compute/envelopes/resources.ts';
import { CGROUP_ROOT } from '../../src/compute/fabric/runc.ts';
import { requireRunc, scratchFabric, type Fabric } from './fabric-helpers.ts';

// Gate 7 under real load: the kernel holds each workload to its envelope (cgroup v1 accounting
// is the witness), and a neighbour keeps answering meanwhile.
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const env: Envelope = { cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 50, burst_multiplier: 2, burst_minutes: 5 };

async function cg(f: Fabric, imvu: string, ctrl: string, file: string): Promise<string> {
  return (await readFile(`${CGROUP_ROOT}/${ctrl}${f.driver.cgroupPath(imvu)}/${file}`, 'utf8')).trim();
}

function get(url: string): Promise<number> {
  return new Promise((ok, fail) => {
    const t0 = performance.now();
    const req = request(url, { timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => ok(performance.now() - t0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end();
  });
}

describe('gate 7: envelopes enforced by the kernel', () => {
  let f: Fabric;
  let dev: { major: number; minor: number };
  let neighbour = '';
  const deploy = async (imvu: string, seq: number, script: string) => {
    await f.driver.deploy({ imvu, seq, blueprint: { image: 'busybox', command: ['sh', '-c', script] }, resources: envelopeResources(env, dev) });
    return f.driver.start(imvu);
  };

  beforeAll(async () => {
    requireRunc();
    f = scratchFabric();
    dev = deviceOf(statSync(f.dataDir).dev);
    // The neighbour: a web server whose latency is sampled while the hogs run.
    await f.driver.deploy({
      imvu: 'IMVU-009',
      seq: 9,
      blueprint: { image: 'busybox', files: [{ path: '/www/index.html', content: 'ok\n' }], command: ['httpd', '-f', '-p', '8080', '-h', '/www'], port: 8080 },
      resources: envelopeResources(env, dev),
    });
    const s = await f.driver.start('IMVU-009');
    neighbour = `http://${s.address}:8080/`;
    for (let i = 0; i < 50; i++) if (await get(neighbour).then(() => true, () => false)) break; else await sleep(100);
  }, 120_000);
  afterAll(async () => f?.close(), 120_000);

  it('a CPU hog with more threads than cores gets no more than its quota, and the neighbour answers', async () => {
    await deploy('IMVU-001', 1, 'for i in 1 2 3 4; do (while :; do :; done) & done; wait');
    await sleep(1000);
    const u0 = BigInt(await cg(f, 'IMVU-001', 'cpuacct', 'cpuacct.usage'));
    const t0 = process.hrtime.bigint();
    const latencies: number[] = [];
    while (process.hrtime.bigint() - t0 < 4_000_000_000n) {
      latencies.push(await get(neighbour));
      await sleep(200);
    }
    const u1 = BigInt(await cg(f, 'IMVU-001', 'cpuacct', 'cpuacct.usage'));
    const wall = Number(process.hrtime.bigint() - t0);
    const cores = Number(u1 - u0) / wall;
    latencies.sort((a, b) => a - b);
    console.log(`cpu hog (4 threads, quota ${env.cpu_cores} core): ${cores.toFixed(3)} cores used; neighbour latency p50 ${latencies[latencies.length >> 1]!.toFixed(1)} ms, max ${latencies[latencies.length - 1]!.toFixed(1)} ms over ${latencies.length} requests`);
    expect(cores).toBeLessThanOrEqual(env.cpu_cores * 1.1);
    expect(latencies.length).toBeGreaterThan(0);
    await f.driver.cleanup('IMVU-001');
  }, 60_000);

  it('a memory hog past its limit is OOM-killed, and the kill is reported', async () => {
    const ooms: string[] = [];
    f.driver.onOom((imvu) => ooms.push(imvu));
    // dd reads 1.5 GiB of /dev/zero into one buffer: past the 1 GiB limit, with no swap to spill to.
    await deploy('IMVU-002', 2, 'echo start; dd if=/dev/zero of=/dev/null bs=1536M count=1; echo survived $?; sleep 1000');
    for (let i = 0; i < 900 && !ooms.includes('IMVU-002'); i++) await sleep(100);
    expect(ooms).toContain('IMVU-002');
    const control = await cg(f, 'IMVU-002', 'memory', 'memory.oom_control');
    expect(Number(/oom_kill (\d+)/.exec(control)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(Number(await cg(f, 'IMVU-002', 'memory', 'memory.max_usage_in_bytes'))).toBeLessThanOrEqual(1024 ** 3);
    await f.driver.cleanup('IMVU-002');
  }, 150_000);

  it('a fork bomb stops at the pids limit', async () => {
    await deploy('IMVU-003', 3, 'i=0; while [ $i -lt 2000 ]; do sleep 1000 & i=$((i+1)); done; echo forked; sleep 1000');
    const max = PIDS_PER_CORE * env.cpu_cores;
    let events = '';
    for (let i = 0; i < 600; i++) {
      events = await cg(f, 'IMVU-003', 'pids', 'pids.events').catch(() => '');
      if (Number(/max (\d+)/.exec(events)?.[1] ?? 0) > 0) break;
      await sleep(100);
    }
    expect(Number(await cg(f, 'IMVU-003', 'pids', 'pids.max'))).toBe(max);
    expect(Number(/max (\d+)/.exec(events)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(Number(await cg(f, 'IMVU-003', 'pids', 'pids.current'))).toBeLessThanOrEqual(max);
    expect(await f.driver.logs('IMVU-003')).toMatch(/can't fork|Resource temporarily unavailable/);
    await f.driver.cleanup('IMVU-003');
  }, 120_000);

  it('an IO hog stays under its IOPS limit', async () => {
    // Direct 4 KiB writes: each is one operation at the device, none absorbed by the page cache.
    await deploy('IMVU-004', 4, 'while :; do dd if=/dev/zero of=/data/hog bs=4k count=100000 oflag=direct 2>/dev/null; done');
    await sleep(1500);
    const ops = async () => {
      const text = await cg(f, 'IMVU-004', 'blkio', 'blkio.throttle.io_serviced');
      const line = text.split('\n').find((l) => l.startsWith(`${dev.major}:${dev.minor} Write `));
      return Number(line?.split(' ')[2] ?? 0);
    };
    const o0 = await ops();
    const t0 = performance.now();
    await sleep(5000);
    const rate = ((await ops()) - o0) / ((performance.now() - t0) / 1000);
    console.log(`io hog (limit ${env.iops} IOPS): ${rate.toFixed(1)} write IOPS at the device`);
    expect(rate).toBeGreaterThan(0);
    expect(rate).toBeLessThanOrEqual(env.iops * 1.1);
    await f.driver.cleanup('IMVU-004');
  }, 60_000);
});
