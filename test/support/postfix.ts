// A private Postfix instance (the Debian package, not ours) for interop tests: its own config,
// queue and data directories under a temp dir, `postfix -c DIR start`, smtpd on 127.0.0.1:PORT
// with STARTTLS (a throwaway certificate), every recipient of `domains` delivered by the virtual
// agent into one Maildir. Nothing listens on a standard port; `stop()` stops it and removes it all
// (KEEP_POSTFIX=1 keeps the directory and its maillog for a look after a failure).
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Postfix {
  port: number;
  dir: string;
  /** The Maildir every accepted message lands in. */
  maildir: string;
  /** Delivered messages (new/ and cur/), oldest first by name. */
  messages(): Buffer[];
  log(): string;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (asked of the OS). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export function postfixAvailable(): boolean {
  return existsSync('/usr/sbin/postfix') && process.getuid?.() === 0;
}

function uidOf(name: string): number {
  return Number(execFileSync('id', ['-u', name]).toString().trim());
}

export async function startPostfix(opts: { domains: string[]; hostname?: string; milters?: string[] }): Promise<Postfix> {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-postfix-'));
  chmodSync(dir, 0o755);
  const conf = join(dir, 'conf');
  const queue = join(dir, 'queue');
  const data = join(dir, 'data');
  const mail = join(dir, 'mail');
  for (const d of [conf, queue, data, mail]) mkdirSync(d, { recursive: true });
  const postfixUid = uidOf('postfix');
  chownSync(data, postfixUid, -1);
  // The virtual agent writes as this user (above virtual_minimum_uid).
  const nobody = uidOf('nobody');
  chownSync(mail, nobody, -1);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${opts.hostname ?? 'mx.outside.test'}`, '-keyout', join(conf, 'key.pem'), '-out', join(conf, 'cert.pem')], { stdio: 'ignore' });
  const port = await freePort();
  const main = [
    'compatibility_level = 3.6',
    `queue_directory = ${queue}`,
    `data_directory = ${data}`,
    'command_directory = /usr/sbin',
    'daemon_directory = /usr/lib/postfix/sbin',
    'meta_directory = /etc/postfix',
    'shlib_directory = /usr/lib/postfix',
    'mail_owner = postfix',
    'setgid_group = postdrop',
    `myhostname = ${opts.hostname ?? 'mx.outside.test'}`,
    'mydomain = outside.test',
    'mydestination =',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'mynetworks = 127.0.0.0/8',
    'alias_maps =',
    'alias_database =',
    'local_recipient_maps =',
    'relay_domains =',
    `virtual_mailbox_domains = ${opts.domains.join(' ')}`,
    `virtual_mailbox_base = ${mail}`,
    'virtual_mailbox_maps = static:Maildir/',
    `virtual_uid_maps = static:${nobody}`,
    `virtual_gid_maps = static:${nobody}`,
    'virtual_minimum_uid = 100',
    'smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination',
    'smtpd_tls_security_level = may',
    `smtpd_tls_cert_file = ${join(conf, 'cert.pem')}`,
    `smtpd_tls_key_file = ${join(conf, 'key.pem')}`,
    'smtpd_tls_received_header = yes',
    'smtpd_tls_loglevel = 1',
    `maillog_file = ${join(dir, 'maillog')}`,
    `maillog_file_prefixes = ${dir}`,
    'smtputf8_enable = no',
    'biff = no',
    'message_size_limit = 52428800',
    'virtual_mailbox_limit = 0',
    // Nothing leaves this instance.
    'default_transport = error:outbound mail disabled in tests',
    'relay_transport = error:outbound mail disabled in tests',
    // Milters (OpenDKIM): a milter that does not answer fails the message, it never passes unchecked.
    ...(opts.milters?.length ? [`smtpd_milters = ${opts.milters.join(', ')}`, 'milter_default_action = tempfail'] : []),
    '',
  ].join('\n');
  writeFileSync(join(conf, 'main.cf'), main);
  const master = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup    unix  n       -       n       60      1       pickup',
    'cleanup   unix  n       -       n       -       0       cleanup',
    'qmgr      unix  n       -       n       300     1       qmgr',
    'tlsmgr    unix  -       -       n       1000?   1       tlsmgr',
    'rewrite   unix  -       -       n       -       -       trivial-rewrite',
    'bounce    unix  -       -       n       -       0       bounce',
    'defer     unix  -       -       n       -       0       bounce',
    'trace     unix  -       -       n       -       0       bounce',
    'verify    unix  -       -       n       -       1       verify',
    'flush     unix  n       -       n       1000?   0       flush',
    'proxymap  unix  -       -       n       -       -       proxymap',
    'smtp      unix  -       -       n       -       -       smtp',
    'showq     unix  n       -       n       -       -       showq',
    'error     unix  -       -       n       -       -       error',
    'retry     unix  -       -       n       -       -       error',
    'discard   unix  -       -       n       -       -       discard',
    'virtual   unix  -       n       n       -       -       virtual',
    'anvil     unix  -       -       n       -       1       anvil',
    'scache    unix  -       -       n       -       1       scache',
    'postlog   unix-dgram n  -       n       -       1       postlogd',
    '',
  ].join('\n');
  writeFileSync(join(conf, 'master.cf'), master);
  try {
    execFileSync('/usr/sbin/postfix', ['-c', conf, 'start'], { stdio: 'pipe' });
  } catch (e) {
    const log = readLog(dir);
    if (!process.env.KEEP_POSTFIX) rmSync(dir, { recursive: true, force: true });
    // Postfix reports a configuration error to syslog only; its log file, when it got that far.
    throw new Error(`postfix start failed (${dir}): ${String((e as { stderr?: Buffer }).stderr ?? '')} ${log}`);
  }
  // Ready when smtpd answers.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('data', (d: Buffer) => {
        s.destroy();
        resolve(d.toString().startsWith('220'));
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`postfix did not start: ${readLog(dir)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const maildir = join(mail, 'Maildir');
  return {
    port,
    dir,
    maildir,
    messages: () => {
      const out: { name: string; raw: Buffer }[] = [];
      for (const sub of ['new', 'cur']) {
        const d = join(maildir, sub);
        if (!existsSync(d)) continue;
        for (const f of readdirSync(d)) out.push({ name: f, raw: readFileSync(join(d, f)) });
      }
      return out.sort((a, b) => (a.name < b.name ? -1 : 1)).map((m) => m.raw);
    },
    log: () => readLog(dir),
    async stop() {
      try {
        execFileSync('/usr/sbin/postfix', ['-c', conf, 'stop'], { stdio: 'pipe' });
      } catch {
        // already stopped
      }
      const pidFile = join(queue, 'pid', 'master.pid');
      for (let i = 0; i < 50 && existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
      if (!process.env.KEEP_POSTFIX) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readLog(dir: string): string {
  const f = join(dir, 'maillog');
  return existsSync(f) ? readFileSync(f, 'utf8') : '';
}
