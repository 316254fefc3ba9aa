// IMAP as the daemon runs it (src/mail/imap/service.ts), over a real platform: app-password logins
// over STARTTLS and implicit TLS (imapflow), a message delivered by the SMTP MX seen by an IDLE
// client, the refusals recorded per IMVU as `mail.refusals` by the mail service, mail storage
// sampled into the ledger as usage (gate 6), and the quota from the envelope's storage (QUOTA,
// [OVERQUOTA]).
import { closeSync, mkdirSync, openSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { hashAppPassword } from '../../src/mail/auth/app-password.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { startMailService, type MailService } from '../../src/mail/smtp/service.ts';
import { sampleMailStorage } from '../../src/mail/storage.ts';
import { startImapService, STORAGE_METRIC, type ImapService } from '../../src/mail/imap/service.ts';
import { startFixtureDns } from '../mail/fixture-dns.ts';
import { Raw } from './raw.ts';

const PASSWORD = 'imap app password 1';
let p: TestPlatform;
let alice: Actor;
let bob: Actor;
let domA: string;
let domB: string;
let mail: MailService;
let imap: ImapService;
let dns: Awaited<ReturnType<typeof startFixtureDns>>;
let clock = Date.now();
let fakeClock = false;
const noise: string[] = [];

beforeAll(async () => {
  dns = await startFixtureDns([{ name: 'sender.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' }]);
  p = await testPlatform();
  alice = await p.register('alice', 'creator');
  bob = await p.register('bob', 'creator');
  expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { storage_gb: 10 } })).allowed).toBe(true);
  expect((await p.as(bob, 'imvu.create', { name: 'Studio', owner: bob.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  domA = (await p.store.get<{ domain: string }>("SELECT domain FROM imvus WHERE id = 'IMVU-001'"))!.domain;
  domB = (await p.store.get<{ domain: string }>("SELECT domain FROM imvus WHERE id = 'IMVU-002'"))!.domain;
  expect((await p.as(alice, 'mailbox.add', { imvu: 'IMVU-001', address: `info@${domA}` })).allowed).toBe(true);
  expect((await p.as(alice, 'mail.password.set', { imvu: 'IMVU-001', address: `info@${domA}`, hash: await hashAppPassword(PASSWORD) })).allowed).toBe(true);
  expect((await p.as(bob, 'mailbox.add', { imvu: 'IMVU-002', address: `info@${domB}` })).allowed).toBe(true);
  mail = await startMailService({
    platform: p, hostname: 'mx.test', smtpPort: 0, submissionPort: null, smtpsPort: null,
    resolver: { rootHints: [{ name: 'root.', address: '127.0.0.1', port: dns.port }], upstreamPort: dns.port, limits: { timeoutMs: 500, requestTimeoutMs: 1500 } },
  });
  imap = await startImapService({
    platform: p, host: '127.0.0.1', port: 0, tlsPort: 0,
    // Recorded and sampled when the test says so.
    refusalIntervalMs: 3_600_000, sampleMs: 3_600_000, meterIntervalMs: 3_600_000,
    // IDLE must hear of new mail from the file system's events: the fallback poll is out of the way.
    server: { idlePollMs: 600_000 },
    now: () => (fakeClock ? clock : Date.now()),
    noise: { add: (source, reason) => noise.push(`${source} ${reason}`) },
  });
}, 60_000);

afterAll(async () => {
  await imap?.close();
  await mail?.close();
  await dns?.close();
  await p?.cleanup();
});

function client(o: { secure?: boolean; pass?: string } = {}): ImapFlow {
  return new ImapFlow({
    host: '127.0.0.1',
    port: o.secure ? imap.server.tlsPort! : imap.server.port!,
    secure: !!o.secure,
    doSTARTTLS: o.secure ? undefined : true,
    tls: { rejectUnauthorized: false },
    auth: { user: `info@${domA}`, pass: o.pass ?? PASSWORD },
    logger: false,
    disableAutoIdle: true,
  } as ConstructorParameters<typeof ImapFlow>[0]);
}

async function entries(type: string): Promise<{ index: number; actor: string; body: Record<string, unknown>; allowed: boolean }[]> {
  const size = p.chokepoint.ledger.size;
  const out = [];
  for (const data of await p.store.readEntries(0, size)) {
    const e = decodeEntry(data);
    const cmd = e.command?.command;
    if (cmd?.type === type) out.push({ index: e.index, actor: cmd.actor, body: cmd.body as Record<string, unknown>, allowed: e.decision.allowed });
  }
  return out;
}

describe('IMAP service', { timeout: 120_000 }, () => {
  it('logs in with the app password over STARTTLS and over implicit TLS, and never in the clear', async () => {
    const s = client();
    await s.connect();
    expect(s.secureConnection).toBe(true);
    await s.logout();
    const t = client({ secure: true });
    await t.connect();
    await t.mailboxOpen('INBOX');
    await t.logout();
    // Before STARTTLS the plain port offers no login (LOGINDISABLED) and refuses one (PRIVACYREQUIRED).
    const raw = await Raw.open(imap.server.port!);
    expect(await raw.cmd('c', 'CAPABILITY')).toMatch(/LOGINDISABLED[\s\S]*STARTTLS|STARTTLS[\s\S]*LOGINDISABLED/);
    expect(await raw.cmd('l', `LOGIN info@${domA} "${PASSWORD}"`)).toMatch(/l NO \[PRIVACYREQUIRED\]/);
    raw.close();
    await expect(client({ secure: true, pass: 'wrong' }).connect()).rejects.toThrow();
    // A failed login is anonymous: counted per source prefix for the noise summary, not recorded alone.
    expect(noise).toContain('127.0.0.0/24 imap-login-failed');
  });

  it('shows an IDLE client a message the MX delivered, from the file system event', async () => {
    const c = client();
    await c.connect();
    await c.mailboxOpen('INBOX');
    const before = (c.mailbox as { exists: number }).exists;
    const exists = new Promise<number>((resolve) => c.on('exists', (e: { count: number }) => resolve(e.count)));
    const idle = c.idle();
    await new Promise((r) => setTimeout(r, 200));
    const tx = nodemailer.createTransport({ host: '127.0.0.1', port: mail.mx!.port, secure: false, tls: { rejectUnauthorized: false }, name: 'client.sender.test' });
    const t0 = performance.now();
    await tx.sendMail({ envelope: { from: 'news@sender.test', to: [`info@${domA}`] }, raw: `From: news@sender.test\r\nTo: info@${domA}\r\nSubject: live\r\n\r\nhello\r\n` });
    // The poll is 10 minutes away: only the watch on new/ can have told the session.
    expect(await exists).toBe(before + 1);
    console.log(`IDLE saw the SMTP delivery ${Math.round(performance.now() - t0)} ms after the SMTP client started (connect, STARTTLS, SPF, DATA, fsync)`);
    await c.noop();
    await idle.catch(() => undefined);
    const m = await c.fetchOne('*', { envelope: true });
    expect(m && m.envelope!.subject).toBe('live');
    await c.logout();
  });

  it("records each IMVU's refusals as one mail.refusals entry per interval, signed by the mail service", async () => {
    const raw = await Raw.open(imap.server.tlsPort!, true);
    expect(await raw.cmd('l', `LOGIN info@${domA} "${PASSWORD}"`)).toContain('l OK');
    const theirs = `../../../IMVU-002/mail/info@${domB}`;
    for (const [i, cmd] of [`SELECT "${theirs}"`, `SELECT "${theirs}"`, `STATUS "${theirs}" (MESSAGES)`, 'LIST "" "../*"'].entries()) {
      expect(await raw.cmd(`r${i}`, cmd)).toMatch(new RegExp(`r${i} NO \\[NOPERM\\]`));
    }
    raw.close();
    const [index] = await imap.recordRefusals();
    expect(index).toBeDefined();
    const rec = (await entries('mail.refusals')).find((e) => e.index === index)!;
    expect(rec.allowed).toBe(true);
    expect(rec.actor).toBe(imap.identity.id);
    expect(rec.body.imvu).toBe('IMVU-001');
    const counts = (rec.body.counts as { address: string; command: string; reason: string; count: number }[]).map((c) => `${c.address} ${c.command} ${c.reason} ${c.count}`).sort();
    expect(counts).toEqual([
      `info@${domA} LIST pattern-outside-account 1`,
      `info@${domA} SELECT name-outside-account 2`,
      `info@${domA} STATUS name-outside-account 1`,
    ]);
    // Nothing new: no entry. And nobody but the mail service may record refusals.
    expect(await imap.recordRefusals()).toEqual([]);
    const forged = await p.as(alice, 'mail.refusals', { imvu: 'IMVU-002', from: new Date(Date.now() - 1000).toISOString(), to: new Date().toISOString(), counts: [{ address: `info@${domB}`, command: 'SELECT', reason: 'name-outside-account', count: 1 }] });
    expect(forged.allowed).toBe(false);
    expect(forged.gates.find((g) => g.status === 'deny')!.gate).toBe(5);
  });

  it('samples mail storage into the ledger as mail.storage_mb_hours, by the mail service (gate 6)', async () => {
    // A 4 GiB sparse message in another address of the IMVU: its size counts, no disk is used.
    const other = join(mailboxRoot(p.dataDir, 'IMVU-001', `archive@${domA}`), 'cur');
    mkdirSync(other, { recursive: true });
    const fd = openSync(join(other, '1.big.host:2,S'), 'w');
    ftruncateSync(fd, 4 * 2 ** 30);
    closeSync(fd);
    const bytes = sampleMailStorage(p.dataDir, 'IMVU-001');
    expect(bytes).toBeGreaterThanOrEqual(4n * 2n ** 30n);
    clock = Date.now();
    fakeClock = true;
    try {
      await imap.sampleStorage();
      // The next sample 3 s later, once the real clock has passed it (a report never ends ahead of time).
      while (Date.now() < clock + 3100) await new Promise((r) => setTimeout(r, 100));
      clock += 3000;
      await imap.sampleStorage();
      const res = await imap.meter.flush();
      const mine = res.reported.filter((r) => r.imvu === 'IMVU-001');
      expect(mine).toHaveLength(1);
      const expected = (bytes * 3000n) / ((1n << 20n) * 3_600_000n);
      expect(expected).toBeGreaterThan(0n);
      expect(mine[0]!.metrics.get(STORAGE_METRIC)).toBe(expected);
    } finally {
      fakeClock = false;
    }
    const rep = (await entries('usage.report')).filter((e) => e.body.service === 'mail' && e.body.imvu === 'IMVU-001');
    expect(rep.at(-1)!.allowed).toBe(true);
    expect(rep.at(-1)!.actor).toBe(imap.identity.id);
    expect((rep.at(-1)!.body.metrics as Record<string, string>)[STORAGE_METRIC]).toMatch(/^[1-9]\d*$/);
  });

  it('reports the envelope storage with GETQUOTA and refuses an APPEND over it with [OVERQUOTA]', async () => {
    const c = client();
    await c.connect();
    const q = await c.getQuota('INBOX');
    expect(q && q.storage && q.storage.limit).toBe(10 * 1024 * 1024 * 1024);
    const used = Number(sampleMailStorage(p.dataDir, 'IMVU-001'));
    expect(Math.abs((q && q.storage ? (q.storage.usage ?? 0) : 0) - used)).toBeLessThan(2048);
    // The creator lowers the envelope below what the mail holds (4 GiB).
    expect((await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', storage_gb: 2 })).allowed).toBe(true);
    const q2 = await c.getQuota('INBOX');
    expect(q2 && q2.storage && q2.storage.limit).toBe(2 * 1024 * 1024 * 1024);
    await expect(c.append('INBOX', 'Subject: one more\r\n\r\nx\r\n')).rejects.toThrow();
    await c.logout();
    const raw = await Raw.open(imap.server.tlsPort!, true);
    await raw.cmd('l', `LOGIN info@${domA} "${PASSWORD}"`);
    expect(await raw.cmd('a', 'APPEND INBOX {5+}\r\nhello')).toMatch(/a NO \[OVERQUOTA\]/);
    expect(await raw.cmd('s', 'SELECT INBOX')).toContain('s OK');
    expect(await raw.cmd('c', 'COPY 1 Trash')).toMatch(/c NO \[OVERQUOTA\]/);
    raw.close();
  });
});
