import { join } from 'node:path';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { canonicalJson } from '../ledger/canonical.ts';
import { openNote, parseCheckpoint } from '../ledger/checkpoint.ts';
import { CHECKPOINT_FILE, parseCheckpointFile, readCheckpointFile } from '../ledger/checkpoint-file.ts';
import { Frontier, decodeEntry, encodeEntry } from '../ledger/ledger.ts';
import { DIGEST_TABLES, DigestTracker, PROJECTION_COLUMNS, combinedDigest, digestHex, scanAll, type ProjectionChange } from '../store/digest.ts';
import { DB_FILE, PROJECTION_TABLES, SqliteStore, type Row, type SqlValue, type Store, type WriteTx } from '../store/index.ts';
import type { LedgerEntry } from '../types.ts';
import { periodOfInstant, statement } from '../handshake/index.ts';
import { PeriodCloseBody, sealedDifference, sealedTotals } from '../handshake/close.ts';
import { replayEntry } from './chokepoint.ts';

export type ProblemKind = 'missing-entry' | 'malformed-entry' | 'checkpoint' | 'checkpoint-file' | 'consistency' | 'gate-violation' | 'projection' | 'time' | 'statement' | 'snapshot';

export interface Problem {
  kind: ProblemKind;
  index?: number;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  size: number;
  root: string;
  checkpointSize: number | null;
  /** How many stored checkpoints were checked (every row of ledger_checkpoints). */
  checkpoints: number;
  /** Tree size of the data directory's checkpoint file; null when there is none or it was not checked. */
  checkpointFile: number | null;
  /** Tree size of the verifier's snapshot the replay started from (--from-snapshot); null for a replay from entry 0. */
  fromSnapshot: number | null;
  /** Where a snapshot of the verified state was written (--save-snapshot), or null. */
  snapshotSaved: string | null;
  /** Why --save-snapshot wrote nothing although the log verified (no signed ledger.snapshot entry to save at), or null. */
  snapshotNotSaved: string | null;
  /** How many signed `ledger.snapshot` entries the replay checked (their digest against the replayed state at their size). */
  snapshotEntries: number;
  /**
   * From a snapshot: how many projection rows were compared with the stored ones (those the
   * replayed entries touched); null when every row was compared (a replay from entry 0).
   */
  comparedRows: number | null;
  problems: Problem[];
}

export interface VerifyOptions {
  /** A checkpoint note the verifier saw earlier (a creator's copy): the log must extend it. */
  savedCheckpoint?: string;
  /**
   * The text of the data directory's checkpoint file (src/core/ledger/checkpoint-file.ts); null when
   * it has none. verifyDataDir reads it; verifyStore alone does not check it.
   */
  checkpointFile?: string | null;
  /**
   * A snapshot directory written by `saveSnapshot`: the replay starts from its state instead of
   * entry 0. It is used only if the log has, at its tree size N, an allowed `ledger.snapshot` entry
   * (signed by the platform) recording its state digest; otherwise the verification refuses at once.
   * The entries before N are still read and hashed (not decoded, not replayed): the log must still
   * have, byte for byte, the prefix the snapshot was verified against. Only the projection rows the
   * replayed entries touched are compared with the stored ones (rows of the state at N are covered
   * by the signed digest, which anyone verifying from entry 0 checks, and by the daemon's own check).
   */
  fromSnapshot?: string;
  /**
   * If the verification holds: write a snapshot of the verified state here (a directory, replaced),
   * taken at the log's newest allowed `ledger.snapshot` entry (the state its digest names), so that
   * a later --from-snapshot can be bound to the log. Nothing is written if the log has none.
   */
  saveSnapshot?: string;
}

const SNAPSHOT_FORMAT = 'nexus-verify-snapshot/1';
const SNAPSHOT_META = 'snapshot.json';

/**
 * What a verifier keeps of a log it verified (a directory): the replayed projections (replay.db),
 * what the sealed-statement check keeps (statements.db), and this. Everything in it is the
 * verifier's own work, trusted as much as a saved checkpoint: it lives on the verifier's machine.
 */
interface SnapshotMeta {
  format: typeof SNAPSHOT_FORMAT;
  origin: string;
  publicKey: string;
  /** The tree size of the state, which is also the index of the signed ledger.snapshot entry naming it. */
  size: number;
  root: string;
  /** combinedDigest of replay.db's projections. */
  digest: string;
  /** The tree's right edge at `size` (Frontier.edge()). */
  edge: { level: number; hash: string }[];
  /** The time of the last entry (entry times never go back). */
  prevTime: { ms: number; at: string } | null;
  /** The projection digests the platform recorded up to `size`, checked by that verification: their count and a hash over them. */
  recordedDigests: { count: number; sha256: string };
}

function readSnapshotMeta(dir: string): SnapshotMeta {
  const file = join(dir, SNAPSHOT_META);
  if (!existsSync(file)) throw new Error(`${dir} is not a verifier snapshot (no ${SNAPSHOT_META})`);
  if (statSync(file).size > 64 * 1024) throw new Error(`${file} is too large`);
  const m = JSON.parse(readFileSync(file, 'utf8')) as SnapshotMeta;
  const hex = (v: unknown) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);
  if (
    m?.format !== SNAPSHOT_FORMAT ||
    !Number.isSafeInteger(m.size) ||
    m.size < 1 ||
    !hex(m.root) ||
    !hex(m.digest) ||
    !Array.isArray(m.edge) ||
    !m.edge.every((n) => Number.isSafeInteger(n?.level) && hex(n?.hash)) ||
    !Number.isSafeInteger(m.recordedDigests?.count) ||
    !hex(m.recordedDigests?.sha256)
  )
    throw new Error(`${file} is not a ${SNAPSHOT_FORMAT} snapshot`);
  return m;
}

