import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mailFixture, type MailFixture } from '../mail/harness.ts';
import { dkimKeyPair, opendkimAvailable, startOpendkim, type Opendkim } from '../support/opendkim.ts';

// A private Postfix instance (Debian package postfix; its own config dir and queue under a temp
// dir, loopback only) as the outside world: it accepts a message, signs it with OpenDKIM (its
// milter, d=good.test) and relays it into our MX, which judges SPF, DKIM and DMARC with mailauth.
const run = promisify(execFile);
const postfixUid = spawnSync('id', ['-u', 'postfix'], { encoding: 'utf8' });
const usable = spawnSync('postfix', ['-c', '/etc/postfix', 'check']).status !== null && postfixUid.status === 0 && userInfo().uid === 0 && opendkimAvailable();
if (!usable) console.warn('postfix-in interop: needs root and the postfix package; skipping');

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const MASTER = (port: number) => `127.0.0.1:${port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`;

describe.skipIf(!usable)('Postfix delivering into our MX', () => {
  let f: MailFixture;
  let dir: string;
  let inPort: number;
  let opendkim: Opendkim;
  let keyDir: string;
  const postfix = (cmd: string) => run('script', ['-qc', `postfix -c ${dir} ${cmd}`, '/dev/null']);

  beforeAll(async () => {
    keyDir = mkdtempSync(join(tmpdir(), 'postfix-in-key-'));
    const key = dkimKeyPair(keyDir);
    f = await mailFixture([{ name: 'pf._domainkey.good.test', type: 'TXT', data: key.txt }]);
    opendkim = await startOpendkim({ mode: 's', authservId: 'postfix.good.test', sign: { domain: 'good.test', selector: 'pf', keyFile: key.keyFile } });
    dir = mkdtempSync(join(tmpdir(), 'postfix-in-'));
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'queue'));
    mkdirSync(join(dir, 'data'));
    chownSync(join(dir, 'data'), Number(postfixUid.stdout.trim()), 0);
    inPort = await freePort();
    writeFileSync(
      join(dir, 'main.cf'),
      [
        'compatibility_level = 3.6',
        `queue_directory = ${dir}/queue`,
        `data_directory = ${dir}/data`,
        'mail_owner = postfix',
        'setgid_group = postdrop',
        'inet_interfaces = loopback-only',
        'inet_protocols = ipv4',
        'myhostname = postfix.good.test',
        'mydestination =',
        'mynetworks = 127.0.0.0/8',
        `relayhost = [127.0.0.1]:${f.mail.mx!.port}`,
        'smtp_tls_security_level = encrypt',
        'smtp_tls_loglevel = 1',
        'smtpd_relay_restrictions = permit_mynetworks, reject',
        `smtpd_milters = ${opendkim.milter}`,
        'milter_default_action = tempfail',
        `maillog_file_prefixes = ${tmpdir()}`,
        `maillog_file = ${dir}/maillog`,
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'master.cf'), MASTER(inPort));
    await postfix('start');
  }, 60_000);

  afterAll(async () => {
    if (dir) await postfix('stop').catch(() => undefined);
    await opendkim?.stop();
    await f?.close();
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('relays over STARTTLS (required) into a hosted Maildir, signed by OpenDKIM: SPF, DKIM and DMARC pass at our MX; a relay attempt bounces in Postfix', async () => {
    const to = `admin@${f.aliceDomain}`;
    // Into Postfix on its own port, with a client nobody here wrote (Python's smtplib).
    const send = (rcpt: string, subject: string) =>
      run('python3', ['-c', `
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)
s.sendmail('news@good.test', [sys.argv[2]], 'From: news@good.test\\r\\nTo: %s\\r\\nSubject: %s\\r\\n\\r\\nvia postfix\\r\\n' % (sys.argv[2], sys.argv[3]))
s.quit()`, String(inPort), rcpt, subject]);
    await send(to, 'through-postfix');
    await send('victim@example.com', 'relay-attempt');
    let got: string | undefined;
    for (let i = 0; i < 60 && !got; i++) {
      await new Promise((r) => setTimeout(r, 500));
      got = f.inbox(to).find((m) => m.includes('Subject: through-postfix'));
    }
    expect(got).toBeDefined();
    const ar = /Authentication-Results: mx\.test;[^]*?\r\n(?![ \t])/.exec(got!)![0].replace(/\r\n[ \t]+/g, ' ');
    expect(ar).toMatch(/spf=pass[^;]*smtp\.mailfrom=news@good\.test/);
    expect(ar).toMatch(/dkim=pass header\.i=@good\.test header\.s=pf /);
    expect(ar).toMatch(/dmarc=pass[^;]*header\.from=good\.test/);
    // OpenDKIM's signature, not ours.
    expect(got).toMatch(/DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=good\.test;\s*s=pf;/);
    expect(got).toMatch(/Received: from .*\r?\n?.*by postfix\.good\.test \(Postfix\)/);
    // Postfix logged our refusal of the relay attempt (5.7.1) for the other message.
    let log = '';
    for (let i = 0; i < 40 && !/relay access denied/.test(log); i++) {
      await new Promise((r) => setTimeout(r, 500));
      try {
        log = readFileSync(join(dir, 'maillog'), 'utf8');
      } catch {
        log = '';
      }
    }
    expect(log).toMatch(/status=bounced.*550 5\.7\.1 .*relay access denied/);
    expect(log).toMatch(/TLS connection established to 127\.0\.0\.1/);
  }, 60_000);
});
