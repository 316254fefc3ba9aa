// Period statements: a pure function from ledger entries to what an IMVU owes/earned in a month and
// how the total splits 55/45. Same entries in (in any order) -> same statement out.

import { z } from 'zod';
import type { LedgerEntry } from '../types.ts';
import { assertPeriod, instantMillis, periodOfInstant } from './period.ts';
import { Currency, MetricName, formatIssues, parsePriceBook, priceInForce, type PriceBook } from './pricebook.ts';
import { MAX_AMOUNT_DIGITS, parseAmount, split } from './split.ts';

/** Currency reported for a statement with neither a price book in force nor any revenue. */
export const DEFAULT_CURRENCY = 'USD';

export interface StatementLine {
  metric: string;
  /** Total quantity of the metric over the period (sum of all usage reports). */
  quantity: bigint;
  /** Price: `amount` minor units per `per` units, from the price book in force. */
  amount: bigint;
  per: bigint;
  /** ceil(quantity * amount / per), in minor units. */
  charge: bigint;
}

export interface Statement {
  imvu: string;
  period: string;
  currency: string;
  priceBookVersion: number | null;
  lines: StatementLine[];
  /** Charges summed by metric prefix (the part before the first dot): compute, dns, mail, network, ... */
  categories: Record<string, bigint>;
  usageTotal: bigint;
  revenueTotal: bigint;
  total: bigint;
  creator: bigint;
  platform: bigint;
  /** Ledger indices that contributed to this statement (ascending), including the price book's. */
  entries: number[];
}

export interface StatementJson {
  imvu: string;
  period: string;
  currency: string;
  priceBookVersion: number | null;
  lines: { metric: string; quantity: string; amount: string; per: string; charge: string }[];
  categories: Record<string, string>;
  usageTotal: string;
  revenueTotal: string;
  total: string;
  creator: string;
  platform: string;
  entries: number[];
}

const Digits = z
  .string({ error: 'must be a string of decimal digits' })
  .regex(/^[0-9]+$/, 'must be a string of decimal digits only (no sign, decimal point, exponent or spaces)')
  .max(MAX_AMOUNT_DIGITS, `must have at most ${MAX_AMOUNT_DIGITS} digits`);

const Instant = z.string({ error: 'must be an ISO-8601 instant string' }).superRefine((s, ctx) => {
  try {
    periodOfInstant(s, 'instant');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
  }
});

export const UsageReportBody = z.object({
  imvu: z.string().min(1, 'imvu must not be empty'),
  service: z.string().min(1, 'service must not be empty'),
  period: z
    .object({ start: Instant, end: Instant })
    .refine((p) => {
      try {
        return instantMillis(p.end) >= instantMillis(p.start);
      } catch {
        return true; // the malformed instant is already reported by its own schema
      }
    }, 'period.end must not be before period.start'),
  metrics: z.record(MetricName, Digits),
});
export type UsageReportBody = z.infer<typeof UsageReportBody>;

export const RevenueRecordBody = z.object({
  imvu: z.string().min(1, 'imvu must not be empty'),
  amount: Digits,
  currency: Currency,
  memo: z.string().optional(),
  at: Instant.optional(),
});
export type RevenueRecordBody = z.infer<typeof RevenueRecordBody>;

function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  return (numerator + denominator - 1n) / denominator; // both non-negative, denominator >= 1
}

function categoryOf(metric: string): string {
  const dot = metric.indexOf('.');
  return dot === -1 ? metric : metric.slice(0, dot);
}

/** Code-unit order, independent of locale, so output is byte-identical everywhere. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The statement of `imvu` for `period` ('YYYY-MM', UTC). Only allowed entries count. Usage belongs to
 * the month of its `period.start`; revenue to the month of its `at`, else of the command's `ts`.
 * Throws (never prices at zero) on usage without a price book, a metric without a price, a currency
 * mismatch, or a malformed usage/revenue entry of this IMVU.
 */
