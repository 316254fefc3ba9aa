// bench/gateway CPU per request: what HAProxy spends on one HTTP/1.1 request through nexus's
// rendered configuration, public route and private route (ES256 token checked per request),
// against a plain HAProxy (one frontend, one backend, the same certificate, TLS settings and
// upstream) as the floor, and nginx's front for reference. On a shared machine requests/s follow
// the load; CPU time per request (utime + stime of every thread, from /proc, over the requests wrk
// completed) moves much less. Targets are measured in interleaved rounds (the order rotates each
// round) and the median round is reported, with the load average. Set-up: setup.ts (run.ts's).
//
//   npx tsx bench/gateway/cpu.ts     BENCH_SECONDS=5 BENCH_ROUNDS=5 BENCH_CONNECTIONS=32 BENCH_NGINX=1
//
// BENCH_COMPARE=a.ts,b.ts also measures the configuration each of these modules' `renderConfig`
// renders for the same gateway (same maps, certificates, token key), each in its own HAProxy:
// an A/B of configurations in the same rounds, e.g. another revision's renderer with
//   git show REV:src/network/gateway/haproxy-config.ts > src/network/gateway/haproxy-config.rev.ts
// BENCH_COMPARE_PUBLIC=1 measures those on the public route only (shorter rounds for ablations).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RenderOptions } from '../../src/network/gateway/haproxy-config.ts';
import { loadTable } from '../../src/network/gateway/table.ts';
import { checkGateway, run, runBench, setUp, start, until } from './setup.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 5));
const WITH_NGINX = process.env.BENCH_NGINX !== '0';
const COMPARE = (process.env.BENCH_COMPARE ?? '').split(',').filter(Boolean);
const COMPARE_PUBLIC = process.env.BENCH_COMPARE_PUBLIC === '1';
const RANGE = '10.207.1.0/24';
const GW_PORT = 18453;
const NGINX_PORT = 18454;
const PLAIN_PORT = 18455;
const HZ = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** utime and stime (clock ticks) of a process: every thread, the ones that ended included. */
function cpuTicks(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]), sys: Number(f[12]) };
}

/** A process and its children (nginx's master and workers). */
function family(pid: number): number[] {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...kids.flatMap(family)];
}

interface Target {
  name: string;
  port: number;
  path: string;
  headers: string[];
  /** The processes whose CPU time is counted. */
  pids: () => number[];
}

interface Sample {
  us: number;
  userUs: number;
  rps: number;
}

function measure(t: Target, domain: string): Sample {
  const pids = t.pids();
  const before = pids.map(cpuTicks);
  const out = run('wrk', ['-t2', `-c${CONNS}`, `-d${SECONDS}s`, '-H', `Host: ${domain}`, ...t.headers.flatMap((h) => ['-H', h]), `https://127.0.0.1:${t.port}${t.path}`]);
  const after = pids.map(cpuTicks);
  // A front that refuses or fails requests is cheap for the wrong reason: such a round is an error.
  const bad = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? /Socket errors: (.*)/.exec(out)?.[1];
  if (bad) throw new Error(`${t.name}: ${bad} requests were not served\n${out}`);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  if (!requests) throw new Error(`${t.name}: no requests completed\n${out}`);
  const sum = (k: 'user' | 'sys') => after.reduce((s, a, i) => s + a[k] - before[i]![k], 0);
  const perReq = (ticks: number) => (ticks / HZ / requests) * 1e6;
  return { us: perReq(sum('user') + sum('sys')), userUs: perReq(sum('user')), rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0) };
}

