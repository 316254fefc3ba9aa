// What an operator with root can do to a stopped platform's data directory with sqlite3 and the
// platform key: open the database with the append-only triggers dropped, and re-record what the
// platform records beside the ledger (the projection digest and the checkpoint file) so that a
// rewrite is consistent with itself.
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { CheckpointFileWriter, formatCheckpointFile } from '../../src/core/ledger/checkpoint-file.ts';
import { rootHash } from '../../src/core/ledger/merkle.ts';
import { combinedDigest, scanAll } from '../../src/core/store/digest.ts';
import { SqliteStore } from '../../src/core/store/index.ts';

const GUARDED = ['ledger_entries', 'ledger_nodes', 'ledger_checkpoints', 'projection_digests'];

/** The data directory's database, opened as root would, with the append-only triggers dropped. */
export function openAsRoot(dataDir: string): Database.Database {
  const db = new Database(join(dataDir, 'nexus.db'));
  for (const t of GUARDED) db.exec(`DROP TRIGGER IF EXISTS ${t}_no_update; DROP TRIGGER IF EXISTS ${t}_no_delete;`);
  return db;
}

/** After a rewrite: the projection digest at the current size and the checkpoint file, made to agree with the database. */
export async function resealAsRoot(dataDir: string, origin: string, platformKey: KeyObject): Promise<void> {
  const store = new SqliteStore(join(dataDir, 'nexus.db'));
  try {
    const size = await store.ledgerSize();
    const digests = await scanAll(store);
    const root = rootHash(store.nodeSource(), size);
    await store.transaction(async (tx) => {
      await tx.run('DROP TRIGGER IF EXISTS projection_digests_no_delete');
      await tx.run('DELETE FROM projection_digests WHERE size >= ?', [size]);
      await tx.run('INSERT INTO projection_digests (size, digest) VALUES (?, ?)', [size, combinedDigest(digests)]);
    });
    await new CheckpointFileWriter(dataDir).write(formatCheckpointFile(origin, size, root, digests, platformKey));
  } finally {
    await store.close();
  }
}
