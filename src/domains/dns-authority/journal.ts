import type { Answer } from 'dns-packet';
import type { Store } from '../../core/store/index.ts';
import { decodeEntry } from '../../core/ledger/ledger.ts';
import { absoluteName, mailRecords } from '../../core/policy/naming.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { canonicalCompare } from '../zonefile/export.ts';
import { isWithin, lowerAscii, parseRecord } from '../records/rdata.ts';
import { packetData, type RecordRow } from './zone.ts';

// The history of every hosted zone, derived from the ledger, for IXFR (RFC 1995). Nothing is
// stored: the ledger is the journal. Each allowed entry that changes a zone bumps its serial by
// one (src/core/policy/projection-writer.ts), so replaying the zone-changing entries in order
// gives, for every serial, the difference to the next one. This file mirrors the writer's effect
// on `zones` and `records` (and nothing else) and checks itself: a zone's replayed records must
// equal the projection at the same serial before any of its differences is served. If the writer
// changes (a new command type that touches zones, say), the check fails and IXFR falls back to a
// full transfer, as RFC 1995 allows: never a wrong delta.
//
// Memory: the replayed rows of every zone (as many as the `records` projection holds) and at most
// `depth` differences per zone (older ones are forgotten: IXFR from an older serial gets the full
// zone). The ledger is read once, incrementally, from where the previous read stopped.

/** One record as served: owner (lower case, no trailing dot), type, TTL (per RRset) and dns-packet rdata. */
export interface ServedRR {
  owner: string;
  type: string;
  ttl: number;
  data: unknown;
}

export interface Delta {
  from: number;
  to: number;
  deleted: ServedRR[];
  added: ServedRR[];
}

/** Must match what the projection writer gives records without a TTL (DEFAULT_TTL there). */
const DEFAULT_TTL = 3600;

const TYPE_CODE: Record<string, number> = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DS: 43, CAA: 257 };

function rrKey(rr: ServedRR): string {
  return `${rr.owner} ${rr.type} ${rr.ttl} ${JSON.stringify(rr.data)}`;
}

/**
 * The records of `zone` as the server answers them (same rules as zone.ts): rows that parse, in the
 * zone, no CNAME at the apex, duplicates once, one TTL per RRset (the smallest). Canonical order.
 */
export function servedRecords(zone: string, rows: Iterable<RecordRow>): ServedRR[] {
  const sets = new Map<string, { ttl: number; data: Map<string, unknown> }>();
  for (const row of rows) {
    const owner = lowerAscii(row.name);
    if (!isWithin(owner, zone) || (row.type === 'CNAME' && owner === zone)) continue;
    const parsed = parseRecord(row.type, row.value);
    if (!parsed) continue;
    const k = `${owner} ${row.type}`;
    let set = sets.get(k);
    if (!set) sets.set(k, (set = { ttl: Number(row.ttl) >>> 0, data: new Map() }));
    set.ttl = Math.min(set.ttl, Number(row.ttl) >>> 0);
    const data = packetData(parsed);
    const dk = JSON.stringify(data);
    if (!set.data.has(dk)) set.data.set(dk, data);
  }
  const out: (ServedRR & { sort: string })[] = [];
  for (const [k, set] of sets) {
    const sp = k.indexOf(' ');
    const owner = k.slice(0, sp);
    const type = k.slice(sp + 1);
    for (const [dk, data] of set.data) out.push({ owner, type, ttl: set.ttl, data, sort: dk });
  }
  out.sort(
    (a, b) => canonicalCompare(a.owner, b.owner) || (TYPE_CODE[a.type] ?? 0) - (TYPE_CODE[b.type] ?? 0) || (a.sort < b.sort ? -1 : a.sort > b.sort ? 1 : 0),
  );
  return out.map(({ owner, type, ttl, data }) => ({ owner, type, ttl, data }));
}

export function toAnswer(rr: ServedRR): Answer {
  return { name: rr.owner, type: rr.type, class: 'IN', ttl: rr.ttl, data: rr.data } as Answer;
}

