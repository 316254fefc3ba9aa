// mbsync (isync), a client nobody here wrote: a full two-way sync of a 1,000-message mailbox into a
// local Maildir and back; flags changed on either side converge; a message added locally is
// uploaded with its flags.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImapFlow } from 'imapflow';
import { A, deliver, sampleMessage, startTestServer, type TestServer } from '../imap/helpers.ts';

const N = 1000;
let t: TestServer;
let work: string;
beforeAll(async () => {
  t = await startTestServer();
  for (let i = 1; i <= N; i++) deliver(t.rootA, sampleMessage(i));
  work = mkdtempSync(join(tmpdir(), 'mbsync-'));
  mkdirSync(join(work, 'local'), { recursive: true });
  writeFileSync(join(work, 'mbsyncrc'), [
    'IMAPAccount nexus', 'Host 127.0.0.1', `Port ${t.server.port}`, `User ${A.user}`, `Pass ${A.pass}`, 'SSLType None',
    'AuthMechs LOGIN', '', 'IMAPStore remote', 'Account nexus', '', 'MaildirStore local', `Path ${join(work, 'local')}/`,
    `Inbox ${join(work, 'local', 'INBOX')}`, '', 'Channel sync', 'Far :remote:', 'Near :local:', 'Patterns INBOX',
    'Create Both', 'Expunge Both', 'Sync All', 'SyncState *', '',
  ].join('\n'));
});
afterAll(async () => {
  await t.close();
  rmSync(work, { recursive: true, force: true });
});

async function mbsync(): Promise<void> {
  await promisify(execFile)('mbsync', ['-c', join(work, 'mbsyncrc'), '-a'], { timeout: 120_000, env: { ...process.env, HOME: work } })
    .catch((e: { stdout: string; stderr: string }) => {
      throw new Error(`mbsync failed: ${e.stdout}\n${e.stderr}`);
    });
}

function localFiles(): { sub: string; name: string; body: string }[] {
  const dir = join(work, 'local', 'INBOX');
  return ['cur', 'new'].flatMap((sub) => readdirSync(join(dir, sub)).map((name) => ({ sub, name, body: readFileSync(join(dir, sub, name), 'latin1').replace(/\r\n/g, '\n').replace(/^X-TUID: .*\n/m, '') })));
}

function client(): ImapFlow {
  return new ImapFlow({ host: '127.0.0.1', port: t.server.port!, secure: false, doSTARTTLS: false, auth: { user: A.user, pass: A.pass }, logger: false } as ConstructorParameters<typeof ImapFlow>[0]);
}

describe('mbsync two-way sync', () => {
  it('copies 1,000 messages down byte for byte, and converges flags changed on both sides', async () => {
    await mbsync();
    const files = localFiles();
    expect(files).toHaveLength(N);
    const bodies = new Set(files.map((f) => f.body));
    // mbsync stores local mail with LF line ends and its own X-TUID line; nothing else differs.
    for (const i of [1, 500, N]) expect(bodies.has(sampleMessage(i).replace(/\r\n/g, '\n'))).toBe(true);

    // Local: mark the message with subject 7 seen and flagged (as a local mail reader would).
    const dir = join(work, 'local', 'INBOX');
    const seven = files.find((f) => f.body.includes('Subject: message 7\n'))!;
    const base = seven.name.replace(/:2,.*$/, '');
    renameSync(join(dir, seven.sub, seven.name), join(dir, 'cur', `${base}:2,FS`));
    // Remote: another client marks message 9 answered, deletes message 11.
    const c = client();
    await c.connect();
    await c.mailboxOpen('INBOX');
    const [nine] = (await c.search({ header: { 'message-id': '<m9@example.org>' } }, { uid: true })) || [];
    const [eleven] = (await c.search({ header: { 'message-id': '<m11@example.org>' } }, { uid: true })) || [];
    await c.messageFlagsAdd(String(nine), ['\\Answered'], { uid: true });
    await c.messageDelete(String(eleven), { uid: true });
    // Local: a new message written into the local Maildir goes up.
    writeFileSync(join(dir, 'cur', `${Date.now()}.local1.host:2,S`), sampleMessage(5000));
    await c.logout();

    await mbsync();

    const after = localFiles();
    expect(after).toHaveLength(N);
    const nineLocal = after.find((f) => f.body.includes('Subject: message 9\n'))!;
    expect(nineLocal.name).toMatch(/:2,[A-Z]*R/);
    expect(after.some((f) => f.body.includes('Subject: message 11\n'))).toBe(false);

    const d = client();
    await d.connect();
    await d.mailboxOpen('INBOX');
    expect((d.mailbox as { exists: number }).exists).toBe(N);
    const [sevenUid] = (await d.search({ header: { 'message-id': '<m7@example.org>' } }, { uid: true })) || [];
    const m7 = await d.fetchOne(String(sevenUid), { flags: true }, { uid: true });
    expect(m7 && [...m7.flags!].sort()).toEqual(['\\Flagged', '\\Seen']);
    const [upUid] = (await d.search({ header: { 'message-id': '<m5000@example.org>' } }, { uid: true })) || [];
    const up = await d.fetchOne(String(upUid), { flags: true, source: true }, { uid: true });
    // Uploaded with CRLF; mbsync may add its own X-TUID header line.
    expect(up && up.source!.toString().replace(/^X-TUID: .*\r\n/m, '')).toBe(sampleMessage(5000));
    expect(up && up.flags!.has('\\Seen')).toBe(true);
    await d.logout();

    // A third run changes nothing: both sides agree.
    await mbsync();
    expect(localFiles().map((f) => f.name).sort()).toEqual(after.map((f) => f.name).sort().map((n) => n));
  }, 240_000);
});
