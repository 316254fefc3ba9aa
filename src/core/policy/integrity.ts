// Served state equals the ledger, and the ledger holds everything acknowledged: the platform checks
// both itself, at start and while running.
//
// - History. DATA/checkpoint.note (src/core/ledger/checkpoint-file.ts) holds the newest signed
//   checkpoint, written after every commit before anyone is answered. At start, a database with
//   fewer entries than that checkpoint, a gap in its entries, or another root at that size means
//   acknowledged history is gone: the platform refuses to start (LostHistoryError, exit code 5).
// - Projections. Each projection table has a digest (src/core/store/digest.ts), kept up to date by
//   the writer from the rows each transaction changed and recorded with every checkpoint (the
//   `projection_digests` table, and the checkpoint file). At start the tables are scanned and
//   compared with those records; while running they are scanned every interval by a worker thread
//   inside one read transaction and compared with what the writer sealed at that transaction's
//   tree size, then, only if that differs, again under the write lock (a commit between the two is
//   no difference). On any difference the ledger is replayed into fresh tables, every table that
//   differs is rebuilt from the replay, and an `integrity.alarm` entry records it in the same
//   transaction; each IMVU whose rows differed gets a `notify.creator` entry.
import type { KeyObject } from 'node:crypto';
import { publicKeyRaw } from '../identity/keys.ts';
import { decodeEntry } from '../ledger/ledger.ts';
import { rootHash } from '../ledger/merkle.ts';
import { CHECKPOINT_FILE, CheckpointFileWriter, formatCheckpointFile, parseCheckpointFile, readCheckpointFile, type CheckpointFileContents } from '../ledger/checkpoint-file.ts';
import { INTEGRITY_TABLES, LEDGER_TABLES } from '../store/schema.ts';
import { DIGEST_TABLES, DigestTracker, PROJECTION_COLUMNS, combinedDigest, differingTables, digestHex, rowExpression, scanAll, type ProjectionDigests } from '../store/digest.ts';
import { scanSnapshot } from '../store/scan-worker.ts';
import type { CloseSeal, TakenSeal } from './close-seal.ts';
import { SqliteStore, type Row, type SqlReader, type Store, type WriteTx } from '../store/index.ts';
import type { Command, SignedCommand } from '../types.ts';
import type { Chokepoint, FollowUp, Receipt } from './chokepoint.ts';
import { replayEntry } from './chokepoint.ts';

/** Exit code of `nexus serve` / `nexus start` (and src/api/daemon.ts) when acknowledged history is missing. */
export const EXIT_LOST_HISTORY = 5;

/** The database lost acknowledged entries or its history differs from the checkpoint kept outside it. */
export class LostHistoryError extends Error {
  readonly exitCode = EXIT_LOST_HISTORY;
  constructor(message: string) {
    super(message);
    this.name = 'LostHistoryError';
  }
}

export type AlarmTrigger = 'start' | 'periodic';

export interface IntegrityAlarm {
  /** Ledger index of the `integrity.alarm` entry. */
  index: number;
  trigger: AlarmTrigger;
  tables: string[];
  imvus: string[];
  detail: string;
  /** Time to replay the ledger and rebuild, in ms. */
  replayMs: number;
}

export interface IntegrityOptions {
  dataDir: string;
  store: Store;
  chokepoint: Chokepoint;
  platformKey: KeyObject;
  origin: string;
  /** The close seal taken before the database was opened (close-seal.ts): may spare the start-up scan. */
  sealed?: TakenSeal;
}

const MAX_ALARM_IMVUS = 1000;
/** Sealed digests kept while one snapshot scan runs (commits during it; about 100 bytes each). */
const MAX_SEALED = 100_000;

/** A periodic check waits at least this many times its own duration before the next one (a scan is then at most a tenth of a core's time). */
export const CHECK_DUTY = 9;

/** The wait before the next periodic check: the interval, or CHECK_DUTY times the last check's duration if longer. */
export function nextCheckDelay(intervalMs: number, lastCheckMs: number): number {
  return Math.max(intervalMs, Math.ceil(CHECK_DUTY * lastCheckMs));
}

