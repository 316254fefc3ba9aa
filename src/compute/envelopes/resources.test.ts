import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BYTES_PER_IO, compareLimits, CPU_PERIOD_US, deviceOf, envelopeResources, expectedKernelValues, PIDS_PER_CORE, type Envelope } from './resources.ts';

const envelope = fc.record({
  cpu_cores: fc.integer({ min: 1, max: 1024 }),
  memory_gb: fc.integer({ min: 1, max: 65536 }),
  storage_gb: fc.integer({ min: 1, max: 1_000_000 }),
  iops: fc.integer({ min: 1, max: 10_000_000 }),
  burst_multiplier: fc.integer({ min: 1, max: 16 }),
  burst_minutes: fc.integer({ min: 1, max: 60 }),
});
const device = fc.record({ major: fc.integer({ min: 0, max: 4095 }), minor: fc.integer({ min: 0, max: 1_048_575 }) });

describe('envelope -> OCI linux.resources', () => {
  it('the default envelope: 2 cores, 4 GiB without swap, 512 pids, 100 IOPS on the data device', () => {
    const r = envelopeResources({ cpu_cores: 2, memory_gb: 4, storage_gb: 50, iops: 100, burst_multiplier: 2, burst_minutes: 5 }, { major: 254, minor: 0 });
    expect(r.cpu).toEqual({ quota: 200_000, period: 100_000 });
    expect(r.memory).toEqual({ limit: 4 * 1024 ** 3, swap: 4 * 1024 ** 3 });
    expect(r.pids).toEqual({ limit: 512 });
    expect(r.blockIO!.throttleWriteIOPSDevice).toEqual([{ major: 254, minor: 0, rate: 100 }]);
    expect(r.blockIO!.throttleReadBpsDevice).toEqual([{ major: 254, minor: 0, rate: 100 * 256 * 1024 }]);
  });

  it('for any envelope: quota = cores x period (x multiplier only in a burst), swap == limit, safe integers', () => {
    fc.assert(
      fc.property(envelope, device, fc.boolean(), (env: Envelope, dev, burst) => {
        const r = envelopeResources(env, dev, { burst });
        expect(r.cpu.quota).toBe(env.cpu_cores * CPU_PERIOD_US * (burst ? env.burst_multiplier : 1));
        expect(r.memory.swap).toBe(r.memory.limit);
        expect(r.memory.limit).toBe(env.memory_gb * 1024 ** 3);
        expect(r.pids.limit).toBe(env.cpu_cores * PIDS_PER_CORE);
        expect(r.blockIO!.throttleWriteBpsDevice[0]!.rate).toBe(env.iops * BYTES_PER_IO);
        for (const v of [r.cpu.quota, r.memory.limit, r.blockIO!.throttleReadBpsDevice[0]!.rate]) expect(Number.isSafeInteger(v)).toBe(true);
        // A burst never raises anything but the CPU quota.
        const plain = envelopeResources(env, dev);
        expect({ ...r, cpu: plain.cpu }).toEqual(plain);
        // What the kernel should hold agrees with itself.
        expect(compareLimits(expectedKernelValues(r), expectedKernelValues(r))).toEqual([]);
      }),
    );
  });

  it('refuses values outside the envelope schema instead of writing nonsense to the kernel', () => {
    fc.assert(
      fc.property(envelope, fc.oneof(fc.integer({ max: 0 }), fc.double({ noInteger: true }), fc.constant(Number.NaN)), (env, bad) => {
        expect(() => envelopeResources({ ...env, cpu_cores: bad }, undefined)).toThrow(RangeError);
        expect(() => envelopeResources({ ...env, memory_gb: bad }, undefined)).toThrow(RangeError);
      }),
    );
  });

  it('without a block device there is no IO throttle', () => {
    expect(envelopeResources({ cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 1, burst_multiplier: 2, burst_minutes: 5 }, undefined).blockIO).toBeUndefined();
  });

  it('decodes stat(2) st_dev like the kernel (major 8 bits low + high part, minor likewise)', () => {
    expect(deviceOf(0xfe00)).toEqual({ major: 254, minor: 0 });
    expect(deviceOf(0x801)).toEqual({ major: 8, minor: 1 });
    fc.assert(
      fc.property(device, ({ major, minor }) => {
        const dev = (BigInt(minor & 0xff) | (BigInt(major & 0xfff) << 8n) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n));
        expect(deviceOf(dev)).toEqual({ major, minor });
      }),
    );
  });

  it('reports every field where the kernel differs from the ledger', () => {
    const want = expectedKernelValues(envelopeResources({ cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 10, burst_multiplier: 2, burst_minutes: 5 }, { major: 8, minor: 0 }));
    expect(compareLimits(want, { ...want, cpu_quota_us: -1, pids_max: undefined })).toEqual([
      { field: 'cpu_quota_us', ledger: 100_000, kernel: -1 },
      { field: 'pids_max', ledger: 256, kernel: undefined },
    ]);
  });
});
