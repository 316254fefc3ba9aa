// The IMAP server driven by imapflow (a client nobody here wrote) across the command list.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A, deliver, sampleMessage, startTestServer, type TestServer } from './helpers.ts';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
  for (let i = 1; i <= 5; i++) deliver(t.rootA, sampleMessage(i));
  const multipart = [
    'From: Multi <multi@example.org>', 'To: alice@a.example', 'Subject: parts', 'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="XX"', '', 'preamble', '--XX', 'Content-Type: text/plain', '', 'first part',
    '--XX', 'Content-Type: multipart/alternative; boundary="YY"', '', '--YY', 'Content-Type: text/plain', '', 'alt plain',
    '--YY', 'Content-Type: text/html', '', '<p>alt html</p>', '--YY--', '', '--XX', 'Content-Type: message/rfc822', '',
    'From: Inner <inner@example.org>', 'Subject: inner', '', 'inner body', '--XX--', '',
  ].join('\r\n');
  deliver(t.rootA, multipart);
});
afterAll(() => t.close());

function ok<T>(x: T | false | null | undefined): T {
  if (!x) throw new Error('no result');
  return x;
}

function client(): ImapFlow {
  return new ImapFlow({
    host: '127.0.0.1', port: t.server.port!, secure: false, doSTARTTLS: false,
    auth: { user: A.user, pass: A.pass }, logger: false, disableAutoIdle: true,
  } as ConstructorParameters<typeof ImapFlow>[0]);
}

