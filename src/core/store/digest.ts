// Digests of the projection tables. Each table's digest is its row count and the sum, modulo
// 2^256, of SHA-256 over each row's canonical encoding: independent of row order, so the writer
// can keep it up to date from the rows a transaction changed (added rows add, removed rows
// subtract) instead of rehashing the table at every commit, and a full scan of the table in any
// order gives the same value. A row is encoded by SQL (`quote()` of each column in schema
// order), so the change log and a scan encode it byte for byte alike, whatever the value's type.
import { createHash, hash } from 'node:crypto';
import { PROJECTION_TABLES } from './schema.ts';
import type { ProjectionChange, SqlReader, SqlValue, WriteTx } from './store.ts';

export type { ProjectionChange } from './store.ts';

export interface TableDigest {
  rows: number;
  /** Sum of the row hashes modulo 2^256. */
  sum: bigint;
}

export type ProjectionDigests = Map<string, TableDigest>;

const MOD = 1n << 256n;
const ROW_DOMAIN = 'nexus/projection-row\n';

/** What every row hash of `table` starts with. */
export const rowPrefix = (table: string): string => `${ROW_DOMAIN}${table}\n`;

/** The projection tables in a fixed order (by name). */
export const DIGEST_TABLES: readonly string[] = Object.keys(PROJECTION_TABLES).sort();

/** Column names of a table, in schema order, read from its DDL (our own constant, not the database's). */
function columnsOf(ddl: string): string[] {
  const inner = ddl.slice(ddl.indexOf('(') + 1, ddl.lastIndexOf(')'));
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of inner) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts
    .map((p) => p.trim().split(/\s+/)[0]!)
    .filter((w) => !/^(PRIMARY|UNIQUE|CHECK|FOREIGN|CONSTRAINT)$/i.test(w));
}

export const PROJECTION_COLUMNS: Record<string, readonly string[]> = Object.fromEntries(
  Object.entries(PROJECTION_TABLES).map(([t, { ddl }]) => [t, columnsOf(ddl)]),
);

/** SQL expression encoding one row of `table`; `prefix` is `NEW.` / `OLD.` inside a trigger. */
export function rowExpression(table: string, prefix = ''): string {
  const cols = PROJECTION_COLUMNS[table];
  if (!cols) throw new Error(`${table} is not a projection table`);
  return cols.map((c) => `quote(${prefix}${c})`).join(` || ',' || `);
}

export function rowHash(table: string, row: string): bigint {
  return BigInt('0x' + hash('sha256', rowPrefix(table) + row, 'hex'));
}

export function emptyDigest(): TableDigest {
  return { rows: 0, sum: 0n };
}

export function applyChange(d: TableDigest, table: string, sign: 1 | -1, row: string): TableDigest {
  const h = rowHash(table, row);
  return { rows: d.rows + sign, sum: (((d.sum + (sign === 1 ? h : -h)) % MOD) + MOD) % MOD };
}

export function digestHex(d: TableDigest): string {
  return d.sum.toString(16).padStart(64, '0');
}

export function sameDigest(a: TableDigest | undefined, b: TableDigest | undefined): boolean {
  return !!a && !!b && a.rows === b.rows && a.sum === b.sum;
}

/** One hash over every table's digest: what is recorded with each checkpoint. */
export function combinedDigest(ds: ProjectionDigests): string {
  const h = createHash('sha256').update('nexus/projections\n');
  for (const t of DIGEST_TABLES) {
    const d = ds.get(t) ?? emptyDigest();
    h.update(`${t} ${d.rows} ${digestHex(d)}\n`);
  }
  return h.digest('hex');
}

/** Rows a scan reads per query. */
export const SCAN_CHUNK = 2000;

/** The query a scan reads `table` with: [rowid as text, encoded row] (plus the chunk's bounds). */
export function scanSelect(table: string): string {
  return `SELECT CAST(rowid AS TEXT) AS k, ${rowExpression(table)} AS r FROM ${table}`;
}

/**
 * The digest of the rows of one table, as a generator: it yields each chunk's query
 * ([sql, params]) and is resumed with that chunk's rows ([k, r] arrays). The daemon runs it with
 * async reads and lets the event loop go between chunks; a scan worker (scan-worker.ts) runs it
 * from its source text with synchronous reads, so it refers to nothing outside itself. Rowids
 * travel as text: a row planted with a huge rowid is neither skipped nor read twice. Each row adds
 * SHA-256(ROW_DOMAIN || table || "\n" || row), taken by `sha256` as a latin1 string (one char per
 * byte: no Hash object, no Buffer per row; bench/RESULTS.md, scale, "Daemon start (after)"), to
 * eight 32-bit lanes summed as plain numbers (exact below 2^53), carried into the sum per chunk.
 */
