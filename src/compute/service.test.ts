import { readFileSync, writeFileSync } from 'node:fs';
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
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const entries = async () => (await p.store.readEntries(0, p.chokepoint.ledger.size)).map((e) => decodeEntry(e));

  beforeAll(async () => {
    requireRunc();
    p = await testPlatform();
    driver = new RuncDriver({ dataDir: p.dataDir, range: `10.${100 + randomInt(28)}.${randomInt(256)}.0/24`, uidBase: 1_000_000 + randomInt(20_000) * 65_536, stopGraceMs: 1000 });
    // Bursts end after 20 s here (the envelope says 5 minutes); kernel values are read back every 2 s.
    svc = new ComputeService(p, driver, { burstCheckMs: 0, burstMs: 20_000, verifyEveryMs: 2000, healthTickMs: 300 });
    await svc.start();
    alice = await p.register('alice', 'creator');
    bob = await p.register('bob', 'member');
    mallory = await p.register('mallory', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } })).allowed).toBe(true);
    expect((await p.as(alice, 'member.add', { imvu: 'IMVU-001', identity: bob.id })).allowed).toBe(true);
  }, 60_000);
  afterAll(async () => {
    await svc?.close();
    for (const imvu of await driver.deployed()) await driver.cleanup(imvu).catch(() => undefined);
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

  it('the burst policy: only the compute service raises, by the envelope multiplier, once; its timer lowers it; each change an entry and a kernel value', async () => {
    const quotaFile = `${CGROUP_ROOT}/cpu${driver.cgroupPath('IMVU-001')}/cpu.cfs_quota_us`;
    const kernelQuota = () => Number(readFileSync(quotaFile, 'utf8').trim());
    expect(kernelQuota()).toBe(200_000);
    expect(deniedBy(await p.as(alice, 'compute.burst', { imvu: 'IMVU-001', phase: 'raise', multiplier: 2 }))).toEqual([7]);
    const raised = await svc.burst('IMVU-001');
    expect(raised?.allowed).toBe(true);
    expect(kernelQuota()).toBe(400_000);
    expect((await svc.burst('IMVU-001'))?.allowed).toBe(false);
    const row = await p.store.get<{ burst_until: string }>('SELECT burst_until FROM workloads WHERE imvu = ?', ['IMVU-001']);
    const at = (await entries()).find((e) => e.index === raised!.index)!.at;
    expect(Date.parse(row!.burst_until) - Date.parse(at)).toBe(5 * 60_000);
    // The timer lowers it: a signed compute.burst lower by the compute service, then runc update.
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && kernelQuota() !== 200_000) await sleep(200);
    expect(kernelQuota()).toBe(200_000);
    const lowered = (await entries()).find((e) => e.index > raised!.index && e.command.command.type === 'compute.burst' && e.command.command.body.phase === 'lower');
    expect(lowered?.decision.allowed).toBe(true);
    expect(lowered?.command.command.actor).toBe((await entries()).find((e) => e.index === raised!.index)!.command.command.actor);
    expect(Date.parse(lowered!.at) - Date.parse(at)).toBeGreaterThanOrEqual(20_000);
    expect((await p.store.get<{ burst_until: string }>('SELECT burst_until FROM workloads WHERE imvu = ?', ['IMVU-001']))!.burst_until).toBe('');
    // The periodic read-back never mistook a ledger change still being applied for a kernel out of step.
    expect((await entries()).filter((e) => e.command.command.type === 'integrity.alarm')).toEqual([]);
    expect((await svc.kernelView('IMVU-001'))!.differences).toEqual([]);
  }, 180_000);

  it('a kernel limit changed behind the platform: the periodic read-back raises an integrity alarm and applies the ledger again', async () => {
    const quotaFile = `${CGROUP_ROOT}/cpu${driver.cgroupPath('IMVU-001')}/cpu.cfs_quota_us`;
    const before = p.chokepoint.ledger.size;
    writeFileSync(quotaFile, '900000');
    let alarm: ReturnType<typeof decodeEntry> | undefined;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !alarm) {
      await sleep(200);
      alarm = (await entries()).find((e) => e.index >= before && e.command.command.type === 'integrity.alarm');
    }
    expect(alarm?.decision.allowed).toBe(true);
    expect(String(alarm?.command.command.body.detail)).toContain('cpu_quota_us kernel 900000 ledger 200000');
    while (Date.now() < deadline && readFileSync(quotaFile, 'utf8').trim() !== '200000') await sleep(200);
    expect(readFileSync(quotaFile, 'utf8').trim()).toBe('200000');
    expect((await svc.kernelView('IMVU-001'))!.differences).toEqual([]);
  }, 90_000);

  it('a memory hog is OOM-killed and the creator is notified', async () => {
    expect((await p.as(alice, 'imvu.create', { name: 'Hog', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } })).allowed).toBe(true);
    const hog = { image: 'busybox', command: ['sh', '-c', 'dd if=/dev/zero of=/dev/null bs=1536M count=1; exec sleep 100000'] };
    expect((await p.as(alice, 'compute.deploy', { imvu: 'IMVU-002', blueprint: hog })).allowed).toBe(true);
    expect((await p.as(alice, 'compute.start', { imvu: 'IMVU-002' })).allowed).toBe(true);
    let notice: ReturnType<typeof decodeEntry> | undefined;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && !notice) {
      await sleep(300);
      notice = (await entries()).find((e) => e.command.command.type === 'notify.creator' && e.command.command.body.imvu === 'IMVU-002' && /OOM/.test(String(e.command.command.body.message)));
    }
    expect(notice?.decision.allowed).toBe(true);
    expect(notice?.command.command.body.recipient).toBe(alice.id);
    expect(Number(/oom_kill (\d+)/.exec(readFileSync(`${CGROUP_ROOT}/memory${driver.cgroupPath('IMVU-002')}/memory.oom_control`, 'utf8'))?.[1])).toBeGreaterThan(0);
    expect((await p.as(alice, 'compute.stop', { imvu: 'IMVU-002' })).allowed).toBe(true);
    await svc.schedule();
  }, 150_000);

  it('a failing health check restarts the workload by its policy; status shows the health', async () => {
    expect((await p.as(alice, 'imvu.create', { name: 'Web', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } })).allowed).toBe(true);
    const web = {
      image: 'busybox',
      command: ['sh', '-c', 'mkdir -p /data/www; echo ok > /data/www/healthz; echo start >> /data/starts; exec httpd -f -p 8080 -h /data/www'],
      port: 8080,
      health: { http_path: '/healthz', interval_ms: 300, timeout_ms: 2000, retries: 2 },
    };
    expect((await p.as(alice, 'compute.deploy', { imvu: 'IMVU-003', blueprint: web })).allowed).toBe(true);
    expect((await p.as(alice, 'compute.start', { imvu: 'IMVU-003' })).allowed).toBe(true);
    await svc.schedule();
    const waitFor = async (what: string, ok: (s: Awaited<ReturnType<typeof svc.status>>) => boolean) => {
      const deadline = Date.now() + 120_000;
      let s = await svc.status('IMVU-003');
      while (Date.now() < deadline && !ok(s)) {
        await sleep(200);
        s = await svc.status('IMVU-003');
      }
      if (!ok(s)) throw new Error(`${what}: ${JSON.stringify(s)}`);
      return s;
    };
    const first = await waitFor('passing', (s) => s.health?.state === 'passing');
    expect(first.health?.restarts).toBe(0);
    // The health endpoint goes away: after two failures in a row the workload is restarted, and its start script brings it back.
    expect((await driver.exec('IMVU-003', ['rm', '/data/www/healthz'])).code).toBe(0);
    const after = await waitFor('restarted and passing', (s) => (s.health?.restarts ?? 0) >= 1 && s.health?.state === 'passing');
    expect(after.pid).not.toBe(first.pid);
    expect(readFileSync(`${driver.dataPath('IMVU-003')}/starts`, 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(2);
    const notice = (await entries()).find((e) => e.command.command.type === 'notify.creator' && e.command.command.body.imvu === 'IMVU-003');
    expect(String(notice?.command.command.body.message)).toMatch(/health check failed 2 times in a row \(HTTP 404/);
  }, 300_000);

  it('restart policy: a workload that exits is started again (always) or left stopped (never)', async () => {
    expect((await p.as(alice, 'imvu.create', { name: 'Batch', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } })).allowed).toBe(true);
    const runs = () => readFileSync(`${driver.dataPath('IMVU-004')}/runs`, 'utf8').trim().split('\n').length;
    const batch = (restart: 'always' | 'never') => ({ image: 'busybox', command: ['sh', '-c', 'echo run >> /data/runs; sleep 1; exit 3'], restart });
    expect((await p.as(alice, 'compute.deploy', { imvu: 'IMVU-004', blueprint: batch('always') })).allowed).toBe(true);
    expect((await p.as(alice, 'compute.start', { imvu: 'IMVU-004' })).allowed).toBe(true);
    await svc.schedule();
    let deadline = Date.now() + 120_000;
    while (Date.now() < deadline && ((await svc.status('IMVU-004')).health?.restarts ?? 0) < 1) await sleep(200);
    expect((await svc.status('IMVU-004')).health?.restarts).toBeGreaterThanOrEqual(1);
    expect(runs()).toBeGreaterThanOrEqual(2);
    expect((await p.as(alice, 'compute.deploy', { imvu: 'IMVU-004', blueprint: batch('never') })).allowed).toBe(true);
    await svc.schedule();
    deadline = Date.now() + 120_000;
    while (Date.now() < deadline && (await svc.status('IMVU-004')).state === 'running') await sleep(200);
    const n = runs();
    await sleep(3000);
    expect((await svc.status('IMVU-004')).state).toBe('stopped');
    expect(runs()).toBe(n);
    expect((await p.as(alice, 'compute.stop', { imvu: 'IMVU-004' })).allowed).toBe(true);
    await svc.schedule();
  }, 300_000);

  it('stop stops it; audit verify replays every compute entry through the same gates', async () => {
    expect((await p.as(alice, 'compute.stop', { imvu: 'IMVU-001' })).allowed).toBe(true);
    await svc.schedule();
    expect((await svc.status('IMVU-001')).state).toBe('stopped');
    expect((await verifyStore(p.store)).problems).toEqual([]);
  }, 60_000);
});
