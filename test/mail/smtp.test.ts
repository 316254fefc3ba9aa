// The MX and submission over real sockets, driven by clients we did not write (nodemailer, Python's
// smtplib) and by a raw socket for what no polite client sends (smuggling, trickles, garbage).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
import { startMailService, type MailService } from '../../src/mail/smtp/service.ts';
import { hashAppPassword } from '../../src/mail/auth/app-password.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { startFixtureDns } from './fixture-dns.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';

const run = promisify(execFile);
let p: TestPlatform;
let mail: MailService;
let dns: Awaited<ReturnType<typeof startFixtureDns>>;
let alice: Actor;
let bob: Actor;
let aliceDomain: string;
let bobDomain: string;
const PASSWORD = 'correct horse battery staple';

const inbox = (imvu: string, address: string) => {
  const dir = join(mailboxRoot(p.dataDir, imvu, address), 'new');
  try {
    return readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8'));
  } catch {
    return [];
  }
};

/** A raw SMTP conversation: writes each step, returns everything the server said. */
async function raw(port: number, steps: (string | Buffer)[], waitMs = 300): Promise<string> {
  const sock = net.connect(port, '127.0.0.1');
  let out = '';
  sock.on('data', (d) => (out += d.toString('latin1')));
  await new Promise((r) => sock.once('connect', r));
  await new Promise((r) => setTimeout(r, 150));
  for (const s of steps) {
    sock.write(s);
    await new Promise((r) => setTimeout(r, waitMs));
  }
  sock.end('QUIT\r\n');
  await new Promise((r) => setTimeout(r, 200));
  sock.destroy();
  return out;
}

