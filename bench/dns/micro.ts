// The answer path alone, in one process, without sockets: queries/s of what the server does for a
// UDP datagram (response cache, else decode, lookup, rate limiter, online signing, encode, then
// cache the answer) on pre-built query buffers, per workload, as queries per CPU-second of this
// process (and per second of wall time). Much less sensitive to a loaded
// machine than dnsperf (no scheduling between two processes, no kernel path).
//   npx tsx bench/dns/micro.ts DATA_DIR [seconds per workload]          (data: bench/dns/prepare.ts)
//   BENCH_QUICK=0 takes dns-packet's decoder and encoder for every query (the path before the quick one).
//   BENCH_PROFILE=DIR npx tsx bench/dns/micro.ts DATA_DIR 5 random,case   (a CPU profile of each
//   workload's timed loop only, DIR/<workload>.cpuprofile; bench/dns/hot.ts lists its hot functions)
//   BENCH_ALLOC=1: bytes allocated per query instead of speed (V8's sampling heap profiler over the
//   timed loop, every 256 bytes, objects a GC collected included), and the functions that allocate
//   most (self); the figures include this loop's own (the batch array, a closure and a promise per query).
// Queries carry EDNS0 with the DO bit, as dnsperf -D sends them.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import dnsPacket from 'dns-packet';
import { join } from 'node:path';
import { DB_FILE } from '../../src/core/store/index.ts';
import { readOnlyStore } from '../../src/domains/dns-authority/read-only-store.ts';
import { ZoneView } from '../../src/domains/dns-authority/zone-view.ts';
import { udpAnswerer } from '../../src/domains/dns-authority/server.ts';
import { handleMessage } from '../../src/domains/dns-authority/responder.ts';
import { onlineSigner } from '../../src/domains/dnssec/online.ts';
import { ResponseRateLimiter } from '../../src/domains/dns-authority/rrl.ts';
import { ResponseCache } from '../../src/domains/dns-authority/response-cache.ts';

const dir = process.argv[2]!;
const SECONDS = Number(process.argv[3] ?? 3);
const only = process.argv[4]?.split(',');
// Read-only, as a DNS worker reads it: the directory may be in use.
const store = readOnlyStore(join(dir, DB_FILE));
const zones = (await store.all<{ name: string }>("SELECT name FROM zones WHERE name LIKE 'imvu%' ORDER BY name")).map((r) => r.name);
const view = await ZoneView.open(store, { refreshMs: 200 });
const signer = onlineSigner(store, dir, process.env.BENCH_DENIAL === 'compact' ? { denial: 'compact' } : {});
// Every zone compiled and its key read, as the server's warm-up does.
for (const name of view.zoneNames()) {
  const z = await view.zone(view.enclosing(name)!);
  if (z) await signer.keys.forZone(z.name, z.serial);
}

const pick = <T>(a: readonly T[]) => a[Math.floor(Math.random() * a.length)]!;
const existing = (z: string): [string, string][] => [[z, 'A'], [z, 'MX'], [z, 'TXT'], [z, 'NS'], [`mail.${z}`, 'A'], [`_dmarc.${z}`, 'TXT'], [`nexus1._domainkey.${z}`, 'TXT'], [`mail.${z}`, 'AAAA']];
const all = zones.flatMap(existing);
const hot = zones.slice(0, 20).flatMap((z) => [[`www.${z}`, 'A'], [`www.${z}`, 'AAAA'], [z, 'MX'], [z, 'TXT'], [`shop.${z}`, 'A'], [`_sip._tcp.${z}`, 'SRV'], [`nope.${z}`, 'A'], [`www.${z}`, 'TXT']] as [string, string][]);
const randomName = (): [string, string] => [`${randomBytes(6).toString('hex')}.${pick(zones)}`, Math.random() < 0.5 ? 'A' : 'AAAA'];
const randomCase = ([n, t]: [string, string]): [string, string] => [[...n].map((c) => (Math.random() < 0.5 ? c.toUpperCase() : c)).join(''), t];
const query = ([name, type]: [string, string], id: number) =>
  dnsPacket.encode({
    type: 'query',
    id,
    flags: 0,
    questions: [{ name, type: type as 'A' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: dnsPacket.DNSSEC_OK } as dnsPacket.Answer],
  });
