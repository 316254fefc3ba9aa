// The log's side of witnessing, in the daemon: after batches commit, send the NEWEST checkpoint to
// every configured witness (C2SP tlog-witness add-checkpoint, with the consistency proof from the
// size that witness last cosigned), verify what comes back against the witness's configured key,
// and keep it (cosignature-log.ts) so the checkpoint can be served with its cosignatures.
//
// Per witness at most one request is in flight and requests are spaced by `minIntervalMs`: a burst
// of batches costs one request, for its newest checkpoint, never one per batch. Nothing here is on
// the chokepoint's path: a witness that is down, slow or refusing only leaves checkpoints with fewer
// cosignatures; failures back off (1 s doubling up to 60 s) and are reported by status() (the
// daemon's /health), the metrics and a warning with the witness's answer.
import { Counter, Gauge, type Registry } from 'prom-client';
import { parseCheckpoint, splitNote } from '../ledger/checkpoint.ts';
import { requestCosignature, type CosignatureRefusal } from './client.ts';
import { parseCosignerVerifierKey, verifyCosignature } from './cosignature.ts';
import { CosignatureLog } from './cosignature-log.ts';

export interface WitnessEndpoint {
  /** The witness's submission prefix: `<url>/add-checkpoint` is posted to. */
  url: string;
  /** Its verifier key (`<name>+<key id>+<base64 key>`, type 0x04). */
  vkey: string;
}

/** A checkpoint the ledger made durable. */
export interface NewCheckpoint {
  size: number;
  root: Buffer;
  note: string;
}

export interface CollectorLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface CollectorOptions {
  dataDir: string;
  witnesses: WitnessEndpoint[];
  /** RFC 6962 consistency proof between two committed sizes (the ledger's). */
  consistencyProof(oldSize: number, newSize: number): Buffer[];
  /** Deadline of one add-checkpoint exchange (default 10 s). */
  timeoutMs?: number;
  /** Least time between two requests to one witness (default 1 s: a checkpoint is cosigned within about a second, and the witnesses cost the platform a few requests a second at most). */
  minIntervalMs?: number;
  /** First back-off after a failure (default 1 s; doubles up to maxBackoffMs, default 60 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  log?: CollectorLog;
  /** Registers the witness metrics there. */
  registry?: Registry;
}

export interface WitnessError {
  /** What went wrong (the refusal kinds of client.ts, or `behind` when the witness knows a larger tree than ours). */
  kind: CosignatureRefusal['kind'] | 'behind' | 'error';
  /** The HTTP status the witness answered, when it answered. */
  status?: number;
  /** What it said (its body, bounded), or why there was no answer. */
  message: string;
  at: string;
}

export interface WitnessStatus {
  name: string;
  url: string;
  vkey: string;
  /** Tree size of the newest checkpoint it cosigned for us (0: none yet). */
  cosignedSize: number;
  /** When that cosignature was made (the witness's timestamp), ISO 8601; null before the first. */
  cosignedAt: string | null;
  /** The last failed exchange; null once an exchange succeeds again. */
  lastError: WitnessError | null;
  /** It has not cosigned the newest checkpoint, and its last exchange failed or is overdue. */
  lagging: boolean;
}

const STATUS_OF: Partial<Record<CosignatureRefusal['kind'], number>> = { conflict: 409, unprocessable: 422, forbidden: 403, 'unknown-log': 404, 'bad-request': 400 };

class Session {
  readonly name: string;
  readonly keyIdHex: string;
  /** The size the witness last cosigned, as far as we know (a 409 corrects it). */
  knownSize: number;
  busy = false;
  timer: NodeJS.Timeout | undefined;
  lastSentAt = 0;
  failStreak = 0;
  lastError: WitnessError | null = null;
  /** Since when it has been behind the newest checkpoint (undefined: it is not). */
  behindSince: number | undefined;
  abort = new AbortController();

  constructor(
    readonly endpoint: WitnessEndpoint,
    readonly log: CosignatureLog,
  ) {
    this.name = parseCosignerVerifierKey(endpoint.vkey).name;
    this.keyIdHex = endpoint.vkey.split('+')[1]!;
    this.knownSize = log.newest?.size ?? 0;
  }
}

export class CosignatureCollector {
  private readonly sessions: Session[];
  private newest_: (NewCheckpoint & { rootB64: string }) | undefined;
  private closed = false;
  private readonly inflight = new Set<Promise<void>>();
  private readonly timeoutMs: number;
  private readonly minIntervalMs: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private failures: Counter<'witness' | 'reason'> | undefined;

