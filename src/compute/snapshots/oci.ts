// An IMVU's snapshots as one OCI image layout (DATA/imvus/<IMVU>/snapshots): content-addressed
// blobs under blobs/sha256/, one manifest per snapshot, listed in index.json. A snapshot is the
// manifest's digest: the manifest names the config blob (which carries the blueprint and the
// envelope as labels) and one uncompressed tar layer of the data volume (tree.ts). Blobs are
// written once, under their own digest, after write + fsync; nothing rewrites them. Verification
// reads every blob a manifest names again and recomputes its digest and size: a changed byte fails.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { fsyncDir } from '../../core/durable.ts';
import { packTree, type RootMeta } from './tree.ts';

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
/** Manifests and configs are small JSON: anything larger is not one of ours. */
const MAX_JSON_BLOB = 1024 * 1024;
const REF = 'org.opencontainers.image.ref.name';
export const LABEL = { imvu: 'org.nexus.imvu', envelope: 'org.nexus.envelope', blueprint: 'org.nexus.blueprint', root: 'org.nexus.data.root' } as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface SnapshotInput {
  imvu: string;
  /** The data volume (DATA/imvus/<IMVU>/compute/data); an absent one is an empty volume. */
  dataDir: string;
  /** The blueprint file's text, if the IMVU has one. */
  blueprint?: string;
  envelope: Record<string, number>;
}

/** What a snapshot covers: recorded in the ledger with its digest (snapshot.create). */
export interface SnapshotSummary {
  imvu: string;
  /** The manifest's digest: the snapshot's name. */
  digest: string;
  /** Bytes of the manifest, config and layer blobs together. */
  size: number;
  layer: string;
  entries: number;
  dataBytes: number;
  blueprint?: string;
  envelope: Record<string, number>;
  skipped: string[];
}

/** The layout's tag of a snapshot (umoci unpack --image DIR:TAG). */
export function tagOf(digest: string): string {
  return `snap-${digest.slice('sha256:'.length, 'sha256:'.length + 16)}`;
}

function blobPath(layout: string, digest: string): string {
  if (!DIGEST_RE.test(digest)) throw new Error(`not a sha256 digest: ${digest.slice(0, 80)}`);
  return join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** Write + fsync to a temporary name, rename, fsync the directory: the file is there whole or not at all. */
async function durableWriteFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  fsyncDir(dirname(path));
}

function hasher(): { t: Transform; result: () => { digest: string; size: number } } {
  const h = createHash('sha256');
  let size = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  return { t, result: () => ({ digest: `sha256:${h.digest('hex')}`, size }) };
}

async function ensureLayout(layout: string): Promise<void> {
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
  if (!existsSync(join(layout, 'oci-layout'))) await durableWriteFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  if (!existsSync(join(layout, 'index.json'))) await durableWriteFile(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [] }));
}

