// Workload stand-ins for gateway tests: one network namespace per IMVU with a veth pair at exactly
// the IMVU's /30 (host end .1, workload .2) and a small node HTTP server inside that answers with
// its name, the path, and the request body's length (and, given a log file, logs every request).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { workloadNet } from '../../src/compute/fabric/addresses.ts';

const SERVER = `
const http = require('node:http');
const [name, port, log] = process.argv.slice(1);
http.createServer((req, res) => {
  // With a log file: one JSON line per request as it arrives (method, URL, version, header lines
  // as sent, so a test can tell what the workload was given).
  if (log) require('node:fs').appendFileSync(log, JSON.stringify({ method: req.method, url: req.url, version: req.httpVersion, headers: req.rawHeaders }) + '\\n');
  let n = 0;
  req.on('data', (d) => (n += d.length));
  req.on('end', () => res.end(name + ' ' + req.url + ' ' + n + '\\n'));
}).listen(Number(port), '0.0.0.0', () => console.log('up'));
`;

export interface Workload {
  ns: string;
  address: string;
  stop(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** One request as a workload's log has it. */
export interface LoggedRequest {
  method: string;
  url: string;
  version: string;
  /** Header names and values, alternating, as received. */
  headers: string[];
}

/** The requests a workload started with `log` has received so far. */
export function loggedRequests(log: string): LoggedRequest[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LoggedRequest);
}

export async function startWorkload(tag: string, seq: number, range: string, name: string, ports: number[], log?: string): Promise<Workload> {
  const net = workloadNet(seq, range);
  const ns = `nxgw-${process.pid}-${tag}`;
  const host = `nxg${process.pid % 100000}${tag}h`.slice(0, 15);
  ip('netns', 'add', ns);
  ip('link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ip('addr', 'add', `${net.hostAddress}/30`, 'dev', host);
  ip('link', 'set', host, 'up');
  ip('-n', ns, 'addr', 'add', `${net.workloadAddress}/30`, 'dev', 'eth0');
  ip('-n', ns, 'link', 'set', 'eth0', 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  ip('-n', ns, 'route', 'add', 'default', 'via', net.hostAddress);
  const procs: ChildProcess[] = [];
  for (const port of ports) {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER, name, String(port), ...(log ? [log] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(p);
    await new Promise<void>((resolve, reject) => {
      p.stdout!.once('data', () => resolve());
      p.once('exit', (c) => reject(new Error(`workload ${name}:${port} exited ${c}`)));
    });
  }
  return {
    ns,
    address: net.workloadAddress,
    stop() {
      for (const p of procs) p.kill('SIGKILL');
      try {
        ip('link', 'del', host);
      } catch {
        /* gone with the namespace */
      }
      try {
        ip('netns', 'del', ns);
      } catch {
        /* already gone */
      }
    },
  };
}
