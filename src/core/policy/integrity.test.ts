import { NotRecorded } from './chokepoint.ts';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import Database from 'better-sqlite3';
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { signCommand } from '../identity/envelope.ts';
import { CHECKPOINT_FILE, parseCheckpointFile } from '../ledger/checkpoint-file.ts';
import { publicKeyRaw } from '../identity/keys.ts';
import { openDataDir, type OpenPlatform } from '../platform.ts';
import { testPlatform, type Actor, type TestPlatform } from '../testing.ts';
import { combinedDigest, scanAll } from '../store/digest.ts';
import { verifyDataDir } from './verify.ts';
import { nextCheckDelay } from './integrity.ts';

let p: TestPlatform;
let alice: Actor;
let reopened: OpenPlatform | undefined;

beforeEach(async () => {
  p = await testPlatform();
  alice = await p.register('alice', 'creator');
  await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'EU-GDPR' });
});
afterEach(async () => {
  await reopened?.close();
  reopened = undefined;
  await p.cleanup();
});

async function reopen(): Promise<OpenPlatform> {
  await p.close();
  reopened = await openDataDir(p.dataDir);
  return reopened;
}

function sql(fn: (db: Database.Database) => void): void {
  const db = new Database(join(p.dataDir, 'nexus.db'));
  try {
    fn(db);
  } finally {
    db.close();
  }
}

async function alarms(q: OpenPlatform) {
  const rows = await q.store.all<{ data: Buffer }>("SELECT data FROM ledger_entries WHERE CAST(data AS TEXT) LIKE '%integrity.alarm%'");
  return rows.map((r) => JSON.parse(r.data.toString()) as { index: number; command: { command: { body: Record<string, unknown> } } });
}

