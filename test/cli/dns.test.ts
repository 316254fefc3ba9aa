// The full loop a creator sees: `nexus dns record add` (a subprocess signing with its own key) →
// HTTP API → chokepoint → projections → an answer from the daemon's authoritative DNS server, read
// with Node's resolver (c-ares); `nexus dns export` checked by BIND's named-checkzone; and
// `nexus start` bringing DNS up on its flags (and refusing a busy DNS port, or bad zone transfer
// settings, with one line).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { promises as dns } from 'node:dns';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { signRead } from '../../src/api/read-auth.ts';
import { identityIdFromPublicKey, loadPrivateKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { challengeResolver, type ChallengeLookup } from '../../src/imvu/domain-proof.ts';
import { startHierarchy, type Hierarchy } from '../support/dns-hierarchy.ts';
import { BIN, ROOT, run, tempDir, type Run } from './harness.ts';

let server: RunningServer;
let data: string;
let home: string;
let env: Record<string, string>;
let resolver: dns.Resolver;
let hierarchy: Hierarchy;
let lookup: ChallengeLookup | undefined;
const nexus = (...args: string[]) => run(args, env);
const Z = 'imvu001.world';

const hasChecker = spawnSync('named-checkzone', ['-v']).status === 0;

function ok(r: Run): Run {
  expect(r.code, r.stderr).toBe(0);
  return r;
}

/** Polls `fn` every 20 ms until it returns a value; the time of that success. */
async function firstSuccess<T>(fn: () => Promise<T | undefined>, ms: number): Promise<{ value: T; at: number }> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value !== undefined) return { value, at: Date.now() };
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A read signed by alice (the zone's creator), as her CLI signs it. */
function asAlice(path: string): Promise<Response> {
  const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
  return fetch(`${server.url}${path}`, { headers: { ...signRead(key, identityIdFromPublicKey(publicKeyRaw(key)), 'GET', `${server.url}${path}`) } });
}

const a = (name: string) => resolver.resolve4(name).catch((e: NodeJS.ErrnoException) => e.code ?? 'error');

beforeAll(async () => {
  data = tempDir('cli-dns-data');
  home = tempDir('cli-dns-home');
  await (await initDataDir(data)).close();
  // Domain proofs look up TXT records from a loopback root (test/support/dns-hierarchy.ts), which serves this daemon's store.
  server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0, meterIntervalMs: 200 }, challenge: (name) => lookup!(name) });
  hierarchy = await startHierarchy(server.store);
  lookup = challengeResolver({ rootHints: hierarchy.rootHints, upstreamPort: hierarchy.port, limits: { timeoutMs: 500 } });
  env = { NEXUS_HOME: home, NEXUS_URL: server.url };
  resolver = new dns.Resolver({ timeout: 1000, tries: 2 });
  resolver.setServers([`127.0.0.1:${server.dns!.server.port}`]);
  ok(await nexus('identity', 'create', 'alice', '--role', 'creator'));
  ok(await nexus('imvu', 'create', '--name', 'Loop', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'));
});

afterAll(async () => {
  await hierarchy?.close();
  await server?.close();
  for (const d of [data, home]) if (d) rmSync(d, { recursive: true, force: true });
});

