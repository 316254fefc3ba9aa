// Knot DNS (knotd, Debian package `knot`) as a stock secondary on loopback, for the zone transfer
// interop tests: a throw-away configuration with our server as the primary of the given zones,
// a TSIG key if given (transfers, SOA checks and NOTIFY all signed with it), and knotd in its own
// process group so that it can always be ended, whatever happens to the test process.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const hasKnotd = spawnSync('knotd', ['-V'], { stdio: 'ignore' }).status === 0;

/** A port free on 127.0.0.1 for both UDP and TCP (at the moment of asking). */
export async function freePort(): Promise<number> {
  for (;;) {
    const tcp = net.createServer();
    const port = await new Promise<number>((resolve) => tcp.listen(0, '127.0.0.1', () => resolve((tcp.address() as net.AddressInfo).port)));
    const udp = dgram.createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((r) => tcp.close(() => r()));
    if (ok) {
      await new Promise<void>((r) => udp.close(() => r()));
      return port;
    }
    udp.close();
  }
}

export interface KnotOptions {
  /** Where knotd listens (127.0.0.1, UDP and TCP); `freePort()` before the primary starts, so that it can be told to NOTIFY it. */
  port: number;
  /** Our server: where Knot transfers from (and the only source of NOTIFY it accepts). */
  primary: { address?: string; port: number };
  /** TSIG key (HMAC-SHA256, base64 secret) for transfers and NOTIFY; without it, by address only. */
  key?: { name: string; secret: string };
  zones: string[];
  /** Have Knot check every zone's ZONEMD (RFC 8976) on each transfer and refuse a zone that fails (`zonemd-verify: on`). */
  zonemdVerify?: boolean;
}

export interface Knot {
  port: number;
  child: ChildProcess;
  /** Its knot.conf (for knotc -c). */
  configFile: string;
  /** Everything knotd logged so far (stderr, `any: info`): transfers, NOTIFY, errors. */
  log(): string;
  /** SIGTERM to its process group, SIGKILL after 3 s; removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** Writes a knot.conf for a secondary of `zones` and starts knotd on it (it transfers them at once). */
export function startKnot(opts: KnotOptions): Knot {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-knot-'));
  for (const d of ['db', 'zones']) mkdirSync(join(dir, d));
  const primary = opts.primary.address ?? '127.0.0.1';
  const key = opts.key;
  writeFileSync(
    join(dir, 'knot.conf'),
    `server:
    rundir: "${dir}"
    listen: 127.0.0.1@${opts.port}
log:
  - target: stderr
    any: info
database:
    storage: "${dir}/db"
${key ? `key:\n  - id: ${key.name}\n    algorithm: hmac-sha256\n    secret: ${key.secret}\n` : ''}remote:
  - id: nexus
    address: ${primary}@${opts.primary.port}
${key ? `    key: ${key.name}\n` : ''}acl:
  - id: notify-from-nexus
    address: ${primary}
${key ? `    key: ${key.name}\n` : ''}    action: notify
template:
  - id: default
    storage: "${dir}/zones"
zone:
${opts.zones.map((z) => `  - domain: ${z}\n    master: nexus\n    acl: notify-from-nexus\n${opts.zonemdVerify ? '    zonemd-verify: on\n' : ''}`).join('')}`,
  );
  // Its own process group, so that the whole of it can be ended whatever happens to this one.
  const child = spawn('knotd', ['-c', join(dir, 'knot.conf')], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const pid = child.pid!;
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  };
  // Should this process die without stop(), knotd goes with it.
  const onExit = () => killGroup('SIGKILL');
  process.once('exit', onExit);
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  let stopping: Promise<void> | undefined;
  return {
    port: opts.port,
    child,
    configFile: join(dir, 'knot.conf'),
    log: () => log,
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          killGroup('SIGTERM');
          const timer = setTimeout(() => killGroup('SIGKILL'), 3000);
          await exited;
          clearTimeout(timer);
        }
        process.off('exit', onExit);
        rmSync(dir, { recursive: true, force: true });
      })()),
  };
}
