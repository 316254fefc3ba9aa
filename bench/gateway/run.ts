// bench/gateway: the nexus-managed gateway (HAProxy driven by the ledger) against a private nginx
// proxying to the same upstream with the same TLS settings (the same certificate and key, TLS 1.2
// and 1.3, ALPN h2 and http/1.1), in the same run: wrk (HTTP/1.1) and h2load (HTTP/2) on a public
// route and on a private route (an ES256 token checked by HAProxy on every request). The upstream
// is an nginx returning a short body, in its own network namespace at the IMVU's workload address.
// Prints a Markdown section for bench/RESULTS.md. Needs root (network namespaces), haproxy, nginx,
// wrk and h2load (Debian: haproxy nginx wrk nghttp2-client).
//
//   npx tsx bench/gateway/run.ts            BENCH_SECONDS=8 BENCH_ROUNDS=5 BENCH_CONNECTIONS=32
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { testPlatform } from '../../src/core/testing.ts';
import { workloadNet } from '../../src/compute/fabric/addresses.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { issueToken } from '../../src/network/gateway/tokens.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 32);
/** Rounds over all targets, interleaved (a slow spell of the shared machine hits each); medians reported. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const RANGE = '10.207.0.0/24';
const GW_PORT = 18443;
const NGINX_PORT = 18444;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const children: ChildProcess[] = [];
const cleanups: (() => void)[] = [];

function nginxConf(dir: string, body: string): string {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  return `worker_processes 2;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;\n${body}\n}\n`;
}

function start(cmd: string, args: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(c);
  return c;
}

async function until(fn: () => boolean, what: string): Promise<void> {
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

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Figure {
  rps: number;
  p99: string;
  errors: string;
}

function wrk(url: string, host: string, headers: string[]): Figure {
  const out = run('wrk', ['-t2', `-c${CONNS}`, `-d${SECONDS}s`, '--latency', '-H', `Host: ${host}`, ...headers.flatMap((h) => ['-H', h]), url]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  const sock = /Socket errors: (.*)/.exec(out)?.[1];
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0), p99: /Latency Distribution[\s\S]*?99%\s+(\S+)/.exec(out)?.[1] ?? '?', errors: [non2xx ? `${non2xx} non-2xx` : '', sock ?? ''].filter(Boolean).join('; ') || 'none' };
}

function h2load(url: string, host: string, headers: string[], dir: string, name: string): Figure {
  const log = join(dir, `${name}.h2load.log`);
  const out = run('h2load', ['-D', String(SECONDS), '-c', String(Math.max(1, CONNS / 4)), '-m', '16', '-t', '2', '--header', `:authority: ${host}`, ...headers.flatMap((h) => ['--header', h]), `--log-file=${log}`, url]);
  // The log: start time, status, latency in microseconds, one request a line.
  const lat = readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(l.split('\t')[2]))
    .sort((a, b) => a - b);
  const p99 = lat.length ? `${(lat[Math.floor(lat.length * 0.99)]! / 1000).toFixed(2)}ms` : '?';
  const failed = /requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const errs = [failed && failed[1] !== '0' ? `${failed[1]} failed` : '', codes && codes[3] !== '0' ? `${codes[3]} 4xx` : '', codes && codes[4] !== '0' ? `${codes[4]} 5xx` : ''].filter(Boolean).join('; ');
  return { rps: Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0), p99, errors: errs || 'none' };
}

async function main(): Promise<void> {
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
  const net = workloadNet(imvu.seq, RANGE);
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
  const gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${GW_PORT}`, range: RANGE, checkIntervalMs: 3_600_000, imvuLimits: { requestsPerCoreS: 1_000_000, connectionsPerCore: 100_000 }, sourceLimit: { requests: 1_000_000_000, windowS: 10 } });
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
      `  upstream u { server ${net.workloadAddress}:8080; keepalive 64; }\n  server {\n    listen 127.0.0.1:${NGINX_PORT} ssl http2;\n    server_name ${imvu.domain};\n    ssl_certificate ${pem}; ssl_certificate_key ${pem};\n    ssl_protocols TLSv1.2 TLSv1.3;\n    keepalive_requests 1000000;\n    location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }\n  }`,
    ),
  );
  start('nginx', ['-p', front, '-c', join(front, 'nginx.conf'), '-g', 'daemon off;']);
  const curlVia = (port: number, path: string, extra: string[] = []) => run('curl', ['-s', '--cacert', gw.caCert, '--resolve', `${imvu.domain}:${port}:127.0.0.1`, ...extra, `https://${imvu.domain}:${port}${path}`]);
  await until(() => curlVia(NGINX_PORT, '/pub/x').startsWith('hello'), 'nginx');
  const token = issueToken(gw.tokenKey, { imvu: imvu.id, identity: alice.id, roles: [], ttlS: 3600 });
  const auth = `Authorization: Bearer ${token}`;
  if (!curlVia(GW_PORT, '/pub/x').startsWith('hello')) throw new Error('gateway public route does not answer');
  if (!curlVia(GW_PORT, '/priv/x', ['-H', auth]).startsWith('hello')) throw new Error('gateway private route does not answer');
  if (curlVia(GW_PORT, '/priv/x', ['-o', '/dev/null', '-w', '%{http_code}']) !== '401') throw new Error('gateway private route answers without a token');

  // Same CPU budget for both: HAProxy's threads (its default, one per CPU) against nginx's workers.
  const nbthread = /Nbthread: (\d+)/.exec(execFileSync('socat', ['-', `UNIX-CONNECT:${gw.layout.adminSocket}`], { input: 'show info\n', encoding: 'utf8' }))?.[1] ?? '?';
  const load0 = loadavg();
  const targets = [
    { name: 'nginx (plain proxy)', port: NGINX_PORT, path: '/pub/x', headers: [] as string[] },
    { name: 'gateway, public route', port: GW_PORT, path: '/pub/x', headers: [] as string[] },
    { name: 'gateway, private route (JWT)', port: GW_PORT, path: '/priv/x', headers: [auth] },
  ];
  const runs = new Map<string, { h1: Figure[]; h2: Figure[] }>(targets.map((t) => [t.name, { h1: [], h2: [] }]));
  for (let round = 0; round < ROUNDS; round++)
    for (const t of targets) {
      const url = `https://127.0.0.1:${t.port}${t.path}`;
      const h1 = wrk(url, imvu.domain, t.headers);
      const h2 = h2load(url, imvu.domain, t.headers.map((h) => h.replace(/^Authorization: /, 'authorization: ')), p.dataDir, t.name.replace(/\W+/g, '-'));
      runs.get(t.name)!.h1.push(h1);
      runs.get(t.name)!.h2.push(h2);
      console.error(`round ${round + 1} ${t.name}: HTTP/1.1 ${h1.rps.toFixed(0)} req/s p99 ${h1.p99}; HTTP/2 ${h2.rps.toFixed(0)} req/s p99 ${h2.p99}`);
    }
  // The round with the median requests/s, per target and protocol.
  const med = (xs: Figure[]) => [...xs].sort((a, b) => a.rps - b.rps)[Math.floor(xs.length / 2)]!;
  const results = targets.map((t) => ({ name: t.name, h1: med(runs.get(t.name)!.h1), h2: med(runs.get(t.name)!.h2) }));
  const load1 = loadavg();
  const nginx = results[0]!;
  const ratio = (r: Figure, n: Figure) => (n.rps ? (r.rps / n.rps).toFixed(2) : '?');
  const lines = [
    `## Gateway (bench/gateway, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
    '',
    `HAProxy ${run('haproxy', ['-v']).split(' ')[2]} driven by nexus vs nginx ${/nginx\/(\S+)/.exec(spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr)?.[1] ?? '?'} on the same upstream (nginx returning a short body in the IMVU's network namespace) and the same certificate and TLS settings; HAProxy ${nbthread} threads, nginx 2 worker processes; loopback, ${ROUNDS} interleaved rounds of ${SECONDS} s per target and protocol (the median round shown), wrk ${CONNS} connections 2 threads, h2load ${Math.max(1, CONNS / 4)} connections x 16 streams. Load average ${load0.map((l) => l.toFixed(1)).join(' ')} before, ${load1.map((l) => l.toFixed(1)).join(' ')} after, on the shared 2-core machine: the ratios matter more than the absolute figures. The gateway's per-IMVU limits were raised for the run (the bench measures the proxy, not the limiter).`,
    '',
    '| target | HTTP/1.1 req/s | p99 | x nginx | HTTP/2 req/s | p99 | x nginx | errors |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => `| ${r.name} | ${r.h1.rps.toFixed(0)} | ${r.h1.p99} | ${ratio(r.h1, nginx.h1)} | ${r.h2.rps.toFixed(0)} | ${r.h2.p99} | ${ratio(r.h2, nginx.h2)} | ${r.h1.errors === 'none' && r.h2.errors === 'none' ? 'none' : `h1: ${r.h1.errors}; h2: ${r.h2.errors}`} |`),
    '',
    'Targets: public route >= 0.9x nginx, private route >= 0.7x.',
  ];
  console.log(lines.join('\n'));
}

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