/** The difference between two served record lists: what to delete and what to add. */
export function diff(before: ServedRR[], after: ServedRR[]): { deleted: ServedRR[]; added: ServedRR[] } {
  const a = new Map(before.map((r) => [rrKey(r), r]));
  const b = new Map(after.map((r) => [rrKey(r), r]));
  return { deleted: [...a].filter(([k]) => !b.has(k)).map(([, r]) => r), added: [...b].filter(([k]) => !a.has(k)).map(([, r]) => r) };
}

interface Row extends RecordRow {
  id: string;
}

interface ZoneState {
  name: string;
  serial: number;
  /** Rows by RRset (`owner type`, owner lower case), then by row id. */
  sets: Map<string, Map<string, Row>>;
  deltas: Delta[];
  /** Has a DNSSEC key: its differences do not cover the signed data. */
  signed?: boolean;
}

function setKey(name: string, type: string): string {
  return `${lowerAscii(name)} ${type}`;
}

function put(z: ZoneState, row: Row): void {
  const k = setKey(row.name, row.type);
  let set = z.sets.get(k);
  if (!set) z.sets.set(k, (set = new Map()));
  set.set(row.id, row);
}

function* allRows(z: ZoneState): Iterable<Row> {
  for (const set of z.sets.values()) yield* set.values();
}

export interface JournalOptions {
  /** Differences kept per zone. Default 100. */
  depth?: number;
  /** Ledger entries decoded per read. Default 2000. */
  batch?: number;
}

export type IxfrPlan =
  | { kind: 'uptodate'; serial: number }
  | { kind: 'deltas'; serial: number; deltas: Delta[] }
  /** The client's serial is older than the journal, unknown, or the journal cannot vouch for the zone. */
  | { kind: 'full'; serial: number; reason: string };

/** RFC 1982 serial arithmetic: is `a` newer than `b`? */
export function serialGt(a: number, b: number): boolean {
  const d = ((a >>> 0) - (b >>> 0) + 2 ** 32) % 2 ** 32;
  return d !== 0 && d < 2 ** 31;
}

export class ZoneJournal {
  private next = 0;
  private readonly zones = new Map<string, ZoneState>();
  /** IMVU id → its primary zone (dkim.publish names the IMVU, not the zone). */
  private readonly primaryOf = new Map<string, string>();
  private suffix = 'invalid';
  private edge = '';
  /** The platform's name server names as the last `platform.zone` declared them (sorted, distinct). */
  private nameServers: string[] | undefined;
  private catching: Promise<void> | undefined;
  /** (zone, serial) pairs whose replayed records were found equal to the projection. */
  private readonly vouched = new Map<string, number>();
  private readonly depth: number;
  private readonly batch: number;
  readonly stats = { entries: 0, mismatches: 0 };

  constructor(
    private readonly store: Store,
    opts: JournalOptions = {},
  ) {
    this.depth = opts.depth ?? 100;
    this.batch = opts.batch ?? 2000;
  }

  /** Reads the ledger entries appended since the last call (one reader at a time). */
  catchUp(): Promise<void> {
    this.catching ??= this.read().finally(() => (this.catching = undefined));
    return this.catching;
  }

  /** The serial the journal has replayed a zone to (tests, diagnostics). */
  serialOf(zone: string): number | undefined {
    return this.zones.get(zone)?.serial;
  }

  /** The differences kept for a zone, oldest first. */
  deltas(zone: string): readonly Delta[] {
    return this.zones.get(zone)?.deltas ?? [];
  }

