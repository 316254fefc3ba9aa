// Certificates by ACME: Pebble (Let's Encrypt's test CA) on loopback validates DNS-01 against our
// own authoritative DNS server, whose answer comes from an `acme.challenge` entry in the ledger;
// HAProxy serves the certificate by SNI, installed over its runtime API; the ledger records what
// was issued; renewal replaces the served certificate without a reload; HAProxy killed with -9
// comes back with the ledger's routes and certificates.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { buildExitArchive } from '../../src/imvu/exit/build.ts';
import { verifyStore } from '../../src/core/policy/verify.ts';
import { startWorkload, type Workload } from './workloads.ts';
import { freePort, havePebble, startPebble, type Pebble } from './pebble.ts';

const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0 && process.getuid?.() === 0;
const haveH2load = spawnSync('h2load', ['--version']).status === 0;
const RANGE = `10.202.${process.pid % 256}.0/24`;

let p: TestPlatform;
let dns: DnsServer;
let pebble: Pebble;
let gw: Gateway;
let alice: Actor;
let A: { id: string; seq: number; host: string; stage: string };
let B: { id: string; host: string };
let port: number;
let httpPort: number;
let rootFile: string;
let workload: Workload | undefined;

async function waitFor(fn: () => Promise<boolean> | boolean, ms = 60_000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The certificate served for `host` by SNI, verified against Pebble's root only. */
function served(host: string): Promise<{ cert: PeerCertificate; authorized: boolean; error?: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: host, ca: readFileSync(rootFile), ALPNProtocols: ['h2', 'http/1.1'], rejectUnauthorized: false }, () => {
      const cert = s.getPeerCertificate(true);
      const out = { cert, authorized: s.authorized, ...(s.authorizationError ? { error: String(s.authorizationError) } : {}) };
      s.end();
      resolve(out);
    });
    s.on('error', reject);
  });
}

function curl(host: string, path: string, extra: string[] = []): { code: number; body: string; version: string } {
  const out = execFileSync('curl', ['-s', '-S', '--max-time', '10', '--cacert', rootFile, '--resolve', `${host}:${port}:127.0.0.1`, '-w', '\n%{http_code} %{http_version}', ...extra, `https://${host}:${port}${path}`], { encoding: 'utf8' });
  const lines = out.split('\n');
  const [code, version] = lines.pop()!.split(' ');
  return { code: Number(code), version: version!, body: lines.join('\n') };
}

async function entriesOf(type: string): Promise<{ index: number; body: Record<string, unknown>; allowed: boolean }[]> {
  const rows = await p.store.all<{ idx: number; data: Buffer }>('SELECT idx, data FROM ledger_entries ORDER BY idx');
  return rows
    .map((r) => ({ index: Number(r.idx), e: decodeEntry(Buffer.from(r.data)) }))
    .filter((x) => x.e.command?.command.type === type)
    .map((x) => ({ index: x.index, body: x.e.command!.command.body as Record<string, unknown>, allowed: x.e.decision.allowed }));
}

const ledgerCert = () => p.store.get<{ serial: string; sha256: string; not_after: string; names: string; issuer: string }>('SELECT serial, sha256, not_after, names, issuer FROM certificates WHERE imvu = ?', [A.id]);