export function statement(entries: readonly LedgerEntry[], imvu: string, period: string): Statement {
  assertPeriod(period);
  if (typeof imvu !== 'string' || imvu.length === 0) throw new Error('statement: imvu must be a non-empty string');
  const where = `statement for IMVU "${imvu}" period ${period}`;

  const bookEntry = priceInForce(entries, period);
  const book: PriceBook | undefined = bookEntry
    ? parsePriceBook(bookEntry.command.command.body, `price book in ledger entry #${bookEntry.index}`)
    : undefined;

  const used = new Set<number>();
  const quantities = new Map<string, bigint>();
  const metricEntries = new Map<string, number[]>();
  const usageIndices: number[] = [];
  const revenues: { index: number; amount: bigint; currency: string }[] = [];

  for (const entry of entries) {
    if (!entry.decision.allowed) continue;
    const { type, body, ts } = entry.command.command;
    if (type !== 'usage.report' && type !== 'revenue.record') continue;
    // Other IMVUs' entries are not even validated: nothing about them may leak into this statement.
    if (body.imvu !== imvu) continue;

    if (type === 'usage.report') {
      const parsed = UsageReportBody.safeParse(body);
      if (!parsed.success) throw new Error(`${where}: invalid usage.report in ledger entry #${entry.index}: ${formatIssues(parsed.error)}`);
      if (periodOfInstant(parsed.data.period.start) !== period) continue;
      usageIndices.push(entry.index);
      used.add(entry.index);
      for (const metric of Object.keys(parsed.data.metrics)) {
        const raw = parsed.data.metrics[metric];
        const q = parseAmount(raw, `${where}: ledger entry #${entry.index} metric "${metric}"`);
        quantities.set(metric, (quantities.get(metric) ?? 0n) + q);
        const list = metricEntries.get(metric) ?? [];
        list.push(entry.index);
        metricEntries.set(metric, list);
      }
    } else {
      const parsed = RevenueRecordBody.safeParse(body);
      if (!parsed.success) throw new Error(`${where}: invalid revenue.record in ledger entry #${entry.index}: ${formatIssues(parsed.error)}`);
      const month = periodOfInstant(
        parsed.data.at ?? ts,
        `${where}: ledger entry #${entry.index} ${parsed.data.at !== undefined ? 'revenue at' : 'command ts'}`,
      );
      if (month !== period) continue;
      used.add(entry.index);
      revenues.push({
        index: entry.index,
        amount: parseAmount(parsed.data.amount, `${where}: ledger entry #${entry.index} revenue amount`),
        currency: parsed.data.currency,
      });
    }
  }

  return priceStatement({ imvu, period, book, bookIndex: bookEntry?.index, quantities, metricEntries, usageIndices, revenues, used });
}

/** What a statement is computed from: summed quantities and revenue of one IMVU and period, and the price book in force. */
export interface StatementInputs {
  imvu: string;
  period: string;
  book: PriceBook | undefined;
  bookIndex: number | undefined;
  quantities: ReadonlyMap<string, bigint>;
  /** Ledger entries per metric (only to name them in errors). */
  metricEntries: ReadonlyMap<string, number[]>;
  usageIndices: readonly number[];
  revenues: readonly { index: number; amount: bigint; currency: string }[];
  /** Ledger indices that contributed (without the price book's). */
  used: ReadonlySet<number>;
}

/**
 * Prices summed usage and adds revenue: the one computation behind every statement, whether the
 * sums come from a scan of entries (statement()) or from the projection's running totals.
 */
