import type { Store } from '../../core/store/index.ts';
import { decodeEntry } from '../../core/ledger/ledger.ts';
import { lowerAscii } from '../records/rdata.ts';
import { synthesiseSoa } from '../records/soa.ts';
import { PLATFORM_ZONE_IMVU, platformZoneSerial, readZoneRows } from '../registry/zone.ts';
import { Zone } from './zone.ts';

// The DNS server's read-only view of the projections: which zones are hosted (name, IMVU, serial)
// and, per zone, a compiled in-memory copy keyed by its serial. Every change that affects a zone's
// answers passes the chokepoint, which bumps `zones.serial` in the same transaction; so a compiled
// zone is current exactly while its serial is. The index is refreshed by polling: a cheap
// `ledgerSize()` every `refreshMs` (default 200 ms); when the ledger has grown, the entries
// appended since the last look say which zones may have changed (those they name, and those of
// the IMVUs they name), and only those rows are read again, so a refresh costs the changes, not
// the number of zones. An entry the view cannot place, or a large gap, makes it re-read the
// whole list, as it does every `resyncMs` whatever happens (or every RESYNC_DUTY times its last
// duration, if longer: its cost is the number of zones), `pageSize` zones per turn of the event
// loop (a single read of 1,000 zones held every query up for 1 to 3 ms every 5 s, growing with the
// zones). A zone whose serial moved is recompiled on its next query. Reads only: it never writes a
// projection.
// The platform's own zone (the suffix, src/domains/registry) is one more entry, with imvu '' and a
// serial derived from the projections, once the platform has declared it.

export interface ZoneInfo {
  readonly name: string;
  readonly imvu: string;
  serial: number;
}

interface Entry extends ZoneInfo {
  compiled?: Zone;
  loading?: Promise<Zone | undefined>;
}

export interface ZoneViewOptions {
  /** How often to look for committed changes; a change is served at most about this late. */
  refreshMs?: number;
  /** Re-read the zone list at least this often even if the ledger did not grow. */
  resyncMs?: number;
  /** Zones a full re-read takes per read, letting queries through between reads. Default 500. */
  pageSize?: number;
  /**
   * open() returns before the first read of the zone list is done (it is every zone: about 0.3 s at
   * 100,000), which then goes on between other work; `loading` is set until it is. What answers
   * from the view waits on it (server.ts), so nothing is answered from a partial list.
   */
  background?: boolean;
  /**
   * Moves with every commit that changes a projection the view is made of (ZONE_VIEW_SOURCES) and
   * with every integrity repair (the daemon: `Integrity.tablesKey`). Given, the periodic full
   * re-read runs only when it moved since the view's last read while the ledger did not grow: new
   * entries are read for what they name, and the daemon invalidates the view after a repair.
   * Without it (the DNS worker processes, which have no integrity state), the full re-read runs
   * every resyncMs as before.
   */
  sourcesKey?: () => string;
  onError?: (err: unknown) => void;
  /** Called when a zone's serial moved (not for zones that appear): NOTIFY hooks in here. */
  onSerialChange?: (zone: ZoneInfo, previous: number) => void;
}

/** Allowed commands that name no zone and no IMVU and change no zone. */
const ZONE_NEUTRAL: ReadonlySet<string> = new Set([
  'identity.register', 'identity.rotate', 'identity.revoke', 'pricebook.publish', 'noise.summary', 'meter.register',
  'capacity.publish', 'plan.publish', 'quota.approve', 'period.close',
]);
/** Allowed commands that name an IMVU but never change its zones nor whether they are served. */
const IMVU_ZONE_NEUTRAL: ReadonlySet<string> = new Set([
  'consent.record', 'usage.report', 'revenue.record', 'notify.creator', 'imvu.scale', 'route.set', 'member.add', 'mailbox.add', 'mailbox.remove', 'domain.claim', 'domain.verify', 'dkim.rotate',
  'mail.refusals',
]);
/** The projections the view reads (with `platformZoneSerial`): what `sourcesKey` must follow. */
export const ZONE_VIEW_SOURCES: readonly string[] = ['zones', 'imvus', 'import_parts', 'platform', 'dnssec_keys', 'exits'];
/** IMVU statuses whose zones are not served. */
const UNSERVED_STATUSES: readonly string[] = ['exited', 'importing'];
/** A full re-read of the zone list runs at most this fraction of the time (1/RESYNC_DUTY). */
const RESYNC_DUTY = 50;
/** More new entries than this since the last look: the whole zone list is read again instead. */
const MAX_DELTA_ENTRIES = 20_000;
/** SQL: the zone `z` has no declared part outstanding (an import's or a transfer's zone is served whole or not at all). */
const WHOLE = 'NOT EXISTS (SELECT 1 FROM import_parts p WHERE p.zone = z.name AND p.entry = 0)';

