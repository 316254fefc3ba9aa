// A directory tree as one deterministic tar layer, and back. The same tree always gives the same
// bytes: entries in a fixed order (depth first, names sorted by their bytes), only the fields that
// describe the tree itself (path, type, permission bits, numeric owner, mtime in whole seconds,
// size, link target), never the host's user names, device numbers or access times. The tree's
// root is described outside the tar (its mode, owner and mtime go into the manifest), so that a
// layer unpacks onto any root without a "./" entry.
//
// Extraction treats the tar as hostile even though its digest was verified (a snapshot's bytes
// are only as trustworthy as the directory they were read from): relative names only, no "..",
// every parent a directory this extraction itself created (so nothing is written through a
// symlink), bounded entry count, only files, directories, symlinks and FIFOs.
import { createReadStream, createWriteStream, type Stats } from 'node:fs';
import { chown, lchown, lstat, lutimes, mkdir, open, readdir, readlink, symlink, utimes, chmod } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable, type Readable } from 'node:stream';
import tar, { type Header } from 'tar-stream';

/** Entries one layer may hold: far above any real data volume's file count, and a bound on work. */
export const MAX_ENTRIES = 5_000_000;

export interface RootMeta {
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
}

export interface PackSummary {
  entries: number;
  /** Bytes of regular file contents. */
  bytes: number;
  /** Sockets are not part of a snapshot (they are bound again by the workload that owns them). */
  skipped: string[];
  root: RootMeta;
}

const seconds = (st: Stats) => Math.floor(st.mtimeMs / 1000);
const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Bytes read from a file at a time: large reads keep the per-chunk cost of streams low. */
const READ_CHUNK = 1 << 20;
const pad512 = (n: number) => Math.ceil(n / 512) * 512;

/**
 * The exact length of the tar `packTree(root, ...)` writes, without reading any file: the same walk
 * and the same header encoder with every file's body left out, plus each body padded to 512 bytes.
 * Lets the tar go into another archive as a member whose size must be known first; if the tree
 * changes before it is packed, the member's length no longer matches and that archive fails.
 */
export async function tarSize(root: string, onFile?: (path: string, size: number) => void): Promise<{ size: number; summary: PackSummary }> {
  let headers = 0;
  const count = new Writable({
    write(chunk: Buffer, _enc, cb) {
      headers += chunk.length;
      cb();
    },
  });
  let bodies = 0;
  const summary = await packTree(root, count, (path, size) => {
    bodies += pad512(size);
    onFile?.(path, size);
  });
  return { size: headers + bodies, summary };
}

/**
 * Packs `root` into `out` (the tar bytes); throws if a file changes while it is read. With
 * `sizeOnly`, file bodies are left out (headers only, each file's size given to it instead): tarSize.
 */
export async function packTree(root: string, out: Writable, sizeOnly?: (path: string, size: number) => void): Promise<PackSummary> {
  const rootStat = await lstat(root);
  if (!rootStat.isDirectory()) throw new Error(`${root} is not a directory`);
  const pack = tar.pack();
  const done = pipeline(pack, out);
  const summary: PackSummary = { entries: 0, bytes: 0, skipped: [], root: { mode: rootStat.mode & 0o7777, uid: rootStat.uid, gid: rootStat.gid, mtime: seconds(rootStat) } };
  const entry = (header: Partial<Header> & { name: string }, body?: Buffer | Readable) =>
    new Promise<void>((resolve, reject) => {
      if (body === undefined) {
        pack.entry(header, (err) => (err ? reject(err) : resolve()));
        return;
      }
      if (Buffer.isBuffer(body)) {
        pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
        return;
      }
      const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
      body.on('error', reject);
      body.pipe(sink);
    });
  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = (await readdir(dir)).sort(byBytes);
    for (const name of names) {
      const abs = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(abs);
      if (++summary.entries > MAX_ENTRIES) throw new Error(`more than ${MAX_ENTRIES} entries under ${root}`);
      const base = { name: path, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, uname: '', gname: '', mtime: new Date(seconds(st) * 1000) };
      if (st.isDirectory()) {
        await entry({ ...base, name: `${path}/`, type: 'directory' });
        await walk(abs, path);
      } else if (st.isFile()) {
        summary.bytes += st.size;
        // A file that grows or shrinks while it is read fails the entry (tar-stream checks the size).
        if (sizeOnly) {
          sizeOnly(abs, st.size);
          await entry({ ...base, type: 'file', size: 0 }, Buffer.alloc(0));
        } else
          await entry(
            { ...base, type: 'file', size: st.size },
            st.size === 0 ? Buffer.alloc(0) : createReadStream(abs, { start: 0, end: st.size - 1, highWaterMark: READ_CHUNK }),
          );
        const after = await lstat(abs);
        if (after.size !== st.size || after.mtimeMs !== st.mtimeMs) throw new Error(`${path} changed while it was read: stop the workload and try again`);
      } else if (st.isSymbolicLink()) {
        await entry({ ...base, type: 'symlink', linkname: await readlink(abs) });
      } else if (st.isFIFO()) {
        await entry({ ...base, type: 'fifo' });
      } else if (st.isSocket()) {
        summary.entries--;
        summary.skipped.push(path);
      } else throw new Error(`${path}: device files are not part of a data volume`);
    }
  };
  try {
    await walk(root, '');
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
  return summary;
}

