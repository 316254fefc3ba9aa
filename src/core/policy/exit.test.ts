import { afterEach, describe, expect, it } from 'vitest';
import { deniedBy, testPlatform, type TestPlatform } from '../testing.ts';
import { verifyStore } from './verify.ts';

// The exit's clock (gate 13), in ledger entry times: the platform cannot end an exit before the
// creator could fetch the archive, nor release or delete an exited IMVU's data before the grace
// and the retention; nobody else ends or purges it at all.

let p: TestPlatform | undefined;
afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

const DAY = 86_400_000;

describe('gate 13: the exit clock', () => {
  it('times expiry, release and deletion by the ledger, and refuses early or foreign attempts', async () => {
    let now = Date.parse('2026-03-01T00:00:00Z');
    p = await testPlatform({ clock: () => new Date(now) });
    const alice = await p.register('alice', 'creator');
    const ops = await p.register('ops', 'admin');
    await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    const platform = (type: 'imvu.exit.ready' | 'imvu.exit.expire' | 'imvu.purge', body: Record<string, unknown>) =>
      p!.chokepoint.submit(p!.chokepoint.platformCommand(type, body as never));
    const digest = 'a'.repeat(64);

    // Not exiting: nothing of the exit's later steps applies.
    expect(deniedBy(await platform('imvu.exit.ready', { imvu: 'IMVU-001', archive: { sha256: digest, size: 10 }, manifest: digest, treeSize: 3 }))).toEqual([13]);
    expect((await p.as(alice, 'imvu.exit', { imvu: 'IMVU-001' })).allowed).toBe(true);
    // Before the archive is ready, the exit cannot be ended by anyone.
    expect(deniedBy(await p.as(alice, 'imvu.exit.confirm', { imvu: 'IMVU-001', archive: digest }))).toEqual([13]);
    expect(deniedBy(await platform('imvu.exit.expire', { imvu: 'IMVU-001' }))).toEqual([13]);
    // The archive recorded by anyone but the platform: refused.
    expect(deniedBy(await p.as(ops, 'imvu.exit.ready', { imvu: 'IMVU-001', archive: { sha256: digest, size: 10 }, manifest: digest, treeSize: 3 }))).toContain(13);
    expect((await platform('imvu.exit.ready', { imvu: 'IMVU-001', archive: { sha256: digest, size: 10 }, manifest: digest, treeSize: 3 })).allowed).toBe(true);
    // A confirmation of another archive is refused; the platform cannot expire it within the week.
    expect(deniedBy(await p.as(alice, 'imvu.exit.confirm', { imvu: 'IMVU-001', archive: 'b'.repeat(64) }))).toEqual([13]);
    now += 6 * DAY;
    expect(deniedBy(await platform('imvu.exit.expire', { imvu: 'IMVU-001' }))).toEqual([13]);
    now += 1 * DAY + 1000;
    expect((await platform('imvu.exit.expire', { imvu: 'IMVU-001' })).allowed).toBe(true);
    expect(await p.store.get("SELECT status FROM imvus WHERE id = 'IMVU-001'")).toEqual({ status: 'exited' });
    // Purges: an admin before the grace is refused (and the creator notified), so is the platform.
    const early = await p.as(ops, 'imvu.purge', { imvu: 'IMVU-001', stage: 'release' });
    expect(deniedBy(early)).toEqual([13]);
    expect(early.gates.find((g) => g.gate === 13)!.reason).toMatch(/kept 30 days \(grace\)/);
    const notice = await p.store.get<{ message: string }>("SELECT message FROM notifications WHERE imvu = 'IMVU-001' AND gate = 13 ORDER BY entry DESC LIMIT 1");
    expect(notice!.message).toMatch(/ops \(admin\) tried imvu.purge on IMVU-001: BLOCKED by gate 13/);
    expect(deniedBy(await p.as(alice, 'imvu.purge', { imvu: 'IMVU-001', stage: 'release' }))).toContain(13);
    now += 30 * DAY;
    expect(deniedBy(await platform('imvu.purge', { imvu: 'IMVU-001', stage: 'delete' }))).toEqual([13]);
    expect((await platform('imvu.purge', { imvu: 'IMVU-001', stage: 'release' })).allowed).toBe(true);
    expect(deniedBy(await platform('imvu.purge', { imvu: 'IMVU-001', stage: 'release' }))).toEqual([13]);
    now += 60 * DAY;
    expect((await p.as(ops, 'imvu.purge', { imvu: 'IMVU-001', stage: 'delete' })).allowed).toBe(true);
    const row = await p.store.get<{ how: string; released_at: string; deleted_at: string }>("SELECT how, released_at, deleted_at FROM exits WHERE imvu = 'IMVU-001'");
    expect(row).toMatchObject({ how: 'expired' });
    expect(row!.released_at).toBeTruthy();
    expect(row!.deleted_at).toBeTruthy();
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });
});
