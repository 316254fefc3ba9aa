import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
    // Logs past 8 KiB are rotated (checked every 200 ms), two rotated files kept.
    f = scratchFabric({ logCapBytes: 8192, logKeep: 2, rotateEveryMs: 200 });
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

  it('keeps logs per IMVU under a size cap, rotated', async () => {
    const dev = deviceOf(statSync(f.dataDir).dev);
    await f.driver.deploy({ imvu: 'IMVU-002', seq: 2, blueprint: { image: 'busybox', command: ['sh', '-c', 'i=0; while :; do echo "line $i of a chatty workload, padded to fill the log quickly"; i=$((i+1)); [ $((i % 50)) = 0 ] && sleep 0.05; done'] }, resources: envelopeResources(env, dev) });
    await f.driver.start('IMVU-002');
    const log = f.driver.logPath('IMVU-002');
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !existsSync(`${log}.2`)) await new Promise((r) => setTimeout(r, 200));
    await new Promise((r) => setTimeout(r, 1500));
    await f.driver.stop('IMVU-002');
    await f.driver.rotate('IMVU-002');
    expect(existsSync(`${log}.1`)).toBe(true);
    expect(existsSync(`${log}.2`)).toBe(true);
    expect(existsSync(`${log}.3`)).toBe(false);
    for (const file of [log, `${log}.1`, `${log}.2`]) expect(statSync(file).size).toBeLessThanOrEqual(8192);
    // Newest last: the rotated files hold older lines than the current one's.
    const last = (file: string) => Math.max(...[...readFileSync(file, 'utf8').matchAll(/line (\d+) /g)].map((m) => Number(m[1])));
    expect(last(`${log}.2`)).toBeLessThan(last(`${log}.1`));
    expect(await f.driver.logs('IMVU-002')).toMatch(/line \d+ of a chatty workload/);
  }, 90_000);

  it('runs an image from an OCI image layout, made here with umoci from busybox-static and copied by skopeo', async () => {
    // In the IMVU's own directory (an image anywhere else in the data directory is refused, gate 16).
    const images = join(f.dataDir, 'imvus', 'IMVU-003', 'images');
    const layout = join(images, 'layout');
    const built = join(images, 'bundle');
    const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'pipe', timeout: 120_000 });
    sh('umoci', ['init', '--layout', layout]);
    sh('umoci', ['new', '--image', `${layout}:base`]);
    sh('umoci', ['unpack', '--image', `${layout}:base`, built]);
    mkdirSync(join(built, 'rootfs', 'bin'), { recursive: true });
    copyFileSync('/bin/busybox', join(built, 'rootfs', 'bin', 'busybox'));
    chmodSync(join(built, 'rootfs', 'bin', 'busybox'), 0o755);
    for (const applet of ['sh', 'cat', 'sleep', 'echo']) symlinkSync('busybox', join(built, 'rootfs', 'bin', applet));
    writeFileSync(join(built, 'rootfs', 'etc-release'), 'made-by-umoci\n');
    sh('umoci', ['repack', '--image', `${layout}:web`, built]);
    // skopeo copies it into a second layout: what a creator brings from any registry tool.
    const copied = join(images, 'copied');
    sh('skopeo', ['copy', `oci:${layout}:web`, `oci:${copied}:v1`]);
    const dev = deviceOf(statSync(f.dataDir).dev);
    await f.driver.deploy({
      imvu: 'IMVU-003',
      seq: 3,
      blueprint: { image: `oci:${copied}:v1`, files: [{ path: '/app/hello', content: 'from the blueprint\n' }], command: ['sh', '-c', 'cat /etc-release /app/hello; exec sleep 1000'] },
      resources: envelopeResources(env, dev),
    });
    await f.driver.start('IMVU-003');
    for (let i = 0; i < 100 && !(await f.driver.logs('IMVU-003')).includes('from the blueprint'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await f.driver.logs('IMVU-003')).toBe('made-by-umoci\nfrom the blueprint\n');
    // Only busybox and its four links: the rootfs is the image's, not the platform's base.
    expect((await f.driver.exec('IMVU-003', ['sh', '-c', 'echo /bin/*'])).stdout.trim()).toBe('/bin/busybox /bin/cat /bin/echo /bin/sh /bin/sleep');
    expect((await f.driver.exec('IMVU-003', ['sh', '-c', 'echo x > /bin/x'])).code).not.toBe(0);
    await f.driver.stop('IMVU-003');
  }, 180_000);

  it('stops, leaving no container and no network', async () => {
    await f.driver.stop('IMVU-001');
    expect((await f.driver.status('IMVU-001')).state).toBe('stopped');
  });
});
