// Certificates by ACME with HTTP-01: Pebble's VA (never told to skip validation) resolves the
// IMVU's name on our DNS (the edge address, loopback here) and fetches
// `/.well-known/acme-challenge/<token>` from the gateway's plain-HTTP listener, where HAProxy
// itself answers from its `acme` map: never redirected, never forwarded to the workload. Every
// other path redirects to HTTPS; an unknown token is 404.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { runtimeCommand } from '../../src/network/gateway/runtime.ts';
import { startWorkload, type Workload } from './workloads.ts';
import { freePort, havePebble, startPebble, type Pebble } from './pebble.ts';
import { waitFor } from './harness.ts';

const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0 && process.getuid?.() === 0;
const RANGE = `10.203.${process.pid % 256}.0/24`;

describe.skipIf(!haveHaproxy || !havePebble)('gateway certificates by ACME with HTTP-01 on the plain-HTTP listener (Pebble)', () => {
  let p: TestPlatform;
  let dns: DnsServer;
  let pebble: Pebble;
  let gw: Gateway;
  let alice: Actor;
  let A: { id: string; seq: number; host: string; stage: string };
  let port: number;
  let httpPort: number;
  let rootFile: string;
  let workload: Workload | undefined;
  const logs: string[] = [];

  const http = (path: string, host = A.host) =>
    execFileSync('curl', ['-s', '--max-time', '10', '-o', '-', '-w', '\n%{http_code} %{redirect_url}', '-H', `Host: ${host}`, `http://127.0.0.1:${httpPort}${path}`], { encoding: 'utf8' });
  const ledgerCert = () => p.store.get<{ serial: string; sha256: string; names: string; directory: string }>('SELECT serial, sha256, names, directory FROM certificates WHERE imvu = ?', [A.id]);

  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    const r = await p.as(alice, 'imvu.create', { name: 'httpshop', owner: alice.id, jurisdiction: 'US-CCPA' });
    expect(r.allowed).toBe(true);
    const row = (await p.store.get<{ id: string; seq: number; domain: string; stage_domain: string }>('SELECT id, seq, domain, stage_domain FROM imvus WHERE entry = ?', [r.index]))!;
    A = { id: row.id, seq: row.seq, host: row.domain, stage: row.stage_domain };
    // The workload would answer anything, the challenge path included (with its name in the body):
    // the exact bodies below show the gateway never asked it.
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy: { public: [{ path: '/*', backend: 'web:8080' }], private: [], restricted: [] } })).allowed).toBe(true);
    dns = await startDnsServer({ store: p.store, address: '127.0.0.1', port: 0, refreshMs: 100 });
    httpPort = await freePort();
    pebble = await startPebble(dns.port, { httpPort });
    rootFile = join(p.dataDir, 'pebble-root.pem');
    writeFileSync(rootFile, await pebble.root());
    workload = await startWorkload('h', A.seq, RANGE, 'httpshop', [8080]);
    port = await freePort();
    gw = new Gateway({
      platform: p,
      httpsBind: `127.0.0.1:${port}`,
      httpBind: `127.0.0.1:${httpPort}`,
      range: RANGE,
      checkIntervalMs: 3_600_000,
      acme: { directory: pebble.directory, caCert: readFileSync(pebble.tlsCaFile, 'utf8'), challenge: 'http-01', checkIntervalMs: 3_600_000 },
      log: (l) => {
        logs.push(l);
        console.log(l);
      },
    });
    await gw.start();
    await waitFor(async () => (await ledgerCert())?.directory === pebble.directory, 120_000, 'the ACME certificate by http-01');
  }, 180_000);

  afterAll(async () => {
    await gw?.stop();
    workload?.stop();
    pebble?.stop();
    await dns?.close();
    await p?.cleanup();
  });

  it('issues through Pebble with http-01: the challenge answered by HAProxy, no DNS record published', async () => {
    const row = (await ledgerCert())!;
    expect(row.names).toBe([A.host, A.stage].sort().join(' '));
    const peer = () => new Promise<{ authorized: boolean; sha256: string; issuer: string }>((resolve, reject) => {
      const c = connect({ host: '127.0.0.1', port, servername: A.host, ca: readFileSync(rootFile), rejectUnauthorized: false }, () => {
        const cert = c.getPeerCertificate();
        resolve({ authorized: c.authorized, sha256: cert.fingerprint256.replace(/:/g, '').toLowerCase(), issuer: String(cert.issuer.CN) });
        c.end();
      });
      c.on('error', reject);
    });
    // Recorded first, then installed: wait for HAProxy to serve it.
    await waitFor(async () => (await peer()).sha256 === row.sha256, 30_000, 'the ACME certificate served');
    const s = await peer();
    expect(s.authorized).toBe(true);
    expect(s.issuer).toMatch(/^Pebble Intermediate CA/);
    expect(s.sha256).toBe(row.sha256);
    expect(logs.some((l) => /acme: http-01 answering/.test(l))).toBe(true);
    expect(logs.some((l) => /acme: http-01 no longer answering/.test(l))).toBe(true);
    // HTTP-01 needs no TXT record: none was published, none is left.
    expect(await p.store.all("SELECT name FROM records WHERE name LIKE '\\_acme-challenge.%' ESCAPE '\\'")).toEqual([]);
    // The tokens are gone from HAProxy once the order is done.
    expect((await runtimeCommand(gw.layout.adminSocket, `show map ${gw.layout.acmeMap}`)).trim()).toBe('');
  });

  it('answers a token from HAProxy itself (200, the key authorization), unknown tokens 404, everything else redirects', async () => {
    const token = 'tok_' + 'A'.repeat(39);
    const ka = `${token}.${'b'.repeat(43)}`;
    expect((await runtimeCommand(gw.layout.adminSocket, `add map ${gw.layout.acmeMap} ${token} ${ka}`)).trim()).toBe('');
    try {
      expect(http(`/.well-known/acme-challenge/${token}`)).toBe(`${ka}\n200 `);
      // Whatever the Host: the token is the proof, not the name.
      expect(http(`/.well-known/acme-challenge/${token}`, 'elsewhere.example')).toBe(`${ka}\n200 `);
      expect(http(`/.well-known/acme-challenge/${token}x`)).toMatch(/\n404 $/);
      expect(http('/.well-known/acme-challenge/unknown')).toMatch(/\n404 $/);
      expect(http(`/.well-known/acme-challenge/${token}/more`)).toMatch(/\n404 $/);
      expect(http('/.well-known/acme-challenge/')).toMatch(/\n404 $/);
    } finally {
      await runtimeCommand(gw.layout.adminSocket, `del map ${gw.layout.acmeMap} ${token}`);
    }
    expect(http(`/.well-known/acme-challenge/${token}`)).toMatch(/\n404 $/);
    expect(http('/shop?x=1')).toBe(`\n301 https://${A.host}:${port}/shop?x=1`);
    expect(http('/.well-known/other')).toBe(`\n301 https://${A.host}:${port}/.well-known/other`);
  });
});
