// Statements from the projection's running totals: per IMVU and period, the summed quantity of each
// metric (`usage_totals`), the summed revenue (`revenue_totals`), the entries that contributed
// (`billing_entries`) and the price books (`price_books`), all kept by the projection writer and
// checked by replay like every projection. A statement costs a few indexed reads, never a scan of
// the ledger; statement() over the entries themselves gives the same result (totals.test.ts).
import type { SqlReader } from '../store/index.ts';
import { sealedTotals, type SealedTotals } from './close.ts';
import { assertPeriod } from './period.ts';
import { parsePriceBook, type PriceBook } from './pricebook.ts';
import { priceStatement, type Statement } from './statement.ts';

export interface BookRow {
  entry: number;
  version: number;
  currency: string;
  effective_from: string;
  /** The published body, canonical JSON. */
  body: string;
  [k: string]: string | number;
}

/** The price book in force for `period`: the greatest effectiveFrom <= period, the later entry on a tie (as priceInForce()). */
export async function bookInForce(db: SqlReader, period: string): Promise<{ entry: number; book: PriceBook } | undefined> {
  assertPeriod(period);
  const row = await db.get<BookRow>('SELECT * FROM price_books WHERE effective_from <= ? ORDER BY effective_from DESC, entry DESC LIMIT 1', [period]);
  if (!row) return undefined;
  return { entry: row.entry, book: parsedBook(row) };
}

/**
 * Parsed price books by entry and body: every usage report and revenue record asks for the book in
 * force, and parsing it (zod, BigInts) cost more than the read. The key is the stored row itself,
 * so a row that changed is parsed again; a book that does not parse is never kept.
 */
const parsedBooks = new Map<string, PriceBook>();

function parsedBook(row: BookRow): PriceBook {
  const key = `${row.entry}\n${row.body}`;
  let book = parsedBooks.get(key);
  if (!book) {
    book = parsePriceBook(JSON.parse(row.body), `price book in ledger entry #${row.entry}`);
    if (parsedBooks.size >= 64) parsedBooks.clear();
    parsedBooks.set(key, book);
  }
  return book;
}

/** The statement of `imvu` for `period`, from the running totals. */
export async function statementFromTotals(db: SqlReader, imvu: string, period: string): Promise<Statement> {
  const found = await bookInForce(db, period);
  const usage = await db.all<{ metric: string; quantity: string }>('SELECT metric, quantity FROM usage_totals WHERE imvu = ? AND period = ? ORDER BY metric', [imvu, period]);
  const revenue = await db.all<{ currency: string; amount: string; first_entry: number }>(
    'SELECT currency, amount, first_entry FROM revenue_totals WHERE imvu = ? AND period = ?',
    [imvu, period],
  );
  const entries = await db.all<{ entry: number; kind: string }>('SELECT entry, kind FROM billing_entries WHERE imvu = ? AND period = ? ORDER BY entry', [imvu, period]);
  return priceStatement({
    imvu,
    period,
    book: found?.book,
    bookIndex: found?.entry,
    quantities: new Map(usage.map((u) => [u.metric, BigInt(u.quantity)])),
    metricEntries: new Map(),
    usageIndices: entries.filter((e) => e.kind === 'usage').map((e) => e.entry),
    revenues: revenue.map((r) => ({ index: r.first_entry, amount: BigInt(r.amount), currency: r.currency })),
    used: new Set(entries.map((e) => e.entry)),
  });
}

/** IMVUs with any usage or revenue in `period`, ascending, after `after` (exclusive) if given. */
export async function billedImvus(db: SqlReader, period: string, after = ''): Promise<string[]> {
  const rows = await db.all<{ imvu: string }>(
    'SELECT DISTINCT imvu FROM billing_entries WHERE period = ? AND imvu > ? ORDER BY imvu',
    [period, after],
  );
  return rows.map((r) => r.imvu);
}

export interface CloseRow {
  period: string;
  /** 'closing' while entries of a multi-entry close are still to come, then 'closed'. */
  status: string;
  /** The last IMVU listed so far. */
  last_imvu: string;
  entry: number;
  [k: string]: string | number;
}

export async function closeOf(db: SqlReader, period: string): Promise<CloseRow | undefined> {
  return db.get<CloseRow>('SELECT * FROM period_closes WHERE period = ?', [period]);
}

/** The sealed totals of `imvu` for a closed `period`, with the entry that sealed them; undefined if the period is not closed. */
export async function sealedStatement(db: SqlReader, imvu: string, period: string): Promise<{ closedBy: number; totals: SealedTotals | undefined } | undefined> {
  const close = await closeOf(db, period);
  if (!close || close.status !== 'closed') return undefined;
  const row = await db.get<SealedTotals & { entry: number }>(
    'SELECT imvu, currency, usage_total AS usageTotal, revenue_total AS revenueTotal, total, creator, platform, entry FROM period_statements WHERE period = ? AND imvu = ?',
    [period, imvu],
  );
  if (!row) return { closedBy: close.entry, totals: undefined };
  const { entry, ...totals } = row;
  return { closedBy: entry, totals };
}

/** What the next `period.close` entries for `period` must list, from the totals: at most `max` IMVUs after the cursor. */
export async function closeChunk(db: SqlReader, period: string, max: number): Promise<{ statements: SealedTotals[]; complete: boolean }> {
  const close = await closeOf(db, period);
  const pending = await billedImvus(db, period, close?.last_imvu ?? '');
  const next = pending.slice(0, max);
  const statements: SealedTotals[] = [];
  for (const imvu of next) statements.push(sealedTotals(await statementFromTotals(db, imvu, period)));
  return { statements, complete: next.length === pending.length };
}
