import Database from 'better-sqlite3';
import type { Row, SqlValue, Store } from '../../core/store/index.ts';

// A read-only connection to the platform's database with the few reads a zone view and a DNSSEC
// keyring make: what a DNS worker process answers from (worker.ts), and bench/dns/micro.ts.

/** The reads a zone view and a keyring make, over a read-only connection; anything else throws. */
export function readOnlyStore(path: string): Store {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  const statements = new Map<string, Database.Statement>();
  const st = (sql: string) => {
    let s = statements.get(sql);
    if (!s) statements.set(sql, (s = db.prepare(sql)));
    return s;
  };
  const raws = new Map<string, Database.Statement>();
  const raw = (sql: string) => {
    let s = raws.get(sql);
    if (!s) raws.set(sql, (s = db.prepare(sql).raw(true)));
    return s;
  };
  const store = {
    kind: 'sqlite',
    path,
    get: async <T extends Row>(sql: string, params: SqlValue[] = []) => st(sql).get(...params) as T | undefined,
    all: async <T extends Row>(sql: string, params: SqlValue[] = []) => st(sql).all(...params) as T[],
    values: async (sql: string, params: SqlValue[] = []) => raw(sql).all(...params) as SqlValue[][],
    ledgerSize: async () => (st('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM ledger_entries').get() as { n: number }).n,
    readEntries: async (from: number, to: number) =>
      (st('SELECT data FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx').all(from, to) as { data: Buffer }[]).map((r) => r.data),
    close: async () => void db.close(),
  };
  // Writes have no place in a worker: the proxy makes any other method an error, not a silent no-op.
  return new Proxy(store, {
    get(target, prop) {
      if (prop in target) return target[prop as keyof typeof target];
      if (typeof prop === 'symbol' || prop === 'then') return undefined;
      return () => {
        throw new Error(`a DNS worker's store is read-only (${prop})`);
      };
    },
  }) as unknown as Store;
}
