// The daemon as a separate process (the built dist/api/daemon.js, or `nexus start` as a user
// runs it), for crash and shutdown tests and for interop tests against the real thing.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { testComputeRange } from './compute-range.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface DaemonProcess {
  url: string;
  child: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every log line so far (pino JSON on stdout, anything on stderr). */
  output: string[];
  /** The "nexus daemon listening" log record (url, dns: { address, port, xfr }, dataDir, ...). */
  listening: Record<string, unknown>;
  /** SIGTERM, SIGKILL after `graceMs` (default 10 s); resolves with how it exited. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  /** `daemon` (default): node dist/api/daemon.js; `cli`: bin/nexus.js start, what `npm start` runs. */
  via?: 'daemon' | 'cli';
  /** Added to the environment (NEXUS_CONFIG is cleared unless given here). */
  env?: Record<string, string>;
  timeoutMs?: number;
}

export function spawnDaemon(dataDir: string, args: string[] = [], opts: SpawnOptions = {}): Promise<DaemonProcess> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const entry = opts.via === 'cli' ? ['bin/nexus.js', 'start'] : ['dist/api/daemon.js'];
  const child = spawn(process.execPath, [...entry, '--data', dataDir, '--port', '0', '--dns-port', '0', '--log-level', 'info', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    // No gateway unless a test asks for one: HAProxy on 443/80 as root is one per host, not one per test daemon.
    // A compute range of its own: two platforms on one host may not share one (the later one's fabric stays off).
    env: { ...process.env, NEXUS_CONFIG: '', NEXUS_GATEWAY: 'false', NEXUS_MAIL: 'false', NEXUS_COMPUTE_RANGE: testComputeRange(), ...opts.env },
  });
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Should this process die first, the daemon goes with it.
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);
  void exited.then(() => process.off('exit', onExit));
  const stop = async (graceMs = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      void exited.then(() => clearTimeout(timer));
    }
    return exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`daemon did not start within ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        output.push(line);
        try {
          const rec = JSON.parse(line) as { msg?: string; url?: string };
          if (rec.msg === 'nexus daemon listening' && rec.url) {
            clearTimeout(timer);
            resolve({ url: rec.url, child, exited, output, listening: rec, stop });
          }
        } catch {
          // not a log line
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited (code ${code}, signal ${signal}) before listening:\n${output.join('\n')}`));
    });
  });
}
