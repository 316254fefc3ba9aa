import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { canonicalJson } from '../ledger/canonical.ts';
import { MemoryTree, consistencyProof, rootHash, subtreeHash, verifyConsistency } from '../ledger/merkle.ts';
import { openNote, parseCheckpoint } from '../ledger/checkpoint.ts';
import { CHECKPOINT_FILE, parseCheckpointFile, readCheckpointFile } from '../ledger/checkpoint-file.ts';
import { decodeEntry } from '../ledger/ledger.ts';
import { DIGEST_TABLES, DigestTracker, combinedDigest, digestHex, scanAll } from '../store/digest.ts';
import { DB_FILE, PROJECTION_TABLES, SqliteStore, type Row, type Store, type WriteTx } from '../store/index.ts';
import type { LedgerEntry } from '../types.ts';
import { periodOfInstant, statement } from '../handshake/index.ts';
import { PeriodCloseBody, sealedDifference, sealedTotals } from '../handshake/close.ts';
import { replayEntry } from './chokepoint.ts';

export type ProblemKind = 'missing-entry' | 'malformed-entry' | 'checkpoint' | 'checkpoint-file' | 'consistency' | 'gate-violation' | 'projection' | 'time' | 'statement';

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
}

/** At most this many problems of one kind are listed one by one; the rest are counted. */
const MAX_LISTED = 20;

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

