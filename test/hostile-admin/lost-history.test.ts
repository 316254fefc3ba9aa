// Lost history is noticed by the platform itself. Acknowledged entries disappear from nexus.db (the
// WAL dropped after kill -9, a copy made without its -wal file, rows deleted with the append-only
// triggers dropped): the platform must refuse to start, with one line naming both sizes and exit
// code 5, instead of serving a shorter log. And `audit verify --data` must check every stored
// checkpoint, so checkpoints signed with the real platform key that contradict the log are named.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { initDataDir, openDataDir, PLATFORM_CONFIG_FILE } from '../../src/core/platform.ts';
import { CHECKPOINT_FILE } from '../../src/core/ledger/checkpoint-file.ts';
import { formatCheckpoint, signNote } from '../../src/core/ledger/checkpoint.ts';
import { EXIT_LOST_HISTORY, LostHistoryError } from '../../src/core/policy/integrity.ts';
import { verifyDataDir } from '../../src/core/policy/verify.ts';
import { testPlatform, type TestPlatform } from '../../src/core/testing.ts';
import { spawnDaemon } from '../support/daemon.ts';
import { Client, newKey } from '../support/api.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { openAsRoot } from '../support/root.ts';
import { run, tempDir } from '../cli/harness.ts';

let p: TestPlatform;
const dirs: string[] = [];

