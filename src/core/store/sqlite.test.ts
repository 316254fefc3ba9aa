import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type Store } from './index.ts';

let dir: string;
let store: Store;
const open = () => {
  dir = mkdtempSync(join(tmpdir(), 'nexus-store-'));
  store = openStore(dir);
  return store;
};
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SqliteStore', () => {
  it('runs in WAL mode and refuses UPDATE and DELETE on ledger tables', async () => {
    open();
    expect(await store.get('PRAGMA journal_mode')).toEqual({ journal_mode: 'wal' });
    await store.transaction(async (tx) => tx.appendEntry(0, Buffer.from('e0'), [{ level: 0, index: 0, hash: Buffer.alloc(32) }]));
    await expect(store.transaction((tx) => tx.run('UPDATE ledger_entries SET data = ?', [Buffer.from('x')]))).rejects.toThrow(/append-only/);
    await expect(store.transaction((tx) => tx.run('DELETE FROM ledger_nodes'))).rejects.toThrow(/append-only/);
    expect(await store.readEntries(0, 1)).toEqual([Buffer.from('e0')]);
  });

  it('commits a transaction whole or not at all, and readers never see one in flight', async () => {
    open();
    let seenInside: unknown;
    await store.transaction(async (tx) => {
      await tx.run("INSERT INTO mailboxes (address, imvu, entry) VALUES ('a@x.world', 'IMVU-001', 1)");
      seenInside = await store.get('SELECT COUNT(*) AS n FROM mailboxes');
    });
    expect(seenInside).toEqual({ n: 0 });
    expect(await store.get('SELECT COUNT(*) AS n FROM mailboxes')).toEqual({ n: 1 });
    await expect(
      store.transaction(async (tx) => {
        await tx.run("INSERT INTO mailboxes (address, imvu, entry) VALUES ('b@x.world', 'IMVU-001', 2)");
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.get('SELECT COUNT(*) AS n FROM mailboxes')).toEqual({ n: 1 });
    // A failed transaction does not wedge the queue.
    await store.transaction(async (tx) => tx.run("INSERT INTO mailboxes (address, imvu, entry) VALUES ('c@x.world', 'IMVU-001', 3)"));
    expect(await store.get('SELECT COUNT(*) AS n FROM mailboxes')).toEqual({ n: 2 });
  });

  it('counts the ledger (the start gap check) through the small index, not the entries themselves', async () => {
    open();
    await store.transaction(async (tx) => tx.appendEntry(0, Buffer.alloc(4000, 1), [{ level: 0, index: 0, hash: Buffer.alloc(32) }]));
    const plan = await store.all<{ detail: string }>('EXPLAIN QUERY PLAN SELECT COUNT(*) AS n FROM ledger_entries');
    expect(plan.map((p) => p.detail).join('\n')).toContain('COVERING INDEX ledger_entries_count');
    expect(await store.get('SELECT COUNT(*) AS n FROM ledger_entries')).toEqual({ n: 1 });
  });

  it('keeps committed data across reopen', async () => {
    open();
    await store.transaction(async (tx) => tx.saveCheckpoint(1, 'note'));
    await store.close();
    store = openStore(dir);
    expect(await store.latestCheckpoint()).toEqual({ size: 1, note: 'note' });
  });
});
