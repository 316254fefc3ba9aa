// The data volume of an IMVU: a filesystem of its own, exactly storage_gb large, so that the kernel
// (not the platform) stops a workload that writes past its envelope (ENOSPC). A sparse image file
// in the IMVU's compute directory, formatted ext4 without reserved blocks, loop-mounted at
// compute/volume; the workload's /data is compute/volume/data (one level down, so that a rollback
// can stage and swap directories inside the same filesystem, and lost+found stays out of sight).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, open, readFile, readdir, realpath, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { deviceOf } from '../envelopes/resources.ts';

const run = promisify(execFile);

/** One envelope storage unit: storage_gb counts GiB (tests may pass a smaller unit to the driver). */
export const GiB = 1024 ** 3;

export interface VolumePaths {
  /** The sparse ext4 image (host root only). */
  image: string;
  /** Where the image is mounted. */
  mountPoint: string;
  /** The workload's /data: inside the mounted filesystem. */
  data: string;
  /** Where the data volume lived before volumes had a filesystem of their own (moved in once). */
  legacy: string;
}

export function volumePaths(computeDir: string): VolumePaths {
  return { image: join(computeDir, 'storage.img'), mountPoint: join(computeDir, 'volume'), data: join(computeDir, 'volume', 'data'), legacy: join(computeDir, 'data') };
}

/** Thrown when a volume cannot take the size asked (a decrease below what is used). */
export class VolumeSizeError extends Error {}

/**
 * Thrown when the kernel refuses to grow a mounted filesystem (EXT4_IOC_RESIZE_FS needs
 * CAP_SYS_RESOURCE, which some hosts withhold even from root): the growth waits for the volume to
 * be unmounted (the driver restarts the workload for it).
 */
export class OnlineResizeRefused extends Error {}

/** Whether `dir` is a mount point in this mount namespace (by /proc/self/mountinfo). */
export async function isMounted(dir: string): Promise<boolean> {
  const target = await realpath(dir).catch(() => dir);
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  // Field 5 is the mount point, with spaces and such escaped as octal.
  return info.split('\n').some((l) => l.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === target);
}

/** The loop devices backed by `image` (after a crash a container's mount namespace may still hold one). */
export async function loopsOf(image: string): Promise<string[]> {
  if (!existsSync(image)) return [];
  const { stdout } = await run('losetup', ['-j', image], { timeout: 30_000 });
  return stdout.split('\n').map((l) => /^(\/dev\/loop\d+):/.exec(l)?.[1]).filter((d): d is string => !!d);
}

/** The loop device mounted at `mountPoint` (from mountinfo's source field), if any. */
async function deviceAt(mountPoint: string): Promise<string | undefined> {
  const target = await realpath(mountPoint).catch(() => mountPoint);
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  for (const l of info.split('\n')) {
    const f = l.split(' ');
    if (f[4] !== target) continue;
    const sep = f.indexOf('-');
    return f[sep + 2];
  }
  return undefined;
}

export interface VolumeUsage {
  /** The filesystem's size as ext4 records it (block count x block size). */
  sizeBytes: number;
  /** Bytes in use (statfs: blocks minus free blocks). */
  usedBytes: number;
  /** The loop device's major:minor (the IO throttle goes on it). */
  device: { major: number; minor: number };
}

/** Size and use of a mounted volume; undefined when it is not mounted. */
export async function volumeUsage(paths: VolumePaths): Promise<VolumeUsage | undefined> {
  if (!(await isMounted(paths.mountPoint))) return undefined;
  const dev = await deviceAt(paths.mountPoint);
  if (!dev) return undefined;
  const s = await statfs(paths.mountPoint);
  const sizeBytes = await fsSize(dev);
  return { sizeBytes, usedBytes: (s.blocks - s.bfree) * s.bsize, device: deviceOf((await stat(dev)).rdev) };
}

/** The ext4 filesystem's size from its superblock (`dumpe2fs -h`): what resize2fs grew it to. */
async function fsSize(device: string): Promise<number> {
  const { stdout } = await run('dumpe2fs', ['-h', device], { timeout: 30_000, maxBuffer: 1 << 20 });
  const count = Number(/^Block count:\s+(\d+)/m.exec(stdout)?.[1]);
  const size = Number(/^Block size:\s+(\d+)/m.exec(stdout)?.[1]);
  if (!Number.isFinite(count) || !Number.isFinite(size)) throw new Error(`dumpe2fs ${device}: no block count`);
  return count * size;
}

/**
 * Makes sure the volume exists, has `bytes`, and is mounted, with /data owned by `owner` (the
 * IMVU's mapped root) mode 0700. Mounted already (a daemon restart after kill -9): reused, never
 * mounted twice; its loop device still attached (held by a container): mounted from it. A bigger
 * size grows the filesystem live (losetup -c, resize2fs); a smaller one is refused below what is
 * used, and otherwise applied offline (unmounted) when `offline` allows it, else left for later.
 */