/** What the entries since the last look may have changed: zones by name and by IMVU; undefined: anything. */
interface Touched {
  zones: Set<string>;
  imvus: Set<string>;
}

export class ZoneView {
  private entries = new Map<string, Entry>();
  /** The names in `entries` per IMVU (for the zones of an IMVU an entry names). */
  private byImvu = new Map<string, string | Set<string>>();
  private suffix = '';
  private seenLedgerSize = -1;
  /** sourcesKey() as it was before the last read (full or partial) began. */
  private seenKey: string | undefined;
  private lastSync = 0;
  /** How long the last full read of the zone list took (ms). */
  fullReadMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  /** Counters for tests and metrics. */
  readonly stats = { refreshes: 0, loads: 0, errors: 0, partial: 0 };
  /**
   * Moves whenever the set of hosted zones changes (a zone appears, goes, changes IMVU, or the
   * platform suffix changes): what `enclosing()` answers may then differ for any name. Serial
   * changes alone do not move it (see `serialOf`). The response cache keys its entries on both.
   */
  generation = 0;
  /**
   * Set while the view has not read the zone list once (open with `background`), and until it has
   * also read the ledger up to the size `settle()` asked for meanwhile: resolves then (or at close).
   */
  loading: Promise<void> | undefined;
  private settleSize = -1;

  private constructor(
    private readonly store: Store,
    private readonly opts: Required<Omit<ZoneViewOptions, 'onError' | 'onSerialChange' | 'background' | 'sourcesKey'>> & Pick<ZoneViewOptions, 'onError' | 'onSerialChange' | 'sourcesKey'>,
  ) {}

  static async open(store: Store, opts: ZoneViewOptions = {}): Promise<ZoneView> {
    const view = new ZoneView(store, { refreshMs: opts.refreshMs ?? 200, resyncMs: opts.resyncMs ?? 5000, pageSize: Math.max(1, opts.pageSize ?? 500), onError: opts.onError, onSerialChange: opts.onSerialChange, sourcesKey: opts.sourcesKey });
    if (opts.background) view.loading = view.loadFirst();
    else await view.refresh(true);
    view.timer = setInterval(() => void view.refresh().catch(() => undefined), view.opts.refreshMs);
    view.timer.unref();
    return view;
  }

  /** The first full read, tried again every refreshMs until it succeeds; then what settle() asked for. */
  private async loadFirst(): Promise<void> {
    while (!this.closed) {
      try {
        await this.refresh(true);
        break;
      } catch {
        // Reported by refresh (onError); the list is read again, queries still wait.
        await new Promise((r) => setTimeout(r, this.opts.refreshMs));
      }
    }
    // settle() may ask for more while this reads: each pass reads up to the latest size asked.
    for (let pass = 0; pass < 3 && this.settleSize > this.seenLedgerSize && !this.closed; pass++) await this.readUpTo(this.settleSize);
    // In the same turn as the last look at settleSize: a settle() after it finds no loading and catches up itself.
    this.loading = undefined;
  }

  /**
   * The view is to answer from the ledger up to `size` entries: while it loads, `loading` also
   * covers that (and this resolves at once); once loaded, this is caughtUp(size).
   */
  settle(size: number): Promise<void> {
    if (!this.loading) return this.caughtUp(size);
    this.settleSize = Math.max(this.settleSize, size);
    return Promise.resolve();
  }

  /** The hosted zone enclosing `name` (absolute, lower case, no trailing dot; '' is the root). */
  enclosing(name: string): ZoneInfo | undefined {
    let n = name;
    for (;;) {
      const e = this.entries.get(n);
      if (e) return e;
      const dot = n.indexOf('.');
      if (dot < 0) return undefined;
      n = n.slice(dot + 1);
    }
  }

  /** The compiled zone, or a promise of it when it must be (re)loaded; undefined if it is gone. */
  zone(info: ZoneInfo): Zone | Promise<Zone | undefined> | undefined {
    // The current entry for that name: a refresh may have replaced the one the caller holds.
    const e = (this.entries.get(info.name) === info ? info : this.entries.get(info.name)) as Entry | undefined;
    if (!e) return undefined;
    if (e.compiled) return e.compiled;
    e.loading ??= this.load(e).finally(() => (e.loading = undefined));
    return e.loading;
  }

