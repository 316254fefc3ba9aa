// Metering into the ledger (gate 6): a service counts what it serves per IMVU in memory, and every
// interval submits one `usage.report` per IMVU, signed by the service's own identity, through the
// chokepoint. The log grows with activity intervals, not with packets (DESIGN.md, "The ledger").
//
// Counts are never dropped because a submission failed: a report that throws (nothing was
// recorded) is merged back and resubmitted with the next interval, with its original start. A
// report the gates deny is recorded with its numbers (blocked and logged), so it is not retried.
// A period never spans two UTC months (statements bill usage to the month of `period.start`):
// counting past a month boundary seals the bucket at the boundary. What is lost: at most one
// interval of counts if the process dies without a graceful shutdown (close() flushes).
//
// Gate 6 holds every report to time and physics, so the intervals are contiguous: each starts where
// the meter's previous flush ended (or at the month's start; an IMVU's first, at its first count, as
// the IMVU may be younger than the last flush), ends at the flush (the timer's flush leaves an interval
// shorter than half its period open for the next), never overlaps the one before and never ends ahead of the clock. The queries counted are
// bounded by the published DNS capacity over the whole interval. A report that cannot be recorded
// within the grace (an hour, src/core/handshake/metering.ts) after its interval ended is denied.

import type { KeyObject } from 'node:crypto';
import { signCommand } from '../core/identity/envelope.ts';
import type { Receipt } from '../core/policy/chokepoint.ts';
import type { SignedCommand } from '../core/types.ts';

export const DEFAULT_METER_INTERVAL_MS = 60_000;
/** Reports signed and submitted together in one flush slice. */
const FLUSH_SLICE = 32;

export interface UsageMeterOptions {
  /** Service name written into every report (`dns`). */
  service: string;
  /** The service identity's private key: it signs every report. */
  key: KeyObject;
  /** The platform's log origin, part of every signed report. */
  origin: string;
  /** Where reports go: the chokepoint's submit(). */
  submit: (signed: SignedCommand) => Promise<Receipt>;
  /** Default 60 s. */
  intervalMs?: number;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
  /** A report that could not be submitted (kept and retried) or was denied (recorded, not retried). */
  onError?: (err: Error, report: UsageReport) => void;
  /** A report recorded as allowed. */
  onReport?: (report: UsageReport, receipt: Receipt) => void;
}

/** One period of one IMVU's usage of this service. */
export interface UsageReport {
  imvu: string;
  /** Milliseconds since the epoch; start < end. */
  start: number;
  end: number;
  metrics: Map<string, bigint>;
}

export interface FlushResult {
  /** Reports recorded as allowed. */
  reported: UsageReport[];
  /** Reports recorded as denied (not retried). */
  denied: UsageReport[];
  /** Reports whose submission failed; kept for the next flush. */
  failed: UsageReport[];
}

export interface MeterStats {
  reported: number;
  denied: number;
  failed: number;
  /** Units counted and not yet recorded, summed over metrics and IMVUs. */
  pendingUnits: bigint;
}

interface Bucket {
  start: number;
  /** The first instant of the UTC month after `start`. */
  boundary: number;
  /** Plain numbers on the hot path (exact far beyond any interval's count); BigInt when sealed. */
  metrics: Map<string, number>;
}

function sealed(imvu: string, b: Bucket, end: number): UsageReport {
  return { imvu, start: b.start, end, metrics: new Map([...b.metrics].map(([k, v]) => [k, BigInt(v)])) };
}

function monthStart(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

function nextMonth(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

function monthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

function add(into: Map<string, bigint>, from: Map<string, bigint>): void {
  for (const [k, v] of from) into.set(k, (into.get(k) ?? 0n) + v);
}

export function reportBody(service: string, r: UsageReport): { imvu: string; service: string; period: { start: string; end: string }; metrics: Record<string, string> } {
  return {
    imvu: r.imvu,
    service,
    period: { start: new Date(r.start).toISOString(), end: new Date(r.end).toISOString() },
    metrics: Object.fromEntries([...r.metrics].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, v.toString()])),
  };
}