export async function ensureVolume(paths: VolumePaths, bytes: number, owner: number, opts: { offline?: boolean } = {}): Promise<VolumeUsage> {
  if (!Number.isSafeInteger(bytes) || bytes < 8 * 1024 * 1024) throw new VolumeSizeError(`a data volume needs at least 8 MiB, not ${bytes} bytes`);
  if (!existsSync(paths.image)) {
    const tmp = `${paths.image}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.truncate(bytes); // sparse: only what is written takes room on the host
    } finally {
      await fh.close();
    }
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1', '-L', 'nexus-data', tmp], { timeout: 120_000 });
    await rename(tmp, paths.image);
  }
  await mkdir(paths.mountPoint, { recursive: true, mode: 0o711 });
  let usage = await volumeUsage(paths);
  if (usage && usage.sizeBytes > bytes) {
    if (usage.usedBytes > bytes) throw new VolumeSizeError(`storage of ${bytes} bytes is below the ${usage.usedBytes} bytes used on the data volume; it keeps ${usage.sizeBytes}`);
    if (opts.offline) {
      await unmountVolume(paths);
      usage = undefined;
    }
  }
  if (!usage) {
    // Data written under the mount point while nothing was mounted there (an IMVU imported before
    // its first deploy) would be hidden by the mount: it moves into the volume like a legacy one.
    if (existsSync(paths.data) && !existsSync(paths.legacy)) await rename(paths.data, paths.legacy);
    const loops = await loopsOf(paths.image);
    if (loops.length === 0) await shrinkOffline(paths.image, bytes);
    // A loop device already on the image (a container still holds it) is the same filesystem:
    // mount it, never a second loop over the same image.
    if (loops[0]) await run('mount', ['-t', 'ext4', '-o', 'nosuid,nodev', loops[0], paths.mountPoint], { timeout: 60_000 });
    else await run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev', paths.image, paths.mountPoint], { timeout: 60_000 });
    usage = (await volumeUsage(paths))!;
  }
  if (usage.sizeBytes < bytes) {
    // Live growth: the image, then the loop device's idea of its size, then the filesystem.
    const fh = await open(paths.image, 'r+');
    try {
      if ((await fh.stat()).size < bytes) await fh.truncate(bytes);
    } finally {
      await fh.close();
    }
    const dev = (await deviceAt(paths.mountPoint))!;
    try {
      await run('losetup', ['-c', dev], { timeout: 30_000 });
      await run('resize2fs', [dev], { timeout: 300_000 });
    } catch (err) {
      const why = String((err as { stderr?: string }).stderr ?? err).trim().split('\n').pop() ?? '';
      if (!opts.offline) throw new OnlineResizeRefused(`the kernel did not grow the mounted data volume (${why})`);
      // Not in use: grown unmounted instead (resize2fs wants a checked filesystem for that).
      await unmountVolume(paths);
      await fsck(paths.image);
      await run('resize2fs', [paths.image], { timeout: 300_000 });
      await run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev', paths.image, paths.mountPoint], { timeout: 60_000 });
    }
    usage = (await volumeUsage(paths))!;
  }
  // The mounted root: traversable by the IMVU's mapped root, listable by nobody else.
  await chown(paths.mountPoint, 0, 0);
  await chmod(paths.mountPoint, 0o711);
  await mkdir(paths.data, { recursive: true, mode: 0o700 });
  await moveLegacy(paths);
  await chown(paths.data, owner, owner);
  await chmod(paths.data, 0o700);
  return usage;
}

/** An unmounted image made smaller (never below what its filesystem holds: resize2fs refuses). */
async function shrinkOffline(image: string, bytes: number): Promise<void> {
  const s = await stat(image);
  if (s.size <= bytes) return;
  await fsck(image);
  const blocks = `${Math.floor(bytes / 1024)}K`;
  try {
    await run('resize2fs', [image, blocks], { timeout: 300_000 });
  } catch (err) {
    throw new VolumeSizeError(`the data volume cannot shrink to ${bytes} bytes: ${String((err as { stderr?: string }).stderr ?? err).trim().split('\n').pop()}`);
  }
  const fh = await open(image, 'r+');
  try {
    await fh.truncate(bytes);
  } finally {
    await fh.close();
  }
}

/** `e2fsck -f -y` (exit 1: errors corrected, fine; above: a failure). */
async function fsck(image: string): Promise<void> {
  await run('e2fsck', ['-f', '-y', image], { timeout: 300_000 }).catch((err: { code?: number }) => {
    if (err.code !== 1) throw err;
  });
}

/** A data directory from before volumes were filesystems: its content moves into the volume once. */
async function moveLegacy(paths: VolumePaths): Promise<void> {
  const s = await stat(paths.legacy).catch(() => undefined);
  if (!s?.isDirectory()) return;
  if ((await readdir(paths.legacy)).length > 0) await run('cp', ['-a', `${paths.legacy}/.`, paths.data], { timeout: 600_000 });
  await rm(paths.legacy, { recursive: true, force: true });
}

/** Unmounts the volume (the loop device, set up by mount with autoclear, goes with it). */
export async function unmountVolume(paths: VolumePaths): Promise<void> {
  for (let i = 0; i < 5 && (await isMounted(paths.mountPoint).catch(() => false)); i++) await run('umount', [paths.mountPoint], { timeout: 60_000 });
  // The kernel detaches an autoclear loop device after the unmount, asynchronously, and only once
  // no mount namespace holds the filesystem (a killed container's goes when its last process has
  // been reaped, seconds later on a loaded machine): wait for it, and from 1 s on detach what is
  // left once a second (autoclear missed, e.g. set up by hand, or a detach refused while busy), up to 10 s.
  for (let i = 0; i < 100; i++) {
    const left = await loopsOf(paths.image).catch(() => [] as string[]);
    if (left.length === 0) return;
    if (i % 10 === 9) for (const dev of left) await run('losetup', ['-d', dev], { timeout: 30_000 }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
  }
}
