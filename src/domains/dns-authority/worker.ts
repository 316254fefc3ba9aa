// A DNS worker process (workers.ts): answers on the primary's sockets from its own read-only
// connection to the database and its own zone view. Started by `startWorkers`, never by hand.
import type dgram from 'node:dgram';
import type net from 'node:net';
import { readOnlyStore } from './read-only-store.ts';
import { onlineSigner } from '../dnssec/online.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { REPORT_MS, type WorkerConfig, type WorkerMessage } from './workers.ts';

const send = (m: WorkerMessage) => {
  if (process.connected) process.send!(m);
};

let cfg: WorkerConfig | undefined;
let udp: dgram.Socket | undefined;
let tcp: net.Server | undefined;
let server: DnsServer | undefined;
let started = false;
const counts = new Map<string, [string, string, number]>();

const report = () => {
  if (counts.size > 0) {
    send({ t: 'meter', counts: [...counts.values()] });
    counts.clear();
  }
  if (server) send({ t: 'stats', stats: server.stats() });
};

async function start(): Promise<void> {
  const c = cfg!;
  const store = readOnlyStore(c.dbPath);
  server = await startDnsServer({
    store,
    address: c.address,
    sockets: { udp: udp!, tcp: c.tcp_shared ? tcp : undefined },
    rrl: c.rrl,
    tcp: c.tcp,
    cookies: c.cookies === false ? false : { secret: Buffer.from(c.cookies.secret), ...(c.cookies.previous ? { previous: Buffer.from(c.cookies.previous) } : {}) },
    ...(c.dataDir ? { dnssec: onlineSigner(store, c.dataDir, c.denial ? { denial: c.denial } : {}) } : {}),
    refreshMs: c.refreshMs,
    maxUdpInFlight: c.maxUdpInFlight,
    udpBatch: c.udpBatch,
    responseCache: c.responseCache,
    onQuery: (zone, imvu) => {
      const k = `${zone}\t${imvu}`;
      const e = counts.get(k);
      if (e) e[2]++;
      else counts.set(k, [zone, imvu, 1]);
    },
    onError: (err) => send({ t: 'error', message: err instanceof Error ? err.message : String(err) }),
  });
  setInterval(report, REPORT_MS).unref();
  send({ t: 'ready', udp: server.udp });
  void server.warmed.then(() => send({ t: 'warmed' }));
}

process.on('message', (m: { t: string; cfg?: WorkerConfig }, handle?: unknown) => {
  if (m.t === 'config') cfg = m.cfg;
  else if (m.t === 'udp') udp = handle as dgram.Socket;
  else if (m.t === 'tcp') tcp = handle as net.Server;
  else if (m.t === 'close') {
    void (async () => {
      await server?.close();
      report();
      // Exits once the last counts are written to the channel.
      process.send!({ t: 'stats', stats: server?.stats() ?? {} } as WorkerMessage, () => process.exit(0));
    })();
    return;
  }
  if (!started && cfg && udp && (tcp || !cfg.tcp_shared)) {
    started = true;
    start().catch((err: unknown) => {
      send({ t: 'error', message: err instanceof Error ? err.message : String(err) });
      process.exit(1);
    });
  }
});
// The primary is gone: so is the reason to answer.
process.on('disconnect', () => process.exit(0));
