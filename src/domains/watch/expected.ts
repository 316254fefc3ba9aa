// What the DNS server must serve for some IMVUs, computed from ledger entries alone: the entries are
// projected, with the platform's own projection code (`projectRecorded`, the chokepoint's writer),
// into a scratch in-memory store, and each zone is read back from it with the same functions the
// server compiles its zones with (`readZoneRows`, `servedRecords`, `Zone`). Nothing here decides:
// an entry says whether it was allowed, and the caller has checked the entries' bytes against the
// platform's signed checkpoint.
//
// A creator reads only the entries that concern its IMVUs (and the platform's public facts), so the
// scratch store lacks the other IMVUs. The one thing of theirs a zone depends on is the IMVU's
// number (`imvuNNN.<suffix>` is the next free one at creation): it is taken from the platform-signed
// provisioning entries that follow the creation (`dkim.publish`, `dnssec.publish`, which name the
// IMVU), and placeholder rows stand in for the IMVUs numbered before it.
import { projectRecorded } from '../../core/policy/chokepoint.ts';
import { absoluteName } from '../../core/policy/naming.ts';
import { SqliteStore } from '../../core/store/index.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { servedRecords, type ServedRR } from '../dns-authority/journal.ts';
import { Zone } from '../dns-authority/zone.ts';
import { lowerAscii } from '../records/rdata.ts';
import { SOA_TTL, synthesiseSoa } from '../records/soa.ts';
import { readZoneRows } from '../registry/zone.ts';
import { imvuRouteLines, loadTable } from '../../network/gateway/table.ts';

export interface DnskeyData {
  flags: number;
  algorithm: number;
  key: Buffer;
}

export interface ExpectedZone {
  zone: string;
  imvu: string;
  serial: number;
  /** The platform's suffix (the SOA's MNAME is `ns1.<suffix>`). */
  suffix: string;
  /** Every record the server must answer with, DNSSEC records aside: the SOA first, then the zone in canonical order. */
  records: ServedRR[];
  /** The zone compiled by the server's own answer code, to say what a query must get. */
  compiled: Zone;
  /** The DNSKEY RRset (every key of the zone, in ledger order); empty when the zone is unsigned. */
  dnskeys: DnskeyData[];
  /** Names the ledger ever mentioned in this zone (added, removed, or refused): probed when the zone cannot be transferred. */
  mentioned: string[];
}

export interface ExpectedImvu {
  id: string;
  owner: string;
  status: string;
  /** Ledger index of its creation. */
  entry: number;
  /** Its envelope as the entries leave it, and whether its workload is bursting (compute.burst raise not yet lowered). */
  envelope?: { cpu_cores: number; memory_gb: number; storage_gb: number; iops: number; burst_multiplier: number; burst_minutes: number };
  burst?: number;
  /** Its lines of the gateway's maps as the entries imply them (absent once it exited). */
  routes?: Record<string, string[]>;
}

export interface ExpectedState {
  imvus: ExpectedImvu[];
  zones: ExpectedZone[];
  /** What could not be derived from the entries (each one is reason enough not to trust the comparison). */
  problems: string[];
}

/** Which IMVUs: those of `people` (as owner or member), or the ones named. */
export type ExpectedSelection = { people: string[]; imvus?: undefined } | { imvus: string[]; people?: undefined };

const IMVU_ID = /^IMVU-(\d{3,9})$/;

/** The IMVU an allowed `imvu.create` made: named by the platform-signed provisioning entries right after it. */
function createdImvu(entries: readonly LedgerEntry[], at: number, platformId: string): string | undefined {
  for (let i = at + 1; i < entries.length && i <= at + 4; i++) {
    const e = entries[i]!;
    const c = e.command?.command;
    if (c?.actor !== platformId || !e.decision?.allowed) continue;
    if ((c.type === 'dkim.publish' || c.type === 'dnssec.publish') && typeof c.body.imvu === 'string' && IMVU_ID.test(c.body.imvu)) return c.body.imvu;
  }
  return undefined;
}

/**
 * The expected served zones of the selected IMVUs from `entries` (in index order; entries the
 * reader cannot see left out). Problems are listed, not thrown: the caller raises them.
 */
