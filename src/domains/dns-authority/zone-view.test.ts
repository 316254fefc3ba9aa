import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_FILE } from '../../core/store/index.ts';
import { provisioner } from '../../imvu/provision.ts';
import { dnsFixture, type DnsFixture } from './testing.ts';
import { ZONE_VIEW_SOURCES, ZoneView } from './zone-view.ts';

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

describe('zone view: an IMVU with several zones', () => {
  it('follows custom domains proven and released, one IMVU holding three zones, then two', async () => {
    const prove = async (domain: string) => {
      expect((await f.p.as(f.alice, 'domain.claim', { imvu: 'IMVU-001', domain })).allowed).toBe(true);
      const { token } = (await f.p.store.get<{ token: string }>('SELECT token FROM domain_claims WHERE name = ?', [domain]))!;
      const evidence = { name: `_nexus-challenge.${domain}`, txt: [token] };
      expect((await f.p.chokepoint.submit(f.p.chokepoint.platformCommand('domain.verified', { imvu: 'IMVU-001', domain, evidence }))).allowed).toBe(true);
    };
    await prove('gallery-one.example');
    await prove('gallery-two.example');
    await view.refresh();
    expect(view.enclosing('www.gallery-one.example')?.imvu).toBe('IMVU-001');
    expect(view.enclosing('gallery-two.example')?.imvu).toBe('IMVU-001');
    await sameAsFull();
    // A record change of the IMVU re-reads all three of its zones; a release drops one of them only.
    expect((await f.p.as(f.alice, 'domain.release', { imvu: 'IMVU-001', domain: 'gallery-one.example' })).allowed).toBe(true);
    await f.add('after-release', 'A', '192.0.2.7');
    await view.refresh();
    expect(view.enclosing('www.gallery-one.example')).toBeUndefined();
    expect(view.enclosing('gallery-two.example')?.imvu).toBe('IMVU-001');
    expect(view.serialOf('imvu001.world')).toBeDefined();
    await sameAsFull();
  });
});

describe('zone view full re-read', () => {
  it('reads the zone list in pages, letting other work run between them, and ends with every zone', async () => {
    // Every read the view makes, with the turn of the event loop it was made in.
    let turn = 0;
    let spinning = true;
    const spin = () => {
      turn++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    const reads: { turn: number; rows: number }[] = [];
    const store = new Proxy(f.p.store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if ((prop !== 'all' && prop !== 'values') || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v;
        return async (...args: unknown[]) => {
          const at = turn;
          const rows = (await (v as (...a: unknown[]) => Promise<unknown[]>).apply(target, args));
          if (/FROM zones\b/.test(String(args[0]))) reads.push({ turn: at, rows: rows.length });
          return rows;
        };
      },
    });
    const paged = await ZoneView.open(store, { refreshMs: 3_600_000, resyncMs: 3_600_000, pageSize: 1 });
    try {
      reads.length = 0;
      await paged.refresh(true);
      spinning = false;
      const perTurn = new Map<number, number>();
      for (const r of reads) perTurn.set(r.turn, (perTurn.get(r.turn) ?? 0) + r.rows);
      const zones = paged.zoneNames().filter((n) => n.startsWith('imvu')).length;
      expect(zones).toBeGreaterThanOrEqual(2);
      // No turn of the event loop read more than one page of zones.
      expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(1);
      expect(paged.zoneNames().sort()).toEqual(view.zoneNames().sort());
    } finally {
      spinning = false;
      paged.close();
    }
  });

  it('spaces full re-reads by their own cost (at most a fiftieth of the time), however short resyncMs is', async () => {
    // Every page of zones takes 20 ms here, as 100,000 zones take hundreds.
    const store = new Proxy(f.p.store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        if (prop !== 'values' && prop !== 'all') return v.bind(target);
        return async (...args: unknown[]) => {
          if (/FROM zones\b/.test(String(args[0]))) await new Promise((r) => setTimeout(r, 20));
          return (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      },
    });
    const slow = await ZoneView.open(store, { refreshMs: 3_600_000, resyncMs: 1 });
    try {
      const full = () => slow.stats.refreshes - slow.stats.partial;
      const n = full();
      expect(slow.fullReadMs).toBeGreaterThanOrEqual(19);
      await new Promise((r) => setTimeout(r, 30));
      await slow.refresh();
      expect(full()).toBe(n);
      await new Promise((r) => setTimeout(r, 50 * slow.fullReadMs + 20));
      await slow.refresh();
      expect(full()).toBe(n + 1);
    } finally {
      slow.close();
    }
  });
});

describe('zone view with a sources key (the daemon)', () => {
  it('reads the whole list again only after a change its reads did not follow (a repair), not every resyncMs', async () => {
    const committed = () => f.p.integrity.tablesKey(ZONE_VIEW_SOURCES);
    // The daemon's key, moved by hand as a repair moves it (the count of repairs is part of it).
    let repairs = 0;
    const keyed = await ZoneView.open(f.p.store, { refreshMs: 3_600_000, resyncMs: 1, sourcesKey: () => `${repairs} ${committed()}` });
    const wait = () => new Promise((r) => setTimeout(r, 50 * keyed.fullReadMs + 20));
    try {
      const full = () => keyed.stats.refreshes - keyed.stats.partial;
      const n = full();
      await wait();
      await keyed.refresh();
      expect(full()).toBe(n);
      // A change through the chokepoint moves the committed digests (the sources are real tables)
      // and is read from its entry alone.
      const before = committed();
      await f.add('keyed', 'A', '192.0.2.61');
      expect(committed()).not.toBe(before);
      await keyed.refresh();
      await wait();
      await keyed.refresh();
      expect(full()).toBe(n);
      expect(keyed.serialOf('imvu001.world')).toBe((await f.p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', ['imvu001.world']))!.serial);
      // A repair: no entry, the key moves: the next look past the spacing reads everything.
      repairs++;
      await wait();
      await keyed.refresh();
      expect(full()).toBe(n + 1);
    } finally {
      keyed.close();
    }
  });

  it('a zones row edited with SQL behind the platform (root on the file) is not read in by the periodic re-read', async () => {
    const committed = () => f.p.integrity.tablesKey(ZONE_VIEW_SOURCES);
    const keyed = await ZoneView.open(f.p.store, { refreshMs: 3_600_000, resyncMs: 1, sourcesKey: committed });
    const db = new Database(join(f.p.dataDir, DB_FILE));
    const row = db.prepare('SELECT imvu FROM zones WHERE name = ?').get('imvu003.world') as { imvu: string };
    try {
      expect(keyed.enclosing('www.imvu003.world')?.imvu).toBe(row.imvu);
      // Another connection, as the sqlite3 shell would be: the zone handed to another IMVU.
      db.prepare('UPDATE zones SET imvu = ? WHERE name = ?').run('IMVU-001', 'imvu003.world');
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 50 * keyed.fullReadMs + 20));
        await keyed.refresh();
      }
      expect(keyed.enclosing('www.imvu003.world')?.imvu).toBe(row.imvu);
    } finally {
      db.prepare('UPDATE zones SET imvu = ? WHERE name = ?').run(row.imvu, 'imvu003.world');
      db.close();
      keyed.close();
    }
  });
});

