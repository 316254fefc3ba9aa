// The close seal: what lets a clean restart skip the start-up scan of every projection row.
//
// The start-up scan exists to find rows edited while the daemon was down. When the daemon closes
// its database cleanly (the WAL checkpointed and removed), it writes DATA/close.seal, a note
// signed by the platform key that binds the ledger's size and root and the projections' combined
// digest at that moment to the identity of the database file as the kernel reports it: device,
// inode, size, and modification and change times in nanoseconds. Any write to the file through
// the file system (sqlite3, a copy put back, a `touch -d` to hide an edit) moves its change time,
// which no system call sets directly. At the next start, before the database is opened, the seal is
// read and removed at once (one use: a daemon that crashes after starting leaves none), and the
// scan is skipped only if the file is exactly as sealed and no WAL or rollback journal lies beside
// it (an edit that is still in a -wal file never reached the main file). Everything else scans,
// as before. What the seal does not stop: root who resets the clock or writes the block device
// directly can change the file and keep its identity, as root who re-signs the checkpoint file can
// rewrite rows and digests consistently today (docs/ARCHITECTURE.md). For that case the daemon
// runs its full check on a worker thread as soon as it serves after a sealed start.
import { closeSync, constants, fstatSync, openSync, readSync, statSync, unlinkSync, writeFileSync, fsyncSync, renameSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { openNote, signNote } from '../ledger/checkpoint.ts';
import { DB_FILE } from '../store/index.ts';

export const CLOSE_SEAL_FILE = 'close.seal';
const MAX_SEAL_BYTES = 4096;
/** Longer than the kernel's timestamp granularity (one tick: 1-10 ms). */
const COARSE_CLOCK_MS = 25;

export function closeSealKeyName(origin: string): string {
  return `${origin}/close-seal`;
}

/** The database file as the kernel identifies it (all decimal strings: nanosecond times exceed 2^53). */
export interface FileIdentity {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
}

export interface CloseSeal {
  /** Ledger tree size and root when the database was closed. */
  size: number;
  root: Buffer;
  /** combinedDigest of the projections at that size (what projection_digests records). */
  projections: string;
  db: FileIdentity;
}

/** Outcome of taking the seal at start: `seal` when the file is exactly as sealed, else why not. */
export type TakenSeal = { seal: CloseSeal; reason?: undefined } | { seal?: undefined; reason: string };

const exists = (path: string): { size: number } | undefined => {
  try {
    return statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
};

/**
 * The identity of DATA/nexus.db, or why it has none a seal could vouch for: a WAL or rollback
 * journal beside it holds writes the main file does not show.
 */
export function dbFileIdentity(dataDir: string): FileIdentity | string {
  const db = join(dataDir, DB_FILE);
  for (const side of ['-wal', '-journal']) {
    const s = exists(db + side);
    if (s && s.size > 0) return `${DB_FILE}${side} holds writes (${s.size} bytes)`;
  }
  const s = statSync(db, { bigint: true });
  if (!s.isFile()) return `${DB_FILE} is not a regular file`;
  return { dev: String(s.dev), ino: String(s.ino), size: String(s.size), mtimeNs: String(s.mtimeNs), ctimeNs: String(s.ctimeNs) };
}

const DIGITS = /^(0|[1-9][0-9]{0,39})$/;

function formatSeal(origin: string, seal: CloseSeal): string {
  const d = seal.db;
  return [closeSealKeyName(origin), `size ${seal.size}`, `root ${seal.root.toString('base64')}`, `projections ${seal.projections}`, `file ${DB_FILE} ${d.dev} ${d.ino} ${d.size} ${d.mtimeNs} ${d.ctimeNs}`, ''].join('\n');
}

/** Parses a seal's verified text; throws on anything but exactly the five lines formatSeal writes. */
function parseSeal(origin: string, text: string): CloseSeal {
  const lines = text.split('\n');
  if (lines.length !== 6 || lines[5] !== '') throw new Error('not five lines');
  if (lines[0] !== closeSealKeyName(origin)) throw new Error('for another log');
  const size = /^size (0|[1-9][0-9]{0,14})$/.exec(lines[1]!);
  const root = /^root ([A-Za-z0-9+/]{43}=)$/.exec(lines[2]!);
  const projections = /^projections ([0-9a-f]{64})$/.exec(lines[3]!);
  const file = lines[4]!.split(' ');
  if (!size || !root || !projections || file.length !== 7 || file[0] !== 'file' || file[1] !== DB_FILE || !file.slice(2).every((f) => DIGITS.test(f))) throw new Error('malformed');
  return {
    size: Number(size[1]),
    root: Buffer.from(root[1]!, 'base64'),
    projections: projections[1]!,
    db: { dev: file[2]!, ino: file[3]!, size: file[4]!, mtimeNs: file[5]!, ctimeNs: file[6]! },
  };
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * After the database was closed: seals it (write, fsync, rename, fsync of the directory). Returns
 * why not when the file cannot be vouched for (a WAL left by another open connection).
 */
export function writeCloseSeal(dataDir: string, origin: string, key: KeyObject, state: Omit<CloseSeal, 'db'>): string | undefined {
  const db = dbFileIdentity(dataDir);
  if (typeof db === 'string') return db;
  // File times come from the kernel's coarse clock (a tick of a few ms): a write in the same tick
  // as the last one sealed would leave the times as they were. The seal appears only once that
  // tick is well past, so every later write moves the change time.
  const wait = Number(BigInt(db.ctimeNs) / 1_000_000n) + COARSE_CLOCK_MS - Date.now();
  if (wait > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(wait, COARSE_CLOCK_MS));
  const file = join(dataDir, CLOSE_SEAL_FILE);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    writeFileSync(fd, signNote(formatSeal(origin, { ...state, db }), closeSealKeyName(origin), key));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  fsyncDir(dataDir);
  return undefined;
}

/**
 * At start, before the database is opened: reads the seal, removes it (durably: it vouches for one
 * start only), and returns it if it verifies with the platform key and the database file is
 * exactly the one sealed. Never throws for a bad or missing seal: the caller scans instead.
 */
export function takeCloseSeal(dataDir: string, origin: string, platformKeyRaw: Uint8Array): TakenSeal {
  const file = join(dataDir, CLOSE_SEAL_FILE);
  let text: string;
  try {
    const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      if (!fstatSync(fd).isFile()) return { reason: `${CLOSE_SEAL_FILE} is not a regular file` };
      const buf = Buffer.alloc(MAX_SEAL_BYTES + 1);
      let n = 0;
      for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, null)) > 0; ) n += r;
      if (n > MAX_SEAL_BYTES) return { reason: `${CLOSE_SEAL_FILE} is larger than ${MAX_SEAL_BYTES} bytes` };
      text = buf.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { reason: 'no close seal (the last stop was not a clean one, or the directory never had a seal)' };
    return { reason: `${CLOSE_SEAL_FILE} cannot be read: ${(err as Error).message}` };
  } finally {
    try {
      unlinkSync(file);
      fsyncDir(dataDir);
    } catch {
      // Gone already, or a directory we cannot write: the database open fails the same way.
    }
  }
  let seal: CloseSeal;
  try {
    seal = parseSeal(origin, openNote(text, [{ name: closeSealKeyName(origin), publicKeyRaw: platformKeyRaw }]).text);
  } catch (err) {
    return { reason: `${CLOSE_SEAL_FILE} does not verify with the platform key: ${(err as Error).message}` };
  }
  let now: FileIdentity | string;
  try {
    now = dbFileIdentity(dataDir);
  } catch (err) {
    return { reason: `${DB_FILE} cannot be examined: ${(err as Error).message}` };
  }
  if (typeof now === 'string') return { reason: now };
  const changed = (Object.keys(now) as (keyof FileIdentity)[]).filter((k) => now[k] !== seal.db[k]);
  if (changed.length) return { reason: `${DB_FILE} changed since the daemon closed it (${changed.join(', ')})` };
  return { seal };
}
