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

/** What every row hash of `table` starts with. */
const rowPrefix = (table: string) => `${ROW_DOMAIN}${table}\n`;

/**
 * Adds SHA-256(ROW_DOMAIN || table || "\n" || row) to eight 32-bit lanes (big-endian words). One-shot
 * `crypto.hash` over one string, its digest as a 'binary' (latin1) string, one char per byte: a scan hashes
 * every row of every table, and a Hash object with four updates, or a Buffer per digest, cost the
 * start-up about twice the CPU in hashing and garbage (bench/RESULTS.md, scale, "Daemon start (after)").
 */
function addRowHash(lanes: number[], prefix: string, row: string): void {
  const h = hash('sha256', prefix + row, 'binary');
  for (let i = 0; i < 8; i++) {
    const j = 4 * i;
    lanes[i]! += ((h.charCodeAt(j) << 24) | (h.charCodeAt(j + 1) << 16) | (h.charCodeAt(j + 2) << 8) | h.charCodeAt(j + 3)) >>> 0;
  }
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

const SCAN_CHUNK = 2000;

/**
 * The digest of one table computed from its rows as they are now (a full scan), read in chunks by
 * rowid with the event loop let go in between, so that a large table does not stall the daemon.
 * Rowids travel as text: a row planted with a huge rowid is neither skipped nor read twice.
 */
export async function scanTable(db: SqlReader, table: string): Promise<TableDigest> {
  const select = `SELECT CAST(rowid AS TEXT) AS k, ${rowExpression(table)} AS r FROM ${table}`;
  // Rows as [k, r] arrays where the reader can: no object per row (about a tenth of the scan's CPU).
  const read = db.values
    ? (sql: string, params: SqlValue[]) => db.values!(sql, params)
    : async (sql: string, params: SqlValue[]) => (await db.all<{ k: string; r: string }>(sql, params)).map((x) => [x.k, x.r]);
  const prefix = rowPrefix(table);
  let rows = 0;
  let sum = 0n;
  let after: string | undefined;
  for (;;) {
    const chunk =
      after === undefined
        ? await read(`${select} ORDER BY rowid LIMIT ?`, [SCAN_CHUNK])
        : await read(`${select} WHERE rowid > CAST(? AS INTEGER) ORDER BY rowid LIMIT ?`, [after, SCAN_CHUNK]);
    // Eight 32-bit lanes summed as plain numbers (exact below 2^53), carried into the sum per chunk.
    const lanes = [0, 0, 0, 0, 0, 0, 0, 0];
    for (const row of chunk) addRowHash(lanes, prefix, String(row[1]));
    for (let i = 0; i < 8; i++) sum += BigInt(lanes[i]!) << BigInt(32 * (7 - i));
    rows += chunk.length;
    if (chunk.length < SCAN_CHUNK) break;
    after = String(chunk[chunk.length - 1]![0]);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { rows, sum: sum % MOD };
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
