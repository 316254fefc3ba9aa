// One daemon per data directory. The lock is a kernel lock: SQLite's exclusive lock (POSIX
// fcntl) on DIR/daemon.lock, taken with BEGIN EXCLUSIVE and held for the daemon's lifetime. The
// kernel drops it when the process ends, however it ends (kill -9 included), so there is no stale
// lock to detect and a reused pid cannot keep a new daemon out. DIR/daemon.pid, written by the
// holder only, names it in the refusal. (The store's own locking is not enough: a second daemon
// would still read, and serve, a state it cannot write.)
import Database from 'better-sqlite3';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from './durable.ts';
import { LOCK_FILE, PID_FILE, URL_FILE, readPidFile } from './daemon-files.ts';

export { LOCK_FILE, PID_FILE, URL_FILE };
/** Exit code of a daemon that finds its data directory already served (documented with the others in src/cli/errors.ts). */
export const LOCKED_EXIT_CODE = 6;

export class DataDirLockedError extends Error {
  readonly exitCode = LOCKED_EXIT_CODE;
  constructor(
    readonly dataDir: string,
    readonly pid: number | null,
  ) {
    super(`a daemon (pid ${pid ?? 'unknown'}) already serves ${dataDir}`);
    this.name = 'DataDirLockedError';
  }
}

export interface DataDirLock {
  readonly dataDir: string;
  /** Records the URL the daemon's API listens on in DIR/daemon.url (for `nexus status --data`, `nexus stop`). */
  advertise(url: string): void;
  /** Releases the lock and removes the pid and URL files. Idempotent. */
  release(): void;
}

const holderPid = readPidFile;

/** Takes the data directory's lock (creating the directory, mode 0700, if needed), or throws DataDirLockedError at once. */
export function lockDataDir(dataDir: string): DataDirLock {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(dataDir, LOCK_FILE), { timeout: 0 });
  try {
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY' || (err as { code?: string }).code === 'SQLITE_LOCKED') {
      // The holder writes its pid right after taking the lock: give it a moment if it is starting too.
      let pid = holderPid(dataDir);
      for (let i = 0; pid === null && i < 20; i++) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
        pid = holderPid(dataDir);
      }
      throw new DataDirLockedError(dataDir, pid);
    }
    throw err;
  }
  const pidFile = join(dataDir, PID_FILE);
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o644 });
  fsyncDir(dataDir);
  let held = true;
  const urlFile = join(dataDir, URL_FILE);
  // A URL left by a daemon that crashed names nothing now.
  rmSync(urlFile, { force: true });
  return {
    dataDir,
    advertise(url: string) {
      if (!held) return;
      writeFileSync(urlFile, `${url}\n`, { mode: 0o644 });
      fsyncDir(dataDir);
    },
    release() {
      if (!held) return;
      held = false;
      if (holderPid(dataDir) === process.pid) {
        rmSync(urlFile, { force: true });
        rmSync(pidFile, { force: true });
      }
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}

/**
 * Whether some process holds the data directory's lock now (a daemon serves it). Does not create
 * anything: false when there is no lock file. Taking the lock to find out holds it for an instant.
 */
export function isDataDirLocked(dataDir: string): boolean {
  let db: Database.Database;
  try {
    db = new Database(join(dataDir, LOCK_FILE), { timeout: 0, fileMustExist: true });
  } catch {
    return false;
  }
  try {
    db.exec('BEGIN EXCLUSIVE');
    db.exec('ROLLBACK');
    return false;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return true;
    throw err;
  } finally {
    db.close();
  }
}
