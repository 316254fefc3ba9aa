// Where an import's files live under the data directory: a module of paths only, so that the mail
// system can ask whether a restore is owed without loading the import's key handling.
import { join } from 'node:path';

/** DATA/imports/<sha256>: where an uploaded archive and its verified extraction are kept. */
export function stagingDir(dataDir: string, sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a SHA-256 digest: ${sha256}`);
  return join(dataDir, 'imports', sha256);
}

/**
 * The marker that says `imvu`'s mail and data volume are still owed a restore from the archive
 * `sha256` (written before the entry that makes the import whole, removed once restored).
 */
export function restorePendingFile(dataDir: string, sha256: string, imvu: string): string {
  return join(stagingDir(dataDir, sha256), `restore-${imvu}.pending`);
}

