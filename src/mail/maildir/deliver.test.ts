import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { renameSync } from 'node:fs';
import type { SqlReader } from '../../core/store/index.ts';
import Database from 'better-sqlite3';
import { deliverToMailbox, deliverToMaildir, ensureMaildir, mailboxState, uniqueName } from './deliver.ts';
import { imvuDir, mailboxRoot } from './paths.ts';
import { restorePendingFile } from '../../imvu/import/paths.ts';

const dirs: string[] = [];
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), 'maildir-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('deliverToMaildir', () => {
  it('writes into new/ (0600) through tmp/, from a buffer or a stream', async () => {
    const root = join(temp(), 'box');
    const a = await deliverToMaildir(root, Buffer.from('Subject: a\r\n\r\na\r\n'));
    const b = await deliverToMaildir(root, Readable.from([Buffer.from('Subject: b\r\n'), Buffer.from('\r\nb\r\n')]));
    expect(readFileSync(a, 'utf8')).toBe('Subject: a\r\n\r\na\r\n');
    expect(readFileSync(b, 'utf8')).toBe('Subject: b\r\n\r\nb\r\n');
    expect(readdirSync(join(root, 'new')).sort()).toHaveLength(2);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(statSync(a).mode & 0o777).toBe(0o600);
    expect(statSync(join(root, 'cur')).mode & 0o777).toBe(0o700);
  });

  it('leaves nothing behind when the stream fails', async () => {
    const root = join(temp(), 'box');
    const failing = Readable.from((async function* () {
      yield Buffer.from('partial');
      throw new Error('client went away');
    })());
    await expect(deliverToMaildir(root, failing)).rejects.toThrow(/went away/);
    expect(readdirSync(join(root, 'tmp'))).toEqual([]);
    expect(readdirSync(join(root, 'new'))).toEqual([]);
  });

  it("refuses a symlink planted in an IMVU's tree that points into another IMVU's", async () => {
    const data = temp();
    const victim = mailboxRoot(data, 'IMVU-002', 'ceo@b.world');
    mkdirSync(victim, { recursive: true });
    await ensureMaildir(victim);
    const attacker = imvuDir(data, 'IMVU-001');
    mkdirSync(join(attacker), { recursive: true });
    symlinkSync(join(data, 'imvus', 'IMVU-002', 'mail'), join(attacker, 'mail'));
    await expect(deliverToMaildir(mailboxRoot(data, 'IMVU-001', 'ceo@b.world'), Buffer.from('x'), { base: attacker })).rejects.toThrow(/symlink/);
    // The Maildir itself a symlink, or its new/: refused too.
    const own = mailboxRoot(data, 'IMVU-003', 'x@c.world');
    mkdirSync(join(imvuDir(data, 'IMVU-003'), 'mail'), { recursive: true });
    symlinkSync(victim, own);
    await expect(deliverToMaildir(own, Buffer.from('x'), { base: imvuDir(data, 'IMVU-003') })).rejects.toThrow(/symlink/);
    expect(readdirSync(join(victim, 'new'))).toEqual([]);
  });

  it('a symlink planted after the first delivery (the fast path) is still refused', async () => {
    const data = temp();
    const store = { get: async () => ({ imvu: 'IMVU-001' }) } as unknown as SqlReader;
    const victim = mailboxRoot(data, 'IMVU-002', 'ceo@b.world');
    mkdirSync(victim, { recursive: true });
    await ensureMaildir(victim);
    const first = await deliverToMailbox(store, data, 'ceo@a.world', Buffer.from('one'));
    expect(first.imvu).toBe('IMVU-001');
    const own = mailboxRoot(data, 'IMVU-001', 'ceo@a.world');
    // new/ swapped for a symlink into the other IMVU's Maildir, then the whole mail/ directory.
    renameSync(join(own, 'new'), join(own, 'new.old'));
    symlinkSync(join(victim, 'new'), join(own, 'new'));
    await expect(deliverToMailbox(store, data, 'ceo@a.world', Buffer.from('two'))).rejects.toThrow(/symlink/);
    rmSync(join(own, 'new'));
    renameSync(join(own, 'new.old'), join(own, 'new'));
    expect((await deliverToMailbox(store, data, 'ceo@a.world', Buffer.from('three'))).path).toContain(join(own, 'new'));
    const mail = join(imvuDir(data, 'IMVU-001'), 'mail');
    renameSync(mail, `${mail}.old`);
    symlinkSync(join(imvuDir(data, 'IMVU-002'), 'mail'), mail);
    mkdirSync(mailboxRoot(data, 'IMVU-002', 'ceo@a.world'), { recursive: true });
    await ensureMaildir(mailboxRoot(data, 'IMVU-002', 'ceo@a.world'));
    await expect(deliverToMailbox(store, data, 'ceo@a.world', Buffer.from('four'))).rejects.toThrow(/symlink/);
    expect(readdirSync(join(victim, 'new'))).toEqual([]);
    expect(readdirSync(join(mailboxRoot(data, 'IMVU-002', 'ceo@a.world'), 'new'))).toEqual([]);
  });

  it('names are unique and hold no / or :', () => {
    const names = new Set(Array.from({ length: 1000 }, () => uniqueName()));
    expect(names.size).toBe(1000);
    for (const n of names) expect(n).not.toMatch(/[/:]/);
  });
});