const N = 200_000;
const workloads: Record<string, () => [string, string]> = {
  hot: () => pick(hot),
  mix: () => (Math.random() < 0.5 ? pick(all) : randomName()),
  random: randomName,
  case: () => randomCase(pick(all)),
};

// As the server runs it: the response cache, and a rate limiter (that never limits) asked per answer.
// BENCH_QUICK=0: every query through dns-packet's decoder and encoder, as before the quick path.
const quick = process.env.BENCH_QUICK !== '0';
const answer = udpAnswerer({ view, respond: (msg, t, ctx) => handleMessage(view, msg, t, { dnssec: signer, quick, peer: ctx.peer, admit: ctx.admit }), cache: new ResponseCache(view), limiter: new ResponseRateLimiter({ responsesPerSecond: 1e9, slip: 0 }) });
// Warm, as a server that has run a while is: every existing question answered once (its
// signatures made, its answer in the response cache), as dnsperf's warm-up does in run.ts.
for (const [i, q] of [...all, ...hot].entries()) await answer(query(q, i & 0xffff), '192.0.2.1', () => undefined);
const results: Record<string, number> = {};
for (const [w, gen] of Object.entries(workloads)) {
  if (only && !only.includes(w)) continue;
  const qs = Array.from({ length: N }, (_, i) => query(gen(), i & 0xffff));
  let n = 0;
  let bytes = 0;
  // One function for every answer, as the server's (no closure per query).
  const count = (out: Buffer) => void (bytes += out.length);
  const alloc = process.env.BENCH_ALLOC === '1';
  const session = process.env.BENCH_PROFILE || alloc ? new Session() : undefined;
  if (session) {
    session.connect();
    if (alloc) {
      await session.post('HeapProfiler.enable');
      await session.post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    } else {
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
    }
  }
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const deadline = t0 + SECONDS * 1000;
  // Batches of 256 in flight, as dnsperf keeps outstanding.
  while (performance.now() < deadline) {
    const batch: Promise<unknown>[] = [];
    for (let k = 0; k < 256; k++) {
      const r = answer(qs[n++ % N]!, '192.0.2.1', count);
      if (r) batch.push(r);
    }
    await Promise.all(batch);
  }
  const s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  if (session && alloc) {
    const { profile } = await session.post('HeapProfiler.stopSampling');
    session.disconnect();
    const self = new Map<string, number>();
    let total = 0;
    const walk = (node: typeof profile.head) => {
      const f = node.callFrame;
      const k = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${f.lineNumber + 1}`;
      self.set(k, (self.get(k) ?? 0) + node.selfSize);
      total += node.selfSize;
      for (const c of node.children) walk(c);
    };
    walk(profile.head);
    console.log(`${w}: ${(total / n).toFixed(0)} bytes allocated per query (${n} queries), load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    for (const [k, b] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${(b / n).toFixed(0).padStart(6)} B  ${k}`);
    continue;
  }
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(process.env.BENCH_PROFILE!, `${w}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
  const cpu = (c.user + c.system) / 1e6;
  // Per CPU-second of this process: what a core would answer if it had it alone.
  results[w] = n / cpu;
  console.log(`${w}: ${Math.round(n / cpu).toLocaleString('en-US')} q per CPU-second, ${Math.round(n / s).toLocaleString('en-US')} q/s wall (${n} queries, ${(bytes / n).toFixed(0)} bytes avg), signatures ${signer.stats.signatures}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
}
console.log(JSON.stringify(results));
view.close();
await store.close();