/** Streams whatever `write` produces into a blob named by its digest; returns the digest and size. */
async function writeStreamBlob(layout: string, write: (out: Writable) => Promise<void>): Promise<{ digest: string; size: number }> {
  const tmp = join(layout, 'blobs', `.tmp-${randomBytes(8).toString('hex')}`);
  const { t, result } = hasher();
  const fh = await open(tmp, 'wx', 0o600);
  try {
    const file = createWriteStream('', { fd: fh.fd, autoClose: false });
    await Promise.all([write(t), pipeline(t, file)]);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  const r = result();
  const dest = blobPath(layout, r.digest);
  if (existsSync(dest)) await rm(tmp, { force: true });
  else {
    await rename(tmp, dest);
    fsyncDir(join(layout, 'blobs', 'sha256'));
  }
  return r;
}

async function writeJsonBlob(layout: string, value: unknown): Promise<{ digest: string; size: number }> {
  const bytes = Buffer.from(JSON.stringify(value));
  return writeStreamBlob(layout, async (out) => {
    out.end(bytes);
  });
}

function goArch(): string {
  return ({ x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
}

/**
 * Writes a snapshot of the IMVU's data volume, blueprint and envelope into `layout` and lists it
 * in index.json. Slow (it reads and hashes every byte): run it outside any write transaction; only
 * the record (snapshot.create) goes through the chokepoint.
 */
export async function createSnapshot(layout: string, input: SnapshotInput): Promise<SnapshotSummary> {
  await ensureLayout(layout);
  let data = input.dataDir;
  if (!existsSync(data)) {
    // An IMVU that never ran has an empty volume: snapshot an empty directory.
    data = join(layout, `.empty-${randomBytes(6).toString('hex')}`);
    await mkdir(data, { mode: 0o700 });
  }
  let packed: Awaited<ReturnType<typeof packTree>> | undefined;
  let layer: { digest: string; size: number };
  try {
    layer = await writeStreamBlob(layout, async (out) => {
      packed = await packTree(data, out);
    });
  } finally {
    if (data !== input.dataDir) await rm(data, { recursive: true, force: true });
  }
  const summary = packed!;
  const labels: Record<string, string> = {
    [LABEL.imvu]: input.imvu,
    [LABEL.envelope]: JSON.stringify(sortedObject(input.envelope)),
    [LABEL.root]: JSON.stringify(summary.root),
  };
  if (input.blueprint !== undefined) labels[LABEL.blueprint] = input.blueprint;
  const config = await writeJsonBlob(layout, {
    architecture: goArch(),
    os: 'linux',
    config: { Labels: labels },
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
    history: [{ created_by: 'nexus snapshot create', comment: `data volume of ${input.imvu}` }],
  });
  const manifest = await writeJsonBlob(layout, {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: config.digest, size: config.size },
    layers: [{ mediaType: MEDIA.layer, digest: layer.digest, size: layer.size }],
    annotations: { [LABEL.imvu]: input.imvu },
  });
  await addToIndex(layout, { mediaType: MEDIA.manifest, digest: manifest.digest, size: manifest.size, annotations: { [REF]: tagOf(manifest.digest) } });
  return {
    imvu: input.imvu,
    digest: manifest.digest,
    size: manifest.size + config.size + layer.size,
    layer: layer.digest,
    entries: summary.entries,
    dataBytes: summary.bytes,
    ...(input.blueprint !== undefined ? { blueprint: `sha256:${createHash('sha256').update(input.blueprint).digest('hex')}` } : {}),
    envelope: input.envelope,
    skipped: summary.skipped,
  };
}

function sortedObject(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function addToIndex(layout: string, d: Descriptor): Promise<void> {
  const path = join(layout, 'index.json');
  const index = JSON.parse(await readFile(path, 'utf8')) as { manifests: Descriptor[] };
  if (index.manifests.some((m) => m.digest === d.digest)) return;
  index.manifests.push(d);
  await durableWriteFile(path, JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests: index.manifests }));
}

/** The digests listed in the layout's index (what is on disk; the ledger says what was recorded). */
export async function listLayout(layout: string): Promise<string[]> {
  if (!existsSync(join(layout, 'index.json'))) return [];
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests?: Descriptor[] };
  return (index.manifests ?? []).map((m) => m.digest);
}

async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const { t, result } = hasher();
  t.resume();
  await pipeline(createReadStream(path), t);
  return result();
}

async function readJsonBlob(layout: string, d: { digest: string; size: number }, what: string): Promise<unknown> {
  const path = blobPath(layout, d.digest);
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new SnapshotInvalid(`${what} ${d.digest} is missing`);
  if (st.size > MAX_JSON_BLOB) throw new SnapshotInvalid(`${what} ${d.digest} is ${st.size} bytes, larger than any ${what}`);
  const bytes = await readFile(path);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (digest !== d.digest) throw new SnapshotInvalid(`${what} ${d.digest} has changed: its bytes hash to ${digest}`);
  if (bytes.length !== d.size) throw new SnapshotInvalid(`${what} ${d.digest} is ${bytes.length} bytes, not ${d.size}`);
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new SnapshotInvalid(`${what} ${d.digest} is not JSON`);
  }
}

export class SnapshotInvalid extends Error {}

export interface VerifiedSnapshot {
  digest: string;
  manifest: { digest: string; size: number };
  config: { digest: string; size: number };
  layer: { digest: string; size: number };
  imvu: string;
  envelope: Record<string, number>;
  blueprint?: string;
  root: RootMeta;
  /** Where the verified layer blob is. */
  layerPath: string;
}

