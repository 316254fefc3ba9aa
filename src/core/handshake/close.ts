// Sealing a period: once a month has ended and the grace has passed, nothing can be reported for
// it any more, and the platform appends `period.close` entries listing every IMVU's statement
// totals for it. Statements of a closed period are read from them; gate 6 and the verifier check
// them against the ledger. A period with many IMVUs is sealed in several entries (IMVUs in
// ascending order), the last marked `complete`, so that no entry exceeds the command size limit.
import { z } from 'zod';
import { Currency } from './pricebook.ts';
import type { Statement } from './statement.ts';

/** At most this many IMVUs' totals in one `period.close` entry (about 140 bytes each). */
export const MAX_CLOSE_STATEMENTS = 200;

const minor = z.string().regex(/^[0-9]{1,30}$/, 'must be minor units as decimal digits');

export const SealedTotals = z.strictObject({
  imvu: z.string().regex(/^IMVU-\d{3,9}$/, 'must be an IMVU id such as IMVU-001'),
  currency: Currency,
  usageTotal: minor,
  revenueTotal: minor,
  total: minor,
  creator: minor,
  platform: minor,
});
export type SealedTotals = z.infer<typeof SealedTotals>;

export const PeriodCloseBody = z.strictObject({
  period: z.string().regex(/^[0-9]{4}-(0[1-9]|1[0-2])$/, "period must be a month written 'YYYY-MM' with month 01..12"),
  /** IMVUs with any usage or revenue in the period, ascending by id; an IMVU not listed owes and earned nothing. */
  statements: z.array(SealedTotals).max(MAX_CLOSE_STATEMENTS),
  /** True on the entry that lists the period's last IMVU: the period is then closed. */
  complete: z.boolean(),
});
export type PeriodCloseBody = z.infer<typeof PeriodCloseBody>;

/** The totals of a statement as a `period.close` lists them. */
export function sealedTotals(s: Statement): SealedTotals {
  return {
    imvu: s.imvu,
    currency: s.currency,
    usageTotal: s.usageTotal.toString(),
    revenueTotal: s.revenueTotal.toString(),
    total: s.total.toString(),
    creator: s.creator.toString(),
    platform: s.platform.toString(),
  };
}

/** Field by field, the first difference between what a close says and what the ledger gives, if any. */
export function sealedDifference(sealed: SealedTotals, actual: SealedTotals): string | undefined {
  for (const k of ['currency', 'usageTotal', 'revenueTotal', 'total', 'creator', 'platform'] as const)
    if (sealed[k] !== actual[k]) return `${k} is ${sealed[k]} but the ledger gives ${actual[k]}`;
  return undefined;
}
