import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { decodeEntry } from '../ledger/ledger.ts';
import { DB_FILE } from '../store/index.ts';
import { testPlatform, type TestPlatform } from '../testing.ts';
import { PLATFORM_WIDE, entriesAbout } from './imvu-index.ts';
import { verifyDataDir, verifyStore } from './verify.ts';

// The per-IMVU index: written with each entry, read through its key (never a scan of the log or
// of the table), replayed and compared by the verifier like every projection.

let p: TestPlatform | undefined;
afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

/** What the index must say, judged from the entries themselves (the definition in imvu-index.ts). */
async function aboutByScan(t: TestPlatform, imvu: string): Promise<number[]> {
  const zones = new Set((await t.store.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ?', [imvu])).map((r) => r.name));
  const created = (await t.store.get<{ entry: number }>('SELECT entry FROM imvus WHERE id = ?', [imvu]))!.entry;
  const out: number[] = [];
  for (const data of await t.store.readEntries(0, await t.store.ledgerSize())) {
    const e = decodeEntry(data);
    const c = e.command?.command;
    const b = (c?.body ?? {}) as Record<string, unknown>;
    if (e.index === created || (e.index > created && c?.type === 'platform.zone') || b.imvu === imvu || (typeof b.zone === 'string' && zones.has(b.zone))) out.push(e.index);
  }
  return out;
}

describe('the per-IMVU index of the log', () => {
  it('lists exactly the entries about each IMVU, denied ones included, and reads them through its key', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const bob = await p.register('bob', 'creator');
    await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    await p.as(bob, 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'US-CCPA' });
    for (let i = 0; i < 5; i++) {
      await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: `a${i}`, type: 'A', value: `192.0.2.${i + 1}` });
      await p.as(bob, 'dns.record.add', { zone: 'imvu002.world', name: `b${i}`, type: 'A', value: `192.0.2.${i + 1}` });
    }
    // Denied: bob writing alice's zone is about alice's IMVU (she must see the attempt).
    expect((await p.as(bob, 'dns.record.add', { zone: 'imvu001.world', name: 'evil', type: 'A', value: '192.0.2.99' })).allowed).toBe(false);
    await p.as(alice, 'consent.record', { imvu: 'IMVU-001', subject: alice.id, purpose: 'analytics', granted: true });

    for (const imvu of ['IMVU-001', 'IMVU-002']) {
      const want = await aboutByScan(p, imvu);
      expect(want.length).toBeGreaterThan(5);
      expect(await entriesAbout(p.store, imvu, 0, 1e9, 1000, 'oldest')).toEqual(want);
      expect(await entriesAbout(p.store, imvu, 0, 1e9, 3, 'newest')).toEqual(want.slice(-3).reverse());
    }
    const a = await entriesAbout(p.store, 'IMVU-001', 0, 1e9, 1000, 'oldest');
    const b = await entriesAbout(p.store, 'IMVU-002', 0, 1e9, 1000, 'oldest');
    expect(a.filter((i) => b.includes(i))).toEqual([]);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('its reads use the (imvu, entry) key: no scan of the index, the log or the IMVUs', async () => {
    p = await testPlatform();
    const db = new Database(join(p.dataDir, DB_FILE), { readonly: true });
    try {
      const plans = [
        ['SELECT entry FROM imvu_entries WHERE imvu = ? AND entry >= ? AND entry < ? ORDER BY entry DESC LIMIT ?', ['IMVU-001', 0, 10, 5]],
        ['SELECT entry FROM imvu_entries WHERE imvu = ? AND entry > ? AND entry >= ? AND entry < ? ORDER BY entry ASC LIMIT ?', [PLATFORM_WIDE, 1, 0, 10, 5]],
        ['SELECT entry FROM imvus WHERE id = ?', ['IMVU-001']],
        ['SELECT idx, data FROM ledger_entries WHERE idx = ?', [3]],
        ['SELECT imvu FROM zones WHERE name = ?', ['imvu001.world']],
        ['SELECT id FROM imvus WHERE entry = ?', [3]],
      ] as const;
      for (const [sql, params] of plans) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail).join('; ');
        expect(plan, sql).toMatch(/SEARCH/);
        expect(plan, sql).not.toMatch(/\bSCAN\b/);
        expect(plan, sql).not.toMatch(/TEMP B-TREE/);
      }
    } finally {
      db.close();
    }
  });

  it('an index row removed or planted behind the daemon is a verification failure', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.1' });
    const last = (await p.store.ledgerSize()) - 1;
    await p.close();
    const db = new Database(join(p.dataDir, DB_FILE));
    db.prepare('DELETE FROM imvu_entries WHERE imvu = ? AND entry = ?').run('IMVU-001', last);
    db.close();
    const hidden = await verifyDataDir(p.dataDir);
    expect(hidden.ok).toBe(false);
    expect(hidden.problems.map((x) => x.message).join('\n')).toMatch(/imvu_entries/);
    const db2 = new Database(join(p.dataDir, DB_FILE));
    db2.prepare('INSERT INTO imvu_entries (imvu, entry) VALUES (?, ?)').run('IMVU-001', last);
    db2.prepare('INSERT INTO imvu_entries (imvu, entry) VALUES (?, ?)').run('IMVU-001', 0);
    db2.close();
    const planted = await verifyDataDir(p.dataDir);
    expect(planted.ok).toBe(false);
    expect(planted.problems.map((x) => x.message).join('\n')).toMatch(/imvu_entries/);
  });
});
