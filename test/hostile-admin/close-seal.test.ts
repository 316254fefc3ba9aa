// A clean restart skips the start-up scan only when the database file is exactly the one the daemon
// closed (src/core/policy/close-seal.ts). Each way root could slip an edit past that is tried here:
// an edit whose modification time was set back, an edit left in the WAL, a forged seal, an old seal
// put back, and a seal re-signed with the platform key (root can read it), which the full check run
// right after such a start still catches.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDataDir, openDataDir, type OpenPlatform } from '../../src/core/platform.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { CLOSE_SEAL_FILE, writeCloseSeal } from '../../src/core/policy/close-seal.ts';
import { startServer } from '../../src/api/server.ts';
import { eventually } from '../../src/domains/dns-authority/testing.ts';
import { openAsRoot } from '../support/root.ts';

let dir: string;
let p: OpenPlatform | undefined;
const seal = () => join(dir, CLOSE_SEAL_FILE);
const db = () => join(dir, 'nexus.db');

async function open(): Promise<OpenPlatform> {
  p = await openDataDir(dir);
  return p;
}
async function close(): Promise<void> {
  await p?.close();
  p = undefined;
}
async function sealState(q: OpenPlatform) {
  const state = await q.integrity.sealState();
  if (typeof state === 'string') throw new Error(state);
  return state;
}
const cpu = async (q: OpenPlatform) => (await q.store.get<{ cpu_cores: number }>("SELECT cpu_cores FROM envelopes WHERE imvu = 'IMVU-001'"))?.cpu_cores;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nexus-close-seal-'));
  const q = await initDataDir(dir);
  const { privateKey } = generateKeyPair();
  const raw = publicKeyRaw(privateKey);
  const as = (type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(privateKey, type, body, { origin: q.config.origin });
  expect((await q.chokepoint.submit(as('identity.register', { name: 'alice', role: 'creator', publicKey: raw.toString('base64') }))).allowed).toBe(true);
  expect((await q.chokepoint.submit(as('imvu.create', { name: 'Gallery', owner: identityIdFromPublicKey(raw), jurisdiction: 'US-CCPA', envelope: { cpu_cores: 2, memory_gb: 1, storage_gb: 1 } }))).allowed).toBe(true);
  await q.close();
});

afterEach(async () => {
  await close();
  rmSync(dir, { recursive: true, force: true });
});

/** Root's edit of one envelope, the same number of bytes (the file keeps its size). */
function tamper(keepOpen = false): Database.Database {
  const d = new Database(db());
  d.pragma('wal_autocheckpoint = 0');
  expect(d.prepare("UPDATE envelopes SET cpu_cores = 9 WHERE imvu = 'IMVU-001'").run().changes).toBe(1);
  if (!keepOpen) d.close();
  return d;
}