export class UsageMeter {
  readonly service: string;
  readonly intervalMs: number;
  private open = new Map<string, Bucket>();
  /** Sealed (month boundary) or failed reports waiting for the next flush. */
  private waiting: UsageReport[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<FlushResult> | undefined;
  private closed = false;
  private readonly now: () => number;
  private readonly totals = { reported: 0, denied: 0, failed: 0 };
  /** Where the next interval starts: the meter's start, then the end of each flush. */
  private since: number;
  /** IMVUs counted since the meter started: their intervals follow on from the previous one. */
  private readonly seen = new Set<string>();

  constructor(private readonly opts: UsageMeterOptions) {
    this.service = opts.service;
    this.intervalMs = opts.intervalMs ?? DEFAULT_METER_INTERVAL_MS;
    this.now = opts.now ?? Date.now;
    this.since = this.now();
  }

  /**
   * Counts `n` units of `metric` for `imvu`. Synchronous and cheap: called per DNS response.
   * `after`: an instant before which none of these units can have been served and at which the
   * IMVU already existed (a sampler's previous sample that saw the IMVU). It lets an IMVU's first
   * interval start there rather than at this count, so a flush in the same millisecond reports it.
   */
  count(imvu: string, metric: string, n = 1, after?: number): void {
    const now = this.now();
    let b = this.open.get(imvu);
    if (b && now >= b.boundary) {
      // The month turned: what was counted so far belongs to the month that ended.
      this.waiting.push(sealed(imvu, b, b.boundary));
      b = undefined;
    }
    if (!b) {
      // An IMVU not seen before starts at its first count (it may not have existed at the last flush).
      const first = after !== undefined && after <= now ? Math.max(after, this.since) : now;
      const start = this.seen.has(imvu) ? Math.max(this.since, monthStart(now)) : Math.max(first, monthStart(now));
      this.seen.add(imvu);
      b = { start, boundary: nextMonth(now), metrics: new Map() };
      this.open.set(imvu, b);
    }
    b.metrics.set(metric, (b.metrics.get(metric) ?? 0) + n);
  }

  stats(): MeterStats {
    let pendingUnits = 0n;
    for (const b of this.open.values()) for (const v of b.metrics.values()) pendingUnits += BigInt(v);
    for (const r of this.waiting) for (const v of r.metrics.values()) pendingUnits += v;
    return { ...this.totals, pendingUnits };
  }

  /** Starts the interval timer (unref'd: it never keeps the process alive by itself). */
  start(): this {
    if (!this.closed && !this.timer) this.schedule();
    return this;
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush(true).finally(() => {
        if (!this.closed) this.schedule();
      });
    }, this.intervalMs);
    this.timer.unref();
  }

  /**
   * Submits everything counted so far; never runs twice at once. `young` (the interval timer): an
   * interval shorter than half the meter's (an IMVU's first, opened at its first count, or one
   * after an explicit flush) waits for the next flush. Gate 6 bounds counts by the published
   * capacity over the interval, and a message counted 3 ms before the flush does not fit in 3 ms at
   * 100 messages per second: the report would be denied and its counts lost.
   */
  flush(young = false): Promise<FlushResult> {
    const run = (this.running ?? Promise.resolve()).then(
      () => this.flushNow(young),
      () => this.flushNow(young),
    );
    this.running = run;
    return run;
  }

  /** Stops the timer and flushes what is left (graceful shutdown). */
  async close(): Promise<FlushResult> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const result = await this.flush();
    // Counts from the very millisecond of the last flush wait for an interval that is not empty.
    for (let i = 0; i < 3 && this.open.size > 0; i++) {
      await new Promise((r) => setTimeout(r, 2));
      const more = await this.flush();
      result.reported.push(...more.reported);
      result.denied.push(...more.denied);
      result.failed.push(...more.failed);
    }
    return result;
  }

  private async flushNow(holdYoung: boolean): Promise<FlushResult> {
    const now = this.now();
    const items = this.waiting;
    this.waiting = [];
    const keep = new Map<string, Bucket>();
    for (const [imvu, b] of this.open) {
      // start < end always (gate 6), and the end is never ahead of the clock: a bucket opened this
      // very millisecond stays open; one opened in an earlier month ends at that month's end.
      const end = Math.min(b.boundary, now);
      const young = holdYoung && end < b.boundary && end - b.start < this.intervalMs / 2;
      if (end > b.start && !young) items.push(sealed(imvu, b, end));
      else keep.set(imvu, b);
    }
    this.open = keep;
    if (now > this.since) this.since = now;

    // One report per IMVU and month: retries merge with the new counts instead of adding entries.
    const groups = new Map<string, UsageReport>();
    for (const it of items) {
      if ([...it.metrics.values()].every((v) => v === 0n)) continue;
      const key = `${it.imvu} ${monthOf(it.start)}`;
      const g = groups.get(key);
      if (!g) groups.set(key, { imvu: it.imvu, start: it.start, end: it.end, metrics: new Map(it.metrics) });
      else {
        g.start = Math.min(g.start, it.start);
        g.end = Math.max(g.end, it.end);
        add(g.metrics, it.metrics);
      }
    }

    const result: FlushResult = { reported: [], denied: [], failed: [] };
    // In slices, each signed and committed before the next is signed: a flush of thousands of
    // reports never holds the event loop (and the DNS answers on it) for more than one slice.
    const all = [...groups.values()];
    for (let i = 0; i < all.length; i += FLUSH_SLICE) {
      if (i > 0) await new Promise((r) => setImmediate(r));
      await this.submitSlice(all.slice(i, i + FLUSH_SLICE), result);
    }
    return result;
  }

  private async submitSlice(slice: UsageReport[], result: FlushResult): Promise<void> {
    await Promise.all(
      slice.map(async (r) => {
        let receipt: Receipt;
        try {
          receipt = await this.opts.submit(signCommand(this.opts.key, 'usage.report', reportBody(this.service, r), { origin: this.opts.origin }));
        } catch (err) {
          // Nothing was recorded: keep the counts for the next interval.
          this.waiting.push(r);
          result.failed.push(r);
          this.totals.failed++;
          this.report(err instanceof Error ? err : new Error(String(err)), r);
          return;
        }
        if (receipt.allowed) {
          result.reported.push(r);
          this.totals.reported++;
          this.opts.onReport?.(r, receipt);
        } else {
          result.denied.push(r);
          this.totals.denied++;
          const why = receipt.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason ?? 'denied'}`).join('; ');
          this.report(new Error(`usage report for ${r.imvu} denied (recorded as ledger entry ${receipt.index}): ${why}`), r);
        }
      }),
    );
  }

  private report(err: Error, r: UsageReport): void {
    try {
      this.opts.onError?.(err, r);
    } catch {
      // a logging callback must not break metering
    }
  }
}
