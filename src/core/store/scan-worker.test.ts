import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from './sqlite.ts';
import { DigestTracker, emptyDigest, scanAll } from './digest.ts';
import { scanSnapshot } from './scan-worker.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fileStore(): SqliteStore {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-scan-'));
  dirs.push(dir);
  return new SqliteStore(join(dir, 'nexus.db'));
}

/** Rows in several tables, with rowids a double cannot hold and negative ones. */
async function fill(store: SqliteStore, n: number): Promise<DigestTracker> {
  const tracker = new DigestTracker(await scanAll(store));
  await store.transaction(async (tx) => {
    for (let i = 0; i < n; i++) await tx.run("INSERT INTO nonces (actor, nonce, entry) VALUES ('a', ?, ?)", [`n${i}`, i]);
    for (let i = 0; i < n / 4; i++) await tx.run("INSERT INTO consents (entry, subject, imvu, purpose, granted, at) VALUES (?, ?, 'IMVU-001', 'analytics', 1, '2026-12-02')", [i, `id${i}`]);
    await tx.run("INSERT INTO nonces (rowid, actor, nonce, entry) VALUES (-9223372036854775808, 'b', 'lowest', 1)");
    await tx.run("INSERT INTO nonces (rowid, actor, nonce, entry) VALUES (9007199254740993, 'b', 'high', 1)");
    await tx.run("INSERT INTO nonces (rowid, actor, nonce, entry) VALUES (9223372036854775807, 'b', 'highest', 1)");
    await tx.run("INSERT INTO records (rowid, id, zone, name, type, value, ttl, entry) VALUES (7, 'r1', 'z.world', 'www', 'A', '127.0.0.1', 300, 1)");
    await tracker.seal(tx);
  });
  return tracker;
}

describe('projection scan on a worker thread', () => {
  it('a snapshot scan reports the tree size its read transaction saw, with the digests', async () => {
    const store = fileStore();
    const tracker = await fill(store, 300);
    await store.transaction(async (tx) => {
      await tx.appendEntry(0, Buffer.from('e0'), []);
      await tx.appendEntry(1, Buffer.from('e1'), []);
    });
    const snap = await scanSnapshot(store);
    expect(snap?.size).toBe(2);
    // The worker runs the digest's own code: every table as a scan on this thread has it.
    expect(snap?.digests).toEqual(await scanAll(store));
    expect(snap?.digests).toEqual(tracker.current);
    expect(snap?.digests.get('nonces')?.rows).toBe(303);
    expect(snap?.digests.get('routes')).toEqual(emptyDigest());
    // An in-memory database has no file a worker could open.
    const mem = new SqliteStore(':memory:');
    expect(await scanSnapshot(mem)).toBeUndefined();
    await mem.close();
    await store.close();
  });


  it('a scan whose signal is aborted (the daemon stops) ends its worker and gives nothing', async () => {
    const store = fileStore();
    await fill(store, 2000);
    const stop = new AbortController();
    const scan = scanSnapshot(store, stop.signal);
    stop.abort();
    expect(await scan).toBeUndefined();
    expect(await scanSnapshot(store, stop.signal)).toBeUndefined();
    expect((await scanSnapshot(store))?.digests.get('nonces')?.rows).toBe(2003);
    await store.close();
  });
});
