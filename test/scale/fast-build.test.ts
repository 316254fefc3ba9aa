// bench/scale's fast build path (bench/scale/build.ts --fast) must produce the log the chokepoint
// produces one command at a time: the same entries, the same signatures, the same projections.
// Both builds start from one copy of the same data directory and are reproducible (seeded keys and
// nonces, a fixed clock, the same pre-generated IMVU keys), so they can be compared byte for byte;
// only the checkpoints differ (one per commit, and the fast path commits in batches).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { verifyDataDir } from '../../src/core/policy/verify.ts';
import { DIGEST_TABLES, rowExpression } from '../../src/core/store/digest.ts';
import { build, makeKeySets, prepareServices } from '../../bench/scale/build.ts';

let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'nexus-fast-build-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function dump(dir: string): { entries: Buffer[]; tables: Record<string, string[]>; checkpoints: number } {
  const db = new Database(join(dir, 'nexus.db'), { readonly: true });
  try {
    const entries = (db.prepare('SELECT data FROM ledger_entries ORDER BY idx').all() as { data: Buffer }[]).map((r) => r.data);
    const tables: Record<string, string[]> = {};
    for (const t of DIGEST_TABLES) tables[t] = (db.prepare(`SELECT ${rowExpression(t)} AS r FROM ${t} ORDER BY rowid`).all() as { r: string }[]).map((r) => r.r);
    const checkpoints = (db.prepare('SELECT COUNT(*) AS n FROM ledger_checkpoints').get() as { n: number }).n;
    return { entries, tables, checkpoints };
  } finally {
    db.close();
  }
}

describe('bench/scale fast build path', () => {
  it('builds the same entries and projections as the chokepoint one command at a time, and verifies', async () => {
    const seed = 'fast-build-test';
    const template = join(root, 'template');
    const p = await initDataDir(template);
    await prepareServices(p, seed);
    const t0 = Date.now();
    await p.close();
    const repro = { seed, at: new Date(t0 + 3_600_000).toISOString() };
    const slowDir = join(root, 'slow');
    const fastDir = join(root, 'fast');
    cpSync(template, slowDir, { recursive: true });
    cpSync(template, fastDir, { recursive: true });
    const keySets = await makeKeySets(3);
    const said: string[] = [];
    const quiet = (m: string) => void said.push(m);
    const slow = await build({ dataDir: slowDir, entries: 260, imvus: 12, concurrency: 1, keySets, repro, log: quiet });
    const fast = await build({ dataDir: fastDir, entries: 260, imvus: 12, fast: true, keySets, repro, log: quiet });
    expect(said.filter((m) => m.startsWith('denied'))).toEqual([]);
    expect(slow.denied).toBe(0);
    expect(fast.denied).toBe(0);
    expect(fast.entries).toBe(slow.entries);
    expect(slow.entries).toBeGreaterThanOrEqual(260);

    const a = dump(slowDir);
    const b = dump(fastDir);
    expect(b.entries.length).toBe(a.entries.length);
    // Byte for byte, signatures included.
    for (let i = 0; i < a.entries.length; i++) expect(b.entries[i]!.equals(a.entries[i]!), `entry ${i}`).toBe(true);
    for (const t of DIGEST_TABLES) expect(b.tables[t], t).toEqual(a.tables[t]);
    // The two paths did differ: the fast one committed in far fewer batches.
    expect(b.checkpoints).toBeLessThan(a.checkpoints / 4);

    const verdict = await verifyDataDir(fastDir);
    expect(verdict.problems).toEqual([]);
  }, 600_000);
});
