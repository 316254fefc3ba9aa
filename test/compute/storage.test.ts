// storage_gb enforced by the kernel: each IMVU's data volume is a filesystem of its own, exactly
// that large (a loop-mounted ext4 image). A workload writing past it gets ENOSPC while another
// IMVU still writes; an approved increase grows it live; a decrease below what it holds is refused
// with a clear error; snapshots and a rollback work on the mounted volume; stopping and shutting
// the daemon down leave no mount and no loop device. A storage unit of 1 MiB (not 1 GiB) keeps the
// volumes small enough to fill.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { initDataDir } from '../../src/core/platform.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { instanceTag, RuncDriver } from '../../src/compute/fabric/runc.ts';
import { removeFilter } from '../../src/compute/fabric/network.ts';
import { VolumeSizeError } from '../../src/compute/fabric/volume.ts';
import { createBody, rollback, takeSnapshot } from '../../src/compute/snapshots/index.ts';
import { requireRunc } from './fabric-helpers.ts';
import { testComputeRange } from '../support/compute-range.ts';

const MiB = 1024 * 1024;
const dataDir = mkdtempSync(join(tmpdir(), 'nexus-storage-'));
const range = testComputeRange();

/** Mounts and loop devices that belong to this data directory. */
function mountsAndLoops() {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dataDir)).map((l) => l.split(' ')[4]!).sort();
  // The backing files, one line per loop device: which device number an image gets is the lowest
  // one free at the time, which other suites running beside this one change.
  const loops = execFileSync('losetup', ['-l', '-n', '-O', 'BACK-FILE'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(dataDir)).map((l) => l.trim()).sort();
  return { mounts, loops };
}

