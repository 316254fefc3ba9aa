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
import type { LedgerEntry } from '../../core/types.ts';

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

export interface ImvuLimits {
  requestsPerCoreS: number;
  connectionsPerCore: number;
}

/** One IMVU's share of the table: its entry and its lines of each map, in its own order. */
export interface ImvuPart {
  imvu: TableImvu;
  maps: Record<MapName, [string, string][]>;
}

const DEFAULT_LIMITS: ImvuLimits = { requestsPerCoreS: IMVU_REQUESTS_PER_CORE_S, connectionsPerCore: IMVU_CONNECTIONS_PER_CORE };

/** IMVU ids per `IN (...)` list (SQLite binds at most 32,766 parameters; smaller lists keep each statement short). */
const IN_CHUNK = 500;

type TableRow = { id: string; seq: number; stage_domain: string; jurisdiction: string; cpu_cores: number | null; policy: string | null };
const TABLE_SQL =
  "SELECT i.id, i.seq, i.stage_domain, i.jurisdiction, e.cpu_cores, r.policy FROM imvus i LEFT JOIN routes r ON r.imvu = i.id LEFT JOIN envelopes e ON e.imvu = i.id WHERE i.status IN ('active', 'exiting')";

/**
 * Every active IMVU's part (`only` undefined), or those of the IMVUs in `only` that are active (an
 * id missing from the answer is not served): in seq order. Reading some costs what they hold, by
 * the primary keys and `domains_imvu`.
 */
export async function loadParts(db: SqlReader, range?: string, region?: string, limits: ImvuLimits = DEFAULT_LIMITS, only?: readonly string[]): Promise<Map<string, ImvuPart>> {
  const rows: TableRow[] = [];
  const domainsOf = new Map<string, string[]>();
  const addDomain = (d: { name: string; imvu: string }) => {
    const names = domainsOf.get(d.imvu);
    if (names) names.push(d.name);
    else domainsOf.set(d.imvu, [d.name]);
  };
  if (only === undefined) {
    rows.push(...(await db.all<TableRow>(`${TABLE_SQL} ORDER BY i.seq`)));
    // Grouped once: a filter of every domain per IMVU was quadratic (10^10 comparisons at 100,000 IMVUs).
    for (const d of await db.all<{ name: string; imvu: string }>('SELECT name, imvu FROM domains ORDER BY name')) addDomain(d);
  } else {
    for (let i = 0; i < only.length; i += IN_CHUNK) {
      const ids = only.slice(i, i + IN_CHUNK);
      const marks = ids.map(() => '?').join(',');
      rows.push(...(await db.all<TableRow>(`${TABLE_SQL} AND i.id IN (${marks})`, ids)));
      for (const d of await db.all<{ name: string; imvu: string }>(`SELECT name, imvu FROM domains WHERE imvu IN (${marks}) ORDER BY name`, ids)) addDomain(d);
    }
    rows.sort((a, b) => a.seq - b.seq);
  }
  const parts = new Map<string, ImvuPart>();
  for (const row of rows) parts.set(row.id, imvuPart(row, domainsOf.get(row.id) ?? [], range, region, limits));
  return parts;
}

function imvuPart(row: TableRow, domains: readonly string[], range: string | undefined, region: string | undefined, limits: ImvuLimits): ImvuPart {
  const address = workloadNet(row.seq, range).workloadAddress;
  if (seqOfAddress(address, range) !== row.seq) throw new Error(`${row.id}: workload address ${address} is not its own`);
  const hosts = [...new Set([...domains, row.stage_domain].map((h) => h.toLowerCase()))].sort();
  const maps: ImvuPart['maps'] = { hosts: [], exact: [], prefix: [], roles: [], imvus: [], allow: [] };
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
      if (r.path.endsWith('*')) maps.prefix.push([`${row.id}${r.path.slice(0, -1)}`, value]);
      else maps.exact.push([`${row.id}${r.path}`, value]);
      for (const role of r.require_roles ?? []) maps.roles.push([`${row.id}.${n}:${role}`, '1']);
    }
  }
  return { imvu: { id: row.id, seq: row.seq, address, hosts, jurisdiction: row.jurisdiction }, maps };
}

/** The highest sequence number any IMVU has had (whatever its status): the next `imvu.create` gives the one after. */
export async function lastImvuSeq(db: SqlReader): Promise<number> {
  return (await db.get<{ n: number | null }>('SELECT MAX(seq) AS n FROM imvus'))?.n ?? 0;
}

