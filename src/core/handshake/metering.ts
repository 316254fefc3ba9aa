// Billing rules that bind usage to time and physics (DESIGN.md, "The hostile operator"): the grace
// within which an interval must be reported, which metric names can be metered at all and what
// physical quantity bounds each, the platform's published capacities, and which identity meters
// which metric. Pure data and arithmetic: gate 6 applies it to ledger-derived state.
import { z } from 'zod';
import { MetricName } from './pricebook.ts';

/** A usage interval must end no earlier than this before the entry's time (`at`); a period closes this long after it ends. */
export const GRACE_MS = 60 * 60 * 1000;

/** What physically bounds a metric over an interval. */
export type BoundKind =
  | 'cpu_seconds'
  | 'cpu_core_hours'
  | 'memory_gb_hours'
  | 'memory_mb_hours'
  | 'io_bytes'
  | 'io_operations'
  | 'storage_gb_months'
  | 'storage_mb_hours'
  | 'dns_queries'
  | 'link_bytes'
  | 'link_gb'
  | 'mail_messages';

/**
 * The only metric names that can be metered, each with its bound. A name not here cannot be
 * registered to a meter nor reported: there would be nothing to hold it to.
 */
export const METRIC_BOUNDS: Readonly<Record<string, BoundKind>> = {
  'compute.cpu_seconds': 'cpu_seconds',
  'compute.cpu_core_hours': 'cpu_core_hours',
  'compute.memory_gb_hours': 'memory_gb_hours',
  'compute.io_operations': 'io_operations',
  // Compute as the kernel counts it (src/compute/metering): fine enough units that a one-minute
  // interval of a small workload is a whole number.
  'compute.memory_mb_hours': 'memory_mb_hours',
  'compute.io_bytes': 'io_bytes',
  'mail.storage_gb_months': 'storage_gb_months',
  // Mail storage as the IMAP service samples it (src/mail/imap/service.ts): a unit fine enough that a
  // one-minute interval of a small mailbox is a whole number.
  'mail.storage_mb_hours': 'storage_mb_hours',
  'dns.queries': 'dns_queries',
  'network.bytes_in': 'link_bytes',
  'network.bytes_out': 'link_bytes',
  'network.bandwidth_gb': 'link_gb',
  'mail.bytes_in': 'link_bytes',
  'mail.bytes_out': 'link_bytes',
  'mail.messages': 'mail_messages',
};

/** Not a metric: the name under which one identity is registered as the source of `revenue.record` entries. */
export const REVENUE_STREAM = 'revenue.records';

/** Names a `meter.register` may assign: every bounded metric, and the revenue stream. */
export function isMeterable(name: string): boolean {
  return Object.hasOwn(METRIC_BOUNDS, name) || name === REVENUE_STREAM;
}

export const MeterRegisterBody = z.strictObject({
  identity: z.string().regex(/^nx1[a-z2-7]{32}$/, 'must be an identity id (nx1...)'),
  metrics: z
    .array(MetricName)
    .min(1, 'name at least one metric')
    .max(32)
    .refine((m) => new Set(m).size === m.length, 'metrics must not repeat'),
});
export type MeterRegisterBody = z.infer<typeof MeterRegisterBody>;

const rate = (what: string, max: number) => z.number({ error: `${what} must be a number` }).int(`${what} must be a whole number`).min(1).max(max);

/** What the platform can physically serve, published in the ledger (`capacity.publish`). */
export const CapacityBody = z.strictObject({
  /** Authoritative DNS answers per second, all zones together. */
  dns_queries_per_second: rate('dns_queries_per_second', 1_000_000_000),
  /** The link's capacity in bytes per second (one direction). */
  link_bytes_per_second: rate('link_bytes_per_second', 1_000_000_000_000),
  /** Mail messages accepted or sent per second. */
  mail_messages_per_second: rate('mail_messages_per_second', 10_000_000),
});
export type Capacity = z.infer<typeof CapacityBody>;

/** Published at init: one node on a 10 Gbit/s link. An operator publishes new ones; each applies to intervals that start after it. */
export const DEFAULT_CAPACITY: Capacity = {
  dns_queries_per_second: 100_000,
  link_bytes_per_second: 1_250_000_000,
  mail_messages_per_second: 100,
};

/** An IMVU envelope as it was over part of an interval. */
export interface EnvelopePiece {
  /** How long (ms) this envelope was in force within the interval. */
  ms: number;
  cpu_cores: number;
  memory_gb: number;
  storage_gb: number;
  iops: number;
  burst_multiplier: number;
}

const SECOND = 1000n;
/**
 * The most one block IO operation can move: the block layer splits requests above the device's
 * max_sectors_kb, which Linux caps far below this (BIO_MAX_VECS pages per bio, a few MiB per
 * request). A generous bound: IO bytes are at most the envelope's IOPS times this.
 */
export const IO_MAX_BYTES_PER_OPERATION = 32n * 1024n * 1024n;
const HOUR = 3_600_000n;

/**
 * Whether `quantity` of a metric of `kind` fits, physically, in an interval of `ms` milliseconds
 * starting and ending in a period of `periodMs` milliseconds, given the envelope pieces that cover the
 * interval and the capacity in force at its start. Exact integer arithmetic: quantity × unit ≤ rate × time.
 * Returns the largest quantity allowed.
 */
export function physicalLimit(kind: BoundKind, ms: number, envelope: readonly EnvelopePiece[], capacity: Capacity, periodMs: number): bigint {
  const t = BigInt(ms);
  const over = (f: (p: EnvelopePiece) => number) => envelope.reduce((sum, p) => sum + BigInt(f(p)) * BigInt(p.ms), 0n);
  switch (kind) {
    case 'cpu_seconds':
      return over((p) => p.cpu_cores * p.burst_multiplier) / SECOND;
    case 'cpu_core_hours':
      return over((p) => p.cpu_cores * p.burst_multiplier) / HOUR;
    case 'memory_gb_hours':
      return over((p) => p.memory_gb) / HOUR;
    case 'memory_mb_hours':
      return over((p) => p.memory_gb * 1024) / HOUR;
    case 'io_bytes':
      return (over((p) => p.iops) * IO_MAX_BYTES_PER_OPERATION) / SECOND;
    case 'io_operations':
      return over((p) => p.iops) / SECOND;
    case 'storage_gb_months':
      return over((p) => p.storage_gb) / BigInt(periodMs);
    case 'storage_mb_hours':
      return over((p) => p.storage_gb * 1024) / HOUR;
    case 'dns_queries':
      return (BigInt(capacity.dns_queries_per_second) * t) / SECOND;
    case 'link_bytes':
      return (BigInt(capacity.link_bytes_per_second) * t) / SECOND;
    case 'link_gb':
      return (BigInt(capacity.link_bytes_per_second) * t) / (SECOND * 1_000_000_000n);
    case 'mail_messages':
      return (BigInt(capacity.mail_messages_per_second) * t) / SECOND;
  }
}

/** Bounds that depend on the IMVU's envelope (the others on published capacities). */
export function needsEnvelope(kind: BoundKind): boolean {
  return (
    kind === 'cpu_seconds' ||
    kind === 'cpu_core_hours' ||
    kind === 'memory_gb_hours' ||
    kind === 'memory_mb_hours' ||
    kind === 'io_operations' ||
    kind === 'io_bytes' ||
    kind === 'storage_gb_months' ||
    kind === 'storage_mb_hours'
  );
}