/** Recomputes the digest and size of every blob of snapshot `digest`; throws SnapshotInvalid on any difference. */
export async function verifySnapshot(layout: string, digest: string): Promise<VerifiedSnapshot> {
  const mpath = blobPath(layout, digest);
  const mst = await stat(mpath).catch(() => undefined);
  if (!mst) throw new SnapshotInvalid(`snapshot ${digest} is not in ${layout}`);
  const manifest = (await readJsonBlob(layout, { digest, size: mst.size }, 'manifest')) as {
    schemaVersion?: number;
    mediaType?: string;
    config?: Descriptor;
    layers?: Descriptor[];
  };
  if (manifest?.schemaVersion !== 2 || manifest.mediaType !== MEDIA.manifest || !manifest.config || !Array.isArray(manifest.layers) || manifest.layers.length !== 1)
    throw new SnapshotInvalid(`manifest ${digest} is not a snapshot manifest (one config, one layer)`);
  const layerD = manifest.layers[0]!;
  if (manifest.config.mediaType !== MEDIA.config || layerD.mediaType !== MEDIA.layer) throw new SnapshotInvalid(`manifest ${digest} names unexpected media types`);
  if (!Number.isSafeInteger(layerD.size) || !Number.isSafeInteger(manifest.config.size)) throw new SnapshotInvalid(`manifest ${digest} has a bad size`);
  const config = (await readJsonBlob(layout, manifest.config, 'config')) as { config?: { Labels?: Record<string, string> }; rootfs?: { diff_ids?: string[] } };
  const labels = config?.config?.Labels ?? {};
  if (config?.rootfs?.diff_ids?.length !== 1 || config.rootfs.diff_ids[0] !== layerD.digest) throw new SnapshotInvalid(`config of ${digest} does not name its layer`);
  const layerPath = blobPath(layout, layerD.digest);
  if (!existsSync(layerPath)) throw new SnapshotInvalid(`layer ${layerD.digest} of ${digest} is missing`);
  const actual = await hashFile(layerPath);
  if (actual.digest !== layerD.digest) throw new SnapshotInvalid(`layer ${layerD.digest} of ${digest} has changed: its bytes hash to ${actual.digest}`);
  if (actual.size !== layerD.size) throw new SnapshotInvalid(`layer ${layerD.digest} of ${digest} is ${actual.size} bytes, not ${layerD.size}`);
  let envelope: Record<string, number>;
  let root: RootMeta;
  try {
    envelope = JSON.parse(labels[LABEL.envelope] ?? '') as Record<string, number>;
    root = JSON.parse(labels[LABEL.root] ?? '') as RootMeta;
  } catch {
    throw new SnapshotInvalid(`config of ${digest} lacks the envelope or the data root`);
  }
  return {
    digest,
    manifest: { digest, size: mst.size },
    config: { digest: manifest.config.digest, size: manifest.config.size },
    layer: { digest: layerD.digest, size: layerD.size },
    imvu: labels[LABEL.imvu] ?? '',
    envelope,
    ...(labels[LABEL.blueprint] !== undefined ? { blueprint: labels[LABEL.blueprint] } : {}),
    root,
    layerPath,
  };
}

/**
 * Writes snapshot `digest` as an OCI archive (a tar of an image layout holding only it, tagged
 * `tag`) to `out`: what `skopeo copy oci-archive:FILE ...` and `umoci unpack` take. Verified first;
 * the blobs are copied as they are, so the archive's digests are the snapshot's.
 */
export async function exportSnapshot(layout: string, digest: string, out: Writable, tag = tagOf(digest)): Promise<VerifiedSnapshot> {
  const v = await verifySnapshot(layout, digest);
  const pack = tar.pack();
  const done = pipeline(pack, out);
  const mtime = new Date(0);
  const put = (name: string, body: Buffer) =>
    new Promise<void>((resolve, reject) => pack.entry({ name, mode: 0o644, mtime, uid: 0, gid: 0, uname: '', gname: '' }, body, (e) => (e ? reject(e) : resolve())));
  const dir = (name: string) =>
    new Promise<void>((resolve, reject) => pack.entry({ name, type: 'directory', mode: 0o755, mtime, uid: 0, gid: 0, uname: '', gname: '' }, (e) => (e ? reject(e) : resolve())));
  try {
    await put('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    await put('index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [{ mediaType: MEDIA.manifest, digest, size: v.manifest.size, annotations: { [REF]: tag } }] })));
    await dir('blobs/');
    await dir('blobs/sha256/');
    for (const d of [v.manifest, v.config]) await put(`blobs/sha256/${d.digest.slice(7)}`, await readFile(blobPath(layout, d.digest)));
    // The layer streams: it may be as large as the data volume. Its size was verified just above.
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ name: `blobs/sha256/${v.layer.digest.slice(7)}`, size: v.layer.size, mode: 0o644, mtime, uid: 0, gid: 0, uname: '', gname: '' }, (e) => (e ? reject(e) : resolve()));
      createReadStream(v.layerPath).on('error', reject).pipe(sink);
    });
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
  return v;
}
