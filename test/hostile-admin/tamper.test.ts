// A hostile admin with root edits the database file directly. Each edit must be caught by
// `verifyDataDir`, which trusts only the entry bytes, the signatures and the gates.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { decodeEntry, encodeEntry } from '../../src/core/ledger/ledger.ts';
import { MemoryTree } from '../../src/core/ledger/merkle.ts';
import { formatCheckpoint, signNote } from '../../src/core/ledger/checkpoint.ts';
import { verifyDataDir } from '../../src/core/policy/verify.ts';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { resealAsRoot } from '../support/root.ts';

let p: TestPlatform;
let alice: Actor;
let bob: Actor;
let admin: Actor;

beforeEach(async () => {
  p = await testPlatform();
  alice = await p.register('alice', 'creator');
  bob = await p.register('bob', 'creator');
  admin = await p.register('ops', 'admin');
  await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'EU-GDPR' });
  await p.as(bob, 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'US-CCPA' });
  await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.10' });
  await p.as(admin, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 1 }); // denied, notified
  await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'api', type: 'A', value: '192.0.2.11' });
});
afterEach(async () => p.cleanup());

/** Closes the platform and opens its database as root would, with the append-only triggers dropped. */
async function asRoot(): Promise<Database.Database> {
  await p.close();
  const db = new Database(join(p.dataDir, 'nexus.db'));
  for (const t of ['ledger_entries', 'ledger_nodes', 'ledger_checkpoints', 'projection_digests'])
    db.exec(`DROP TRIGGER IF EXISTS ${t}_no_update; DROP TRIGGER IF EXISTS ${t}_no_delete;`);
  return db;
}

function entries(db: Database.Database): LedgerEntry[] {
  return (db.prepare('SELECT data FROM ledger_entries ORDER BY idx').all() as { data: Buffer }[]).map((r) => decodeEntry(r.data));
}

/** Rewrites the whole ledger to `list` the way a careful attacker would: rebuilt tree, freshly signed checkpoint. */
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
    for (let i = 0; (i + 1) * 2 ** level <= tree.size; i++)
      db.prepare('INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)').run(level, i, tree.node(level, i));
  const note = signNote(formatCheckpoint({ origin: p.config.origin, size: tree.size, rootHash: tree.root() }), p.config.origin, p.platformKey);
  db.prepare('INSERT INTO ledger_checkpoints (size, note) VALUES (?, ?)').run(tree.size, note);
}

