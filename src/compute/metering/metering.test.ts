import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rmdir } from 'node:fs/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import { locate, parseBlkioV1, parseCpuStatV2, parseIoStatV2, readCgroup, startComputeMeter, UsageTracker, type CgroupSample } from './index.ts';

const sample = (cpuNs: bigint, memoryBytes = 0n, ioOps = 0n, ioBytes = 0n, instance = 'a'): CgroupSample => ({ cpuNs, memoryBytes, ioOps, ioBytes, instance });

describe('cgroup counter parsers', () => {
  it('reads v1 blkio and v2 io.stat and cpu.stat as the kernel writes them', () => {
    expect(parseBlkioV1('8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\n8:16 Total 100\nTotal 12388\n')).toBe(12388n);
    expect(parseBlkioV1('Total 0\n')).toBe(0n);
    expect(parseIoStatV2('8:0 rbytes=4096 wbytes=1024 rios=3 wios=1 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=1 rios=1 wios=1 dbytes=0 dios=0\n')).toEqual({ bytes: 5122n, ops: 6n });
    expect(parseCpuStatV2('usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n')).toBe(1_500_000_000n);
  });

  it('any text gives a count or a clear error, never a crash (property)', () => {
    const line = fc.oneof(fc.string(), fc.constantFrom('8:0 Total 5', 'Total 7', 'usage_usec 9', '8:0 rbytes=1 wios=x', 'Total -1', '8:0 Total 99999999999999999999999'));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
        const text = lines.join('\n');
        for (const parse of [parseBlkioV1, (t: string) => parseIoStatV2(t).bytes, parseCpuStatV2]) {
          try {
            expect(parse(text) >= 0n).toBe(true);
          } catch (err) {
            expect(err).toBeInstanceOf(Error);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('usage from cumulative counters', () => {
  it('the first sight is a baseline; deltas after it; a counter reset or a new cgroup counts from zero, never negative or twice', () => {
    const t = new UsageTracker();
    expect(t.observe('IMVU-001', sample(50n * 10n ** 9n, 0n, 10n, 4096n), 0)).toEqual({});
    expect(t.observe('IMVU-001', sample(52n * 10n ** 9n + 600_000_000n, 0n, 15n, 8192n), 1000)).toMatchObject({
      'compute.cpu_seconds': 2n,
      'compute.io_operations': 5n,
      'compute.io_bytes': 4096n,
    });
    // The 0.6 s left over is carried, not lost: 0.6 + 0.5 = one more second.
    expect(t.observe('IMVU-001', sample(53n * 10n ** 9n + 100_000_000n, 0n, 15n, 8192n), 2000)['compute.cpu_seconds']).toBe(1n);
    // The container restarted: the same cgroup counts from zero again.
    const reset = t.observe('IMVU-001', sample(3n * 10n ** 9n, 0n, 2n, 0n), 3000);
    expect(reset['compute.cpu_seconds']).toBe(3n);
    expect(reset['compute.io_operations']).toBe(2n);
    // A new cgroup (another inode) whose counters already passed the old values: still from zero.
    expect(t.observe('IMVU-001', sample(60n * 10n ** 9n, 0n, 20n, 0n, 'b'), 4000)['compute.cpu_seconds']).toBe(60n);
  });

  it('integrates memory over time: 512 MiB for an hour is 512 MB-hours', () => {
    const t = new UsageTracker();
    const half = 512n * 1024n * 1024n;
    t.observe('IMVU-001', sample(0n, half), 0);
    let total = 0n;
    for (let i = 1; i <= 60; i++) total += t.observe('IMVU-001', sample(0n, half), i * 60_000)['compute.memory_mb_hours'] ?? 0n;
    expect(total).toBe(512n);
  });
});

// A real cgroup (v1 on this machine), a real process in it burning CPU, the kernel's accounting
// read by the meter and recorded in the ledger by the compute service identity.
const V1 = '/sys/fs/cgroup';
const canCgroup = process.getuid?.() === 0 && existsSync(`${V1}/cpuacct/cgroup.procs`);

describe.skipIf(!canCgroup)('compute meter on a real cgroup (gate 6, threat 1.5)', () => {
  let p: TestPlatform;
  let alice: Actor;
  let imvu: string;
  const name = `nexus-test-${process.pid}`;
  const dirs = ['cpuacct', 'memory', 'blkio'].map((c) => `${V1}/${c}/${name}`);

  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'burner', owner: alice.id, jurisdiction: 'EU-GDPR' })).allowed).toBe(true);
    imvu = (await p.store.get<{ id: string }>("SELECT id FROM imvus WHERE name = 'burner'"))!.id;
    for (const d of dirs) await mkdir(d, { recursive: true });
  });
  afterAll(async () => {
    for (const d of dirs) await rmdir(d).catch(() => undefined);
    await p.cleanup();
  });

  it('meters a process that burns a known amount of CPU within 10%, reported by the compute service', async () => {
    const m = await startComputeMeter({ platform: p, cgroupPathOf: (id) => (id === imvu ? `${V1}/cpuacct/${name}` : undefined), intervalMs: 3_600_000, sampleMs: 3_600_000 });
    await m.track(imvu);
    // The child joins the cgroups before it execs, so all of its CPU time is counted there; it
    // reports its own CPU time (getrusage) when it is done.
    const burn = `let x=0;for(;;){for(let i=0;i<1e6;i++)x+=i;if(process.cpuUsage().user>4e6)break}console.log(JSON.stringify(process.cpuUsage()))`;
    const join = dirs.map((d) => `echo $$ > ${d}/cgroup.procs`).join(' && ');
    const child = spawn('sh', ['-c', `${join} && exec ${process.execPath} -e '${burn}'`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const used = JSON.parse(out) as { user: number; system: number };
    const usedSeconds = (used.user + used.system) / 1e6;
    expect(usedSeconds).toBeGreaterThan(4);
    // The kernel's own count, for the record of what the meter read.
    const kernel = Number(BigInt((await readFile(`${dirs[0]}/cpuacct.usage`, 'utf8')).trim())) / 1e9;
    const flushed = await m.flush();
    expect(flushed.denied).toEqual([]);
    expect(flushed.reported).toHaveLength(1);
    const row = await p.store.get<{ quantity: string }>("SELECT quantity FROM usage_totals WHERE imvu = ? AND metric = 'compute.cpu_seconds'", [imvu]);
    const metered = Number(row?.quantity);
    console.log(`cgroup v1: the child counted ${usedSeconds.toFixed(3)} s of CPU, cpuacct.usage ${kernel.toFixed(3)} s, the ledger ${metered} s`);
    expect(Math.abs(metered - usedSeconds) / usedSeconds).toBeLessThan(0.1);
    expect(Math.abs(metered - kernel)).toBeLessThan(1);
    // The report is signed by the compute service identity, which the platform made the meter.
    const reporter = await p.store.get<{ name: string; role: string }>(
      "SELECT i.name AS name, i.role AS role FROM meters m JOIN identities i ON i.id = m.identity WHERE m.metric = 'compute.cpu_seconds'",
    );
    expect(reporter).toEqual({ name: 'compute', role: 'service' });
    await m.close();
  }, 180_000);

  it("an IMVU's own report of its compute usage is recorded as refused and changes nothing", async () => {
    const before = await p.store.all('SELECT metric, quantity FROM usage_totals WHERE imvu = ? ORDER BY metric', [imvu]);
    const now = Date.now();
    const r = await p.as(alice, 'usage.report', {
      imvu,
      service: 'compute',
      period: { start: new Date(now - 60_000).toISOString(), end: new Date(now - 1000).toISOString() },
      metrics: { 'compute.cpu_seconds': '1' },
    });
    expect(r.allowed).toBe(false);
    expect(deniedBy(r)).toContain(6);
    expect(await p.store.all('SELECT metric, quantity FROM usage_totals WHERE imvu = ? ORDER BY metric', [imvu])).toEqual(before);
  });
});

// The v2 hierarchy of this hybrid machine (/sys/fs/cgroup/unified): cpu.stat is kept there too.
const V2 = '/sys/fs/cgroup/unified';
const canV2 = process.getuid?.() === 0 && existsSync(`${V2}/cgroup.procs`);

describe.skipIf(!canV2)('cgroup v2 accounting', () => {
  const dir = `${V2}/nexus-test-${process.pid}`;
  afterAll(async () => {
    await rmdir(dir).catch(() => undefined);
  });

  it('reads a real v2 cgroup: the CPU a child burned there, within 10% of its own count', async () => {
    await mkdir(dir, { recursive: true });
    const loc = locate(dir);
    expect(loc.version).toBe(2);
    const tracker = new UsageTracker();
    tracker.observe('IMVU-001', (await readCgroup(loc))!, Date.now());
    const burn = `let x=0;for(;;){for(let i=0;i<1e6;i++)x+=i;if(process.cpuUsage().user>2e6)break}console.log(JSON.stringify(process.cpuUsage()))`;
    const child = spawn('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec ${process.execPath} -e '${burn}'`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    expect(await new Promise<number | null>((resolve) => child.on('exit', resolve))).toBe(0);
    const used = JSON.parse(out) as { user: number; system: number };
    const s = (await readCgroup(loc))!;
    const kernelSeconds = Number(s.cpuNs) / 1e9;
    const usedSeconds = (used.user + used.system) / 1e6;
    expect(Math.abs(kernelSeconds - usedSeconds) / usedSeconds).toBeLessThan(0.1);
    const units = tracker.observe('IMVU-001', s, Date.now());
    expect(Number(units['compute.cpu_seconds'])).toBe(Math.floor(kernelSeconds));
  }, 120_000);
});

