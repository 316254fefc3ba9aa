import type { DenialMode } from '../dnssec/online.ts';
import { fork, type ChildProcess } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type dgram from 'node:dgram';
import type net from 'node:net';
import type { RrlOptions } from './rrl.ts';
import type { ResponseCacheOptions } from './response-cache.ts';
import type { DnsServer, UdpMode } from './server.ts';

// More processes answering on the same port: Node's event loop runs on one core, and answering
// (above all signing) is CPU-bound. The primary binds the sockets and hands their handles to each
// worker process (child_process IPC; Node 20 has no SO_REUSEPORT for UDP), so the kernel gives each
// datagram, and each TCP connection, to whichever process reads first. Every worker opens the
// database read-only and keeps its own zone view, polling for committed changes as the primary's
// does (same `refreshMs`), so a change is served by every worker within that delay. Workers send
// their query counts (for metering) and statistics to the primary a few times a second.
//
// What stays in the primary: zone transfers and NOTIFY (when `xfr` is set, TCP is not shared, so
// every transfer and every TCP query is the primary's), the metering itself. What is per worker:
// the response cache, the signature cache, the rate limiter (a source whose queries the kernel
// spreads over N processes gets up to N times the configured rate), TCP connection limits. The
// cookie secret is shared, so a server cookie made by one process is valid at every other.

/** What a worker needs to answer as the primary does: everything but sockets and callbacks. */
export interface WorkerConfig {
  dbPath: string;
  /** The data directory whose DNSSEC keys sign, when the primary signs online. */
  dataDir?: string;
  /** How the signer proves denials (the primary's mode). */
  denial?: DenialMode;
  address: string;
  rrl: RrlOptions | false | undefined;
  tcp: Record<string, number | undefined> | undefined;
  cookies: { secret: Buffer; previous?: Buffer } | false;
  refreshMs: number | undefined;
  maxUdpInFlight: number | undefined;
  udpBatch: boolean | undefined;
  responseCache: Omit<ResponseCacheOptions, 'now'> | false | undefined;
  /** The TCP listener is shared too (not when the primary serves zone transfers). */
  tcp_shared: boolean;
}

/** Messages from a worker to the primary. */
export type WorkerMessage =
  | { t: 'ready'; udp: UdpMode }
  | { t: 'warmed' }
  | { t: 'meter'; counts: [zone: string, imvu: string, n: number][] }
  | { t: 'stats'; stats: WorkerStats }
  | { t: 'error'; message: string };

export type WorkerStats = ReturnType<DnsServer['stats']>;

/** How often a worker reports counts and statistics. */
export const REPORT_MS = 250;

export interface WorkerSet {
  readonly processes: ChildProcess[];
  /** How each worker reads UDP, as it reported when ready. */
  readonly udp: UdpMode[];
  /** Every worker has compiled its zones and read their keys. */
  readonly warmed: Promise<void>;
  /** The latest statistics of every worker, summed. */
  stats(): Partial<WorkerStats>;
  close(): Promise<void>;
}

/** The worker's entry module, beside this one (.ts under tsx or vitest, .js once compiled). */
function entry(): { path: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  const ext = extname(self);
  const path = self.slice(0, -ext.length).replace(/workers$/, 'worker') + ext;
  // TypeScript sources need the loader (vitest runs them without one in the process's argv).
  // V8's default young generation is kept (here as many scavenges as 16 MiB semi-spaces): with
  // 64 MiB there were a quarter to half as many, each longer, about the same GC pause in total, p99
  // at 5,000 q/s no better and 150-220 MiB more RSS for two processes (random names, paired rounds).
  const execArgv = ext === '.ts' && !process.execArgv.some((a) => a.includes('tsx')) ? [...process.execArgv, '--import', 'tsx'] : process.execArgv;
  return { path, execArgv };
}

/**
 * Starts `count` worker processes on the primary's sockets and resolves once each answers.
 * `onQuery` receives their answered-query counts, `onError` their errors.
 */
export async function startWorkers(
  count: number,
  cfg: WorkerConfig,
  sockets: { udp: dgram.Socket; tcp: net.Server },
  hooks: { onQuery?: (zone: string, imvu: string, n: number) => void; onError: (err: unknown) => void },
): Promise<WorkerSet> {
  const { path, execArgv } = entry();
  const processes: ChildProcess[] = [];
  const udp: UdpMode[] = [];
  const latest = new Map<ChildProcess, WorkerStats>();
  let closing = false;
  const starting: Promise<void>[] = [];
  const warming: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const child = fork(path, [], { execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    processes.push(child);
    warming.push(new Promise<void>((resolve) => {
      child.on('message', (m: WorkerMessage) => m.t === 'warmed' && resolve());
      child.once('exit', () => resolve());
    }));
    starting.push(
      new Promise<void>((resolve, reject) => {
        const early = (code: number | null) => reject(new Error(`DNS worker exited before it was ready (code ${code})`));
        child.once('exit', early);
        child.on('error', reject);
        child.on('message', (m: WorkerMessage) => {
          if (m.t === 'ready') {
            udp[i] = m.udp;
            child.off('exit', early);
            resolve();
          } else if (m.t === 'meter') for (const [zone, imvu, n] of m.counts) hooks.onQuery?.(zone, imvu, n);
          else if (m.t === 'stats') latest.set(child, m.stats);
          else if (m.t === 'error') hooks.onError(new Error(`DNS worker: ${m.message}`));
        });
        child.on('exit', (code) => {
          if (!closing) hooks.onError(new Error(`DNS worker exited (code ${code})`));
        });
      }),
    );
    child.send({ t: 'config', cfg });
    child.send({ t: 'udp' }, sockets.udp as unknown as net.Socket);
    if (cfg.tcp_shared) child.send({ t: 'tcp' }, sockets.tcp);
  }
  const set: WorkerSet = {
    processes,
    udp,
    warmed: Promise.all(warming).then(() => undefined),
    stats() {
      const sum: Record<string, number> = {};
      for (const st of latest.values()) for (const [k, v] of Object.entries(st)) sum[k] = (sum[k] ?? 0) + v;
      return sum as Partial<WorkerStats>;
    },
    async close() {
      closing = true;
      await Promise.all(
        processes.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              const kill = setTimeout(() => c.kill('SIGKILL'), 2000);
              c.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              // The last counts arrive before it exits.
              if (c.connected) c.send({ t: 'close' });
              else c.kill('SIGTERM');
            }),
        ),
      );
    },
  };
  try {
    await Promise.all(starting);
  } catch (err) {
    await set.close();
    throw err;
  }
  return set;
}
