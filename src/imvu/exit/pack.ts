// Writes the exit archive in one pass over the built folder: every member is read once and, as
// its bytes go into the tar, hashed for MANIFEST.json (which goes in last, so it can list them);
// members whose digest was already taken while they were written are not hashed again, and a
// member made on the fly (the data volume's tar, see StreamedMember) goes in as it is produced,
// never as a file first. The whole is a gzip file whose level follows the content: level 1 for
// text, stored (deflate's uncompressed blocks, framed here: RFC 1951 3.2.4) for a large member
// that does not compress (random data, media, archives), so that an export of already-compressed
// data costs little more than copying it; a new gzip member at each change of level (RFC 1952).
// The archive's own SHA-256 is taken on the way to the disk, so nothing is read back.
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, openSync, readSync, closeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createGzip, deflateRawSync, type Gzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { ParallelHash } from './hash-worker.ts';
import type { ManifestFile } from './manifest.ts';

/** The gzip level of members that compress. */
export const TEXT_LEVEL = 1;
/** Members at least this large are sampled to decide whether they compress at all. */
const SAMPLE_FROM = 1 << 20;
const SAMPLE = 64 * 1024;
/** Bytes read from a member at a time: large reads keep the per-chunk cost of streams low. */
const READ_CHUNK = 1 << 20;

/**
 * Bytes written between two flushes to the disk begun while the archive is still being written:
 * the kernel starts writing dirty pages back on its own only past a share of the memory (GiBs
 * here), so without these the final fsync waits for the whole archive to reach the disk after
 * all the other work is done; with them the disk works while the rest goes on.
 */
export const FLUSH_EVERY = 64 << 20;

export type KnownDigests = ReadonlyMap<string, { sha256: string; size: number }>;

/** A member produced while the archive is written (the data volume's tar), not read from a file. */
export interface StreamedMember {
  /** Its exact length, known beforehand (a tar header comes first); another length fails the archive. */
  size: number;
  /** Whether it is worth compressing (see compresses()). */
  compresses: boolean;
  /** Writes the member's bytes into `into` and ends it. */
  write(into: Writable): Promise<void>;
}

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
 * The archive file: every byte hashed (on a worker thread, while this one hashes the members) on
 * its way to the disk, writes kept in order.
 */
class ArchiveFile {
  private readonly hash = new ParallelHash();
  private tail: Promise<void> = Promise.resolve();
  /** Bytes written since the last flush to the disk was begun. */
  private unflushed = 0;
  /** A flush in progress (see FLUSH_EVERY); its error fails close(). */
  private flushing: Promise<void> | undefined;
  private flushFailed: Error | undefined;

  private constructor(private readonly fh: FileHandle) {}

  static async open(path: string): Promise<ArchiveFile> {
    return new ArchiveFile(await open(path, 'w', 0o600));
  }

  /** Appends `bufs` (in order, after every earlier write); resolves once they are written. */
  write(bufs: Buffer[]): Promise<void> {
    this.tail = this.tail.then(async () => {
      for (const b of bufs) await this.hash.update(b);
      let rest = bufs;
      while (rest.length) {
        let { bytesWritten } = await this.fh.writev(rest);
        // A short write (rare on a regular file): go on from the first byte not written.
        while (rest.length && bytesWritten >= rest[0]!.length) bytesWritten -= rest.shift()!.length;
        if (rest.length && bytesWritten) rest = [rest[0]!.subarray(bytesWritten), ...rest.slice(1)];
      }
      this.unflushed += bufs.reduce((n, b) => n + b.length, 0);
      if (this.unflushed >= FLUSH_EVERY && !this.flushing) {
        this.unflushed = 0;
        this.flushing = this.fh.datasync().then(
          () => (this.flushing = undefined),
          (err: Error) => {
            this.flushFailed ??= err;
            this.flushing = undefined;
          },
        );
      }
    });
    return this.tail;
  }

