// Python's imaplib (a client nobody here wrote) across the command list and a desktop first sync.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { A, deliver, sampleMessage, selfSigned, startTestServer, type TestServer } from './helpers.ts';

let t: TestServer;
let tls: TestServer;
let certDir: string;
beforeAll(async () => {
  t = await startTestServer();
  for (let i = 1; i <= 3; i++) deliver(t.rootA, sampleMessage(i));
  certDir = mkdtempSync(join(tmpdir(), 'imap-cert-'));
  // As the daemon runs it: STARTTLS on the plain port, implicit TLS on the other, no login in the clear.
  tls = await startTestServer({ tls: selfSigned(certDir), tlsPort: 0, plaintextAuth: false });
  deliver(tls.rootA, sampleMessage(1));
}, 60_000);
afterAll(async () => {
  await t.close();
  await tls.close();
  rmSync(certDir, { recursive: true, force: true });
});

describe('imaplib', { timeout: 90_000 }, () => {
  it('runs the command list and a desktop client first sync', async () => {
    const script = join(import.meta.dirname, 'imaplib_session.py');
    const { stdout } = await promisify(execFile)('python3', [script, String(t.server.port), A.user, A.pass], { timeout: 60_000 })
      .catch((e: { stdout: string; stderr: string }) => {
        throw new Error(`imaplib failed: ${e.stdout}\n${e.stderr}`);
      });
    expect(stdout).toContain('imaplib: ok');
  });

  it('refuses LOGIN before STARTTLS (LOGINDISABLED), then logs in over STARTTLS and over IMAP4_SSL', async () => {
    const script = join(import.meta.dirname, 'imaplib_tls.py');
    const { stdout } = await promisify(execFile)('python3', [script, String(tls.server.port), String(tls.server.tlsPort), A.user, A.pass], { timeout: 60_000 })
      .catch((e: { stdout: string; stderr: string }) => {
        throw new Error(`imaplib failed: ${e.stdout}\n${e.stderr}`);
      });
    expect(stdout).toContain('imaplib tls: ok');
  });
});