describe('verify detects a hostile admin with root on the database file', () => {
  it('an untouched data directory verifies', async () => {
    await p.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it('the triggers refuse UPDATE and DELETE on the ledger', async () => {
    await p.close();
    const db = new Database(join(p.dataDir, 'nexus.db'));
    expect(() => db.prepare('UPDATE ledger_entries SET data = ? WHERE idx = 3').run(Buffer.from('x'))).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM ledger_entries WHERE idx = 3').run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM ledger_checkpoints').run()).toThrow(/append-only/);
    db.close();
  });

  it('(a) one entry whose bytes changed', async () => {
    const db = await asRoot();
    const row = db.prepare("SELECT idx, data FROM ledger_entries WHERE CAST(data AS TEXT) LIKE '%EU-GDPR%'").get() as { idx: number; data: Buffer };
    db.prepare('UPDATE ledger_entries SET data = ? WHERE idx = ?').run(Buffer.from(row.data.toString().replace('EU-GDPR', 'US-CCPA')), row.idx);
    db.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.ok).toBe(false);
    expect(r.problems[0]!.kind).toBe('checkpoint');
    expect(r.problems[0]!.message).toMatch(/history was rewritten/);
  });

  it('(b) one entry deleted', async () => {
    const db = await asRoot();
    db.prepare('DELETE FROM ledger_entries WHERE idx = 6').run();
    db.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatchObject({ kind: 'missing-entry', index: 6 });
  });

  it('(b) the newest entry deleted: the signed checkpoint still covers it', async () => {
    const db = await asRoot();
    const last = (db.prepare('SELECT MAX(idx) AS n FROM ledger_entries').get() as { n: number }).n;
    db.prepare('DELETE FROM ledger_entries WHERE idx = ?').run(last);
    db.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.ok).toBe(false);
    expect(r.problems.find((x) => x.kind === 'checkpoint')?.message).toMatch(/entries were removed/);
  });

  it("(c) a projection row changed: an envelope's CPU lowered", async () => {
    const db = await asRoot();
    db.prepare("UPDATE envelopes SET cpu_cores = 1 WHERE imvu = 'IMVU-001'").run();
    db.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.ok).toBe(false);
    expect(r.problems[0]!.kind).toBe('projection');
    expect(r.problems[0]!.message).toMatch(/envelopes, row imvu=IMVU-001: cpu_cores is 1 but the ledger gives 2/);
  });

  it("(c) a projection row changed: a domain's owner changed", async () => {
    const db = await asRoot();
    db.prepare("UPDATE domains SET imvu = 'IMVU-002' WHERE name = 'imvu001.world'").run();
    db.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.problems[0]!.message).toMatch(/domains, row name=imvu001.world: imvu is "IMVU-002" but the ledger gives "IMVU-001"/);
  });

  it('(d) an entry inserted by SQL that lowers an envelope, signed only by an admin: a gate violation', async () => {
    const db = await asRoot();
    const list = entries(db);
    const index = list.length;
    // The attacker holds the platform key (root), so the tree and a fresh signed checkpoint are
    // rebuilt around the forged entry: only the gates can tell.
    const cmd = signCommand(admin.key, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 1 }, { origin: p.config.origin });
    const forged: LedgerEntry = { v: 1, index, at: cmd.command.ts, command: cmd, decision: { allowed: true, gates: [{ gate: 15, status: 'pass' }] } };
    rewrite(db, [...list, forged]);
    db.prepare("UPDATE envelopes SET cpu_cores = 1, entry = ? WHERE imvu = 'IMVU-001'").run(index);
    db.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toMatchObject({ kind: 'gate-violation', index });
    expect(r.problems[0]!.message).toMatch(/recorded as allowed, but the gates say denied \(gate 15: .*needs its creator's signature/);
  });

  it("(e) a creator's saved checkpoint exposes a log rewritten after it", async () => {
    const saved = await p.chokepoint.ledger.checkpoint();
    const db = await asRoot();
    const list = entries(db);
    // Rewrite history invisibly to replay: move the time of an old entry by a millisecond, rebuild
    // the tree and re-sign a checkpoint with the platform key.
    const victim = list.findIndex((e) => e.command.command.type === 'dns.record.add');
    list[victim] = { ...list[victim]!, at: new Date(Date.parse(list[victim]!.at) + 1).toISOString() };
    rewrite(db, list);
    db.close();
    // The checkpoint file outside the database still has the old root.
    const fileTells = await verifyDataDir(p.dataDir);
    expect(fileTells.problems.map((x) => x.kind)).toContain('checkpoint-file');
    // Root rewrites that too, with the platform key: self-consistent, only an outside copy can tell.
    await resealAsRoot(p.dataDir, p.config.origin, p.platformKey);
    const withoutWitness = await verifyDataDir(p.dataDir);
    expect(withoutWitness.problems).toEqual([]);
    const r = await verifyDataDir(p.dataDir, { savedCheckpoint: saved });
    expect(r.ok).toBe(false);
    expect(r.problems[0]!.kind).toBe('consistency');
    expect(r.problems[0]!.message).toMatch(/tree size \d+\) is not a prefix of the log/);
  });
});

describe('replay reproduces projections byte for byte', () => {
  it('whatever key order the client sent (route policy stored as JSON)', async () => {
    const policy = { restricted: [], public: [{ backend: 'web', path: '/*' }], private: [{ require_identity: true, path: '/in/*', backend: 'api' }] };
    expect((await p.as(alice, 'route.set', { policy, imvu: 'IMVU-001' })).allowed).toBe(true);
    await p.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.problems).toEqual([]);
  });
});