  /** Waits for the writes, fsyncs and closes; the archive's digest and length. */
  async close(): Promise<{ sha256: string; size: number }> {
    try {
      await this.tail;
      await this.flushing;
      if (this.flushFailed) throw this.flushFailed;
      await this.fh.sync();
      return await this.hash.digest();
    } finally {
      await this.fh.close();
    }
  }

  /** Closes after a failure: what was written is left to the caller to remove. */
  async abort(): Promise<void> {
    await this.tail.catch(() => undefined);
    await this.flushing;
    await this.hash.abort();
    await this.fh.close();
  }
}

/** gzip's member header: deflate, no name, no time, unknown OS. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
/** The largest stored block deflate allows. */
const STORED_MAX = 0xffff;
/** An empty final stored block: ends a member's deflate stream. */
const STORED_END = Buffer.from([1, 0, 0, 0xff, 0xff]);

/**
 * `chunk` as deflate stored blocks (RFC 1951 3.2.4: a byte with BFINAL 0 and BTYPE 00, LEN, its
 * complement NLEN, then the bytes as they are), as slices of `chunk` itself: nothing copied.
 */
export function storedBlocks(chunk: Buffer): Buffer[] {
  const n = Math.ceil(chunk.length / STORED_MAX);
  const heads = Buffer.alloc(5 * n);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const from = i * STORED_MAX;
    const len = Math.min(STORED_MAX, chunk.length - from);
    const h = heads.subarray(5 * i, 5 * i + 5);
    h.writeUInt16LE(len, 1);
    h.writeUInt16LE(~len & 0xffff, 3);
    out.push(h, chunk.subarray(from, from + len));
  }
  return out;
}

/**
 * A gzip stream whose level can change between members: at a change, the current gzip member is
 * ended and a new one begun (RFC 1952: a gzip file is a series of members; gunzip, GNU tar, zlib
 * and Python read them as one stream). Level 0 members are framed here (header, stored blocks,
 * CRC-32 and length): zlib's level 0 copies every byte through its window for the same output.
 */
class LevelGzip extends Writable {
  private gz: Gzip | undefined;
  private stored: { crc: number; size: number } | undefined;
  /** The level of the member being written, -1 between members. */
  private current = -1;
  /** The level the next bytes get. */
  level = TEXT_LEVEL;

  constructor(private readonly out: ArchiveFile) {
    super({ highWaterMark: 4 << 20 });
  }

  private async endMember(): Promise<void> {
    this.current = -1;
    const gz = this.gz;
    if (gz) {
      this.gz = undefined;
      await new Promise<void>((resolve, reject) => {
        gz.once('end', resolve).once('error', reject);
        gz.end();
      });
    }
    const s = this.stored;
    if (s) {
      this.stored = undefined;
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(s.crc >>> 0, 0);
      trailer.writeUInt32LE(s.size % 2 ** 32, 4);
      void this.out.write([STORED_END, trailer]);
    }
    await this.out.write([]);
  }

