// `nexus serve --acme-directory URL --acme-ca-cert FILE`: the daemon's gateway orders a certificate
// for a new IMVU from Pebble, Pebble looks the DNS-01 challenge up on the daemon's own DNS server,
// and HAProxy serves the certificate by SNI.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { initDataDir } from '../../src/core/platform.ts';
import { BIN, run, tempDir } from '../cli/harness.ts';
import { freePort, havePebble, startPebble, type Pebble } from './pebble.ts';

const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0 && process.getuid?.() === 0;

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, ms: number, what: string): Promise<T> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function peer(port: number, host: string, ca: string): Promise<{ cert: PeerCertificate; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: host, ca, rejectUnauthorized: false }, () => {
      const out = { cert: s.getPeerCertificate(), authorized: s.authorized };
      s.end();
      resolve(out);
    });
    s.on('error', reject);
  });
}

describe.skipIf(!haveHaproxy || !havePebble)('nexus serve with an ACME directory', () => {
  const dir = tempDir('acme-serve');
  let daemon: ChildProcess | undefined;
  let pebble: Pebble | undefined;
  afterAll(async () => {
    if (daemon) {
      const exited = new Promise((r) => daemon!.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    pebble?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('orders the new IMVU\'s certificate from the CA, DNS-01 answered by its own DNS, and serves it', async () => {
    const data = join(dir, 'data');
    await (await initDataDir(data)).close();
    const dnsPort = await freePort();
    pebble = await startPebble(dnsPort);
    const port = await freePort();
    daemon = spawn(
      process.execPath,
      [BIN, 'serve', '--data', data, '--port', '0', '--dns-port', String(dnsPort), '--gateway-port', String(port), '--gateway-http-port', String(await freePort()),
        '--acme-directory', pebble.directory, '--acme-ca-cert', pebble.tlsCaFile, '--log-format', 'json', '--compute-range', `10.204.${process.pid % 256}.0/24`],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NEXUS_DATA: undefined, NEXUS_URL: undefined, NEXUS_GATEWAY: 'true' } },
    );
    let log = '';
    daemon.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const url = await waitFor(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)".*"msg":"nexus daemon listening"/.exec(log)?.[1], 90_000, 'the daemon').catch((e: Error) => {
      throw new Error(`${e.message}: ${log}`);
    });
    await waitFor(() => (log.includes(`"certificates":"${pebble!.directory}"`) ? true : undefined), 60_000, 'the gateway with ACME').catch((e: Error) => {
      throw new Error(`${e.message}: ${log}`);
    });
    const env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: url };
    for (const args of [
      ['identity', 'create', 'alice', '--role', 'creator'],
      ['imvu', 'create', '--name', 'Atelier', '--owner', 'alice', '--jurisdiction', 'US-CCPA', '--as', 'alice'],
    ]) {
      const r = await run(args, env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const root = await pebble.root();
    writeFileSync(join(dir, 'root.pem'), root);
    const served = await waitFor(async () => {
      const p = await peer(port, 'imvu001.world', root).catch(() => undefined);
      return p?.authorized ? p : undefined;
    }, 120_000, 'a certificate from Pebble served for imvu001.world').catch((e: Error) => {
      throw new Error(`${e.message}: ${log.split('\n').filter((l) => !l.includes('nexus daemon listening')).join('\n')}`);
    });
    expect(served.cert.issuer.CN).toMatch(/^Pebble Intermediate CA/);
    expect(served.cert.subjectaltname).toContain('DNS:stage.imvu001.world');
    // The stage name too, by SNI, and curl agrees (trusting Pebble's root only).
    const c = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{ssl_verify_result}', '--max-time', '10', '--cacert', join(dir, 'root.pem'), '--resolve', `stage.imvu001.world:${port}:127.0.0.1`, `https://stage.imvu001.world:${port}/nothing-routed`], { encoding: 'utf8' });
    expect(c.stdout).toMatch(/^\d{3} 0$/);
    // The line is written once the certificate is installed, so it may follow the first TLS answer.
    const line = /acme: IMVU-001: certificate [0-9a-f]+ until .* recorded \(entry \d+\) and served/;
    await waitFor(() => (line.test(log) ? true : undefined), 30_000, 'the log line of the served certificate');
    expect(log).toMatch(line);
  }, 240_000);
});