describe('storage_gb: a filesystem of its own per IMVU', () => {
  let server: RunningServer | undefined;
  afterAll(async () => {
    await server?.close().catch(() => undefined);
    const driver = new RuncDriver({ dataDir, range });
    for (const imvu of await driver.deployed()) await driver.cleanup(imvu).catch(() => undefined);
    await driver.close();
    await removeFilter(instanceTag(dataDir)).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }, 120_000);

  it('ENOSPC past storage_gb while a neighbour writes; an approved increase applied; a decrease below use refused; snapshots work; nothing left mounted', async () => {
    requireRunc();
    const p = await initDataDir(dataDir, {});
    const { privateKey } = generateKeyPair();
    const raw = publicKeyRaw(privateKey);
    const alice = { id: identityIdFromPublicKey(raw), key: privateKey };
    const origin = p.config.origin;
    const as = (type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(alice.key, type, body, { origin });
    expect((await p.chokepoint.submit(as('identity.register', { name: 'alice', role: 'creator', publicKey: raw.toString('base64') }))).allowed).toBe(true);
    for (const name of ['Full', 'Neighbour']) expect((await p.chokepoint.submit(as('imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1, storage_gb: 16 } }))).allowed).toBe(true);
    await p.close();
    const before = mountsAndLoops();
    expect(before).toEqual({ mounts: [], loops: [] });

    server = await startServer({ dataDir, host: '127.0.0.1', port: 0, logger: false, integrityIntervalMs: 0, compute: { range, storageUnitBytes: MiB, service: { verifyEveryMs: 0, healthTickMs: 0 } } });
    const compute = server.compute!;
    const submit = async (cmd: ReturnType<typeof as>) => compute.platform.chokepoint.submit(cmd);
    for (const imvu of ['IMVU-001', 'IMVU-002']) {
      expect((await submit(as('compute.deploy', { imvu, blueprint: { image: 'busybox', command: ['sleep', '100000'] } }))).allowed).toBe(true);
      expect((await submit(as('compute.start', { imvu }))).allowed).toBe(true);
    }
    await compute.schedule();
    for (const imvu of ['IMVU-001', 'IMVU-002']) expect((await compute.status(imvu)).state).toBe('running');
    const running = mountsAndLoops();
    expect(running.mounts).toEqual(['IMVU-001', 'IMVU-002'].map((i) => join(dataDir, 'imvus', i, 'compute', 'volume')));
    expect(running.loops).toHaveLength(2);

    // The kernel stops the writer at 16 MiB: ENOSPC, not a platform check.
    const fill = await compute.exec('IMVU-001', ['sh', '-c', 'dd if=/dev/zero of=/data/fill bs=1M count=64 && sync']);
    expect(fill.code).not.toBe(0);
    expect(fill.stderr + fill.stdout).toMatch(/No space left on device/);
    const df = await compute.exec('IMVU-001', ['df', '-k', '/data']);
    const sizeKb = Number(df.stdout.split('\n')[1]!.trim().split(/\s+/)[1]);
    expect(sizeKb).toBeLessThanOrEqual(16 * 1024);
    expect(sizeKb).toBeGreaterThan(12 * 1024);
    // The neighbour still writes (its own filesystem is untouched by the full one).
    const other = await compute.exec('IMVU-002', ['sh', '-c', 'dd if=/dev/zero of=/data/some bs=1M count=4 && sync && echo written > /data/note && cat /data/note']);
    expect(other.code, other.stderr).toBe(0);
    expect(other.stdout).toContain('written');
    // The kernel read-back: the filesystem's size against storage_gb.
    const view = (await compute.kernelView('IMVU-001'))!;
    expect(view.kernel.storage_bytes).toBe(16 * MiB);
    expect(view.ledger.storage_bytes).toBe(16 * MiB);
    expect(view.differences).toEqual([]);

    // An approved increase: grown under the running workload (live where the kernel lets root
    // grow a mounted ext4, else around a restart of the workload).
    expect((await submit(as('imvu.scale', { imvu: 'IMVU-001', storage_gb: 32 }))).allowed).toBe(true);
    await compute.schedule();
    expect((await compute.status('IMVU-001')).state).toBe('running');
    expect((await compute.kernelView('IMVU-001'))!.kernel.storage_bytes).toBe(32 * MiB);
    const more = await compute.exec('IMVU-001', ['sh', '-c', 'dd if=/dev/zero of=/data/more bs=1M count=8 && sync']);
    expect(more.code, more.stderr).toBe(0);

    // A decrease below what the volume holds: refused with a clear error, nothing recorded.
    const size = compute.platform.chokepoint.ledger.size;
    const res = await fetch(`${server.url}/v1/imvus/IMVU-001/scale`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(as('imvu.scale', { imvu: 'IMVU-001', storage_gb: 8 })) });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: string }).error).toMatch(/storage_gb 8 \(8388608 bytes\) is below the \d+ bytes used on the data volume of IMVU-001; nothing was recorded/);
    expect(compute.platform.chokepoint.ledger.size).toBe(size);
    // The same command through the generic route: the same answer.
    const generic = await fetch(`${server.url}/v1/commands`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(as('imvu.scale', { imvu: 'IMVU-001', storage_gb: 8 })) });
    expect(generic.status).toBe(409);
    expect(compute.platform.chokepoint.ledger.size).toBe(size);
    // Signed by a creator of no part of IMVU-001: it learns nothing of the volume (no 409); the gates deny it.
    const bobKey = generateKeyPair().privateKey;
    const bobRaw = publicKeyRaw(bobKey);
    const bob = (type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(bobKey, type, body, { origin });
    expect((await compute.platform.chokepoint.submit(bob('identity.register', { name: 'bob', role: 'creator', publicKey: bobRaw.toString('base64') }))).allowed).toBe(true);
    const stranger = await fetch(`${server.url}/v1/imvus/IMVU-001/scale`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bob('imvu.scale', { imvu: 'IMVU-001', storage_gb: 8 })) });
    expect(stranger.status).toBe(403);
    expect(((await stranger.json()) as { error: string }).error).not.toMatch(/bytes used/);
    // The fabric refuses it too (a command that came another way): the volume keeps its size.
    await expect((compute.driver as RuncDriver).setStorage('IMVU-001', 8)).rejects.toThrow(VolumeSizeError);
    expect((await compute.kernelView('IMVU-001'))!.kernel.storage_bytes).toBe(32 * MiB);

    // A snapshot of the mounted volume and a rollback on it, byte for byte.
    await compute.exec('IMVU-002', ['sh', '-c', 'echo before > /data/note']);
    const snap = await takeSnapshot(dataDir, compute.platform.store, 'IMVU-002');
    expect((await submit(as('snapshot.create', createBody(snap)))).allowed).toBe(true);
    await compute.exec('IMVU-002', ['sh', '-c', 'echo after > /data/note; rm /data/some']);
    const back = await rollback(dataDir, 'IMVU-002', snap.digest, compute.driver, () => submit(as('snapshot.rollback', { imvu: 'IMVU-002', digest: snap.digest })));
    expect(back.restored).toBe(true);
    const after = await compute.exec('IMVU-002', ['sh', '-c', 'cat /data/note; ls /data; touch /data/writable && echo ok']);
    expect(after.stdout).toBe('before\nnote\nsome\nok\n');
    expect(mountsAndLoops()).toEqual(running);

    // Stopped through the ledger and the daemon shut down: no mount, no loop device left.
    for (const imvu of ['IMVU-001', 'IMVU-002']) expect((await submit(as('compute.stop', { imvu }))).allowed).toBe(true);
    await compute.schedule();
    await server.close();
    server = undefined;
    expect(mountsAndLoops()).toEqual(before);
  }, 300_000);
});
