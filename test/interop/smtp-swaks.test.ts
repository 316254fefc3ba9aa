import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { mailFixture, type MailFixture } from '../mail/harness.ts';

// swaks (Debian package swaks), a client nobody here wrote, against the MX and submission.
const hasSwaks = spawnSync('swaks', ['--version']).status === 0;
if (!hasSwaks) console.warn('smtp-swaks interop: swaks not found (apt-get install swaks); skipping');

// Asynchronous: the servers run in this process, so the client must not block its event loop.
const swaks = (...args: string[]) =>
  new Promise<{ status: number; out: string }>((resolve) => {
    execFile('swaks', ['--server', '127.0.0.1', '--timeout', '20', ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });

describe.skipIf(!hasSwaks)('swaks against the MX and submission', async () => {
  let f: MailFixture;
  beforeAll(async () => {
    f = await mailFixture();
  }, 60_000);
  afterAll(async () => f?.close());

  it('delivers over STARTTLS to a hosted mailbox, SPF pass recorded', async () => {
    const r = await swaks('--port', String(f.mail.mx!.port), '--tls', '--from', 'news@good.test', '--to', `admin@${f.aliceDomain}`, '--header', 'Subject: swaks-in', '--ehlo', 'client.good.test');
    expect(r.status, r.out).toBe(0);
    const m = f.inbox(`admin@${f.aliceDomain}`).find((x) => x.includes('Subject: swaks-in'));
    expect(m).toMatch(/spf=pass/);
  });

  it('refuses relaying (threat 3.3) and unknown mailboxes', async () => {
    const relay = await swaks('--port', String(f.mail.mx!.port), '--from', 'spammer@evil.test', '--to', 'victim@example.com');
    expect(relay.out).toMatch(/<\*\* 550 5\.7\.1 .*relay access denied/);
    const unknown = await swaks('--port', String(f.mail.mx!.port), '--from', 'a@good.test', '--to', `nobody@${f.aliceDomain}`);
    expect(unknown.out).toMatch(/<\*\* 550 5\.1\.1/);
  });

  it('submission: AUTH PLAIN after STARTTLS sends as the own IMVU, spoofing gets 550', async () => {
    const ok = await swaks('--port', String(f.mail.submission!.port), '--tls', '--auth', 'PLAIN', '--auth-user', `creator@${f.aliceDomain}`, '--auth-password', f.password,
      '--from', `creator@${f.aliceDomain}`, '--to', `admin@${f.aliceDomain}`, '--header', 'Subject: swaks-sub');
    expect(ok.status, ok.out).toBe(0);
    expect(f.inbox(`admin@${f.aliceDomain}`).some((x) => x.includes('Subject: swaks-sub'))).toBe(true);
    const spoof = await swaks('--port', String(f.mail.submission!.port), '--tls', '--auth', 'LOGIN', '--auth-user', `creator@${f.aliceDomain}`, '--auth-password', f.password,
      '--from', 'ceo@bank.example', '--to', `admin@${f.aliceDomain}`);
    expect(spoof.out).toMatch(/<~\* 550 5\.7\.1 <ceo@bank\.example> is not a mailbox/); // <~ : over TLS
    const noTls = await swaks('--port', String(f.mail.submission!.port), '--auth', 'PLAIN', '--auth-user', `creator@${f.aliceDomain}`, '--auth-password', f.password,
      '--from', `creator@${f.aliceDomain}`, '--to', `admin@${f.aliceDomain}`);
    expect(noTls.status).not.toBe(0);
    expect(noTls.out).not.toMatch(/<- {2}235/);
  });

  it('465 with implicit TLS', async () => {
    const r = await swaks('--port', String(f.mail.smtps!.port), '--tls-on-connect', '--auth', 'LOGIN', '--auth-user', `creator@${f.aliceDomain}`, '--auth-password', f.password,
      '--from', `creator@${f.aliceDomain}`, '--to', `creator@${f.aliceDomain}`, '--header', 'Subject: swaks-465');
    expect(r.status, r.out).toBe(0);
  });
});