/** A hash over the recorded projection digests of sizes up to `upTo`, in size order. */
async function recordedDigestsHash(store: Store, upTo: number): Promise<{ count: number; sha256: string }> {
  const h = createHash('sha256').update('nexus/recorded-digests\n');
  let count = 0;
  for await (const r of paged<{ size: number; digest: string }>(store, 'projection_digests', 'size, digest', 'size')) {
    if (Number(r.size) > upTo) break;
    h.update(`${String(r.size)} ${String(r.digest)}\n`);
    count++;
  }
  return { count, sha256: h.digest('hex') };
}

/** At most this many problems of one kind are listed one by one; the rest are counted. */
const MAX_LISTED = 20;
/** Entries read, and replayed in one transaction of the scratch store, at a time. */
const CHUNK = 2000;
/** Rows of checkpoints, digests or projections read at a time. */
const PAGE = 500;

/**
 * Verifies a data directory as an outsider would: recompute the tree from the entry bytes,
 * check every signature, replay every entry through the same gates into fresh projections,
 * and compare. Trusts nothing the database says about itself except the entry bytes.
 */
export async function verifyDataDir(dataDir: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const file = join(dataDir, DB_FILE);
  if (!existsSync(file)) throw new Error(`${dataDir} has no ${DB_FILE}`);
  const store = new SqliteStore(file);
  try {
    let checkpointFile: string | null;
    try {
      checkpointFile = readCheckpointFile(dataDir) ?? null;
    } catch (err) {
      checkpointFile = `unreadable: ${(err as Error).message}`;
    }
    return await verifyStore(store, { checkpointFile, ...opts });
  } finally {
    await store.close();
  }
}

/** The rows of `table` in `col` order (its primary key), a page at a time. */
async function* paged<T extends Row>(store: Store, table: string, cols: string, col: string): AsyncGenerator<T> {
  let after: SqlValue | undefined;
  for (;;) {
    const rows =
      after === undefined
        ? await store.all<T>(`SELECT ${cols} FROM ${table} ORDER BY ${col} LIMIT ?`, [PAGE])
        : await store.all<T>(`SELECT ${cols} FROM ${table} WHERE ${col} > ? ORDER BY ${col} LIMIT ?`, [after, PAGE]);
    for (const r of rows) yield r;
    if (rows.length < PAGE) return;
    after = rows[rows.length - 1]![col] as SqlValue;
  }
}

/** The entries of the store in index order, a chunk at a time, each with its bytes; stops at the first gap. */
async function* storedEntries(store: Store): AsyncGenerator<{ idx: number; data: Buffer }> {
  let next = 0;
  for (;;) {
    const rows = await store.all<{ idx: number; data: Buffer }>('SELECT idx, data FROM ledger_entries WHERE idx >= ? ORDER BY idx LIMIT ?', [next, CHUNK]);
    for (const r of rows) yield r;
    if (rows.length < CHUNK) return;
    next = Number(rows[rows.length - 1]!.idx) + 1;
  }
}

/** A scratch directory for a verifier's on-disk state (removed by the returned function). */
function scratchDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-verify-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * One pass over the log, in bounded memory: the tree is kept as its frontier (one hash per level),
 * every checkpoint is checked when the pass reaches its size, the replay goes into a scratch store
 * on disk a chunk at a time, the sealed statements keep the entries they may need on disk, and the
 * projections are compared a page at a time. Memory does not grow with the log; time is linear.
 */
