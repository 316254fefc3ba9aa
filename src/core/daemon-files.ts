// What a running daemon leaves in its data directory for the commands that look for it (`nexus
// status --data`, `nexus stop`): DIR/daemon.pid (its pid, written right after it takes the lock)
// and DIR/daemon.url (the URL of its API, written once it listens). Both are removed when it stops
// cleanly; after a crash they stay, so neither is trusted alone: see pidHoldsFile(). No heavy
// imports here (the CLI loads this module for `status`).
import { readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = 'daemon.lock';
export const PID_FILE = 'daemon.pid';
export const URL_FILE = 'daemon.url';

/** The pid named by DIR/daemon.pid, or null (no file, or not a pid). */
export function readPidFile(dataDir: string): number | null {
  try {
    const text = readFileSync(join(dataDir, PID_FILE), 'utf8').slice(0, 32).trim();
    return /^\d{1,10}$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/** The URL recorded in DIR/daemon.url, or null (no file, or not an http(s) URL). */
export function readUrlFile(dataDir: string): string | null {
  try {
    const text = readFileSync(join(dataDir, URL_FILE), 'utf8').slice(0, 512).trim();
    const u = new URL(text);
    return u.protocol === 'http:' || u.protocol === 'https:' ? text : null;
  } catch {
    return null;
  }
}

/** Whether a process with this pid exists (a process of another user counts). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether process `pid` has `file` open, from /proc/PID/fd (Linux). true or false when that could
 * be read; undefined when it could not (no /proc, or another user's process).
 */
export function pidHoldsFile(pid: number, file: string): boolean | undefined {
  let target: string;
  try {
    target = realpathSync(file);
  } catch {
    return false;
  }
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' && existsProc() ? false : undefined;
  }
  for (const fd of fds.slice(0, 100_000)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

function existsProc(): boolean {
  try {
    readdirSync('/proc/self/fd');
    return true;
  } catch {
    return false;
  }
}