/** Why a tar entry name is refused, or undefined for a clean relative name. */
export function badEntryName(name: string): string | undefined {
  const n = name.endsWith('/') ? name.slice(0, -1) : name;
  if (n.length === 0) return 'an empty name';
  if (n.length > 4096) return 'a name longer than 4096 bytes';
  if (n.startsWith('/')) return 'an absolute name';
  if (n.includes('\0')) return 'a name with a NUL byte';
  const parts = n.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return 'a name with an empty, "." or ".." component';
  return undefined;
}

const ROOT = process.getuid?.() === 0;

/**
 * Unpacks a layer made by packTree into `dest`, which must be an empty directory. Owners are
 * restored when running as root (ownership of someone else's files needs it); modes, mtimes,
 * contents and link targets always. Directory modes and mtimes are set last, deepest first, so a
 * read-only directory can still be filled and its mtime is not disturbed by its children.
 */
export async function unpackTree(input: Readable, dest: string, root?: RootMeta): Promise<{ entries: number; bytes: number }> {
  const dirs = new Set<string>(['']);
  const dirMeta: { path: string; mode: number; uid: number; gid: number; mtime: Date }[] = [];
  let entries = 0;
  let bytes = 0;
  const extract = tar.extract();
  const fail = (name: string, why: string) => new Error(`snapshot layer entry '${name.slice(0, 200)}': ${why}`);
  const consume = (async () => {
    for await (const e of extract) {
      const h = e.header;
      if (++entries > MAX_ENTRIES) throw new Error(`snapshot layer has more than ${MAX_ENTRIES} entries`);
      const bad = badEntryName(h.name);
      if (bad) throw fail(h.name, `refused: ${bad}`);
      const rel = h.name.endsWith('/') ? h.name.slice(0, -1) : h.name;
      const parent = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
      if (!dirs.has(parent)) throw fail(h.name, 'its parent is not a directory of this layer');
      const abs = join(dest, ...rel.split('/'));
      const mode = (h.mode ?? 0o644) & 0o7777;
      const uid = h.uid ?? 0;
      const gid = h.gid ?? 0;
      const mtime = h.mtime ?? new Date(0);
      switch (h.type) {
        case 'directory':
          await mkdir(abs, { mode: 0o700 });
          dirs.add(rel);
          dirMeta.push({ path: abs, mode, uid, gid, mtime });
          e.resume();
          break;
        case 'file': {
          // O_EXCL | O_NOFOLLOW: never through or onto something that is already there.
          const fh = await open(abs, 'wx', 0o600);
          try {
            await pipeline(e, createWriteStream('', { fd: fh.fd, autoClose: false }));
            await fh.sync();
          } finally {
            await fh.close();
          }
          bytes += h.size ?? 0;
          if (ROOT) await chown(abs, uid, gid);
          await chmod(abs, mode);
          await utimes(abs, mtime, mtime);
          break;
        }
        case 'symlink':
          if (!h.linkname) throw fail(h.name, 'a symlink without a target');
          await symlink(h.linkname, abs);
          if (ROOT) await lchown(abs, uid, gid);
          await lutimes(abs, mtime, mtime);
          e.resume();
          break;
        case 'fifo':
          execFileSync('mkfifo', ['-m', mode.toString(8), '--', abs]);
          if (ROOT) await chown(abs, uid, gid);
          await chmod(abs, mode);
          await utimes(abs, mtime, mtime);
          e.resume();
          break;
        default:
          throw fail(h.name, `refused: type ${String(h.type)} is not part of a data volume`);
      }
    }
  })();
  await Promise.all([pipeline(input, extract), consume]);
  for (const d of dirMeta.reverse()) {
    if (ROOT) await chown(d.path, d.uid, d.gid);
    await chmod(d.path, d.mode);
    await utimes(d.path, d.mtime, d.mtime);
  }
  if (root) {
    if (ROOT) await chown(dest, root.uid, root.gid);
    await chmod(dest, root.mode);
    await utimes(dest, new Date(root.mtime * 1000), new Date(root.mtime * 1000));
  }
  return { entries, bytes };
}