export async function verifyStore(store: Store, opts: VerifyOptions = {}): Promise<VerifyReport> {
  // Problems by where the report lists them (the order is part of the report).
  const latestProblems: Problem[] = [];
  const storedProblems: Problem[] = [];
  const fileProblems: Problem[] = [];
  const beyondProblems: Problem[] = [];
  const savedProblems: Problem[] = [];
  const replayDigestProblems: Problem[] = [];
  const structural: Problem[] = [];
  const tree = new Frontier(0, []);
  let checkpoints = 0;
  let checkpointFile: number | null = null;
  let snap: SnapshotMeta | undefined;
  let snapshotSaved: string | null = null;
  const snapshotProblems: Problem[] = [];
  let snapshotNotSaved: string | null = null;
  let snapshotEntries = 0;
  let comparedRows: number | null = null;
  const latest = await store.latestCheckpoint();
  const report = (problems: Problem[]): VerifyReport => ({
    ok: problems.length === 0,
    size: tree.size,
    root: tree.root().toString('hex'),
    checkpointSize: latest?.size ?? null,
    checkpoints,
    checkpointFile,
    fromSnapshot: snap?.size ?? null,
    snapshotSaved,
    snapshotNotSaved,
    snapshotEntries,
    comparedRows,
    problems,
  });

  const source = storedEntries(store);
  const first = await source.next();
  // The platform key comes from the genesis entry; it must have signed every checkpoint (gate 17),
  // and every command's own signature is checked again by the replay (gate 1).
  let genesis: LedgerEntry | undefined;
  try {
    if (!first.done && Number(first.value.idx) === 0) genesis = decodeEntry(first.value.data);
  } catch {
    genesis = undefined;
  }
  if (!genesis || genesis.index !== 0 || genesis.command?.command?.type !== 'platform.genesis') {
    // As before: the tree over the readable prefix, then the report of a log that does not start right.
    const problems: Problem[] = [];
    if (!first.done) {
      if (Number(first.value.idx) !== 0) problems.push({ kind: 'missing-entry', index: 0, message: `entry 0 is missing (next stored entry is ${first.value.idx})` });
      else
        try {
          const e = decodeEntry(first.value.data);
          if (e.index !== 0) throw new Error(`says it is entry ${e.index}`);
          tree.append(first.value.data);
          for await (const row of source) {
            if (Number(row.idx) !== tree.size) {
              problems.push({ kind: 'missing-entry', index: tree.size, message: `entry ${tree.size} is missing (next stored entry is ${row.idx})` });
              break;
            }
            try {
              const n = decodeEntry(row.data);
              if (n.index !== tree.size) throw new Error(`says it is entry ${n.index}`);
            } catch (err) {
              problems.push({ kind: 'malformed-entry', index: tree.size, message: `entry ${tree.size} is malformed: ${(err as Error).message}` });
              break;
            }
            tree.append(row.data);
          }
        } catch (err) {
          problems.push({ kind: 'malformed-entry', index: 0, message: `entry 0 is malformed: ${(err as Error).message}` });
        }
    }
    problems.push({ kind: 'malformed-entry', index: 0, message: 'entry 0 is not the platform genesis' });
    return report(problems);
  }
  const rawKey = Buffer.from(String(genesis.command.command.body.publicKey), 'base64');
  const origin = String(genesis.command.command.body.origin);

  const checkNote = (note: string, what: string, into: Problem[]): { size: number; rootHash: Buffer } | undefined => {
    try {
      const opened = openNote(note, [{ name: origin, publicKeyRaw: rawKey }]);
      return parseCheckpoint(opened.text);
    } catch (err) {
      into.push({ kind: 'checkpoint', message: `${what}: ${(err as Error).message}` });
      return undefined;
    }
  };
  // Checks that run when the pass reaches a tree size (or at its end, if the log is shorter).
  const atSize = new Map<number, ((root: Buffer | undefined) => void)[]>();
  const whenAt = (size: number, check: (root: Buffer | undefined) => void) => {
    if (!Number.isSafeInteger(size) || size < 0) return check(undefined);
    const list = atSize.get(size);
    if (list) list.push(check);
    else atSize.set(size, [check]);
  };
  // A checkpoint of `cp.size` entries extends to the log iff its root is that of the log's first cp.size entries.
  const consistent = (cp: { size: number; rootHash: Buffer }, what: string, kind: ProblemKind, into: Problem[]) =>
    whenAt(cp.size, (root) => {
      if (!root) into.push({ kind, message: `${what} covers ${cp.size} entries but the log has only ${tree.size}: entries were removed` });
      else if (!root.equals(cp.rootHash)) into.push({ kind, message: `${what} (tree size ${cp.size}) is not a prefix of the log (tree size ${tree.size}): history was rewritten` });
    });
  if (latest) {
    const cp = checkNote(latest.note, `stored checkpoint ${latest.size}`, latestProblems);
    if (cp) consistent(cp, `the platform's latest signed checkpoint`, 'checkpoint', latestProblems);
  }

  // Every other stored checkpoint too, in size order as the pass reaches it: each must be signed by
  // the platform key, be of this log, and have the root of the recomputed tree at its size.
  const storedRows = paged<{ size: number; note: string }>(store, 'ledger_checkpoints', 'size, note', 'size');
  let pendingRow: { size: number; note: string } | undefined;
  let rowsDone = false;
  let bad = 0;
  const checkStoredRow = (row: { size: number; note: string }, root: Buffer | undefined) => {
    checkpoints++;
    if (latest && Number(row.size) === latest.size) return;
    const what = `stored checkpoint at tree size ${row.size}`;
    const before = storedProblems.length;
    const cp = checkNote(String(row.note), what, storedProblems);
    if (cp) {
      if (cp.size !== Number(row.size)) storedProblems.push({ kind: 'checkpoint', message: `${what} says tree size ${cp.size}` });
      else if (!root) storedProblems.push({ kind: 'checkpoint', message: `${what} covers ${cp.size} entries but the log has only ${tree.size}: entries were removed` });
      else if (!root.equals(cp.rootHash))
        storedProblems.push({ kind: 'checkpoint', message: `${what} is signed by the platform key but contradicts the log (its root is not that of the first ${cp.size} entries): history was rewritten` });
    }
    if (storedProblems.length > before && ++bad > MAX_LISTED) storedProblems.splice(before);
  };
  /** Checks every stored checkpoint of a size up to the tree's (all of them when `end`). */
  const storedUpTo = async (end: boolean) => {
    for (;;) {
      if (!pendingRow) {
        if (rowsDone) return;
        const n = await storedRows.next();
        if (n.done) {
          rowsDone = true;
          return;
        }
        pendingRow = n.value;
      }
      const s = Number(pendingRow.size);
      if (!end && s > tree.size) return;
      checkStoredRow(pendingRow, s === tree.size ? tree.root() : undefined);
      pendingRow = undefined;
    }
  };

  // The newest checkpoint kept outside the database (written after every commit).
  let fileDigests: Map<string, { rows: number; sum: string }> | undefined;
  let fileMatches: Map<string, { rows: number; sum: string }> | undefined;
  if (opts.checkpointFile !== undefined) {
    const recordedAny = await store.get('SELECT 1 AS x FROM projection_digests LIMIT 1');
    if (opts.checkpointFile === null) {
      if (recordedAny) fileProblems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} is missing, but the database was written with it` });
    } else {
      try {
        const f = parseCheckpointFile(opts.checkpointFile, origin, rawKey);
        checkpointFile = f.size;
        whenAt(f.size, (root) => {
          if (!root) fileProblems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} covers ${f.size} entries but the log has only ${tree.size}: acknowledged entries were lost` });
          else if (!root.equals(f.rootHash))
            fileProblems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} (tree size ${f.size}) contradicts the log: its root is not the root of the first ${f.size} entries` });
          else fileMatches = f.digests;
        });
      } catch (err) {
        fileProblems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} does not verify: ${(err as Error).message}` });
      }
    }
  }
  if (opts.savedCheckpoint) {
    const cp = checkNote(opts.savedCheckpoint, 'saved checkpoint', savedProblems);
    if (cp) consistent(cp, 'the saved checkpoint', 'consistency', savedProblems);
  }

  // The projection digests recorded with checkpoints, checked against the replay at each size.
  const digestRows = paged<{ size: number; digest: string }>(store, 'projection_digests', 'size, digest', 'size');
  let nextDigest = await digestRows.next();
  let badDigests = 0;

  let finalSize = -1;
  const scratch = scratchDir();
  // From a snapshot: its state (copied, so the snapshot stays as it was) is where the replay starts.
  if (opts.fromSnapshot) {
    try {
      const m = readSnapshotMeta(opts.fromSnapshot);
      if (m.origin !== origin || m.publicKey !== rawKey.toString('base64')) throw new Error('it is a snapshot of another platform\'s log');
      const edge = new Frontier(m.size, m.edge.map((n) => ({ level: n.level, hash: Buffer.from(n.hash, 'hex') })));
      if (edge.root().toString('hex') !== m.root) throw new Error("its tree edge does not give its root");
      const unbound = await signedSnapshotAt(store, m.size, m.digest);
      if (unbound)
        throw new Error(
          `it is not bound to the log: ${unbound}. A snapshot is used only at a ledger.snapshot entry the platform signed with its state digest (verify from entry 0, with --save-snapshot to keep one)`,
        );
      for (const f of ['replay.db', 'statements.db']) copyFileSync(join(opts.fromSnapshot, f), join(scratch.dir, f));
      snap = m;
    } catch (err) {
      // Refused before anything is replayed: the verdict rests on nothing the log does not sign.
      scratch.remove();
      snap = undefined;
      return report([{ kind: 'snapshot', message: `the snapshot ${opts.fromSnapshot} cannot be used: ${(err as Error).message}` }]);
    }
  }
  // Where --save-snapshot saves: the newest allowed ledger.snapshot entry (read back from the end of the log).
  const saveAt = opts.saveSnapshot ? await newestSnapshotEntry(store) : undefined;
  if (opts.saveSnapshot && saveAt === undefined) snapshotNotSaved = 'the log has no allowed ledger.snapshot entry to save the state at';
  let staged: string | undefined;
  // From a snapshot: the projection rows the replay touched (by table, by primary key), compared at the end.
  const touched = new Map<string, Map<string, SqlValue[]>>();
  const touch = (c: ProjectionChange) => {
    const keys = KEY_INDEXES[c.table];
    if (!keys) return;
    const values = quotedValues(c.row);
    const key = keys.map((i) => values[i] ?? null);
    let t = touched.get(c.table);
    if (!t) touched.set(c.table, (t = new Map()));
    t.set(key.map((v) => show(v)).join('\u0000'), key);
  };
  const fresh = new SqliteStore(join(scratch.dir, 'replay.db'), { scratch: true });
  const replay = new StreamingReplay(fresh, new SealedStatements(join(scratch.dir, 'statements.db')), snap?.prevTime ?? undefined);
  try {
    const tracker = new DigestTracker(await scanAll(fresh), snap ? touch : undefined);
    // The snapshot's own consistency: its state is the one whose digest it recorded when it was verified.
    if (snap && combinedDigest(tracker.current) !== snap.digest) {
      snapshotProblems.push({ kind: 'snapshot', message: `the snapshot's state (tree size ${snap.size}) is not the state it was verified with: its projections' digest changed` });
    }
    // The recorded projection digests up to the snapshot were checked against the replay then; they must not have changed since.
    const skipBelow = snap?.size ?? 0;
    if (snap) {
      const h = createHash('sha256').update('nexus/recorded-digests\n');
      let count = 0;
      while (!nextDigest.done && Number(nextDigest.value.size) <= skipBelow) {
        h.update(`${String(nextDigest.value.size)} ${String(nextDigest.value.digest)}\n`);
        count++;
        nextDigest = await digestRows.next();
      }
      if (count !== snap.recordedDigests.count || h.digest('hex') !== snap.recordedDigests.sha256)
        snapshotProblems.push({ kind: 'snapshot', message: `the projection digests the platform recorded up to tree size ${snap.size} are not those verified when the snapshot was taken` });
    }
    /** A copy of the replayed state at tree size `size` beside the target, renamed into place if the whole verification holds. */
    const stage = async (size: number, digest: string): Promise<string> => {
      const tmp = `${opts.saveSnapshot!}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true, mode: 0o700 });
      await fresh.copyTo(join(tmp, 'replay.db'));
      copyFileSync(join(scratch.dir, 'statements.db'), join(tmp, 'statements.db'));
      const meta: SnapshotMeta = {
        format: SNAPSHOT_FORMAT,
        origin,
        publicKey: rawKey.toString('base64'),
        size,
        root: tree.root().toString('hex'),
        digest,
        edge: tree.edge().map((n) => ({ level: n.level, hash: n.hash.toString('hex') })),
        prevTime: replay.lastTime ?? null,
        recordedDigests: await recordedDigestsHash(store, size),
      };
      writeFileSync(join(tmp, SNAPSHOT_META), JSON.stringify(meta, null, 2) + '\n', { mode: 0o600 });
      return tmp;
    };
    const reached = (size: number) => {
      const checks = atSize.get(size);
      if (checks) {
        atSize.delete(size);
        const root = tree.root();
        for (const c of checks) c(root);
      }
    };
    reached(0);
    await storedUpTo(false);
    const afterEntry = async (tx: WriteTx, e: LedgerEntry) => {
      while (!nextDigest.done && Number(nextDigest.value.size) < e.index + 1) nextDigest = await digestRows.next();
      const expected = !nextDigest.done && Number(nextDigest.value.size) === e.index + 1 ? String(nextDigest.value.digest) : undefined;
      if (expected !== undefined || (e.index + 1) % 5000 === 0) {
        const ds = await tracker.seal(tx);
        if (expected !== undefined && expected !== combinedDigest(ds) && ++badDigests <= MAX_LISTED)
          replayDigestProblems.push({ kind: 'projection', index: e.index, message: `the projection digest recorded at tree size ${e.index + 1} is not the digest of the replay at that size` });
      }
    };
    let batch: { e: LedgerEntry; data: Buffer }[] = [];
    const flush = async () => {
      await replay.feed(batch, afterEntry);
      batch = [];
    };
    let row: { idx: number; data: Buffer } | undefined = first.value;
    while (row) {
      if (Number(row.idx) !== tree.size) {
        structural.push({ kind: 'missing-entry', index: tree.size, message: `entry ${tree.size} is missing (next stored entry is ${row.idx})` });
        break;
      }
      if (tree.size < skipBelow) {
        // Before the snapshot: hashed only. The bytes must be those the snapshot was verified
        // against, which the root at the snapshot's size says (checked below).
        tree.append(row.data);
        reached(tree.size);
        await storedUpTo(false);
        if (tree.size === skipBelow && snap && tree.root().toString('hex') !== snap.root)
          snapshotProblems.push({
            kind: 'snapshot',
            index: skipBelow - 1,
            message: `the log's first ${skipBelow} entries are not those the snapshot was verified against (their root differs): history before the snapshot was rewritten`,
          });
      } else {
        let e: LedgerEntry;
        try {
          e = decodeEntry(row.data);
          if (e.index !== tree.size) throw new Error(`says it is entry ${e.index}`);
        } catch (err) {
          structural.push({ kind: 'malformed-entry', index: tree.size, message: `entry ${tree.size} is malformed: ${(err as Error).message}` });
          break;
        }
        if (e.command?.command?.type === 'ledger.snapshot' && e.decision?.allowed) {
          // The state of the first e.index entries, which the entry's digest names: every entry before it replayed, none after.
          await flush();
          if (!replay.halted) {
            const got = combinedDigest(await fresh.transaction((tx) => tracker.seal(tx)));
            const claimed = String((e.command.command.body as { digest?: unknown }).digest);
            snapshotEntries++;
            if (claimed !== got)
              snapshotProblems.push({
                kind: 'snapshot',
                index: e.index,
                message: `entry ${e.index} (ledger.snapshot) records the state digest ${claimed.slice(0, 16)}… at tree size ${e.index}, but the replay of the first ${e.index} entries gives ${got.slice(0, 16)}…: the platform signed a false snapshot`,
              });
            else if (e.index === saveAt) staged = await stage(e.index, got);
          }
        }
        tree.append(row.data);
        reached(tree.size);
        await storedUpTo(false);
        batch.push({ e, data: row.data });
        if (batch.length >= CHUNK) await flush();
      }
      const it = await source.next();
      row = it.done ? undefined : it.value;
    }
    await flush();
    finalSize = tree.size;
    if (snap && finalSize < skipBelow)
      snapshotProblems.push({ kind: 'snapshot', message: `the snapshot covers ${skipBelow} entries but the log has only ${finalSize}: entries were removed` });
    // Whatever is still waiting is beyond the end of the log.
    for (const [, checks] of [...atSize].sort((a, b) => a[0] - b[0])) for (const c of checks) c(undefined);
    atSize.clear();
    await storedUpTo(true);
    if (bad > MAX_LISTED) storedProblems.push({ kind: 'checkpoint', message: `${bad - MAX_LISTED} more stored checkpoints do not hold` });
    // Recorded digests for sizes the log does not reach.
    while (!nextDigest.done) {
      if (Number(nextDigest.value.size) > finalSize && ++badDigests <= MAX_LISTED)
        beyondProblems.push({ kind: 'projection', message: `a projection digest is recorded for tree size ${nextDigest.value.size}, but the log has only ${finalSize} entries` });
      nextDigest = await digestRows.next();
    }
    // The file's digests are those of the final state only if the log ends at its size.
    if (fileMatches && checkpointFile === finalSize) fileDigests = fileMatches;

    const replayed = await replay.finish();
    const problems: Problem[] = [
      ...snapshotProblems,
      ...structural,
      ...latestProblems,
      ...storedProblems,
      ...fileProblems,
      ...beyondProblems,
      ...savedProblems,
      ...replayDigestProblems,
      ...replayed,
    ];
    if (badDigests > MAX_LISTED) problems.push({ kind: 'projection', message: `${badDigests - MAX_LISTED} more recorded projection digests do not hold` });
    // The last changes folded in (and, from a snapshot, their rows marked touched).
    const endDigests = await fresh.transaction((tx) => tracker.seal(tx));
    if (!problems.some((p) => p.kind === 'gate-violation')) {
      let diff: string | undefined;
      if (snap) {
        // O(tail): the rows the replay after the snapshot touched. Rows it did not touch are those
        // of the state at the snapshot, whose digest the platform signed (checked against the replay
        // by anyone verifying from entry 0); a stored row edited behind the daemon's back there is
        // found by a full verify and by the daemon's own scan (src/core/policy/integrity.ts), not here.
        const r = await compareTouched(store, fresh, touched);
        comparedRows = r.rows;
        diff = r.diff;
      } else diff = await compareProjections(store, fresh);
      if (diff) problems.push({ kind: 'projection', message: diff });
      if (fileDigests) {
        const now = snap ? endDigests : await scanAll(fresh);
        const off = DIGEST_TABLES.filter((t) => fileDigests!.get(t)?.rows !== now.get(t)!.rows || fileDigests!.get(t)?.sum !== digestHex(now.get(t)!));
        if (off.length) problems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE}: the projection digests of ${off.join(', ')} are not those of the replay` });
      }
    }
    if (staged && opts.saveSnapshot) {
      if (!problems.length) {
        rmSync(opts.saveSnapshot, { recursive: true, force: true });
        renameSync(staged, opts.saveSnapshot);
        snapshotSaved = opts.saveSnapshot;
      } else rmSync(staged, { recursive: true, force: true });
    } else if (opts.saveSnapshot && saveAt !== undefined && !problems.length)
      snapshotNotSaved = `the newest ledger.snapshot entry (${saveAt}) is before the snapshot this run started from`;
    return report(problems);
  } finally {
    await replay.close();
    await fresh.close();
    scratch.remove();
  }
}

/**
 * The replay of entries in order, fed a chunk at a time: every recorded decision must be the one
 * the gates reach on replay into `into` (each chunk one transaction of it), entry times never go
 * back, and every statement a period.close sealed must be the one statement() computes.
 */
class StreamingReplay {
  private readonly problems: Problem[] = [];
  private time: Problem | undefined;
  private prev: { ms: number; at: string } | undefined;
  private stopped = false;

  constructor(
    private readonly into: Store,
    private readonly sealed: SealedStatements,
    prev?: { ms: number; at: string },
  ) {
    this.prev = prev;
  }

  /** A recorded decision did not hold: nothing after it was replayed. */
  get halted(): boolean {
    return this.stopped;
  }

  /** The time of the last entry fed whose time was valid. */
  get lastTime(): { ms: number; at: string } | undefined {
    return this.prev;
  }

  async feed(entries: readonly { e: LedgerEntry; data?: Buffer }[], afterEntry?: (tx: WriteTx, e: LedgerEntry) => Promise<void>): Promise<void> {
    if (!entries.length) return;
    for (const { e, data } of entries) {
      if (!this.time) this.time = timeProblem(e, this.prev, (p) => (this.prev = p));
      this.sealed.feed(e, data);
    }
    if (this.stopped) return;
    await this.into.transaction(async (tx) => {
      for (const { e } of entries) {
        let decision;
        try {
          decision = await replayEntry(tx, e);
        } catch (err) {
          this.problems.push({ kind: 'gate-violation', index: e.index, message: `entry ${e.index} cannot be replayed: ${(err as Error).message}` });
          this.stopped = true;
          return;
        }
        await afterEntry?.(tx, e);
        if (canonicalJson(decision) !== canonicalJson(e.decision)) {
          const firstDeny = decision.gates.find((g) => g.status === 'deny');
          const recorded = e.decision.allowed ? 'allowed' : 'denied';
          const now = decision.allowed ? 'allowed' : `denied (gate ${firstDeny?.gate}: ${firstDeny?.reason})`;
          this.problems.push({
            kind: 'gate-violation',
            index: e.index,
            message: `entry ${e.index} (${e.command?.command?.type ?? 'unknown'}): recorded as ${recorded}, but the gates say ${now}`,
          });
          this.stopped = true;
          return;
        }
      }
    });
  }

  /** Time, gate and (when no gate was violated) statement problems, in that order. */
  async finish(): Promise<Problem[]> {
    const out = [...(this.time ? [this.time] : []), ...this.problems];
    if (!this.problems.some((p) => p.kind === 'gate-violation')) out.push(...this.sealed.problems);
    return out;
  }

  async close(): Promise<void> {
    this.sealed.close();
  }
}

/**
 * What every verifier checks of the entries themselves (offline here, online in `nexus audit
 * verify`): entry times never go back (every time rule of the gates is judged against them), every
 * recorded decision is the one the gates reach on replay into `into` (a fresh store), and every
 * statement a period.close sealed is the one statement() computes from the entries.
 */
export async function replayEntries(entries: readonly LedgerEntry[], into?: Store, afterEntry?: (tx: WriteTx, e: LedgerEntry) => Promise<void>): Promise<Problem[]> {
  const fresh = into ?? new SqliteStore(':memory:');
  const replay = new StreamingReplay(fresh, new SealedStatements(':memory:'));
  try {
    for (let i = 0; i < entries.length; i += CHUNK) await replay.feed(entries.slice(i, i + CHUNK).map((e) => ({ e })), afterEntry);
    return await replay.finish();
  } finally {
    await replay.close();
    if (!into) await fresh.close();
  }
}

function timeProblem(e: LedgerEntry, prev: { ms: number; at: string } | undefined, set: (p: { ms: number; at: string }) => void): Problem | undefined {
  let ms: number;
  try {
    periodOfInstant(e.at, `entry ${e.index} time`);
    ms = Date.parse(e.at);
  } catch (err) {
    return { kind: 'time', index: e.index, message: (err as Error).message };
  }
  if (prev && ms < prev.ms)
    return { kind: 'time', index: e.index, message: `entry ${e.index} is dated ${e.at}, before the entry preceding it (${prev.at}): entry times never go back` };
  set({ ms, at: e.at });
  return undefined;
}

/** The first entry whose time is not a valid instant or is earlier than the entry before it. */
export function timeProblems(entries: readonly LedgerEntry[]): Problem[] {
  let prev: { ms: number; at: string } | undefined;
  for (const e of entries) {
    const p = timeProblem(e, prev, (x) => (prev = x));
    if (p) return [p];
  }
  return [];
}

/**
 * Recomputes, with statement() over the entries themselves, every statement an allowed
 * `period.close` sealed, and checks that a complete close listed every IMVU billed in its period.
 * One pass: usage and revenue are kept by IMVU and period as they come (on disk, in a scratch
 * SQLite database, so memory does not grow with the log), and a close can only follow everything
 * that is billed in its period.
 */
class SealedStatements {
  readonly problems: Problem[] = [];
  private readonly books: LedgerEntry[] = [];
  private readonly db: Database.Database;
  private readonly st: {
    bill: Database.Statement;
    billedImvu: Database.Statement;
    own: Database.Statement;
    listed: Database.Statement;
    missing: Database.Statement;
  };

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = OFF');
    this.db.pragma('synchronous = OFF');
    this.db.exec(`
CREATE TABLE IF NOT EXISTS billed (key TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS billed_key ON billed (key, idx);
CREATE TABLE IF NOT EXISTS billed_imvus (period TEXT NOT NULL, imvu TEXT NOT NULL, PRIMARY KEY (period, imvu));
CREATE TABLE IF NOT EXISTS listed (period TEXT NOT NULL, imvu TEXT NOT NULL, PRIMARY KEY (period, imvu));
CREATE TABLE IF NOT EXISTS books (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);`);
    // A snapshot's statements.db brings the price books seen before it.
    for (const r of this.db.prepare('SELECT data FROM books ORDER BY idx').all() as { data: Buffer }[]) this.books.push(decodeEntry(r.data));
    this.st = {
      bill: this.db.prepare('INSERT INTO billed (key, idx, data) VALUES (?, ?, ?)'),
      billedImvu: this.db.prepare('INSERT OR IGNORE INTO billed_imvus (period, imvu) VALUES (?, ?)'),
      own: this.db.prepare('SELECT data FROM billed WHERE key = ? ORDER BY idx'),
      listed: this.db.prepare('INSERT OR IGNORE INTO listed (period, imvu) VALUES (?, ?)'),
      // In the order the IMVUs were first billed in the period.
      missing: this.db.prepare('SELECT imvu FROM billed_imvus b WHERE period = ? AND NOT EXISTS (SELECT 1 FROM listed l WHERE l.period = b.period AND l.imvu = b.imvu) ORDER BY rowid'),
    };
  }

  feed(e: LedgerEntry, data?: Buffer): void {
    if (!e.decision?.allowed) return;
    const c = e.command?.command;
    const b = (c?.body ?? {}) as Record<string, unknown>;
    try {
      if (c.type === 'pricebook.publish') {
        this.books.push(e);
        this.db.prepare('INSERT OR REPLACE INTO books (idx, data) VALUES (?, ?)').run(e.index, data ?? encodeEntry(e));
      }
      else if (c.type === 'usage.report' || c.type === 'revenue.record') {
        const when = c.type === 'usage.report' ? (b.period as { start: string }).start : String(b.at ?? c.ts);
        const period = periodOfInstant(when);
        this.st.bill.run(`${period} ${String(b.imvu)}`, e.index, data ?? encodeEntry(e));
        this.st.billedImvu.run(period, String(b.imvu));
      } else if (c.type === 'period.close') {
        const close = PeriodCloseBody.parse(b);
        for (const sealed of close.statements) {
          this.st.listed.run(close.period, sealed.imvu);
          const own = (this.st.own.all(`${close.period} ${sealed.imvu}`) as { data: Buffer }[]).map((r) => decodeEntry(r.data));
          const diff = sealedDifference(sealed, sealedTotals(statement([...this.books, ...own], sealed.imvu, close.period)));
          if (diff) this.problems.push({ kind: 'statement', index: e.index, message: `entry ${e.index} seals ${sealed.imvu} ${close.period}, but ${diff}` });
        }
        if (close.complete)
          for (const { imvu } of this.st.missing.all(close.period) as { imvu: string }[])
            this.problems.push({ kind: 'statement', index: e.index, message: `entry ${e.index} closes ${close.period} without ${imvu}, which has usage or revenue in it` });
      }
    } catch (err) {
      this.problems.push({ kind: 'statement', index: e.index, message: `entry ${e.index} (${c?.type}): ${(err as Error).message}` });
    }
  }

  close(): void {
    this.db.close();
  }
}

/**
 * Recomputes, with statement() over the entries themselves, every statement an allowed
 * `period.close` sealed, and checks that a complete close listed every IMVU billed in its period.
 */
export function sealedStatementProblems(entries: readonly LedgerEntry[]): Problem[] {
  const s = new SealedStatements(':memory:');
  try {
    for (const e of entries) s.feed(e);
    return s.problems;
  } finally {
    s.close();
  }
}

function show(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('hex') : JSON.stringify(v);
}

/** The rows of a projection table in key order, a page at a time (keyset paging on the primary key). */
async function* tableRows(store: Store, table: string, keyCols: string[]): AsyncGenerator<Row> {
  const order = keyCols.join(', ');
  let after: SqlValue[] | undefined;
  for (;;) {
    const rows = after
      ? await store.all<Row>(`SELECT * FROM ${table} WHERE (${order}) > (${keyCols.map(() => '?').join(', ')}) ORDER BY ${order} LIMIT ?`, [...after, PAGE])
      : await store.all<Row>(`SELECT * FROM ${table} ORDER BY ${order} LIMIT ?`, [PAGE]);
    for (const r of rows) yield r;
    if (rows.length < PAGE) return;
    const last = rows[rows.length - 1]!;
    after = keyCols.map((k) => last[k] as SqlValue);
    // A NULL key (planted: SQLite lets a composite primary key hold NULL) sorts first and cannot be paged past.
    if (after.some((v) => v === null)) return;
  }
}

async function compareProjections(stored: Store, replayed: Store): Promise<string | undefined> {
  for (const [table, { key }] of Object.entries(PROJECTION_TABLES)) {
    const keyCols = key.split(',').map((k) => k.trim());
    const keyOf = (r: Row) => keyCols.map((k) => `${k}=${String(r[k])}`).join(', ');
    const as = tableRows(stored, table, keyCols);
    const bs = tableRows(replayed, table, keyCols);
    for (;;) {
      const [na, nb] = [await as.next(), await bs.next()];
      if (na.done && nb.done) break;
      const x = na.done ? undefined : na.value;
      const y = nb.done ? undefined : nb.value;
      if (!x) return `projection ${table}: row ${keyOf(y!)} is missing from the stored state`;
      if (!y) return `projection ${table}: stored row ${keyOf(x)} does not follow from the ledger`;
      if (keyOf(x) !== keyOf(y)) return `projection ${table}: stored row ${keyOf(x)} where the ledger gives ${keyOf(y)}`;
      for (const col of Object.keys(y)) {
        if (show(x[col]) !== show(y[col]))
          return `projection ${table}, row ${keyOf(y)}: ${col} is ${show(x[col])} but the ledger gives ${show(y[col])} (last set by entry ${String(y.entry ?? '?')})`;
      }
    }
  }
  return undefined;
}

/** Column positions of each projection table's primary key, in its row encoding (store/digest.ts). */
const KEY_INDEXES: Record<string, number[]> = Object.fromEntries(
  Object.entries(PROJECTION_TABLES).map(([t, { key }]) => [t, key.split(',').map((k) => PROJECTION_COLUMNS[t]!.indexOf(k.trim()))]),
);

/** The values of a row encoded by SQLite's quote() joined with ',' (store/digest.ts rowExpression). */
export function quotedValues(row: string): SqlValue[] {
  const out: SqlValue[] = [];
  let i = 0;
  for (;;) {
    if (row.startsWith('NULL', i)) {
      out.push(null);
      i += 4;
    } else if (row[i] === "'") {
      let text = '';
      let j = i + 1;
      for (;;) {
        const k = row.indexOf("'", j);
        if (k < 0) throw new Error('unterminated text in a row encoding');
        if (row[k + 1] === "'") {
          text += row.slice(j, k + 1);
          j = k + 2;
        } else {
          text += row.slice(j, k);
          i = k + 1;
          break;
        }
      }
      out.push(text);
    } else if (row.startsWith("X'", i)) {
      const k = row.indexOf("'", i + 2);
      if (k < 0) throw new Error('unterminated blob in a row encoding');
      out.push(Buffer.from(row.slice(i + 2, k), 'hex'));
      i = k + 1;
    } else {
      const k = row.indexOf(',', i);
      const t = row.slice(i, k < 0 ? row.length : k);
      if (!/^-?\d+$/.test(t) && !Number.isFinite(Number(t))) throw new Error(`not a number in a row encoding: ${t.slice(0, 40)}`);
      out.push(/^-?\d+$/.test(t) && !Number.isSafeInteger(Number(t)) ? BigInt(t) : Number(t));
      i += t.length;
    }
    if (i >= row.length) return out;
    if (row[i] !== ',') throw new Error('malformed row encoding');
    i++;
  }
}

/** Compares the stored and replayed rows of the keys the replay touched; the first difference, as compareProjections words it. */
async function compareTouched(stored: Store, replayed: Store, touched: Map<string, Map<string, SqlValue[]>>): Promise<{ rows: number; diff?: string }> {
  let rows = 0;
  for (const [table, { key }] of Object.entries(PROJECTION_TABLES)) {
    const keys = touched.get(table);
    if (!keys) continue;
    const keyCols = key.split(',').map((k) => k.trim());
    const where = keyCols.map((k) => `${k} IS ?`).join(' AND ');
    const keyOf = (v: SqlValue[]) => keyCols.map((k, i) => `${k}=${String(v[i])}`).join(', ');
    for (const k of keys.values()) {
      rows++;
      const x = await stored.get(`SELECT * FROM ${table} WHERE ${where}`, k);
      const y = await replayed.get(`SELECT * FROM ${table} WHERE ${where}`, k);
      if (!x && !y) continue;
      if (!x) return { rows, diff: `projection ${table}: row ${keyOf(k)} is missing from the stored state` };
      if (!y) return { rows, diff: `projection ${table}: stored row ${keyOf(k)} does not follow from the ledger` };
      for (const col of Object.keys(y))
        if (show(x[col]) !== show(y[col]))
          return { rows, diff: `projection ${table}, row ${keyOf(k)}: ${col} is ${show(x[col])} but the ledger gives ${show(y[col])} (last set by entry ${String(y.entry ?? '?')})` };
    }
  }
  return { rows };
}

/** Why the log does not bind a snapshot of tree size `size` and state digest `digest` (undefined: it does). */
async function signedSnapshotAt(store: Store, size: number, digest: string): Promise<string | undefined> {
  const row = await store.get<{ data: Buffer }>('SELECT data FROM ledger_entries WHERE idx = ?', [size]);
  if (!row) return `the log has no entry ${size}`;
  let e: LedgerEntry;
  try {
    e = decodeEntry(row.data);
  } catch (err) {
    return `entry ${size} is malformed (${(err as Error).message})`;
  }
  const c = e.command?.command;
  if (e.index !== size || c?.type !== 'ledger.snapshot' || !e.decision?.allowed) return `entry ${size} is not an allowed ledger.snapshot`;
  const b = c.body as { size?: unknown; digest?: unknown };
  if (b.size !== size || b.digest !== digest) return `the ledger.snapshot at entry ${size} records another state digest (${String(b.digest).slice(0, 16)}…, the snapshot's is ${digest.slice(0, 16)}…)`;
  return undefined;
}

/** The index of the newest allowed ledger.snapshot entry below `size` (default: all), read back from the end of the log. */
export async function newestSnapshotEntry(store: Store, size?: number): Promise<number | undefined> {
  let below = size ?? Number((await store.get<{ n: number | null }>('SELECT MAX(idx) AS n FROM ledger_entries'))?.n ?? -1) + 1;
  while (below > 0) {
    const rows = await store.all<{ idx: number; data: Buffer }>('SELECT idx, data FROM ledger_entries WHERE idx < ? ORDER BY idx DESC LIMIT ?', [below, CHUNK]);
    if (!rows.length) return undefined;
    for (const r of rows) {
      try {
        const e = decodeEntry(r.data);
        if (e.command?.command?.type === 'ledger.snapshot' && e.decision?.allowed && e.index === Number(r.idx)) return e.index;
      } catch {
        // a malformed entry is the pass's to report
      }
    }
    below = Number(rows[rows.length - 1]!.idx);
  }
  return undefined;
}
