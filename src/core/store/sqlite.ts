import Database from 'better-sqlite3';
import type { Statement } from 'better-sqlite3';
import { closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { INTEGRITY_DDL, INTEGRITY_TABLES, LEDGER_DDL, LEDGER_TABLES, PROJECTION_INDEXES, PROJECTION_TABLES, appendOnlyTriggersDdl } from './schema.ts';
import { rowExpression } from './digest.ts';
import type { Row, SqlValue, Store, WriteTx, LedgerNodeRow, ProjectionChange } from './store.ts';

type Db = Database.Database;

function ensureSchema(db: Db): void {
  db.exec(LEDGER_DDL);
  db.exec(INTEGRITY_DDL);
  for (const t of [...LEDGER_TABLES, ...INTEGRITY_TABLES]) db.exec(appendOnlyTriggersDdl(t));
  for (const { ddl } of Object.values(PROJECTION_TABLES)) db.exec(ddl);
  db.exec(PROJECTION_INDEXES);
}

/**
 * Logs every projection row this connection adds or removes, for the digests (digest.ts). TEMP
 * triggers live only in this connection: nothing is stored in the file, and a write through any
 * other connection (sqlite3, another process) is not logged, which is how it shows up as a
 * difference. The log is a TEMP table, so it rolls back with the transaction or savepoint.
 */
function captureProjectionChanges(db: Db): void {
  db.pragma('temp_store = MEMORY');
  // INSERT OR REPLACE removes the old row; its DELETE trigger fires only with recursive triggers.
  db.pragma('recursive_triggers = ON');
  db.exec('CREATE TEMP TABLE IF NOT EXISTS nx_projection_changes (tbl TEXT NOT NULL, sign INTEGER NOT NULL, row TEXT NOT NULL)');
  for (const t of Object.keys(PROJECTION_TABLES)) {
    const add = (p: string) => `INSERT INTO temp.nx_projection_changes (tbl, sign, row) VALUES ('${t}', 1, ${rowExpression(t, p)});`;
    const del = (p: string) => `INSERT INTO temp.nx_projection_changes (tbl, sign, row) VALUES ('${t}', -1, ${rowExpression(t, p)});`;
    db.exec(`
CREATE TEMP TRIGGER IF NOT EXISTS nx_capture_${t}_insert AFTER INSERT ON main.${t} BEGIN ${add('NEW.')} END;
CREATE TEMP TRIGGER IF NOT EXISTS nx_capture_${t}_delete AFTER DELETE ON main.${t} BEGIN ${del('OLD.')} END;
CREATE TEMP TRIGGER IF NOT EXISTS nx_capture_${t}_update AFTER UPDATE ON main.${t} BEGIN ${del('OLD.')} ${add('NEW.')} END;
`);
  }
}

class StatementCache {
  private readonly cache = new Map<string, Statement>();
  constructor(private readonly db: Db) {}
  get(sql: string): Statement {
    let st = this.cache.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.cache.set(sql, st);
    }
    return st;
  }
  /** The same statement in raw mode (rows as arrays), cached apart: raw mode is a statement's state. */
  raw(sql: string): Statement {
    let st = this.cache.get(`raw\n${sql}`);
    if (!st) {
      st = this.db.prepare(sql).raw(true);
      this.cache.set(`raw\n${sql}`, st);
    }
    return st;
  }
}

