import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
import { provisioner } from '../../src/imvu/provision.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { mxResolver } from '../../src/mail/queue/mx.ts';
import { MailQueue } from '../../src/mail/queue/queue.ts';
import { dkimSigner } from '../../src/mail/signing/dkim.ts';
import { NEXUS, startHierarchy, type Hierarchy } from '../support/dns-hierarchy.ts';
import { postfixAvailable, startPostfix, type Postfix } from '../support/postfix.ts';
import { opendkimAvailable, startOpendkim, type Opendkim } from '../support/opendkim.ts';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

// Our outbound queue against a stock Postfix (the Debian package) on loopback as the outside
// world: the recipient domain's MX comes from a loopback DNS hierarchy through the project's own
// resolver, the message goes over STARTTLS (Postfix's Received header says so), and python3-dkim
// verifies the delivered copy with its key look-ups sent to our authoritative server. Postfix itself
// checks DKIM with OpenDKIM as its milter (its DNS through libunbound, stub zones pointed at our
// server), and the copy it stored is judged for SPF, DKIM and DMARC by authheaders and pyspf
// (test/support/authcheck.py), none of them ours. Between two IMVUs of one nexus the message is
// delivered locally, signed all the same. Two nexus instances: test/interop/two-nexus.test.ts.

const VERIFY = join(import.meta.dirname, '..', 'support', 'dkimverify-dig.py');
const AUTHCHECK = join(import.meta.dirname, '..', 'support', 'authcheck.py');
const run = postfixAvailable() && opendkimAvailable() ? describe : describe.skip;

let p: TestPlatform;
let alice: Actor;
let h: Hierarchy;
let postfix: Postfix;
let queue: MailQueue;
let opendkim: Opendkim;

beforeAll(async () => {
  if (!postfixAvailable() || !opendkimAvailable()) return;
  p = await testPlatform({ provision: provisioner });
  alice = await p.register('alice', 'creator');
  for (const name of ['Gallery', 'Shop']) expect((await p.as(alice, 'imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  h = await startHierarchy(p.store);
  h.tldRecords.test.push({ name: 'outside.test', type: 'MX', data: { preference: 10, exchange: 'mx.outside.test' } }, { name: 'mx.outside.test', type: 'A', data: '127.0.0.1' });
  opendkim = await startOpendkim({ mode: 'v', authservId: 'mx.outside.test', stubZones: [{ name: 'imvu001.world', address: NEXUS, port: h.port }] });
  postfix = await startPostfix({ domains: ['outside.test'], milters: [opendkim.milter] });
  queue = new MailQueue({
    dataDir: p.dataDir,
    db: p.store,
    sign: dkimSigner(p.dataDir, p.store),
    remote: { lookupMx: mxResolver({ rootHints: h.rootHints, upstreamPort: h.port }), port: postfix.port, heloName: 'mail.imvu001.world' },
    retry: { baseMs: 200, maxMs: 1000, maxAttempts: 10 },
    tickMs: 50,
  });
  queue.start();
}, 60_000);
afterAll(async () => {
  await queue?.close();
  await postfix?.stop();
  await opendkim?.stop();
  await h?.close();
  await p?.cleanup();
});

function authcheck(message: Buffer, port: number, ip: string, mailFrom: string, helo: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/python3', [AUTHCHECK, NEXUS, String(port), ip, mailFrom, helo], { timeout: 60_000 });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', () => resolve(out));
    c.stdin.end(message);
  });
}

function dkimverify(message: Buffer, port: number): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/python3', [VERIFY, NEXUS, String(port)], { timeout: 30_000 });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ ok: code === 0, out }));
    c.stdin.end(message);
  });
}