const EXPECTED_TRIGGERS = new Set([...LEDGER_TABLES, ...INTEGRITY_TABLES].flatMap((t) => [`${t}_no_update`, `${t}_no_delete`]));

/** Which promise a difference in a table broke, for the creator's notification. */
const TABLE_GATES: [string, number][] = [
  ['routes', 14],
  ['envelopes', 15],
  ['imvus', 15],
  ['records', 4],
  ['zones', 4],
  ['dnssec_keys', 4],
  ['domains', 3],
  ['mailboxes', 5],
  ['mail_passwords', 5],
  ['dkim_keys', 5],
  ['consents', 10],
];

const clip = (s: string, n = 1000) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** The number of stored entries, which must be the tree size: fewer means rows were deleted. */
export async function storedEntries(store: SqlReader): Promise<number> {
  return (await store.get<{ n: number }>('SELECT COUNT(*) AS n FROM ledger_entries'))?.n ?? 0;
}

async function checkNoGaps(dataDir: string, store: Store, size: number): Promise<void> {
  const count = await storedEntries(store);
  if (count !== size)
    throw new LostHistoryError(`the ledger in ${dataDir} has gaps: ${count} entries stored for tree size ${size} (entries were deleted); refusing to start (run \`nexus audit verify --data ${dataDir}\`)`);
}

/**
 * Compares the database with the checkpoint file. Returns the file's contents (undefined when
 * there is none yet) or throws LostHistoryError with one line naming both sizes.
 */
export async function checkHistory(dataDir: string, store: Store, size: number, platformKeyRaw: Uint8Array, origin: string, opts: { countVouched?: boolean } = {}): Promise<CheckpointFileContents | undefined> {
  const where = `${dataDir}/${CHECKPOINT_FILE}`;
  if (!opts.countVouched) await checkNoGaps(dataDir, store, size);
  let text: string | undefined;
  try {
    text = readCheckpointFile(dataDir);
  } catch (err) {
    throw new LostHistoryError(`cannot read ${where}: ${(err as Error).message}; refusing to start`);
  }
  if (text === undefined) {
    // Written at every commit since this data directory was first opened by a platform that keeps
    // it: recorded digests without the file mean the file was removed.
    if (size > 0 && (await store.get('SELECT 1 AS x FROM projection_digests LIMIT 1')))
      throw new LostHistoryError(`${where} is missing but the database (${size} entries) was written with it: the newest checkpoint kept outside the database is gone; refusing to start (run \`nexus audit verify --data ${dataDir}\`)`);
    return undefined;
  }
  let file: CheckpointFileContents;
  try {
    file = parseCheckpointFile(text, origin, platformKeyRaw);
  } catch (err) {
    throw new LostHistoryError(`${where} does not verify with the platform key: ${(err as Error).message}; refusing to start`);
  }
  if (size < file.size)
    throw new LostHistoryError(
      `the database holds ${size} ledger entries but the checkpoint in ${where} covers ${file.size}: ${file.size - size} acknowledged entries are missing (a lost WAL, a copy without its -wal file, or deleted rows); refusing to start (run \`nexus audit verify --data ${dataDir}\`)`,
    );
  let root: Buffer;
  try {
    root = rootHash(store.nodeSource(), file.size);
  } catch (err) {
    throw new LostHistoryError(`the database holds ${size} ledger entries but its tree at the checkpoint's size ${file.size} cannot be computed (${(err as Error).message}); refusing to start`);
  }
  if (!root.equals(file.rootHash))
    throw new LostHistoryError(
      `the database's ledger (${size} entries) has another root at tree size ${file.size} than the checkpoint in ${where} (${file.size} entries): history was rewritten; refusing to start (run \`nexus audit verify --data ${dataDir}\`)`,
    );
  return file;
}

/**
 * The projection digests a close seal vouches for (the checkpoint file's, at the sealed size), or
 * why the seal does not fit this database: another size or root, or digests other than the ones
 * recorded at that size.
 */
