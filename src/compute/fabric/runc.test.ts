import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelopeResources, expectedKernelValues, compareLimits, deviceOf } from '../envelopes/resources.ts';
import { hostRootId } from './oci-config.ts';
import { requireRunc, scratchFabric, type Fabric } from '../../../test/compute/fabric-helpers.ts';

// A real busybox workload under runc: the sandbox as the kernel reports it from inside.
describe('runc driver', () => {
  let f: Fabric;
  const env = { cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 100, burst_multiplier: 2, burst_minutes: 5 };
  beforeAll(async () => {
    requireRunc();
    f = scratchFabric();
    const dev = deviceOf(statSync(f.dataDir).dev);
    await f.driver.deploy({ imvu: 'IMVU-001', seq: 1, blueprint: { image: 'busybox', command: ['sh', '-c', 'echo hello from $NEXUS_IMVU; exec sleep 1000'] }, resources: envelopeResources(env, dev) });
    await f.driver.start('IMVU-001');
  }, 60_000);
  afterAll(async () => f?.close(), 60_000);

  it('runs the workload and keeps its output', async () => {
    const s = await f.driver.status('IMVU-001');
    expect(s.state).toBe('running');
    for (let i = 0; i < 50 && !(await f.driver.logs('IMVU-001')).includes('hello'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await f.driver.logs('IMVU-001')).toContain('hello from IMVU-001');
  });

  it('maps root to the IMVU own uid range, with no new privileges and few capabilities', async () => {
    const r = await f.driver.exec('IMVU-001', ['cat', '/proc/self/uid_map', '/proc/self/status']);
    expect(r.code).toBe(0);
    const base = hostRootId(1, (f.driver as unknown as { uidBase: number }).uidBase);
    expect(r.stdout).toMatch(new RegExp(`^\\s*0\\s+${base}\\s+65536`, 'm'));
    expect(r.stdout).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(r.stdout).toMatch(/^Seccomp:\s+2$/m);
    const capEff = BigInt('0x' + /^CapEff:\s+([0-9a-f]+)$/m.exec(r.stdout)![1]);
    expect(capEff & (1n << 21n)).toBe(0n); // CAP_SYS_ADMIN
    expect(capEff & (1n << 12n)).toBe(0n); // CAP_NET_ADMIN
  });

  it('has a read-only rootfs and a writable data volume owned by its mapped root', async () => {
    expect((await f.driver.exec('IMVU-001', ['touch', '/bin/x'])).code).not.toBe(0);
    expect((await f.driver.exec('IMVU-001', ['sh', '-c', 'echo data > /data/file'])).code).toBe(0);
    const base = hostRootId(1, (f.driver as unknown as { uidBase: number }).uidBase);
    const st = statSync(`${f.driver.dataPath('IMVU-001')}/file`);
    expect(st.uid).toBe(base);
    const dir = statSync(f.driver.dataPath('IMVU-001'));
    expect(dir.mode & 0o777).toBe(0o700);
    expect(dir.uid).toBe(base);
  });

  it('refuses a denied system call (seccomp) even where a capability would allow it', async () => {
    const r = await f.driver.exec('IMVU-001', ['unshare', '-U', 'true']);
    expect(r.code).not.toBe(0);
  });

  it('holds the envelope in the kernel: read back equals the ledger', async () => {
    const dev = deviceOf(statSync(f.dataDir).dev);
    const kernel = await f.driver.readKernelLimits('IMVU-001');
    expect(compareLimits(expectedKernelValues(envelopeResources(env, dev)), kernel)).toEqual([]);
    expect(kernel.cpu_quota_us).toBe(100_000);
    expect(kernel.memory_limit_bytes).toBe(1024 ** 3);
  });

  it('applies new limits live with runc update', async () => {
    const dev = deviceOf(statSync(f.dataDir).dev);
    const bigger = { ...env, cpu_cores: 2, memory_gb: 2 };
    await f.driver.update('IMVU-001', envelopeResources(bigger, dev));
    const kernel = await f.driver.readKernelLimits('IMVU-001');
    expect(compareLimits(expectedKernelValues(envelopeResources(bigger, dev)), kernel)).toEqual([]);
    expect(kernel.cpu_quota_us).toBe(200_000);
  });

  it('stops, leaving no container and no network', async () => {
    await f.driver.stop('IMVU-001');
    expect((await f.driver.status('IMVU-001')).state).toBe('stopped');
  });
});