export async function verifyStore(store: Store, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const problems: Problem[] = [];
  const rows = await store.all<{ idx: number; data: Buffer }>('SELECT idx, data FROM ledger_entries ORDER BY idx');
  const tree = new MemoryTree();
  const entries: LedgerEntry[] = [];
  for (const row of rows) {
    if (row.idx !== entries.length) {
      problems.push({ kind: 'missing-entry', index: entries.length, message: `entry ${entries.length} is missing (next stored entry is ${row.idx})` });
      break;
    }
    let e: LedgerEntry;
    try {
      e = decodeEntry(row.data);
      if (e.index !== row.idx) throw new Error(`says it is entry ${e.index}`);
    } catch (err) {
      problems.push({ kind: 'malformed-entry', index: row.idx, message: `entry ${row.idx} is malformed: ${(err as Error).message}` });
      break;
    }
    entries.push(e);
    tree.append(row.data);
  }
  const size = entries.length;
  const root = size ? tree.root() : subtreeHash(tree, 0, 0);
  let checkpoints = 0;
  let checkpointFile: number | null = null;
  const report = (): VerifyReport => ({ ok: problems.length === 0, size, root: root.toString('hex'), checkpointSize: latest?.size ?? null, checkpoints, checkpointFile, problems });

  // The platform key comes from the genesis entry; it must have signed every checkpoint (gate 17),
  // and every command's own signature is checked again by the replay (gate 1).
  const genesis = entries[0];
  const latest = await store.latestCheckpoint();
  if (!genesis || genesis.command?.command?.type !== 'platform.genesis') {
    problems.push({ kind: 'malformed-entry', index: 0, message: 'entry 0 is not the platform genesis' });
    return report();
  }
  const rawKey = Buffer.from(String(genesis.command.command.body.publicKey), 'base64');
  const origin = String(genesis.command.command.body.origin);

  const checkNote = (note: string, what: string): { size: number; rootHash: Buffer } | undefined => {
    try {
      const opened = openNote(note, [{ name: origin, publicKeyRaw: rawKey }]);
      return parseCheckpoint(opened.text);
    } catch (err) {
      problems.push({ kind: 'checkpoint', message: `${what}: ${(err as Error).message}` });
      return undefined;
    }
  };
  const consistent = (cp: { size: number; rootHash: Buffer }, what: string, kind: ProblemKind) => {
    if (cp.size > size) {
      problems.push({ kind, message: `${what} covers ${cp.size} entries but the log has only ${size}: entries were removed` });
      return;
    }
    let ok = false;
    try {
      ok = verifyConsistency(cp.size, size, cp.rootHash, root, consistencyProof(tree, cp.size, size));
    } catch {
      ok = false;
    }
    if (!ok)
      problems.push({ kind, message: `${what} (tree size ${cp.size}) is not a prefix of the log (tree size ${size}): history was rewritten` });
  };
  if (latest) {
    const cp = checkNote(latest.note, `stored checkpoint ${latest.size}`);
    if (cp) consistent(cp, `the platform's latest signed checkpoint`, 'checkpoint');
  }
  // Every other stored checkpoint too: each must be signed by the platform key, be of this log, and
  // have the root of the recomputed tree at its size.
  const stored = await store.all<{ size: number; note: string }>('SELECT size, note FROM ledger_checkpoints ORDER BY size');
  checkpoints = stored.length;
  let bad = 0;
  for (const row of stored) {
    if (latest && Number(row.size) === latest.size) continue;
    const what = `stored checkpoint at tree size ${row.size}`;
    const before = problems.length;
    const cp = checkNote(String(row.note), what);
    if (cp) {
      if (cp.size !== Number(row.size)) problems.push({ kind: 'checkpoint', message: `${what} says tree size ${cp.size}` });
      else if (cp.size > size) problems.push({ kind: 'checkpoint', message: `${what} covers ${cp.size} entries but the log has only ${size}: entries were removed` });
      else if (!rootHash(tree, cp.size).equals(cp.rootHash))
        problems.push({ kind: 'checkpoint', message: `${what} is signed by the platform key but contradicts the log (its root is not that of the first ${cp.size} entries): history was rewritten` });
    }
    if (problems.length > before && ++bad > MAX_LISTED) problems.pop();
  }
  if (bad > MAX_LISTED) problems.push({ kind: 'checkpoint', message: `${bad - MAX_LISTED} more stored checkpoints do not hold` });

  // The newest checkpoint kept outside the database (written after every commit).
  let fileDigests: Map<string, { rows: number; sum: string }> | undefined;
  if (opts.checkpointFile !== undefined) {
    const recordedAny = await store.get('SELECT 1 AS x FROM projection_digests LIMIT 1');
    if (opts.checkpointFile === null) {
      if (recordedAny) problems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} is missing, but the database was written with it` });
    } else {
      try {
        const f = parseCheckpointFile(opts.checkpointFile, origin, rawKey);
        checkpointFile = f.size;
        if (f.size > size) problems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} covers ${f.size} entries but the log has only ${size}: acknowledged entries were lost` });
        else if (!rootHash(tree, f.size).equals(f.rootHash))
          problems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} (tree size ${f.size}) contradicts the log: its root is not the root of the first ${f.size} entries` });
        else if (f.size === size) fileDigests = f.digests;
      } catch (err) {
        problems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE} does not verify: ${(err as Error).message}` });
      }
    }
  }
  // The projection digests recorded with checkpoints, checked against the replay at each size.
  const recordedDigests = new Map(
    (await store.all<{ size: number; digest: string }>('SELECT size, digest FROM projection_digests ORDER BY size')).map((r) => [Number(r.size), String(r.digest)]),
  );
  let badDigests = 0;
  for (const s of recordedDigests.keys())
    if (s > size && ++badDigests <= MAX_LISTED) problems.push({ kind: 'projection', message: `a projection digest is recorded for tree size ${s}, but the log has only ${size} entries` });
  if (opts.savedCheckpoint) {
    const cp = checkNote(opts.savedCheckpoint, 'saved checkpoint');
    if (cp) consistent(cp, 'the saved checkpoint', 'consistency');
  }

  // Replay through the same gates into fresh projections, and compare them with the stored ones.
  const fresh = new SqliteStore(':memory:');
  const tracker = new DigestTracker(await scanAll(fresh));
  try {
    const replayed = await replayEntries(entries, fresh, async (tx, e) => {
      const expected = recordedDigests.get(e.index + 1);
      if (expected !== undefined || (e.index + 1) % 5000 === 0) {
        const ds = await tracker.seal(tx);
        if (expected !== undefined && expected !== combinedDigest(ds) && ++badDigests <= MAX_LISTED)
          problems.push({ kind: 'projection', index: e.index, message: `the projection digest recorded at tree size ${e.index + 1} is not the digest of the replay at that size` });
      }
    });
    problems.push(...replayed);
    if (badDigests > MAX_LISTED) problems.push({ kind: 'projection', message: `${badDigests - MAX_LISTED} more recorded projection digests do not hold` });
    if (!problems.some((p) => p.kind === 'gate-violation')) {
      const diff = await compareProjections(store, fresh);
      if (diff) problems.push({ kind: 'projection', message: diff });
      if (fileDigests) {
        const now = await scanAll(fresh);
        const off = DIGEST_TABLES.filter((t) => fileDigests!.get(t)?.rows !== now.get(t)!.rows || fileDigests!.get(t)?.sum !== digestHex(now.get(t)!));
        if (off.length) problems.push({ kind: 'checkpoint-file', message: `${CHECKPOINT_FILE}: the projection digests of ${off.join(', ')} are not those of the replay` });
      }
    }
  } finally {
    await fresh.close();
  }
  return report();
}

/**
 * What every verifier checks of the entries themselves (offline here, online in `nexus audit
 * verify`): entry times never go back (every time rule of the gates is judged against them), every
 * recorded decision is the one the gates reach on replay into `into` (a fresh store), and every
 * statement a period.close sealed is the one statement() computes from the entries.
 */