beforeAll(async () => {
  dns = await startFixtureDns([
    { name: 'good.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' },
    { name: '_dmarc.good.test', type: 'TXT', data: 'v=DMARC1; p=reject' },
    { name: 'evil.test', type: 'TXT', data: 'v=spf1 ip4:192.0.2.1 -all' },
    { name: '_dmarc.evil.test', type: 'TXT', data: 'v=DMARC1; p=reject' },
  ]);
  p = await testPlatform();
  alice = await p.register('alice', 'creator');
  bob = await p.register('bob', 'creator');
  expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  expect((await p.as(bob, 'imvu.create', { name: 'Studio', owner: bob.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  aliceDomain = (await p.store.get<{ domain: string }>("SELECT domain FROM imvus WHERE id = 'IMVU-001'"))!.domain;
  for (let i = 0; i < 7; i++) expect((await p.as(alice, 'mailbox.add', { imvu: 'IMVU-001', address: `box${i}@${aliceDomain}` })).allowed).toBe(true);
  bobDomain = (await p.store.get<{ domain: string }>("SELECT domain FROM imvus WHERE id = 'IMVU-002'"))!.domain;
  const set = await p.as(alice, 'mail.password.set', { imvu: 'IMVU-001', address: `creator@${aliceDomain}`, hash: await hashAppPassword(PASSWORD) });
  expect(set.allowed).toBe(true);
  mail = await startMailService({
    platform: p,
    hostname: 'mx.test',
    smtpPort: 0,
    submissionPort: 0,
    smtpsPort: 0,
    maxMessageBytes: 64 * 1024,
    maxRecipients: 5,
    sessionTimeoutMs: 3_000,
    resolver: { rootHints: [{ name: 'root.', address: '127.0.0.1', port: dns.port }], upstreamPort: dns.port, limits: { timeoutMs: 500, requestTimeoutMs: 1500 } },
  });
}, 60_000);

afterAll(async () => {
  await mail?.close();
  await dns?.close();
  await p?.cleanup();
});

const mx = () =>
  nodemailer.createTransport({ host: '127.0.0.1', port: mail.mx!.port, secure: false, tls: { rejectUnauthorized: false }, name: 'client.good.test' });

describe('MX', () => {
  it('delivers to a hosted mailbox over STARTTLS with verdicts in Authentication-Results, into new/', async () => {
    const info = await mx().sendMail({ envelope: { from: 'news@good.test', to: [`creator@${aliceDomain}`] }, raw: `From: news@good.test\r\nTo: creator@${aliceDomain}\r\nSubject: hello\r\n\r\nbody line\r\n` });
    expect(info.response).toMatch(/^250 2\.0\.0 delivered/);
    const got = inbox('IMVU-001', `creator@${aliceDomain}`);
    expect(got).toHaveLength(1);
    expect(got[0]).toMatch(/^Return-Path: <news@good\.test>\r\n/);
    expect(got[0]).toMatch(/Authentication-Results: mx\.test;[\s\S]*spf=pass/);
    expect(got[0]).toMatch(/dmarc=fail|dmarc=none|dmarc=pass/);
    expect(got[0]).toContain('\r\n\r\nbody line\r\n');
    // Nothing left in tmp/ and nothing in the other IMVU's tree.
    expect(readdirSync(join(mailboxRoot(p.dataDir, 'IMVU-001', `creator@${aliceDomain}`), 'tmp'))).toEqual([]);
    expect(inbox('IMVU-002', `creator@${bobDomain}`)).toEqual([]);
  });

  it('refuses unknown mailboxes (5.1.1) and relaying (5.7.1, threat 3.3), even with a hosted sender', async () => {
    await expect(mx().sendMail({ envelope: { from: 'a@good.test', to: [`nobody@${aliceDomain}`] }, raw: 'Subject: x\r\n\r\nx\r\n' })).rejects.toThrow(/550 5\.1\.1/);
    await expect(mx().sendMail({ envelope: { from: `creator@${aliceDomain}`, to: ['victim@example.com'] }, raw: 'Subject: x\r\n\r\nx\r\n' })).rejects.toThrow(/550 5\.7\.1 .*relay access denied/);
  });

  it('refuses a DMARC p=reject failure at SMTP time and stores nothing', async () => {
    const before = inbox('IMVU-001', `admin@${aliceDomain}`).length;
    await expect(
      mx().sendMail({ envelope: { from: 'ceo@evil.test', to: [`admin@${aliceDomain}`] }, raw: `From: ceo@evil.test\r\nTo: admin@${aliceDomain}\r\nSubject: wire money\r\n\r\npay\r\n` }),
    ).rejects.toThrow(/550 5\.7\.1 rejected by the DMARC policy of evil\.test/);
    expect(inbox('IMVU-001', `admin@${aliceDomain}`)).toHaveLength(before);
  });

  it('enforces SIZE on what arrives and the recipient limit', async () => {
    await expect(mx().sendMail({ envelope: { from: 'a@good.test', to: [`admin@${aliceDomain}`] }, raw: 'Subject: big\r\n\r\n' + 'x'.repeat(998) .concat('\r\n').repeat(80) })).rejects.toThrow(/552/);
    const out = await raw(mail.mx!.port, ['EHLO x\r\n', 'MAIL FROM:<a@good.test>\r\n', ...Array.from({ length: 7 }, (_, i) => `RCPT TO:<box${i}@${aliceDomain}>\r\n`)], 60);
    expect(out.match(/^250 Accepted/gm)).toHaveLength(6); // MAIL and five recipients
    expect(out).toMatch(/^452 /m);
  });

  it.each([
    ['<LF>.<LF>', '\n.\n'],
    ['<CR>.<CR>', '\r.\r'],
    ['<LF>.<CR><LF>', '\n.\r\n'],
    ['<CR><LF>.<LF>', '\r\n.\n'],
  ])('SMTP smuggling with %s: refused whole, the smuggled message never arrives', async (_n, end) => {
    const box = `admin@${aliceDomain}`;
    const before = inbox('IMVU-001', box).length;
    const payload = `From: a@good.test\r\nSubject: outer\r\n\r\nouter${end}MAIL FROM:<ceo@good.test>\r\nRCPT TO:<${box}>\r\nDATA\r\nFrom: ceo@good.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n`;
    const out = await raw(mail.mx!.port, ['EHLO x\r\n', 'MAIL FROM:<a@good.test>\r\n', `RCPT TO:<${box}>\r\n`, 'DATA\r\n', payload, '.\r\n'], 250);
    const after = inbox('IMVU-001', box).slice(before);
    expect(after.filter((m) => m.includes('Subject: smuggled') && !m.includes('Subject: outer'))).toEqual([]);
    expect(after.length).toBeLessThanOrEqual(1);
    expect(out).toMatch(/550 5\.5\.2 bare CR or LF/);
  });

  it('answers malformed and over-long commands with errors and keeps serving', async () => {
    const out = await raw(mail.mx!.port, ['EHLO x\r\n', 'MAIL FROM:<<<>>>\r\n', 'RCPT TO:\r\n', 'BLAH\x00\x01\r\n', 'A'.repeat(10_000) + '\r\n'], 120);
    expect(out).toMatch(/^5\d\d /m);
    const info = await mx().sendMail({ envelope: { from: 'a@good.test', to: [`admin@${aliceDomain}`] }, raw: 'From: a@good.test\r\nSubject: after\r\n\r\nok\r\n' });
    expect(info.response).toMatch(/^250/);
  });

  it('closes a trickling client at the session deadline while others are served', async () => {
    const sock = net.connect(mail.mx!.port, '127.0.0.1');
    let closedAt = 0;
    sock.on('close', () => (closedAt = Date.now()));
    sock.on('error', () => undefined);
    const start = Date.now();
    const steps = ['EHLO x\r\n', 'MAIL FROM:<a@good.test>\r\n', `RCPT TO:<admin@${aliceDomain}>\r\n`, 'DATA\r\n'];
    for (const s of steps) sock.write(s);
    const trickle = setInterval(() => sock.writable && sock.write('x'), 100);
    const other = await mx().sendMail({ envelope: { from: 'a@good.test', to: [`admin@${aliceDomain}`] }, raw: 'From: a@good.test\r\nSubject: meanwhile\r\n\r\nok\r\n' });
    expect(other.response).toMatch(/^250/);
    await new Promise((r) => setTimeout(r, 4_500));
    clearInterval(trickle);
    expect(closedAt).toBeGreaterThan(0);
    expect(closedAt - start).toBeLessThan(4_500);
  });
});

const submission = (user = `creator@${aliceDomain}`, pass = PASSWORD) =>
  nodemailer.createTransport({ host: '127.0.0.1', port: mail.submission!.port, secure: false, requireTLS: true, tls: { rejectUnauthorized: false }, auth: { user, pass } });

describe('submission', () => {
  it('refuses AUTH before STARTTLS and MAIL before AUTH', async () => {
    const out = await raw(mail.submission!.port, ['EHLO x\r\n', `AUTH PLAIN ${Buffer.from(`\0creator@${aliceDomain}\0${PASSWORD}`).toString('base64')}\r\n`, 'MAIL FROM:<x@y.z>\r\n']);
    expect(out).toMatch(/^538 .*STARTTLS/m);
    expect(out).toMatch(/^530 /m);
    expect(out).not.toMatch(/^235 /m);
  });

  it("accepts Python smtplib over STARTTLS with AUTH PLAIN as the IMVU's own mailbox", async () => {
    const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)
s.starttls(context=ctx)
s.login(sys.argv[2], sys.argv[3])
s.sendmail(sys.argv[2], [sys.argv[4]], 'From: %s\\r\\nTo: %s\\r\\nSubject: from python\\r\\n\\r\\nhi\\r\\n' % (sys.argv[2], sys.argv[4]))
s.quit()
print('sent')`;
    const r = await run('python3', ['-c', script, String(mail.submission!.port), `creator@${aliceDomain}`, PASSWORD, `creator@${bobDomain}`]);
    expect(r.stdout.trim()).toBe('sent');
    expect(inbox('IMVU-002', `creator@${bobDomain}`).some((m) => m.includes('Subject: from python'))).toBe(true);
  });

  it('implicit TLS (465) with AUTH LOGIN through nodemailer', async () => {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: mail.smtps!.port, secure: true, tls: { rejectUnauthorized: false }, auth: { user: `creator@${aliceDomain}`, pass: PASSWORD, method: 'LOGIN' } });
    const info = await t.sendMail({ from: `creator@${aliceDomain}`, to: `admin@${aliceDomain}`, subject: 'over 465', text: 'x' });
    expect(info.response).toMatch(/^250 2\.0\.0 queued/);
  });

  it('spoofing another IMVU (threat 1.4): 550 and a denied mail.send in the ledger (gate 5)', async () => {
    const before = inbox('IMVU-002', `admin@${bobDomain}`).length;
    await expect(submission().sendMail({ envelope: { from: `admin@${bobDomain}`, to: [`admin@${bobDomain}`] }, raw: `From: admin@${bobDomain}\r\nSubject: spoof\r\n\r\nx\r\n` })).rejects.toThrow(/550 5\.7\.1/);
    // Own envelope sender, foreign From header: refused at DATA.
    await expect(submission().sendMail({ envelope: { from: `creator@${aliceDomain}`, to: [`admin@${bobDomain}`] }, raw: `From: "Bob" <admin@${bobDomain}>\r\nSubject: spoof\r\n\r\nx\r\n` })).rejects.toThrow(/550 5\.7\.1 From\/Sender <admin@/);
    expect(inbox('IMVU-002', `admin@${bobDomain}`)).toHaveLength(before);
    const denied = (await p.store.readEntries(0, p.chokepoint.ledger.size)).map(decodeEntry).filter((e) => e.command.command.type === 'mail.send');
    expect(denied.length).toBeGreaterThanOrEqual(2);
    for (const e of denied) {
      expect(e.decision.allowed).toBe(false);
      expect(e.decision.gates.find((g) => g.gate === 5)).toMatchObject({ status: 'deny' });
      expect(e.command.command.actor).toBe(mail.identity.id);
      expect(e.command.command.body).toMatchObject({ imvu: 'IMVU-001', identity: alice.id, login: `creator@${aliceDomain}` });
    }
  });

  it('AUTH brute force is rate-limited per source; wrong passwords never log in', async () => {
    const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
codes = []
for i in range(30):
    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)
    s.starttls(context=ctx)
    try:
        s.login(sys.argv[2], 'guess%d' % i)
        codes.append(235)
    except smtplib.SMTPAuthenticationError as e:
        codes.append(e.smtp_code)
    except smtplib.SMTPException as e:
        sys.stderr.write(repr(e))
        codes.append(getattr(e, 'smtp_code', 0))
    try: s.quit()
    except Exception: pass
print(' '.join(map(str, codes)))`;
    const r = await run('python3', ['-c', script, String(mail.submission!.port), `admin@${aliceDomain}`], { timeout: 120_000 });
    const codes = r.stdout.trim().split(' ').map(Number);
    expect(codes).not.toContain(235);
    // Refused for the password first (a slow first login may meet the test's 3 s session deadline: 0)...
    expect(codes.filter((c) => c === 535).length).toBeGreaterThanOrEqual(1);
    expect(codes.slice(0, 5).every((c) => c === 535 || c === 0)).toBe(true);
    // ...then for the rate, without a password being tried.
    expect(codes.slice(-5).every((c) => c === 454)).toBe(true);
    // The right password for that account is now refused too (per-account limit), until it recovers.
    await expect(submission(`admin@${aliceDomain}`, 'whatever').sendMail({ from: `admin@${aliceDomain}`, to: `admin@${aliceDomain}`, text: 'x' })).rejects.toThrow(/454|535/);
  }, 120_000);

  it('meters messages and bytes per IMVU for the mail service (exact counts in the ledger: test/mail/metering.test.ts)', () => {
    const s = mail.meter.stats();
    // Counted, and either still pending or already reported (never denied).
    expect(s.pendingUnits > 0n || s.reported > 0).toBe(true);
    expect(s.denied).toBe(0);
  });
});
