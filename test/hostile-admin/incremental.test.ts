// Incremental verification (`nexus audit verify --data --from-snapshot`) against the full replay
// from entry 0: every tamper of the hostile-admin suite gets the same verdict from both, whether
// the tamper is after the snapshot (replayed) or before it (hashed only: the snapshot knows the
// root of the prefix it was verified against, so a rewritten past is named, never passed).
// The snapshot is bound to the log by a signed `ledger.snapshot` entry recording its state digest;
// the incremental path compares only the projection rows its replay touched. One case is found by
// the full path only, and says so: a stored row the tail did not touch, edited behind the daemon
// (the signed digest covers the state at the snapshot; the daemon's own scan finds the edit).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { decodeEntry, encodeEntry } from '../../src/core/ledger/ledger.ts';
import { MemoryTree } from '../../src/core/ledger/merkle.ts';
import { formatCheckpoint, signNote } from '../../src/core/ledger/checkpoint.ts';
import { verifyDataDir, type VerifyOptions, type VerifyReport } from '../../src/core/policy/verify.ts';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
import { openDataDir } from '../../src/core/platform.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { resealAsRoot } from '../support/root.ts';

let p: TestPlatform;
let alice: Actor;
let bob: Actor;
let admin: Actor;
let work: string;
let snapshot: string;
/** Tree size of the snapshot: entries below it are before it. */
let at: number;

beforeEach(async () => {
  work = mkdtempSync(join(tmpdir(), 'nexus-incremental-'));
  snapshot = join(work, 'snapshot');
  p = await testPlatform();
  alice = await p.register('alice', 'creator');
  bob = await p.register('bob', 'creator');
  admin = await p.register('ops', 'admin');
  await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'EU-GDPR' });
  await p.as(bob, 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'US-CCPA' });
  await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.10' });
  // The platform's signed snapshot entry: the state digest at its own index.
  const signed = await p.integrity.recordSnapshot();
  expect(signed?.allowed).toBe(true);
  at = signed!.index;
  await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'ftp', type: 'A', value: '192.0.2.11' });
  const first = await verifyDataDir(p.dataDir, { saveSnapshot: snapshot });
  expect(first.problems).toEqual([]);
  expect(first.snapshotEntries).toBe(1);
  expect(first.snapshotSaved).toBe(snapshot);
  // Saved at the signed entry, not at the end of the log.
  expect(first.size).toBe(at + 2);
  // After the snapshot: more entries for the incremental replay to check.
  await p.as(admin, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 1 }); // denied, notified
  await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'api', type: 'A', value: '192.0.2.20' });
  await p.as(bob, 'dns.record.add', { zone: 'imvu002.world', name: 'shop', type: 'A', value: '192.0.2.30' });
});
afterEach(async () => {
  await p.cleanup();
  rmSync(work, { recursive: true, force: true });
});

async function asRoot(): Promise<Database.Database> {
  await p.close();
  return rootDb();
}

/** The database as root opens it, the append-only triggers dropped (a verifier's open puts them back). */
function rootDb(): Database.Database {
  const db = new Database(join(p.dataDir, 'nexus.db'));
  for (const t of ['ledger_entries', 'ledger_nodes', 'ledger_checkpoints', 'projection_digests'])
    db.exec(`DROP TRIGGER IF EXISTS ${t}_no_update; DROP TRIGGER IF EXISTS ${t}_no_delete;`);
  return db;
}

function entries(db: Database.Database): LedgerEntry[] {
  return (db.prepare('SELECT data FROM ledger_entries ORDER BY idx').all() as { data: Buffer }[]).map((r) => decodeEntry(r.data));
}

/** A careful attacker with the platform key: the whole ledger replaced, tree rebuilt, a checkpoint freshly signed. */
function rewrite(db: Database.Database, list: LedgerEntry[]): void {
  const tree = new MemoryTree();
  db.exec('DELETE FROM ledger_entries; DELETE FROM ledger_nodes; DELETE FROM ledger_checkpoints;');
  const ins = db.prepare('INSERT INTO ledger_entries (idx, data) VALUES (?, ?)');
  for (const e of list) {
    const data = encodeEntry(e);
    ins.run(e.index, data);
    tree.append(data);
  }
  for (let level = 0; 2 ** level <= tree.size; level++)
    for (let i = 0; (i + 1) * 2 ** level <= tree.size; i++) db.prepare('INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)').run(level, i, tree.node(level, i));
  const note = signNote(formatCheckpoint({ origin: p.config.origin, size: tree.size, rootHash: tree.root() }), p.config.origin, p.platformKey);
  db.prepare('INSERT INTO ledger_checkpoints (size, note) VALUES (?, ?)').run(tree.size, note);
}