async function until<T>(f: () => T | undefined, what: () => string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

run('outbound mail to Postfix', () => {
  it('finds the MX through our resolver, delivers over STARTTLS, and the delivered copy verifies (DKIM, attribution covered)', async () => {
    const raw = Buffer.from('From: <creator@imvu001.world>\r\nTo: <someone@outside.test>\r\nSubject: to postfix\r\n\r\nHello Postfix.\r\n');
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: 'creator@imvu001.world', rcptTo: ['someone@outside.test'], raw });
    const got = await until(
      () => postfix.messages().find((m) => m.toString().includes('Subject: to postfix')),
      () => postfix.log().slice(-2000),
    );
    const text = got.toString('latin1');
    // Postfix's own trace: the transaction was over TLS.
    expect(text).toMatch(/Received: from mail\.imvu001\.world[\s\S]*?\(using TLSv1\.[23]/);
    expect(text).toContain(`X-Nexus-Attribution: identity=${alice.id}; imvu=IMVU-001`);
    expect(text).toMatch(/Return-Path: <creator@imvu001\.world>/);
    const r = await dkimverify(got, h.port);
    expect(r.out).toContain('signature ok');
    expect(r.ok).toBe(true);
    // Postfix's own check, by its OpenDKIM milter, in the header it added.
    expect(text.replace(/\r?\n[ \t]+/g, ' ')).toMatch(/Authentication-Results: mx\.outside\.test; dkim=pass [^\n]*header\.d=imvu001\.world/);
    // SPF (the queue connected from 127.0.0.1, named in `v=spf1 mx -all` through the MX's A), DKIM and DMARC (p=reject, aligned).
    const verdict = await authcheck(got, h.port, '127.0.0.1', 'creator@imvu001.world', 'mail.imvu001.world');
    expect(verdict).toMatch(/spf=pass[^;]*smtp\.mailfrom=imvu001\.world/);
    expect(verdict).toMatch(/dkim=pass[^;]*header\.d=imvu001\.world/);
    expect(verdict).toMatch(/dmarc=pass[^;]*header\.from=imvu001\.world/);
    // The same checker fails a copy whose body was changed in transit (it can fail).
    const tampered = Buffer.from(text.replace('Hello Postfix.', 'Hello Mallory.'), 'latin1');
    const bad = await authcheck(tampered, h.port, '127.0.0.1', 'creator@imvu001.world', 'mail.imvu001.world');
    expect(bad).toMatch(/dkim=fail/);
    // And SPF fails from an address the zone does not name.
    expect(await authcheck(got, h.port, '192.0.2.7', 'creator@imvu001.world', 'mail.imvu001.world')).toMatch(/spf=fail/);
  });

  it('a recipient Postfix refuses comes back as a DSN in the sender mailbox', async () => {
    // Postfix takes every address of outside.test; this one it refuses for good at RCPT.
    const raw = Buffer.from('From: <creator@imvu001.world>\r\nTo: <x@elsewhere.test>\r\nSubject: refused\r\n\r\nNo.\r\n');
    h.tldRecords.test.push({ name: 'elsewhere.test', type: 'MX', data: { preference: 10, exchange: 'mx.outside.test' } });
    const inbox = join(mailboxRoot(p.dataDir, 'IMVU-001', 'creator@imvu001.world'), 'new');
    const before = existsSync(inbox) ? readdirSync(inbox).length : 0;
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: 'creator@imvu001.world', rcptTo: ['x@elsewhere.test'], raw });
    const dsn = await until(
      () => (existsSync(inbox) && readdirSync(inbox).length > before ? readdirSync(inbox).map((f) => readFileSync(join(inbox, f), 'latin1')).find((m) => m.includes('x@elsewhere.test')) : undefined),
      () => postfix.log().slice(-2000),
    );
    expect(dsn).toContain('Content-Type: message/delivery-status');
    expect(dsn).toMatch(/Status: 5\.\d\.\d/);
    expect(dsn).toMatch(/Remote-MTA: dns; mx\.outside\.test/);
    expect(dsn).toContain('Recipient address rejected');
  });

  it('between two IMVUs of one nexus: local delivery (Postfix sees nothing), signed and verifiable', async () => {
    const seen = postfix.messages().length;
    const raw = Buffer.from('From: <creator@imvu001.world>\r\nTo: <admin@imvu002.world>\r\nSubject: next door\r\n\r\nHello neighbour.\r\n');
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: 'creator@imvu001.world', rcptTo: ['admin@imvu002.world'], raw });
    const inbox = join(mailboxRoot(p.dataDir, 'IMVU-002', 'admin@imvu002.world'), 'new');
    const got = await until(
      () => (existsSync(inbox) ? readdirSync(inbox).map((f) => readFileSync(join(inbox, f))).find((m) => m.toString().includes('Subject: next door')) : undefined),
      () => 'no local delivery',
    );
    expect(postfix.messages()).toHaveLength(seen);
    const r = await dkimverify(got, h.port);
    expect(r.out).toContain('signature ok');
  });
});
