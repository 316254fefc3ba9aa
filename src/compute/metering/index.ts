// Compute metering (gate 6, threat 1.5): the `compute` service identity reads each running
// container's cgroup accounting and reports what the kernel counted as batched `usage.report`s
// (src/domains/metering.ts). The IMVU reports nothing about itself; what it could say is refused.
//
// Cumulative counters become deltas between samples. A counter that goes down (the container
// restarted and its cgroup counts from zero) or a cgroup directory that is a new one (another
// inode) counts from zero: never negative, never twice. The first sight of a cgroup after the
// meter starts is a baseline, not usage: the daemon may have restarted while the container ran
// and reported its usage up to then. The driver calls track() right after creating a container,
// so that its baseline is taken before the workload runs. Memory is a gauge, integrated over time
// between samples (trapezoid). Whole units are reported; the fraction waits for the next sample.
import type { OpenPlatform } from '../../core/platform.ts';
import { ensureMeter, ensureServiceIdentity } from '../../core/service-identity.ts';
import { UsageMeter } from '../../domains/metering.ts';
import { locate, readCgroup, type CgroupLocation, type CgroupSample } from './cgroup.ts';

export { locate, readCgroup, parseBlkioV1, parseCpuStatV2, parseIoStatV2, type CgroupSample } from './cgroup.ts';

export const COMPUTE_METRICS = ['compute.cpu_seconds', 'compute.memory_mb_hours', 'compute.io_operations', 'compute.io_bytes'] as const;

const NS_PER_S = 1_000_000_000n;
/** One MB-hour (2^20 bytes for an hour, like the envelope's GB: 2^30 bytes), in byte-milliseconds. */
const MB_HOUR = (1n << 20n) * 3_600_000n;

interface Tracked {
  instance: string;
  last: CgroupSample;
  at: number;
  /** Remainders below one reported unit. */
  cpuNs: bigint;
  memByteMs: bigint;
}

export type Units = Partial<Record<(typeof COMPUTE_METRICS)[number], bigint>>;

/** Turns successive samples of each IMVU's cgroup into whole units of usage. */
export class UsageTracker {
  private readonly state = new Map<string, Tracked>();

  /** Feeds one sample taken at `at` (ms); returns the whole units used since the previous one. */
  observe(imvu: string, s: CgroupSample, at: number): Units {
    const prev = this.state.get(imvu);
    if (!prev) {
      this.state.set(imvu, { instance: s.instance, last: s, at, cpuNs: 0n, memByteMs: 0n });
      return {};
    }
    // A new cgroup (the container was created again) counts from zero, as does a counter that went down.
    const fresh = prev.instance !== s.instance;
    const delta = (cur: bigint, old: bigint) => (fresh || cur < old ? cur : cur - old);
    const dt = BigInt(Math.max(0, at - prev.at));
    const cpuNs = prev.cpuNs + delta(s.cpuNs, prev.last.cpuNs);
    const memByteMs = prev.memByteMs + ((fresh ? s.memoryBytes : prev.last.memoryBytes + s.memoryBytes) * dt) / (fresh ? 1n : 2n);
    const out: Units = {
      'compute.cpu_seconds': cpuNs / NS_PER_S,
      'compute.memory_mb_hours': memByteMs / MB_HOUR,
      'compute.io_operations': delta(s.ioOps, prev.last.ioOps),
      'compute.io_bytes': delta(s.ioBytes, prev.last.ioBytes),
    };
    this.state.set(imvu, { instance: s.instance, last: s, at, cpuNs: cpuNs % NS_PER_S, memByteMs: memByteMs % MB_HOUR });
    return out;
  }

  /** The container is gone: its next cgroup is a new one. */
  forget(imvu: string): void {
    this.state.delete(imvu);
  }
}

