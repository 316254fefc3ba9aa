// The route table the gateway must serve, derived from the ledger's projections alone (imvus,
// domains, routes): which Host belongs to which IMVU, and which path of an IMVU goes to which
// port of its workload with which class and rate. Rendered as HAProxy map files and compared,
// entry by entry, with what HAProxy reports it serves (src/network/gateway/gateway.ts).
import type { SqlReader } from '../../core/store/store.ts';
import { workloadNet, seqOfAddress } from '../../compute/fabric/addresses.ts';
import { ROUTE_CLASSES, RATE_WINDOW_S, parseBackend, ratePerWindow, type Policy } from '../routes/policy.ts';
import { canonicalPrefix } from '../routes/allow.ts';
import { regionPermits } from './geo.ts';
import { DEFAULT_ENVELOPE } from '../../core/policy/commands.ts';

/**
 * Per-IMVU traffic limits follow its envelope (threat 3.1): requests per second and concurrent
 * connections per CPU core, so an IMVU that pays for more compute may take more traffic and one
 * flooding IMVU is refused long before it starves the others.
 */
export const IMVU_REQUESTS_PER_CORE_S = 500;
export const IMVU_CONNECTIONS_PER_CORE = 128;

export interface TableImvu {
  id: string;
  seq: number;
  /** The workload address every route of this IMVU goes to (its /30's .2). */
  address: string;
  /** Names the IMVU answers for (primary, stage and verified custom domains), lower case. */
  hosts: string[];
  jurisdiction: string;
}

export interface GatewayTable {
  imvus: TableImvu[];
  /** Map files: name -> ordered [key, value] lines. */
  maps: Record<MapName, [string, string][]>;
}

export const MAP_NAMES = ['hosts', 'exact', 'prefix', 'roles', 'imvus', 'allow'] as const;
export type MapName = (typeof MAP_NAMES)[number];

/** The IMVU's own bounds, from its envelope and the node's per-core limits: requests per window, concurrent connections. */
export interface ImvuBounds {
  requests: number;
  connections: number;
}

/**
 * Route map value: class|port|requests per window|route id (`IMVU.n`)|1 when it has an allow-list
 * |the IMVU's requests per window|the IMVU's connections. The route id and the IMVU's bounds are
 * in the value so that a public request reads everything from the one lookup of its route instead
 * of building the id and looking the IMVU up (bench/gateway/cpu.ts).
 */
export function routeValue(cls: string, port: number, limit: number, rid: string, allowList: boolean, imvu: ImvuBounds): string {
  return `${cls}|${port}|${limit}|${rid}|${allowList ? 1 : 0}|${imvu.requests}|${imvu.connections}`;
}

/**
 * The part of a route value that follows from the IMVU's ledger entries alone: the IMVU's bounds
 * (fields 6 and 7) also depend on the serving node's per-core limits.
 */
export function routeValueOfLedger(value: string): string {
  return value.split('|').slice(0, 5).join('|');
}

/**
 * IMVU map value: serve|jurisdiction|areas, for the region check of gated routes. `serve` is 1 when
 * this gateway's region may serve the IMVU's private and restricted routes; `areas` are the ones
 * that may (`*`: any). The IMVU's rate and connection bounds are in each of its route values.
 */
export function imvuValue(serve: boolean, jurisdiction: string, areas: readonly string[]): string {
  return `${serve ? 1 : 0}|${jurisdiction}|${areas.length ? areas.join(',') : '*'}`;
}

/**
 * The table for every active IMVU. Throws if an address it derives is not that IMVU's own
 * workload address: rendering re-checks what gate 8 checked, so a projection edited behind the
 * chokepoint still cannot point a route elsewhere.
 */
export interface ImvuLimits {
  requestsPerCoreS: number;
  connectionsPerCore: number;
}