  /**
   * What an IXFR from `clientSerial` gets, for `zone` as the projection has it now (`current`
   * serial and served records, read by the caller in one consistent read).
   */
  async plan(zone: string, clientSerial: number, current: { serial: number; records: ServedRR[] }): Promise<IxfrPlan> {
    const serial = current.serial;
    if (clientSerial === serial || serialGt(clientSerial, serial)) return { kind: 'uptodate', serial };
    await this.catchUp();
    const z = this.zones.get(zone);
    if (!z) return { kind: 'full', serial, reason: 'zone not in the journal' };
    // The projection is read after the journal, so it may be ahead by what committed since: read on.
    if (z.serial !== serial) await this.catchUp();
    if (z.serial !== serial) return { kind: 'full', serial, reason: `journal at serial ${z.serial}, zone at ${serial}` };
    if (this.vouched.get(zone) !== serial) {
      const replayed = servedRecords(zone, allRows(z));
      const d = diff(replayed, current.records);
      if (d.added.length > 0 || d.deleted.length > 0) {
        this.stats.mismatches++;
        return { kind: 'full', serial, reason: 'the replayed zone differs from the projection' };
      }
      this.vouched.set(zone, serial);
    }
    if (z.signed) return { kind: 'full', serial, reason: 'signed zone' };
    const start = z.deltas.findIndex((d) => d.from === clientSerial);
    if (start < 0) return { kind: 'full', serial, reason: `no history from serial ${clientSerial}` };
    const deltas = z.deltas.slice(start);
    if (deltas[deltas.length - 1]!.to !== serial) return { kind: 'full', serial, reason: 'history does not reach the current serial' };
    return { kind: 'deltas', serial, deltas };
  }

  private async read(): Promise<void> {
    const size = await this.store.ledgerSize();
    while (this.next < size) {
      const to = Math.min(size, this.next + this.batch);
      const blobs = await this.store.readEntries(this.next, to);
      if (blobs.length !== to - this.next) throw new Error(`ledger entries ${this.next}..${to} are missing`);
      for (const blob of blobs) {
        await this.apply(decodeEntry(blob));
        this.next++;
        this.stats.entries++;
      }
    }
  }