export interface ComputeMeterOptions {
  platform: OpenPlatform;
  /** Where the IMVU's container cgroup is (v1 path under any controller, or a v2 directory); undefined if it has none. */
  cgroupPathOf: (imvu: string) => string | undefined;
  /** How often reports are submitted (default 60 s). */
  intervalMs?: number;
  /** How often the cgroups are read (default: the interval, at most 10 s). */
  sampleMs?: number;
  /** IMVUs to read (default: every IMVU that has not exited). */
  imvus?: () => Promise<string[]>;
  now?: () => number;
  onError?: (err: Error) => void;
}

export interface ComputeMeter {
  readonly meter: UsageMeter;
  /** Takes a baseline of `imvu`'s cgroup now (call it after creating a container, before starting it). */
  track(imvu: string): Promise<void>;
  /** Reads every cgroup once and counts the units used since the previous read. */
  sample(): Promise<void>;
  /** Samples, submits everything counted (one usage.report per IMVU) and returns what was recorded. */
  flush(): ReturnType<UsageMeter['flush']>;
  close(): Promise<void>;
}

/**
 * Starts metering compute for the platform: registers the `compute` service identity and makes it
 * the meter of the compute metrics (platform-signed entries, once), then samples the cgroups every
 * `sampleMs` and reports every `intervalMs`. Timers are unref'd.
 */
export async function startComputeMeter(opts: ComputeMeterOptions): Promise<ComputeMeter> {
  const { platform } = opts;
  const identity = await ensureServiceIdentity(platform, 'compute');
  await ensureMeter(platform, identity, COMPUTE_METRICS);
  const now = opts.now ?? Date.now;
  const meter = new UsageMeter({
    service: 'compute',
    key: identity.key,
    origin: platform.config.origin,
    submit: (s) => platform.chokepoint.submit(s),
    intervalMs: opts.intervalMs ?? 60_000,
    now,
    ...(opts.onError ? { onError: (e: Error) => opts.onError!(e) } : {}),
  });
  const tracker = new UsageTracker();
  const locations = new Map<string, CgroupLocation>();
  const where = (imvu: string): CgroupLocation | undefined => {
    const path = opts.cgroupPathOf(imvu);
    if (!path) return undefined;
    let loc = locations.get(path);
    if (!loc) {
      loc = locate(path);
      locations.set(path, loc);
    }
    return loc;
  };
  const list =
    opts.imvus ?? (async () => (await platform.store.all<{ id: string }>("SELECT id FROM imvus WHERE status <> 'exited' ORDER BY seq")).map((r) => r.id));
  const readOne = async (imvu: string) => {
    const loc = where(imvu);
    const s = loc ? await readCgroup(loc) : undefined;
    if (!s) {
      tracker.forget(imvu);
      return;
    }
    // A zero count opens the IMVU's interval now (at its baseline), so that the usage of the next
    // samples falls inside the interval it is reported for (gate 6 bounds it by that interval).
    meter.count(imvu, 'compute.cpu_seconds', 0);
    for (const [metric, n] of Object.entries(tracker.observe(imvu, s, now()))) if (n > 0n) meter.count(imvu, metric, Number(n));
  };
  let sampling: Promise<void> = Promise.resolve();
  const sample = () => {
    sampling = sampling.then(async () => {
      for (const imvu of await list()) {
        try {
          await readOne(imvu);
        } catch (err) {
          opts.onError?.(err instanceof Error ? err : new Error(String(err)));
        }
      }
    });
    return sampling;
  };
  const sampleMs = opts.sampleMs ?? Math.min(opts.intervalMs ?? 60_000, 10_000);
  const timer = setInterval(() => void sample(), sampleMs);
  timer.unref();
  // Reports are submitted right after a sample, so each carries the usage up to its own end.
  const reporter = setInterval(() => void sample().then(() => meter.flush()), meter.intervalMs);
  reporter.unref();
  return {
    meter,
    track: (imvu) => (sampling = sampling.then(() => readOne(imvu))),
    sample,
    async flush() {
      await sample();
      return meter.flush();
    },
    async close() {
      clearInterval(timer);
      clearInterval(reporter);
      await sample();
      await meter.close();
    },
  };
}