/** The full replay and the incremental one, on the same data directory. */
async function both(opts: VerifyOptions = {}): Promise<{ full: VerifyReport; incremental: VerifyReport }> {
  const full = await verifyDataDir(p.dataDir, opts);
  const incremental = await verifyDataDir(p.dataDir, { ...opts, fromSnapshot: snapshot });
  expect(full.fromSnapshot).toBeNull();
  expect(full.comparedRows).toBeNull();
  // Used (and then it compared only touched rows), or refused at once as not bound to the log.
  if (incremental.fromSnapshot !== null) expect(incremental.fromSnapshot).toBe(at);
  else expect(incremental.problems).toEqual([expect.objectContaining({ kind: 'snapshot', message: expect.stringMatching(/not bound to the log/) })]);
  return { full, incremental };
}

/** Both refuse (the same verdict); returns the incremental report for the reason. */
async function bothRefuse(opts: VerifyOptions = {}): Promise<VerifyReport> {
  const { full, incremental } = await both(opts);
  expect(full.ok).toBe(false);
  expect(incremental.ok).toBe(false);
  return incremental;
}

describe('incremental and full verification agree on every tamper case', () => {
  it('an untouched data directory: both verify, the incremental one from the snapshot', async () => {
    await p.close();
    const { full, incremental } = await both();
    expect(full.problems).toEqual([]);
    expect(incremental.problems).toEqual([]);
    expect(incremental.root).toBe(full.root);
    expect(incremental.size).toBe(full.size);
    expect(incremental.size).toBeGreaterThan(at);
    // O(tail): only the rows the entries after the snapshot touched were compared.
    expect(incremental.comparedRows).toBeGreaterThan(0);
    expect(incremental.snapshotEntries).toBe(1);
  });

  it('(a) after the snapshot: one entry whose bytes changed', async () => {
    const db = await asRoot();
    const row = db.prepare("SELECT idx, data FROM ledger_entries WHERE CAST(data AS TEXT) LIKE '%192.0.2.20%'").get() as { idx: number; data: Buffer };
    expect(row.idx).toBeGreaterThanOrEqual(at);
    db.prepare('UPDATE ledger_entries SET data = ? WHERE idx = ?').run(Buffer.from(row.data.toString().replace('192.0.2.20', '192.0.2.21')), row.idx);
    db.close();
    const r = await bothRefuse();
    expect(r.problems.map((x) => x.message).join('\n')).toMatch(/history was rewritten/);
  });

  it('(a) BEFORE the snapshot: one entry whose bytes changed is named through the snapshot root', async () => {
    const db = await asRoot();
    const row = db.prepare("SELECT idx, data FROM ledger_entries WHERE CAST(data AS TEXT) LIKE '%EU-GDPR%'").get() as { idx: number; data: Buffer };
    expect(row.idx).toBeLessThan(at);
    db.prepare('UPDATE ledger_entries SET data = ? WHERE idx = ?').run(Buffer.from(row.data.toString().replace('EU-GDPR', 'US-CCPA')), row.idx);
    db.close();
    const r = await bothRefuse();
    expect(r.problems[0]).toMatchObject({ kind: 'snapshot' });
    expect(r.problems[0]!.message).toMatch(/history before the snapshot was rewritten/);
  });

  it('(b) one entry deleted, after and before the snapshot', async () => {
    const db = await asRoot();
    db.prepare('DELETE FROM ledger_entries WHERE idx = ?').run(at + 1);
    db.close();
    expect((await bothRefuse()).problems.map((x) => x.kind)).toContain('missing-entry');
    const db2 = rootDb();
    db2.prepare('DELETE FROM ledger_entries WHERE idx = ?').run(at - 2);
    db2.close();
    const r = await bothRefuse();
    expect(r.problems.map((x) => x.kind)).toContain('missing-entry');
  });

  it('(b) the newest entry deleted: the signed checkpoint still covers it', async () => {
    const db = await asRoot();
    db.prepare('DELETE FROM ledger_entries WHERE idx = (SELECT MAX(idx) FROM ledger_entries)').run();
    db.close();
    expect((await bothRefuse()).problems.find((x) => x.kind === 'checkpoint')?.message).toMatch(/entries were removed/);
  });

  it('(b) the log cut back to before the snapshot', async () => {
    const db = await asRoot();
    db.prepare('DELETE FROM ledger_entries WHERE idx >= ?').run(at - 1);
    db.close();
    const r = await bothRefuse();
    expect(r.problems.map((x) => x.message).join('\n')).toMatch(/not bound to the log: the log has no entry \d+/);
  });

  it('(c) projection rows the entries after the snapshot touched, changed: a record edited, one deleted', async () => {
    const db = await asRoot();
    const rows = db.prepare("SELECT name, value FROM records").all() as { name: string; value: string }[];
    expect(db.prepare("UPDATE records SET value = '198.51.100.1' WHERE value = '192.0.2.20'").run().changes, JSON.stringify(rows)).toBe(1);
    db.close();
    expect((await bothRefuse()).problems.find((x) => x.kind === 'projection')?.message).toMatch(/records, row .*: value is "198.51.100.1" but the ledger gives "192.0.2.20"/);
    const db2 = new Database(join(p.dataDir, 'nexus.db'));
    db2.prepare("UPDATE records SET value = '192.0.2.20' WHERE value = '198.51.100.1'").run();
    expect(db2.prepare("DELETE FROM records WHERE value = '192.0.2.30'").run().changes).toBe(1);
    db2.close();
    expect((await bothRefuse()).problems.find((x) => x.kind === 'projection')?.message).toMatch(/records: row .* is missing from the stored state/);
  });

  it("(c) FULL PATH ONLY: stored rows the tail did not touch, edited behind the daemon (an envelope's CPU, a domain's owner)", async () => {
    const db = await asRoot();
    db.prepare("UPDATE envelopes SET cpu_cores = 1 WHERE imvu = 'IMVU-001'").run();
    db.prepare("UPDATE domains SET imvu = 'IMVU-002' WHERE name = 'imvu001.world'").run();
    db.close();
    const { full, incremental } = await both();
    // The full replay compares every row: it names the edit.
    expect(full.ok).toBe(false);
    expect(full.problems[0]!.message).toMatch(/envelopes, row imvu=IMVU-001: cpu_cores is 1 but the ledger gives 2/);
    // The incremental one compares only the rows its entries touched, and these are not among them:
    // it accepts the LOG (every entry, decision and signed digest holds), not the served rows of the
    // state before the snapshot. Those are covered by the signed state digest at the snapshot (checked
    // by anyone verifying from entry 0) and by the daemon's own scan against the digests it keeps,
    // which finds and repairs this edit at its next start (or periodic check), with an integrity.alarm:
    expect(incremental.ok).toBe(true);
    expect(incremental.comparedRows).toBeGreaterThan(0);
    const reopened = await openDataDir(p.dataDir);
    try {
      expect(reopened.integrity.startup.alarm?.tables).toEqual(expect.arrayContaining(['domains', 'envelopes']));
    } finally {
      await reopened.close();
    }
    // Repaired: both verify again.
    const after = await both();
    expect(after.full.ok).toBe(true);
    expect(after.incremental.ok).toBe(true);
  });

  it('a ledger.snapshot the platform signed with a false digest: the full replay names it, the incremental one cannot start from it', async () => {
    const lie = await p.chokepoint.submit(p.chokepoint.platformCommand('ledger.snapshot', { size: p.chokepoint.ledger.size, digest: 'ab'.repeat(32) }));
    expect(lie.allowed).toBe(true);
    await p.close();
    const r = await bothRefuse();
    const { full } = await both();
    expect(full.problems).toEqual([expect.objectContaining({ kind: 'snapshot', index: lie.index, message: expect.stringMatching(/the platform signed a false snapshot/) })]);
    // The verifier's FILE is bound to the honest entry at `at`; the lie is after it, so the tail's replay names it.
    expect(r.problems.map((x) => x.message).join('\n')).toMatch(/the platform signed a false snapshot/);
    // A FILE whose digest is the lie's cannot be used (there the log's entry records another digest).
    const full2 = await verifyDataDir(p.dataDir, { saveSnapshot: join(work, 'none') });
    expect(full2.snapshotSaved).toBeNull();
  });

  it('a snapshot FILE whose digest no signed entry records is refused at once, with a clear reason', async () => {
    await p.close();
    const meta = JSON.parse(readFileSync(join(snapshot, 'snapshot.json'), 'utf8')) as { digest: string };
    meta.digest = 'cd'.repeat(32);
    writeFileSync(join(snapshot, 'snapshot.json'), JSON.stringify(meta));
    const r = await verifyDataDir(p.dataDir, { fromSnapshot: snapshot });
    expect(r.ok).toBe(false);
    expect(r.fromSnapshot).toBeNull();
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]!.message).toMatch(new RegExp(`not bound to the log: the ledger.snapshot at entry ${at} records another state digest`));
  });

  it('--save-snapshot without any signed ledger.snapshot entry saves nothing, and says why', async () => {
    const q = await testPlatform();
    try {
      await q.register('carol', 'creator');
      const r = await verifyDataDir(q.dataDir, { saveSnapshot: join(work, 'unbound') });
      expect(r.ok).toBe(true);
      expect(r.snapshotSaved).toBeNull();
      expect(r.snapshotNotSaved).toMatch(/no allowed ledger.snapshot entry/);
    } finally {
      await q.cleanup();
    }
  });

  it('(d) a forged admin entry appended, the tree rebuilt and re-signed: a gate violation for both', async () => {
    const db = await asRoot();
    const list = entries(db);
    const index = list.length;
    const cmd = signCommand(admin.key, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 1 }, { origin: p.config.origin });
    rewrite(db, [...list, { v: 1, index, at: cmd.command.ts, command: cmd, decision: { allowed: true, gates: [{ gate: 15, status: 'pass' }] } }]);
    db.prepare("UPDATE envelopes SET cpu_cores = 1, entry = ? WHERE imvu = 'IMVU-001'").run(index);
    db.close();
    const r = await bothRefuse();
    expect(r.problems.find((x) => x.kind === 'gate-violation')).toMatchObject({ index });
  });

  it('(d) BEFORE the snapshot: a decision flipped in the past, the tree rebuilt, every seal redone with the platform key', async () => {
    const db = await asRoot();
    const list = entries(db);
    // The admin's denied scale is after the snapshot; flip an earlier entry instead: the second IMVU's creation, recorded as denied.
    const victim = list.findIndex((e) => e.index < at && e.command?.command?.type === 'imvu.create' && e.command.command.body.name === 'Shop');
    expect(victim).toBeGreaterThan(0);
    list[victim] = { ...list[victim]!, decision: { allowed: false, gates: [{ gate: 0, status: 'deny', reason: 'forged' }] } };
    rewrite(db, list);
    db.close();
    await resealAsRoot(p.dataDir, p.config.origin, p.platformKey);
    const r = await bothRefuse();
    // The full replay finds the gate violation; the incremental one, which does not replay the past, the changed prefix.
    expect(r.problems[0]).toMatchObject({ kind: 'snapshot' });
    expect(r.problems[0]!.message).toMatch(/history before the snapshot was rewritten/);
  });

  it("(e) a log rewritten invisibly to replay: both refuse with the creator's saved checkpoint; the snapshot alone names it too", async () => {
    const saved = await p.chokepoint.ledger.checkpoint();
    const db = await asRoot();
    const list = entries(db);
    const victim = list.findIndex((e) => e.index < at && e.command.command.type === 'dns.record.add');
    list[victim] = { ...list[victim]!, at: new Date(Date.parse(list[victim]!.at) + 1).toISOString() };
    rewrite(db, list);
    db.close();
    await resealAsRoot(p.dataDir, p.config.origin, p.platformKey);
    const r = await bothRefuse({ savedCheckpoint: saved });
    expect(r.problems.map((x) => x.kind)).toContain('consistency');
    // Without the saved checkpoint the full replay cannot tell (the rewrite is self-consistent);
    // the snapshot is the verifier's own record of the prefix, so the incremental one still does.
    const { full, incremental } = await both();
    expect(full.problems).toEqual([]);
    expect(incremental.ok).toBe(false);
    expect(incremental.problems[0]!.message).toMatch(/history before the snapshot was rewritten/);
  });

  it('a projection digest the platform recorded before the snapshot, changed: both refuse', async () => {
    const db = await asRoot();
    const row = db.prepare('SELECT size FROM projection_digests WHERE size < ? ORDER BY size DESC LIMIT 1').get(at) as { size: number };
    db.prepare('UPDATE projection_digests SET digest = ? WHERE size = ?').run('0'.repeat(64), row.size);
    db.close();
    const r = await bothRefuse();
    expect(r.problems.map((x) => x.message).join('\n')).toMatch(/projection digests the platform recorded up to tree size \d+ are not those verified/);
  });

  it("the snapshot's own state edited: refused as a snapshot that is not what was verified", async () => {
    await p.close();
    const db = new Database(join(snapshot, 'replay.db'));
    db.prepare("UPDATE envelopes SET cpu_cores = 1 WHERE imvu = 'IMVU-001'").run();
    db.close();
    const { full, incremental } = await both();
    expect(full.ok).toBe(true);
    expect(incremental.ok).toBe(false);
    expect(incremental.problems[0]).toMatchObject({ kind: 'snapshot' });
    expect(incremental.problems[0]!.message).toMatch(/not the state it was verified with/);
  });
});