export function priceStatement(inp: StatementInputs): Statement {
  const { imvu, period, book, quantities, metricEntries, usageIndices, revenues } = inp;
  const where = `statement for IMVU "${imvu}" period ${period}`;
  const bookEntry = inp.bookIndex === undefined ? undefined : { index: inp.bookIndex };
  const used = new Set(inp.used);
  if (usageIndices.length > 0 && book === undefined) {
    const list = [...usageIndices].sort((a, b) => a - b).join(', #');
    throw new Error(`${where}: usage is reported (ledger entries #${list}) but no price book is in force for ${period}; refusing to price usage at zero`);
  }

  // Charges are rounded up once per metric on the period's summed quantity, so the bill does not depend
  // on how usage was batched into reports (rounding each report up would overcharge fragmented usage).
  const lines: StatementLine[] = [];
  const unpriced: string[] = [];
  for (const metric of [...quantities.keys()].sort(compareStrings)) {
    const quantity = quantities.get(metric) ?? 0n;
    const price = book?.prices.get(metric);
    if (price === undefined) {
      const from = [...new Set(metricEntries.get(metric) ?? [])].sort((a, b) => a - b).join(', #');
      unpriced.push(`"${metric}" (ledger entries #${from})`);
      continue;
    }
    lines.push({ metric, quantity, amount: price.amount, per: price.per, charge: ceilDiv(quantity * price.amount, price.per) });
  }
  if (unpriced.length > 0) {
    throw new Error(
      `${where}: no price for usage metric${unpriced.length > 1 ? 's' : ''} ${unpriced.join(', ')} in price book ` +
        `version ${book?.version} (ledger entry #${bookEntry?.index}); refusing to price usage at zero`,
    );
  }

  let currency = book?.currency;
  const sortedRevenues = [...revenues].sort((a, b) => a.index - b.index);
  for (const r of sortedRevenues) {
    if (currency === undefined) currency = r.currency;
    if (r.currency !== currency) {
      const against = book
        ? `price book version ${book.version} (ledger entry #${bookEntry?.index}) is in ${currency}`
        : `earlier revenue in this period is in ${currency}`;
      throw new Error(`${where}: revenue in ledger entry #${r.index} is in ${r.currency} but ${against}; amounts in different currencies cannot be added`);
    }
  }

  const categoryTotals = new Map<string, bigint>();
  for (const line of lines) {
    const c = categoryOf(line.metric);
    categoryTotals.set(c, (categoryTotals.get(c) ?? 0n) + line.charge);
  }
  const categories: Record<string, bigint> = {};
  for (const c of [...categoryTotals.keys()].sort(compareStrings)) categories[c] = categoryTotals.get(c) ?? 0n;

  const usageTotal = lines.reduce((sum, l) => sum + l.charge, 0n);
  const revenueTotal = revenues.reduce((sum, r) => sum + r.amount, 0n);
  const { total, creator, platform } = split(usageTotal + revenueTotal);
  if (bookEntry) used.add(bookEntry.index);

  return {
    imvu,
    period,
    currency: currency ?? DEFAULT_CURRENCY,
    priceBookVersion: book?.version ?? null,
    lines,
    categories,
    usageTotal,
    revenueTotal,
    total,
    creator,
    platform,
    entries: [...used].sort((a, b) => a - b),
  };
}

/** JSON-safe rendering of a statement: bigints become decimal strings (for the CLI and exports). */
export function statementToJson(s: Statement): StatementJson {
  const categories: Record<string, string> = {};
  for (const c of Object.keys(s.categories).sort(compareStrings)) categories[c] = String(s.categories[c]);
  return {
    imvu: s.imvu,
    period: s.period,
    currency: s.currency,
    priceBookVersion: s.priceBookVersion,
    lines: s.lines.map((l) => ({
      metric: l.metric,
      quantity: l.quantity.toString(),
      amount: l.amount.toString(),
      per: l.per.toString(),
      charge: l.charge.toString(),
    })),
    categories,
    usageTotal: s.usageTotal.toString(),
    revenueTotal: s.revenueTotal.toString(),
    total: s.total.toString(),
    creator: s.creator.toString(),
    platform: s.platform.toString(),
    entries: [...s.entries],
  };
}
