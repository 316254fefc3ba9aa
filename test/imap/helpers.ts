// A private IMAP server over a temp data dir with two IMVUs (A and B), for the interop suites.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { startImapServer, type ImapServer, type ImapServerOptions, type RefusalEvent } from '../../src/mail/imap/server.ts';

export const A = { imvu: 'IMVU-001', address: 'alice@a.example', user: 'alice@a.example', pass: 'alice-app-password' };
export const B = { imvu: 'IMVU-002', address: 'bob@b.example', user: 'bob@b.example', pass: 'bob-app-password' };

export interface TestServer {
  server: ImapServer;
  dataDir: string;
  refusals: RefusalEvent[];
  rootA: string;
  rootB: string;
  close(): Promise<void>;
}

let seq = 0;
/** Deliver a message into a Maildir folder's new/, as the SMTP side does. */
export function deliver(folderDir: string, content: string | Buffer): string {
  mkdirSync(join(folderDir, 'tmp'), { recursive: true });
  mkdirSync(join(folderDir, 'new'), { recursive: true });
  mkdirSync(join(folderDir, 'cur'), { recursive: true });
  const name = `${Math.floor(Date.now() / 1000)}.M${++seq}P${process.pid}.test`;
  writeFileSync(join(folderDir, 'tmp', name), content);
  renameSync(join(folderDir, 'tmp', name), join(folderDir, 'new', name));
  return name;
}

export function sampleMessage(i: number, extra = ''): string {
  return [
    `From: Sender ${i} <sender${i}@example.org>`,
    'To: Alice <alice@a.example>',
    `Subject: message ${i}`,
    `Message-ID: <m${i}@example.org>`,
    'Date: Tue, 01 Dec 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    `Body of message ${i}.${extra}`,
    '',
  ].join('\r\n');
}

export function selfSigned(dir: string): { key: string; cert: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
}

export async function startTestServer(opts: Partial<ImapServerOptions> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'imap-'));
  const refusals: RefusalEvent[] = [];
  const accounts = new Map([[A.user, A], [B.user, B]]);
  const server = await startImapServer({
    dataDir,
    port: 0,
    plaintextAuth: true,
    authenticate: async (user, pass) => {
      const a = accounts.get(user);
      return a && a.pass === pass ? { imvu: a.imvu, address: a.address } : null;
    },
    onRefusal: (e) => refusals.push(e),
    quotaBytes: () => 1024n * 1024n * 1024n,
    ...opts,
  });
  const rootA = mailboxRoot(dataDir, A.imvu, A.address);
  const rootB = mailboxRoot(dataDir, B.imvu, B.address);
  for (const r of [rootA, rootB]) for (const s of ['cur', 'new', 'tmp']) mkdirSync(join(r, s), { recursive: true });
  return {
    server, dataDir, refusals, rootA, rootB,
    close: async () => {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
