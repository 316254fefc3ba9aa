// The projection scan (digest.ts) of the periodic integrity check on a worker thread with its own
// read-only connection: it reads every table inside one read transaction (a snapshot of one tree
// size, WAL), so commits go on while it scans instead of waiting for a scan held inside a write
// transaction. (Splitting the start-up scan between two such workers was measured and dropped:
// on this 2-core machine the two ran at less than half speed each, 8.3 s against 4.3 s for one
// thread at 1,000,000 entries; bench/RESULTS.md, scale.)
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { DIGEST_TABLES, SCAN_CHUNK, rowPrefix, scanRows, scanSelect, type ProjectionDigests } from './digest.ts';
import { SqliteStore } from './sqlite.ts';
import type { SqlReader } from './store.ts';

interface Task {
  table: string;
  select: string;
  prefix: string;
}

interface WorkerResult {
  /** The tree size the worker's read transaction saw. */
  size: number;
  /** Entries stored in that snapshot: fewer than `size` means rows were deleted. */
  stored: number;
  out: { table: string; rows: number; sum: string }[];
}

// scanRows is the digest's own code, run from its source text: the worker hashes exactly as the
// main thread does. Chunks are read with synchronous raw statements (no event loop to let go of).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { hash } = require('node:crypto');
const Database = require(workerData.sqlite);
const scanRows = (${scanRows.toString()});
const sha256 = (s) => hash('sha256', s, 'binary');
const db = new Database(workerData.file, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 5000');
const statements = new Map();
const rows = (sql, params) => {
  let st = statements.get(sql);
  if (!st) statements.set(sql, (st = db.prepare(sql).raw(true)));
  return st.all(...params);
};
db.exec('BEGIN');
const size = rows('SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries', [])[0][0];
const stored = rows('SELECT COUNT(*) FROM ledger_entries', [])[0][0];
const out = [];
for (const t of workerData.tasks) {
  const scan = scanRows(t.select, t.prefix, workerData.chunk, sha256);
  let step = scan.next();
  while (!step.done) step = scan.next(rows(step.value[0], step.value[1]));
  out.push({ table: t.table, rows: step.value.rows, sum: step.value.sum.toString(16) });
}
db.exec('COMMIT');
db.close();
parentPort.postMessage({ size, stored, out });
`;

const sqliteModule = (): string => createRequire(import.meta.url).resolve('better-sqlite3');

function runWorker(file: string, tasks: Task[], signal?: AbortSignal): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('scan aborted'));
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { sqlite: sqliteModule(), file, tasks, chunk: SCAN_CHUNK } });
    // A daemon that stops does not wait for a scan of its whole state: the worker is ended.
    const abort = () => void w.terminate();
    signal?.addEventListener('abort', abort, { once: true });
    let result: WorkerResult | undefined;
    w.once('message', (m: WorkerResult) => (result = m));
    w.once('error', reject);
    w.once('exit', (code) => {
      signal?.removeEventListener('abort', abort);
      if (result) resolve(result);
      else reject(new Error(signal?.aborted ? 'scan aborted' : `scan worker exited with code ${code} before its result`));
    });
  });
}

const task = (table: string): Task => ({ table, select: scanSelect(table), prefix: rowPrefix(table) });

/**
 * Every projection table's digest as of one committed tree size, and the entries stored then (the
 * gap count a sealed start leaves to this check), read by one worker thread inside one read
 * transaction: commits go on meanwhile. Undefined when the store is not a database file, the worker failed (the caller then scans under its write lock) or `signal` ended it.
 */
export async function scanSnapshot(store: SqlReader, signal?: AbortSignal): Promise<{ size: number; stored: number; digests: ProjectionDigests } | undefined> {
  if (!(store instanceof SqliteStore) || store.path === ':memory:') return undefined;
  try {
    const r = await runWorker(store.path, DIGEST_TABLES.map(task), signal);
    return { size: r.size, stored: r.stored, digests: new Map(r.out.map((d) => [d.table, { rows: d.rows, sum: BigInt(`0x${d.sum}`) }])) };
  } catch {
    return undefined;
  }
}
