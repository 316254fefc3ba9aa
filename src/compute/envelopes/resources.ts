// An IMVU's envelope (table `envelopes`) as the OCI runtime spec's `linux.resources`, which runc
// writes into the IMVU's cgroups. A pure function of the envelope and the data volume's device, so
// the same ledger always yields the same limits, and the kernel's values can be compared with it.

/** The envelope row as recorded (src/core/store/schema.ts, table `envelopes`). */
export interface Envelope {
  cpu_cores: number;
  memory_gb: number;
  storage_gb: number;
  iops: number;
  burst_multiplier: number;
  burst_minutes: number;
}

/** A block device, as stat(2) reports it for the IMVU's data directory. */
export interface BlockDevice {
  major: number;
  minor: number;
}

/** The CFS period: 100 ms, the kernel's default; the quota is cores x period. */
export const CPU_PERIOD_US = 100_000;
/** Processes (threads included) per envelope core: enough for any sane service, a wall for a fork bomb. */
export const PIDS_PER_CORE = 256;
/** Bytes per second allowed per IOPS of the envelope: one operation of up to 256 KiB. */
export const BYTES_PER_IO = 256 * 1024;
const GiB = 1024 ** 3;

/** The subset of OCI `linux.resources` the platform sets (field names as in the runtime spec). */
export interface OciResources {
  cpu: { quota: number; period: number };
  memory: { limit: number; swap: number };
  pids: { limit: number };
  blockIO?: {
    throttleReadIOPSDevice: { major: number; minor: number; rate: number }[];
    throttleWriteIOPSDevice: { major: number; minor: number; rate: number }[];
    throttleReadBpsDevice: { major: number; minor: number; rate: number }[];
    throttleWriteBpsDevice: { major: number; minor: number; rate: number }[];
  };
}

function positiveInt(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new RangeError(`envelope ${name} must be an integer 1..${max}, not ${v}`);
  return v;
}

/**
 * The OCI resources for an envelope. `burst` raises only the CPU quota, by the envelope's
 * burst_multiplier (the lifecycle spec's burst policy); memory, pids and IO never burst.
 * Memory swap equals the limit: memory + swap may not exceed the limit, so no swap at all.
 * Without a block device (the data volume on tmpfs or overlay) there is no IO throttle to set.
 */
export function envelopeResources(env: Envelope, device: BlockDevice | undefined, opts: { burst?: boolean } = {}): OciResources {
  const cores = positiveInt('cpu_cores', env.cpu_cores, 1024);
  const memoryGb = positiveInt('memory_gb', env.memory_gb, 65536);
  const iops = positiveInt('iops', env.iops, 10_000_000);
  const multiplier = opts.burst ? positiveInt('burst_multiplier', env.burst_multiplier, 16) : 1;
  const memory = memoryGb * GiB;
  const out: OciResources = {
    cpu: { quota: cores * multiplier * CPU_PERIOD_US, period: CPU_PERIOD_US },
    memory: { limit: memory, swap: memory },
    pids: { limit: cores * PIDS_PER_CORE },
  };
  if (device) {
    if (!Number.isInteger(device.major) || !Number.isInteger(device.minor) || device.major < 0 || device.minor < 0) throw new RangeError('device major:minor must be non-negative integers');
    const dev = (rate: number) => [{ major: device.major, minor: device.minor, rate }];
    out.blockIO = {
      throttleReadIOPSDevice: dev(iops),
      throttleWriteIOPSDevice: dev(iops),
      throttleReadBpsDevice: dev(iops * BYTES_PER_IO),
      throttleWriteBpsDevice: dev(iops * BYTES_PER_IO),
    };
  }
  return out;
}

/** The device of a file's filesystem from stat(2)'s st_dev (Linux encoding of major/minor). */
export function deviceOf(dev: number | bigint): BlockDevice {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { major, minor };
}

/** The values the kernel is expected to hold (cgroup v1 file names) for these resources. */
export function expectedKernelValues(r: OciResources): KernelLimits {
  const rd = r.blockIO?.throttleReadIOPSDevice[0];
  return {
    cpu_quota_us: r.cpu.quota,
    cpu_period_us: r.cpu.period,
    memory_limit_bytes: r.memory.limit,
    memsw_limit_bytes: r.memory.swap,
    pids_max: r.pids.limit,
    ...(rd
      ? {
          read_iops: rd.rate,
          write_iops: r.blockIO!.throttleWriteIOPSDevice[0]!.rate,
          read_bps: r.blockIO!.throttleReadBpsDevice[0]!.rate,
          write_bps: r.blockIO!.throttleWriteBpsDevice[0]!.rate,
        }
      : {}),
  };
}

/** Limits as read back from the kernel's cgroup files (undefined where a controller lacks the file). */
export interface KernelLimits {
  cpu_quota_us?: number;
  cpu_period_us?: number;
  memory_limit_bytes?: number;
  memsw_limit_bytes?: number;
  pids_max?: number;
  read_iops?: number;
  write_iops?: number;
  read_bps?: number;
  write_bps?: number;
  /** The data volume's filesystem size (ext4 block count x block size), against storage_gb. */
  storage_bytes?: number;
}

/** Fields where the kernel differs from what the ledger's envelope implies: empty when they agree. */
export function compareLimits(expected: KernelLimits, kernel: KernelLimits): { field: keyof KernelLimits; ledger: number | undefined; kernel: number | undefined }[] {
  const out: { field: keyof KernelLimits; ledger: number | undefined; kernel: number | undefined }[] = [];
  for (const field of Object.keys(expected) as (keyof KernelLimits)[]) {
    // memsw is absent when the kernel was booted without swap accounting: nothing to compare.
    if (field === 'memsw_limit_bytes' && kernel[field] === undefined) continue;
    if (expected[field] !== kernel[field]) out.push({ field, ledger: expected[field], kernel: kernel[field] });
  }
  return out;
}