export async function expectedZones(entries: readonly LedgerEntry[], select: ExpectedSelection): Promise<ExpectedState> {
  const problems: string[] = [];
  const store = new SqliteStore(':memory:');
  try {
    const genesis = entries.find((e) => e.index === 0);
    const platformId = genesis?.command?.command?.type === 'platform.genesis' ? genesis.command.command.actor : undefined;
    if (!platformId) return { imvus: [], zones: [], problems: ['the ledger entries do not start with the platform genesis'] };
    await store.transaction(async (tx) => {
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        if (!e.decision?.allowed) continue;
        const type = e.command?.command?.type;
        let id: string | undefined;
        if (type === 'imvu.create') {
          // Entries are given as an array of the visible ones; look for the follow-ups by position.
          id = createdImvu(entries, i, platformId);
          if (!id) {
            problems.push(`entry ${e.index} (imvu.create) is not followed by the platform's provisioning entries that name the IMVU it created`);
            continue;
          }
          const seq = Number(IMVU_ID.exec(id)![1]);
          const max = Number((await tx.get<{ m: number | null }>('SELECT MAX(seq) AS m FROM imvus'))?.m ?? 0);
          if (max >= seq) {
            problems.push(`entry ${e.index} created ${id}, but the entries before it already number ${max} IMVUs`);
            continue;
          }
          // The IMVUs numbered before it, which the reader does not see: never served, never selected.
          if (max < seq - 1) {
            const n = seq - 1;
            await tx.run(
              'INSERT INTO imvus (id, seq, name, owner, jurisdiction, status, domain, stage_domain, created_at, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
              [`(not visible) ${n}`, n, `(not visible) ${n}`, '', '', 'exited', `(not visible) ${n}`, `(not visible) ${n}`, e.at, -1],
            );
          }
        }
        try {
          await projectRecorded(tx, e);
        } catch (err) {
          problems.push(`entry ${e.index} (${type}) says allowed, but cannot be applied to the state the earlier entries give: ${(err as Error).message}`);
          continue;
        }
        if (id) {
          const made = await tx.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [e.index]);
          if (made?.id !== id) problems.push(`entry ${e.index} created ${made?.id ?? 'nothing'}, but the platform's provisioning entries name ${id}`);
        }
      }
    });

    const people = [...new Set(select.people ?? [])];
    const marks = people.map(() => '?').join(', ') || "''";
    const rows = select.imvus
      ? (await store.all<{ id: string; owner: string; status: string; entry: number }>('SELECT id, owner, status, entry FROM imvus WHERE entry >= 0 ORDER BY id')).filter((r) => select.imvus.includes(r.id))
      : await store.all<{ id: string; owner: string; status: string; entry: number }>(
          `SELECT id, owner, status, entry FROM imvus WHERE owner IN (${marks}) UNION SELECT i.id, i.owner, i.status, i.entry FROM imvus i JOIN members m ON m.imvu = i.id WHERE m.identity IN (${marks}) ORDER BY id`,
          [...people, ...people],
        );
    const imvus: ExpectedImvu[] = rows.map((r) => ({ id: r.id, owner: r.owner, status: r.status, entry: Number(r.entry) }));
    for (const imvu of imvus) {
      const env = await store.get<NonNullable<ExpectedImvu['envelope']>>('SELECT cpu_cores, memory_gb, storage_gb, iops, burst_multiplier, burst_minutes FROM envelopes WHERE imvu = ?', [imvu.id]);
      if (env) imvu.envelope = { cpu_cores: Number(env.cpu_cores), memory_gb: Number(env.memory_gb), storage_gb: Number(env.storage_gb), iops: Number(env.iops), burst_multiplier: Number(env.burst_multiplier), burst_minutes: Number(env.burst_minutes) };
      const w = await store.get<{ burst_until: string; burst_multiplier: number }>('SELECT burst_until, burst_multiplier FROM workloads WHERE imvu = ?', [imvu.id]);
      if (w) imvu.burst = w.burst_until !== '' ? Number(w.burst_multiplier) : 1;
    }
    // Each IMVU's gateway lines (hosts, routes, roles, allow-lists) by the table code the gateway
    // itself renders with, from the verified entries only.
    try {
      const table = await loadTable(store);
      for (const imvu of imvus) if (imvu.status !== 'exited') imvu.routes = imvuRouteLines(table.maps, imvu.id);
    } catch (err) {
      problems.push(`the gateway's route table could not be derived from the entries: ${(err as Error).message}`);
    }
    const zones: ExpectedZone[] = [];
    for (const imvu of imvus) {
      if (imvu.status === 'exited') continue;
      for (const { name } of await store.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ? ORDER BY name', [imvu.id])) {
        const zone = await expectedZone(store, lowerAscii(name), entries);
        if (zone) zones.push(zone);
      }
    }
    return { imvus, zones, problems };
  } finally {
    await store.close();
  }
}

/** One zone of a store, as the DNS server would serve it from that store. */
async function expectedZone(store: SqliteStore, zone: string, entries: readonly LedgerEntry[]): Promise<ExpectedZone | undefined> {
  const read = await readZoneRows(store, zone);
  if (!read) return undefined;
  const soa = synthesiseSoa(zone, read.serial, read.suffix);
  const soaData = { ...soa, mname: soa.mname.replace(/\.$/, ''), rname: soa.rname.replace(/\.$/, '') };
  const keys = await store.all<{ algorithm: number; flags: number; public_key: string }>(
    'SELECT algorithm, flags, public_key FROM dnssec_keys WHERE zone = ? ORDER BY entry, public_key',
    [zone],
  );
  const mentioned = new Set<string>();
  for (const e of entries) {
    const b = e.command?.command?.body as Record<string, unknown> | undefined;
    if (b && b.zone === zone && typeof b.name === 'string') {
      try {
        mentioned.add(absoluteName(b.name, zone));
      } catch {
        // a malformed name in a refused command: nothing to probe
      }
    }
  }
  return {
    zone,
    imvu: read.imvu,
    serial: read.serial,
    suffix: read.suffix,
    records: [{ owner: zone, type: 'SOA', ttl: SOA_TTL, data: soaData }, ...servedRecords(zone, read.rows)],
    compiled: new Zone(zone, read.imvu, read.serial, soa, read.rows),
    dnskeys: keys.map((k) => ({ flags: Number(k.flags), algorithm: Number(k.algorithm), key: Buffer.from(k.public_key, 'base64') })),
    mentioned: [...mentioned].filter((n) => n === zone || n.endsWith('.' + zone)).sort(),
  };
}
