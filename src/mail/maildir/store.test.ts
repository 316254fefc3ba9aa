import { mkdtempSync, readdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Folder, crlfSize, ensureMaildir, toCrlf } from './store.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'maildir-'));
  ensureMaildir(dir);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function deliver(body = 'Subject: hi\n\nhello\n'): string {
  const name = `${Date.now()}.${process.pid}_${++n}.test`;
  writeFileSync(join(dir, 'tmp', name), body);
  renameSync(join(dir, 'tmp', name), join(dir, 'new', name));
  return name;
}

describe('Maildir folder index', () => {
  it('assigns UIDs to delivered files and keeps them and UIDVALIDITY across a restart', async () => {
    const f = new Folder(dir);
    await f.scan(false);
    const a = deliver();
    const b = deliver();
    await f.scan(false);
    expect(f.messages.map((m) => [m.uid, m.base])).toEqual([[1, a], [2, b]]);
    const validity = f.state.uidValidity;
    // A fresh instance (a restarted daemon) reads the same UIDs back from the index.
    const g = new Folder(dir);
    deliver();
    await g.scan(true);
    expect(g.state.uidValidity).toBe(validity);
    expect(g.messages.map((m) => m.uid)).toEqual([1, 2, 3]);
    expect(g.messages.map((m) => m.base).slice(0, 2)).toEqual([a, b]);
    // Seen by a session: moved from new/ to cur/ with an info suffix.
    expect(readdirSync(join(dir, 'new'))).toEqual([]);
    expect(readdirSync(join(dir, 'cur')).every((x) => x.endsWith(':2,'))).toBe(true);
  });

  it('keeps flags in the file name, keywords in the keywords file, and bumps modseq per change', async () => {
    const f = new Folder(dir);
    deliver();
    await f.scan(true);
    const before = f.state.highestModseq;
    const { changed } = await f.setFlags([1], 'add', ['\\Seen', '\\Flagged', '$Label1']);
    expect(changed).toHaveLength(1);
    expect(readdirSync(join(dir, 'cur'))[0]).toMatch(/:2,FSa$/);
    expect(f.state.highestModseq).toBe(before + 1n);
    const g = new Folder(dir);
    await g.scan(false);
    expect([...g.get(1)!.flags].sort()).toEqual(['$Label1', '\\Flagged', '\\Seen']);
    expect(g.get(1)!.modseq).toBe(before + 1n);
    // UNCHANGEDSINCE below the message's modseq leaves it alone.
    const r = await g.setFlags([1], 'remove', ['\\Seen'], before);
    expect(r.modified).toEqual([1]);
  });

  it('sees flag changes and expunges made by another Maildir tool', async () => {
    const f = new Folder(dir);
    deliver();
    deliver();
    await f.scan(true);
    const [first, second] = readdirSync(join(dir, 'cur')).sort();
    renameSync(join(dir, 'cur', first!), join(dir, 'cur', first!.replace(/:2,.*$/, ':2,S')));
    unlinkSync(join(dir, 'cur', second!));
    const ms = f.state.highestModseq;
    expect(await f.scan(false)).toBe(true);
    expect(f.messages).toHaveLength(1);
    expect(f.messages[0]!.flags.has('\\Seen')).toBe(true);
    expect(f.messages[0]!.modseq).toBeGreaterThan(ms);
  });

  it('gives every concurrently delivered or appended message one unique UID', async () => {
    const f = new Folder(dir);
    await f.scan(false);
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      deliver(`Subject: ${i}\n\nx\n`);
      work.push(f.scan(i % 2 === 0));
      if (i % 3 === 0) work.push(f.add(Buffer.from(`Subject: a${i}\r\n\r\nbody\r\n`), ['\\Seen']));
    }
    await Promise.all(work);
    await f.scan(false);
    const uids = f.messages.map((m) => m.uid);
    expect(uids).toHaveLength(80);
    expect(new Set(uids).size).toBe(80);
    expect(uids).toEqual([...uids].sort((a, b) => a - b));
    expect(f.state.uidNext).toBe(81);
    const g = new Folder(dir);
    await g.scan(false);
    expect(g.messages.map((m) => m.uid)).toEqual(uids);
  });

  it('counts sizes with CRLF line ends', () => {
    expect(crlfSize(Buffer.from('a\nb\r\n'))).toBe(6);
    expect(toCrlf(Buffer.from('a\nb\r\n')).toString()).toBe('a\r\nb\r\n');
  });
});