describe.skipIf(!haveHaproxy || !havePebble)('gateway certificates by ACME (Pebble, DNS-01 through our DNS)', () => {
  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    const r = await p.as(alice, 'imvu.create', { name: 'acmeshop', owner: alice.id, jurisdiction: 'US-CCPA' });
    expect(r.allowed).toBe(true);
    const row = (await p.store.get<{ id: string; seq: number; domain: string; stage_domain: string }>('SELECT id, seq, domain, stage_domain FROM imvus WHERE entry = ?', [r.index]))!;
    A = { id: row.id, seq: row.seq, host: row.domain, stage: row.stage_domain };
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy: { public: [{ path: '/*', backend: 'web:8080' }], private: [], restricted: [] } })).allowed).toBe(true);
    // A second IMVU, of another creator: its own certificate, by SNI.
    const bob = await p.register('bob', 'creator');
    const rb = await p.as(bob, 'imvu.create', { name: 'othershop', owner: bob.id, jurisdiction: 'US-CCPA' });
    const rowB = (await p.store.get<{ id: string; domain: string }>('SELECT id, domain FROM imvus WHERE entry = ?', [rb.index]))!;
    B = { id: rowB.id, host: rowB.domain };
    dns = await startDnsServer({ store: p.store, address: '127.0.0.1', port: 0, refreshMs: 100 });
    pebble = await startPebble(dns.port);
    rootFile = join(p.dataDir, 'pebble-root.pem');
    writeFileSync(rootFile, await pebble.root());
    workload = await startWorkload('m', A.seq, RANGE, 'acmeshop', [8080]);
    port = await freePort();
    httpPort = await freePort();
    gw = new Gateway({
      platform: p,
      httpsBind: `127.0.0.1:${port}`,
      httpBind: `127.0.0.1:${httpPort}`,
      range: RANGE,
      checkIntervalMs: 3_600_000,
      acme: { directory: pebble.directory, caCert: readFileSync(pebble.tlsCaFile, 'utf8'), dns: { address: '127.0.0.1', port: dns.port }, checkIntervalMs: 500 },
      log: (l) => console.log(l),
    });
    await gw.start();
    await waitFor(async () => (await ledgerCert()) !== undefined && gw.acme!.issued >= 2, 120_000, 'the first ACME certificates');
  }, 150_000);

  afterAll(async () => {
    await gw?.stop();
    workload?.stop();
    pebble?.stop();
    await dns?.close();
    await p?.cleanup();
  });

  it('serves the IMVU a certificate from the ACME CA by SNI, verified by curl and Node against Pebble\'s root', async () => {
    const s = await served(A.host);
    expect(s.error).toBeUndefined();
    expect(s.authorized).toBe(true);
    const intermediate = new X509Certificate(await pebble.intermediate());
    expect(s.cert.issuer.CN).toBe(intermediate.subject.split('\n').find((l) => l.startsWith('CN='))!.slice(3));
    expect(s.cert.issuer.CN).toMatch(/^Pebble Intermediate CA/);
    expect(s.cert.subjectaltname).toContain(`DNS:${A.host}`);
    expect(s.cert.subjectaltname).toContain(`DNS:${A.stage}`);
    // The stage name is on the same certificate, served by SNI too.
    expect((await served(A.stage)).cert.serialNumber).toBe(s.cert.serialNumber);
    // Another IMVU gets its own certificate, with its names only.
    const b = await served(B.host);
    expect(b.authorized).toBe(true);
    expect(b.cert.serialNumber).not.toBe(s.cert.serialNumber);
    expect(b.cert.subjectaltname).toContain(`DNS:${B.host}`);
    expect(b.cert.subjectaltname).not.toContain(A.host);
    expect(s.cert.subjectaltname).not.toContain(B.host);
    // curl trusts Pebble's root and nothing else here: the local CA's certificate would fail.
    const c = curl(A.host, '/hello', ['--http1.1']);
    expect([c.code, c.version, c.body]).toEqual([200, '1.1', 'acmeshop /hello 0\n']);
    const h2 = curl(A.stage, '/two', ['--http2']);
    expect([h2.code, h2.version, h2.body]).toEqual([200, '2', 'acmeshop /two 0\n']);
  });

  it('records the issuance in the ledger: the served certificate\'s serial and fingerprint, and the challenge published then removed', async () => {
    const s = await served(A.host);
    const row = (await ledgerCert())!;
    expect(row.serial).toBe(s.cert.serialNumber.toLowerCase().replace(/^0+/, ''));
    expect(row.sha256).toBe(s.cert.fingerprint256.replace(/:/g, '').toLowerCase());
    expect(row.names).toBe([A.host, A.stage].sort().join(' '));
    expect(Date.parse(row.not_after)).toBe(Date.parse(s.cert.valid_to));
    // The local CA's stand-in (recorded too, served until the ACME CA's) is not the ACME issuance.
    const issued = (await entriesOf('certificate.issued')).filter((e) => e.body.imvu === A.id && e.body.directory === pebble.directory);
    expect(issued.at(-1)!.body.serial).toBe(row.serial);
    const challenges = (await entriesOf('acme.challenge')).filter((e) => e.body.imvu === A.id);
    const published = challenges.find((c) => c.body.action === 'publish' && c.allowed)!;
    const removed = challenges.find((c) => c.body.action === 'remove' && c.allowed && c.index > published.index)!;
    expect(removed).toBeDefined();
    const names = (published.body.records as { name: string; zone: string }[]).map((r) => r.name).sort();
    expect(names).toEqual([`_acme-challenge.${A.host}`, `_acme-challenge.${A.stage}`].sort());
    expect(published.index).toBeLessThan(issued[0]!.index);
    // Nothing is left in the zone, and the creator was told of each step.
    expect(await p.store.all("SELECT name FROM records WHERE name LIKE '\\_acme-challenge.%' ESCAPE '\\'")).toEqual([]);
    for (const e of [published.index, removed.index, issued[0]!.index])
      expect(await p.store.get('SELECT recipient, gate FROM notifications WHERE about = ?', [e])).toEqual({ recipient: alice.id, gate: 17 });
    // Replaying the whole ledger through the same gates reaches the same decisions and projections.
    const report = await verifyStore(p.store);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('the exit archive carries the ACME certificate with the CA\'s chain, not the local CA', async () => {
    const built = await buildExitArchive({ platform: p, checkpointNote: async () => undefined }, A.id);
    // Leaf and Pebble's intermediate: the local CA did not issue it, so it closes no chain here.
    expect(built.parts.network.detail).toBe('routing policy, the gateway certificate and its chain (2 certificate(s))');
  }, 60_000);

  it('refuses a challenge for a name that is not the IMVU\'s, and a certificate naming one', async () => {
    const foreign = await p.chokepoint.submit(
      p.chokepoint.platformCommand('acme.challenge', { imvu: A.id, action: 'publish', records: [{ zone: A.host, name: '_acme-challenge.bank.example', value: 'x'.repeat(43) }] }),
    );
    expect(foreign.allowed).toBe(false);
    expect(foreign.gates.find((g) => g.status === 'deny')!.gate).toBe(4);
    const cert = await p.chokepoint.submit(
      p.chokepoint.platformCommand('certificate.issued', {
        imvu: A.id,
        names: ['bank.example'],
        serial: 'ab',
        sha256: 'a'.repeat(64),
        notBefore: '2026-01-01T00:00:00.000Z',
        notAfter: '2026-04-01T00:00:00.000Z',
        issuer: 'CN=x',
        directory: pebble.directory,
      }),
    );
    expect(cert.allowed).toBe(false);
    expect(cert.gates.find((g) => g.status === 'deny')!.gate).toBe(17);
  });

  it('HTTP/2 over TLS with h2load against the workload route', () => {
    if (!haveH2load) return;
    const out = execFileSync('h2load', ['-n', '200', '-c', '2', '-m', '4', '-H', `:authority: ${A.host}`, `https://127.0.0.1:${port}/h2load`], { encoding: 'utf8', timeout: 60_000 });
    expect(out).toMatch(/Application protocol: h2/);
    expect(out).toMatch(/status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx/);
    expect(out).toMatch(/requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed/);
  });

  it('plain HTTP redirects to HTTPS except ACME challenges', () => {
    const out = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-H', `Host: ${A.host}`, `http://127.0.0.1:${httpPort}/a?b=1`], { encoding: 'utf8' });
    expect(out).toBe(`301 https://${A.host}:${port}/a?b=1`);
    const acme = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Host: ${A.host}`, `http://127.0.0.1:${httpPort}/.well-known/acme-challenge/tok`], { encoding: 'utf8' });
    expect(acme).toBe('404');
  });

  it('renews inside the renewal window and serves the new certificate without a reload', async () => {
    const before = (await ledgerCert())!;
    const worker = (await gw.readCounters()).process;
    // Every certificate is now inside the window: the renewal timer orders a new one.
    gw.acme!.renewBeforeMs = 100 * 365 * 86_400_000;
    try {
      await waitFor(async () => (await ledgerCert())!.serial !== before.serial, 90_000, 'a renewed certificate in the ledger');
    } finally {
      gw.acme!.renewBeforeMs = 30 * 86_400_000;
    }
    // Let a renewal that started before the window closed finish, then compare.
    await gw.renewCertificates();
    const after = (await ledgerCert())!;
    await waitFor(async () => (await served(A.host)).cert.serialNumber.toLowerCase().replace(/^0+/, '') === after.serial, 30_000, 'the renewed certificate served');
    const s = await served(A.host);
    expect(s.authorized).toBe(true);
    expect(s.cert.fingerprint256.replace(/:/g, '').toLowerCase()).toBe(after.sha256);
    expect((await gw.readCounters()).process).toBe(worker);
    expect(curl(A.host, '/renewed').body).toBe('acmeshop /renewed 0\n');
    const c = (await gw.servedCertificates()).find((x) => x.imvu === A.id)!;
    expect([c.served?.serial, c.ledger?.serial, c.ledger?.sha256, c.equal]).toEqual([after.serial, after.serial, after.sha256, true]);
  }, 150_000);

  it('HAProxy killed with -9 comes back by itself with the ledger\'s routes and certificates', async () => {
    const row = (await ledgerCert())!;
    const old = gw.haproxyPid!;
    process.kill(old, 'SIGKILL');
    await waitFor(() => {
      if (gw.haproxyPid === undefined || gw.haproxyPid === old) return false;
      try {
        return curl(A.host, '/back').code === 200;
      } catch {
        return false;
      }
    }, 60_000, 'traffic through the restarted HAProxy');
    expect(gw.restarts).toBeGreaterThanOrEqual(1);
    expect(curl(A.host, '/back').body).toBe('acmeshop /back 0\n');
    expect((await served(A.host)).cert.fingerprint256.replace(/:/g, '').toLowerCase()).toBe(row.sha256);
    expect((await gw.verify()).equal).toBe(true);
    expect((await gw.servedCertificates()).find((c) => c.imvu === A.id)!.served?.serial).toBe(row.serial);
  }, 90_000);
});
