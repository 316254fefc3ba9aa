// Mail usage in the ledger (issue 11 item 7, gate 6): the daemon's `mail` service identity counts
// messages and bytes per IMVU, in (the MX's deliveries, the queue's local deliveries) and out
// (accepted submissions, bytes times recipients), and reports them as batched usage.report
// entries. Known mail goes in over real sockets with nodemailer; exactly those counts come out of
// the ledger, and a report an IMVU signs itself changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { hashAppPassword } from '../../src/mail/auth/app-password.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { startTestApi, type Actor, type TestApi } from '../support/api.ts';
import { expectRecordedDenial } from '../support/ledger.ts';
import { startFixtureDns } from './fixture-dns.ts';

type Usage = { imvu: string; service: string; metrics: Record<string, string> };
let api: TestApi;
let dns: Awaited<ReturnType<typeof startFixtureDns>>;
let alice: Actor;
let bob: Actor;
const PASSWORD = 'metered pass 1';

beforeAll(async () => {
  dns = await startFixtureDns([{ name: 'good.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' }]);
  const rootHints = [{ name: 'root.', address: '127.0.0.1', port: dns.port }];
  api = await startTestApi({
    mailOut: { rootHints, upstreamPort: dns.port, relayPort: 9, hostname: 'mail.test' },
    mail: {
      hostname: 'mx.test',
      smtpPort: 0,
      submissionPort: 0,
      smtpsPort: null,
      meterIntervalMs: 200,
      resolver: { rootHints, upstreamPort: dns.port, limits: { timeoutMs: 500, requestTimeoutMs: 1500 } },
    },
  });
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  expect((await api.createImvu(alice, 'Gallery')).status).toBe(201);
  expect((await api.createImvu(bob, 'Shop')).status).toBe(201);
  const set = await api.as(alice, 'POST', '/v1/commands', 'mail.password.set', { imvu: 'IMVU-001', address: 'creator@imvu001.world', hash: await hashAppPassword(PASSWORD) });
  expect(set.status).toBeLessThan(300);
}, 60_000);
afterAll(async () => {
  await api?.close();
  await dns?.close();
});