describe('imapflow', { timeout: 60_000 }, () => {
  it('logs in, lists with special-use, reads status, namespace and quota', async () => {
    const c = client();
    await c.connect();
    expect(c.capabilities.has('IDLE')).toBe(true);
    expect(c.capabilities.has('CONDSTORE')).toBe(true);
    const list = await c.list();
    const names = list.map((m) => m.path);
    expect(names).toEqual(expect.arrayContaining(['INBOX', 'Trash', 'Sent', 'Drafts']));
    expect(list.find((m) => m.path === 'Trash')!.specialUse).toBe('\\Trash');
    const st = ok(await c.status('INBOX', { messages: true, uidNext: true, uidValidity: true, unseen: true, highestModseq: true }));
    expect(st.messages).toBe(6);
    expect(st.unseen).toBe(6);
    expect(st.uidNext).toBe(7);
    const q = await c.getQuota('INBOX');
    expect(q && q.storage && q.storage.limit).toBe(1024 * 1024 * 1024);
    expect(q && q.storage && q.storage.usage).toBeGreaterThan(0);
    await c.logout();
  });

  it('fetches flags, envelope, bodystructure, sections and partials', async () => {
    const c = client();
    await c.connect();
    const box = await c.mailboxOpen('INBOX');
    expect(box.exists).toBe(6);
    const msgs = [];
    for await (const m of c.fetch('1:*', { uid: true, flags: true, envelope: true, size: true, internalDate: true, bodyStructure: true })) msgs.push(m);
    expect(msgs).toHaveLength(6);
    expect(msgs[0]!.envelope!.subject).toBe('message 1');
    expect(msgs[0]!.envelope!.from![0]!.address).toBe('sender1@example.org');
    expect(msgs[0]!.envelope!.from![0]!.name).toBe('Sender 1');
    expect(msgs[0]!.size).toBe(Buffer.byteLength(sampleMessage(1)));
    const bs = msgs[5]!.bodyStructure!;
    expect(bs.type).toBe('multipart/mixed');
    expect(bs.childNodes!.map((n) => n.type)).toEqual(['text/plain', 'multipart/alternative', 'message/rfc822']);
    expect(bs.childNodes![1]!.childNodes!.map((n) => n.part)).toEqual(['2.1', '2.2']);
    const one = ok(await c.fetchOne('6', { bodyParts: ['1', '2.2', '3.HEADER', '3.1'], headers: ['subject'] }));
    expect(one!.bodyParts!.get('1')!.toString()).toBe('first part');
    expect(one!.bodyParts!.get('2.2')!.toString()).toBe('<p>alt html</p>');
    expect(one!.bodyParts!.get('3.header')!.toString()).toContain('Subject: inner');
    expect(one!.bodyParts!.get('3.1')!.toString()).toBe('inner body');
    expect(one!.headers!.toString()).toBe('Subject: parts\r\n\r\n');
    // BODY.PEEK left it unseen; BODY[] sets \Seen.
    const full = ok(await c.fetchOne('1', { source: true, flags: true }));
    expect(full!.source!.toString()).toBe(sampleMessage(1));
    const after = ok(await c.fetchOne('1', { flags: true }));
    expect(after!.flags!.has('\\Seen')).toBe(false);
    const partial = ok(await c.fetchOne('2', { source: { start: 6, maxLength: 6 } }));
    expect(partial!.source!.toString()).toBe(sampleMessage(2).slice(6, 12));
    await c.logout();
  });

  it('stores flags, searches, copies, moves, expunges with UIDPLUS and CONDSTORE', async () => {
    const c = client();
    await c.connect();
    await c.mailboxOpen('INBOX');
    await c.messageFlagsAdd('1:2', ['\\Seen', '$Work']);
    expect(await c.search({ seen: true })).toEqual([1, 2]);
    expect(await c.search({ keyword: '$Work' })).toEqual([1, 2]);
    expect(await c.search({ subject: 'message 3' })).toEqual([3]);
    expect(await c.search({ body: 'Body of message 4' })).toEqual([4]);
    expect(await c.search({ or: [{ subject: 'message 5' }, { from: 'sender1' }] })).toEqual([1, 5]);
    expect(await c.search({ uid: '2:3' }, { uid: true })).toEqual([2, 3]);
    const copy = await c.messageCopy('1', 'Archive');
    expect(copy && copy.uidMap && copy.uidMap.get(1)).toBe(1);
    const move = await c.messageMove('2', 'Trash', { uid: true });
    expect(move && move.uidMap && move.uidMap.get(2)).toBe(1);
    const box = c.mailbox as { exists: number; highestModseq?: bigint };
    expect(box.exists).toBe(5);
    await c.messageFlagsAdd('3', ['\\Deleted']);
    await c.messageDelete('3');
    expect((c.mailbox as { exists: number }).exists).toBe(4);
    const changed = [];
    for await (const m of c.fetch('1:*', { flags: true }, { changedSince: 1n })) changed.push(m);
    expect(changed.length).toBeGreaterThan(0);
    expect(typeof changed[0]!.modseq).toBe('bigint');
    const arch = ok(await c.status('Archive', { messages: true }));
    expect(arch.messages).toBe(1);
    await c.logout();
  });

  it('appends, creates, renames, subscribes and deletes mailboxes', async () => {
    const c = client();
    await c.connect();
    await c.mailboxCreate('Projects');
    await c.mailboxCreate('Projects.2026');
    const app = await c.append('Projects.2026', sampleMessage(99), ['\\Seen', '\\Flagged'], new Date('2026-11-30T08:00:00Z'));
    expect(app && app.uid).toBe(1);
    await c.mailboxRename('Projects', 'Old');
    const list = (await c.list()).map((m) => m.path);
    expect(list).toEqual(expect.arrayContaining(['Old', 'Old.2026']));
    expect(list).not.toContain('Projects');
    const lock = await c.getMailboxLock('Old.2026');
    try {
      const m = ok(await c.fetchOne('1', { flags: true, internalDate: true, source: true }));
      expect([...m!.flags!].sort()).toEqual(['\\Flagged', '\\Seen']);
      expect((m!.internalDate as Date).toISOString()).toBe('2026-11-30T08:00:00.000Z');
      expect(m!.source!.toString()).toBe(sampleMessage(99));
    } finally {
      lock.release();
    }
    await c.mailboxSubscribe('Old');
    const subs = (await c.list({ statusQuery: { messages: true } })).filter((m) => m.subscribed).map((m) => m.path);
    expect(subs).toContain('Old');
    await c.mailboxDelete('Old.2026');
    expect(readdirSync(t.rootA)).not.toContain('.Old.2026');
    await c.logout();
  });

  it('sees a delivery in IDLE, and flag changes and expunges from another session', async () => {
    const c = client();
    const d = client();
    await c.connect();
    await d.connect();
    await c.mailboxOpen('INBOX');
    await d.mailboxOpen('INBOX');
    const exists = new Promise<number>((resolve) => c.on('exists', (e: { count: number }) => resolve(e.count)));
    const before = (c.mailbox as { exists: number }).exists;
    const idle = c.idle();
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    deliver(t.rootA, sampleMessage(100));
    expect(await exists).toBe(before + 1);
    const took = Date.now() - t0;
    expect(took).toBeLessThan(5000);
    const flags = new Promise<Set<string>>((resolve) => c.on('flags', (e: { flags: Set<string> }) => resolve(e.flags)));
    await d.messageFlagsAdd('1', ['\\Answered']);
    expect((await flags).has('\\Answered')).toBe(true);
    const expunge = new Promise<number>((resolve) => c.on('expunge', (e: { seq: number }) => resolve(e.seq)));
    await d.messageDelete('1');
    expect(await expunge).toBe(1);
    await c.noop();
    await idle.catch(() => undefined);
    await c.logout();
    await d.logout();
    expect(join(t.rootA, 'new')).toBeTruthy();
  });

  it('refuses a wrong password', async () => {
    const c = new ImapFlow({ host: '127.0.0.1', port: t.server.port!, secure: false, doSTARTTLS: false, auth: { user: A.user, pass: 'nope' }, logger: false } as ConstructorParameters<typeof ImapFlow>[0]);
    await expect(c.connect()).rejects.toThrow();
  });
});
