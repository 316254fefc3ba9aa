// Closing periods by itself: the daemon checks at start and every minute whether the oldest period
// not yet closed has ended and its grace has passed, and if so submits the platform-signed
// `period.close` entries with every billed IMVU's totals, read from the projection (gate 6 checks
// them against the same totals; the verifier recomputes them from the entries). Periods close in
// order, from the platform's first period on, one entry for a period nobody used.
import type { Receipt } from '../policy/chokepoint.ts';
import { PeriodicTask } from '../periodic.ts';
import { decodeEntry } from '../ledger/ledger.ts';
import type { Store } from '../store/index.ts';
import type { Json } from '../types.ts';
import { MAX_CLOSE_STATEMENTS, type PeriodCloseBody } from './close.ts';
import { GRACE_MS } from './metering.ts';
import { nextPeriod, periodEndMillis, periodOfInstant } from './period.ts';
import { closeChunk } from './totals.ts';

export const DEFAULT_CLOSE_CHECK_MS = 60_000;
/** Periods closed in one pass at most (a daemon that was down for years catches up over several). */
const MAX_PERIODS_PER_PASS = 24;

export interface PeriodCloserOptions {
  store: Store;
  /** Signs `period.close` with the platform key and submits it through the chokepoint. */
  submit: (body: { [k: string]: Json }) => Promise<Receipt>;
  /** How often to look. Default 1 minute. */
  checkMs?: number;
  /** Milliseconds since the epoch: the clock the chokepoint dates entries by (tests). */
  now?: () => number;
  onError?: (err: unknown) => void;
}

export class PeriodCloser extends PeriodicTask<string> {
  private readonly now: () => number;
  readonly stats = { checks: 0, closed: 0, failed: 0 };

  constructor(private readonly opts: PeriodCloserOptions) {
    super();
    this.now = opts.now ?? Date.now;
  }

  protected failed(err: unknown): void {
    this.stats.failed++;
    this.opts.onError?.(err);
  }

  /** Checks now (soon after start, or once `after` resolves) and then every `checkMs`; check() returns the periods a pass closed. */
  start(after?: PromiseLike<unknown>): this {
    return this.startEvery(this.opts.checkMs ?? DEFAULT_CLOSE_CHECK_MS, after);
  }

  /** The oldest period not closed yet: one being closed, the one after the last closed, or the platform's first. */
  private async oldestOpen(): Promise<string | undefined> {
    const { store } = this.opts;
    const closing = await store.get<{ period: string }>("SELECT period FROM period_closes WHERE status = 'closing' LIMIT 1");
    if (closing) return closing.period;
    const last = await store.get<{ p: string | null }>('SELECT MAX(period) AS p FROM period_closes');
    if (last?.p) return nextPeriod(last.p);
    if ((await store.ledgerSize()) === 0) return undefined;
    const [genesis] = await store.readEntries(0, 1);
    const first = periodOfInstant(decodeEntry(genesis!).at);
    const billed = await store.get<{ p: string | null }>('SELECT MIN(period) AS p FROM billing_entries');
    return billed?.p && billed.p < first ? billed.p : first;
  }

  protected async pass(): Promise<string[]> {
    const done: string[] = [];
    const now = this.now();
    this.stats.checks++;
    for (let n = 0; n < MAX_PERIODS_PER_PASS && !this.stopped; n++) {
      const period = await this.oldestOpen();
      if (!period || !(now > periodEndMillis(period) + GRACE_MS)) break;
      for (;;) {
        const chunk = await closeChunk(this.opts.store, period, MAX_CLOSE_STATEMENTS);
        const body: PeriodCloseBody = { period, statements: chunk.statements, complete: chunk.complete };
        const r = await this.opts.submit(body as unknown as { [k: string]: Json });
        if (!r.allowed)
          throw new Error(`period.close of ${period} denied (ledger entry ${r.index}): ${r.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason}`).join('; ')}`);
        if (chunk.complete) break;
      }
      this.stats.closed++;
      done.push(period);
    }
    return done;
  }
}
