// For `nexus audit watch`: the kernel's cgroup limits of an IMVU's workload (as the daemon reads
// them) against the limits its envelope implies, the envelope being what the creator's own replay
// of the verified ledger entries gives, not what the daemon says its ledger holds.
import { envelopeResources, expectedKernelValues, type Envelope, type KernelLimits } from './envelopes/resources.ts';

export interface ComputeReading {
  state: string;
  address?: string;
  limits?: { ledger: KernelLimits; kernel: KernelLimits };
}

export interface ComputeFieldCheck {
  field: keyof KernelLimits;
  ledger: number | undefined;
  kernel: number | undefined;
  ok: boolean;
}

const IO_FIELDS = new Set<keyof KernelLimits>(['read_iops', 'write_iops', 'read_bps', 'write_bps']);

/**
 * Field by field: what the envelope (x the burst multiplier while bursting) implies, beside what
 * the kernel holds. The IO throttle is compared when the daemon reports a block device for the
 * data volume (it names the device; the values still come from the envelope). `memsw` is skipped
 * when the kernel has no swap accounting. Empty when the workload is not running (no cgroup).
 */
export function checkCompute(envelope: Envelope, bursting: boolean, reading: ComputeReading): ComputeFieldCheck[] {
  if (reading.state !== 'running' || !reading.limits) return [];
  const device = reading.limits.ledger.read_iops !== undefined ? { major: 0, minor: 0 } : undefined;
  const expected = expectedKernelValues(envelopeResources(envelope, device, { burst: bursting }));
  const kernel = reading.limits.kernel ?? {};
  const out: ComputeFieldCheck[] = [];
  for (const field of Object.keys(expected) as (keyof KernelLimits)[]) {
    if (field === 'memsw_limit_bytes' && kernel[field] === undefined) continue;
    if (IO_FIELDS.has(field) && device === undefined) continue;
    out.push({ field, ledger: expected[field], kernel: kernel[field], ok: expected[field] === kernel[field] });
  }
  return out;
}
