import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import tar, { type Header } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import { verifyStore } from '../../core/policy/verify.ts';
import { createBody, dataVolume, exportSnapshot, recordedSnapshots, rollback, snapshotLayout, tagOf, takeSnapshot, verifySnapshot, SnapshotInvalid } from './index.ts';
import { badEntryName, unpackTree } from './tree.ts';

const ROOT = process.getuid?.() === 0;

/** Every path of a tree with what a rollback must restore: type, mode, owner, mtime, content or link target. */
async function describeTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const abs = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(abs);
      const base = `${path} mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} gid=${st.gid} mtime=${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isDirectory()) {
        out.push(`${base} dir`);
        await walk(abs, path);
      } else if (st.isSymbolicLink()) out.push(`${base} -> ${await readlink(abs)}`);
      else if (st.isFIFO()) out.push(`${base} fifo`);
      else out.push(`${base} file ${st.size} ${createHash('sha256').update(await readFile(abs)).digest('hex')}`);
    }
  };
  const st = await lstat(root);
  out.push(`. mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} gid=${st.gid}`);
  await walk(root, '');
  return out;
}

/** A data volume with the awkward cases: nested and read-only directories, odd modes, empty and large files, long and non-ASCII names, symlinks (dangling too), a FIFO, foreign owners. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'db', 'pages'), { recursive: true, mode: 0o700 });
  await writeFile(join(root, 'db', 'pages', 'big.bin'), randomBytes(3 * 1024 * 1024 + 17));
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'script.sh'), 0o4755);
  await writeFile(join(root, 'secret'), 'top');
  await chmod(join(root, 'secret'), 0o400);
  const long = 'n'.repeat(120);
  await mkdir(join(root, long));
  await writeFile(join(root, long, `${'f'.repeat(150)}.txt`), 'long names go into pax headers');
  await writeFile(join(root, 'ünïcödé ✓.txt'), 'utf-8 name');
  await symlink('db/pages/big.bin', join(root, 'link-rel'));
  await symlink('/etc/passwd', join(root, 'link-abs'));
  await symlink('nowhere', join(root, 'link-dangling'));
  execFileSync('mkfifo', [join(root, 'pipe')]);
  await mkdir(join(root, 'ro'));
  await writeFile(join(root, 'ro', 'inside'), 'in a read-only dir');
  await chmod(join(root, 'ro'), 0o555);
  if (ROOT) {
    await chown(join(root, 'secret'), 100123, 100456);
    await chown(join(root, 'db'), 100000, 100000);
    await chown(root, 100000, 100000);
  }
  await utimes(join(root, 'empty'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
  await chmod(root, 0o700);
}

describe('snapshots (gate 12)', () => {
  let p: TestPlatform;
  let alice: Actor;
  let bob: Actor;
  let imvu: string;
  let other: string;
  let volume: string;
  let work: string;

  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    bob = await p.register('bob', 'creator');
    const a = await p.as(alice, 'imvu.create', { name: 'shop', owner: alice.id, jurisdiction: 'EU-GDPR' });
    const b = await p.as(bob, 'imvu.create', { name: 'blog', owner: bob.id, jurisdiction: 'EU-GDPR' });
    expect(a.allowed && b.allowed).toBe(true);
    imvu = (await p.store.get<{ id: string }>("SELECT id FROM imvus WHERE name = 'shop'"))!.id;
    other = (await p.store.get<{ id: string }>("SELECT id FROM imvus WHERE name = 'blog'"))!.id;
    volume = dataVolume(p.dataDir, imvu);
    await mkdir(volume, { recursive: true });
    await makeTree(volume);
    work = await mkdtemp(join(tmpdir(), 'nexus-snap-'));
  });
  afterAll(async () => {
    // The read-only directory must be writable again to be removed.
    await chmod(join(volume, 'ro'), 0o755).catch(() => undefined);
    await p.cleanup();
    await rm(work, { recursive: true, force: true });
  });

  it('takes a content-addressed snapshot: the same tree gives the same digest, a changed tree another', async () => {
    const s1 = await takeSnapshot(p.dataDir, p.store, imvu, 'command: [/bin/app]\n');
    const s2 = await takeSnapshot(p.dataDir, p.store, imvu, 'command: [/bin/app]\n');
    expect(s1.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(s2.digest).toBe(s1.digest);
    expect(s1.skipped).toEqual([]);
    const v = await verifySnapshot(snapshotLayout(p.dataDir, imvu), s1.digest);
    expect(v.imvu).toBe(imvu);
    expect(v.blueprint).toBe('command: [/bin/app]\n');
    expect(v.envelope).toEqual({ cpu_cores: 2, iops: 100, memory_gb: 4, storage_gb: 50 });
    await writeFile(join(volume, 'empty'), 'x');
    const s3 = await takeSnapshot(p.dataDir, p.store, imvu, 'command: [/bin/app]\n');
    expect(s3.digest).not.toBe(s1.digest);
    await writeFile(join(volume, 'empty'), '');
    await utimes(join(volume, 'empty'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
    expect((await takeSnapshot(p.dataDir, p.store, imvu, 'command: [/bin/app]\n')).digest).toBe(s1.digest);
  });

  it('records a snapshot, rolls back byte for byte through the chokepoint, stopping the workload around the swap; verify replays both', async () => {
    const before = await describeTree(volume);
    const snap = await takeSnapshot(p.dataDir, p.store, imvu);
    const rec = await p.as(alice, 'snapshot.create', createBody(snap));
    expect(rec.gates.find((g) => g.gate === 12)).toMatchObject({ status: 'pass' });
    expect(rec.allowed).toBe(true);
    expect((await recordedSnapshots(p.store, imvu)).map((s) => s.digest)).toEqual([snap.digest]);
    // The same snapshot twice is one record.
    expect(deniedBy(await p.as(alice, 'snapshot.create', createBody(snap)))).toEqual([0]);

    // The workload changes everything it can.
    await rm(join(volume, 'db'), { recursive: true });
    await writeFile(join(volume, 'script.sh'), 'rm -rf /\n');
    await chmod(join(volume, 'secret'), 0o644);
    await rm(join(volume, 'link-rel'));
    await symlink('/', join(volume, 'link-rel'));
    await writeFile(join(volume, 'new-file'), 'added after the snapshot');
    expect(await describeTree(volume)).not.toEqual(before);

    const calls: string[] = [];
    const control = {
      stop: async (id: string) => void calls.push(`stop ${id}`),
      start: async (id: string) => void calls.push(`start ${id}`),
    };
    const r = await rollback(p.dataDir, imvu, snap.digest, control, () => p.as(alice, 'snapshot.rollback', { imvu, digest: snap.digest }));
    expect(r.receipt.allowed).toBe(true);
    expect(r.restored).toBe(true);
    expect(calls).toEqual([`stop ${imvu}`, `start ${imvu}`]);
    expect(await describeTree(volume)).toEqual(before);
    // No staging or replaced directory is left beside the volume.
    expect((await readdir(join(volume, '..'))).sort()).toEqual(['data']);

    const report = await verifyStore(p.store);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('refuses a rollback by anyone but the creator or a member, and onto another IMVU; nothing is stopped or touched', async () => {
    const snap = await takeSnapshot(p.dataDir, p.store, imvu);
    const known = (await recordedSnapshots(p.store, imvu)).some((s) => s.digest === snap.digest);
    if (!known) expect((await p.as(alice, 'snapshot.create', createBody(snap))).allowed).toBe(true);
    await writeFile(join(volume, 'marker'), 'changed after');
    const before = await describeTree(volume);
    const calls: string[] = [];
    const control = { stop: async () => void calls.push('stop'), start: async () => void calls.push('start') };
    const r = await rollback(p.dataDir, imvu, snap.digest, control, () => p.as(bob, 'snapshot.rollback', { imvu, digest: snap.digest }));
    expect(r.restored).toBe(false);
    expect(deniedBy(r.receipt)).toEqual([12]);
    expect(calls).toEqual([]);
    expect(await describeTree(volume)).toEqual(before);
    // bob cannot record a snapshot of alice's IMVU either.
    expect(deniedBy(await p.as(bob, 'snapshot.create', { ...createBody(snap), digest: `sha256:${'1'.repeat(64)}` }))).toEqual([12]);
    // A snapshot recorded for alice's IMVU does not roll bob's back.
    const cross = await p.as(bob, 'snapshot.rollback', { imvu: other, digest: snap.digest });
    expect(deniedBy(cross)).toEqual([12]);
    expect(cross.gates.find((g) => g.gate === 12)?.reason).toContain(`no snapshot ${snap.digest} is recorded for ${other}`);
    // A snapshot must claim the envelope in force.
    const lying = createBody(snap);
    (lying.covers as { envelope: { cpu_cores: number } }).envelope.cpu_cores = 64;
    expect(deniedBy(await p.as(alice, 'snapshot.create', { ...lying, digest: `sha256:${'2'.repeat(64)}` }))).toEqual([12]);
    await rm(join(volume, 'marker'));
  });

  it('a changed byte in any blob fails verification, and a rollback from it stops nothing', async () => {
    const snap = await takeSnapshot(p.dataDir, p.store, imvu);
    const layout = snapshotLayout(p.dataDir, imvu);
    const layer = join(layout, 'blobs', 'sha256', snap.layer.slice(7));
    const fh = await open(layer, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 1024);
    b[0] = b[0]! ^ 1;
    await fh.write(b, 0, 1, 1024);
    await fh.close();
    await expect(verifySnapshot(layout, snap.digest)).rejects.toThrow(/has changed: its bytes hash to/);
    const calls: string[] = [];
    let submitted = false;
    await expect(
      rollback(p.dataDir, imvu, snap.digest, { stop: async () => void calls.push('stop'), start: async () => void calls.push('start') }, async () => {
        submitted = true;
        throw new Error('not reached');
      }),
    ).rejects.toBeInstanceOf(SnapshotInvalid);
    expect(submitted).toBe(false);
    expect(calls).toEqual([]);
    // Restore the byte (the blob store is shared by later tests), then the manifest itself.
    const fh2 = await open(layer, 'r+');
    b[0] = b[0]! ^ 1;
    await fh2.write(b, 0, 1, 1024);
    await fh2.close();
    await verifySnapshot(layout, snap.digest);
    const manifest = join(layout, 'blobs', 'sha256', snap.digest.slice(7));
    const text = readFileSync(manifest, 'utf8');
    await chmod(manifest, 0o600);
    await writeFile(manifest, text.replace('"schemaVersion":2', '"schemaVersion":2 '));
    await expect(verifySnapshot(layout, snap.digest)).rejects.toThrow(/manifest .* has changed/);
    await writeFile(manifest, text);
    await verifySnapshot(layout, snap.digest);
  });

  it('the layer is a tar that GNU tar reads back into the same tree', async () => {
    const snap = await takeSnapshot(p.dataDir, p.store, imvu);
    const v = await verifySnapshot(snapshotLayout(p.dataDir, imvu), snap.digest);
    const out = join(work, 'gnutar');
    await mkdir(out);
    execFileSync('tar', ['-xpf', v.layerPath, '-C', out, '--numeric-owner', ...(ROOT ? ['--same-owner'] : [])]);
    await chown(out, v.root.uid, v.root.gid).catch(() => undefined);
    await chmod(out, v.root.mode);
    const want = (await describeTree(volume)).filter((l) => !l.startsWith('. ') && !/^ro mode/.test(l));
    const got = (await describeTree(out)).filter((l) => !l.startsWith('. ') && !/^ro mode/.test(l));
    expect(got).toEqual(want);
    await chmod(join(out, 'ro'), 0o755);
  });

  it('export writes an OCI archive that skopeo inspects and umoci unpacks into the same tree', async () => {
    const snap = await takeSnapshot(p.dataDir, p.store, imvu);
    const archive = join(work, 'snap.oci.tar');
    await exportSnapshot(snapshotLayout(p.dataDir, imvu), snap.digest, createWriteStream(archive));
    const info = JSON.parse(execFileSync('skopeo', ['inspect', `oci-archive:${archive}`], { encoding: 'utf8' })) as { Digest: string; Labels: Record<string, string>; Layers: string[] };
    expect(info.Digest).toBe(snap.digest);
    expect(info.Layers).toEqual([snap.layer]);
    expect(info.Labels['org.nexus.imvu']).toBe(imvu);
    // umoci takes an image layout directory: the archive unpacked by plain tar is one.
    const layoutDir = join(work, 'layout');
    await mkdir(layoutDir);
    execFileSync('tar', ['-xf', archive, '-C', layoutDir]);
    const bundle = join(work, 'bundle');
    execFileSync('umoci', ['unpack', ...(ROOT ? [] : ['--rootless']), '--image', `${layoutDir}:${tagOf(snap.digest)}`, bundle], { stdio: 'pipe' });
    const strip = (lines: string[]) => lines.filter((l) => !l.startsWith('. ')).map((l) => (ROOT ? l : l.replace(/ uid=\d+ gid=\d+/, '')));
    expect(strip(await describeTree(join(bundle, 'rootfs')))).toEqual(strip(await describeTree(volume)));
    await chmod(join(bundle, 'rootfs', 'ro'), 0o755);
  });
});

describe('unpacking a hostile layer', () => {
  async function layerOf(entries: { header: Partial<Header> & { name: string }; body?: string }[]): Promise<Buffer> {
    const pack = tar.pack();
    for (const e of entries) pack.entry(e.header, e.body ?? '');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async function unpackInto(bytes: Buffer): Promise<{ dest: string; error?: Error; outside: string }> {
    const base = await mkdtemp(join(tmpdir(), 'nexus-hostile-'));
    const dest = join(base, 'dest');
    const outside = join(base, 'outside');
    await mkdir(dest);
    await mkdir(outside);
    try {
      await unpackTree(Readable.from([bytes]), dest);
      return { dest, outside };
    } catch (err) {
      return { dest, error: err as Error, outside };
    }
  }

  it.each([
    ['a name with ..', [{ header: { name: '../outside/x', type: 'file' as const }, body: 'x' }]],
    ['an absolute name', [{ header: { name: '/tmp/nexus-hostile-abs', type: 'file' as const }, body: 'x' }]],
    [
      'a file through a symlink',
      [
        { header: { name: 'l', type: 'symlink' as const, linkname: '../outside' } },
        { header: { name: 'l/x', type: 'file' as const }, body: 'x' },
      ],
    ],
    [
      'a file over a symlink',
      [
        { header: { name: 'l', type: 'symlink' as const, linkname: '../outside/y' } },
        { header: { name: 'l', type: 'file' as const }, body: 'x' },
      ],
    ],
    ['a device', [{ header: { name: 'null', type: 'character-device' as const, devmajor: 1, devminor: 3 } }]],
    ['a hard link', [{ header: { name: 'h', type: 'link' as const, linkname: '/etc/shadow' } }]],
  ])('refuses %s and writes nothing outside', async (_what, entries) => {
    const r = await unpackInto(await layerOf(entries));
    expect(r.error).toBeDefined();
    expect(await readdir(r.outside)).toEqual([]);
    await rm(resolve(r.dest, '..'), { recursive: true, force: true });
  });

  it('never accepts a name that resolves outside the destination (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.array(fc.constantFrom('a', '..', '.', '', '/', 'b/', '\0'), { maxLength: 8 }).map((a) => a.join('/'))), (name) => {
        if (badEntryName(name) !== undefined) return true;
        const dest = '/srv/dest';
        const target = resolve(dest, name);
        return target.startsWith(dest + '/');
      }),
      { numRuns: 2000 },
    );
  });

  it('arbitrary bytes as a layer give an error or a tree, never a crash or a write outside', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), async (bytes) => {
        const r = await unpackInto(Buffer.from(bytes));
        const outside = await readdir(r.outside);
        await rm(resolve(r.dest, '..'), { recursive: true, force: true });
        return outside.length === 0;
      }),
      { numRuns: 100 },
    );
  });
});
