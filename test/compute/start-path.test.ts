import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceOf, envelopeResources } from '../../src/compute/envelopes/resources.ts';
import { spawnCounts } from '../../src/compute/fabric/commands.ts';
import { ensureFilter, removeFilter } from '../../src/compute/fabric/network.ts';
import { RuncDriver } from '../../src/compute/fabric/runc.ts';
import { ComputeService } from '../../src/compute/service.ts';
import { testPlatform, type TestPlatform } from '../../src/core/testing.ts';
import { requireRunc, scratchFabric, type Fabric } from './fabric-helpers.ts';
import { testComputeRange } from '../support/compute-range.ts';

// What starting a workload costs the host: the processes spawned on the start path (each one tens
// of milliseconds on a busy machine), and what stays behind per container (nothing but the
// workload itself: OOM kills are read from the memory cgroups on one timer).
const env = { cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 100, burst_multiplier: 2, burst_minutes: 5 };
const snapshot = () => new Map(spawnCounts);
const delta = (before: Map<string, number>) => Object.fromEntries([...spawnCounts].map(([k, v]) => [k, v - (before.get(k) ?? 0)]).filter(([, v]) => (v as number) > 0));
const rules = (tag: string) => execFileSync('iptables-save', ['-t', 'filter'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`NEXUS-${tag}`));

describe('the start path', () => {
  let f: Fabric;
  beforeAll(() => {
    requireRunc();
    f = scratchFabric();
  });
  afterAll(async () => f?.close(), 120_000);

  it('runc start of a deployed workload: runc state, create, start, and three ip processes; no process per container stays', async () => {
    const dev = deviceOf(statSync(f.dataDir).dev);
    for (const [imvu, seq] of [['IMVU-001', 1], ['IMVU-002', 2]] as const) {
      await f.driver.deploy({ imvu, seq, blueprint: { image: 'busybox', command: ['sleep', '100000'] }, resources: envelopeResources(env, dev) });
      const before = snapshot();
      const st = await f.driver.start(imvu);
      expect(delta(before)).toEqual({ runc: 3, ip: 3 });
      expect(st.state).toBe('running');
      expect(st.pid).toBeGreaterThan(0);
      // The status start answers is the kernel's: its pid is the container's init, its address answers in its namespace.
      expect((await f.driver.status(imvu)).pid).toBe(st.pid);
      expect(execFileSync('ip', ['-n', `nx${f.driver.tag}-${seq}`, '-o', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' })).toContain(`${st.address}/30`);
    }
    // The host runs nothing per container that names it (the workloads' own processes do not).
    const named = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`nexus-${f.driver.tag}-`));
    expect(named).toEqual([]);
  }, 120_000);

  it('status of a running workload spawns nothing while its init lives; once it dies, runc says stopped', async () => {
    const before = snapshot();
    const st = await f.driver.status('IMVU-002');
    for (let i = 0; i < 5; i++) expect((await f.driver.status('IMVU-002')).state).toBe('running');
    expect(delta(before)).toEqual({});
    process.kill(st.pid!, 'SIGKILL');
    let now = await f.driver.status('IMVU-002');
    for (let i = 0; i < 100 && now.state === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = await f.driver.status('IMVU-002');
    }
    expect(now.state).toBe('stopped');
    expect(delta(before).runc).toBeGreaterThanOrEqual(1);
    await f.driver.cleanup('IMVU-002');
  }, 60_000);

  it('the packet filter: made in one iptables-restore, idempotent, and removed whole', async () => {
    const tag = f.driver.tag;
    const before = snapshot();
    await ensureFilter(tag, [4443]);
    expect(delta(before)).toEqual({ 'iptables-save': 1, 'iptables-restore': 1 });
    await ensureFilter(tag, [4443]);
    const r = rules(tag);
    expect(r.filter((l) => l.startsWith('-A INPUT ') || l.startsWith('-A FORWARD '))).toHaveLength(3);
    expect(r.filter((l) => l.startsWith(`-A NEXUS-${tag} `))).toEqual([
      `-A NEXUS-${tag} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      `-A NEXUS-${tag} -p tcp -m tcp --dport 4443 -j ACCEPT`,
      `-A NEXUS-${tag} -j DROP`,
    ]);
    await removeFilter(tag);
    expect(rules(tag)).toEqual([]);
    await ensureFilter(tag);
    expect(rules(tag).filter((l) => l.includes('--dport'))).toEqual([]);
  }, 60_000);
});

describe('the compute service starting a workload', () => {
  let p: TestPlatform;
  let svc: ComputeService;
  let driver: RuncDriver;
  beforeAll(async () => {
    requireRunc();
    p = await testPlatform();
    driver = new RuncDriver({ dataDir: p.dataDir, range: testComputeRange(), uidBase: 1_000_000 + randomInt(20_000) * 65_536, stopGraceMs: 1000 });
    svc = new ComputeService(p, driver, { burstCheckMs: 0, verifyEveryMs: 0, healthTickMs: 0 });
    await svc.start();
  }, 60_000);
  afterAll(async () => {
    await svc?.close();
    for (const imvu of (await driver?.deployed()) ?? []) await driver.cleanup(imvu).catch(() => undefined);
    if (driver) await removeFilter(driver.tag).catch(() => undefined);
    await p?.cleanup();
  }, 60_000);

  it('a signed compute.start costs one runc state before the start itself, and no runc update', async () => {
    const alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Web', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } })).allowed).toBe(true);
    expect((await p.as(alice, 'compute.deploy', { imvu: 'IMVU-001', blueprint: { image: 'busybox', command: ['sleep', '100000'] } })).allowed).toBe(true);
    await svc.schedule();
    const before = snapshot();
    expect((await p.as(alice, 'compute.start', { imvu: 'IMVU-001' })).allowed).toBe(true);
    await svc.schedule();
    expect(delta(before)).toEqual({ runc: 4, ip: 3 });
    expect((await svc.status('IMVU-001')).state).toBe('running');
    // The kernel holds the envelope without a `runc update` after the start (the bundle had it).
    expect((await svc.kernelView('IMVU-001'))!.differences).toEqual([]);
  }, 120_000);
});