describe('mailboxState', () => {
  // The real query on a real SQLite: the MX, submission and the queue all ask this one function.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE imvus (id TEXT PRIMARY KEY, status TEXT); CREATE TABLE mailboxes (address TEXT PRIMARY KEY, imvu TEXT); CREATE TABLE imports (imvu TEXT PRIMARY KEY, archive_sha256 TEXT);');
  db.exec("INSERT INTO imvus VALUES ('IMVU-001','active'),('IMVU-002','importing'),('IMVU-003','exited'),('IMVU-005','active')");
  db.exec("INSERT INTO mailboxes VALUES ('ceo@a.world','IMVU-001'),('ceo@b.world','IMVU-002'),('ceo@c.world','IMVU-003'),('ceo@d.world','IMVU-404'),('ceo@e.world','IMVU-005')");
  const archive = 'ab'.repeat(32);
  db.exec(`INSERT INTO imports VALUES ('IMVU-005','${archive}')`);
  const store = { get: async (sql: string, p: unknown[] = []) => db.prepare(sql).get(...p), all: async () => [] } as unknown as SqlReader;

  it('receives for a live IMVU, defers an importing one, and treats an exited or unknown IMVU as gone', async () => {
    const data = temp();
    expect(await mailboxState(store, data, 'CEO@A.world')).toEqual({ state: 'receiving', imvu: 'IMVU-001' });
    expect(await mailboxState(store, data, 'ceo@b.world')).toEqual({ state: 'importing', imvu: 'IMVU-002' });
    expect(await mailboxState(store, data, 'ceo@c.world')).toEqual({ state: 'gone' });
    expect(await mailboxState(store, data, 'ceo@d.world')).toEqual({ state: 'gone' });
    expect(await mailboxState(store, data, 'nobody@a.world')).toEqual({ state: 'gone' });
  });

  it('defers an imported IMVU while its mail restore is owed, so nothing lands before the restored messages', async () => {
    const data = temp();
    expect(await mailboxState(store, data, 'ceo@e.world')).toEqual({ state: 'receiving', imvu: 'IMVU-005' });
    const marker = restorePendingFile(data, archive, 'IMVU-005');
    mkdirSync(join(marker, '..'), { recursive: true });
    writeFileSync(marker, 'IMVU-005\n');
    expect(await mailboxState(store, data, 'ceo@e.world')).toEqual({ state: 'importing', imvu: 'IMVU-005' });
    rmSync(marker);
    expect(await mailboxState(store, data, 'ceo@e.world')).toEqual({ state: 'receiving', imvu: 'IMVU-005' });
  });
});
