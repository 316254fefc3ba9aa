// One daemon per data directory. The lock is a kernel lock: SQLite's exclusive lock (POSIX
// fcntl) on DIR/daemon.lock, taken with BEGIN EXCLUSIVE and held for the daemon's lifetime. The
// kernel drops it when the process ends, however it ends (kill -9 included), so there is no stale
// lock to detect and a reused pid cannot keep a new daemon out. DIR/daemon.pid, written by the
// holder only, names it in the refusal. (The store's own locking is not enough: a second daemon
// would still read, and serve, a state it cannot write.)
import Database from 'better-sqlite3';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from './durable.ts';

export const LOCK_FILE = 'daemon.lock';
export const PID_FILE = 'daemon.pid';
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
  /** Releases the lock and removes the pid file. Idempotent. */
  release(): void;
}

function holderPid(dataDir: string): number | null {
  try {
    const text = readFileSync(join(dataDir, PID_FILE), 'utf8').slice(0, 32).trim();
    return /^\d{1,10}$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

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
  return {
    dataDir,
    release() {
      if (!held) return;
      held = false;
      if (holderPid(dataDir) === process.pid) rmSync(pidFile, { force: true });
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}
