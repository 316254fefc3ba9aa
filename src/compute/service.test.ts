import { writeFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../core/testing.ts';
import { verifyStore } from '../core/policy/verify.ts';
import { decodeEntry } from '../core/ledger/ledger.ts';
import { RuncDriver, CGROUP_ROOT } from './fabric/runc.ts';
import { removeFilter } from './fabric/network.ts';
import { ComputeService } from './service.ts';
import { requireRunc } from '../../test/compute/fabric-helpers.ts';

// The compute commands through the chokepoint, applied to real runc workloads: who may drive a
// workload, envelope changes live and read back from the kernel, the burst policy, and a kernel
// value changed behind the platform's back raising an integrity alarm. Then audit verify replays it all.
describe('compute service', () => {
  let p: TestPlatform;
  let driver: RuncDriver;
  let svc: ComputeService;
  let alice: Actor;
  let bob: Actor;
  let mallory: Actor;
  const blueprint = { image: 'busybox', command: ['sh', '-c', 'echo up; exec sleep 100000'] };
  const entries = async () => (await p.store.readEntries(0, p.chokepoint.ledger.size)).map((e) => decodeEntry(e));

  beforeAll(async () => {
    requireRunc();
    p = await testPlatform();
    driver = new RuncDriver({ dataDir: p.dataDir, range: `10.${100 + randomInt(28)}.${randomInt(256)}.0/24`, uidBase: 1_000_000 + randomInt(20_000) * 65_536, stopGraceMs: 1000 });
    svc = new ComputeService(p, driver, { burstCheckMs: 0 });
    await svc.start();
    alice = await p.register('alice', 'creator');
    bob = await p.register('bob', 'member');
    mallory = await p.register('mallory', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } })).allowed).toBe(true);
    expect((await p.as(alice, 'member.add', { imvu: 'IMVU-001', identity: bob.id })).allowed).toBe(true);
  }, 60_000);
  afterAll(async () => {
    await svc?.close();
    await driver?.cleanup('IMVU-001').catch(() => undefined);
    await removeFilter(driver.tag).catch(() => undefined);
    await p?.cleanup();
  }, 60_000);

  it('the creator deploys and starts; a stranger is refused by gate 2; the workload runs under runc', async () => {
    expect(deniedBy(await p.as(mallory, 'compute.deploy', { imvu: 'IMVU-001', blueprint }))).toEqual([2]);
    expect((await p.as(alice, 'compute.deploy', { imvu: 'IMVU-001', blueprint })).allowed).toBe(true);
    expect(deniedBy(await p.as(alice, 'compute.deploy', { imvu: 'IMVU-001', blueprint: { command: ['sh'] } }))).toEqual([0]);
    expect(deniedBy(await p.as(mallory, 'compute.start', { imvu: 'IMVU-001' }))).toEqual([2]);
    expect((await p.as(bob, 'compute.start', { imvu: 'IMVU-001' })).allowed).toBe(true);
    await svc.schedule();
    expect((await svc.status('IMVU-001')).state).toBe('running');
  }, 60_000);

  it('exec is the creator\'s alone, and recorded', async () => {
    expect(deniedBy(await p.as(bob, 'compute.exec', { imvu: 'IMVU-001', command: ['id'] }))).toEqual([2]);
    const r = await p.as(alice, 'compute.exec', { imvu: 'IMVU-001', command: ['id'] });
    expect(r.allowed).toBe(true);
    expect((await svc.exec('IMVU-001', ['id'])).stdout).toContain('uid=0(root)');
    expect((await entries()).some((e) => e.index === r.index && e.command.command.type === 'compute.exec')).toBe(true);
  }, 30_000);

  it('an allowed scale is applied live and the kernel agrees with the ledger', async () => {
    expect((await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 2 })).allowed).toBe(true);
    await svc.schedule();
    const view = (await svc.kernelView('IMVU-001'))!;
    expect(view.kernel.cpu_quota_us).toBe(200_000);
    expect(view.differences).toEqual([]);
  }, 30_000);

  it('the burst policy: only the compute service raises, by the envelope multiplier, once; then lowers', async () => {
    expect(deniedBy(await p.as(alice, 'compute.burst', { imvu: 'IMVU-001', phase: 'raise', multiplier: 2 }))).toEqual([7]);
    const raised = await svc.burst('IMVU-001');
    expect(raised?.allowed).toBe(true);
    expect((await svc.kernelView('IMVU-001'))!.kernel.cpu_quota_us).toBe(400_000);
    expect((await svc.burst('IMVU-001'))?.allowed).toBe(false);
    const row = await p.store.get<{ burst_until: string }>('SELECT burst_until FROM workloads WHERE imvu = ?', ['IMVU-001']);
    const at = (await entries()).find((e) => e.index === raised!.index)!.at;
    expect(Date.parse(row!.burst_until) - Date.parse(at)).toBe(5 * 60_000);
  }, 30_000);

  it('a kernel limit changed behind the platform raises an integrity alarm', async () => {
    writeFileSync(`${CGROUP_ROOT}/cpu${driver.cgroupPath('IMVU-001')}/cpu.cfs_quota_us`, '900000');
    const view = (await svc.verifyKernel('IMVU-001'))!;
    expect(view.differences).toEqual([{ field: 'cpu_quota_us', ledger: 400_000, kernel: 900_000 }]);
    const alarm = (await entries()).reverse().find((e) => e.command.command.type === 'integrity.alarm');
    expect(alarm?.decision.allowed).toBe(true);
    expect(String(alarm?.command.command.body.detail)).toContain('cpu_quota_us kernel 900000 ledger 400000');
  }, 30_000);

  it('stop stops it; audit verify replays every compute entry through the same gates', async () => {
    expect((await p.as(alice, 'compute.stop', { imvu: 'IMVU-001' })).allowed).toBe(true);
    await svc.schedule();
    expect((await svc.status('IMVU-001')).state).toBe('stopped');
    expect((await verifyStore(p.store)).problems).toEqual([]);
  }, 60_000);
});