async function sealedDigests(seal: CloseSeal, store: Store, chokepoint: Chokepoint, file: CheckpointFileContents | undefined): Promise<ProjectionDigests | string> {
  const size = chokepoint.ledger.size;
  if (seal.size !== size || !seal.root.equals(chokepoint.ledger.root())) return `the close seal is for tree size ${seal.size}, the database holds ${size} entries`;
  if (!file || file.size !== size) return `${CHECKPOINT_FILE} is not at the sealed size`;
  const digests: ProjectionDigests = new Map();
  for (const t of DIGEST_TABLES) {
    const d = file.digests.get(t);
    if (!d) return `${CHECKPOINT_FILE} has no digest for ${t}`;
    digests.set(t, { rows: d.rows, sum: BigInt(`0x${d.sum}`) });
  }
  const recorded = await store.get<{ digest: string }>('SELECT digest FROM projection_digests WHERE size = ?', [size]);
  if (combinedDigest(digests) !== seal.projections || recorded?.digest !== seal.projections) return `the close seal's digest is not the one recorded at tree size ${size}`;
  return digests;
}

/** Triggers in the database file that this platform did not create (they could rewrite its writes). */
async function foreignTriggers(db: SqlReader): Promise<string[]> {
  const rows = await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name");
  return rows.map((r) => String(r.name)).filter((n) => !EXPECTED_TRIGGERS.has(n));
}

const quoteId = (name: string) => `"${name.replace(/"/g, '""')}"`;

interface Rebuilt {
  /** Entries replayed. */
  size: number;
  tables: string[];
  imvus: string[];
  rows: Record<string, number>;
  replayMs: number;
}

/**
 * Replays every ledger entry (read through `tx`, so it is the ledger as of this transaction) into a
 * fresh in-memory store, compares each projection table row by row, and rewrites every table that
 * differs with the replay's rows.
 */
async function rebuildFromLedger(tx: WriteTx, tracker: DigestTracker): Promise<Rebuilt> {
  const t0 = performance.now();
  const entries = await tx.all<{ data: Buffer }>('SELECT data FROM ledger_entries ORDER BY idx');
  const fresh = new SqliteStore(':memory:');
  try {
    await fresh.transaction(async (ftx) => {
      for (const r of entries) await replayEntry(ftx, decodeEntry(r.data));
    });
    const imvus = new Map((await fresh.all<{ id: string; owner: string }>('SELECT id, owner FROM imvus')).map((r) => [r.id, r.owner]));
    const zoneImvu = new Map((await fresh.all<{ name: string; imvu: string }>('SELECT name, imvu FROM zones')).map((r) => [r.name, r.imvu]));
    const identityImvus = new Map<string, string[]>();
    const addTo = (id: string, imvu: string) => identityImvus.set(id, [...(identityImvus.get(id) ?? []), imvu]);
    for (const [id, owner] of imvus) addTo(owner, id);
    for (const m of await fresh.all<{ imvu: string; identity: string }>('SELECT imvu, identity FROM members')) addTo(m.identity, m.imvu);
    const affected = new Set<string>();
    const attribute = (table: string, row: Row): string[] => {
      switch (table) {
        case 'imvus':
          return [String(row.id)];
        case 'records':
          return [zoneImvu.get(String(row.zone)) ?? ''];
        case 'identities':
          return identityImvus.get(String(row.id)) ?? [];
        case 'nonces':
          return identityImvus.get(String(row.actor)) ?? [];
        case 'platform':
          return [...imvus.keys()];
        default:
          return typeof row.imvu === 'string' ? [row.imvu] : [];
      }
    };
    const tables: string[] = [];
    const rows: Record<string, number> = {};
    for (const t of DIGEST_TABLES) {
      const sql = `SELECT ${rowExpression(t)} AS nx_row, * FROM ${t}`;
      const stored = await tx.all<Row & { nx_row: string }>(sql);
      const replayed = await fresh.all<Row & { nx_row: string }>(sql);
      const inStored = new Set(stored.map((r) => r.nx_row));
      const inReplay = new Set(replayed.map((r) => r.nx_row));
      const differing = [...stored.filter((r) => !inReplay.has(r.nx_row)), ...replayed.filter((r) => !inStored.has(r.nx_row))];
      if (!differing.length) continue;
      tables.push(t);
      rows[t] = differing.length;
      for (const r of differing) for (const i of attribute(t, r)) if (imvus.has(i)) affected.add(i);
      const cols = PROJECTION_COLUMNS[t]!;
      await tx.run(`DELETE FROM ${t}`);
      const insert = `INSERT INTO ${t} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`;
      for (const r of replayed) await tx.run(insert, cols.map((c) => r[c] ?? null));
      tracker.rescan(t);
    }
    return { size: entries.length, tables, imvus: [...affected].sort(), rows, replayMs: Math.round(performance.now() - t0) };
  } finally {
    await fresh.close();
  }
}

