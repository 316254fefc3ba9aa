// The outbound queue: `enqueue()` signs a submitted message (DKIM, attribution) and writes it
// durably (store.ts) before it resolves; a scheduler delivers what is due, per recipient domain:
// hosted domains straight into the Maildir (no network hop), others to their MX hosts (remote.ts).
// Temporary failures are retried with exponential backoff; a permanent failure, or the retry
// limit, sends one DSN (dsn.ts) to the sender; an entry is removed once every recipient is settled.
import { hostname } from 'node:os';
import type { SqlReader } from '../../core/store/index.ts';
import { buildDsn, statusOf, type FailedRcpt } from './dsn.ts';
import { hostedDomain, maildirDeliverer, PermanentFailure, type DeliverLocal } from './local.ts';
import { deliverRemote, type Outcome, type RemoteOptions } from './remote.ts';
import { QueueStore, type QueueEntry, type RcptEntry } from './store.ts';

export interface EnqueueInput {
  imvu: string;
  /** The sending identity (nx1...), named in the attribution header. */
  identity: string;
  mailFrom: string;
  rcptTo: string[];
  raw: Buffer;
}

/** Turns a submitted message into the one that goes out (src/mail/signing: attribution + DKIM). */
export type Signer = (input: { imvu: string; identity: string; raw: Buffer }) => Promise<Buffer>;

export interface RetryPolicy {
  /** First retry after this long; doubles each attempt. Default 60 s. */
  baseMs: number;
  /** Cap of one delay. Default 1 h. */
  maxMs: number;
  /** Attempts before giving up with a DSN. Default 20 (about 15 h with the defaults). */
  maxAttempts: number;
}

export interface QueueEvent {
  event: 'delivered' | 'deferred' | 'failed' | 'dsn' | 'recovered';
  id: string;
  rcpt?: string;
  detail?: string;
}

export interface MailQueueOptions {
  dataDir: string;
  db: SqlReader;
  /** Default: messages go out as submitted (tests of the queue alone). */
  sign?: Signer;
  /** Delivery to hosted addresses. Default: the Maildir of the mailbox's IMVU (local.ts). */
  deliverLocal?: DeliverLocal;
  /** Delivery to other domains; without it they stay queued (deferred) until the retry limit. */
  remote?: RemoteOptions;
  retry?: Partial<RetryPolicy>;
  /** Entries delivered at once. Default 8. */
  concurrency?: number;
  /** How often due entries are looked for. Default 1 s (an enqueue looks at once). */
  tickMs?: number;
  /** Largest message accepted. Default 35 MiB. */
  maxBytes?: number;
  /** Our host name (EHLO, DSN Reporting-MTA). */
  hostname?: string;
  /** Every delivered recipient's message, for metering (bytes as sent). */
  onDelivered?: (imvu: string, bytes: number, local: boolean) => void;
  onEvent?: (e: QueueEvent) => void;
  now?: () => number;
}

