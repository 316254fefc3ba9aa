// What bench/gateway's runs share: a platform with one IMVU (a public route /pub/* and a private
// route /priv/* needing a token), its upstream (an nginx returning a short body, in its own network
// namespace at the IMVU's workload address), the nexus-managed gateway in front of it with its
// limits raised (the benches measure the proxy, not the limiter), and a plain nginx proxy on the
// same upstream with the same certificate and TLS settings. Needs root (network namespaces).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { testPlatform, type TestPlatform } from '../../src/core/testing.ts';
import { workloadNet } from '../../src/compute/fabric/addresses.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { issueToken } from '../../src/network/gateway/tokens.ts';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const children: ChildProcess[] = [];
const cleanups: (() => void)[] = [];

export function nginxConf(dir: string, body: string): string {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  return `worker_processes 2;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;\n${body}\n}\n`;
}

/** A child that is stopped when the bench ends. */
export function start(cmd: string, args: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(c);
  return c;
}

export async function until(fn: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if (fn()) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up`);
}

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface BenchSetup {
  platform: TestPlatform;
  dataDir: string;
  domain: string;
  gw: Gateway;
  /** The upstream's address and port, as the gateway's backend reaches it. */
  upstream: string;
  /** The IMVU's certificate and key (one PEM), served by every front. */
  pem: string;
  /** `Authorization: Bearer <token>` for the private route. */
  auth: string;
  gwPort: number;
  nginxPort: number;
  /** An HTTPS GET through one of the fronts (by port), with the test CA trusted. */
  curlVia: (port: number, path: string, extra?: string[]) => string;
}

export interface SetupOptions {
  /** The workload range the bench's IMVU gets its address from (one /30 of it). */
  range: string;
  gwPort: number;
  nginxPort: number;
}

export async function setUp(o: SetupOptions): Promise<BenchSetup> {
  if (process.getuid?.() !== 0) throw new Error('bench/gateway needs root (network namespaces)');
  const p = await testPlatform();
  cleanups.push(() => void p.cleanup());
  const alice = await p.register('alice', 'creator');
  const created = await p.as(alice, 'imvu.create', { name: 'bench', owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 8 } });
  if (!created.allowed) throw new Error('imvu.create denied');
  const imvu = (await p.store.get<{ id: string; seq: number; domain: string }>('SELECT id, seq, domain FROM imvus WHERE entry = ?', [created.index]))!;
  const roomy = '999999999/min';
  const policy = { public: [{ path: '/pub/*', backend: 'web:8080', rate_limit: roomy }], private: [{ path: '/priv/*', backend: 'web:8080', require_identity: true, rate_limit: roomy }], restricted: [] };
  if (!(await p.as(alice, 'route.set', { imvu: imvu.id, policy })).allowed) throw new Error('route.set denied');

  // The upstream: nginx in the IMVU's namespace at its workload address.
  const net = workloadNet(imvu.seq, o.range);
  const ns = `nxbench-${process.pid}`;
  const veth = `nxb${process.pid % 100000}h`;
  ip('netns', 'add', ns);
  cleanups.push(() => ip('netns', 'del', ns));
  ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  cleanups.push(() => ip('link', 'del', veth));
  ip('addr', 'add', `${net.hostAddress}/30`, 'dev', veth);
  ip('link', 'set', veth, 'up');
  ip('-n', ns, 'addr', 'add', `${net.workloadAddress}/30`, 'dev', 'eth0');
  ip('-n', ns, 'link', 'set', 'eth0', 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const up = join(p.dataDir, 'upstream');
  mkdirSync(up, { recursive: true });
  writeFileSync(join(up, 'nginx.conf'), nginxConf(up, `  server { listen ${net.workloadAddress}:8080 reuseport; keepalive_requests 1000000; location / { return 200 "hello from the upstream\\n"; } }`));
  start('ip', ['netns', 'exec', ns, 'nginx', '-p', up, '-c', join(up, 'nginx.conf'), '-g', 'daemon off;']);
  await until(() => run('curl', ['-s', `http://${net.workloadAddress}:8080/`]).startsWith('hello'), 'the upstream');

  // The gateway: limits raised so that the bench measures the proxy, not the limiter.
  const gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${o.gwPort}`, range: o.range, checkIntervalMs: 3_600_000, imvuLimits: { requestsPerCoreS: 1_000_000, connectionsPerCore: 100_000 }, sourceLimit: { requests: 1_000_000_000, windowS: 10 } });
  await gw.start();
  cleanups.unshift(() => void gw.stop());
  const pem = join(gw.layout.dir, 'certs', `${imvu.id}.pem`);

  // nginx in front, same certificate and TLS settings, proxying to the same upstream with keep-alive.
  const front = join(p.dataDir, 'nginx-front');
  mkdirSync(front, { recursive: true });
  writeFileSync(
    join(front, 'nginx.conf'),
    nginxConf(
      front,
      `  upstream u { server ${net.workloadAddress}:8080; keepalive 64; }\n  server {\n    listen 127.0.0.1:${o.nginxPort} ssl http2;\n    server_name ${imvu.domain};\n    ssl_certificate ${pem}; ssl_certificate_key ${pem};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    keepalive_requests 1000000;\n    location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }\n  }`,
    ),
  );
  start('nginx', ['-p', front, '-c', join(front, 'nginx.conf'), '-g', 'daemon off;']);
  const curlVia = (port: number, path: string, extra: string[] = []) => run('curl', ['-s', '--cacert', gw.caCert, '--resolve', `${imvu.domain}:${port}:127.0.0.1`, ...extra, `https://${imvu.domain}:${port}${path}`]);
  await until(() => curlVia(o.nginxPort, '/pub/x').startsWith('hello'), 'nginx');
  const token = issueToken(gw.tokenKey, { imvu: imvu.id, identity: alice.id, roles: [], ttlS: 3600 });
  const auth = `Authorization: Bearer ${token}`;
  checkGateway(curlVia, o.gwPort, auth, 'gateway');
  return { platform: p, dataDir: p.dataDir, domain: imvu.domain, gw, upstream: `${net.workloadAddress}:8080`, pem, auth, gwPort: o.gwPort, nginxPort: o.nginxPort, curlVia };
}

/** A front that serves the public route, the private route with the token, and refuses it without. */
export function checkGateway(curlVia: BenchSetup['curlVia'], port: number, auth: string, what: string): void {
  if (!curlVia(port, '/pub/x').startsWith('hello')) throw new Error(`${what}: the public route does not answer`);
  if (!curlVia(port, '/priv/x', ['-H', auth]).startsWith('hello')) throw new Error(`${what}: the private route does not answer`);
  if (curlVia(port, '/priv/x', ['-o', '/dev/null', '-w', '%{http_code}']) !== '401') throw new Error(`${what}: the private route answers without a token`);
}

/** Runs a bench's main, then stops every child and undoes the set-up, whatever happened. */
export function runBench(main: () => Promise<void>): void {
  main()
    .catch((e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    })
    .finally(() => {
      for (const c of children) c.kill('SIGTERM');
      for (const f of cleanups) {
        try {
          f();
        } catch {
          /* best effort */
        }
      }
      setTimeout(() => process.exit(), 3000).unref();
    });
}