/** The creators' notifications for an `integrity.alarm` entry (the chokepoint's provisioning hook). */
export async function integrityNotices(command: Command, index: number, db: SqlReader): Promise<FollowUp[]> {
  if (command.type !== 'integrity.alarm') return [];
  const b = command.body as { trigger: AlarmTrigger; detectedAt: string; tables: string[]; imvus: string[] };
  const gate = TABLE_GATES.find(([t]) => b.tables.includes(t))?.[1] ?? 11;
  const out: FollowUp[] = [];
  for (const imvu of b.imvus) {
    const row = await db.get<{ owner: string }>('SELECT owner FROM imvus WHERE id = ?', [imvu]);
    if (!row) continue;
    const message = clip(
      `integrity alarm: the state the platform served for ${imvu} differed from the ledger (${b.tables.join(', ')}), found ${b.trigger === 'start' ? 'at start' : 'while running'} at ${b.detectedAt}; rebuilt from the ledger (entry ${index})`,
    );
    out.push({ type: 'notify.creator', body: { imvu, recipient: row.owner, about: index, gate, message } });
  }
  return out;
}

/**
 * The integrity of one open platform: its digest tracker (hooked into every commit), the checkpoint
 * file, the start-up check and the periodic one.
 */
export class Integrity {
  private readonly tracker: DigestTracker;
  private readonly writer: CheckpointFileWriter;
  private readonly pendingFiles = new Map<number, string>();
  private readonly listeners = new Set<(a: IntegrityAlarm) => void>();
  private timer: NodeJS.Timeout | undefined;
  /** When the next routine periodic check is due (performance.now()). */
  private nextCheckAt = Infinity;
  /** The store's dataVersion when the last check began (or the database was opened). */
  private checkedDataVersion: number | undefined;
  /** Aborted by close(): ends a snapshot scan in flight. */
  private readonly stopping = new AbortController();
  /** Bumped by every start(): a check of an earlier schedule does not schedule the next one. */
  private schedule = 0;
  private running: Promise<unknown> | undefined;
  private closed = false;
  /**
   * What the start-up check did: whether it scanned every row or took the digests from a close
   * seal (and why not, when a seal was looked for), whether it had to replay, the alarm it raised.
   */
  startup: { scanned: boolean; sealRefused?: string; replayed: boolean; replayMs?: number; reasons: string[]; alarm?: IntegrityAlarm } = { scanned: true, replayed: false, reasons: [] };
  /** Set by a sealed start: the first check runs as soon as the daemon starts its checks, whatever the interval. */
  private checkFirst = false;
  /** Alarms raised since open (start-up included). */
  readonly alarms: IntegrityAlarm[] = [];
  /** The last completed check (the start-up one, then each periodic one): when, and whether it raised an alarm. */
  lastCheck: { at: string; alarm: boolean } | undefined;
  /** A signed ledger.snapshot every this many entries (0: never), and the tree size the count runs from. */
  private snapshotEvery = 0;
  private snapshotFrom = 0;
  private snapshotting: Promise<unknown> | undefined;
  private snapshotError: ((err: unknown) => void) | undefined;
  /**
   * While a periodic check's snapshot scan runs: the combined digest the writer sealed at each tree
   * size since it began (a 64-character string each, at most MAX_SEALED: a size beyond that is
   * checked under the lock).
   */
  private sealed: Map<number, string> | undefined;
  /**
   * Set when a periodic check found fewer stored entries than the tree size: acknowledged history
   * was deleted while the daemon ran (or hidden under a seal re-signed by root). Nothing rebuilds
   * it; `nexus status` shows it, no close seal is written, and the next start refuses.
   */
  lostHistory: string | undefined;
  private lostHistoryListener: ((err: LostHistoryError) => void) | undefined;
  /** How the last periodic check ended: `snapshot` (a worker's unlocked scan matched), `locked` (scanned under the write lock). */
  lastCheckPath: 'snapshot' | 'locked' | undefined;

