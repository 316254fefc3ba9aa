import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_PLAN } from './commands.ts';
import { verifyStore } from './verify.ts';
import { deniedBy, testPlatform, type TestPlatform } from '../testing.ts';

// Lifecycle states mean what they say (an exited IMVU takes only its exit; a suspended one keeps
// its data and its creator's exit), and quotas above the published plan need an approval.

let p: TestPlatform | undefined;
afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

describe('an exited IMVU', () => {
  it('accepts no command but its exit: no DNS change, no usage, no suspension, no resumption, no scaling', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const ops = await p.register('ops', 'admin');
    const meter = await p.register('dns', 'service');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect((await p.as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'gallery.example' })).allowed).toBe(true);
    expect((await p.exitNow(alice, 'IMVU-001')).allowed).toBe(true);

    const period = { start: new Date(Date.now() - 60_000).toISOString(), end: new Date().toISOString() };
    const attempts = [
      await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.1' }),
      await p.as(alice, 'dns.record.remove', { zone: 'imvu001.world', name: '@', type: 'MX' }),
      await p.as(meter, 'usage.report', { imvu: 'IMVU-001', service: 'dns', period, metrics: { 'dns.queries': '10' } }),
      await p.as(ops, 'imvu.suspend', { imvu: 'IMVU-001', reason: 'after exit' }),
      await p.as(ops, 'imvu.resume', { imvu: 'IMVU-001' }),
      await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 1 }),
      await p.as(alice, 'mailbox.add', { imvu: 'IMVU-001', address: 'x@imvu001.world' }),
      await p.as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'more.example' }),
    ];
    for (const r of attempts) {
      expect(r.allowed).toBe(false);
      expect(r.gates.find((g) => g.gate === 0 && g.status === 'deny')?.reason).toMatch(/IMVU-001 has exited: it accepts only imvu.purge, notify.creator/);
    }
    expect(await p.store.get("SELECT status FROM imvus WHERE id = 'IMVU-001'")).toEqual({ status: 'exited' });
    // The exit is over: starting it again changes nothing, so it is refused.
    expect(deniedBy(await p.as(alice, 'imvu.exit', { imvu: 'IMVU-001' }))).toContain(0);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('a suspended IMVU keeps its data and its exit; only a suspended one is resumed', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const ops = await p.register('ops', 'admin');
    await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    expect(deniedBy(await p.as(ops, 'imvu.resume', { imvu: 'IMVU-001' }))).toEqual([15]); // active: nothing to resume
    expect((await p.as(ops, 'imvu.suspend', { imvu: 'IMVU-001', reason: 'abuse report' })).allowed).toBe(true);
    expect(await p.store.get("SELECT COUNT(*) AS n FROM records WHERE zone = 'imvu001.world'")).toEqual({ n: 10 });
    expect((await p.exitNow(alice, 'IMVU-001')).allowed).toBe(true);
    expect(deniedBy(await p.as(ops, 'imvu.resume', { imvu: 'IMVU-001' }))).toEqual([0, 15]);
    expect(await p.store.get("SELECT status FROM imvus WHERE id = 'IMVU-001'")).toEqual({ status: 'exited' });
  });
});

