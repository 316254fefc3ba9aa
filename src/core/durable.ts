// Durability on disk: what is acknowledged must survive a crash, so a rename counts only once the
// directory that holds it is fsynced too.
import { closeSync, fsyncSync, openSync } from 'node:fs';

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
