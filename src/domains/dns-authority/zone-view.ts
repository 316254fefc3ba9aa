import type { Store } from '../../core/store/index.ts';
import { lowerAscii } from '../records/rdata.ts';
import { synthesiseSoa } from '../records/soa.ts';
import { PLATFORM_ZONE_IMVU, platformZoneSerial, readZoneRows } from '../registry/zone.ts';
import { Zone } from './zone.ts';

// The DNS server's read-only view of the projections: which zones are hosted (name, IMVU, serial)
// and, per zone, a compiled in-memory copy keyed by its serial. Every change that affects a zone's
// answers passes the chokepoint, which bumps `zones.serial` in the same transaction; so a compiled
// zone is current exactly while its serial is. The index is refreshed by polling: a cheap
// `ledgerSize()` every `refreshMs` (default 200 ms), and the zone list (name, imvu, serial) only
// when the ledger has grown, plus a full re-read every `resyncMs` whatever happens. A zone whose
// serial moved is recompiled on its next query. Reads only: it never writes a projection.
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
  onError?: (err: unknown) => void;
  /** Called when a zone's serial moved (not for zones that appear): NOTIFY hooks in here. */
  onSerialChange?: (zone: ZoneInfo, previous: number) => void;
}

export class ZoneView {
  private entries = new Map<string, Entry>();
  private suffix = '';
  private seenLedgerSize = -1;
  private lastSync = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  /** Counters for tests and metrics. */
  readonly stats = { refreshes: 0, loads: 0, errors: 0 };
  /**
   * Moves whenever the set of hosted zones changes (a zone appears, goes, changes IMVU, or the
   * platform suffix changes): what `enclosing()` answers may then differ for any name. Serial
   * changes alone do not move it (see `serialOf`). The response cache keys its entries on both.
   */
  generation = 0;

  private constructor(
    private readonly store: Store,
    private readonly opts: Required<Omit<ZoneViewOptions, 'onError' | 'onSerialChange'>> & Pick<ZoneViewOptions, 'onError' | 'onSerialChange'>,
  ) {}

  static async open(store: Store, opts: ZoneViewOptions = {}): Promise<ZoneView> {
    const view = new ZoneView(store, { refreshMs: opts.refreshMs ?? 200, resyncMs: opts.resyncMs ?? 5000, onError: opts.onError, onSerialChange: opts.onSerialChange });
    await view.refresh(true);
    view.timer = setInterval(() => void view.refresh().catch(() => undefined), view.opts.refreshMs);
    view.timer.unref();
    return view;
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

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
  }

  private async sync(force: boolean): Promise<void> {
    if (this.closed) return;
    const size = await this.store.ledgerSize();
    const now = Date.now();
    if (!force && size === this.seenLedgerSize && now - this.lastSync < this.opts.resyncMs) return;
    const platform = await this.store.get<{ suffix: string }>('SELECT suffix FROM platform LIMIT 1');
    // An exited IMVU's zones are no longer served (queries for them are REFUSED, like any name not hosted here).
    let rows = await this.store.all<{ name: string; imvu: string; serial: number }>(
      "SELECT z.name AS name, z.imvu AS imvu, z.serial AS serial FROM zones z JOIN imvus i ON i.id = z.imvu WHERE i.status <> 'exited'",
    );
    const suffix = platform ? lowerAscii(platform.suffix) : 'invalid';
    const platformSerial = platform ? await platformZoneSerial(this.store, suffix) : undefined;
    if (platformSerial !== undefined)
      rows = [...rows.filter((r) => lowerAscii(r.name) !== suffix), { name: suffix, imvu: PLATFORM_ZONE_IMVU, serial: platformSerial }];
    const next = new Map<string, Entry>();
    const changed: [ZoneInfo, number][] = [];
    let reshaped = suffix !== this.suffix;
    for (const r of rows) {
      const name = lowerAscii(r.name);
      const serial = Number(r.serial);
      const e = this.entries.get(name);
      if (e && e.imvu === r.imvu && suffix === this.suffix) {
        if (e.serial !== serial) {
          const previous = e.serial;
          e.serial = serial;
          if (e.compiled && e.compiled.serial !== serial) e.compiled = undefined;
          changed.push([e, previous]);
        }
        next.set(name, e);
      } else {
        next.set(name, { name, imvu: r.imvu, serial });
        reshaped = true;
      }
    }
    // Same size and every zone the one held before: the set of names is unchanged.
    if (reshaped || next.size !== this.entries.size) this.generation++;
    this.suffix = suffix;
    this.entries = next;
    this.seenLedgerSize = size;
    this.lastSync = now;
    this.stats.refreshes++;
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
