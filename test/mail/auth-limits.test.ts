// AUTH brute force (issue 11 item 8): failures are limited per source prefix (/24) AND per account,
// each on its own, and every refusal is recorded: the daemon's anonymous-noise summary lands in the
// ledger as a `noise.summary` entry with the counts per source and reason. Driven by Python's
// smtplib from several loopback source addresses (127.0.N.1: a /24 each).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { hashAppPassword } from '../../src/mail/auth/app-password.ts';
import { startTestApi, type Actor, type TestApi } from '../support/api.ts';
import { startFixtureDns } from './fixture-dns.ts';

const run = promisify(execFile);
let api: TestApi;
let dns: Awaited<ReturnType<typeof startFixtureDns>>;
let alice: Actor;
let bob: Actor;
const ALICE = 'creator@imvu001.world';
const BOB = 'creator@imvu002.world';
const PW = { [ALICE]: 'alice app password', [BOB]: 'bob app password' };

beforeAll(async () => {
  dns = await startFixtureDns([]);
  api = await startTestApi({
    noiseIntervalMs: 300,
    mail: {
      hostname: 'mx.test',
      smtpPort: null,
      submissionPort: 0,
      smtpsPort: null,
      authLimits: { perSource: { burst: 5, rate: 0.0001 }, perAccount: { burst: 3, rate: 0.0001 } },
      resolver: { rootHints: [{ name: 'root.', address: '127.0.0.1', port: dns.port }], upstreamPort: dns.port },
    },
  });
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  for (const [who, name] of [
    [alice, 'Gallery'],
    [bob, 'Shop'],
  ] as const)
    expect((await api.createImvu(who, name)).status).toBe(201);
  for (const [who, imvu, address] of [
    [alice, 'IMVU-001', ALICE],
    [bob, 'IMVU-002', BOB],
  ] as const)
    expect((await api.as(who, 'POST', '/v1/commands', 'mail.password.set', { imvu, address, hash: await hashAppPassword(PW[address]) })).status).toBeLessThan(300);
}, 60_000);
afterAll(async () => {
  await api?.close();
  await dns?.close();
});

const SCRIPT = `
import json, smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
out = []
for source, user, password in json.loads(sys.argv[2]):
    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30, source_address=(source, 0))
    s.starttls(context=ctx)
    s.ehlo('client.test')
    s.user, s.password = user, password
    try:
        # One mechanism per attempt (login() would try PLAIN, then LOGIN: two failures).
        s.auth('PLAIN', s.auth_plain)
        out.append(235)
    except smtplib.SMTPAuthenticationError as e:
        out.append(e.smtp_code)
    try: s.quit()
    except Exception: pass
print(json.dumps(out))`;

async function logins(attempts: [source: string, user: string, password: string][]): Promise<number[]> {
  const r = await run('/usr/bin/python3', ['-c', SCRIPT, String(api.server.mail!.submission!.port), JSON.stringify(attempts)], { timeout: 120_000 });
  return JSON.parse(r.stdout) as number[];
}

describe('AUTH brute force', () => {
  it('per account: guesses from six different /24s lock the account after three; another account still logs in', async () => {
    const guesses = Array.from({ length: 6 }, (_, i) => [`127.0.${10 + i}.1`, ALICE, `guess ${i}`] as [string, string, string]);
    expect(await logins(guesses)).toEqual([535, 535, 535, 454, 454, 454]);
    // The right password, from a source that never failed: refused while the account is locked.
    expect(await logins([['127.0.30.1', ALICE, PW[ALICE]]])).toEqual([454]);
    // The limit is the account's, not the sources': bob logs in from a source that failed for alice.
    expect(await logins([['127.0.10.1', BOB, PW[BOB]]])).toEqual([235]);
  }, 120_000);

  it('per source: one /24 guessing eight different accounts is cut off after five; other sources are not', async () => {
    const guesses = Array.from({ length: 8 }, (_, i) => ['127.0.40.1', `nobody${i}@imvu002.world`, 'x'] as [string, string, string]);
    expect(await logins(guesses)).toEqual([535, 535, 535, 535, 535, 454, 454, 454]);
    // The same /24 (another address in it) with bob's right password: refused for the source.
    expect(await logins([['127.0.40.9', BOB, PW[BOB]]])).toEqual([454]);
    expect(await logins([['127.0.41.1', BOB, PW[BOB]]])).toEqual([235]);
  }, 120_000);

  it('every refusal is recorded: noise.summary entries count them per source and reason', async () => {
    type Count = { source: string; reason: string; count: number };
    const counts = async () => {
      const entries = (await api.server.store.readEntries(0, await api.server.store.ledgerSize())).map(decodeEntry);
      const summaries = entries.filter((e) => e.command.command.type === 'noise.summary');
      for (const e of summaries) expect(e.decision.allowed, JSON.stringify(e.decision.gates)).toBe(true);
      const total = new Map<string, number>();
      for (const e of summaries) for (const c of (e.command.command.body as { counts: Count[] }).counts) total.set(`${c.source} ${c.reason}`, (total.get(`${c.source} ${c.reason}`) ?? 0) + c.count);
      return total;
    };
    const end = Date.now() + 30_000;
    let t = await counts();
    while ((t.get('127.0.40.0/24 smtp-auth-rate-limited') ?? 0) < 4 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      t = await counts();
    }
    expect(t.get('127.0.40.0/24 smtp-auth-failed')).toBe(5);
    expect(t.get('127.0.40.0/24 smtp-auth-rate-limited')).toBe(4);
    for (let i = 10; i < 13; i++) expect(t.get(`127.0.${i}.0/24 smtp-auth-failed`)).toBe(1);
    for (let i = 13; i < 16; i++) expect(t.get(`127.0.${i}.0/24 smtp-auth-rate-limited`)).toBe(1);
    expect(t.get('127.0.30.0/24 smtp-auth-rate-limited')).toBe(1);
  }, 60_000);
});