  /** Repairs committed since open (tablesKey). */
  private rebuilds = 0;
  /** The digests as of the last commit (the tracker's advance before COMMIT, adopted after it). */
  private committedDigests: ProjectionDigests;

  private constructor(
    private readonly o: IntegrityOptions,
    live: ProjectionDigests,
  ) {
    this.tracker = new DigestTracker(live);
    this.committedDigests = live;
    this.writer = new CheckpointFileWriter(o.dataDir);
  }

  /**
   * Checks history against the checkpoint file (throws LostHistoryError), hooks the digests into
   * every commit, then checks the projections against what was recorded and repairs them.
   */
  static async open(o: IntegrityOptions): Promise<Integrity> {
    const { store, chokepoint } = o;
    const size = chokepoint.ledger.size;
    // A seal is written only when the entries counted at close were the tree size (platform.ts), and
    // the file is as sealed: the count (a walk of the whole ledger index) is spared unless the
    // seal turns out not to fit.
    const seal = o.sealed?.seal;
    const countVouched = seal !== undefined && seal.size === size && seal.root.equals(chokepoint.ledger.root());
    const file = await checkHistory(o.dataDir, store, size, publicKeyRaw(o.platformKey), o.origin, { countVouched });
    // Read before scanning: a commit by another connection during the scan is looked at by the first periodic check.
    const dataVersion = store.dataVersion?.();
    const fromSeal = seal ? await sealedDigests(seal, store, chokepoint, file) : undefined;
    if (countVouched && typeof fromSeal !== 'object') await checkNoGaps(o.dataDir, store, size);
    const live = typeof fromSeal === 'object' ? fromSeal : await scanAll(store);
    const it = new Integrity(o, live);
    it.startup.scanned = typeof fromSeal !== 'object';
    const refused = typeof fromSeal === 'string' ? fromSeal : o.sealed && !o.sealed.seal ? o.sealed.reason : undefined;
    if (refused !== undefined) it.startup.sealRefused = refused;
    it.checkFirst = !it.startup.scanned;
    it.attach();
    if (size > 0) {
      const reasons: string[] = [];
      const foreign = await foreignTriggers(store);
      if (foreign.length) reasons.push(`triggers not created by the platform: ${foreign.join(', ')}`);
      const recorded = await store.get<{ digest: string }>('SELECT digest FROM projection_digests WHERE size = ?', [size]);
      if (recorded && recorded.digest !== combinedDigest(live)) reasons.push(`the projections differ from the digest recorded at tree size ${size}`);
      const fileNow = file && file.size === size ? file : undefined;
      if (fileNow) {
        const off = DIGEST_TABLES.filter((t) => {
          const d = fileNow.digests.get(t);
          const l = live.get(t)!;
          return !d || d.rows !== l.rows || d.sum !== digestHex(l);
        });
        if (off.length) reasons.push(`${off.join(', ')} differ from the digests in ${CHECKPOINT_FILE}`);
      }
      // Nothing recorded at this size (a data directory from before digests): replay once to know.
      if (reasons.length || (!recorded && !fileNow)) {
        it.startup.replayed = true;
        it.startup.reasons = reasons;
        const t0 = performance.now();
        it.startup.alarm = await it.repair('start', reasons);
        it.startup.replayMs = Math.round(performance.now() - t0);
      }
    }
    await it.ensureRecorded();
    it.checkedDataVersion = dataVersion;
    // A sealed start compared no row: its check is the one start() runs first.
    if (it.startup.scanned) it.lastCheck = { at: new Date().toISOString(), alarm: it.startup.alarm !== undefined };
    return it;
  }

