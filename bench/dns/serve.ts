// Our server alone, on the benchmark's data directory, as its own process (so its CPU time and
// memory are its own, as NSD's and Knot's are): what run.ts starts, and what to profile:
//   npx tsx bench/dns/serve.ts DATA_DIR [PORT] [PROCESSES]
//   node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/dns/serve.ts DATA_DIR PORT   (then dnsperf; SIGINT writes the profile)
// PROCESSES (default 1): the primary and PROCESSES - 1 worker processes on the same sockets.
// BENCH_RRL=1 turns response rate limiting on (the defaults), as a deployment has it.
// The database is opened read-only, as a worker opens it: the bench process keeps it open too.
// Prints one JSON line {"port", "pid"} once every zone is compiled and its key read, and the
// server's statistics as a JSON line when stopped (SIGINT or SIGTERM).
import { join } from 'node:path';
import { DB_FILE } from '../../src/core/store/index.ts';
import { startDnsServer } from '../../src/domains/dns-authority/index.ts';
import { readOnlyStore } from '../../src/domains/dns-authority/read-only-store.ts';
import { onlineSigner } from '../../src/domains/dnssec/online.ts';

const dir = process.argv[2]!;
const processes = Number(process.argv[4] ?? 1);
const store = readOnlyStore(join(dir, DB_FILE));
const server = await startDnsServer({
  store,
  rrl: process.env.BENCH_RRL === '1' ? undefined : false,
  // BENCH_DENIAL=compact: compact denial (RFC 9824) instead of the zone's NSEC chain (the default).
  dnssec: onlineSigner(store, dir, process.env.BENCH_DENIAL === 'compact' ? { denial: 'compact' } : {}),
  port: Number(process.argv[3] ?? 0),
  workers: processes > 1 ? { count: processes - 1, dataDir: dir } : undefined,
  // BENCH_UDP=dgram: Node's dgram, one datagram per system call (the path before batched UDP).
  udpBatch: process.env.BENCH_UDP !== 'dgram',
  // BENCH_CACHE=N: the response cache's entries per process (0: no cache); unset, the default.
  ...(process.env.BENCH_CACHE !== undefined ? { responseCache: Number(process.env.BENCH_CACHE) > 0 ? { maxEntries: Number(process.env.BENCH_CACHE) } : false } : {}),
});
await server.warmed;
console.log(JSON.stringify({ port: server.port, pid: process.pid, udp: server.udp }));
const stop = () =>
  void server
    .close()
    .then(() => console.log(JSON.stringify({ stats: server.stats() })))
    .then(() => store.close())
    .then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
