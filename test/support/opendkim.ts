// A private OpenDKIM (the Debian package opendkim, not ours) as a Postfix milter on loopback: `v`
// verifies and adds Authentication-Results (dkim=...), `s` signs for one domain. Its DNS goes
// through libunbound, configured with stub zones that point at our servers on their high ports
// (nothing here may use port 53). Foreground process of this test; stop() ends it.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './postfix.ts';

export interface Opendkim {
  port: number;
  /** `inet:127.0.0.1:PORT`, for Postfix's smtpd_milters. */
  milter: string;
  log(): string;
  stop(): Promise<void>;
}

export function opendkimAvailable(): boolean {
  return existsSync('/usr/sbin/opendkim');
}

/** An RSA-2048 key for `s` mode and its DKIM TXT value (`v=DKIM1; k=rsa; p=...`). */
export function dkimKeyPair(dir: string): { keyFile: string; txt: string } {
  const keyFile = join(dir, 'dkim.key');
  execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', keyFile], { stdio: 'ignore' });
  const der = execFileSync('openssl', ['pkey', '-in', keyFile, '-pubout', '-outform', 'DER']);
  return { keyFile, txt: `v=DKIM1; k=rsa; p=${der.toString('base64')}` };
}

export async function startOpendkim(opts: {
  mode: 'v' | 's';
  authservId: string;
  /** Zones answered by our servers: libunbound asks them directly. */
  stubZones?: { name: string; address: string; port: number }[];
  sign?: { domain: string; selector: string; keyFile: string };
}): Promise<Opendkim> {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-opendkim-'));
  const port = await freePort();
  const unbound = [
    'server:',
    '  do-not-query-localhost: no',
    '  module-config: "iterator"',
    '  verbosity: 0',
    ...(opts.stubZones ?? []).flatMap((z) => ['stub-zone:', `  name: "${z.name}"`, `  stub-addr: ${z.address}@${z.port}`]),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'unbound.conf'), unbound);
  const conf = [
    'Syslog no',
    `Mode ${opts.mode}`,
    `Socket inet:${port}@127.0.0.1`,
    `PidFile ${join(dir, 'opendkim.pid')}`,
    `ResolverConfiguration ${join(dir, 'unbound.conf')}`,
    `AuthservID ${opts.authservId}`,
    'AlwaysAddARHeader yes',
    'Canonicalization relaxed/relaxed',
    'InternalHosts 127.0.0.1',
    'RequireSafeKeys no',
    'LogResults yes',
    'LogWhy yes',
    ...(opts.sign ? [`Domain ${opts.sign.domain}`, `Selector ${opts.sign.selector}`, `KeyFile ${opts.sign.keyFile}`] : []),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'opendkim.conf'), conf);
  let log = '';
  const child: ChildProcess = spawn('/usr/sbin/opendkim', ['-f', '-v', '-x', join(dir, 'opendkim.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`opendkim exited: ${log} ${readFileSync(join(dir, 'opendkim.conf'), 'utf8')}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error(`opendkim did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    milter: `inet:127.0.0.1:${port}`,
    log: () => log,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        for (let i = 0; i < 50 && !exited; i++) await new Promise((r) => setTimeout(r, 100));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
