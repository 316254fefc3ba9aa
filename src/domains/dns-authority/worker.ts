// A DNS worker process (workers.ts): answers on the primary's sockets from its own read-only
// connection to the database and its own zone view. Started by `startWorkers`, never by hand.
import Database from 'better-sqlite3';
import type dgram from 'node:dgram';
import type net from 'node:net';
import type { Row, SqlValue, Store } from '../../core/store/index.ts';
import { onlineSigner } from '../dnssec/online.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { REPORT_MS, type WorkerConfig, type WorkerMessage } from './workers.ts';

/** The reads a zone view and a keyring make, over a read-only connection; anything else throws. */
function readOnlyStore(path: string): Store {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  const statements = new Map<string, Database.Statement>();
  const st = (sql: string) => {
    let s = statements.get(sql);
    if (!s) statements.set(sql, (s = db.prepare(sql)));
    return s;
  };
  const store = {
    kind: 'sqlite',
    path,
    get: async <T extends Row>(sql: string, params: SqlValue[] = []) => st(sql).get(...params) as T | undefined,
    all: async <T extends Row>(sql: string, params: SqlValue[] = []) => st(sql).all(...params) as T[],
    ledgerSize: async () => (st('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM ledger_entries').get() as { n: number }).n,
    readEntries: async (from: number, to: number) =>
      (st('SELECT data FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx').all(from, to) as { data: Buffer }[]).map((r) => r.data),
    close: async () => void db.close(),
  };
  // Writes have no place in a worker: the proxy makes any other method an error, not a silent no-op.
  return new Proxy(store, {
    get(target, prop) {
      if (prop in target) return target[prop as keyof typeof target];
      if (typeof prop === 'symbol' || prop === 'then') return undefined;
      return () => {
        throw new Error(`a DNS worker's store is read-only (${prop})`);
      };
    },
  }) as unknown as Store;
}

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
    ...(c.dataDir ? { dnssec: onlineSigner(store, c.dataDir) } : {}),
    refreshMs: c.refreshMs,
    maxUdpInFlight: c.maxUdpInFlight,
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
  send({ t: 'ready' });
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