/** The whole table from every IMVU's part (in seq order). */
export function assembleTable(parts: Iterable<ImvuPart>): GatewayTable {
  const imvus: TableImvu[] = [];
  const maps: GatewayTable['maps'] = { hosts: [], exact: [], prefix: [], roles: [], imvus: [], allow: [] };
  for (const p of parts) {
    imvus.push(p.imvu);
    for (const m of MAP_NAMES) for (const line of p.maps[m]) maps[m].push(line);
  }
  // Kept sorted so that the files read the same whatever the order parts changed in; HAProxy's
  // map_beg is a prefix tree (the longest prefix wins whatever the order of the lines).
  maps.allow.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  maps.prefix.sort((a, b) => b[0].length - a[0].length || (a[0] < b[0] ? -1 : 1));
  return { imvus, maps };
}

/**
 * The table for every active IMVU. Throws if an address it derives is not that IMVU's own
 * workload address: rendering re-checks what gate 8 checked, so a projection edited behind the
 * chokepoint still cannot point a route elsewhere.
 */
export async function loadTable(db: SqlReader, range?: string, region?: string, limits: ImvuLimits = DEFAULT_LIMITS): Promise<GatewayTable> {
  return assembleTable((await loadParts(db, range, region, limits)).values());
}

/** Allowed commands that name no IMVU and change no IMVU's rows (nor the table). */
const PLATFORM_ONLY: ReadonlySet<string> = new Set([
  'identity.register', 'identity.rotate', 'identity.revoke', 'pricebook.publish', 'noise.summary', 'meter.register',
  'capacity.publish', 'plan.publish', 'quota.approve', 'period.close', 'integrity.alarm', 'ledger.snapshot',
]);
/** Allowed commands that name an IMVU but never change its imvus, routes, envelopes or domains rows. */
const TABLE_NEUTRAL: ReadonlySet<string> = new Set([
  'consent.record', 'usage.report', 'revenue.record', 'notify.creator', 'member.add', 'mailbox.add', 'mailbox.remove',
  'dns.record.add', 'dns.record.remove', 'domain.claim', 'domain.verify', 'dkim.publish', 'dkim.activate', 'dkim.remove',
  'dkim.rotate', 'dnssec.publish', 'dnssec.activate', 'dnssec.remove', 'dnssec.resign', 'gateway.refusals', 'mail.refusals',
  'certificate.issued',
]);

/**
 * The IMVUs whose rows of the table's sources the ledger entries `data` (consecutive, from the
 * log) may have changed; undefined when one of them could have changed anything (an entry that
 * names no IMVU and is not known to change none). `createdAt(index)`: the id of the IMVU an
 * `imvu.create` at that index made.
 */
export async function touchedImvus(entries: Iterable<LedgerEntry>, createdAt: (index: number) => Promise<string | undefined>): Promise<Set<string> | undefined> {
  const touched = new Set<string>();
  for (const e of entries) {
    if (!e.decision?.allowed) continue; // a refusal changes nothing
    const cmd = e.command?.command;
    if (!cmd) return undefined;
    const b = (cmd.body ?? {}) as Record<string, unknown>;
    if (PLATFORM_ONLY.has(cmd.type)) continue;
    if (cmd.type === 'imvu.create') {
      const id = await createdAt(e.index);
      if (id === undefined) return undefined;
      touched.add(id);
    } else if (cmd.type === 'imvu.import' && typeof b.id === 'string') touched.add(b.id);
    else if (typeof b.imvu === 'string') {
      if (!TABLE_NEUTRAL.has(cmd.type)) touched.add(b.imvu);
    } else return undefined;
  }
  return touched;
}

/** Per map, how one IMVU's lines change: keys to delete, keys whose value changes, lines to add. */
export interface MapDelta {
  del: string[];
  set: [string, string][];
  add: [string, string][];
}

/**
 * The runtime API commands that turn `before`'s lines of one map into `after`'s. Keys are unique
 * within an IMVU's lines of a map (gate 8: one route per path; hosts and ids by construction);
 * when they are not, every old key goes and every new line is added.
 */
export function mapDelta(before: readonly [string, string][], after: readonly [string, string][]): MapDelta {
  const b = new Map(before);
  const a = new Map(after);
  if (b.size !== before.length || a.size !== after.length) return { del: [...b.keys()], set: [], add: [...after] };
  const out: MapDelta = { del: [], set: [], add: [] };
  for (const k of b.keys()) if (!a.has(k)) out.del.push(k);
  for (const [k, v] of a) {
    const old = b.get(k);
    if (old === undefined) out.add.push([k, v]);
    else if (old !== v) out.set.push([k, v]);
  }
  return out;
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