describe('nexus dns against the running daemon', () => {
  it('record add → API → chokepoint → projections → a DNS answer within one second of the commit', async () => {
    // Poll DNS while the CLI runs: the answer's first appearance is timed against the commit.
    const answered = firstSuccess(async () => {
      const r = await a(`app.${Z}`);
      return Array.isArray(r) && r[0] === '192.0.2.44' ? r : undefined;
    }, 30_000);
    const add = ok(await nexus('dns', 'record', 'add', Z, 'app', 'A', '192.0.2.44', '--ttl', '120'));
    expect(add.stdout).toContain(`✅ ${Z}: added app A 192.0.2.44 (ttl 120)`);
    const index = Number(/ledger entry (\d+)/.exec(add.stdout)![1]);
    const entry = (await (await asAlice(`/v1/ledger/entries?from=${index}&to=${index + 1}`)).json()) as { entries: LedgerEntry[] };
    const committedAt = Date.parse(entry.entries[0]!.at);
    const { at } = await answered;
    console.log(`dns record add: answered over DNS ${at - committedAt} ms after the commit`);
    expect(at - committedAt).toBeLessThan(1000);
    expect(await resolver.resolve4(`app.${Z}`, { ttl: true })).toEqual([{ address: '192.0.2.44', ttl: 120 }]);

    const list = ok(await nexus('dns', 'record', 'list', Z));
    expect(list.stdout).toMatch(new RegExp(`app\\.${Z.replace('.', '\\.')}\\s+120\\s+A\\s+192\\.0\\.2\\.44`));
  });

  it('record rm: the name is gone from DNS (NXDOMAIN) within one second', async () => {
    ok(await nexus('dns', 'record', 'add', Z, 'mx-host', 'MX', `10 mail.${Z}.`));
    const rm = ok(await nexus('dns', 'record', 'rm', Z, 'app', 'A', '192.0.2.44'));
    const done = Date.now();
    expect(rm.stdout).toContain(`✅ ${Z}: removed app A 192.0.2.44`);
    const { at } = await firstSuccess(async () => ((await a(`app.${Z}`)) === 'ENOTFOUND' ? true : undefined), 5000);
    expect(at - done).toBeLessThan(1000);
    expect(await resolver.resolveMx(`mx-host.${Z}`)).toEqual([{ exchange: `mail.${Z}`, priority: 10 }]);
  });

  it('dns export prints the BIND master file, with the serial the daemon serves', async () => {
    const out = ok(await nexus('dns', 'export', Z)).stdout;
    const soa = await resolver.resolveSoa(Z);
    expect(out).toContain(`$ORIGIN ${Z}.`);
    expect(out).toMatch(new RegExp(`SOA\\s+ns1\\.world\\.\\s+hostmaster\\.${Z.replace('.', '\\.')}\\.\\s+\\(?\\s*${soa.serial}\\b`));
    expect(out).toMatch(/mx-host\.imvu001\.world\.\s+3600\s+IN\s+MX\s+10 mail\.imvu001\.world\./);
    expect(out).not.toContain('app.imvu001.world');
    // The HTTP route directly: text/plain; unknown zones are 404 with one line.
    const res = await asAlice(`/v1/zones/${Z}/export`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe(out);
    expect((await fetch(`${server.url}/v1/zones/${Z}/export`)).status).toBe(401);
    const missing = await asAlice('/v1/zones/nothing.world/export');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'zone nothing.world is not hosted here' });
    const cli404 = await nexus('dns', 'export', 'nothing.world');
    expect(cli404.code).toBe(7);
    expect(cli404.stderr).toMatch(/^nexus: not found: zone nothing\.world is not hosted here\n$/);
  });

  it.skipIf(!hasChecker)('named-checkzone accepts the exported zone', async () => {
    const out = ok(await nexus('dns', 'export', Z)).stdout;
    const file = join(data, 'export.zone');
    writeFileSync(file, out);
    const check = spawnSync('named-checkzone', ['-k', 'fail', '-n', 'fail', '-m', 'fail', Z, file], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain(`loaded serial ${(await resolver.resolveSoa(Z)).serial}`);
  });
});

