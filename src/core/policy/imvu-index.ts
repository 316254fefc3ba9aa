// The per-IMVU index of the log (projection table `imvu_entries`): which entries are about which
// IMVU, written in the same transaction as the entry, so that a creator's view (its entries in
// `nexus audit log --imvu`, GET /v1/ledger/entries?imvu=) reads the IMVU's own history through the
// (imvu, entry) primary key and costs the size of that history, not of the log. It is a projection
// like any other: the verifier replays it and compares it, and its digest is recorded.
//
// An entry is about an IMVU when its body's `imvu` is that IMVU, when its body names a zone of
// that IMVU (before or after the entry applies: a removed zone's last entry counts), or when it
// created the IMVU. An entry about the whole platform that rewrites every IMVU's zone
// (`platform.zone`) is indexed once under PLATFORM_WIDE and read with every IMVU created before it.
import type { SqlReader, WriteTx } from '../store/index.ts';
import type { LedgerEntry } from '../types.ts';

export const PLATFORM_WIDE = '*';

/** The recorded command's body (empty for an entry stored without it). */
function bodyOf(e: Pick<LedgerEntry, 'command' | 'elided'>): Record<string, unknown> {
  if (e.elided) return {};
  const b = (e.command as { command?: { body?: unknown } } | undefined)?.command?.body;
  return typeof b === 'object' && b !== null && !Array.isArray(b) ? (b as Record<string, unknown>) : {};
}

/** The owner of the zone the body names, as the state is now (before the entry applies). */
export async function zoneOwnerBefore(db: SqlReader, e: Pick<LedgerEntry, 'command' | 'elided'>): Promise<string | undefined> {
  const zone = bodyOf(e).zone;
  if (typeof zone !== 'string') return undefined;
  return (await db.get<{ imvu: string }>('SELECT imvu FROM zones WHERE name = ?', [zone.toLowerCase()]))?.imvu;
}

/**
 * Records the IMVUs entry `e` (as it is recorded) is about; called after the entry's own effect is
 * applied, with the zone owner read before it applied.
 */
export async function indexEntry(tx: WriteTx, e: LedgerEntry, ownerBefore: string | undefined): Promise<void> {
  const about = new Set<string>();
  const b = bodyOf(e);
  const type = (e.command as { command?: { type?: unknown } } | undefined)?.command?.type;
  if (typeof b.imvu === 'string') about.add(b.imvu);
  if (ownerBefore) about.add(ownerBefore);
  if (typeof b.zone === 'string') {
    const now = await tx.get<{ imvu: string }>('SELECT imvu FROM zones WHERE name = ?', [b.zone.toLowerCase()]);
    if (now) about.add(now.imvu);
  }
  if (e.decision?.allowed) for (const r of await tx.all<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [e.index])) about.add(r.id);
  if (type === 'platform.zone') about.add(PLATFORM_WIDE);
  for (const imvu of about) await tx.run('INSERT OR IGNORE INTO imvu_entries (imvu, entry) VALUES (?, ?)', [imvu, e.index]);
}

/**
 * Indexes of the entries about `imvu` in [from, to), at most `limit`: the newest (in descending
 * order) or the oldest (ascending). One range read of the (imvu, entry) key, plus the
 * platform-wide entries after the IMVU was created.
 */
export async function entriesAbout(db: SqlReader, imvu: string, from: number, to: number, limit: number, which: 'newest' | 'oldest'): Promise<number[]> {
  const dir = which === 'newest' ? 'DESC' : 'ASC';
  const range = 'entry >= ? AND entry < ?';
  const own = await db.all<{ entry: number }>(`SELECT entry FROM imvu_entries WHERE imvu = ? AND ${range} ORDER BY entry ${dir} LIMIT ?`, [imvu, from, to, limit]);
  const created = await db.get<{ entry: number }>('SELECT entry FROM imvus WHERE id = ?', [imvu]);
  const wide = created
    ? await db.all<{ entry: number }>(`SELECT entry FROM imvu_entries WHERE imvu = ? AND entry > ? AND ${range} ORDER BY entry ${dir} LIMIT ?`, [PLATFORM_WIDE, created.entry, from, to, limit])
    : [];
  const all = [...new Set([...own, ...wide].map((r) => Number(r.entry)))];
  return all.sort((a, b) => (which === 'newest' ? b - a : a - b)).slice(0, limit);
}

/** The stored bytes of the entries at these indexes, in index order (a primary-key lookup each). */
export async function readEntriesAt(db: SqlReader, indexes: readonly number[]): Promise<{ idx: number; data: Buffer }[]> {
  const out: { idx: number; data: Buffer }[] = [];
  for (const i of [...indexes].sort((a, b) => a - b)) {
    const row = await db.get<{ idx: number; data: Buffer }>('SELECT idx, data FROM ledger_entries WHERE idx = ?', [i]);
    if (row) out.push({ idx: Number(row.idx), data: row.data });
  }
  return out;
}
