import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from './sqlite.ts';
import { createHash } from 'node:crypto';
import { DIGEST_TABLES, DigestTracker, PROJECTION_COLUMNS, applyChange, combinedDigest, differingTables, emptyDigest, rowExpression, rowHash, scanAll, scanTable } from './digest.ts';
import type { SqlValue } from './store.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fileStore(): { store: SqliteStore; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-digest-'));
  dirs.push(dir);
  const file = join(dir, 'nexus.db');
  return { store: new SqliteStore(file), file };
}

type Op =
  | { op: 'add'; id: number; value: string }
  | { op: 'set'; id: number; value: string }
  | { op: 'del'; id: number }
  | { op: 'dkim'; imvu: number; selector: string }
  | { op: 'rollback' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('add' as const), id: fc.integer({ min: 0, max: 20 }), value: fc.string({ maxLength: 12 }) }),
  fc.record({ op: fc.constant('set' as const), id: fc.integer({ min: 0, max: 20 }), value: fc.string({ maxLength: 12 }) }),
  fc.record({ op: fc.constant('del' as const), id: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ op: fc.constant('dkim' as const), imvu: fc.integer({ min: 0, max: 3 }), selector: fc.constantFrom('a', 'b', "it's, odd") }),
  fc.record({ op: fc.constant('rollback' as const) }),
);

