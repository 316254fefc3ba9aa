import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceOf, envelopeResources, PIDS_PER_CORE, type Envelope } from '../../src/compute/envelopes/resources.ts';
import { CGROUP_ROOT } from '../../src/compute/fabric/runc.ts';
import { requireRunc, scratchFabric, type Fabric } from './fabric-helpers.ts';

// Gate 7 under real load: the kernel holds each workload to its envelope (cgroup v1 accounting
// is the witness), and a neighbour keeps answering throughout every hog: each of its requests
// over its veth is answered, and its p99 stays within NEIGHBOUR_BOUND of its own baseline. Not a
// timing test: the bound only tells "answered as usual, if slower" from "starved".
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A neighbour's p99 during a hog may be this many times its p99 before any hog, or up to NEIGHBOUR_CEILING_MS. */
const NEIGHBOUR_FACTOR = 10;
const NEIGHBOUR_CEILING_MS = 2000;
const env: Envelope = { cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 50, burst_multiplier: 2, burst_minutes: 5 };

async function cg(f: Fabric, imvu: string, ctrl: string, file: string): Promise<string> {
  return (await readFile(`${CGROUP_ROOT}/${ctrl}${f.driver.cgroupPath(imvu)}/${file}`, 'utf8')).trim();
}

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * 0.99))]!;

const samplers = new Set<{ stop(): Promise<unknown> }>();

/** Requests to the neighbour one after another (every 200 ms) until stopped: latencies and failures (a 10 s timeout is one). */
function sampleNeighbour(url: string) {
  const latencies: number[] = [];
  const failures: string[] = [];
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      await get(url).then(
        (ms) => latencies.push(ms),
        (err: Error) => failures.push(err.message),
      );
      await sleep(200);
    }
  })();
  const sampler = {
    async stop() {
      stop = true;
      samplers.delete(sampler);
      await loop;
      return { latencies, failures };
    },
  };
  samplers.add(sampler);
  return sampler;
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
  let baselineP99 = 0;
  /** Stops sampling and checks the neighbour was never starved during the hog `what`. */
  const neighbourAnswered = async (what: string, sampler: ReturnType<typeof sampleNeighbour>) => {
    const { latencies, failures } = await sampler.stop();
    const bound = Math.max(NEIGHBOUR_FACTOR * baselineP99, NEIGHBOUR_CEILING_MS);
    console.log(`${what}: neighbour answered ${latencies.length} requests, ${failures.length} failed; p99 ${latencies.length ? p99(latencies).toFixed(1) : '-'} ms (baseline p99 ${baselineP99.toFixed(1)} ms, bound ${bound.toFixed(0)} ms)`);
    expect(failures).toEqual([]);
    expect(latencies.length).toBeGreaterThanOrEqual(3);
    expect(p99(latencies)).toBeLessThanOrEqual(bound);
  };
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
    // Its baseline: 20 requests before any hog runs.
    const base: number[] = [];
    for (let i = 0; i < 20; i++) {
      base.push(await get(neighbour));
      await sleep(100);
    }
    baselineP99 = p99(base);
  }, 120_000);
  afterAll(async () => {
    // A test that failed before its check leaves its sampler running.
    for (const sm of [...samplers]) await sm.stop();
    await f?.close();
  }, 120_000);

  it('a CPU hog with more threads than cores gets no more than its quota; the neighbour answers throughout', async () => {
    await deploy('IMVU-001', 1, 'for i in 1 2 3 4; do (while :; do :; done) & done; wait');
    const sampler = sampleNeighbour(neighbour);
    await sleep(1000);
    const u0 = BigInt(await cg(f, 'IMVU-001', 'cpuacct', 'cpuacct.usage'));
    const t0 = process.hrtime.bigint();
    await sleep(4000);
    const u1 = BigInt(await cg(f, 'IMVU-001', 'cpuacct', 'cpuacct.usage'));
    const wall = Number(process.hrtime.bigint() - t0);
    const cores = Number(u1 - u0) / wall;
    console.log(`cpu hog (4 threads, quota ${env.cpu_cores} core): ${cores.toFixed(3)} cores used`);
    expect(cores).toBeLessThanOrEqual(env.cpu_cores * 1.1);
    await neighbourAnswered('cpu hog', sampler);
    await f.driver.cleanup('IMVU-001');
  }, 60_000);

  it('a memory hog past its limit is OOM-killed, and the kill is reported; the neighbour answers throughout', async () => {
    const ooms: string[] = [];
    f.driver.onOom((imvu) => ooms.push(imvu));
    // dd reads 1.5 GiB of /dev/zero into one buffer: past the 1 GiB limit, with no swap to spill to.
    const sampler = sampleNeighbour(neighbour);
    await deploy('IMVU-002', 2, 'echo start; dd if=/dev/zero of=/dev/null bs=1536M count=1; echo survived $?; sleep 1000');
    for (let i = 0; i < 900 && !ooms.includes('IMVU-002'); i++) await sleep(100);
    await neighbourAnswered('memory hog, until its OOM kill', sampler);
    expect(ooms).toContain('IMVU-002');
    const control = await cg(f, 'IMVU-002', 'memory', 'memory.oom_control');
    expect(Number(/oom_kill (\d+)/.exec(control)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(Number(await cg(f, 'IMVU-002', 'memory', 'memory.max_usage_in_bytes'))).toBeLessThanOrEqual(1024 ** 3);
    await f.driver.cleanup('IMVU-002');
  }, 150_000);

  it('a fork bomb stops at the pids limit; the neighbour answers throughout', async () => {
    const sampler = sampleNeighbour(neighbour);
    await deploy('IMVU-003', 3, 'i=0; while [ $i -lt 2000 ]; do sleep 1000 & i=$((i+1)); done; echo forked; sleep 1000');
    const max = PIDS_PER_CORE * env.cpu_cores;
    let events = '';
    for (let i = 0; i < 600; i++) {
      events = await cg(f, 'IMVU-003', 'pids', 'pids.events').catch(() => '');
      if (Number(/max (\d+)/.exec(events)?.[1] ?? 0) > 0) break;
      await sleep(100);
    }
    // A little longer while the bomb keeps trying at its limit.
    await sleep(2000);
    await neighbourAnswered('fork bomb', sampler);
    expect(Number(await cg(f, 'IMVU-003', 'pids', 'pids.max'))).toBe(max);
    expect(Number(/max (\d+)/.exec(events)?.[1] ?? 0)).toBeGreaterThan(0);
    expect(Number(await cg(f, 'IMVU-003', 'pids', 'pids.current'))).toBeLessThanOrEqual(max);
    expect(await f.driver.logs('IMVU-003')).toMatch(/can't fork|Resource temporarily unavailable/);
    await f.driver.cleanup('IMVU-003');
  }, 120_000);

  it('an IO hog stays under its IOPS limit; the neighbour answers throughout', async () => {
    // Direct 4 KiB writes: each is one operation at the device, none absorbed by the page cache.
    const sampler = sampleNeighbour(neighbour);
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
    await neighbourAnswered('io hog', sampler);
    expect(rate).toBeGreaterThan(0);
    expect(rate).toBeLessThanOrEqual(env.iops * 1.1);
    await f.driver.cleanup('IMVU-004');
  }, 60_000);
});
