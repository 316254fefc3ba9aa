// Re-signing signed zones nobody edits. A secondary serves the signatures it transferred (valid
// 21 days, src/domains/dnssec/signed-zone.ts) until the zone's SOA serial moves; a zone that does
// not change would be served there with expired signatures. Every `checkMs` this finds the signed
// zones whose serial last moved more than `afterMs` ago and submits a platform-signed
// `dnssec.resign` for each through the chokepoint (gates 4 and 17), which bumps the serial and
// nothing else: the server NOTIFYs, the secondary transfers the zone again with fresh signatures.
//
// "Last moved" is the time (`at`) of the newest allowed ledger entry that bumped the zone's serial,
// read from the ledger itself (no new state): on the first check from the first entry at or after
// the cut-off (binary search on `at`, which the chokepoint appends in clock order), then only the
// entries appended since. A zone with no such entry in the window is due.
import type { Receipt } from '../core/policy/chokepoint.ts';
import { decodeEntry } from '../core/ledger/ledger.ts';
import type { Store } from '../core/store/index.ts';
import type { LedgerEntry } from '../core/types.ts';
import { PeriodicTask } from '../core/periodic.ts';

export const DEFAULT_RESIGN_CHECK_MS = 60 * 60 * 1000;
export const DEFAULT_RESIGN_AFTER_MS = 7 * 24 * 60 * 60 * 1000;
/** Entries read, or zones listed, between two turns of the event loop. */
const SLICE = 256;

export interface ResignOptions {
  store: Store;
  /** Signs `dnssec.resign { zone }` as the platform and submits it through the chokepoint. */
  submit: (zone: string) => Promise<Receipt>;
  /** How often to look. Default 1 hour. */
  checkMs?: number;
  /** A signed zone whose serial has not moved for this long is re-signed. Default 7 days. */
  afterMs?: number;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
  /** A check that failed, or a re-signature the gates denied. */
  onError?: (err: unknown, zone?: string) => void;
}

export class ResignScheduler extends PeriodicTask<string> {
  /** Next ledger index to read; unset until the first check. */
  private next: number | undefined;
  /** Zone → time (ms) of the newest entry read so far that moved its serial. */
  private readonly moved = new Map<string, number>();
  private suffix: string | undefined;
  private readonly checkMs: number;
  private readonly afterMs: number;
  private readonly now: () => number;
  readonly stats = { checks: 0, resigned: 0, failed: 0 };

  constructor(private readonly opts: ResignOptions) {
    super();
    this.checkMs = opts.checkMs ?? DEFAULT_RESIGN_CHECK_MS;
    this.afterMs = opts.afterMs ?? DEFAULT_RESIGN_AFTER_MS;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Checks now (soon after start, so a daemon restarted often still re-signs), then every
   * `checkMs`; check() returns the zones a pass re-signed. `after`: the first check waits for it
   * (the daemon: until its API serves; the first pass reads a week of entries).
   */
  start(after?: PromiseLike<unknown>): this {
    return this.startEvery(this.checkMs, after);
  }

  protected failed(err: unknown): void {
    this.opts.onError?.(err);
  }

  protected async pass(): Promise<string[]> {
    const { store } = this.opts;
    const now = this.now();
    const cutoff = now - this.afterMs;
    const size = await store.ledgerSize();
    this.next ??= await this.firstAtOrAfter(cutoff, size);
    // In slices with a turn of the event loop between them: the first pass after a start reads a
    // week of entries, which must not stall the DNS answers served on the same thread.
    while (this.next < size && !this.stopped) {
      const to = Math.min(size, this.next + SLICE);
      for (const blob of await store.readEntries(this.next, to)) await this.note(decodeEntry(blob));
      this.next = to;
      await new Promise((r) => setImmediate(r));
    }
    this.stats.checks++;
    const done: string[] = [];
    for await (const name of this.signedZones()) {
      if (this.stopped) break;
      if ((this.moved.get(name) ?? -Infinity) > cutoff) continue;
      try {
        const r = await this.opts.submit(name);
        if (!r.allowed) throw new Error(`dnssec.resign of ${name} denied (entry ${r.index}): ${r.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason}`).join('; ')}`);
        // The entry itself is read on the next pass; until then, the zone moved now.
        this.moved.set(name, now);
        this.stats.resigned++;
        done.push(name);
      } catch (err) {
        this.stats.failed++;
        this.opts.onError?.(err, name);
      }
    }
    return done;
  }

  /**
   * Signed zones of IMVUs that have not exited, and the platform's own (its key row has no IMVU),
   * in name order, a page at a time (one query over every zone would stall the event loop).
   */
  private async *signedZones(): AsyncGenerator<string> {
    const { store } = this.opts;
    let after = '';
    for (;;) {
      const page = await store.all<{ name: string }>(
        "SELECT DISTINCT k.zone AS name FROM dnssec_keys k LEFT JOIN zones z ON z.name = k.zone LEFT JOIN imvus i ON i.id = z.imvu WHERE k.zone > ? AND (k.imvu = '' OR (i.id IS NOT NULL AND i.status NOT IN ('exited', 'importing') AND NOT EXISTS (SELECT 1 FROM import_parts p WHERE p.zone = k.zone AND p.entry = 0))) ORDER BY k.zone LIMIT ?",
        [after, SLICE],
      );
      for (const { name } of page) yield name;
      if (page.length < SLICE) return;
      after = page[page.length - 1]!.name;
      await new Promise((r) => setImmediate(r));
    }
  }

  /** The first index whose entry was appended at or after `t` (entries are appended in clock order). */
  private async firstAtOrAfter(t: number, size: number): Promise<number> {
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const [blob] = await this.opts.store.readEntries(mid, mid + 1);
      if (Date.parse(decodeEntry(blob!).at) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Records when an allowed entry moved a zone's serial (as src/core/policy/projection-writer.ts bumps it). */
  private async note(e: LedgerEntry): Promise<void> {
    if (!e.decision?.allowed) return;
    const c = e.command.command;
    const b = c.body as Record<string, unknown>;
    let zone: string | undefined;
    switch (c.type) {
      case 'dns.record.add':
      case 'dns.record.remove':
        zone = String(b.zone);
        break;
      case 'domain.verified':
        zone = String(b.domain);
        break;
      case 'dnssec.publish':
      case 'dnssec.activate':
      case 'dnssec.remove':
      case 'dnssec.resign':
      case 'platform.zone':
        zone = String(b.zone).toLowerCase();
        break;
      case 'imvu.create':
        zone = (await this.opts.store.get<{ domain: string }>('SELECT domain FROM imvus WHERE entry = ?', [e.index]))?.domain;
        break;
      case 'dkim.publish':
      case 'dkim.remove':
        zone = (await this.opts.store.get<{ domain: string }>('SELECT domain FROM imvus WHERE id = ?', [String(b.imvu)]))?.domain;
        break;
      default:
        return;
    }
    if (zone === undefined) return;
    this.moved.set(zone, Date.parse(e.at));
    // A zone created below the platform's zone, or a new key of one, changes the platform's zone
    // too (a delegation, a DS: src/domains/registry/zone.ts).
    if (c.type === 'imvu.create' || c.type === 'domain.verified' || c.type === 'dnssec.publish' || c.type === 'dnssec.activate' || c.type === 'dnssec.remove') {
      this.suffix ??= (await this.opts.store.get<{ suffix: string }>('SELECT suffix FROM platform LIMIT 1'))?.suffix;
      if (this.suffix && zone.endsWith(`.${this.suffix}`)) this.moved.set(this.suffix, Date.parse(e.at));
    }
  }
}
