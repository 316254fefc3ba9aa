// The daemon as an operator runs it, in real processes: `npm start` stops on SIGTERM sent to npm
// (no orphan left holding the ports), and one daemon per data directory (a second one exits at
// once, code 6, naming the first; after kill -9 of the first a new one starts).
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';
import { LOCKED_EXIT_CODE } from '../../src/core/daemon-lock.ts';
import { EXIT } from '../../src/cli/errors.ts';
import { ROOT, run, tempDir } from './harness.ts';

const dir = tempDir('daemon-process');
const daemons: DaemonProcess[] = [];
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop(2_000)));
  rmSync(dir, { recursive: true, force: true });
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether this process can listen on 127.0.0.1:port (TCP), i.e. nobody holds it. */
function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => res(true)));
  });
}

const args = (data: string) => ['--data', data, '--port', '0', '--dns-port', '0', '--log-level', 'info'];

describe('npm start', () => {
  it('runs the daemon in the foreground; SIGTERM to npm stops it and frees its ports', async () => {
    const data = join(dir, 'npm-start');
    const npm = spawn('npm', ['start', '--silent', '--', ...args(data)], { cwd: ROOT, env: { ...process.env, NEXUS_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((res) => npm.once('exit', (code) => res(code)));
    let out = '';
    npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const listening = await new Promise<{ pid: number; url: string; dns: { port: number } }>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`npm start did not start the daemon:\n${out}`)), 25_000);
      npm.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        for (const line of out.split('\n')) {
          if (!line.includes('"nexus daemon listening"')) continue;
          clearTimeout(timer);
          res(JSON.parse(line) as { pid: number; url: string; dns: { port: number } });
        }
      });
    });
    const port = Number(new URL(listening.url).port);
    expect(listening.pid).not.toBe(npm.pid);
    expect(alive(listening.pid)).toBe(true);
    expect(await portFree(port)).toBe(false);

    process.kill(npm.pid!, 'SIGTERM');
    await exited;
    await until('the daemon to exit', () => !alive(listening.pid));
    expect(await portFree(port)).toBe(true);
    expect(await portFree(listening.dns.port)).toBe(true);
  });
});

describe('one daemon per data directory', () => {
  it('uses the exit code documented with the CLI', () => {
    expect(LOCKED_EXIT_CODE).toBe(EXIT.locked);
  });

  it('a second daemon on the same directory exits at once naming the first; after kill -9 of the first a new one starts', async () => {
    const data = join(dir, 'locked');
    const first = await spawnDaemon(data, [], { via: 'cli' });
    daemons.push(first);
    const pid = first.child.pid!;

    // `nexus start` and the stand-alone entry alike, before touching the store.
    const viaCli = await run(['start', ...args(data)], {});
    expect(viaCli.code).toBe(EXIT.locked);
    expect(viaCli.stderr.trim()).toBe(`nexus: a daemon (pid ${pid}) already serves ${data}`);
    const viaEntry = await run([join(ROOT, 'dist', 'api', 'daemon.js'), ...args(data)], {}, { cmd: process.execPath });
    expect(viaEntry.code).toBe(EXIT.locked);
    expect(viaEntry.stderr).toContain(`a daemon (pid ${pid}) already serves ${data}`);
    expect(viaEntry.stdout).not.toContain('nexus daemon listening');

    // The first one still serves.
    const health = await fetch(`${first.url}/v1/platform`);
    expect(health.status).toBe(200);

    first.child.kill('SIGKILL');
    await first.exited;
    const second = await spawnDaemon(data, [], { via: 'cli' });
    daemons.push(second);
    expect((await fetch(`${second.url}/v1/platform`)).status).toBe(200);
    // And it is the one now named.
    const third = await run(['serve', ...args(data)], {});
    expect(third.code).toBe(EXIT.locked);
    expect(third.stderr).toContain(`a daemon (pid ${second.child.pid}) already serves ${data}`);
  });

  it('daemons on different directories run side by side, and a clean stop releases the directory', async () => {
    const a = await spawnDaemon(join(dir, 'a'), [], { via: 'cli' });
    const b = await spawnDaemon(join(dir, 'b'));
    daemons.push(a, b);
    expect((await a.stop()).code).toBe(0);
    const again = await spawnDaemon(join(dir, 'a'));
    daemons.push(again);
    expect((await fetch(`${again.url}/v1/platform`)).status).toBe(200);
  });
});
