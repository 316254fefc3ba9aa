// Writes the exit archive in one pass over the built folder: every member is read once and, as
// its bytes go into the tar, hashed for MANIFEST.json (which goes in last, so it can list them);
// members whose digest was already taken while they were written (the data volume's tar) are not
// hashed again. The whole is one gzip stream whose level follows the content: level 1 for text,
// stored (level 0) for a large member that does not compress (random data, media, archives), so
// that an export of already-compressed data costs little more than copying it (a new gzip member
// at each change of level). The archive's own
// SHA-256 is taken on the way to the disk, so nothing is read back.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, fsyncSync, lstatSync, openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, deflateRawSync, type Gzip } from 'node:zlib';
import tarStream from 'tar-stream';
import type { ManifestFile } from './manifest.ts';

/** The gzip level of members that compress. */
export const TEXT_LEVEL = 1;
/** Members at least this large are sampled to decide whether they compress at all. */
const SAMPLE_FROM = 1 << 20;
const SAMPLE = 64 * 1024;

export type KnownDigests = ReadonlyMap<string, { sha256: string; size: number }>;

/**
 * Whether a file compresses: three 64 KiB samples (start, middle, end) deflated at level 1 must
 * shrink by 3% or more. A mistake here only costs size or time, never correctness.
 */
export function compresses(path: string, size: number): boolean {
  if (size < SAMPLE_FROM) return true;
  const fd = openSync(path, 'r');
  try {
    let raw = 0;
    let packed = 0;
    for (const at of [0, Math.floor(size / 2), size - SAMPLE]) {
      const buf = Buffer.alloc(SAMPLE);
      const n = readSync(fd, buf, 0, SAMPLE, Math.max(0, at));
      raw += n;
      packed += deflateRawSync(buf.subarray(0, n), { level: 1 }).length;
    }
    return packed < raw * 0.97;
  } finally {
    closeSync(fd);
  }
}

/**
 * A gzip stream whose level can change between members: at a change, the current gzip member is
 * ended and a new one begun (RFC 1952: a gzip file is a series of members; gunzip, GNU tar, zlib
 * and Python read them as one stream). zlib's deflateParams cannot switch level mid-stream once
 * input is pending, so a new member is the reliable way.
 */
class LevelGzip extends Writable {
  private gz: Gzip | undefined;
  private current = -1;
  /** The level the next bytes get. */
  level = TEXT_LEVEL;

  constructor(private readonly out: Writable) {
    super();
  }

  private async switchTo(level: number): Promise<void> {
    await this.endMember();
    const gz = createGzip({ level });
    gz.pipe(this.out, { end: false });
    this.gz = gz;
    this.current = level;
  }

  private async endMember(): Promise<void> {
    const gz = this.gz;
    if (!gz) return;
    this.gz = undefined;
    await new Promise<void>((resolve, reject) => {
      gz.once('end', resolve).once('error', reject);
      gz.end();
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const go = async () => {
      if (this.current !== this.level || !this.gz) await this.switchTo(this.level);
      if (!this.gz!.write(chunk)) await new Promise((r) => this.gz!.once('drain', r));
    };
    go().then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    (async () => {
      if (!this.gz) await this.switchTo(this.level);
      await this.endMember();
      await new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    })().then(() => cb(), cb);
  }
}

export interface PackedArchive {
  sha256: string;
  size: number;
  files: ManifestFile[];
}

/**
 * Tars `root` (as `<top>/...`) gzipped into `file`, then appends MANIFEST.json as made by
 * `manifest(files)` from the digests taken on the way; fsyncs the file. `files` are paths relative
 * to `root`, in the order they go in; `known` digests are trusted as they are (taken while written).
 */
export async function packArchive(
  root: string,
  top: string,
  files: string[],
  known: KnownDigests,
  manifestName: string,
  manifest: (files: ManifestFile[]) => string,
  file: string,
  onBytes?: (done: number, total: number) => void,
): Promise<PackedArchive> {
  const pack = tarStream.pack();
  const archiveHash = createHash('sha256');
  let archiveSize = 0;
  const out = createWriteStream(file, { mode: 0o600 });
  const fileDone = new Promise<void>((resolve, reject) => out.once('close', resolve).once('error', reject));
  const tee = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      archiveHash.update(chunk);
      archiveSize += chunk.length;
      cb(null, chunk);
    },
  });
  tee.pipe(out);
  const gz = new LevelGzip(tee);
  const written = pipeline(pack, gz).then(() => fileDone);
  const entry = (header: Partial<tarStream.Header> & { name: string }, body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      if (body) pack.entry(header, body, (e) => (e ? reject(e) : resolve()));
      else pack.entry(header, (e) => (e ? reject(e) : resolve()));
    });
  const base = { uid: 0, gid: 0, uname: '', gname: '' };
  const stats = files.map((rel) => ({ rel, st: lstatSync(join(root, rel)) }));
  const total = stats.reduce((n, s) => n + s.st.size, 0);
  let done = 0;
  const listed: ManifestFile[] = [];
  const dirs = new Set<string>();
  try {
    await entry({ ...base, name: `${top}/`, type: 'directory', mode: 0o700, mtime: new Date() });
    for (const { rel, st } of stats) {
      if (!st.isFile()) throw new Error(`${rel} is not a regular file`);
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (dirs.has(d)) continue;
        dirs.add(d);
        await entry({ ...base, name: `${top}/${d}/`, type: 'directory', mode: 0o700, mtime: st.mtime });
      }
      // Bytes of the previous member still in the tar stream may go in at this level: it only
      // changes the size, never the content.
      gz.level = compresses(join(root, rel), st.size) ? TEXT_LEVEL : 0;
      const k = known.get(rel);
      const h: Hash | undefined = k ? undefined : createHash('sha256');
      let size = 0;
      if (st.size === 0) await entry({ ...base, name: `${top}/${rel}`, type: 'file', size: 0, mode: st.mode & 0o777, mtime: st.mtime }, Buffer.alloc(0));
      else
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry({ ...base, name: `${top}/${rel}`, type: 'file', size: st.size, mode: st.mode & 0o777, mtime: st.mtime }, (e) => (e ? reject(e) : resolve()));
          const src = createReadStream(join(root, rel), { highWaterMark: 1 << 20 });
          src.on('data', (c) => {
            const b = c as Buffer;
            h?.update(b);
            size += b.length;
            done += b.length;
            onBytes?.(done, total);
          });
          src.on('error', reject);
          src.pipe(sink);
        });
      if (k && k.size !== st.size) throw new Error(`${rel} is ${st.size} bytes, it was ${k.size} when written`);
      listed.push({ path: rel, sha256: k ? k.sha256 : h!.digest('hex'), size: k ? k.size : size });
    }
    gz.level = TEXT_LEVEL;
    await entry({ ...base, name: `${top}/${manifestName}`, type: 'file', mode: 0o644, mtime: new Date() }, Buffer.from(manifest(listed)));
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await written.catch(() => undefined);
    throw err;
  }
  await written;
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { sha256: archiveHash.digest('hex'), size: archiveSize, files: listed };
}