describe('plan limits (gate 15)', () => {
  it('are published in the ledger at init, and a platform may set its own', async () => {
    p = await testPlatform();
    expect(await p.store.get("SELECT cpu_cores, memory_gb, storage_gb, iops, imvus_per_creator FROM plan WHERE id = 'plan'")).toEqual({ ...DEFAULT_PLAN });
    await p.cleanup();
    p = await testPlatform({ plan: { cpu_cores: 4, imvus_per_creator: 2 } });
    expect(await p.store.get("SELECT cpu_cores, imvus_per_creator FROM plan WHERE id = 'plan'")).toEqual({ cpu_cores: 4, imvus_per_creator: 2 });
    const ops = await p.register('ops', 'admin');
    expect(deniedBy(await p.as(ops, 'plan.publish', { ...DEFAULT_PLAN, cpu_cores: 1024 }))).toEqual([17]);
  });

  it('a creator cannot give itself 1,024 cores: above the plan needs a quota.approve that covers it', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const ops = await p.register('ops', 'admin');
    // The attack, at creation and by scaling.
    const big = await p.as(alice, 'imvu.create', { name: 'Huge', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1024 } });
    expect(deniedBy(big)).toEqual([15]);
    expect(big.gates.find((g) => g.gate === 15)!.reason).toMatch(/1024 cores \(plan 8\)/);
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect(deniedBy(await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 1024 }))).toEqual([15]);
    expect(deniedBy(await p.as(ops, 'imvu.scale', { imvu: 'IMVU-001', memory_gb: 64 }))).toEqual([15]);
    expect((await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 8 })).allowed).toBe(true); // at the plan
    expect(await p.store.get("SELECT cpu_cores FROM envelopes WHERE imvu = 'IMVU-001'")).toEqual({ cpu_cores: 8 });

    // Only an admin (or the platform) approves; the approval covers exactly what it says.
    expect(deniedBy(await p.as(alice, 'quota.approve', { imvu: 'IMVU-001', envelope: { cpu_cores: 1024 }, reason: 'I say so' }))).toEqual([15]);
    expect(deniedBy(await p.as(ops, 'quota.approve', { imvu: 'IMVU-001', creator: alice.id, envelope: { cpu_cores: 64 }, reason: 'both' }))).toEqual([0]);
    expect((await p.as(ops, 'quota.approve', { imvu: 'IMVU-001', envelope: { cpu_cores: 64 }, reason: 'render farm contract #12' })).allowed).toBe(true);
    expect(deniedBy(await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 65 }))).toEqual([15]);
    expect((await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 64 })).allowed).toBe(true);
    // A decrease never needs an approval.
    expect((await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 2 })).allowed).toBe(true);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('one creator cannot make 57 IMVUs: the plan allows 10, more needs an approval for that creator', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const bob = await p.register('bob', 'creator');
    const ops = await p.register('ops', 'admin');
    // The attack: 57 creations as fast as they go.
    const rs = await Promise.all(Array.from({ length: 57 }, (_, i) => p!.as(alice, 'imvu.create', { name: `Spam${i}`, owner: alice.id, jurisdiction: 'US-CCPA' })));
    expect(rs.filter((r) => r.allowed)).toHaveLength(DEFAULT_PLAN.imvus_per_creator);
    expect(rs.filter((r) => !r.allowed).every((r) => deniedBy(r).join() === '15')).toBe(true);
    expect(await p.store.get('SELECT COUNT(*) AS n FROM imvus WHERE owner = ?', [alice.id])).toEqual({ n: 10 });
    // Another creator is not affected.
    expect((await p.as(bob, 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    // An exited IMVU no longer counts; an approval for the creator raises the count.
    expect((await p.exitNow(alice, 'IMVU-001')).allowed).toBe(true);
    expect((await p.as(alice, 'imvu.create', { name: 'Again', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect(deniedBy(await p.as(alice, 'imvu.create', { name: 'OneMore', owner: alice.id, jurisdiction: 'US-CCPA' }))).toEqual([15]);
    expect((await p.as(ops, 'quota.approve', { creator: alice.id, envelope: { imvus: 12 }, reason: 'agency account' })).allowed).toBe(true);
    expect((await p.as(alice, 'imvu.create', { name: 'OneMore', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect((await p.as(alice, 'imvu.create', { name: 'TwoMore', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect(deniedBy(await p.as(alice, 'imvu.create', { name: 'ThreeMore', owner: alice.id, jurisdiction: 'US-CCPA' }))).toEqual([15]);
    expect(deniedBy(await p.as(ops, 'quota.approve', { creator: ops.id, envelope: { imvus: 12 }, reason: 'not a creator' }))).toEqual([0]);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });
});
