// Incremental verification (`nexus audit verify --data --from-snapshot`) against the full replay
// from entry 0: every tamper of the hostile-admin suite gets the same verdict from both, whether
// the tamper is after the snapshot (replayed) or before it (hashed only: the snapshot knows the
// root of the prefix it was verified against, so a rewritten past is named, never passed).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { decodeEntry, encodeEntry } from '../../src/core/ledger/ledger.ts';
import { MemoryTree } from '../../src/core/ledger/merkle.ts';
import { formatCheckpoint, signNote } from '../../src/core/ledger/checkpoint.ts';
import { verifyDataDir, type VerifyOptions, type VerifyReport } from '../../src/core/policy/verify.ts';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
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
  const first = await verifyDataDir(p.dataDir, { saveSnapshot: snapshot });
  expect(first.problems).toEqual([]);
  expect(first.snapshotSaved).toBe(snapshot);
  at = first.size;
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
  expect(incremental.fromSnapshot).toBe(at);
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
    expect(r.problems.map((x) => x.message).join('\n')).toMatch(/the snapshot covers \d+ entries but the log has only/);
  });

  it("(c) projection rows changed: an envelope's CPU lowered, a domain's owner changed", async () => {
    const db = await asRoot();
    db.prepare("UPDATE envelopes SET cpu_cores = 1 WHERE imvu = 'IMVU-001'").run();
    db.close();
    expect((await bothRefuse()).problems[0]!.message).toMatch(/envelopes, row imvu=IMVU-001: cpu_cores is 1 but the ledger gives 2/);
    const db2 = new Database(join(p.dataDir, 'nexus.db'));
    db2.prepare("UPDATE envelopes SET cpu_cores = 2 WHERE imvu = 'IMVU-001'").run();
    db2.prepare("UPDATE domains SET imvu = 'IMVU-002' WHERE name = 'imvu001.world'").run();
    db2.close();
    expect((await bothRefuse()).problems[0]!.message).toMatch(/domains, row name=imvu001.world: imvu is "IMVU-002" but the ledger gives "IMVU-001"/);
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