export async function loadTable(db: SqlReader, range?: string, region?: string, limits: ImvuLimits = { requestsPerCoreS: IMVU_REQUESTS_PER_CORE_S, connectionsPerCore: IMVU_CONNECTIONS_PER_CORE }): Promise<GatewayTable> {
  const rows = await db.all<{ id: string; seq: number; stage_domain: string; jurisdiction: string; cpu_cores: number | null; policy: string | null }>(
    "SELECT i.id, i.seq, i.stage_domain, i.jurisdiction, e.cpu_cores, r.policy FROM imvus i LEFT JOIN routes r ON r.imvu = i.id LEFT JOIN envelopes e ON e.imvu = i.id WHERE i.status IN ('active', 'exiting') ORDER BY i.seq",
  );
  const domains = await db.all<{ name: string; imvu: string }>('SELECT name, imvu FROM domains ORDER BY name');
  // Grouped once: a filter of every domain per IMVU was quadratic (10^10 comparisons at 100,000 IMVUs).
  const domainsOf = new Map<string, string[]>();
  for (const d of domains) {
    const names = domainsOf.get(d.imvu);
    if (names) names.push(d.name);
    else domainsOf.set(d.imvu, [d.name]);
  }
  const imvus: TableImvu[] = [];
  const maps: GatewayTable['maps'] = { hosts: [], exact: [], prefix: [], roles: [], imvus: [], allow: [] };
  const prefix: [string, string][] = [];
  for (const row of rows) {
    const address = workloadNet(row.seq, range).workloadAddress;
    if (seqOfAddress(address, range) !== row.seq) throw new Error(`${row.id}: workload address ${address} is not its own`);
    const hosts = [...new Set([...(domainsOf.get(row.id) ?? []), row.stage_domain].map((h) => h.toLowerCase()))].sort();
    imvus.push({ id: row.id, seq: row.seq, address, hosts, jurisdiction: row.jurisdiction });
    for (const h of hosts) maps.hosts.push([h, row.id]);
    const cores = Math.max(1, row.cpu_cores ?? DEFAULT_ENVELOPE.cpu_cores);
    const geo = regionPermits(row.jurisdiction, region);
    const bounds: ImvuBounds = { requests: cores * limits.requestsPerCoreS * RATE_WINDOW_S, connections: cores * limits.connectionsPerCore };
    maps.imvus.push([row.id, imvuValue(geo.ok, row.jurisdiction, geo.areas)]);
    const policy = row.policy ? (JSON.parse(row.policy) as Policy) : { public: [], private: [], restricted: [] };
    let n = 0;
    for (const cls of ROUTE_CLASSES) {
      for (const r of policy[cls] ?? []) {
        n++;
        const b = parseBackend(r.backend);
        // A backend gate 8 would refuse is never served (a row written behind the chokepoint).
        if ('error' in b) continue;
        const allow = [...new Set((r.ip_whitelist ?? []).map(canonicalPrefix))];
        // An entry gate 8 would refuse admits nobody (never everybody).
        const value = routeValue(cls, b.port, ratePerWindow(r.rate_limit), `${row.id}.${n}`, allow.length > 0, bounds);
        for (const a of allow) if (a) maps.allow.push([`${a}@${row.id}.${n}`, '1']);
        if (r.path.endsWith('*')) prefix.push([`${row.id}${r.path.slice(0, -1)}`, value]);
        else maps.exact.push([`${row.id}${r.path}`, value]);
        for (const role of r.require_roles ?? []) maps.roles.push([`${row.id}.${n}:${role}`, '1']);
      }
    }
  }
  // HAProxy's prefix maps answer with the first line that matches: longest prefix first.
  maps.allow.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  maps.prefix = prefix.sort((a, b) => b[0].length - a[0].length || (a[0] < b[0] ? -1 : 1));
  return { imvus, maps };
}

export function mapText(lines: [string, string][]): string {
  return lines.map(([k, v]) => `${k} ${v}\n`).join('');
}

/**
 * The maps that follow from an IMVU's own ledger entries alone: its hosts, routes (without the
 * node-dependent bounds, routeValueOfLedger), roles and allow-lists. (The `imvus` map also carries
 * the serving node's region and limits.)
 */
export const IMVU_ROUTE_MAPS = ['hosts', 'exact', 'prefix', 'roles', 'allow'] as const satisfies readonly MapName[];

/**
 * Whether a map line (key, value) is the IMVU's, by the id in its place followed by its separator
 * (a line of IMVU-1000 is not IMVU-100's).
 */
export function isImvuLine(m: MapName, id: string, k: string, v: string): boolean {
  switch (m) {
    case 'hosts':
      return v === id;
    case 'imvus':
      return k === id;
    case 'allow':
      return k.includes(`@${id}.`);
    case 'roles':
      return k.startsWith(`${id}.`);
    default:
      return k.startsWith(`${id}/`);
  }
}

/**
 * One IMVU's lines of those maps, `key value`, in map order: what `nexus audit watch` compares
 * between the table it derives from the verified entries and the one HAProxy reports it serves.
 * A host is the IMVU's by its value (a host pointed at another IMVU shows as missing here).
 */
export function imvuRouteLines(maps: Partial<Record<MapName, [string, string][]>>, id: string): Record<(typeof IMVU_ROUTE_MAPS)[number], string[]> {
  const mine = (m: MapName, k: string, v: string) => isImvuLine(m, id, k, v);
  const out = {} as Record<(typeof IMVU_ROUTE_MAPS)[number], string[]>;
  const value = (m: MapName, v: string) => (m === 'exact' || m === 'prefix' ? routeValueOfLedger(v) : v);
  for (const m of IMVU_ROUTE_MAPS) out[m] = (maps[m] ?? []).filter(([k, v]) => mine(m, k, v)).map(([k, v]) => `${k} ${value(m, v)}`);
  return out;
}