/**
 * SQLite in WAL mode with synchronous=FULL: a commit returns only after the WAL is fsynced, so
 * whatever the chokepoint acknowledges survives a crash. Writes go through one connection,
 * reads through another so that readers never see a transaction in flight.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  private readonly writer: Db;
  private readonly reader: Db;
  private readonly w: StatementCache;
  private readonly r: StatementCache;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  /**
   * `scratch`: a throwaway database (a verifier's replay): no fsync, a bounded page cache, so that
   * a replay of a long log lives on disk rather than in memory.
   * `bulk`: a bulk load that nobody is answered from (bench/scale's fast build path): no fsync per
   * commit; close() checkpoints the WAL into the database file and fsyncs it once. A crash during
   * the load loses the load, never a commit anyone was told about.
   */
  constructor(
    readonly path: string,
    private readonly opts: { scratch?: boolean; bulk?: boolean } = {},
  ) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.writer = new Database(path);
    this.writer.pragma('journal_mode = WAL');
    this.writer.pragma(opts.scratch || opts.bulk ? 'synchronous = OFF' : 'synchronous = FULL');
    if (opts.scratch) this.writer.pragma('cache_size = -32768');
    this.writer.pragma('busy_timeout = 5000');
    ensureSchema(this.writer);
    captureProjectionChanges(this.writer);
    // An in-memory database is private to its connection, so it reads through the writer.
    this.reader = path === ':memory:' ? this.writer : new Database(path, { readonly: true });
    if (this.reader !== this.writer) this.reader.pragma('busy_timeout = 5000');
    this.w = new StatementCache(this.writer);
    this.r = new StatementCache(this.reader);
  }

  async get<T extends Row = Row>(sql: string, params: SqlValue[] = []): Promise<T | undefined> {
    return this.r.get(sql).get(...params) as T | undefined;
  }

  async all<T extends Row = Row>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    return this.r.get(sql).all(...params) as T[];
  }

  async values(sql: string, params: SqlValue[] = []): Promise<SqlValue[][]> {
    return this.r.raw(sql).all(...params) as SqlValue[][];
  }

  transaction<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.closed) throw new Error('store is closed');
      const w = this.w;
      const tx: WriteTx = {
        get: async <R extends Row>(sql: string, params: SqlValue[] = []) => w.get(sql).get(...params) as R | undefined,
        all: async <R extends Row>(sql: string, params: SqlValue[] = []) => w.get(sql).all(...params) as R[],
        values: async (sql: string, params: SqlValue[] = []) => w.raw(sql).all(...params) as SqlValue[][],
        run: async (sql: string, params: SqlValue[] = []) => ({ changes: w.get(sql).run(...params).changes }),
        appendEntry: async (index: number, data: Buffer, nodes: LedgerNodeRow[]) => {
          w.get('INSERT INTO ledger_entries (idx, data) VALUES (?, ?)').run(index, data);
          const ins = w.get('INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)');
          for (const n of nodes) ins.run(n.level, n.index, n.hash);
        },
        saveCheckpoint: async (size: number, note: string) => {
          w.get('INSERT OR IGNORE INTO ledger_checkpoints (size, note) VALUES (?, ?)').run(size, note);
        },
        projectionChanges: async () => {
          const rows = w.get('SELECT tbl, sign, row FROM temp.nx_projection_changes ORDER BY rowid').all() as { tbl: string; sign: number; row: string }[];
          if (rows.length) w.get('DELETE FROM temp.nx_projection_changes').run();
          return rows.map((r): ProjectionChange => ({ table: r.tbl, sign: r.sign === 1 ? 1 : -1, row: r.row }));
        },
      };
      this.writer.exec('BEGIN IMMEDIATE');
      try {
        const out = await fn(tx);
        this.writer.exec('COMMIT');
        return out;
      } catch (err) {
        if (this.writer.inTransaction) this.writer.exec('ROLLBACK');
        throw err;
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  async ledgerSize(): Promise<number> {
    const row = this.r.get('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM ledger_entries').get() as { n: number };
    return row.n;
  }

  async readEntries(from: number, to: number): Promise<Buffer[]> {
    const rows = this.r.get('SELECT data FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx').all(from, to) as { data: Buffer }[];
    return rows.map((r) => r.data);
  }

  async node(level: number, index: number): Promise<Buffer | undefined> {
    const row = this.r.get('SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?').get(level, index) as { hash: Buffer } | undefined;
    return row?.hash;
  }

  async readNodes(level: number, from: number, to: number): Promise<Buffer[]> {
    const rows = this.r.get('SELECT hash FROM ledger_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx').all(level, from, to) as { hash: Buffer }[];
    return rows.map((r) => r.hash);
  }

  nodeSource(): { node(level: number, index: number): Buffer } {
    const st = this.r.get('SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?');
    return {
      node(level: number, index: number): Buffer {
        const row = st.get(level, index) as { hash: Buffer } | undefined;
        if (!row) throw new Error(`ledger node (${level}, ${index}) is missing`);
        return row.hash;
      },
    };
  }

  async latestCheckpoint(): Promise<{ size: number; note: string } | undefined> {
    return this.r.get('SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1').get() as
      | { size: number; note: string }
      | undefined;
  }

  async checkpointAt(size: number): Promise<string | undefined> {
    const row = this.r.get('SELECT note FROM ledger_checkpoints WHERE size = ?').get(size) as { note: string } | undefined;
    return row?.note;
  }

  /** SQLite's `PRAGMA data_version` on the writer's connection: only other connections' commits change it. */
  dataVersion(): number {
    return this.writer.pragma('data_version', { simple: true }) as number;
  }

  /** A consistent copy of the committed database in `file` (SQLite VACUUM INTO), taken between write transactions. */
  async copyTo(file: string): Promise<void> {
    await this.queue;
    this.writer.prepare('VACUUM INTO ?').run(file);
  }

  async close(): Promise<void> {
    await this.queue;
    this.closed = true;
    if (this.reader !== this.writer) this.reader.close();
    if (this.opts.bulk && this.path !== ':memory:') {
      this.writer.pragma('wal_checkpoint(TRUNCATE)');
      this.writer.close();
      const fd = openSync(this.path, 'r+');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      return;
    }
    this.writer.close();
  }
}
