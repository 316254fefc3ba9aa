// Supervision of HAProxy by `nexus serve` (issue 13, item 9): started with the daemon, its worker
// unprivileged after binding the ports, restarted when killed with -9 (master and worker), gone
// when the daemon stops; and one line saying the gateway is off when haproxy is missing.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer } from '../../src/api/server.ts';
import { runtimeCommand } from '../../src/network/gateway/runtime.ts';
import { BIN, tempDir } from '../cli/harness.ts';
import { freePort } from './pebble.ts';

const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0 && process.getuid?.() === 0;

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, ms = 60_000, what = 'condition'): Promise<T> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Processes whose command line mentions `needle`, with their parent and real uid. */
function processes(needle: string): { pid: number; ppid: number; uid: number }[] {
  const out: { pid: number; ppid: number; uid: number }[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (!cmd.includes(needle) || !cmd.includes('haproxy')) continue;
      const status = readFileSync(`/proc/${d}/status`, 'utf8');
      out.push({ pid: Number(d), ppid: Number(/^PPid:\s+(\d+)/m.exec(status)![1]), uid: Number(/^Uid:\s+(\d+)/m.exec(status)![1]) });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** The worker's pid as the runtime API reports it, and its uids from /proc. */
async function worker(socket: string): Promise<{ pid: number; uids: number[] } | undefined> {
  try {
    const info = await runtimeCommand(socket, 'show info', { timeoutMs: 1000 });
    const pid = Number(/^Pid: (\d+)/m.exec(info)?.[1]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { pid, uids: /^Uid:\s+(.*)$/m.exec(status)![1]!.trim().split(/\s+/).map(Number) };
  } catch {
    return undefined;
  }
}

function curlCode(port: number): string {
  const r = spawnSync('curl', ['-s', '-k', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '--resolve', `nobody.example:${port}:127.0.0.1`, `https://nobody.example:${port}/`], { encoding: 'utf8' });
  return r.stdout;
}

describe.skipIf(!haveHaproxy)('nexus serve supervises HAProxy', () => {
  const dir = tempDir('gw-supervision');
  let daemon: ChildProcess | undefined;
  afterAll(() => {
    daemon?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts it unprivileged, restarts it after kill -9, and stops it with the daemon', async () => {
    const data = join(dir, 'data');
    await (await initDataDir(data)).close();
    const port = await freePort();
    const httpPort = await freePort();
    daemon = spawn(process.execPath, [BIN, 'serve', '--data', data, '--port', '0', '--dns-port', '0', '--gateway-port', String(port), '--gateway-http-port', String(httpPort), '--log-format', 'json', '--compute-range', `10.203.${process.pid % 256}.0/24`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NEXUS_DATA: undefined, NEXUS_URL: undefined, NEXUS_GATEWAY: 'true' },
    });
    let log = '';
    daemon.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    await waitFor(() => /gateway \(haproxy\) running/.test(log) || undefined, 90_000, 'the gateway to run').catch((e: Error) => {
      throw new Error(`${e.message}: ${log}`);
    });
    const cfg = join(data, 'gateway', 'haproxy.cfg');
    const socket = join(data, 'gateway', 'admin.sock');
    expect(readFileSync(cfg, 'utf8')).toMatch(/^\s+user nobody$/m);

    // The worker dropped root after binding 443/80 (here: free high ports); nobody is 65534.
    const w1 = await waitFor(() => worker(socket), 30_000, 'the worker');
    expect(w1.uids).toEqual([65534, 65534, 65534, 65534]);
    expect(curlCode(port)).toBe('421');

    // Kill every HAProxy process of this daemon with -9: it comes back by itself.
    const before = processes(cfg);
    expect(before.length).toBeGreaterThanOrEqual(2);
    for (const p of before) process.kill(p.pid, 'SIGKILL');
    const w2 = await waitFor(async () => {
      const w = await worker(socket);
      return w && w.pid !== w1.pid && curlCode(port) === '421' ? w : undefined;
    }, 60_000, 'HAProxy restarted');
    expect(w2.uids).toEqual([65534, 65534, 65534, 65534]);
    expect(log).toMatch(/haproxy exited \(SIGKILL\); restarting/);

    // The daemon stops: no HAProxy of it is left.
    const exited = new Promise<number | null>((r) => daemon!.once('exit', (c) => r(c)));
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = undefined;
    expect(processes(cfg)).toEqual([]);
    expect(curlCode(port)).toBe('000');
  }, 180_000);

  it('says in one line that the gateway is off when haproxy is not installed', async () => {
    const data = join(dir, 'off');
    await (await initDataDir(data)).close();
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logStream: stream, gateway: { address: '127.0.0.1', port: await freePort(), httpPort: await freePort(), haproxyBin: join(dir, 'no-haproxy') } });
    try {
      expect(server.gateway).toBeUndefined();
      const off = lines.filter((l) => /gateway off/.test(l));
      expect(off).toHaveLength(1);
      expect(JSON.parse(off[0]!).msg).toBe('gateway off: haproxy is not installed (apt-get install haproxy)');
      expect(existsSync(join(data, 'gateway', 'haproxy.cfg'))).toBe(false);
    } finally {
      await server.close();
    }
  }, 60_000);
});