  constructor(private readonly o: CollectorOptions) {
    const seen = new Set<string>();
    for (const w of o.witnesses) {
      parseCosignerVerifierKey(w.vkey);
      if (seen.has(w.vkey)) throw new Error(`witness ${w.vkey} is configured twice`);
      seen.add(w.vkey);
    }
    this.sessions = o.witnesses.map((w) => new Session(w, CosignatureLog.open(o.dataDir, w.vkey)));
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.minIntervalMs = o.minIntervalMs ?? 1000;
    this.backoffMs = o.backoffMs ?? 1_000;
    this.maxBackoffMs = o.maxBackoffMs ?? 60_000;
    if (o.registry) this.registerMetrics(o.registry);
  }

  get witnesses(): readonly WitnessEndpoint[] {
    return this.sessions.map((s) => s.endpoint);
  }

  /** The newest checkpoint noted. */
  get newest(): NewCheckpoint | undefined {
    return this.newest_;
  }

  /** Notes a durable checkpoint; if it is the newest, each idle witness is sent it (soon, never on the caller's stack). */
  notify(cp: NewCheckpoint): void {
    if (this.closed || (this.newest_ && cp.size <= this.newest_.size)) return;
    this.newest_ = { ...cp, rootB64: cp.root.toString('base64') };
    const now = Date.now();
    for (const s of this.sessions) {
      s.behindSince ??= now;
      this.schedule(s);
    }
  }

  /** notify() from a signed note (the daemon's newest checkpoint at start). */
  notifyNote(note: string): void {
    const c = parseCheckpoint(splitNote(note).text);
    this.notify({ size: c.size, root: c.rootHash, note });
  }

  /** Every cosignature line kept for the checkpoint of `size` with root `root`, in configuration order. */
  cosignaturesFor(size: number, root: Buffer | string): string[] {
    const r = typeof root === 'string' ? root : root.toString('base64');
    const out: string[] = [];
    for (const s of this.sessions) {
      const line = s.log.at(size, r);
      if (line !== undefined) out.push(line);
    }
    return out;
  }

  /**
   * The largest tree size cosigned by at least `min` of the witnesses whose key IDs (8 hex digits)
   * are given, among the sizes kept in memory; undefined if none. The caller checks the roots.
   */
  newestCosignedBy(keyIds: string[], min: number): number | undefined {
    const chosen = this.sessions.filter((s) => keyIds.includes(s.keyIdHex));
    if (chosen.length < min || min < 1) return undefined;
    const counts = new Map<number, number>();
    for (const s of chosen) for (const size of s.log.sizes()) counts.set(size, (counts.get(size) ?? 0) + 1);
    let best: number | undefined;
    for (const [size, n] of counts) if (n >= min && (best === undefined || size > best)) best = size;
    return best;
  }

  status(): WitnessStatus[] {
    const now = Date.now();
    const newest = this.newest_;
    return this.sessions.map((s) => {
      const top = s.log.newest;
      const upToDate = !newest || (top !== undefined && top.size >= newest.size);
      return {
        name: s.name,
        url: s.endpoint.url,
        vkey: s.endpoint.vkey,
        cosignedSize: top?.size ?? 0,
        cosignedAt: top ? new Date(top.time * 1000).toISOString() : null,
        lastError: s.lastError,
        lagging: !upToDate && (s.lastError !== null || (s.behindSince !== undefined && now - s.behindSince > this.timeoutMs)),
      };
    });
  }