  /**
   * Drops every compiled zone and moves the generation (so cached answers go too): for when the
   * projections were rebuilt without their serials moving (an integrity repair).
   */
  invalidate(): void {
    // New entries: a load in flight finds its entry replaced and does not cache what it read.
    this.entries = new Map([...this.entries].map(([name, e]) => [name, { name: e.name, imvu: e.imvu, serial: e.serial }]));
    this.generation++;
    void this.refresh(true).catch(() => undefined);
  }

  /** The serial of a hosted zone as the index knows it (lower-case name), undefined if it is not hosted. */
  serialOf(name: string): number | undefined {
    return this.entries.get(name)?.serial;
  }

  /** Zones hosted now (for tests, metrics and the export). */
  zoneNames(): string[] {
    return [...this.entries.keys()];
  }

  /** Looks for committed changes now (the timer calls it; `force` re-reads the zone list regardless). */
  refresh(force = false): Promise<void> {
    if (this.inFlight) return force ? this.inFlight.then(() => this.refresh(true)) : this.inFlight;
    this.inFlight = this.sync(force)
      .catch((err: unknown) => {
        this.stats.errors++;
        if (!this.closed) this.opts.onError?.(err);
        if (force) throw err;
      })
      .finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  /**
   * Resolves once the view has read the ledger up to `size` entries, so that a change committed at
   * an index below it is what the server answers (the API replies to a command only then). A sync
   * already running may have read the ledger before that change: one more follows it.
   */
  async caughtUp(size: number): Promise<void> {
    if (this.loading) await this.loading;
    await this.readUpTo(size);
  }

  private async readUpTo(size: number): Promise<void> {
    for (let i = 0; i < 3 && this.seenLedgerSize < size && !this.closed; i++) await this.refresh();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
  }

  private async sync(force: boolean): Promise<void> {
    if (this.closed) return;
    // The key before the size: a commit between the two is read below and makes the next key differ (one more read, never one less).
    const key = this.opts.sourcesKey?.();
    const size = await this.store.ledgerSize();
    const now = Date.now();
    // The whole list is read again at most every resyncMs, and at most 1/RESYNC_DUTY of the time:
    // its cost is the number of zones, not the changes, so a large platform spaces it out; and
    // with a key, only if the projections changed while the ledger did not grow (new entries say
    // what they changed; a repair also makes the daemon invalidate the view at once).
    const resync = Math.max(this.opts.resyncMs, RESYNC_DUTY * this.fullReadMs);
    const resyncDue = now - this.lastSync >= resync && (key === undefined || (key !== this.seenKey && size === this.seenLedgerSize));
    if (!force && size === this.seenLedgerSize && !resyncDue) return;
    if (!force && this.seenLedgerSize >= 0 && size > this.seenLedgerSize && size - this.seenLedgerSize <= MAX_DELTA_ENTRIES && !resyncDue) {
      const touched = await this.touchedSince(this.seenLedgerSize, size);
      if (touched) {
        await this.syncPart(touched, size);
        this.seenKey = key;
        return;
      }
    }
    const t0 = performance.now();
    const platform = await this.store.get<{ suffix: string }>('SELECT suffix FROM platform LIMIT 1');
    // An exited IMVU's zones are no longer served (queries for them are REFUSED, like any name not
    // hosted here), nor those of an import whose declared parts are not all recorded yet, nor a
    // transferred domain whose declared parts are not. Those are few: read as two sets first, so
    // the zone list is one sequential read of its table (no lookup into two others per zone: at
    // 100,000 zones that tripled the read).
    const unserved = new Set((await this.store.all<{ id: string }>(`SELECT id FROM imvus WHERE status IN (${UNSERVED_STATUSES.map(() => '?').join(', ')})`, [...UNSERVED_STATUSES])).map((r) => r.id));
    const unfinished = new Set((await this.store.all<{ zone: string }>('SELECT DISTINCT zone FROM import_parts WHERE entry = 0')).map((r) => r.zone));
    const suffix = platform ? lowerAscii(platform.suffix) : 'invalid';
    const next = new Map<string, Entry>();
    const changed: [ZoneInfo, number][] = [];
    let reshaped = suffix !== this.suffix;
    const take = (name: string, imvu: string, serial: number) => {
      const e = this.entries.get(name);
      if (e && e.imvu === imvu && suffix === this.suffix) {
        if (e.serial !== serial) {
          const previous = e.serial;
          e.serial = serial;
          if (e.compiled && e.compiled.serial !== serial) e.compiled = undefined;
          changed.push([e, previous]);
        }
        next.set(name, e);
      } else {
        next.set(name, { name, imvu, serial });
        reshaped = true;
      }
    };
    // In pages by rowid, other work let through between them. A change committed meanwhile is at
    // an index >= `size`: the next look re-reads what it touched, whichever page saw it.
    for (let after = 0; ; ) {
      const page = await this.pageOfZones(after);
      for (const [, raw, imvu, serial] of page) {
        if (unserved.has(imvu) || unfinished.has(raw)) continue;
        const name = lowerAscii(raw);
        // The platform's own zone: the one entry below, with its serial.
        if (name !== suffix) take(name, imvu, serial);
      }
      if (page.length < this.opts.pageSize) break;
      after = page[page.length - 1]![0];
      await new Promise((r) => setImmediate(r));
      if (this.closed) return;
    }
    const platformSerial = platform ? await platformZoneSerial(this.store, suffix) : undefined;
    if (platformSerial !== undefined) take(suffix, PLATFORM_ZONE_IMVU, platformSerial);
    // Same size and every zone the one held before: the set of names is unchanged.
    if (reshaped || next.size !== this.entries.size) this.generation++;
    this.suffix = suffix;
    this.entries = next;
    this.byImvu = new Map();
    for (const e of next.values()) this.indexImvu(e);
    this.seenLedgerSize = size;
    this.seenKey = key;
    this.lastSync = now;
    this.fullReadMs = performance.now() - t0;
    this.stats.refreshes++;
    for (const [info, previous] of changed) {
      try {
        this.opts.onSerialChange?.(info, previous);
      } catch (err) {
        this.opts.onError?.(err);
      }
    }
  }

  /** Up to pageSize zones after rowid `after`, as [rowid, name, imvu, serial] (the columns' types: integer, text, text, integer). */
  private async pageOfZones(after: number): Promise<[number, string, string, number][]> {
    const sql = 'SELECT rowid, name, imvu, serial FROM zones WHERE rowid > ? ORDER BY rowid LIMIT ?';
    const params = [after, this.opts.pageSize];
    if (this.store.values) return (await this.store.values(sql, params)) as [number, string, string, number][];
    return (await this.store.all<{ rowid: number; name: string; imvu: string; serial: number }>(sql, params)).map((r) => [r.rowid, r.name, r.imvu, r.serial]);
  }

  // An IMVU has one zone but for its custom domains: the name alone until a second one comes (a Set
  // per IMVU was a third of a full read's time at 100,000 zones).
  private indexImvu(e: Entry): void {
    const names = this.byImvu.get(e.imvu);
    if (names === undefined) this.byImvu.set(e.imvu, e.name);
    else if (typeof names !== 'string') names.add(e.name);
    else if (names !== e.name) this.byImvu.set(e.imvu, new Set([names, e.name]));
  }

  private unindexImvu(e: Entry): void {
    const names = this.byImvu.get(e.imvu);
    if (names === e.name) this.byImvu.delete(e.imvu);
    else if (names !== undefined && typeof names !== 'string') {
      names.delete(e.name);
      if (names.size === 1) this.byImvu.set(e.imvu, names.values().next().value!);
    }
  }

  /** The names the view holds for an IMVU. */
  private namesOf(imvu: string): Iterable<string> {
    const names = this.byImvu.get(imvu);
    return names === undefined ? [] : typeof names === 'string' ? [names] : names;
  }

  /** The zones and IMVUs that entries [from, to) may have changed; undefined if one of them could change anything. */
  private async touchedSince(from: number, to: number): Promise<Touched | undefined> {
    const touched: Touched = { zones: new Set(), imvus: new Set() };
    for (let at = from; at < to; at += 1000) {
      for (const data of await this.store.readEntries(at, Math.min(to, at + 1000))) {
        const e = decodeEntry(data);
        if (!e.decision?.allowed) continue; // a refusal changes nothing
        const cmd = e.command?.command;
        if (!cmd) return undefined;
        const b = (cmd.body ?? {}) as Record<string, unknown>;
        if (ZONE_NEUTRAL.has(cmd.type)) continue;
        if (typeof b.imvu === 'string' && IMVU_ZONE_NEUTRAL.has(cmd.type)) continue;
        let placed = false;
        for (const k of ['zone', 'domain'] as const)
          if (typeof b[k] === 'string') {
            touched.zones.add(lowerAscii(b[k]));
            placed = true;
          }
        if (typeof b.imvu === 'string') {
          touched.imvus.add(b.imvu);
          placed = true;
        }
        // imvu.create names its owner, not its IMVU: the new IMVU's zone is the one made at this entry.
        if (cmd.type === 'imvu.create') {
          for (const z of await this.store.all<{ name: string }>('SELECT name FROM zones WHERE entry = ?', [e.index])) touched.zones.add(lowerAscii(z.name));
          placed = true;
        }
        if (!placed) return undefined;
      }
    }
    return touched;
  }

  /** Re-reads only the zones `touched` names (and the platform's own zone, whose serial follows them). */
  private async syncPart(touched: Touched, size: number): Promise<void> {
    type Row = { name: string; imvu: string; serial: number; status: string; whole: number };
    const rows: Row[] = [];
    const zones = [...touched.zones];
    const imvus = [...touched.imvus];
    for (let i = 0; i < zones.length; i += 500) {
      const part = zones.slice(i, i + 500);
      rows.push(...(await this.store.all<Row>(`SELECT z.name AS name, z.imvu AS imvu, z.serial AS serial, i.status AS status, ${WHOLE} AS whole FROM zones z JOIN imvus i ON i.id = z.imvu WHERE z.name IN (${part.map(() => '?').join(',')})`, part)));
    }
    for (let i = 0; i < imvus.length; i += 500) {
      const part = imvus.slice(i, i + 500);
      rows.push(...(await this.store.all<Row>(`SELECT z.name AS name, z.imvu AS imvu, z.serial AS serial, i.status AS status, ${WHOLE} AS whole FROM zones z JOIN imvus i ON i.id = z.imvu WHERE z.imvu IN (${part.map(() => '?').join(',')})`, part)));
    }
    // Every name the view held for what was touched, to see which are gone.
    const before = new Set<string>(zones);
    for (const id of imvus) for (const n of this.namesOf(id)) before.add(n);
    const suffix = this.suffix;
    const platformSerial = await platformZoneSerial(this.store, suffix);
    const found = new Map<string, { imvu: string; serial: number }>();
    for (const r of rows) if (!UNSERVED_STATUSES.includes(r.status) && Number(r.whole) === 1 && lowerAscii(r.name) !== suffix) found.set(lowerAscii(r.name), { imvu: r.imvu, serial: Number(r.serial) });
    if (platformSerial !== undefined) {
      found.set(suffix, { imvu: PLATFORM_ZONE_IMVU, serial: platformSerial });
      before.add(suffix);
    }
    const changed: [ZoneInfo, number][] = [];
    let reshaped = false;
    for (const name of before) {
      const e = this.entries.get(name);
      if (e && !found.has(name)) {
        this.entries.delete(name);
        this.unindexImvu(e);
        reshaped = true;
      }
    }
    for (const [name, r] of found) {
      const e = this.entries.get(name);
      if (e && e.imvu === r.imvu) {
        if (e.serial !== r.serial) {
          const previous = e.serial;
          e.serial = r.serial;
          if (e.compiled && e.compiled.serial !== r.serial) e.compiled = undefined;
          changed.push([e, previous]);
        }
        continue;
      }
      if (e) this.unindexImvu(e);
      const fresh: Entry = { name, imvu: r.imvu, serial: r.serial };
      this.entries.set(name, fresh);
      this.indexImvu(fresh);
      reshaped = true;
    }
    if (reshaped) this.generation++;
    this.seenLedgerSize = size;
    this.stats.refreshes++;
    this.stats.partial++;
    for (const [info, previous] of changed) {
      try {
        this.opts.onSerialChange?.(info, previous);
      } catch (err) {
        this.opts.onError?.(err);
      }
    }
  }

  private async load(e: Entry): Promise<Zone | undefined> {
    // One consistent read: the serial before and after the records is the same.
    const read = await readZoneRows(this.store, e.name);
    if (!read) return undefined;
    const zone = new Zone(e.name, read.imvu, read.serial, synthesiseSoa(e.name, read.serial, read.suffix), read.rows);
    this.stats.loads++;
    // Cache it only if the index agrees; otherwise the next refresh decides which is newer.
    if (read.serial === e.serial && read.imvu === e.imvu && this.entries.get(e.name) === e) e.compiled = zone;
    return zone;
  }
}