  /**
   * Appends a signed `ledger.snapshot` naming the state at the current tree size: its digest is the
   * one the writer keeps up to date at every commit (no scan). Made inside a transaction of its own
   * (submitPrepared), so no other command comes between the size it names and its own index.
   */
  recordSnapshot(): Promise<Receipt | undefined> {
    const { chokepoint } = this.o;
    return chokepoint.submitPrepared(async () => {
      const size = chokepoint.ledger.size;
      if (size < 1) return undefined;
      return chokepoint.platformCommand('ledger.snapshot', { size, digest: combinedDigest(this.tracker.current) }) as SignedCommand;
    });
  }

  /** Records a ledger.snapshot after every `entries` entries appended from now on (0: never); `onError` hears of one that failed. */
  snapshotEveryEntries(entries: number, onError?: (err: unknown) => void): void {
    this.snapshotEvery = Number.isSafeInteger(entries) && entries > 0 ? entries : 0;
    this.snapshotFrom = this.o.chokepoint.ledger.size;
    this.snapshotError = onError;
  }

  private maybeSnapshot(size: number): void {
    if (!this.snapshotEvery || this.closed || this.snapshotting || size - this.snapshotFrom < this.snapshotEvery) return;
    this.snapshotFrom = size;
    // After this commit's hooks, as a submission of its own.
    this.snapshotting = new Promise((r) => setImmediate(r))
      .then(() => (this.closed ? undefined : this.recordSnapshot()))
      .then((r) => {
        if (r) this.snapshotFrom = r.index + 1;
      })
      .catch((err: unknown) => (this.closed ? undefined : this.snapshotError?.(err)))
      .finally(() => (this.snapshotting = undefined));
  }

  private attach(): void {
    const { chokepoint, origin, platformKey } = this.o;
    chokepoint.ledger.hooks = {
      begin: () => this.tracker.begin(),
      seal: async (tx, cp) => {
        const ds = await this.tracker.seal(tx);
        if (!cp) return;
        const combined = combinedDigest(ds);
        if (this.sealed && this.sealed.size < MAX_SEALED) this.sealed.set(cp.size, combined);
        await tx.run('INSERT OR IGNORE INTO projection_digests (size, digest) VALUES (?, ?)', [cp.size, combined]);
        this.pendingFiles.set(cp.size, formatCheckpointFile(origin, cp.size, cp.root, ds, platformKey));
      },
      committed: async (cp) => {
        this.committedDigests = this.tracker.current;
        if (!cp) return;
        this.maybeSnapshot(cp.size);
        const text = this.pendingFiles.get(cp.size);
        this.pendingFiles.clear();
        if (!text) return;
        try {
          await this.writer.write(text);
        } catch (err) {
          throw new Error(`entries up to ${cp.size} are committed, but ${CHECKPOINT_FILE} could not be written: ${(err as Error).message}`);
        }
      },
    };
  }

  /** The record at the current size and the checkpoint file, written if missing or stale (an upgrade, a crash before the file was renamed). */
  private async ensureRecorded(): Promise<void> {
    const { store, chokepoint, origin, platformKey, dataDir } = this.o;
    const size = chokepoint.ledger.size;
    const current = this.tracker.current;
    if (size > 0 && !(await store.get('SELECT 1 AS x FROM projection_digests WHERE size = ?', [size])))
      await store.transaction(async (tx) => {
        await tx.run('INSERT OR IGNORE INTO projection_digests (size, digest) VALUES (?, ?)', [size, combinedDigest(current)]);
      });
    let file: CheckpointFileContents | undefined;
    try {
      const text = readCheckpointFile(dataDir);
      file = text === undefined ? undefined : parseCheckpointFile(text, origin, publicKeyRaw(platformKey));
    } catch {
      file = undefined;
    }
    const stale = !file || file.size !== size || DIGEST_TABLES.some((t) => file.digests.get(t)?.sum !== digestHex(current.get(t)!) || file.digests.get(t)?.rows !== current.get(t)!.rows);
    if (stale) await this.writer.write(formatCheckpointFile(origin, size, chokepoint.ledger.root(), current, platformKey));
  }