describe('projection digests', () => {
  it('columns come from the schema, in order', () => {
    expect(PROJECTION_COLUMNS.records).toEqual(['id', 'zone', 'name', 'type', 'value', 'ttl', 'entry']);
    expect(PROJECTION_COLUMNS.members).toEqual(['imvu', 'identity', 'entry']);
    expect(DIGEST_TABLES).toContain('nonces');
  });

  it('the digest kept from the changes equals a scan, whatever the writes (REPLACE, savepoints rolled back)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(opArb, { maxLength: 12 }), { maxLength: 6 }), async (txs) => {
        const store = new SqliteStore(':memory:');
        try {
          const tracker = new DigestTracker(await scanAll(store));
          for (const ops of txs) {
            await store.transaction(async (tx) => {
              tracker.begin();
              await tx.run('SAVEPOINT s');
              for (const o of ops) {
                if (o.op === 'add') await tx.run("INSERT OR IGNORE INTO records (id, zone, name, type, value, ttl, entry) VALUES (?, 'z', 'n', 'TXT', ?, 60, 1)", [String(o.id), o.value]);
                if (o.op === 'set') await tx.run('UPDATE records SET value = ?, ttl = ttl + 1 WHERE id = ?', [o.value, String(o.id)]);
                if (o.op === 'del') await tx.run('DELETE FROM records WHERE id = ?', [String(o.id)]);
                if (o.op === 'dkim') await tx.run("INSERT OR REPLACE INTO dkim_keys (imvu, selector, public_key, state, since, entry) VALUES (?, ?, 'k', 'active', '2026-01-01T00:00:00.000Z', 2)", [`IMVU-00${o.imvu}`, o.selector]);
                if (o.op === 'rollback') {
                  await tx.run('ROLLBACK TO s');
                }
              }
              await tx.run('RELEASE s');
              await tracker.seal(tx);
            });
            expect(differingTables(await scanAll(store), tracker.current)).toEqual([]);
          }
        } finally {
          await store.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it('a write through another connection is not among the changes: the scan differs', async () => {
    const { store, file } = fileStore();
    const tracker = new DigestTracker(await scanAll(store));
    await store.transaction(async (tx) => {
      await tx.run("INSERT INTO routes (imvu, policy, entry) VALUES ('IMVU-001', '{}', 3)");
      await tracker.seal(tx);
    });
    expect(differingTables(await scanAll(store), tracker.current)).toEqual([]);
    const other = new Database(file);
    other.prepare("UPDATE routes SET policy = '{\"evil\":1}'").run();
    other.close();
    expect(differingTables(await scanAll(store), tracker.current)).toEqual(['routes']);
    // The tracker still holds what the writer made; a rescan takes the table as it is now.
    const before = combinedDigest(tracker.current);
    await store.transaction(async (tx) => {
      tracker.rescan('routes');
      await tracker.seal(tx);
    });
    expect(combinedDigest(tracker.current)).not.toBe(before);
    expect(differingTables(await scanAll(store), tracker.current)).toEqual([]);
    await store.close();
  });

  it('rows that differ only in type, NULLs or separators encode differently', async () => {
    const store = new SqliteStore(':memory:');
    const enc = async (values: unknown[]) =>
      (await store.get<{ r: string }>(`SELECT ${rowExpression('members', '')} AS r FROM (SELECT ? AS imvu, ? AS identity, ? AS entry)`, values as never))!.r;
    const rows = await Promise.all([
      enc(['a', 'b', 2]),
      enc(['a', 'b', '2']),
      enc(['a', 'b', null]),
      enc(['a', 'b', 'NULL']),
      enc(['a,b', '', 2]),
      enc(['a', "b','", 2]),
      enc(['a', Buffer.from('b'), 2]),
    ]);
    expect(new Set(rows).size).toBe(rows.length);
    await store.close();
  });

  it('adding then removing a row returns to the same digest; order does not matter', () => {
    const a = applyChange(applyChange(emptyDigest(), 'records', 1, "'x'"), 'records', 1, "'y'");
    const b = applyChange(applyChange(emptyDigest(), 'records', 1, "'y'"), 'records', 1, "'x'");
    expect(a).toEqual(b);
    expect(applyChange(applyChange(a, 'records', -1, "'x'"), 'records', -1, "'y'")).toEqual(emptyDigest());
    // The table is part of the row's hash.
    expect(applyChange(emptyDigest(), 'routes', 1, "'x'")).not.toEqual(applyChange(emptyDigest(), 'records', 1, "'x'"));
  });

  it('a scan in chunks sees every row once, whatever the rowids (negative, beyond 2^53)', async () => {
    const store = new SqliteStore(':memory:');
    const tracker = new DigestTracker(await scanAll(store));
    await store.transaction(async (tx) => {
      // 1998 + 2: the first chunk (2000 rows) ends exactly at a rowid a double cannot hold.
      for (let i = 0; i < 1998; i++) await tx.run("INSERT INTO nonces (actor, nonce, entry) VALUES ('a', ?, ?)", [`n${i}`, i]);
      await tx.run("INSERT INTO nonces (rowid, actor, nonce, entry) VALUES (-5, 'b', 'low', 1)");
      await tx.run("INSERT INTO nonces (rowid, actor, nonce, entry) VALUES (9007199254740993, 'b', 'high', 1)");
      await tx.run("INSERT INTO nonces (rowid, actor, nonce, entry) VALUES (9007199254740994, 'b', 'higher', 1)");
      await tracker.seal(tx);
    });
    const scanned = await scanTable(store, 'nonces');
    expect(scanned.rows).toBe(2001);
    expect(scanned).toEqual(tracker.current.get('nonces'));
    // The store's rows-as-arrays read is what the scan uses; a reader without it (objects) gives
    // the same digest over the same chunks and rowids.
    let arrays = 0;
    const counting = { get: store.get.bind(store), all: store.all.bind(store), values: (sql: string, p?: SqlValue[]) => (arrays++, store.values(sql, p)) };
    expect(await scanTable(counting, 'nonces')).toEqual(scanned);
    expect(arrays).toBe(2);
    expect(await scanTable({ get: store.get.bind(store), all: store.all.bind(store) }, 'nonces')).toEqual(scanned);
    await store.close();
  });

  it('a row hash is SHA-256 over the domain, the table and the row, as data directories recorded it', async () => {
    // Digests are recorded in every data directory (projection_digests, checkpoint.note): however
    // the hashing is done, the value must stay this one.
    const row = "'IMVU-001','{\"public\":[]}',X'00ff',NULL,7,'é'";
    const expected = BigInt('0x' + createHash('sha256').update('nexus/projection-row\n').update('routes').update('\n').update(row).digest('hex'));
    expect(rowHash('routes', row)).toBe(expected);
    expect(rowHash('routes', "'x'").toString(16)).toBe('5ef099738431db89d6319acf8eb2afc481dab65fb1679612633a0a83d4955ba9');
    const store = new SqliteStore(':memory:');
    await store.transaction(async (tx) => {
      await tx.run("INSERT INTO nonces (actor, nonce, entry) VALUES ('a', 'é', 1)");
    });
    const [r] = await store.all<{ r: string }>(`SELECT ${rowExpression('nonces')} AS r FROM nonces`);
    expect((await scanTable(store, 'nonces')).sum).toBe(rowHash('nonces', r!.r));
    await store.close();
  });

  it('scanTable of an empty table is the empty digest', async () => {
    const store = new SqliteStore(':memory:');
    expect(await scanTable(store, 'records')).toEqual(emptyDigest());
    await store.close();
  });
});
