// Cache or not? Measures, in one process and without sockets, what answering costs when the
// server compiles each zone in memory (keyed by zones.serial, what src/domains/dns-authority does)
// against reading the projections per query with prepared statements (the alternative). Also the
// whole message path (decode, lookup, encode) per query. Not a timed test; run:
//   npx tsx bench/dns/zone-view.ts [zones]
import { performance } from 'node:perf_hooks';
import { testPlatform } from '../../src/core/testing.ts';
import type { Store } from '../../src/core/store/index.ts';
import { handleMessage } from '../../src/domains/dns-authority/responder.ts';
import { ZoneView } from '../../src/domains/dns-authority/zone-view.ts';
import { query } from '../../src/domains/dns-authority/testing.ts';

const ZONES = Number(process.argv[2] ?? 50);

/** The reads a per-query design needs for one question (zone by suffix, cut, node, wildcard). */
async function sqlLookup(store: Store, qname: string, qtype: string): Promise<number> {
  let zone: string | undefined;
  for (let n = qname; ; ) {
    const row = await store.get<{ name: string }>('SELECT name, imvu, serial FROM zones WHERE name = ?', [n]);
    if (row) {
      zone = row.name;
      break;
    }
    const dot = n.indexOf('.');
    if (dot < 0) return 0;
    n = n.slice(dot + 1);
  }
  await store.all("SELECT name FROM records WHERE zone = ? AND type = 'NS' AND name <> ?", [zone, zone]);
  const rows = await store.all('SELECT type, value, ttl FROM records WHERE zone = ? AND name = ?', [zone, qname]);
  if (rows.length > 0) return rows.filter((r) => r.type === qtype || r.type === 'CNAME').length;
  // Does the name exist as an empty non-terminal? Else the wildcard at the closest encloser.
  const below = await store.get("SELECT 1 AS x FROM records WHERE zone = ? AND name LIKE ? LIMIT 1", [zone, `%.${qname}`]);
  if (below) return 0;
  const parent = qname.slice(qname.indexOf('.') + 1);
  return (await store.all('SELECT type, value, ttl FROM records WHERE zone = ? AND name = ?', [zone, `*.${parent}`])).length;
}

async function rate(label: string, n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(n, 2000); i++) await fn(i); // warm up
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  const perSec = n / ((performance.now() - t0) / 1000);
  console.log(`${label.padEnd(58)} ${Math.round(perSec).toLocaleString('en-US').padStart(10)} /s  (${(1e6 / perSec).toFixed(2)} µs each)`);
  return perSec;
}

const p = await testPlatform();
const alice = await p.register('alice', 'creator');
for (let i = 0; i < ZONES; i++) await p.as(alice, 'imvu.create', { name: `Z${i}`, owner: alice.id, jurisdiction: 'US-CCPA' });
for (let i = 0; i < 20; i++) await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: `h${i}`, type: 'A', value: `192.0.2.${i + 1}` });
await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: '*.w', type: 'A', value: '192.0.2.200' });

const names: [string, string][] = [];
for (let i = 0; i < 1000; i++) {
  const z = `imvu${String((i % ZONES) + 1).padStart(3, '0')}.world`;
  names.push(i % 4 === 0 ? [`nope${i}.${z}`, 'A'] : i % 4 === 1 ? [z, 'MX'] : i % 4 === 2 ? [`h${i % 20}.imvu001.world`, 'A'] : [`x${i}.w.imvu001.world`, 'A']);
}
const view = await ZoneView.open(p.store);
const packets = names.map(([n, t]) => query(n, t, { edns: 1232 }));
console.log(`${ZONES} zones, ${(await p.store.get<{ n: number }>('SELECT COUNT(*) AS n FROM records'))!.n} records; a mix of answers, NXDOMAIN, MX and wildcards`);
const sql = await rate('lookup: SQL per query (prepared statements)', 50_000, (i) => sqlLookup(p.store, names[i % 1000]![0], names[i % 1000]![1]));
const cached = await rate('lookup: compiled zone, current serial', 500_000, async (i) => {
  const [n, t] = names[i % 1000]!;
  const info = view.enclosing(n)!;
  const z = await view.zone(info);
  return z!.lookup(n, n, t);
});
console.log(`  → the compiled zone answers ${(cached / sql).toFixed(0)}× faster than querying per request`);
await rate('message: decode + lookup + encode (handleMessage, UDP)', 200_000, (i) => handleMessage(view, packets[i % 1000]!, 'udp'));
const t0 = performance.now();
await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'fresh', type: 'A', value: '192.0.2.250' });
await view.refresh();
await view.zone(view.enclosing('imvu001.world')!);
console.log(`commit + refresh + recompile of imvu001.world: ${(performance.now() - t0).toFixed(1)} ms (the poll adds ≤ 200 ms)`);
view.close();
await p.cleanup();