  /** Called with every alarm raised after this call (the daemon logs it and drops its DNS caches). */
  onAlarm(fn: (a: IntegrityAlarm) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Looks every `intervalMs` (0: never) whether a check is due. One is due when another connection
   * committed to the database since the last check began (`dataVersion`: a tool, another process;
   * one query, whatever the size of the state), and otherwise once the last check is `intervalMs`
   * old and at least CHECK_DUTY times as old as it took: a scan costs the size of the state, so on
   * a large platform the routine checks space themselves out rather than keep a core busy, while
   * an edit made through SQLite is still looked at within one interval. `onError` hears of a check
   * that could not run.
   */
  start(intervalMs: number, onError?: (err: unknown) => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const every = intervalMs > 0 ? intervalMs : 0;
    const schedule = ++this.schedule;
    this.lostHistoryListener = onError;
    // After a sealed start, the full scan it skipped runs now, on the worker, while the daemon serves.
    if (this.checkFirst && !this.closed) {
      this.checkFirst = false;
      void this.check().catch((err: unknown) => (this.closed ? undefined : onError?.(err)));
    }
    if (!every) return;
    this.nextCheckAt = performance.now() + every;
    const tick = () => {
      this.timer = setTimeout(() => {
        const edited = this.o.store.dataVersion?.() !== this.checkedDataVersion;
        const t0 = performance.now();
        const run = edited || t0 >= this.nextCheckAt ? this.check().catch((err: unknown) => (this.closed ? undefined : onError?.(err))) : undefined;
        void Promise.resolve(run).finally(() => {
          if (this.closed || schedule !== this.schedule) return;
          if (run) this.nextCheckAt = t0 + nextCheckDelay(every, performance.now() - t0);
          tick();
        });
      }, every);
      this.timer.unref();
    };
    tick();
  }

  /**
   * The periodic check. First a worker thread scans every projection table inside one read
   * transaction (no lock: commits go on) and compares it with what the writer sealed at that
   * transaction's tree size; equal, and no foreign trigger: done. Otherwise (a difference, or a
   * size whose seal was not seen) the tables are scanned again in a write transaction, so no commit
   * is half-seen, and compared with what the writer expects; a difference there is repaired and
   * raises an alarm. Returns the alarm, if any. One check at a time.
   */
  check(): Promise<IntegrityAlarm | undefined> {
    if (this.running) return this.running.then(() => undefined);
    const run = (async () => {
      if (this.closed) return undefined;
      // Read before scanning: a commit by another connection after this is looked at next time.
      this.checkedDataVersion = this.o.store.dataVersion?.();
      const matched = await this.snapshotMatches();
      if (this.closed) return undefined;
      if (matched) {
        this.lastCheck = { at: new Date().toISOString(), alarm: this.lostHistory !== undefined };
        this.lastCheckPath = 'snapshot';
        return undefined;
      }
      this.lastCheckPath = 'locked';
      const found = await this.o.store.transaction(async (tx) => ({
        foreign: await foreignTriggers(tx),
        tables: differingTables(await scanAll(tx), this.tracker.current),
      }));
      if (!found.foreign.length && !found.tables.length) {
        this.lastCheck = { at: new Date().toISOString(), alarm: this.lostHistory !== undefined };
        return undefined;
      }
      const reasons = [
        ...(found.tables.length ? [`${found.tables.join(', ')} changed behind the platform's back`] : []),
        ...(found.foreign.length ? [`triggers not created by the platform: ${found.foreign.join(', ')}`] : []),
      ];
      const alarm = await this.repair('periodic', reasons);
      this.lastCheck = { at: new Date().toISOString(), alarm: alarm !== undefined };
      return alarm;
    })();
    this.running = run.finally(() => (this.running = undefined));
    return run;
  }

  /** The unlocked scan of a committed snapshot equals what the writer sealed at its tree size, and no foreign trigger is in the file. */
  private async snapshotMatches(): Promise<boolean> {
    const sealed = new Map([[this.o.chokepoint.ledger.size, combinedDigest(this.tracker.current)]]);
    this.sealed = sealed;
    try {
      const snap = await scanSnapshot(this.o.store, this.stopping.signal);
      if (snap && snap.stored !== snap.size && this.lostHistory === undefined) {
        this.lostHistory = `the ledger has gaps: ${snap.stored} entries stored for tree size ${snap.size} (entries were deleted while the daemon ran); the next start refuses (run \`nexus audit verify --data ${this.o.dataDir}\`)`;
        this.lostHistoryListener?.(new LostHistoryError(this.lostHistory));
      }
      const expected = snap && sealed.get(snap.size);
      return !!expected && combinedDigest(snap.digests) === expected && (await foreignTriggers(this.o.store)).length === 0;
    } finally {
      this.sealed = undefined;
    }
  }

  /** Replays and rebuilds inside one transaction with the alarm entry (when anything was wrong). */
  private async repair(trigger: AlarmTrigger, reasons: string[]): Promise<IntegrityAlarm | undefined> {
    const { chokepoint } = this.o;
    const box: { made?: Omit<IntegrityAlarm, 'index'> } = {};
    const receipt = await chokepoint.submitPrepared(async (tx) => {
      const foreign = await foreignTriggers(tx);
      for (const name of foreign) await tx.run(`DROP TRIGGER IF EXISTS ${quoteId(name)}`);
      const r = await rebuildFromLedger(tx, this.tracker);
      if (!r.tables.length && !reasons.length) return undefined;
      const imvus = r.imvus.slice(0, MAX_ALARM_IMVUS);
      const detail = clip(
        [
          ...reasons,
          ...(r.tables.length ? [`rebuilt from the ledger: ${r.tables.map((t) => `${t} (${r.rows[t]} rows differed)`).join(', ')}`] : ['the projections equal the ledger; nothing rebuilt']),
          ...(foreign.length ? [`dropped triggers ${foreign.join(', ')}`] : []),
          ...(r.imvus.length > imvus.length ? [`${r.imvus.length - imvus.length} more IMVUs affected`] : []),
        ].join('; '),
      );
      box.made = { trigger, tables: r.tables, imvus, detail, replayMs: r.replayMs };
      const body = { trigger, detectedAt: new Date().toISOString(), ledgerSize: r.size, tables: r.tables, imvus, detail };
      return chokepoint.platformCommand('integrity.alarm', body) as SignedCommand;
    });
    if (!receipt || !box.made) return undefined;
    this.rebuilds++;
    const alarm: IntegrityAlarm = { index: receipt.index, ...box.made };
    this.alarms.push(alarm);
    for (const fn of this.listeners) {
      try {
        fn(alarm);
      } catch {
        // a listener's failure is its own
      }
    }
    return alarm;
  }

  /**
   * A key of the committed contents of these projection tables (rows and digest of each): it moves
   * with every commit that changes one of them, so a reader built from them (the gateway's table)
   * knows without reading them whether it is current. Edits behind the platform's back do not move
   * it; the periodic check finds those.
   */
  /** Repairs committed since open: a reader that may have read edited rows reads whole again when it moves. */
  get repairs(): number {
    return this.rebuilds;
  }

  tablesKey(tables: readonly string[]): string {
    // A repair restores the digests they had before the edit: the count of repairs tells a reader
    // that may have read the edited rows (gateway sync()) to read again.
    return `${this.rebuilds} ${tables.map((t) => {
      const d = this.committedDigests.get(t);
      return d ? `${d.rows}:${d.sum.toString(16)}` : '-';
    }).join(' ')}`;
  }

  /**
   * What a close seal records, or why there is to be none: stored entries other than the tree size
   * (rows deleted while the daemon ran) must be found by the next start's count, which a seal spares.
   */
  async sealState(): Promise<{ size: number; root: Buffer; projections: string } | string> {
    const { ledger } = this.o.chokepoint;
    const stored = await storedEntries(this.o.store);
    if (stored !== ledger.size) return `${stored} entries stored for tree size ${ledger.size}`;
    return { size: ledger.size, root: ledger.root(), projections: combinedDigest(this.tracker.current) };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.start(0);
    this.stopping.abort();
    await this.running?.catch(() => undefined);
    await this.snapshotting?.catch(() => undefined);
    await this.writer.flush();
  }
}