  private async begin(level: number): Promise<void> {
    await this.endMember();
    this.current = level;
    if (level === 0) {
      this.stored = { crc: 0, size: 0 };
      void this.out.write([GZIP_HEADER]);
      return;
    }
    const gz = createGzip({ level, chunkSize: 1 << 20 });
    gz.on('data', (c: Buffer) => {
      gz.pause();
      this.out.write([c]).then(
        () => gz.resume(),
        (err: Error) => gz.destroy(err),
      );
    });
    this.gz = gz;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const go = async () => {
      if (this.current !== this.level) await this.begin(this.level);
      const s = this.stored;
      if (s) {
        s.crc = crc32(chunk, s.crc);
        s.size += chunk.length;
        await this.out.write(storedBlocks(chunk));
        return;
      }
      const gz = this.gz!;
      if (!gz.write(chunk)) await new Promise((r) => gz.once('drain', r));
    };
    go().then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    (async () => {
      if (this.current === -1) await this.begin(this.level);
      await this.endMember();
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
 * to `root`, in the order they go in; `known` digests are trusted as they are (taken while written);
 * a path in `streamed` is not read from `root` but written by its producer as it goes in.
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
  streamed: ReadonlyMap<string, StreamedMember> = new Map(),
): Promise<PackedArchive> {
  const pack = tarStream.pack();
  const out = await ArchiveFile.open(file);
  const gz = new LevelGzip(out);
  const written = pipeline(pack, gz);
  const entry = (header: Partial<tarStream.Header> & { name: string }, body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      if (body) pack.entry(header, body, (e) => (e ? reject(e) : resolve()));
      else pack.entry(header, (e) => (e ? reject(e) : resolve()));
    });
  const base = { uid: 0, gid: 0, uname: '', gname: '' };
  const now = new Date();
  const stats = files.map((rel) => {
    const s = streamed.get(rel);
    return { rel, s, st: s ? undefined : lstatSync(join(root, rel)) };
  });
  const total = stats.reduce((n, x) => n + (x.s ? x.s.size : x.st!.size), 0);
  let done = 0;
  const listed: ManifestFile[] = [];
  const dirs = new Set<string>();
  try {
    await entry({ ...base, name: `${top}/`, type: 'directory', mode: 0o700, mtime: now });
    for (const { rel, s, st } of stats) {
      if (st && !st.isFile()) throw new Error(`${rel} is not a regular file`);
      const mtime = st ? st.mtime : now;
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (dirs.has(d)) continue;
        dirs.add(d);
        await entry({ ...base, name: `${top}/${d}/`, type: 'directory', mode: 0o700, mtime });
      }
      // Bytes of the previous member still in the tar stream may go in at this level: it only
      // changes the size, never the content.
      gz.level = (s ? s.compresses : compresses(join(root, rel), st!.size)) ? TEXT_LEVEL : 0;
      const size = s ? s.size : st!.size;
      const header = { ...base, name: `${top}/${rel}`, type: 'file' as const, size, mode: st ? st.mode & 0o777 : 0o600, mtime };
      const k = s ? undefined : known.get(rel);
      const h = k ? undefined : createHash('sha256');
      let got = 0;
      const count = (b: Buffer) => {
        h?.update(b);
        got += b.length;
        done += b.length;
        onBytes?.(done, total);
      };
      if (size === 0) await entry(header, Buffer.alloc(0));
      else
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry(header, (e) => (e ? reject(e) : resolve()));
          // A member longer or shorter than its header said ("Size mismatch") fails the archive.
          sink.on('error', reject);
          if (s) {
            // The producer's bytes, hashed on their way into the tar.
            const tee = new Transform({
              highWaterMark: 4 << 20,
              transform(chunk: Buffer, _enc, cb) {
                count(chunk);
                cb(null, chunk);
              },
            });
            tee.pipe(sink);
            s.write(tee).catch((err: Error) => {
              tee.destroy(err);
              reject(err);
            });
            return;
          }
          const src = createReadStream(join(root, rel), { highWaterMark: READ_CHUNK });
          src.on('data', (c) => count(c as Buffer));
          src.on('error', reject);
          src.pipe(sink);
        });
      if (got !== size) throw new Error(`${rel} gave ${got} bytes, its tar header says ${size}`);
      if (k && k.size !== size) throw new Error(`${rel} is ${size} bytes, it was ${k.size} when written`);
      listed.push({ path: rel, sha256: k ? k.sha256 : h!.digest('hex'), size });
    }
    gz.level = TEXT_LEVEL;
    await entry({ ...base, name: `${top}/${manifestName}`, type: 'file', mode: 0o644, mtime: new Date() }, Buffer.from(manifest(listed)));
    pack.finalize();
    await written;
  } catch (err) {
    pack.destroy(err as Error);
    await written.catch(() => undefined);
    await out.abort().catch(() => undefined);
    throw err;
  }
  const { sha256, size } = await out.close();
  return { sha256, size, files: listed };
}
