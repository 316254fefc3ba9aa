// bench/gateway: the nexus-managed gateway (HAProxy driven by the ledger) against a private nginx
// proxying to the same upstream with the same TLS settings (the same certificate and key, TLS 1.2
// and 1.3, ALPN h2 and http/1.1), in the same run: wrk (HTTP/1.1) and h2load (HTTP/2) on a public
// route and on a private route (an ES256 token checked by HAProxy on every request). The upstream
// is an nginx returning a short body, in its own network namespace at the IMVU's workload address.
// Prints a Markdown section for bench/RESULTS.md. Needs root (network namespaces), haproxy, nginx,
// wrk and h2load (Debian: haproxy nginx wrk nghttp2-client).
//
//   npx tsx bench/gateway/run.ts            BENCH_SECONDS=8 BENCH_ROUNDS=5 BENCH_CONNECTIONS=32
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { run, runBench, setUp } from './setup.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 32);
/** Rounds over all targets, interleaved (a slow spell of the shared machine hits each); medians reported. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const RANGE = '10.207.0.0/24';
const GW_PORT = 18443;
const NGINX_PORT = 18444;

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
  const { gw, domain, auth, dataDir } = await setUp({ range: RANGE, gwPort: GW_PORT, nginxPort: NGINX_PORT });

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
      const h1 = wrk(url, domain, t.headers);
      const h2 = h2load(url, domain, t.headers.map((h) => h.replace(/^Authorization: /, 'authorization: ')), dataDir, t.name.replace(/\W+/g, '-'));
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

runBench(main);