describe('nexus domain: claim, prove, list, release', () => {
  it('names go out lower case: a record name given in capitals is added in canonical form', async () => {
    const add = ok(await nexus('dns', 'record', 'add', 'IMVU001.World.', 'Shop', 'A', '192.0.2.45'));
    expect(add.stdout).toContain(`✅ ${Z}: added shop A 192.0.2.45`);
    // Served once the DNS view has caught up with the commit (a moment, more on a loaded machine).
    expect((await firstSuccess(() => resolver.resolve4(`shop.${Z}`), 10_000)).value).toEqual(['192.0.2.45']);
    ok(await nexus('dns', 'record', 'rm', Z, 'SHOP', 'A'));
  });

  it('claim prints the TXT to publish; verify fails until it is published, then the zone is served; release takes it away', { timeout: 180_000 }, async () => {
    // Every command's --help is checked in-process (src/cli/program.test.ts); one through the binary here.
    expect(ok(await nexus('domain', 'verify', '--help')).stdout).toMatch(/^Usage: nexus domain verify \[options\] <imvu> <domain>/);
    const bad = await nexus('domain', 'claim', 'IMVU-001', 'x..test');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected a domain name/);

    const claim = ok(await nexus('domain', 'claim', '1', 'Shop.Test.'));
    expect(claim.stdout).toContain('✅ shop.test is claimed for IMVU-001, pending proof of control (not served yet)');
    const token = /_nexus-challenge\.shop\.test\. 300 IN TXT "(nexus-[a-z2-7]+)"/.exec(claim.stdout)?.[1];
    expect(token, claim.stdout).toBeDefined();
    expect(ok(await nexus('domain', 'list', 'IMVU-001')).stdout).toMatch(/shop\.test\s+pending until \S+\s+_nexus-challenge\.shop\.test TXT/);

    const early = await nexus('domain', 'verify', 'IMVU-001', 'shop.test');
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/^nexus: shop\.test is not proven yet: _nexus-challenge\.shop\.test (does not exist|has no TXT record)/);
    expect(await resolver.resolveSoa('shop.test').catch((e: NodeJS.ErrnoException) => e.code)).toBe('EREFUSED');

    hierarchy.tldRecords.test.push({ name: '_nexus-challenge.shop.test', type: 'TXT', data: token! });
    const proven = ok(await nexus('domain', 'verify', 'IMVU-001', 'shop.test'));
    expect(proven.stdout).toContain('✅ shop.test is proven and is now a domain of IMVU-001: its zone is served');
    await firstSuccess(async () => (await resolver.resolveSoa('shop.test').catch(() => undefined)) ?? undefined, 5000);
    expect(ok(await nexus('domain', 'list', 'IMVU-001')).stdout).toMatch(/shop\.test\s+verified\s+custom/);

    const primary = await nexus('domain', 'release', Z);
    expect(primary.code).toBe(1);
    expect(primary.stderr).toMatch(/primary domain of IMVU-001/);
    const released = ok(await nexus('domain', 'release', 'SHOP.test'));
    expect(released.stdout).toContain('✅ shop.test released by IMVU-001');
    await firstSuccess(async () => ((await resolver.resolveSoa('shop.test').catch((e: NodeJS.ErrnoException) => e.code)) === 'EREFUSED' ? true : undefined), 5000);
  });
});