beforeEach(async () => {
  p = await testPlatform();
  const alice = await p.register('alice', 'creator');
  await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'EU-GDPR' });
  for (let i = 0; i < 6; i++) await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: `h${i}`, type: 'A', value: `192.0.2.${i + 1}` });
});
afterEach(async () => {
  await p.cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A copy of the data directory as it is on disk now: `withWal` false leaves nexus.db-wal behind. */
function copyDataDir(withWal: boolean): string {
  const to = mkdtempSync(join(tmpdir(), 'nexus-copy-'));
  dirs.push(to);
  cpSync(join(p.dataDir, 'keys'), join(to, 'keys'), { recursive: true });
  for (const f of [PLATFORM_CONFIG_FILE, CHECKPOINT_FILE, 'nexus.db', ...(withWal ? ['nexus.db-wal'] : [])])
    if (existsSync(join(p.dataDir, f))) copyFileSync(join(p.dataDir, f), join(to, f));
  return to;
}

async function refusal(dataDir: string): Promise<LostHistoryError> {
  const err = await openDataDir(dataDir).then(
    async (q) => {
      await q.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LostHistoryError);
  expect((err as Error).message).not.toContain('\n');
  return err as LostHistoryError;
}

describe('the platform refuses to start on a database that lost acknowledged entries', () => {
  it('a copy of nexus.db without its -wal: refused, naming both sizes (and the CLI exits 5)', async () => {
    // Part of the log reaches the main file (a WAL checkpoint), the rest stays in the WAL.
    const side = new Database(join(p.dataDir, 'nexus.db'));
    side.pragma('wal_checkpoint(TRUNCATE)');
    side.close();
    const inMainFile = p.chokepoint.ledger.size;
    const alice2 = await p.register('carol', 'creator');
    await p.as(alice2, 'imvu.create', { name: 'Studio', owner: alice2.id, jurisdiction: 'US-CCPA' });
    const acknowledged = p.chokepoint.ledger.size;
    expect(acknowledged).toBeGreaterThan(inMainFile);

    // With its WAL the copy is whole and opens.
    const whole = copyDataDir(true);
    await (await openDataDir(whole)).close();

    const lost = copyDataDir(false);
    const err = await refusal(lost);
    expect(err.exitCode).toBe(EXIT_LOST_HISTORY);
    expect(err.message).toContain(`holds ${inMainFile} ledger entries but the checkpoint in ${lost}/${CHECKPOINT_FILE} covers ${acknowledged}`);
    expect(err.message).toContain(`${acknowledged - inMainFile} acknowledged entries are missing`);

    // Verify says so too, instead of OK.
    const r = await verifyDataDir(lost);
    expect(r.ok).toBe(false);
    expect(r.problems).toContainEqual({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} covers ${acknowledged} entries but the log has only ${inMainFile}: acknowledged entries were lost` });

    const serve = await run(['serve', '--data', lost, '--port', '0', '--no-dns'], { NEXUS_HOME: tempDir('home') });
    expect(serve.code).toBe(5);
    expect(serve.stderr.trim().split('\n')).toHaveLength(1);
    expect(serve.stderr).toContain(`holds ${inMainFile} ledger entries but the checkpoint`);
  });

  it('the newest entries deleted by SQL with the triggers dropped, in a copy: refused', async () => {
    const copy = copyDataDir(true);
    const size = p.chokepoint.ledger.size;
    const db = openAsRoot(copy);
    // A careful attacker removes the entries, their tree nodes and the checkpoints that cover them.
    db.prepare('DELETE FROM ledger_entries WHERE idx >= ?').run(size - 3);
    db.prepare('DELETE FROM ledger_checkpoints WHERE size > ?').run(size - 3);
    db.prepare('DELETE FROM projection_digests WHERE size > ?').run(size - 3);
    db.close();
    const err = await refusal(copy);
    expect(err.message).toContain(`holds ${size - 3} ledger entries but the checkpoint in ${copy}/${CHECKPOINT_FILE} covers ${size}`);
  });

  it('an entry deleted from the middle: refused (a gap)', async () => {
    const copy = copyDataDir(true);
    const db = openAsRoot(copy);
    db.prepare('DELETE FROM ledger_entries WHERE idx = 5').run();
    db.close();
    expect((await refusal(copy)).message).toMatch(/has gaps: \d+ entries stored for tree size \d+/);
  });

  it('an entry deleted from the middle with the counting index dropped too: still refused', async () => {
    const copy = copyDataDir(true);
    const db = openAsRoot(copy);
    db.prepare('DROP INDEX ledger_entries_count').run();
    db.prepare('DELETE FROM ledger_entries WHERE idx = 5').run();
    db.close();
    expect((await refusal(copy)).message).toMatch(/has gaps: \d+ entries stored for tree size \d+/);
  });

  it('the checkpoint file removed from a database that was written with it: refused', async () => {
    const copy = copyDataDir(true);
    unlinkSync(join(copy, CHECKPOINT_FILE));
    expect((await refusal(copy)).message).toContain(`${CHECKPOINT_FILE} is missing`);
    expect((await verifyDataDir(copy)).problems.map((x) => x.kind)).toContain('checkpoint-file');
  });

  it('a checkpoint file not signed by the platform key: refused', async () => {
    const copy = copyDataDir(true);
    const text = readFileSync(join(copy, CHECKPOINT_FILE), 'utf8');
    writeFileSync(join(copy, CHECKPOINT_FILE), text.replace(/\n(\d+)\n/, (_m, n: string) => `\n${Number(n) - 1}\n`));
    expect((await refusal(copy)).message).toMatch(/does not verify with the platform key: invalid signature/);
  });
});

describe('kill -9 and a dropped WAL, with the real daemon process', () => {
  it('the daemon refuses to start and exits 5, naming both sizes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-killed-'));
    dirs.push(dir);
    const init = await initDataDir(dir);
    const origin = init.config.origin;
    await init.close(); // closing writes the WAL back into nexus.db
    const d = await spawnDaemon(dir, ['--no-dns']);
    const client = new Client(d.url);
    const k = newKey();
    expect((await client.request('POST', '/v1/identities', signCommand(k.key, 'identity.register', { name: 'alice', role: 'creator', publicKey: k.publicKey }, { origin }))).status).toBe(201);
    expect((await client.request('POST', '/v1/imvus', signCommand(k.key, 'imvu.create', { name: 'Gallery', owner: k.id, jurisdiction: 'EU-GDPR' }, { origin }))).status).toBe(201);
    const acknowledged = await client.size();
    d.child.kill('SIGKILL');
    await d.exited;
    for (const f of ['nexus.db-wal', 'nexus.db-shm']) rmSync(join(dir, f), { force: true });

    const again = await spawnDaemon(dir, ['--no-dns']).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(again?.message).toMatch(/^daemon exited \(code 5, signal null\) before listening/);
    const line = again!.message.split('\n').find((l) => l.startsWith('nexus serve: '));
    expect(line).toMatch(new RegExp(`^nexus serve: the database holds \\d+ ledger entries but the checkpoint in .* covers ${acknowledged}: \\d+ acknowledged entries are missing`));
  });
});

describe('audit verify checks every stored checkpoint, not only the newest', () => {
  it('checkpoints signed with the real platform key that contradict the log are named', async () => {
    await p.close();
    const db = openAsRoot(p.dataDir);
    const sizes = (db.prepare('SELECT size FROM ledger_checkpoints ORDER BY size').all() as { size: number }[]).map((r) => r.size);
    const latest = sizes[sizes.length - 1]!;
    const forged = sizes.slice(0, -1).slice(-8);
    expect(forged.length).toBe(8);
    for (const size of forged) {
      const note = signNote(formatCheckpoint({ origin: p.config.origin, size, rootHash: randomBytes(32) }), p.config.origin, p.platformKey);
      db.prepare('UPDATE ledger_checkpoints SET note = ? WHERE size = ?').run(note, size);
    }
    db.close();
    const r = await verifyDataDir(p.dataDir);
    expect(r.ok).toBe(false);
    const named = r.problems.filter((x) => x.kind === 'checkpoint').map((x) => x.message);
    expect(named).toEqual(
      forged.map((s) => `stored checkpoint at tree size ${s} is signed by the platform key but contradicts the log (its root is not that of the first ${s} entries): history was rewritten`),
    );
    expect(r.problems.some((x) => x.message.includes(`tree size ${latest}`))).toBe(false);

    const audit = await run(['audit', 'verify', '--data', p.dataDir], { NEXUS_HOME: tempDir('home') });
    expect(audit.code).toBe(4);
    for (const s of forged) expect(audit.stdout).toContain(`stored checkpoint at tree size ${s} is signed by the platform key but contradicts the log`);
  });

  it('a checkpoint beyond the log, and one not signed by the platform key, are named', async () => {
    await p.close();
    const db = openAsRoot(p.dataDir);
    const size = (db.prepare('SELECT MAX(size) AS n FROM ledger_checkpoints').get() as { n: number }).n;
    const beyond = signNote(formatCheckpoint({ origin: p.config.origin, size: size + 50, rootHash: randomBytes(32) }), p.config.origin, p.platformKey);
    db.prepare('INSERT INTO ledger_checkpoints (size, note) VALUES (?, ?)').run(size + 50, beyond);
    const stranger = signNote(formatCheckpoint({ origin: p.config.origin, size: 2, rootHash: randomBytes(32) }), p.config.origin, newKey().key);
    db.prepare('UPDATE ledger_checkpoints SET note = ? WHERE size = 2').run(stranger);
    db.close();
    const r = await verifyDataDir(p.dataDir);
    const messages = r.problems.map((x) => x.message);
    expect(messages.some((m) => m.includes(`covers ${size + 50} entries but the log has only ${size}`))).toBe(true);
    expect(messages).toContainEqual(expect.stringMatching(/^stored checkpoint at tree size 2: note has no verifiable signature/));
  });
});