describe('start-up integrity check', () => {
  it('an untouched data directory opens without replaying', async () => {
    const q = await reopen();
    // Closed cleanly: the close seal vouches for the file, so not even the scan runs.
    expect(q.integrity.startup).toEqual({ scanned: false, replayed: false, reasons: [] });
    expect(await alarms(q)).toEqual([]);
  });

  it('a trigger planted while stopped, rewriting every new record, is dropped and alarmed', async () => {
    await p.close();
    sql((db) => db.exec("CREATE TRIGGER hijack AFTER INSERT ON records BEGIN UPDATE records SET value = '203.0.113.9' WHERE id = NEW.id AND type = 'A'; END;"));
    const q = (reopened = await openDataDir(p.dataDir));
    expect(q.integrity.startup.alarm?.detail).toMatch(/triggers not created by the platform: hijack/);
    expect((await q.store.all("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name = 'hijack'")).length).toBe(0);
    const r = await q.chokepoint.submit(signCommand(alice.key, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.7' }, { origin: q.config.origin }));
    expect(r.allowed).toBe(true);
    expect(await q.store.get('SELECT value FROM records WHERE entry = ?', [r.index])).toEqual({ value: '192.0.2.7' });
  });

  it('a spent nonce deleted while stopped (to replay a command) is restored; the replay is refused', async () => {
    const signed = signCommand(alice.key, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.8' }, { origin: p.config.origin });
    expect((await p.chokepoint.submit(signed)).allowed).toBe(true);
    await p.close();
    sql((db) => db.prepare('DELETE FROM nonces WHERE nonce = ?').run(signed.command.nonce));
    const q = (reopened = await openDataDir(p.dataDir));
    expect(q.integrity.startup.alarm).toMatchObject({ tables: ['nonces'], imvus: ['IMVU-001'] });
    // Refused as a replay (and, being unauthenticated as to its sender, not recorded again).
    const again = await q.chokepoint.submit(signed).then(() => undefined, (err: unknown) => err as NotRecorded);
    expect(again).toMatchObject({ why: 'replay', message: expect.stringMatching(/already used/) });
  });

  it('rows and the recorded digest edited together still differ from the signed checkpoint file', async () => {
    await p.close();
    sql((db) => db.prepare("UPDATE envelopes SET memory_gb = 1 WHERE imvu = 'IMVU-001'").run());
    // Someone with write access to the database recomputes the digest and writes it over the
    // recorded one; the file is signed with the platform key, which they do not use.
    const forged = await openDigestsOnly();
    sql((db) => {
      db.exec('DROP TRIGGER projection_digests_no_update');
      db.prepare('UPDATE projection_digests SET digest = ? WHERE size = (SELECT MAX(size) FROM projection_digests)').run(forged);
    });
    const q = (reopened = await openDataDir(p.dataDir));
    expect(q.integrity.startup.reasons.join('; ')).toMatch(/envelopes differ from the digests in checkpoint.note/);
    expect(q.integrity.startup.alarm).toMatchObject({ tables: ['envelopes'], imvus: ['IMVU-001'] });
    expect(await q.store.get("SELECT memory_gb FROM envelopes WHERE imvu = 'IMVU-001'")).toEqual({ memory_gb: 4 });
  });

  it('a data directory from before digests: replayed once, recorded, no alarm; the next start is cheap', async () => {
    await p.close();
    sql((db) => db.exec('DROP TRIGGER projection_digests_no_delete; DELETE FROM projection_digests;'));
    unlinkSync(join(p.dataDir, CHECKPOINT_FILE));
    let q = (reopened = await openDataDir(p.dataDir));
    expect(q.integrity.startup.replayed).toBe(true);
    expect(q.integrity.startup.alarm).toBeUndefined();
    const size = q.chokepoint.ledger.size;
    const file = parseCheckpointFile(readFileSync(join(p.dataDir, CHECKPOINT_FILE), 'utf8'), q.config.origin, publicKeyRaw(q.platformKey));
    expect(file.size).toBe(size);
    await q.close();
    q = reopened = await openDataDir(p.dataDir);
    expect(q.integrity.startup.replayed).toBe(false);
    await q.close();
    reopened = undefined;
    expect((await verifyDataDir(p.dataDir)).problems).toEqual([]);
  });

  it('a crash between a commit and the file rename (file one commit behind): starts, and the file catches up', async () => {
    const old = readFileSync(join(p.dataDir, CHECKPOINT_FILE), 'utf8');
    await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'late', type: 'A', value: '192.0.2.9' });
    await p.close();
    writeFileSync(join(p.dataDir, CHECKPOINT_FILE), old);
    const q = (reopened = await openDataDir(p.dataDir));
    expect(q.integrity.startup.replayed).toBe(false);
    const file = parseCheckpointFile(readFileSync(join(p.dataDir, CHECKPOINT_FILE), 'utf8'), q.config.origin, publicKeyRaw(q.platformKey));
    expect(file.size).toBe(q.chokepoint.ledger.size);
  });
});

describe('periodic check', () => {
  it('a clean state raises nothing; an edit through another connection is repaired once', async () => {
    expect(await p.integrity.check()).toBeUndefined();
    sql((db) => db.prepare("UPDATE mailboxes SET imvu = 'IMVU-999' WHERE address = 'creator@imvu001.world'").run());
    const alarm = await p.integrity.check();
    expect(alarm).toMatchObject({ trigger: 'periodic', tables: ['mailboxes'], imvus: ['IMVU-001'] });
    expect(await p.store.get("SELECT imvu FROM mailboxes WHERE address = 'creator@imvu001.world'")).toEqual({ imvu: 'IMVU-001' });
    expect(await p.integrity.check()).toBeUndefined();
    const notes = await p.store.all<{ recipient: string; gate: number }>('SELECT recipient, gate FROM notifications WHERE about = ?', [alarm!.index]);
    expect(notes).toEqual([{ recipient: alice.id, gate: 5 }]);
  });

  it('a clean check scans a snapshot without the write lock: commits go on, and commits during it are no difference', async () => {
    const locked = vi.spyOn(p.store, 'transaction');
    expect(await p.integrity.check()).toBeUndefined();
    expect(p.integrity.lastCheckPath).toBe('snapshot');
    expect(locked).not.toHaveBeenCalled();
    locked.mockRestore();
    // Commands committed while checks run: each check compares its snapshot with what the writer
    // sealed at that snapshot's tree size, so none of them sees a difference or falls back.
    for (let round = 0; round < 5; round++) {
      const commits = Promise.all(
        Array.from({ length: 8 }, (_, i) => p.as(alice, 'consent.record', { imvu: 'IMVU-001', subject: `s${round}-${i}`, purpose: 'analytics', granted: true })),
      );
      const check = p.integrity.check();
      await commits;
      expect(await check).toBeUndefined();
      expect(p.integrity.lastCheckPath).toBe('snapshot');
    }
    expect(p.integrity.alarms).toEqual([]);
  });

  it('on a timer, checks space themselves out: the interval, or nine times the last check if that is longer', async () => {
    expect(nextCheckDelay(60_000, 120)).toBe(60_000);
    expect(nextCheckDelay(60_000, 10_000)).toBe(90_000);
    const seen = new Set<string>();
    p.integrity.start(20);
    for (let i = 0; i < 500 && seen.size < 3; i++) {
      if (p.integrity.lastCheck) seen.add(p.integrity.lastCheck.at);
      await new Promise((r) => setTimeout(r, 10));
    }
    p.integrity.start(0);
    expect(seen.size).toBeGreaterThanOrEqual(3);
  });

  it('an edit made through another connection is checked at the next tick, even when the routine check is not due', async () => {
    p.integrity.start(20);
    // As on a large platform whose last check took long: no routine check for a long while.
    (p.integrity as unknown as { nextCheckAt: number }).nextCheckAt = Infinity;
    await new Promise((r) => setTimeout(r, 100));
    const before = p.integrity.lastCheck?.at;
    sql((db) => db.prepare("UPDATE routes SET policy = '{}' WHERE imvu = 'IMVU-001'").run());
    for (let i = 0; i < 200 && !p.integrity.alarms.length; i++) await new Promise((r) => setTimeout(r, 10));
    p.integrity.start(0);
    expect(p.integrity.lastCheck?.at).not.toBe(before);
    expect(p.integrity.alarms).toMatchObject([{ trigger: 'periodic', tables: ['routes'] }]);
  });

  it('an edit seen by the snapshot scan is checked again under the lock, repaired and alarmed', async () => {
    sql((db) => db.prepare("UPDATE routes SET policy = '{}' WHERE imvu = 'IMVU-001'").run());
    const alarm = await p.integrity.check();
    expect(p.integrity.lastCheckPath).toBe('locked');
    expect(alarm).toMatchObject({ trigger: 'periodic', tables: ['routes'], imvus: ['IMVU-001'] });
    expect(await p.integrity.check()).toBeUndefined();
    expect(p.integrity.lastCheckPath).toBe('snapshot');
  });
});

/** The combined digest of the projections as they are in the file now (what root would write over the record). */
async function openDigestsOnly(): Promise<string> {
  const { SqliteStore } = await import('../store/index.ts');
  const s = new SqliteStore(join(p.dataDir, 'nexus.db'));
  try {
    return combinedDigest(await scanAll(s));
  } finally {
    await s.close();
  }
}
