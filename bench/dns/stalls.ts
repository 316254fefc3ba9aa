// Where the event loop stalls, in every process of our server (the primary and its workers, which
// inherit NODE_OPTIONS): per 100 ms, the largest event-loop delay when over 2 ms, and every GC
// pause over 1 ms, one line each with the wall-clock time in ms and the pid, appended to
// STALLS_FILE (default /tmp/nexus-dns-stalls.log), to lay beside dnsperf's runs.
//   NODE_OPTIONS="--import tsx --import ./bench/dns/stalls.ts" npx tsx bench/dns/serve.ts DATA_DIR 0 2
import { monitorEventLoopDelay, PerformanceObserver, performance } from 'node:perf_hooks';
import { appendFileSync } from 'node:fs';

const out = process.env.STALLS_FILE ?? '/tmp/nexus-dns-stalls.log';
const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
setInterval(() => {
  const max = delay.max / 1e6;
  if (max > 2) appendFileSync(out, `${Date.now()} ${process.pid} loop max=${max.toFixed(1)}ms p99=${(delay.percentile(99) / 1e6).toFixed(1)}ms\n`);
  delay.reset();
}, 100).unref();
const kinds: Record<number, string> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0;
    if (e.duration > 1) appendFileSync(out, `${Math.round(performance.timeOrigin + e.startTime)} ${process.pid} gc ${kinds[kind] ?? kind} ${e.duration.toFixed(1)}ms\n`);
  }
}).observe({ entryTypes: ['gc'] });