export function* scanRows(
  select: string,
  prefix: string,
  chunkSize: number,
  sha256: (s: string) => string,
): Generator<[string, (string | number)[]], { rows: number; sum: bigint }, unknown[][]> {
  let rows = 0;
  let sum = 0n;
  let after: string | undefined;
  for (;;) {
    const chunk = yield after === undefined ? [`${select} ORDER BY rowid LIMIT ?`, [chunkSize]] : [`${select} WHERE rowid > CAST(? AS INTEGER) ORDER BY rowid LIMIT ?`, [after, chunkSize]];
    const lanes = [0, 0, 0, 0, 0, 0, 0, 0];
    for (const row of chunk) {
      const h = sha256(prefix + String(row[1]));
      for (let i = 0; i < 8; i++) {
        const j = 4 * i;
        lanes[i]! += ((h.charCodeAt(j) << 24) | (h.charCodeAt(j + 1) << 16) | (h.charCodeAt(j + 2) << 8) | h.charCodeAt(j + 3)) >>> 0;
      }
    }
    for (let i = 0; i < 8; i++) sum += BigInt(lanes[i]!) << BigInt(32 * (7 - i));
    rows += chunk.length;
    if (chunk.length < chunkSize) break;
    after = String(chunk[chunk.length - 1]![0]);
  }
  return { rows, sum: sum % (1n << 256n) };
}

/** SHA-256 of a string as a latin1 string (what scanRows adds up). */
const sha256Latin1 = (s: string): string => hash('sha256', s, 'binary');

/**
 * The digest of one table computed from its rows as they are now, read in chunks by rowid with the
 * event loop let go in between, so that a large table does not stall the daemon.
 */
export async function scanTable(db: SqlReader, table: string): Promise<TableDigest> {
  // Rows as [k, r] arrays where the reader can: no object per row (about a tenth of the scan's CPU).
  const read = db.values
    ? (sql: string, params: SqlValue[]) => db.values!(sql, params)
    : async (sql: string, params: SqlValue[]) => (await db.all<{ k: string; r: string }>(sql, params)).map((x) => [x.k, x.r]);
  const scan = scanRows(scanSelect(table), rowPrefix(table), SCAN_CHUNK, sha256Latin1);
  let step = scan.next();
  for (let first = true; !step.done; first = false) {
    if (!first) await new Promise<void>((resolve) => setImmediate(resolve));
    const [sql, params] = step.value;
    step = scan.next(await read(sql, params));
  }
  return step.value;
}

export async function scanAll(db: SqlReader): Promise<ProjectionDigests> {
  const out: ProjectionDigests = new Map();
  for (const t of DIGEST_TABLES) out.set(t, await scanTable(db, t));
  return out;
}

/** Names of the tables whose digests differ. */
export function differingTables(a: ProjectionDigests, b: ProjectionDigests): string[] {
  return DIGEST_TABLES.filter((t) => !sameDigest(a.get(t), b.get(t)));
}

/**
 * The digests the writer expects: advanced at the end of each write transaction by the rows it
 * changed. An edit made behind the writer's back (another connection, another process, the
 * daemon stopped) is not among those changes, so a scan then differs from what is expected.
 */
export class DigestTracker {
  private rescans = new Set<string>();

  /** `observe`: hears every row change folded in (a verifier tracks the rows its replay touched). */
  constructor(
    public current: ProjectionDigests,
    private readonly observe?: (c: ProjectionChange) => void,
  ) {}

  /** At the start of a write transaction: forget rescans asked for by one that rolled back. */
  begin(): void {
    this.rescans.clear();
  }

  /** This transaction rebuilt `table` wholesale: take its digest from a scan at seal time. */
  rescan(table: string): void {
    this.rescans.add(table);
  }

  /** Last step inside a write transaction: folds its changes in and returns the new digests. */
  async seal(tx: WriteTx): Promise<ProjectionDigests> {
    const changes = await tx.projectionChanges();
    const next: ProjectionDigests = new Map(this.current);
    for (const t of this.rescans) next.set(t, await scanTable(tx, t));
    for (const c of changes) {
      this.observe?.(c);
      if (this.rescans.has(c.table)) continue;
      next.set(c.table, applyChange(next.get(c.table) ?? emptyDigest(), c.table, c.sign, c.row));
    }
    this.rescans.clear();
    // Adopted before COMMIT, like the ledger's frontier: the next transaction starts from it.
    this.current = next;
    return next;
  }
}