async function ledger(): Promise<LedgerEntry[]> {
  return (await api.server.store.readEntries(0, await api.server.store.ledgerSize())).map(decodeEntry);
}
function sum(entries: LedgerEntry[], imvu: string, metric: string): bigint {
  return entries
    .filter((e) => e.command.command.type === 'usage.report' && e.decision.allowed && (e.command.command.body as Usage).imvu === imvu && (e.command.command.body as Usage).service === 'mail')
    .reduce((n, e) => n + BigInt((e.command.command.body as Usage).metrics[metric] ?? '0'), 0n);
}
/** Bytes of every message stored in a mailbox (new/ and cur/): what came in. */
function storedBytes(imvu: string, address: string): { n: number; bytes: number } {
  let n = 0;
  let bytes = 0;
  for (const sub of ['new', 'cur']) {
    const dir = join(mailboxRoot(api.dir, imvu, address), sub);
    let files: string[] = [];
    try {
      files = readdirSync(dir);
    } catch {
      continue;
    }
    for (const f of files) {
      n++;
      bytes += statSync(join(dir, f)).size;
    }
  }
  return { n, bytes };
}
async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('mail usage in the ledger', () => {
  it('known mail in and out is exactly that many messages and bytes, reported by the mail service in batches', async () => {
    const mx = nodemailer.createTransport({ host: '127.0.0.1', port: api.server.mail!.mx!.port, secure: false, tls: { rejectUnauthorized: false }, name: 'client.good.test' });
    // In from outside: 3 messages to alice's mailbox.
    for (let i = 0; i < 3; i++) {
      const raw = `From: news@good.test\r\nTo: creator@imvu001.world\r\nSubject: in ${i}\r\n\r\n${'x'.repeat(100 * (i + 1))}\r\n`;
      expect((await mx.sendMail({ envelope: { from: 'news@good.test', to: ['creator@imvu001.world'] }, raw })).response).toMatch(/^250/);
    }
    // Out from alice to bob's IMVU (delivered locally by the queue): 2 messages of known size.
    const sub = nodemailer.createTransport({
      host: '127.0.0.1',
      port: api.server.mail!.submission!.port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'creator@imvu001.world', pass: PASSWORD },
    });
    const out = [0, 1].map((i) => `From: creator@imvu001.world\r\nTo: admin@imvu002.world\r\nSubject: out ${i}\r\n\r\n${'y'.repeat(1000 + i)}\r\n`);
    for (const raw of out) expect((await sub.sendMail({ envelope: { from: 'creator@imvu001.world', to: ['admin@imvu002.world'] }, raw })).response).toMatch(/^250/);
    const bobs = await until('local delivery to IMVU-002', () => {
      const s = storedBytes('IMVU-002', 'admin@imvu002.world');
      return s.n === 2 ? s : undefined;
    });
    const alices = storedBytes('IMVU-001', 'creator@imvu001.world');
    expect(alices.n).toBe(3);

    const expected = {
      'IMVU-001': { 'mail.messages': BigInt(3 + 2), 'mail.bytes_in': BigInt(alices.bytes), 'mail.bytes_out': BigInt(out[0]!.length + out[1]!.length) },
      'IMVU-002': { 'mail.messages': 2n, 'mail.bytes_in': BigInt(bobs.bytes), 'mail.bytes_out': 0n },
    };
    const now = (all: LedgerEntry[]) => Object.fromEntries(Object.keys(expected).map((imvu) => [imvu, Object.fromEntries(['mail.messages', 'mail.bytes_in', 'mail.bytes_out'].map((m) => [m, sum(all, imvu, m)]))]));
    let last: unknown;
    let all0: LedgerEntry[] = [];
    await until('the usage reports', async () => {
      all0 = await ledger();
      const got = now(all0);
      last = got;
      return JSON.stringify(got, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) === JSON.stringify(expected, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ? true : undefined;
    }).catch((err: unknown) => {
      const denied = all0.filter((e) => e.command.command.type === 'usage.report').map((e) => JSON.stringify(e.decision.gates.filter((g) => g.status === 'deny')));
      throw new Error(`${String(err)}; ${denied.join(' | ')}; last seen ${JSON.stringify(last, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
    });
    // A few more intervals: nothing counted twice.
    await new Promise((r) => setTimeout(r, 800));
    const all = await ledger();
    expect(now(all)).toEqual(expected);
    const reports = all.filter((e) => e.command.command.type === 'usage.report' && (e.command.command.body as Usage).service === 'mail');
    for (const e of reports) {
      expect(e.command.command.actor).toBe(api.server.mail!.identity.id);
      expect(e.decision.gates.find((g) => g.gate === 6)).toMatchObject({ status: 'pass', reason: 'metered by service mail' });
    }
    // Batched: fewer reports than messages times metrics.
    expect(reports.length).toBeLessThan(7 * 3);
  }, 120_000);

  it('an IMVU reporting its own mail usage changes nothing: refused by gate 6 and recorded', async () => {
    const before = await ledger();
    const body = { imvu: 'IMVU-001', service: 'mail', period: { start: '2026-11-01T00:00:00.000Z', end: '2026-11-01T01:00:00.000Z' }, metrics: { 'mail.messages': '1000000' } };
    for (const who of [alice, bob]) {
      const sent = api.sign(who, 'usage.report', body);
      await expectRecordedDenial(api, await api.request('POST', '/v1/usage', sent), sent, 403, 6, /a creator identity cannot report usage/);
    }
    const after = await ledger();
    for (const m of ['mail.messages', 'mail.bytes_in', 'mail.bytes_out']) expect(sum(after, 'IMVU-001', m)).toBe(sum(before, 'IMVU-001', m));
  });
});