describe('the close seal: a clean restart skips the start-up scan, an edited file never does', () => {
  it('a clean close seals the file; the next start takes the digests from it, removes it, and the state is the same', async () => {
    expect(existsSync(seal())).toBe(true);
    const q = await open();
    expect(q.integrity.startup).toMatchObject({ scanned: false, replayed: false });
    expect(q.integrity.startup.sealRefused).toBeUndefined();
    expect(existsSync(seal())).toBe(false);
    expect(await cpu(q)).toBe(2);
    // The first check after a sealed start runs at once (interval 0: no routine checks) and finds nothing.
    q.integrity.start(0);
    await eventually(async () => expect(q.integrity.lastCheckPath).toBe('snapshot'), 20_000);
    expect(q.integrity.alarms).toEqual([]);
    await close();
    // A start that did not end in a clean close (a crash) leaves no seal behind: the next start scans.
    rmSync(seal());
    expect((await open()).integrity.startup).toMatchObject({ scanned: true, sealRefused: expect.stringMatching(/no close seal/) });
  });

  it('an edit whose modification time root set back: the change time moved, so the start scans, repairs and alarms', async () => {
    const before = statSync(db(), { bigint: true });
    // touch -r: the times to the nanosecond, as root would put them back.
    const ref = join(dir, 'times');
    execFileSync('touch', ['-r', db(), ref]);
    tamper();
    execFileSync('touch', ['-r', ref, db()]);
    const after = statSync(db(), { bigint: true });
    expect([after.mtimeNs, after.size, after.ino]).toEqual([before.mtimeNs, before.size, before.ino]);
    const q = await open();
    expect(q.integrity.startup.scanned).toBe(true);
    expect(q.integrity.startup.sealRefused).toMatch(/nexus\.db changed since the daemon closed it \(ctimeNs\)/);
    expect(q.integrity.startup.alarm).toMatchObject({ trigger: 'start', imvus: ['IMVU-001'] });
    expect(await cpu(q)).toBe(2);
  });

  it('an edit left in the WAL (the main file untouched): the start scans, repairs and alarms', async () => {
    const before = statSync(db(), { bigint: true });
    const tamperer = tamper(true);
    try {
      expect(statSync(db(), { bigint: true }).ctimeNs).toBe(before.ctimeNs);
      const q = await open();
      expect(q.integrity.startup.scanned).toBe(true);
      expect(q.integrity.startup.sealRefused).toMatch(/nexus\.db-wal holds writes/);
      expect(q.integrity.startup.alarm).toMatchObject({ trigger: 'start', imvus: ['IMVU-001'] });
      expect(await cpu(q)).toBe(2);
      await close();
    } finally {
      tamperer.close();
    }
  });

  it('a seal signed by another key is refused; an old seal put back after later commits is refused', async () => {
    const old = join(dir, 'old.seal');
    copyFileSync(seal(), old);
    // Forged: the same text signed by a key that is not the platform's.
    const forged = generateKeyPair().privateKey;
    const q0 = await open();
    const state = await sealState(q0);
    await close();
    rmSync(seal());
    const config = JSON.parse(readFileSync(join(dir, 'platform.json'), 'utf8')) as { origin: string };
    writeCloseSeal(dir, config.origin, forged, state);
    const q1 = await open();
    expect(q1.integrity.startup.scanned).toBe(true);
    expect(q1.integrity.startup.sealRefused).toMatch(/does not verify with the platform key/);
    // A commit, a clean close, then the first seal put back over the new one.
    expect(await q1.integrity.recordSnapshot()).toBeDefined();
    await close();
    copyFileSync(old, seal());
    const q2 = await open();
    expect(q2.integrity.startup.scanned).toBe(true);
    expect(q2.integrity.startup.sealRefused).toMatch(/changed since the daemon closed it|close seal is for tree size/);
  });

  it('a seal re-signed by root with the platform key over an edited file: the start trusts it, the first check repairs and alarms', async () => {
    const q0 = await open();
    const state = await sealState(q0);
    const key = q0.platformKey;
    const origin = q0.config.origin;
    await close();
    tamper();
    writeCloseSeal(dir, origin, key, state);
    const q = await open();
    expect(q.integrity.startup.scanned).toBe(false);
    expect(q.integrity.startup.alarm).toBeUndefined();
    q.integrity.start(0);
    await eventually(async () => expect(q.integrity.alarms).toHaveLength(1), 20_000);
    expect(q.integrity.alarms[0]).toMatchObject({ trigger: 'periodic', imvus: ['IMVU-001'], tables: expect.arrayContaining(['envelopes']) });
    expect(await cpu(q)).toBe(2);
  });

  it('an entry deleted while the daemon runs: the close counts the entries and leaves no seal, so the next start refuses (a gap)', async () => {
    const q = await open();
    const root = openAsRoot(dir);
    expect(root.prepare('DELETE FROM ledger_entries WHERE idx = 1').run().changes).toBe(1);
    root.close();
    expect(await q.integrity.sealState()).toMatch(/entries stored for tree size/);
    await close();
    expect(existsSync(seal())).toBe(false);
    await expect(open()).rejects.toThrow(/has gaps: \d+ entries stored for tree size \d+/);
  });

  it('a seal re-signed by root over a file with an entry deleted: the start spares the count, the first check finds the gap', async () => {
    const q0 = await open();
    const state = await sealState(q0);
    const key = q0.platformKey;
    const origin = q0.config.origin;
    await close();
    const root = openAsRoot(dir);
    expect(root.prepare('DELETE FROM ledger_entries WHERE idx = 1').run().changes).toBe(1);
    root.close();
    writeCloseSeal(dir, origin, key, state);
    const q = await open();
    expect(q.integrity.startup.scanned).toBe(false);
    expect(q.integrity.lostHistory).toBeUndefined();
    const errors: unknown[] = [];
    q.integrity.start(0, (err) => errors.push(err));
    await eventually(async () => expect(q.integrity.lostHistory).toMatch(/the ledger has gaps: \d+ entries stored for tree size \d+/), 20_000);
    expect(errors).toEqual([expect.objectContaining({ name: 'LostHistoryError' })]);
    await eventually(async () => expect(q.integrity.lastCheck?.alarm).toBe(true), 20_000);
    // Known now: this close seals nothing, and the next start counts and refuses.
    await close();
    expect(existsSync(seal())).toBe(false);
    await expect(open()).rejects.toThrow(/has gaps/);
  });

  it('the daemon leaves a seal when it stops (DNS readers closed first) and says so when it starts', async () => {
    rmSync(seal());
    const lines: string[] = [];
    const logStream = { write: (l: string) => void lines.push(l) } as unknown as NodeJS.WritableStream;
    let server = await startServer({ dataDir: dir, port: 0, logStream, dns: { port: 0 }, integrityIntervalMs: 0 });
    expect(lines.join('')).toMatch(/"why":"no close seal[^"]*","msg":"every projection row scanned at start"/);
    await server.close();
    expect(existsSync(seal())).toBe(true);
    lines.length = 0;
    server = await startServer({ dataDir: dir, port: 0, logStream, dns: { port: 0 }, integrityIntervalMs: 0 });
    try {
      expect(lines.join('')).toMatch(/start-up scan skipped, every row is checked on a worker thread while serving/);
      // `nexus status` says when the rows were last compared: after the check the sealed start ran at once.
      await eventually(async () => expect((await server.status()).integrity.lastCheck).not.toBeNull(), 20_000);
      expect((await server.status()).integrity.alarm).toBe(false);
    } finally {
      await server.close();
    }
  }, 60_000);
});