  /** Stops: no new requests, the ones in flight are aborted, files closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sessions) {
      clearTimeout(s.timer);
      s.timer = undefined;
      s.abort.abort();
    }
    await Promise.allSettled([...this.inflight]);
    await Promise.all(this.sessions.map((s) => s.log.close()));
  }

  private schedule(s: Session, delayMs?: number): void {
    if (this.closed || s.busy || s.timer) return;
    const wait = delayMs ?? Math.max(0, s.lastSentAt + this.minIntervalMs - Date.now());
    s.timer = setTimeout(() => {
      s.timer = undefined;
      const p = this.round(s).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }, wait);
    s.timer.unref();
  }

  private done(s: Session, cp: { size: number; rootB64: string }): boolean {
    return s.log.at(cp.size, cp.rootB64) !== undefined;
  }

  /** One exchange (plus the retry a 409 with another size calls for) with the newest checkpoint. */
  private async round(s: Session): Promise<void> {
    const cp = this.newest_;
    if (this.closed || !cp || this.done(s, cp)) return;
    s.busy = true;
    let failed = false;
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const old = s.knownSize;
        if (old > cp.size) {
          failed = this.fail(s, { kind: 'behind', message: `the witness has cosigned tree size ${old}, larger than this log's newest checkpoint (${cp.size})` }, 'error');
          return;
        }
        s.lastSentAt = Date.now();
        const proof = this.o.consistencyProof(old, cp.size);
        const r = await requestCosignature(s.endpoint.url, cp.note, old, proof, { timeoutMs: this.timeoutMs, witnessVkey: s.endpoint.vkey, signal: s.abort.signal });
        if (this.closed) return;
        if (r.ok) {
          const line = r.cosignatures[0]!;
          const check = verifyCosignature(cp.note, line, s.endpoint.vkey);
          if (!check.valid) {
            failed = this.fail(s, { kind: 'invalid-response', status: 200, message: check.reason }, 'warn');
            return;
          }
          await s.log.append({ size: cp.size, root: cp.rootB64, line, time: check.timestamp });
          s.knownSize = cp.size;
          if (s.lastError) this.o.log?.info({ witness: s.name, url: s.endpoint.url, size: cp.size }, 'witness cosigns again');
          s.lastError = null;
          s.failStreak = 0;
          if (this.newest_ && this.newest_.size <= cp.size) s.behindSince = undefined;
          return;
        }
        if (r.kind === 'conflict' && r.knownSize !== old) {
          // Another size than we thought (a restart of ours, a lost answer): once more from there.
          this.failures?.inc({ witness: s.name, reason: 'conflict' });
          s.knownSize = r.knownSize;
          continue;
        }
        const status = r.kind === 'invalid-response' ? r.status : STATUS_OF[r.kind];
        failed = this.fail(s, { kind: r.kind, ...(status !== undefined ? { status } : {}), message: r.message }, r.kind === 'unreachable' ? 'warn' : r.kind === 'conflict' || r.kind === 'unprocessable' ? 'error' : 'warn');
        return;
      }
      failed = this.fail(s, { kind: 'conflict', status: 409, message: `the witness answered 409 twice (it last cosigned size ${s.knownSize})` }, 'error');
    } catch (err) {
      failed = this.fail(s, { kind: 'error', message: (err as Error)?.message ?? String(err) }, 'error');
    } finally {
      s.busy = false;
      if (!this.closed) {
        if (failed) this.schedule(s, Math.min(this.maxBackoffMs, this.backoffMs * 2 ** Math.min(20, s.failStreak - 1)));
        else if (this.newest_ && !this.done(s, this.newest_)) this.schedule(s);
      }
    }
  }

  private fail(s: Session, e: Omit<WitnessError, 'at'>, level: 'warn' | 'error'): true {
    s.lastError = { ...e, at: new Date().toISOString() };
    s.failStreak++;
    this.failures?.inc({ witness: s.name, reason: e.kind });
    const what = e.status !== undefined ? `witness refused the checkpoint (${e.status})` : 'witness did not cosign the checkpoint';
    // A down witness is reported once per outage, not on every retry.
    if (s.failStreak === 1 || e.kind !== 'unreachable')
      this.o.log?.[level]({ witness: s.name, url: s.endpoint.url, size: this.newest_?.size, reason: e.kind, status: e.status ?? null, answer: e.message }, what);
    return true;
  }

  private registerMetrics(registry: Registry): void {
    const sessions = this.sessions;
    const status = () => this.status();
    const newestCount = () => {
      const n = this.newest_;
      return n ? this.cosignaturesFor(n.size, n.rootB64).length : 0;
    };
    new Gauge({
      name: 'nexus_witness_cosigned_size',
      help: 'Tree size of the newest checkpoint each witness cosigned.',
      labelNames: ['witness'] as const,
      registers: [registry],
      collect() {
        for (const s of sessions) this.set({ witness: s.name }, s.log.newest?.size ?? 0);
      },
    });
    new Gauge({
      name: 'nexus_witness_lagging',
      help: 'Whether a witness has not cosigned the newest checkpoint and its last exchange failed or is overdue (1) or not (0).',
      labelNames: ['witness'] as const,
      registers: [registry],
      collect() {
        for (const st of status()) this.set({ witness: st.name }, st.lagging ? 1 : 0);
      },
    });
    new Gauge({
      name: 'nexus_checkpoint_cosignatures',
      help: 'Cosignatures the daemon holds for its newest checkpoint.',
      registers: [registry],
      collect() {
        this.set(newestCount());
      },
    });
    this.failures = new Counter({
      name: 'nexus_witness_failures_total',
      help: 'Failed add-checkpoint exchanges by witness and reason (unreachable, conflict, unprocessable, forbidden, unknown-log, bad-request, invalid-response, behind, error).',
      labelNames: ['witness', 'reason'] as const,
      registers: [registry],
    });
  }
}