describe('nexus start runs DNS on its flags', () => {
  it('--dns-port 0: the log names the DNS port, it answers, SIGTERM flushes and exits 0; a busy DNS port is one line and exit 1', { timeout: 60_000 }, async () => {
    const dir = tempDir('cli-dns-start');
    const busyDir = tempDir('cli-dns-busy');
    let child: ChildProcess | undefined;
    try {
      child = spawn(process.execPath, [BIN, 'start', '--data', dir, '--port', '0', '--dns-port', '0', '--meter-interval', '200'], {
        cwd: ROOT,
        env: { ...process.env, NEXUS_CONFIG: '', NEXUS_HOME: home },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<number | null>((res) => child!.once('exit', (code) => res(code)));
      const listening = await new Promise<{ url: string; dns: { address: string; port: number } }>((res, rej) => {
        let buf = '';
        const timer = setTimeout(() => rej(new Error(`no listening line:\n${buf}`)), 30_000);
        child!.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          for (const line of buf.split('\n')) {
            if (!line.includes('nexus daemon listening')) continue;
            clearTimeout(timer);
            res(JSON.parse(line) as { url: string; dns: { address: string; port: number } });
          }
        });
      });
      expect(listening.dns.address).toBe('127.0.0.1');
      expect(listening.dns.port).toBeGreaterThan(0);
      const health = (await (await fetch(`${listening.url}/health`)).json()) as { dns: unknown };
      expect(health.dns).toEqual({ address: '127.0.0.1', port: listening.dns.port, xfr: { allow: [], tsig: null, notify: [] }, zones: 'ready' });
      const r = new dns.Resolver({ timeout: 1000, tries: 2 });
      r.setServers([`127.0.0.1:${listening.dns.port}`]);
      await expect(r.resolve4('example.com')).rejects.toMatchObject({ code: 'EREFUSED' });

      // A second daemon asked for the same DNS port: one line naming it, exit 1.
      const busy = await run(['start', '--data', busyDir, '--port', '0', '--dns-port', String(listening.dns.port)], { NEXUS_HOME: home });
      expect(busy.code).toBe(1);
      expect(busy.stderr).toBe(
        `nexus: cannot listen for DNS on 127.0.0.1:${listening.dns.port} (UDP/TCP): the address is in use (another DNS server?); choose --dns-port / NEXUS_DNS_PORT, or --no-dns\n`,
      );

      child!.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child?.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      rmSync(busyDir, { recursive: true, force: true });
    }
  });

  it('--no-dns: no DNS socket, /health says so', { timeout: 60_000 }, async () => {
    // The UDP port is held by someone else: with --no-dns the daemon does not care.
    const holder = dgram.createSocket('udp4');
    await new Promise<void>((res) => holder.bind(0, '127.0.0.1', () => res()));
    const dir = tempDir('cli-nodns');
    let child: ChildProcess | undefined;
    try {
      child = spawn(process.execPath, [BIN, 'start', '--data', dir, '--port', '0', '--no-dns'], {
        cwd: ROOT,
        env: { ...process.env, NEXUS_CONFIG: '', NEXUS_HOME: home, NEXUS_DNS_PORT: String(holder.address().port) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<number | null>((res) => child!.once('exit', (code) => res(code)));
      const url = await new Promise<string>((res, rej) => {
        let buf = '';
        const timer = setTimeout(() => rej(new Error(`no listening line:\n${buf}`)), 30_000);
        child!.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          const m = /"url":"([^"]+)"/.exec(buf);
          if (m && buf.includes('nexus daemon listening')) {
            clearTimeout(timer);
            res(m[1]!);
          }
        });
      });
      expect(((await (await fetch(`${url}/health`)).json()) as { dns: unknown }).dns).toBeNull();
      child!.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child?.exitCode === null) child.kill('SIGKILL');
      holder.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('zone transfer flags: a half-configured TSIG key, a world-readable secret file or a host name to NOTIFY is one line and exit 2', { timeout: 60_000 }, async () => {
    const dir = tempDir('cli-xfr-bad');
    try {
      const secret = join(dir, 'tsig.key');
      writeFileSync(secret, Buffer.from('cli xfr test key of 32 bytes....').toString('base64'));
      chmodSync(secret, 0o644);
      const start = (args: string[], extra: Record<string, string> = {}) => run(['start', '--data', join(dir, 'data'), '--port', '0', '--dns-port', '0', ...args], { NEXUS_HOME: home, ...extra });
      const cases: [Run, string][] = [
        [await start(['--tsig-name', 'nexus-xfr']), 'nexus: TSIG key nexus-xfr (--tsig-name) has no secret: set --tsig-secret-file, NEXUS_TSIG_SECRET_FILE, tsigSecretFile or NEXUS_TSIG_SECRET\n'],
        [await start(['--tsig-name', 'nexus-xfr', '--tsig-secret-file', secret]), `nexus: refusing TSIG secret file ${secret} (--tsig-secret-file): it is readable by every user (mode 0644); chmod 600 ${secret}\n`],
        [await start(['--xfr-allow', '127.0.0.1', '--notify', '127.0.0.1:5300', 'ns2.example.org']), 'nexus: invalid --notify: "ns2.example.org" is a host name: give the secondary\'s IP address (names are not resolved)\n'],
        [await start([], { NEXUS_XFR_ALLOW: '10.0.0.0/8,everyone' }), 'nexus: invalid NEXUS_XFR_ALLOW "10.0.0.0/8,everyone": "everyone" is not an IP address or CIDR prefix (such as 192.0.2.53, 10.0.0.0/8 or 2001:db8::/32)\n'],
      ];
      for (const [r, stderr] of cases) {
        expect(r.stderr).toBe(stderr);
        expect(r.code).toBe(2);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
