// Pebble (Let's Encrypt's test ACME CA, the Debian package) on loopback for gateway tests: its own
// configuration in a temp dir, free ports, its HTTPS listener under a CA made here (what
// `--acme-ca-cert` trusts), no artificial sleeps, and its DNS resolver pointed at our DNS server so
// DNS-01 challenges are looked up there and nowhere else.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pebble {
  directory: string;
  /** The CA of Pebble's own HTTPS listener (PEM file). */
  tlsCaFile: string;
  /** Pebble's issuing root (regenerated every launch), PEM. */
  root(): Promise<string>;
  /** Pebble's intermediate, the issuer of the certificates it signs, PEM. */
  intermediate(): Promise<string>;
  /** The pebble process (tests pause it with SIGSTOP to hold an order mid-way). */
  pid: number;
  stop(): void;
}

export interface PebbleOptions {
  /** The port Pebble's VA fetches HTTP-01 challenges from (the gateway's plain-HTTP listener); default a free one nobody listens on. */
  httpPort?: number;
  /** Extra environment (e.g. PEBBLE_VA_SLEEPTIME instead of the default no-sleep). */
  env?: Record<string, string>;
  /** Let the VA sleep before validating, as Pebble does by default (default false: PEBBLE_VA_NOSLEEP). */
  sleep?: boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export const havePebble = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v pebble'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

export async function startPebble(dnsPort: number, opts: PebbleOptions = {}): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'pebble-'));
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=pebble listener test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ossl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'key.pem', '-out', 'r.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', 'r.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'cert.pem', '-days', '2', '-extfile', 'ext');
  const port = await freePort();
  const mgmt = await freePort();
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${mgmt}`,
        certificate: join(dir, 'cert.pem'),
        privateKey: join(dir, 'key.pem'),
        httpPort: opts.httpPort ?? (await freePort()),
        tlsPort: await freePort(),
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  const child: ChildProcess = spawn('pebble', ['-config', join(dir, 'config.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
    cwd: dir,
    env: { ...process.env, ...(opts.sleep ? {} : { PEBBLE_VA_NOSLEEP: '1' }), PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pebble did not start: ${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/Listening on/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (c) => reject(new Error(`pebble exited ${c}: ${out}`)));
  });
  const ca = readFileSync(join(dir, 'ca.pem'));
  const get = (path: string) =>
    new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mgmt, path, ca, servername: 'localhost' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
  return {
    directory: `https://127.0.0.1:${port}/dir`,
    tlsCaFile: join(dir, 'ca.pem'),
    pid: child.pid!,
    root: () => get('/roots/0'),
    intermediate: () => get('/intermediates/0'),
    stop() {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