export async function replayEntries(entries: readonly LedgerEntry[], into?: Store, afterEntry?: (tx: WriteTx, e: LedgerEntry) => Promise<void>): Promise<Problem[]> {
  const problems: Problem[] = [...timeProblems(entries)];
  const fresh = into ?? new SqliteStore(':memory:');
  try {
    await fresh.transaction(async (tx) => {
      for (const e of entries) {
        let decision;
        try {
          decision = await replayEntry(tx, e);
        } catch (err) {
          problems.push({ kind: 'gate-violation', index: e.index, message: `entry ${e.index} cannot be replayed: ${(err as Error).message}` });
          return;
        }
        await afterEntry?.(tx, e);
        if (canonicalJson(decision) !== canonicalJson(e.decision)) {
          const firstDeny = decision.gates.find((g) => g.status === 'deny');
          const recorded = e.decision.allowed ? 'allowed' : 'denied';
          const now = decision.allowed ? 'allowed' : `denied (gate ${firstDeny?.gate}: ${firstDeny?.reason})`;
          problems.push({
            kind: 'gate-violation',
            index: e.index,
            message: `entry ${e.index} (${e.command?.command?.type ?? 'unknown'}): recorded as ${recorded}, but the gates say ${now}`,
          });
          return;
        }
      }
    });
  } finally {
    if (!into) await fresh.close();
  }
  if (!problems.some((p) => p.kind === 'gate-violation')) problems.push(...sealedStatementProblems(entries));
  return problems;
}

/** The first entry whose time is not a valid instant or is earlier than the entry before it. */
export function timeProblems(entries: readonly LedgerEntry[]): Problem[] {
  let prev: { ms: number; at: string } | undefined;
  for (const e of entries) {
    let ms: number;
    try {
      periodOfInstant(e.at, `entry ${e.index} time`);
      ms = Date.parse(e.at);
    } catch (err) {
      return [{ kind: 'time', index: e.index, message: (err as Error).message }];
    }
    if (prev && ms < prev.ms)
      return [{ kind: 'time', index: e.index, message: `entry ${e.index} is dated ${e.at}, before the entry preceding it (${prev.at}): entry times never go back` }];
    prev = { ms, at: e.at };
  }
  return [];
}

/**
 * Recomputes, with statement() over the entries themselves, every statement an allowed
 * `period.close` sealed, and checks that a complete close listed every IMVU billed in its period.
 * One pass: usage and revenue are grouped by IMVU and period as they come, and a close can only
 * follow everything that is billed in its period.
 */
export function sealedStatementProblems(entries: readonly LedgerEntry[]): Problem[] {
  const problems: Problem[] = [];
  const books: LedgerEntry[] = [];
  const byKey = new Map<string, LedgerEntry[]>();
  const billed = new Map<string, Set<string>>();
  const listed = new Map<string, Set<string>>();
  const add = <V>(m: Map<string, Set<V>>, k: string, v: V) => m.set(k, (m.get(k) ?? new Set<V>()).add(v));
  for (const e of entries) {
    if (!e.decision?.allowed) continue;
    const c = e.command?.command;
    const b = (c?.body ?? {}) as Record<string, unknown>;
    try {
      if (c.type === 'pricebook.publish') books.push(e);
      else if (c.type === 'usage.report' || c.type === 'revenue.record') {
        const when = c.type === 'usage.report' ? (b.period as { start: string }).start : String(b.at ?? c.ts);
        const key = `${periodOfInstant(when)} ${String(b.imvu)}`;
        const list = byKey.get(key);
        if (list) list.push(e);
        else byKey.set(key, [e]);
        add(billed, periodOfInstant(when), String(b.imvu));
      } else if (c.type === 'period.close') {
        const close = PeriodCloseBody.parse(b);
        for (const sealed of close.statements) {
          add(listed, close.period, sealed.imvu);
          const own = byKey.get(`${close.period} ${sealed.imvu}`) ?? [];
          const diff = sealedDifference(sealed, sealedTotals(statement([...books, ...own], sealed.imvu, close.period)));
          if (diff) problems.push({ kind: 'statement', index: e.index, message: `entry ${e.index} seals ${sealed.imvu} ${close.period}, but ${diff}` });
        }
        if (close.complete)
          for (const imvu of billed.get(close.period) ?? [])
            if (!listed.get(close.period)?.has(imvu))
              problems.push({ kind: 'statement', index: e.index, message: `entry ${e.index} closes ${close.period} without ${imvu}, which has usage or revenue in it` });
      }
    } catch (err) {
      problems.push({ kind: 'statement', index: e.index, message: `entry ${e.index} (${c?.type}): ${(err as Error).message}` });
    }
  }
  return problems;
}

function show(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString('hex') : JSON.stringify(v);
}

async function compareProjections(stored: Store, replayed: Store): Promise<string | undefined> {
  for (const [table, { key }] of Object.entries(PROJECTION_TABLES)) {
    const a = await stored.all<Row>(`SELECT * FROM ${table} ORDER BY ${key}`);
    const b = await replayed.all<Row>(`SELECT * FROM ${table} ORDER BY ${key}`);
    const keyCols = key.split(',').map((k) => k.trim());
    const keyOf = (r: Row) => keyCols.map((k) => `${k}=${String(r[k])}`).join(', ');
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const x = a[i];
      const y = b[i];
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
