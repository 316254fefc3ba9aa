import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisioner } from '../../imvu/provision.ts';
import { dnsFixture, type DnsFixture } from './testing.ts';
import { ZoneView } from './zone-view.ts';

// The view re-reads only the zones the new entries may have changed, and ends where a full
// re-read of the zone list would: same zones, same IMVUs, same serials.

let f: DnsFixture;
let view: ZoneView;

beforeAll(async () => {
  f = await dnsFixture({ provision: provisioner });
  // No timer-driven and no periodic full refresh during the test: every refresh is one we ask for.
  view = await ZoneView.open(f.p.store, { refreshMs: 3_600_000, resyncMs: 3_600_000 });
});
afterAll(async () => {
  view?.close();
  await f?.p.cleanup();
});

async function sameAsFull(): Promise<void> {
  const full = await ZoneView.open(f.p.store, { refreshMs: 3_600_000 });
  try {
    expect(view.zoneNames().sort()).toEqual(full.zoneNames().sort());
    for (const name of full.zoneNames()) {
      expect(view.serialOf(name)).toBe(full.serialOf(name));
      expect(view.enclosing(name)?.imvu).toBe(full.enclosing(name)?.imvu);
    }
  } finally {
    full.close();
  }
}

describe('zone view refresh', () => {
  it('follows record changes, a new IMVU and an exit from the new entries only', async () => {
    const partial = view.stats.partial;
    const before = view.serialOf('imvu001.world')!;
    await f.add('fresh', 'A', '192.0.2.99');
    await f.p.as(f.alice, 'consent.record', { imvu: 'IMVU-001', subject: f.alice.id, purpose: 'news', granted: true });
    await view.refresh();
    expect(view.stats.partial).toBe(partial + 1);
    expect(view.serialOf('imvu001.world')).toBe(before + 1);
    await sameAsFull();

    const gen = view.generation;
    const made = await f.p.as(f.alice, 'imvu.create', { name: 'Third', owner: f.alice.id, jurisdiction: 'US-CCPA' });
    expect(made.allowed).toBe(true);
    await view.refresh();
    expect(view.stats.partial).toBe(partial + 2);
    expect(view.serialOf('imvu003.world')).toBeDefined();
    expect(view.generation).toBeGreaterThan(gen);
    await sameAsFull();

    // An exit is served as before until it ends (exiting), then no longer (exited).
    expect((await f.p.as(f.bob, 'imvu.exit', { imvu: 'IMVU-002' })).allowed).toBe(true);
    await view.refresh();
    expect(view.serialOf('imvu002.world')).toBeDefined();
    expect((await f.p.exitNow(f.bob, 'IMVU-002')).allowed).toBe(false); // already exiting: the steps below end it
    const digest = '0'.repeat(64);
    expect((await f.p.chokepoint.submit(f.p.chokepoint.platformCommand('imvu.exit.ready', { imvu: 'IMVU-002', archive: { sha256: digest, size: 1 }, manifest: digest, treeSize: f.p.chokepoint.ledger.size }))).allowed).toBe(true);
    expect((await f.p.as(f.bob, 'imvu.exit.confirm', { imvu: 'IMVU-002', archive: digest })).allowed).toBe(true);
    await view.refresh();
    expect(view.stats.partial).toBeGreaterThanOrEqual(partial + 3);
    expect(view.serialOf('imvu002.world')).toBeUndefined();
    await sameAsFull();
  });
});
