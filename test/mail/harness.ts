// A platform with two IMVUs, an app password, a fixture DNS root for the outside senders, and the
// mail service on free loopback ports: what the interop suites drive with Postfix and swaks.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
import { startMailService, type MailService } from '../../src/mail/smtp/service.ts';
import { hashAppPassword } from '../../src/mail/auth/app-password.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { startFixtureDns, type FixtureRecord } from './fixture-dns.ts';

export interface MailFixture {
  p: TestPlatform;
  mail: MailService;
  alice: Actor;
  aliceDomain: string;
  password: string;
  inbox(address: string, imvu?: string): string[];
  close(): Promise<void>;
}

export async function mailFixture(records: FixtureRecord[] = []): Promise<MailFixture> {
  const dns = await startFixtureDns([
    { name: 'good.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' },
    { name: '_dmarc.good.test', type: 'TXT', data: 'v=DMARC1; p=reject' },
    { name: 'evil.test', type: 'TXT', data: 'v=spf1 ip4:192.0.2.1 -all' },
    { name: '_dmarc.evil.test', type: 'TXT', data: 'v=DMARC1; p=reject' },
    ...records,
  ]);
  const p = await testPlatform();
  const alice = await p.register('alice', 'creator');
  await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
  const aliceDomain = (await p.store.get<{ domain: string }>("SELECT domain FROM imvus WHERE id = 'IMVU-001'"))!.domain;
  const password = 'interop pass 1';
  const set = await p.as(alice, 'mail.password.set', { imvu: 'IMVU-001', address: `creator@${aliceDomain}`, hash: await hashAppPassword(password) });
  if (!set.allowed) throw new Error('mail.password.set refused');
  const mail = await startMailService({
    platform: p,
    hostname: 'mx.test',
    smtpPort: 0,
    submissionPort: 0,
    smtpsPort: 0,
    resolver: { rootHints: [{ name: 'root.', address: '127.0.0.1', port: dns.port }], upstreamPort: dns.port, limits: { timeoutMs: 500, requestTimeoutMs: 1500 } },
  });
  return {
    p,
    mail,
    alice,
    aliceDomain,
    password,
    inbox(address, imvu = 'IMVU-001') {
      const dir = join(mailboxRoot(p.dataDir, imvu, address), 'new');
      try {
        return readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8'));
      } catch {
        return [];
      }
    },
    async close() {
      await mail.close();
      await dns.close();
      await p.cleanup();
    },
  };
}