async function main(): Promise<void> {
  const s = await setUp({ range: RANGE, gwPort: GW_PORT, nginxPort: NGINX_PORT });
  const { gw, domain, auth, dataDir } = s;
  const showInfo = (socket: string) => execFileSync('socat', ['-', `UNIX-CONNECT:${socket}`], { input: 'show info\n', encoding: 'utf8' });
  // The gateway runs master-worker: the worker (its pid from the runtime API) does the proxying.
  const gwWorker = () => Number(/^Pid: (\d+)/m.exec(showInfo(gw.layout.adminSocket))?.[1]);
  const nbthread = /Nbthread: (\d+)/.exec(showInfo(gw.layout.adminSocket))?.[1] ?? '?';

  // The floor: HAProxy as a plain proxy, the same certificate list, TLS settings and upstream.
  const plainCfg = join(dataDir, 'haproxy-plain.cfg');
  writeFileSync(
    plainCfg,
    [
      'global',
      '  tune.ssl.default-dh-param 2048',
      '  ssl-default-bind-options ssl-min-ver TLSv1.2',
      'defaults',
      '  mode http',
      '  timeout connect 5s',
      '  timeout client 30s',
      '  timeout server 60s',
      'frontend https',
      `  bind 127.0.0.1:${PLAIN_PORT} ssl crt-list ${gw.layout.crtList} alpn h2,http/1.1`,
      '  default_backend be',
      'backend be',
      `  server w ${s.upstream}`,
      '',
    ].join('\n'),
  );
  const plain = start('haproxy', ['-db', '-f', plainCfg]);
  await until(() => s.curlVia(PLAIN_PORT, '/pub/x').startsWith('hello'), 'the plain HAProxy');

  const targets: Target[] = [
    { name: 'HAProxy, plain proxy (the floor)', port: PLAIN_PORT, path: '/pub/x', headers: [], pids: () => [plain.pid!] },
    { name: 'gateway, public route', port: GW_PORT, path: '/pub/x', headers: [], pids: () => [gwWorker()] },
    { name: 'gateway, private route (JWT)', port: GW_PORT, path: '/priv/x', headers: [auth], pids: () => [gwWorker()] },
  ];

  // Other renderers: the same gateway's configuration, each in its own HAProxy on its own port.
  const imvus = (await loadTable(s.platform.store, RANGE)).imvus;
  let port = PLAIN_PORT + 1;
  for (const file of COMPARE) {
    const mod = (await import(pathToFileURL(resolve(file)).href)) as { renderConfig: (o: RenderOptions) => string };
    const label = basename(file).replace(/\.ts$/, '');
    const p = port++;
    const cfg = join(dataDir, `haproxy-${label}.cfg`);
    const opts: RenderOptions = {
      layout: { ...gw.layout, adminSocket: join(dataDir, `${label}.sock`), logSocket: `127.0.0.1:${gw.logPort}` },
      httpsBind: `127.0.0.1:${p}`,
      httpsPort: p,
      imvus,
      sourceLimit: { requests: 1_000_000_000, windowS: 10 },
    };
    writeFileSync(cfg, mod.renderConfig(opts));
    const child = start('haproxy', ['-db', '-f', cfg]);
    await until(() => s.curlVia(p, '/pub/x').startsWith('hello'), `${label}'s HAProxy`);
    targets.push({ name: `${label}, public route`, port: p, path: '/pub/x', headers: [], pids: () => [child.pid!] });
    // A configuration cut down to see what a group of rules costs may not check tokens: its
    // private route is then not measured (a route that answers without a token is not the private one).
    if (COMPARE_PUBLIC) continue;
    try {
      checkGateway(s.curlVia, p, auth, label);
      targets.push({ name: `${label}, private route (JWT)`, port: p, path: '/priv/x', headers: [auth], pids: () => [child.pid!] });
    } catch (e) {
      console.error(`${(e as Error).message}: measured on its public route only`);
    }
  }
  if (WITH_NGINX) {
    const master = Number(readFileSync(join(dataDir, 'nginx-front', 'nginx.pid'), 'utf8').trim());
    targets.push({ name: 'nginx front (2 workers)', port: NGINX_PORT, path: '/pub/x', headers: [], pids: () => family(master) });
  }

  const load0 = loadavg();
  const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    // The order rotates so that no target always follows the same one.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const t of order) {
      const x = measure(t, domain);
      samples.get(t.name)!.push(x);
      console.error(`round ${round + 1} ${t.name}: ${x.us.toFixed(1)} us/request (user ${x.userUs.toFixed(1)}), ${x.rps.toFixed(0)} req/s, load ${loadavg()[0]!.toFixed(1)}`);
    }
  }
  const load1 = loadavg();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const f1 = (x: number) => x.toFixed(1);
  const floor = median(samples.get(targets[0]!.name)!.map((x) => x.us));
  const lines = [
    `### Gateway CPU per request (bench/gateway/cpu.ts, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
    '',
    `HAProxy ${run('haproxy', ['-v']).split(' ')[2]}, ${nbthread} threads; wrk HTTP/1.1 -t2 -c${CONNS}, ${ROUNDS} interleaved rounds of ${SECONDS} s per target (medians; range over the rounds); CPU = utime + stime of the proxy's processes over the requests wrk completed. Load average ${load0.map(f1).join(' ')} before, ${load1.map(f1).join(' ')} after.`,
    '',
    '| target | CPU us/request | of it user | rounds (us) | over the floor | vs the gateway, same round (us, user) | req/s |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...targets.map((t) => {
      const xs = samples.get(t.name)!;
      const us = xs.map((x) => x.us);
      const m = median(us);
      // A compared configuration against the gateway on the same route, round by round (both
      // measured minutes apart at most): the median of the differences, steadier than the medians'.
      const same = targets.find((g) => g.pids !== t.pids && g.port === GW_PORT && g.path === t.path && g.headers.length === t.headers.length);
      const paired = t.port > PLAIN_PORT && t.port !== NGINX_PORT && same ? samples.get(same.name)! : undefined;
      const diff = paired ? (k: 'us' | 'userUs') => f1(median(xs.map((x, i) => x[k] - paired[i]![k]))) : undefined;
      return `| ${t.name} | ${f1(m)} | ${f1(median(xs.map((x) => x.userUs)))} | ${f1(Math.min(...us))}-${f1(Math.max(...us))} | ${t === targets[0] ? '-' : `+${f1(m - floor)}`} | ${diff ? `${diff('us')}, ${diff('userUs')}` : '-'} | ${median(xs.map((x) => x.rps)).toFixed(0)} |`;
    }),
  ];
  console.log(lines.join('\n'));
}

runBench(main);
