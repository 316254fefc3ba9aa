// Gateway metering (gate 6): bytes in and out per IMVU from HAProxy's exact per-backend counters,
// reported through the UsageMeter by the `gateway` service identity. HAProxy's counters restart
// from zero with every worker (a reload or a restart), so the last counters seen are persisted
// with the worker they came from (pid and start time): a new worker's counters are all new, the
// same worker's count only their growth. Nothing is counted twice across a daemon or HAProxy
// restart, and what was sampled is reported even if HAProxy dies before the report; what a killed
// worker served after the last sample is lost with it (samples every few seconds, and before
// each reload, keep that small).
import { existsSync, readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { writeFileAtomic } from '../../core/durable.ts';
import type { OpenPlatform } from '../../core/platform.ts';
import { ensureMeter, ensureServiceIdentity, type ServiceIdentity } from '../../core/service-identity.ts';
import { UsageMeter, type FlushResult } from '../../domains/metering.ts';

export const GATEWAY_SERVICE = 'gateway';
export const GATEWAY_METRICS = ['network.bytes_in', 'network.bytes_out'] as const;

/** The `gateway` service identity, registered as the meter of its metrics. */
export async function gatewayIdentity(platform: OpenPlatform): Promise<ServiceIdentity> {
  const id = await ensureServiceIdentity(platform, GATEWAY_SERVICE);
  await ensureMeter(platform, id, GATEWAY_METRICS);
  return id;
}

export interface Counters {
  process: string;
  counters: Map<string, { bytesIn: bigint; bytesOut: bigint; requests: bigint }>;
}

interface State {
  process: string;
  counters: Record<string, { bytesIn: string; bytesOut: string }>;
}

export class GatewayMeter {
  readonly usage: UsageMeter;
  private state: State;
  private timer: NodeJS.Timeout | undefined;
  private sampler: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly now: () => number;
  /** When this process last read the counters, and the IMVUs it saw then. */
  private last: { at: number; seen: Set<string> } | undefined;

  constructor(
    private readonly o: {
      platform: OpenPlatform;
      key: KeyObject;
      stateFile: string;
      read: () => Promise<Counters>;
      intervalMs?: number;
      /** How often the counters are sampled between reports (default 5 s). */
      sampleMs?: number;
      onError?: (e: Error) => void;
      /** Milliseconds since the epoch (tests). */
      now?: () => number;
    },
  ) {
    this.now = o.now ?? Date.now;
    this.usage = new UsageMeter({
      service: GATEWAY_SERVICE,
      key: o.key,
      origin: o.platform.config.origin,
      submit: (s) => o.platform.chokepoint.submit(s),
      onError: (e) => o.onError?.(e),
      ...(o.intervalMs ? { intervalMs: o.intervalMs } : {}),
      now: this.now,
    });
    this.state = existsSync(o.stateFile) ? (JSON.parse(readFileSync(o.stateFile, 'utf8')) as State) : { process: '', counters: {} };
  }

  async start(): Promise<void> {
    await this.sample();
    this.timer = setInterval(() => void this.flush().catch((e: unknown) => this.o.onError?.(e as Error)), this.o.intervalMs ?? 60_000);
    this.timer.unref();
    this.sampler = setInterval(() => void this.sample().catch((e: unknown) => this.o.onError?.(e as Error)), this.o.sampleMs ?? 5000);
    this.sampler.unref();
  }

  /** Reads the counters and counts their growth since the last sample (one sample at a time). */
  sample(): Promise<void> {
    const run = this.chain.then(() => this.sampleNow());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async sampleNow(): Promise<void> {
    const now = await this.o.read();
    const at = this.now();
    const same = now.process === this.state.process;
    // Growth seen now was served after the previous read, when these IMVUs already had a backend
    // (and so existed): their first interval can start there, not at this instant.
    const after = (imvu: string) => (this.last?.seen.has(imvu) ? this.last.at : undefined);
    const next: State = { process: now.process, counters: {} };
    for (const [imvu, c] of now.counters) {
      const last = same ? this.state.counters[imvu] : undefined;
      const prevIn = last ? BigInt(last.bytesIn) : 0n;
      const prevOut = last ? BigInt(last.bytesOut) : 0n;
      // Counters only grow within one worker; smaller means a worker we did not see start.
      const dIn = c.bytesIn >= prevIn ? c.bytesIn - prevIn : c.bytesIn;
      const dOut = c.bytesOut >= prevOut ? c.bytesOut - prevOut : c.bytesOut;
      if (dIn > 0n) this.usage.count(imvu, 'network.bytes_in', Number(dIn), after(imvu));
      if (dOut > 0n) this.usage.count(imvu, 'network.bytes_out', Number(dOut), after(imvu));
      next.counters[imvu] = { bytesIn: c.bytesIn.toString(), bytesOut: c.bytesOut.toString() };
    }
    writeFileAtomic(this.o.stateFile, JSON.stringify(next));
    this.state = next;
    this.last = { at, seen: new Set(now.counters.keys()) };
  }

  /** Samples, then submits one report per IMVU for the interval. */
  async flush(): Promise<FlushResult> {
    await this.sample();
    return this.usage.flush();
  }

  /** The last sample, then everything counted (the state file has already consumed it: nothing may stay behind). */
  async close(): Promise<FlushResult | undefined> {
    clearInterval(this.timer);
    clearInterval(this.sampler);
    return this.sample()
      .then(() => this.usage.close())
      .catch((e: unknown) => {
      this.o.onError?.(e as Error);
      return undefined;
    });
  }
}