  /** The writer's effect of one entry on zones and records (see projection-writer.ts). */
  private async apply(e: LedgerEntry): Promise<void> {
    if (!e.decision?.allowed) return;
    const c = e.command.command;
    const b = c.body as Record<string, unknown>;
    switch (c.type) {
      case 'platform.genesis':
        this.suffix = String(b.suffix);
        this.edge = String(b.edgeAddress);
        return;
      case 'imvu.create': {
        // The names are a function of the committed state (naming.ts); the projection keeps them.
        const row = await this.store.get<{ id: string; domain: string; stage_domain: string }>('SELECT id, domain, stage_domain FROM imvus WHERE entry = ?', [e.index]);
        if (!row) throw new Error(`entry ${e.index} created an IMVU the projection does not have`);
        const primary = row.domain;
        this.primaryOf.set(row.id, primary);
        const z = this.open(primary);
        let n = 0;
        const add = (name: string, type: string, value: string) => put(z, { id: `${e.index}.${n++}`, name, type, value, ttl: DEFAULT_TTL });
        for (const ns of this.nameServerNames()) add(primary, 'NS', `${ns}.`);
        add(primary, 'A', this.edge);
        add(row.stage_domain, 'A', this.edge);
        for (const r of mailRecords(primary, this.edge)) add(r.name, r.type, r.value);
        return;
      }
      case 'domain.verified':
        // A claimed domain gets its zone once proven, with the entry's index as its first serial.
        this.open(String(b.domain), e.index);
        return;
      case 'domain.release': {
        const name = lowerAscii(String(b.domain));
        this.zones.delete(name);
        this.vouched.delete(name);
        return;
      }
      case 'dns.record.add': {
        const zone = String(b.zone);
        const name = absoluteName(String(b.name), zone);
        const ttl = typeof b.ttl === 'number' ? b.ttl : DEFAULT_TTL;
        this.change(zone, name, String(b.type), (z) => put(z, { id: `${e.index}.0`, name, type: String(b.type), value: String(b.value), ttl }));
        return;
      }
      case 'dns.record.remove': {
        const zone = String(b.zone);
        const name = absoluteName(String(b.name), zone);
        const type = String(b.type);
        const value = b.value === undefined ? undefined : String(b.value);
        this.change(zone, name, type, (z) => {
          const set = z.sets.get(setKey(name, type));
          // SQL `=` on TEXT: exact, case-sensitive matches, as the writer's DELETE.
          for (const [id, r] of set ?? []) if (r.name === name && (value === undefined || r.value === value)) set!.delete(id);
        });
        return;
      }
      case 'dkim.publish': {
        const zone = this.primaryOf.get(String(b.imvu));
        if (!zone) throw new Error(`entry ${e.index}: DKIM key for an IMVU without a zone`);
        const name = `${String(b.selector)}._domainkey.${zone}`;
        this.change(zone, name, 'TXT', (z) => {
          const set = z.sets.get(setKey(name, 'TXT'));
          for (const [id, r] of set ?? []) if (r.name === name) set!.delete(id);
          put(z, { id: `${e.index}.0`, name, type: 'TXT', value: `v=DKIM1; k=rsa; p=${String(b.publicKey)}`, ttl: DEFAULT_TTL });
        });
        return;
      }
      case 'dkim.remove': {
        // A retired DKIM selector leaves the zone (its TXT record goes, the serial moves).
        const zone = this.primaryOf.get(String(b.imvu));
        if (!zone) throw new Error(`entry ${e.index}: DKIM key for an IMVU without a zone`);
        const name = `${String(b.selector)}._domainkey.${zone}`;
        this.change(zone, name, 'TXT', (z) => {
          const set = z.sets.get(setKey(name, 'TXT'));
          for (const [id, r] of set ?? []) if (r.name === name) set!.delete(id);
        });
        return;
      }
      case 'dnssec.activate':
      case 'dnssec.remove':
      case 'dnssec.publish': {
        // The zone's key changed (src/domains/dnssec): a serial of its own, no change to `records`.
        // The served zone now carries DNSKEY and signatures that no difference here describes,
        // so IXFR of a signed zone sends the whole (signed) zone.
        const zone = String(b.zone).toLowerCase();
        const z = this.zones.get(zone);
        if (z) z.signed = true;
        this.change(zone, zone, 'DNSKEY', () => undefined);
        return;
      }
      case 'dnssec.resign':
        // A serial of its own and nothing else: an empty difference (and a signed zone goes out whole anyway).
        this.change(String(b.zone).toLowerCase(), String(b.zone).toLowerCase(), 'SOA', () => undefined);
        return;
      case 'platform.zone': {
        // New name servers: every IMVU zone's NS RRset follows (the platform's own zone is not journaled).
        const before = this.nameServerNames();
        this.nameServers = [...new Set((b.nameservers as { name: string }[]).map((ns) => ns.name))].sort();
        const after = this.nameServerNames();
        if (before.join(' ') === after.join(' ')) return;
        let n = 0;
        for (const zone of this.primaryOf.values())
          this.change(zone, zone, 'NS', (z) => {
            const set = z.sets.get(setKey(zone, 'NS'));
            for (const [id, r] of set ?? []) if (r.name === zone && before.some((ns) => r.value === `${ns}.`)) set!.delete(id);
            for (const ns of after) put(z, { id: `${e.index}.${n++}`, name: zone, type: 'NS', value: `${ns}.`, ttl: DEFAULT_TTL });
          });
        return;
      }
      default:
        return;
    }
  }

  private nameServerNames(): string[] {
    return this.nameServers ?? [`ns1.${this.suffix}`];
  }

  private open(name: string, serial = 1): ZoneState {
    // The writer inserts the zone row with serial 1, or a proven domain's with its entry index.
    const z: ZoneState = { name: lowerAscii(name), serial, sets: new Map(), deltas: [] };
    this.zones.set(z.name, z);
    this.vouched.delete(z.name);
    return z;
  }

  /** Applies a change to one RRset of `zone`, bumps its serial and records the difference. */
  private change(zoneName: string, name: string, type: string, mutate: (z: ZoneState) => void): void {
    const z = this.zones.get(lowerAscii(zoneName));
    // The writer's `UPDATE zones ... WHERE name = ?` matches the name exactly.
    if (!z || z.name !== zoneName) return;
    const k = setKey(name, type);
    const before = servedRecords(z.name, z.sets.get(k)?.values() ?? []);
    mutate(z);
    const set = z.sets.get(k);
    const after = servedRecords(z.name, set?.values() ?? []);
    if (set && set.size === 0) z.sets.delete(k);
    const from = z.serial;
    z.serial = (z.serial + 1) >>> 0;
    z.deltas.push({ from, to: z.serial, ...diff(before, after) });
    if (z.deltas.length > this.depth) z.deltas.splice(0, z.deltas.length - this.depth);
  }
}
