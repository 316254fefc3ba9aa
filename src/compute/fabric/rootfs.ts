// Root filesystems: the platform's base image from the host's busybox-static (nothing is
// downloaded), or an OCI image layout unpacked by umoci; then the blueprint's files on top.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import type { Blueprint } from '../blueprint/schema.ts';

const run = promisify(execFile);

/** Where Debian's busybox-static puts its binary. */
export const BUSYBOX = '/bin/busybox';

async function busyboxRootfs(dir: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'data', 'tmp', 'proc', 'dev', 'sys']) await mkdir(join(dir, d), { recursive: true, mode: 0o755 });
  await copyFile(BUSYBOX, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  const { stdout } = await run(BUSYBOX, ['--list-full'], { maxBuffer: 1 << 20 });
  for (const applet of stdout.split('\n').filter(Boolean)) {
    if (applet === 'bin/busybox' || !/^[a-z0-9/_.[-]+$/.test(applet)) continue;
    await mkdir(dirname(join(dir, applet)), { recursive: true });
    await symlink('/bin/busybox', join(dir, applet)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/data:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n', { mode: 0o644 });
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n', { mode: 0o644 });
  await writeFile(join(dir, 'etc/hosts'), '127.0.0.1 localhost\n', { mode: 0o644 });
}

async function ociRootfs(dir: string, layout: string, tag: string): Promise<void> {
  // umoci unpacks into BUNDLE/rootfs; we keep only the rootfs.
  const tmp = await mkdtemp(join(dirname(dir), '.unpack-'));
  try {
    await run('umoci', ['unpack', '--image', `${layout}:${tag}`, join(tmp, 'bundle')], { timeout: 300_000, maxBuffer: 1 << 20 });
    await rename(join(tmp, 'bundle', 'rootfs'), dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  // The mount points runc needs: the container's root (the IMVU's mapped uid) cannot make them in
  // a rootfs the host's root owns.
  for (const d of ['data', 'proc', 'dev', 'sys', 'tmp']) await mkdir(join(dir, d), { recursive: true, mode: 0o755 });
}

/** Where an image may not come from: the platform's data directory, except the IMVU's own directory (gate 16). */
export interface ImageConfinement {
  dataDir: string;
  ownDir: string;
}

const real = (p: string) => realpath(p).catch(() => resolve(p));
const inside = (dir: string, p: string) => {
  const r = relative(dir, p);
  return r === '' || (!r.startsWith('..') && !r.startsWith(sep) && r !== '..');
};

/** Refuses an image layout whose real path (symlinks followed) lies in the data directory outside the IMVU's own. */
export async function checkImagePath(layout: string, c: ImageConfinement): Promise<void> {
  const [path, data, own] = await Promise.all([real(layout), real(c.dataDir), real(c.ownDir)]);
  if (inside(data, path) && !inside(own, path)) throw new Error(`image ${layout}: inside the platform's data directory but outside this IMVU's own (another IMVU's files are never an image)`);
}

/**
 * Builds the rootfs of a blueprint at `dir` (replacing what was there). Files are written as the
 * host's root, so the workload (a different uid) can read and run them but never change them;
 * the rootfs is mounted read-only anyway.
 */
export async function buildRootfs(dir: string, blueprint: Blueprint, confine?: ImageConfinement): Promise<void> {
  const next = `${dir}.new`;
  await rm(next, { recursive: true, force: true });
  const image = blueprint.image;
  if (image === undefined || image === 'busybox') await busyboxRootfs(next);
  else {
    const m = /^oci:(.+):([^:]+)$/.exec(image);
    if (!m) throw new Error(`image ${image}: not an OCI layout reference`);
    if (confine) await checkImagePath(m[1]!, confine);
    await ociRootfs(next, m[1]!, m[2]!);
  }
  for (const f of blueprint.files ?? []) {
    const target = join(next, f.path);
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    await rm(target, { force: true, recursive: true });
    await writeFile(target, f.content, { mode: f.mode ?? 0o644 });
    await chmod(target, f.mode ?? 0o644);
  }
  await chmod(next, 0o755);
  await rm(dir, { recursive: true, force: true });
  await rename(next, dir);
}
