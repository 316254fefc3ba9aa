// `nexus serve` with IMAP, driven as a creator drives it: the built CLI creates the IMVU, its mailbox
// and app password; imapflow logs in with that password over STARTTLS and over IMAPS; names outside
// the account are refused and the refusals reach the ledger, where the creator reads them with
// `nexus audit log --imvu` (and another creator does not).
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { BIN, ROOT, run, tempDir } from '../cli/harness.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { Raw } from './raw.ts';

let dir: string;
let data: string;
let server: RunningServer;
let env: Record<string, string>;
let address: string;
const PASSWORD = 'daemon imap app password';
const nexus = (...args: string[]) => run(args, env);

/** `nexus ...args` with `input` on stdin. */
function nexusIn(input: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, NEXUS_DATA: '', NEXUS_AS: '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

beforeAll(async () => {
  dir = tempDir('imap-daemon');
  data = join(dir, 'data');
  await (await initDataDir(data)).close();
  server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, imap: { port: 0, tlsPort: 0, refusalIntervalMs: 3_600_000 } });
  env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: server.url };
  const ok = async (...args: string[]) => {
    const r = await nexus(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r;
  };
  await ok('identity', 'create', 'alice', '--role', 'creator');
  await ok('identity', 'create', 'bob', '--role', 'creator');
  await ok('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--as', 'alice');
  await ok('imvu', 'create', '--name', 'Studio', '--owner', 'bob', '--jurisdiction', 'EU-GDPR', '--as', 'bob');
  const added = await ok('mail', 'mailbox', 'add', 'IMVU-001', 'info', '--as', 'alice', '--json');
  address = (JSON.parse(added.stdout) as { address: string }).address;
  const pw = await nexusIn(`${PASSWORD}\n`, 'mail', 'password', 'IMVU-001', 'info', '--stdin', '--as', 'alice');
  expect(pw.code, pw.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function port(protocol: 'imap' | 'imaps'): number {
  return (protocol === 'imap' ? server.imap!.server.port : server.imap!.server.tlsPort)!;
}

describe('nexus serve with IMAP', { timeout: 120_000 }, () => {
  it('lists both IMAP listeners and logs in with the app password the creator set, over STARTTLS and IMAPS', async () => {
    const st = await server.status();
    expect(st.listeners.filter((l) => l.service === 'imap').map((l) => l.protocol).sort()).toEqual(['imap', 'imaps']);
    for (const secure of [false, true]) {
      const c = new ImapFlow({
        host: '127.0.0.1', port: port(secure ? 'imaps' : 'imap'), secure, tls: { rejectUnauthorized: false },
        auth: { user: address, pass: PASSWORD }, logger: false,
      } as ConstructorParameters<typeof ImapFlow>[0]);
      await c.connect();
      expect(c.secureConnection).toBe(true);
      expect((await c.list()).map((m) => m.path)).toContain('INBOX');
      await c.logout();
    }
    const wrong = new ImapFlow({ host: '127.0.0.1', port: port('imaps'), secure: true, tls: { rejectUnauthorized: false }, auth: { user: address, pass: 'not it' }, logger: false } as ConstructorParameters<typeof ImapFlow>[0]);
    await expect(wrong.connect()).rejects.toThrow();
  });

  it("records refusals where the IMVU's creator reads them with nexus audit log --imvu, and no other creator does", async () => {
    const raw = await Raw.open(port('imaps'), true);
    expect(await raw.cmd('l', `LOGIN ${address} "${PASSWORD}"`)).toContain('l OK');
    expect(await raw.cmd('a', 'SELECT "../../../IMVU-002/mail"')).toMatch(/a NO \[NOPERM\]/);
    expect(await raw.cmd('b', 'RENAME INBOX.x "../escape"')).toMatch(/b NO/);
    raw.close();
    const [index] = await server.imap!.recordRefusals();
    expect(index).toBeGreaterThan(0);
    const log = await nexus('audit', 'log', '--imvu', 'IMVU-001', '--as', 'alice');
    expect(log.code, log.stderr).toBe(0);
    const row = log.stdout.split('\n').find((l) => l.startsWith(`#${index} `));
    expect(row, log.stdout).toMatch(/mail\.refusals\s+mail\s+IMVU-001\s+allowed/);
    const json = await nexus('audit', 'log', '--imvu', 'IMVU-001', '--as', 'alice', '--json');
    expect(json.stdout).toContain('name-outside-account');
    expect(json.stdout).toContain('"SELECT"');
    // Bob, a creator of another IMVU, gets only the leaf hash of that entry.
    const bob = await nexus('audit', 'log', '--as', 'bob', '--json');
    expect(bob.code, bob.stderr).toBe(0);
    expect(bob.stdout).not.toContain('name-outside-account');
  });

  it('keeps UIDVALIDITY, UIDs and flags across a restart of the daemon', async () => {
    const open = () =>
      new ImapFlow({ host: '127.0.0.1', port: port('imaps'), secure: true, tls: { rejectUnauthorized: false }, auth: { user: address, pass: PASSWORD }, logger: false } as ConstructorParameters<typeof ImapFlow>[0]);
    const c = open();
    await c.connect();
    for (let i = 0; i < 5; i++) await c.append('INBOX', `Subject: kept ${i}\r\n\r\nbody ${i}\r\n`, i % 2 ? ['\\Seen'] : []);
    let box = await c.mailboxOpen('INBOX');
    // Expunge one in the middle, so the UIDs are not simply 1..n.
    await c.messageDelete('2', { uid: true });
    await c.messageFlagsAdd('5', ['\\Flagged', '$Keep'], { uid: true });
    const before = { uidValidity: box.uidValidity, uidNext: box.uidNext, msgs: [] as string[] };
    for await (const m of c.fetch('1:*', { uid: true, flags: true })) before.msgs.push(`${m.uid} ${[...m.flags!].sort().join(' ')}`);
    await c.logout();
    expect(before.msgs).toHaveLength(4);

    await server.close();
    // While it is down, another Maildir tool marks UID 1 answered (in the file name) of the first message: the new daemon reads the disk.
    const cur = join(mailboxRoot(data, 'IMVU-001', address), 'cur');
    const first = readdirSync(cur).find((f) => readFileSync(join(cur, f), 'latin1').includes('Subject: kept 0'))!;
    renameSync(join(cur, first), join(cur, first.replace(/:2,([A-Z]*)$/, (_m, f: string) => `:2,${[...f, 'R'].sort().join('')}`)));
    server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, imap: { port: 0, tlsPort: 0, refusalIntervalMs: 3_600_000 } });

    const d = open();
    await d.connect();
    box = await d.mailboxOpen('INBOX');
    expect(box.uidValidity).toBe(before.uidValidity);
    const after: string[] = [];
    for await (const m of d.fetch('1:*', { uid: true, flags: true })) after.push(`${m.uid} ${[...m.flags!].sort().join(' ')}`);
    const expected = before.msgs.map((l, i) => (i === 0 ? `${l.split(' ')[0]} ${[...l.split(' ').slice(1), '\\Answered'].filter(Boolean).sort().join(' ')}` : l));
    expect(after).toEqual(expected);
    const app = await d.append('INBOX', 'Subject: after restart\r\n\r\nx\r\n');
    expect(app && app.uid).toBe(Number(before.uidNext));
    await d.logout();
  });

  it('exports a mailbox with nexus mail export that Python\'s mailbox.mbox reads back, flags included', async () => {
    const c = new ImapFlow({ host: '127.0.0.1', port: port('imaps'), secure: true, tls: { rejectUnauthorized: false }, auth: { user: address, pass: PASSWORD }, logger: false } as ConstructorParameters<typeof ImapFlow>[0]);
    await c.connect();
    await c.mailboxOpen('INBOX');
    const want: string[] = [];
    for await (const m of c.fetch('1:*', { envelope: true, flags: true })) want.push(`${m.envelope!.subject} ${m.flags!.has('\\Seen') ? 'R' : ''}`);
    await c.logout();
    const out = join(dir, 'inbox.mbox');
    const r = await nexus('mail', 'export', 'IMVU-001', '--mailbox', 'INBOX', '--data', data, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    const py = 'import mailbox,sys\nfor m in mailbox.mbox(sys.argv[1]): print(m["Subject"], "R" if "R" in m.get_flags() else "")';
    const got = execFileSync('python3', ['-c', py, out], { encoding: 'utf8' }).trimEnd().split('\n');
    expect(got.map((l) => l.trimEnd()).sort()).toEqual(want.map((l) => l.trimEnd()).sort());
    expect(want.length).toBeGreaterThanOrEqual(5);
  });
});
