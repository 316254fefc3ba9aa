import { join } from 'node:path';
import { SqliteStore } from './sqlite.ts';
import type { Store } from './store.ts';

export type { Store, WriteTx, SqlReader, SqlWriter, SqlValue, Row, LedgerNodeRow, ProjectionChange } from './store.ts';
export { PROJECTION_TABLES } from './schema.ts';
export { SqliteStore } from './sqlite.ts';

export const DB_FILE = 'nexus.db';

/**
 * Opens the store of a data directory (SQLite by default), or a private in-memory one. `bulk`:
 * one fsync at close instead of one per commit (SqliteStore), for a load no client waits on.
 */
export function openStore(dataDir: string | ':memory:', opts: { bulk?: boolean } = {}): Store {
  return new SqliteStore(dataDir === ':memory:' ? ':memory:' : join(dataDir, DB_FILE), opts.bulk ? { bulk: true } : {});
}
