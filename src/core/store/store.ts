// One storage interface for the whole core. Every call is async so that a network database
// (PostgreSQL) can implement it without touching callers; SQL uses `?` placeholders and
// portable types so the same statements translate directly.

export type SqlValue = string | number | bigint | Buffer | null;
export type Row = Record<string, SqlValue>;

export interface SqlReader {
  get<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T | undefined>;
  all<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T[]>;
  /**
   * The rows as arrays of column values, in select order (no object per row): for scans that
   * read millions of rows (the integrity check's). Optional; without it a scan uses `all`.
   */
  values?(sql: string, params?: SqlValue[]): Promise<SqlValue[][]>;
}

export interface SqlWriter extends SqlReader {
  run(sql: string, params?: SqlValue[]): Promise<{ changes: number }>;
}

export interface LedgerNodeRow {
  level: number;
  index: number;
  hash: Buffer;
}

/** A projection row a transaction added (+1) or removed (-1), in canonical encoding (store/digest.ts). */
export interface ProjectionChange {
  table: string;
  sign: 1 | -1;
  row: string;
}

/** Writes inside one transaction. Committed (and fsynced) together, or not at all. */
export interface WriteTx extends SqlWriter {
  appendEntry(index: number, data: Buffer, nodes: LedgerNodeRow[]): Promise<void>;
  saveCheckpoint(size: number, note: string): Promise<void>;
  /** The projection rows this transaction changed since the last call (rolled-back changes excluded); forgets them. */
  projectionChanges(): Promise<ProjectionChange[]>;
}

export interface Store extends SqlReader {
  readonly kind: string;
  /** Serialised write transaction; reads through the Store itself see only committed state. */
  transaction<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T>;
  ledgerSize(): Promise<number>;
  readEntries(from: number, to: number): Promise<Buffer[]>;
  /** Hash of the complete aligned subtree (level, index), or undefined if not stored. */
  node(level: number, index: number): Promise<Buffer | undefined>;
  /** Hashes of the stored nodes (level, from) .. (level, to - 1) in index order (one range read: a tile of the log). */
  readNodes(level: number, from: number, to: number): Promise<Buffer[]>;
  /** Synchronous node lookups for proof generation (stores over a network serve these from a cache). */
  nodeSource(): { node(level: number, index: number): Buffer };
  latestCheckpoint(): Promise<{ size: number; note: string } | undefined>;
  checkpointAt(size: number): Promise<string | undefined>;
  /**
   * A number that changes whenever a connection other than this store's writer commits to the
   * database (another process, a tool, a hand edit); undefined where the store cannot tell.
   */
  dataVersion?(): number;
  close(): Promise<void>;
}