export const RETRY_DEFAULTS: RetryPolicy = { baseMs: 60_000, maxMs: 3_600_000, maxAttempts: 20 };
const ADDRESS = /^[^\s<>@"]{1,64}@[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})+$/i;
const MAX_RCPTS = 1000;

export interface QueueCounters {
  /** Per IMVU: messages and bytes delivered (one per recipient), remote and local. */
  perImvu: Map<string, { messages: number; bytes: number }>;
  delivered: number;
  deferred: number;
  failed: number;
  dsns: number;
}

export class MailQueue {
  readonly store: QueueStore;
  private readonly entries = new Map<string, QueueEntry>();
  private readonly busy = new Set<string>();
  private readonly retry: RetryPolicy;
  private readonly deliverLocal: DeliverLocal;
  private readonly now: () => number;
  private readonly host: string;
  private timer: NodeJS.Timeout | undefined;
  private running = new Set<Promise<void>>();
  private closed = false;
  private scanQueued = false;
  readonly counters: QueueCounters = { perImvu: new Map(), delivered: 0, deferred: 0, failed: 0, dsns: 0 };

  constructor(private readonly opts: MailQueueOptions) {
    this.store = new QueueStore(opts.dataDir);
    this.retry = { ...RETRY_DEFAULTS, ...opts.retry };
    this.deliverLocal = opts.deliverLocal ?? maildirDeliverer(opts.dataDir, opts.db);
    this.now = opts.now ?? Date.now;
    this.host = opts.hostname ?? opts.remote?.heloName ?? hostname();
  }

  /** Loads what a previous run left (in-flight recipients are due again) and starts delivering. */
  start(): { entries: number; inflight: number } {
    const { entries } = this.store.load();
    let inflight = 0;
    for (const e of entries) {
      for (const r of e.rcpts) {
        if (r.state === 'inflight') {
          // Possibly delivered already (a crash between the remote's 250 and our mark): try again.
          r.state = 'queued';
          inflight++;
          this.opts.onEvent?.({ event: 'recovered', id: e.id, rcpt: r.to });
        }
      }
      this.entries.set(e.id, e);
    }
    this.timer = setInterval(() => this.scan(), this.opts.tickMs ?? 1000);
    this.timer.unref();
    this.kick();
    return { entries: entries.length, inflight };
  }

  /** Signs and writes the message durably; resolves with its queue id once it is accepted. */
  async enqueue(input: EnqueueInput): Promise<string> {
    if (this.closed) throw new Error('the mail queue is closed');
    if (input.mailFrom !== '' && !ADDRESS.test(input.mailFrom)) throw new Error(`not an envelope sender: ${input.mailFrom.slice(0, 100)}`);
    if (input.rcptTo.length === 0 || input.rcptTo.length > MAX_RCPTS) throw new Error(`between 1 and ${MAX_RCPTS} recipients`);
    for (const r of input.rcptTo) if (!ADDRESS.test(r)) throw new Error(`not a recipient address: ${r.slice(0, 100)}`);
    if (input.raw.length > (this.opts.maxBytes ?? 35 * 1024 * 1024)) throw new Error('message too large');
    const raw = this.opts.sign ? await this.opts.sign({ imvu: input.imvu, identity: input.identity, raw: input.raw }) : input.raw;
    return this.add(input.imvu, input.identity, input.mailFrom, input.rcptTo, raw);
  }

  private add(imvu: string, identity: string, mailFrom: string, rcptTo: string[], raw: Buffer): string {
    const now = this.now();
    const seen = new Set<string>();
    const rcpts: RcptEntry[] = [];
    for (const to of rcptTo) {
      const k = to.toLowerCase();
      if (seen.has(k)) continue;
      seen.add(k);
      rcpts.push({ to, state: 'queued', attempts: 0, next: now });
    }
    const entry: QueueEntry = { v: 1, id: QueueStore.newId(now), imvu, identity, mailFrom, created: now, bytes: raw.length, rcpts };
    this.store.add(entry, raw);
    this.entries.set(entry.id, entry);
    this.kick();
    return entry.id;
  }

  /** Entries still queued (not yet settled). */
  get size(): number {
    return this.entries.size;
  }

  /** Looks for due entries now (tests; an operator's `flush`). */
  flushNow(): void {
    for (const e of this.entries.values()) for (const r of e.rcpts) if (r.state === 'queued') r.next = Math.min(r.next, this.now());
    this.kick();
  }

  /** Resolves when nothing is being delivered and nothing is due. */
  async idle(): Promise<void> {
    for (;;) {
      if (this.running.size > 0) {
        await Promise.all([...this.running]);
        continue;
      }
      const now = this.now();
      const due = [...this.entries.values()].some((e) => e.rcpts.some((r) => r.state === 'queued' && r.next <= now));
      if (!due) return;
      this.scan();
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Stops taking and starting work; waits for deliveries under way (their state is saved). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.all([...this.running]);
  }

  private kick(): void {
    if (this.scanQueued) return;
    this.scanQueued = true;
    setImmediate(() => {
      this.scanQueued = false;
      this.scan();
    });
  }

  private scan(): void {
    if (this.closed) return;
    const limit = this.opts.concurrency ?? 8;
    const now = this.now();
    for (const e of this.entries.values()) {
      if (this.running.size >= limit) return;
      if (this.busy.has(e.id)) continue;
      if (!e.rcpts.some((r) => r.state === 'queued' && r.next <= now)) continue;
      this.busy.add(e.id);
      const p: Promise<void> = this.process(e)
        .catch((err: unknown) => this.opts.onEvent?.({ event: 'deferred', id: e.id, detail: `queue error: ${(err as Error).message}` }))
        .finally(() => {
          this.busy.delete(e.id);
          this.running.delete(p);
          this.kick();
        });
      this.running.add(p);
    }
  }

  private backoff(attempts: number): number {
    return Math.min(this.retry.baseMs * 2 ** Math.max(0, attempts - 1), this.retry.maxMs);
  }

  private async process(e: QueueEntry): Promise<void> {
    const raw = this.store.readRaw(e.id);
    const now = this.now();
    const byDomain = new Map<string, RcptEntry[]>();
    for (const r of e.rcpts) {
      if (r.state !== 'queued' || r.next > now) continue;
      const d = r.to.slice(r.to.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(d, [...(byDomain.get(d) ?? []), r]);
    }
    for (const [domain, rcpts] of byDomain) {
      if (this.closed) break;
      // Durable before the transaction: a restart knows these may have been delivered.
      for (const r of rcpts) r.state = 'inflight';
      this.store.save(e);
      const outcomes = await this.attempt(domain, e.mailFrom, rcpts, raw);
      for (const r of rcpts) this.settle(e, r, outcomes.get(r.to) ?? { kind: 'temporary', reason: '451 4.3.0 no outcome' }, raw.length);
      this.store.save(e);
    }
    await this.finish(e, raw);
  }

  private async attempt(domain: string, mailFrom: string, rcpts: RcptEntry[], raw: Buffer): Promise<Map<string, Outcome & { local?: boolean }>> {
    const out = new Map<string, Outcome & { local?: boolean }>();
    if (await hostedDomain(this.opts.db, domain)) {
      for (const r of rcpts) {
        try {
          await this.deliverLocal(r.to, raw);
          out.set(r.to, { kind: 'delivered', remote: 'local', local: true });
        } catch (err) {
          const e = err as Error;
          out.set(r.to, e instanceof PermanentFailure ? { kind: 'permanent', reason: e.message } : { kind: 'temporary', reason: `451 4.3.0 local delivery: ${e.message}` });
        }
      }
      return out;
    }
    if (!this.opts.remote) {
      for (const r of rcpts) out.set(r.to, { kind: 'temporary', reason: '451 4.4.0 remote delivery is not configured' });
      return out;
    }
    return deliverRemote(this.opts.remote, domain, mailFrom, rcpts.map((r) => r.to), raw);
  }

  private settle(e: QueueEntry, r: RcptEntry, o: Outcome & { local?: boolean }, bytes: number): void {
    r.attempts++;
    if (o.kind === 'delivered') {
      r.state = 'delivered';
      delete r.error;
      this.counters.delivered++;
      const c = this.counters.perImvu.get(e.imvu) ?? { messages: 0, bytes: 0 };
      c.messages++;
      c.bytes += bytes;
      this.counters.perImvu.set(e.imvu, c);
      this.opts.onDelivered?.(e.imvu, bytes, o.local === true);
      this.opts.onEvent?.({ event: 'delivered', id: e.id, rcpt: r.to, detail: o.remote });
      return;
    }
    r.error = o.reason;
    if (o.remote) r.remote = o.remote;
    else delete r.remote;
    if (o.kind === 'permanent' || r.attempts >= this.retry.maxAttempts) {
      r.state = 'failed';
      if (o.kind !== 'permanent') r.error = `${o.reason} (gave up after ${r.attempts} attempts)`;
      this.counters.failed++;
      this.opts.onEvent?.({ event: 'failed', id: e.id, rcpt: r.to, detail: r.error });
      return;
    }
    r.state = 'queued';
    r.next = this.now() + this.backoff(r.attempts);
    this.counters.deferred++;
    this.opts.onEvent?.({ event: 'deferred', id: e.id, rcpt: r.to, detail: r.error });
  }

  /** Once every recipient is settled: one DSN for the failed ones (never for a DSN), then removal. */
  private async finish(e: QueueEntry, raw: Buffer): Promise<void> {
    if (e.rcpts.some((r) => r.state === 'queued' || r.state === 'inflight')) return;
    const failed = e.rcpts.filter((r) => r.state === 'failed');
    if (failed.length > 0 && e.mailFrom !== '' && !e.dsn) {
      const list: FailedRcpt[] = failed.map((r) => ({
        to: r.to,
        diagnostic: r.error ?? '550 5.0.0 failed',
        status: statusOf(r.error ?? '').replace(/^4/, '5'),
        ...(r.remote ? { remoteMta: r.remote.replace(/ \[.*$/, '') } : {}),
      }));
      const dsn = buildDsn({ reportingMta: this.host, to: e.mailFrom, queueId: e.id, arrival: new Date(e.created), failed: list, original: raw });
      // The DSN is queued (durably) before the original goes: a crash in between sends it twice, never zero times.
      const id = this.add(e.imvu, e.identity, '', [e.mailFrom], dsn);
      e.dsn = true;
      this.counters.dsns++;
      this.opts.onEvent?.({ event: 'dsn', id: e.id, rcpt: e.mailFrom, detail: id });
    }
    this.store.remove(e.id);
    this.entries.delete(e.id);
  }
}
